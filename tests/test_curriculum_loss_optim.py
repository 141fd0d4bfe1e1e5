"""The authors' recipe, pinned with numbers taken from its written formulas (docs/method.md), not from our code."""

import math

import pytest
import torch
from torch import nn

from r2o_pretrain.config import load_config
from r2o_pretrain.loss import masked_byol_loss, overlap_indicator
from r2o_pretrain.optim import LARS, build_optimizer, split_decay_groups
from r2o_pretrain.schedules import TrainingPlan, curriculum_k, half_cosine, plan_from_config, target_momentum

# the published table for epochs [0,300], K [128,4] (quarter cosine, epochs numbered 1..300)
K_TABLE = {1: 127, 50: 123, 100: 111, 150: 91, 200: 66, 225: 51, 250: 36, 262: 28, 275: 20, 290: 10, 299: 4, 300: 4}

IMAGENET = dict(num_examples=1281167, world_size=128, batch_size=32, epochs=300)


@pytest.mark.parametrize("epoch,expected", sorted(K_TABLE.items()))
def test_cosine_curriculum_is_the_authors_quarter_cosine(epoch, expected):
    assert curriculum_k(epoch, "cosine", (0, 300), (128, 4)) == expected


def test_other_schedules():
    assert curriculum_k(150, "half_cosine", (0, 300), (128, 4)) == 66  # the lr-style curve: a departure
    assert curriculum_k(225, "half_cosine", (0, 300), (128, 4)) == 22
    assert curriculum_k(150, "linear", (0, 300), (128, 4)) == 66
    assert curriculum_k(0, "linear", (0, 300), (128, 4)) == 128
    assert curriculum_k(50, "constant", (0, 300), (16, 4)) == 16
    assert curriculum_k(150, "cosine", (0, 300), (4, 128)) == 91  # increasing: x = pi/2 - x, same curve mirrored
    assert curriculum_k(1, "cosine", (0, 300), (4, 128)) == 4
    assert curriculum_k(10, "constant", (0, 300), (0, 4)) == 1  # K < 1 means 1
    ms = [[0, 256], [100, 64], [200, 8]]
    assert [curriculum_k(e, "piecewise", (0, 300), (0, 0), ms) for e in (1, 99, 100, 250)] == [256, 256, 64, 8]


def test_imagenet_plan_equals_the_written_formulas():
    plan = TrainingPlan(**IMAGENET)
    n, gb = 1281167, 4096
    assert plan.global_batch == gb and plan.max_lr == pytest.approx(0.3 * 4096 / 256)
    w, t = 3 * n // gb, 300 * n // gb
    assert (plan.warmup_steps, plan.total_steps, plan.steps_per_epoch) == (w, t, 312) == (938, 93835, 312)
    assert plan.at(0).lr == 0.0  # 0 at the first step
    assert plan.at(469).lr == pytest.approx(469 / 938 * 4.8 * 127 / 16)  # mid warm-up, epoch 2: K=127
    assert plan.at(938).lr == pytest.approx(4.8 * 127 / 16)  # first step after warm-up (epoch 4)
    last = plan.run_steps - 1
    assert last == 93599 and plan.at(last).epoch == 300 and plan.at(last).k == 4
    expected_last = 4.8 * 0.5 * (1 + math.cos(math.pi * (93599 - 938) / (93835 - 938))) * 4 / 16
    assert plan.at(last).lr == pytest.approx(expected_last, rel=1e-12)
    assert plan.at(0).tau == pytest.approx(0.99)
    s = 46917
    assert plan.at(s).tau == pytest.approx(1 - 0.01 * (math.cos(math.pi * s / 93835) + 1) / 2, rel=1e-15)
    assert plan.at(312 * 149).k == 91 and plan.at(312 * 149 - 1).k == 92  # epoch 150 starts at step 46488
    assert [r["k"] for r in plan.rows() if r["epoch"] in K_TABLE] == list(K_TABLE.values())


