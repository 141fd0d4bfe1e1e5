"""The order inside one training step, as the authors' forward runs it (docs/method.md, step 7):
raw view through the target *before* this step's EMA → k-means → masks → online forward → EMA update
(target·τ + online·(1 − τ), their mul/add) → target forward on the views."""

import copy

import torch

from r2o_pretrain.model.r2o import R2O


def _tiny(seed: int = 0) -> R2O:
    torch.manual_seed(seed)
    model = R2O(depth=18, projector_hidden=32, projector_out=16, predictor_hidden=32).train()
    with torch.no_grad():  # an online network that has moved away from the target (as after some steps)
        for p in [*model.online_encoder.parameters(), *model.online_projector.parameters()]:
            p.add_(0.05 * torch.randn_like(p))
    return model


def _batch(b: int = 2):
    g = torch.Generator().manual_seed(1)
    sp = torch.arange(16).view(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1).expand(b, 32, 32).clone()
    boxes = torch.tensor([[0.0, 0.0, 0.8, 0.9, 1.0], [0.1, 0.2, 1.0, 1.0, 0.0]]).expand(b, 2, 5)
    return torch.randn(b, 2, 3, 32, 32, generator=g), boxes, torch.randn(b, 3, 32, 32, generator=g), sp


def test_kmeans_sees_the_target_before_the_ema_and_the_views_after_it():
    model, tau = _tiny(), 0.9
    seen = []  # the target's first conv weight at every call: the raw-view pass, then the views pass
    model.target_encoder.conv1.register_forward_hook(lambda m, i, o: seen.append(m.weight.detach().clone()))
    before = [p.detach().clone() for p in model.target_parameters()]
    online = [p.detach().clone() for p in [*model.online_encoder.parameters(), *model.online_projector.parameters()]]
    views, boxes, raw, sp = _batch()
    reference = copy.deepcopy(model)
    out = model(views, boxes, raw, sp, 4, torch.Generator().manual_seed(0), False, tau)

    assert len(seen) == 2
    assert torch.equal(seen[0], before[0])  # k-means on the pre-EMA target
    after = [t.clone().mul_(tau).add_(o, alpha=1 - tau) for t, o in zip(before, online)]  # theirs, verbatim
    assert all(
        torch.allclose(a, t * tau + o * (1 - tau), rtol=1e-6, atol=1e-7) for a, t, o in zip(after, before, online)
    )
    assert torch.equal(seen[1], after[0])  # the views through the updated target
    for p, expected in zip(model.target_parameters(), after):
        assert torch.equal(p.detach(), expected)
    # the same label map as clustering with the untouched target (same k-means draws)
    labels, _, _ = reference.region_labels(raw, sp, 4, 8, torch.Generator().manual_seed(0))
    assert torch.equal(out.label_map, labels)


def test_without_tau_the_forward_leaves_the_target_alone():
    model = _tiny()
    before = [p.detach().clone() for p in model.target_parameters()]
    model(*_batch(), 4, torch.Generator().manual_seed(0))
    assert all(torch.equal(p.detach(), q) for p, q in zip(model.target_parameters(), before))


def test_byol_and_detcon_take_the_same_path():
    for method in ("byol", "detcon"):
        torch.manual_seed(0)
        model = R2O(depth=18, method=method, projector_hidden=32, projector_out=16, predictor_hidden=32).train()
        out = model(*_batch(), 4, None, False, 0.5)
        out.loss.backward()
        assert torch.isfinite(out.loss)
        online = model.online_encoder.conv1.weight.detach()
        torch.testing.assert_close(model.target_encoder.conv1.weight.detach(), online)  # equal at init, stays so
