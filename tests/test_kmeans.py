import torch

from r2o_pretrain.model.kmeans import kmeans
from r2o_pretrain.model.refiner import RegionRefiner, superpixel_cell_counts, superpixel_features


def test_kmeans_recovers_planted_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[5.0, 0, 0], [0, 5.0, 0], [0, 0, 5.0], [-5.0, -5.0, 0]])
    truth = torch.arange(4).repeat_interleave(50)
    x = centres[truth] + 0.3 * torch.randn(200, 3, generator=g)
    assign, found = kmeans(x, 4, iters=20, generator=torch.Generator().manual_seed(1))
    assert found.shape == (4, 3)
    # same partition up to a relabelling: every true cluster maps to exactly one found cluster
    pairs = {(int(t), int(a)) for t, a in zip(truth, assign)}
    assert len(pairs) == 4
    assert len({a for _, a in pairs}) == 4


def test_kmeans_caps_k_at_number_of_points():
    x = torch.randn(3, 2)
    assign, centres = kmeans(x, 10)
    assert centres.shape[0] == 3 and assign.max() < 3


def test_cell_counts_are_area_pooled_one_hot():
    sp = torch.zeros(1, 8, 8, dtype=torch.long)
    sp[0, :, 4:] = 1
    counts = superpixel_cell_counts(sp, (2, 2), 2)
    torch.testing.assert_close(counts[0], torch.tensor([[16.0, 0, 16, 0], [0, 16, 0, 16]]))


def test_refiner_groups_superpixels_by_feature():
    # four superpixel columns; columns 0,1 share one feature, columns 2,3 another
    sp = torch.arange(4).repeat_interleave(4).expand(1, 16, 16).clone()
    c4 = torch.zeros(1, 2, 4, 4)
    c4[0, 0, :, :2] = 1.0
    c4[0, 1, :, 2:] = 1.0
    feats, valid = superpixel_features(c4, sp)
    assert valid.all()
    labels, k = RegionRefiner(kmeans_iters=5)(c4, sp, 2, 8, torch.Generator().manual_seed(0))
    assert k == 2 and labels.shape == (1, 8, 8)
    assert (labels[0, :, :4] == labels[0, 0, 0]).all() and (labels[0, :, 4:] == labels[0, 0, 7]).all()
    assert labels[0, 0, 0] != labels[0, 0, 7]