def test_superpixels_only_rule_and_config_plan():
    plan = TrainingPlan(
        num_examples=100, world_size=1, batch_size=10, epochs=4, k_start=256, k_end=64, schedule="linear"
    )
    assert plan.at(0).superpixels_only and plan.at(0).k == 208 and not plan.at(39).superpixels_only
    cfg = load_config("configs/pretrain/r2o_r50_imagenet_300ep.yaml")
    assert plan_from_config(cfg, 1281167, 128) == TrainingPlan(**IMAGENET, milestones=(), curriculum_epochs=(0, -1))


def test_target_momentum_and_cosine_helper():
    assert half_cosine(0) == 1 and half_cosine(1) == pytest.approx(0) and half_cosine(0.5) == pytest.approx(0.5)
    assert target_momentum(0, 100) == pytest.approx(0.99)
    assert target_momentum(100, 100) == pytest.approx(1.0)
    assert target_momentum(25, 100) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def test_loss_is_the_mean_over_both_directions():
    # one counted mask, D=2; direction 1: p=[1,0] vs z=[0,1] -> |p^-z^|^2 = 2; direction 2: p=[3,0] vs z=[5,0] -> 0
    p = torch.tensor([[[1.0, 0.0]], [[3.0, 0.0]]])  # rows: online(view1), online(view2)
    z = torch.tensor([[[0.0, 1.0]], [[5.0, 0.0]]])  # rows: target(view2), target(view1)
    loss, n = masked_byol_loss(p, z, torch.ones(2, 1, dtype=torch.bool))
    assert loss.item() == pytest.approx((2 + 0) / (2 * 1)) and n == 2


def test_loss_weights_only_overlapping_masks():
    g = torch.Generator().manual_seed(0)
    p, z = torch.randn(2, 3, 8, generator=g), torch.randn(2, 3, 8, generator=g)
    counted = torch.tensor([[True, False, True], [False, False, True]])
    loss, n = masked_byol_loss(p, z, counted)
    z2 = z.clone()
    z2[~counted] = torch.randn(int((~counted).sum()), 8, generator=g)  # change only masks not counted
    loss2, _ = masked_byol_loss(p, z2, counted)
    expected = (
        sum(((p[b, m] / p[b, m].norm() - z[b, m] / z[b, m].norm()) ** 2).sum() for b, m in counted.nonzero().tolist())
        / 3
    )
    assert n == 3
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(loss, loss2)


def test_loss_without_any_counted_mask_is_zero_and_differentiable():
    p = torch.randn(2, 3, 8, requires_grad=True)
    loss, n = masked_byol_loss(p, torch.randn(2, 3, 8), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert n == 0 and loss.item() == 0.0 and p.grad is not None and torch.all(p.grad == 0)


def test_overlap_indicator_needs_both_views():
    a = torch.tensor([[0.5, 0.0, 1e-4]])
    b = torch.tensor([[0.5, 0.5, 0.5]])
    assert overlap_indicator(a, b).tolist() == [[True, False, False]]


def test_param_groups_exclude_bias_and_every_norm_by_type():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.Linear(4, 4), nn.BatchNorm1d(4))
    regular, excluded = split_decay_groups([net])
    assert {id(p) for p in regular} == {id(net[0].weight), id(net[2].weight)}
    assert {id(p) for p in excluded} == {
        id(net[1].weight),
        id(net[1].bias),
        id(net[2].bias),
        id(net[3].weight),
        id(net[3].bias),
    }


def test_resnet_stem_bn_is_excluded():
    from r2o_pretrain.model.encoder import ResNetEncoder

    enc = ResNetEncoder(18)
    _, excluded = split_decay_groups([enc])
    assert id(enc.bn1.weight) in {id(p) for p in excluded}


def test_lars_does_not_adapt_or_decay_excluded_group():
    lin = nn.Linear(3, 3)
    opt = build_optimizer([lin], "lars", weight_decay=0.5, momentum=0.0, trust_coefficient=1e-3)
    for g in opt.param_groups:
        g["lr"] = 1.0
    lin.weight.grad = torch.ones_like(lin.weight)
    lin.bias.grad = torch.ones_like(lin.bias)
    b0, w0 = lin.bias.detach().clone(), lin.weight.detach().clone()
    opt.step()
    torch.testing.assert_close(lin.bias.detach(), b0 - 1.0)  # plain SGD: no trust ratio, no decay
    w_step = (w0 - lin.weight.detach()).norm()
    assert w_step < 0.01  # LARS-adapted: trust ratio 1e-3 * |w| / (|g| + wd |w|)


