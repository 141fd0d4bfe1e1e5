import math

import pytest
import torch
from torch import nn

from r2o_pretrain.curriculum import k_at
from r2o_pretrain.loss import masked_byol_loss, overlap_indicator
from r2o_pretrain.optim import build_optimizer, split_decay_groups, target_momentum, warmup_cosine_lr


@pytest.mark.parametrize(
    "epoch,expected",
    # int(4 + 124 * (1 + cos(pi * e / 300)) / 2), the published cosine curriculum
    [(0, 128), (100, 97), (150, 66), (200, 35), (299, 4), (300, 4)],
)
def test_cosine_curriculum_matches_formula(epoch, expected):
    assert k_at(epoch, "cosine", 300, 128, 4) == expected


def test_other_schedules():
    assert k_at(150, "linear", 300, 128, 4) == 66
    assert k_at(0, "linear", 300, 128, 4) == 128
    assert k_at(50, "constant", 300, 16, 4) == 16
    ms = [[0, 256], [100, 64], [200, 8]]
    assert [k_at(e, "piecewise", 300, 0, 0, ms) for e in (0, 99, 100, 250)] == [256, 256, 64, 8]


def test_loss_zero_for_identical_outputs():
    p = torch.randn(2, 3, 8)
    loss, n = masked_byol_loss(p, p.clone(), torch.ones(2, 3, dtype=torch.bool))
    assert n == 6 and loss.abs() < 1e-6


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


def test_schedules():
    assert warmup_cosine_lr(0, 100, 10, 1.0) == 0.0
    assert warmup_cosine_lr(5, 100, 10, 1.0) == 0.5
    assert warmup_cosine_lr(10, 100, 10, 1.0) == 1.0
    assert abs(warmup_cosine_lr(55, 100, 10, 1.0) - 0.5) < 1e-9
    assert target_momentum(0, 100, 0.99) == pytest.approx(0.99)
    assert target_momentum(100, 100, 0.99) == pytest.approx(1.0)
    assert target_momentum(50, 100, 0.99) == pytest.approx(1 - 0.01 * (math.cos(math.pi / 2) + 1) / 2)
