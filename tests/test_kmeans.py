import numpy as np
import pytest
import torch
from sklearn.cluster import kmeans_plusplus

from r2o_pretrain.config import ConfigError, load_config
from r2o_pretrain.model.kmeans import (
    greedy_kmeans_plus_plus,
    greedy_seeding,
    greedy_trials,
    kmeans,
    kmeans_plus_plus,
    kmeans_with_iterations,
)
from r2o_pretrain.model.refiner import (
    RegionRefiner,
    official_superpixel_features,
    superpixel_cell_counts,
    superpixel_features,
)


def lloyd_step(x, assign, centres):
    """One textbook Lloyd iteration (for checking the stopping rule from outside)."""
    k = centres.shape[0]
    new = centres.clone()
    for c in range(k):
        if (assign == c).any():
            new[c] = x[assign == c].mean(0)
    return torch.cdist(x, new).argmin(1)


def test_kmeans_recovers_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [-5.0, -5.0, 0]])
    truth = torch.arange(4).repeat_interleave(50)
    x = centres[truth] + 0.3 * torch.randn(200, 3, generator=g)
    assign, found = kmeans(x, 4, iters=20, generator=torch.Generator().manual_seed(1))
    assert found.shape == (4, 3)
    pairs = {(int(t), int(a)) for t, a in zip(truth, assign)}
    assert len(pairs) == 4
    assert len({a for _, a in pairs}) == 4


def test_kmeans_runs_until_the_assignment_stops_changing():
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(400, 16, generator=g), dim=-1)  # no structure: slow to settle
    assign, centres, iters = kmeans_with_iterations(x, 20, 200, torch.Generator().manual_seed(1))
    assert 2 < iters < 200  # needed several iterations and stopped on its own
    assert torch.equal(lloyd_step(x, assign, centres), assign)  # a fixed point: one more step changes nothing
    # checking only every 8th iteration (the GPU setting: one host sync per check) gives the same clustering
    # and, from the block's per-iteration flags, the same iteration count
    a8, c8, iters8 = kmeans_with_iterations(x, 20, 200, torch.Generator().manual_seed(1), check_every=8)
    assert torch.equal(a8, assign) and torch.equal(c8, centres) and iters8 == iters and iters % 8 != 0
    # the switch: a fixed number of iterations, not a fixed point after too few
    a3, c3, iters3 = kmeans_with_iterations(x, 20, 3, torch.Generator().manual_seed(1), until_converged=False)
    assert iters3 == 3 and not torch.equal(lloyd_step(x, a3, c3), a3)


def test_kmeans_caps_k_at_number_of_points():
    x = torch.randn(3, 2)
    assign, centres = kmeans(x, 10)
    assert centres.shape[0] == 3 and assign.max() < 3


def test_cell_counts_are_area_pooled_one_hot():
    sp = torch.zeros(1, 8, 8, dtype=torch.long)
    sp[0, :, 4:] = 1
    counts = superpixel_cell_counts(sp, (2, 2), 2)
    torch.testing.assert_close(counts[0], torch.tensor([[16.0, 0, 16, 0], [0, 16, 0, 16]]))


def test_official_superpixel_points_keep_every_slot():
    sp = torch.zeros(2, 8, 8, dtype=torch.long)
    sp[0, :, 4:] = 2  # image 0 uses ids 0 and 2, image 1 only id 0: slots (0,1), (1,1), (1,2) are zero vectors
    c4 = torch.rand(2, 3, 2, 2) + 0.1
    feats = official_superpixel_features(c4, sp)
    assert feats.shape == (2, 3, 3)
    assert torch.all(feats[0, 1] == 0) and torch.all(feats[1, 1:] == 0)
    torch.testing.assert_close(feats[1, 0].norm(), torch.tensor(1.0))


def test_refiner_groups_superpixels_by_feature():
    # four superpixel columns; columns 0,1 share one feature, columns 2,3 another
    sp = torch.arange(4).repeat_interleave(4).expand(1, 16, 16).clone()
    c4 = torch.zeros(1, 2, 4, 4)
    c4[0, 0, :, :2] = 1.0
    c4[0, 1, :, 2:] = 1.0
    feats, valid = superpixel_features(c4, sp)
    assert valid.all()
    for pooling in ("exact", "official"):
        labels, k = RegionRefiner(superpixel_pooling=pooling)(c4, sp, 2, 8, torch.Generator().manual_seed(0))
        assert k == 2 and labels.shape == (1, 8, 8)
        assert (labels[0, :, :4] == labels[0, 0, 0]).all() and (labels[0, :, 4:] == labels[0, 0, 7]).all()
        assert labels[0, 0, 0] != labels[0, 0, 7]


def _sklearn_stream(seed: int, n: int, k: int, trials: int) -> tuple[int, np.ndarray]:
    """The random numbers scikit-learn's kmeans_plusplus(random_state=seed) draws: the first centre
    (``choice`` with uniform weights) and one row of ``trials`` uniforms per further centre."""
    rs = np.random.RandomState(seed)
    first = int(np.searchsorted(np.cumsum(np.full(n, 1.0 / n)), rs.random_sample(), side="right"))
    return first, np.stack([rs.uniform(size=trials) for _ in range(k - 1)])


@pytest.mark.parametrize("k,seed", [(2, 0), (7, 1), (32, 2), (100, 3)])
def test_greedy_seeding_equals_scikit_learn_kmeans_plusplus(k, seed):
    x = np.random.default_rng(seed).normal(size=(300, 8))
    centres, indices = kmeans_plusplus(x, k, random_state=seed)
    first, uniforms = _sklearn_stream(seed, 300, k, greedy_trials(k))
    ours = greedy_seeding(torch.from_numpy(x), k, torch.tensor(first), torch.from_numpy(uniforms))
    assert greedy_trials(k) == 2 + int(np.log(k))
    np.testing.assert_array_equal(ours.numpy(), indices)


def test_greedy_seeding_lowers_the_initial_inertia():
    # on the same data the greedy seeding (best of 2 + ln K candidates) starts lower than a single draw
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.normalize(torch.randn(600, 32, generator=g), dim=-1)

    def inertia(c):
        return torch.cdist(x, c).min(1).values.square().sum()

    greedy = torch.stack([inertia(greedy_kmeans_plus_plus(x, 16, torch.Generator().manual_seed(s))) for s in range(8)])
    single = torch.stack([inertia(kmeans_plus_plus(x, 16, torch.Generator().manual_seed(s))) for s in range(8)])
    assert greedy.mean() < single.mean()


def test_kmeans_init_switch():
    x = torch.nn.functional.normalize(torch.randn(200, 8, generator=torch.Generator().manual_seed(0)), dim=-1)
    a, _ = kmeans(x, 10, generator=torch.Generator().manual_seed(1))
    b, _ = kmeans(x, 10, generator=torch.Generator().manual_seed(1), init="greedy")
    c, _ = kmeans(x, 10, generator=torch.Generator().manual_seed(1), init="single")
    assert torch.equal(a, b) and not torch.equal(a, c)
    with pytest.raises(ValueError, match="greedy"):
        kmeans(x, 10, init="random")
    assert load_config(None).model.kmeans_init == "greedy"
    with pytest.raises(ConfigError, match="model.kmeans_init"):
        load_config(None, ["model.kmeans_init=random"])