# ---- the authors' LARS (optimizer/LARSSGD.py), written out by hand in float64 ----
ETA, WD, M = 1e-3, 1e-2, 0.9


def _trust(w, g, wd=WD, eta=ETA):
    """eta |w| / (|g| + wd |w|); 1 when |w| = 0 or that denominator is 0."""
    wn, gn = float(w.norm()), float(g.norm())
    return 1.0 if wn == 0 or gn + wd * wn == 0 else eta * wn / (gn + wd * wn)


def _by_hand(w0, b0, grads, lrs, kind):
    """Weight (adapted, decayed) and bias (excluded: trust 1, wd 0) after len(lrs) steps."""
    w, b = w0.double().clone(), b0.double().clone()
    bw = bb = None
    for (gw, gb), lr in zip(grads, lrs):
        gw, gb = gw.double(), gb.double()
        t = _trust(w, gw)
        if kind == "official":  # d = lr trust (g + wd w); buf = m buf + d; w -= buf
            dw, db = lr * t * (gw + WD * w), lr * gb
            bw = dw if bw is None else M * bw + dw
            bb = db if bb is None else M * bb + db
            w, b = w - bw, b - bb
        else:  # timm: buf = m buf + trust (g + wd w); w -= lr buf
            dw, db = t * (gw + WD * w), gb
            bw = dw if bw is None else M * bw + dw
            bb = db if bb is None else M * bb + db
            w, b = w - lr * bw, b - lr * bb
    return w, b


def _run(kind, w0, b0, grads, lrs):
    lin = nn.Linear(3, 2)
    with torch.no_grad():
        lin.weight.copy_(w0)
        lin.bias.copy_(b0)
    opt = build_optimizer([lin], "lars", weight_decay=WD, momentum=M, trust_coefficient=ETA, lars=kind)
    for (gw, gb), lr in zip(grads, lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        lin.weight.grad, lin.bias.grad = gw.clone(), gb.clone()
        opt.step()
    return lin.weight.detach().double(), lin.bias.detach().double()


@pytest.mark.parametrize("lrs", [(0.0, 0.5), (0.1, 0.5, 0.2)])  # warm-up's first step has lr 0
def test_lars_is_the_authors_update_with_a_changing_lr(lrs):
    g = torch.Generator().manual_seed(0)
    w0, b0 = torch.randn(2, 3, generator=g), torch.randn(2, generator=g)
    grads = [(torch.randn(2, 3, generator=g), torch.randn(2, generator=g)) for _ in lrs]
    w, b = _run("official", w0, b0, grads, lrs)
    w_hand, b_hand = _by_hand(w0, b0, grads, lrs, "official")
    torch.testing.assert_close(w, w_hand, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(b, b_hand, rtol=1e-6, atol=1e-7)
    # timm's update (the switch) is its own formula, and a different point when the lr changes
    w_timm, b_timm = _run("timm", w0, b0, grads, lrs)
    torch.testing.assert_close(w_timm, _by_hand(w0, b0, grads, lrs, "timm")[0], rtol=1e-5, atol=1e-7)
    assert (w_timm - w).abs().max() > 1e-4 and (b_timm - b).abs().max() > 1e-2
    # with a constant lr both are the same update
    same = [lrs[-1]] * len(lrs)
    torch.testing.assert_close(_run("timm", w0, b0, grads, same)[0], _run("official", w0, b0, grads, same)[0])


def test_lars_trust_ratio_edge_cases_follow_the_authors():
    opt_for = lambda p, wd: LARS([{"params": [p], "weight_decay": wd}], lr=1.0, momentum=0.0, eta=ETA)  # noqa: E731
    # |w| = 0: trust 1, the step is lr * g
    p = nn.Parameter(torch.zeros(4))
    p.grad = torch.tensor([1.0, -2.0, 0.5, 0.0])
    opt_for(p, WD).step()
    torch.testing.assert_close(p.detach(), -torch.tensor([1.0, -2.0, 0.5, 0.0]))
    # |g| = 0 with weight decay: trust = eta / wd = 0.1, so w -= 0.1 * wd * w (timm would use trust 1)
    p = nn.Parameter(torch.full((4,), 2.0))
    p.grad = torch.zeros(4)
    opt_for(p, WD).step()
    torch.testing.assert_close(p.detach(), torch.full((4,), 2.0 - (ETA / WD) * WD * 2.0))
    # denominator 0 (|g| = 0, no decay): trust 1 and nothing moves, no NaN
    p = nn.Parameter(torch.full((4,), 2.0))
    p.grad = torch.zeros(4)
    opt_for(p, 0.0).step()
    assert torch.equal(p.detach(), torch.full((4,), 2.0))


def test_official_name_rule_misses_only_the_stem_bn_weight():
    from r2o_pretrain.model.r2o import R2O

    model = R2O(depth=18, projector_hidden=16, projector_out=8, predictor_hidden=16)
    ours = {id(p) for p in split_decay_groups(model.online_modules())[1]}
    theirs = {id(p) for p in split_decay_groups(model.online_modules(), "official_names")[1]}
    assert ours - theirs == {id(model.online_encoder.bn1.weight)} and not theirs - ours
    assert id(model.online_encoder.bn1.bias) in theirs  # excluded as a bias
    opt = build_optimizer(model.online_modules(), exclude="official_names")
    assert id(model.online_encoder.bn1.weight) in {id(p) for p in opt.param_groups[0]["params"]}


def test_lars_switches_are_config_keys():
    from r2o_pretrain.config import ConfigError

    cfg = load_config(None)
    assert (cfg.optim.lars, cfg.optim.exclude) == ("official", "module_type")
    for key, value in (("optim.lars", "adam"), ("optim.exclude", "names")):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [f"{key}={value}"])


def test_dry_run_prints_the_imagenet_plan():
    from conftest import ROOT, run_main

    # in process: the plan is pretrain.py's main() (its real command line: test_online_eval.py, test_docs.py)
    r = run_main(
        "tools/pretrain.py",
        "--config",
        str(ROOT / "configs/pretrain/r2o_r50_imagenet_300ep.yaml"),
        "--dry-run",
        "--world-size",
        "128",
        "data.num_examples=1281167",
    )
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {
        int(line.split()[0]): line.split()
        for line in r.stdout.splitlines()
        if line.split()[:1] != [] and line.split()[0].isdigit()
    }
    assert len(rows) == 300
    assert rows[150][1:3] == ["91", "46488..46799"]
    assert float(rows[1][3]) == 0.0 and float(rows[300][1]) == 4
    assert "total: 93600 steps, 383385600 images seen, effective global batch 4096" in r.stdout


def test_lars_foreach_update_equals_the_per_parameter_loop():
    """The default (torch._foreach_* over a group) is the reference loop's arithmetic: same parameters and
    momentum buffers after steps with lr 0 (warm-up's first), a changing lr and both groups; an optimizer
    state saved without the switch loads."""
    from r2o_pretrain.model.r2o import R2O

    def run(foreach: bool):
        torch.manual_seed(0)
        model = R2O(depth=18, projector_hidden=32, projector_out=16, predictor_hidden=32)
        opt = build_optimizer(model.online_modules(), weight_decay=1e-2)
        params = [p for g in opt.param_groups for p in g["params"]]
        g = torch.Generator().manual_seed(1)
        for lr in (0.0, 0.3, 0.1):
            for group in opt.param_groups:
                group["lr"], group["foreach"] = lr, foreach
            for p in params:
                p.grad = torch.randn(p.shape, generator=g)
            params[0].grad.zero_()  # ‖g‖ = 0 with decay: trust eta / wd
            opt.step()
        return params, opt

    fused, opt = run(True)
    loop, _ = run(False)
    assert len(fused) > 60
    for a, b in zip(fused, loop):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-8)
    bufs = [opt.state[p]["momentum_buffer"] for p in fused]
    assert all(torch.isfinite(b).all() for b in bufs) and any(b.abs().sum() > 0 for b in bufs)
    state = opt.state_dict()
    for group in state["param_groups"]:
        del group["foreach"]
    opt.load_state_dict(state)
    assert all(group["foreach"] is True for group in opt.param_groups)
    opt.step()
