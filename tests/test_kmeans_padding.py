"""The k-means's static shapes: padded points change nothing (bitwise, on the CPU), the Lloyd blocks with
one host read equal checking every iteration, and the step's region labels read nothing back from the
device when the loader's superpixel counts come with the batch (docs/method.md, "k-means on a GPU")."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from user_data import _photos

from r2o_pretrain.build import build_model
from r2o_pretrain.config import ConfigError, load_config
from r2o_pretrain.data.dataset import collate
from r2o_pretrain.data.device_augment import to_input_tensor
from r2o_pretrain.data.segment_counts import SegmentCounts
from r2o_pretrain.data.superpixels import slic_labels
from r2o_pretrain.model.encoder import ResNetEncoder
from r2o_pretrain.model.kmeans import (
    EagerSteps,
    greedy_seeding,
    kmeans_with_iterations,
    lloyd_block,
    lloyd_step,
    seeding_draws,
)
from r2o_pretrain.model.kmeans_graphs import KMeansGraphs
from r2o_pretrain.model.r2o import R2O
from r2o_pretrain.model.refiner import RegionRefiner, padded_point_count, superpixel_features

SIZE = 96  # raw view side: c4 is 6×6, SLIC ~100 segments per photo


@pytest.fixture(scope="module")
def photo_batch():
    """Six real photos resized to SIZE², their SLIC maps (100 segments) and a random ResNet-18's c4."""
    rgb = [np.asarray(Image.fromarray(p).resize((SIZE, SIZE), Image.BICUBIC)) for p in _photos()]
    sp = torch.from_numpy(np.stack([slic_labels(im) for im in rgb]))
    raw = torch.stack([to_input_tensor(im) for im in rgb])
    torch.manual_seed(0)
    with torch.no_grad():
        c4 = ResNetEncoder(18).train().forward_c4(raw)
    return raw, sp, c4


def _pad(x: torch.Tensor, extra: int, seed: int) -> torch.Tensor:
    """x with ``extra`` rows of junk appended (not zeros: whatever the padding holds must not matter)."""
    return torch.cat([x, torch.randn(extra, x.shape[1], generator=torch.Generator().manual_seed(seed))])


@pytest.mark.parametrize("init", ["greedy", "single"])
def test_padded_kmeans_is_bitwise_the_unpadded_one(photo_batch, init):
    _, sp, c4 = photo_batch
    feats, valid = superpixel_features(c4, sp)
    x = feats[valid]  # the real points, as the exact pooling clusters them
    n = x.shape[0]
    for seed in range(3):
        for k in (2, 16, 128):
            gen = torch.Generator().manual_seed(seed)
            ref = kmeans_with_iterations(x, k, 200, gen, init=init)
            for extra in (1 + 36 * (seed % 2),):
                gen = torch.Generator().manual_seed(seed)
                got = kmeans_with_iterations(_pad(x, extra, seed), k, 200, gen, init=init, num_points=n)
                assert torch.equal(got[0][:n], ref[0]) and torch.equal(got[1], ref[1]) and got[2] == ref[2]
                assert torch.all(got[0][n:] == k)  # padding sits in the spare cluster


def test_a_draw_at_the_very_top_never_lands_on_padding():
    # the largest uniform below 1 times the total rounds to the total; with zero-distance padding at the
    # end, searchsorted could return a padded index without the clamp to the last real point
    top = float(np.nextafter(np.float32(1), np.float32(0)))
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        n = int(torch.randint(5, 60, (), generator=g))
        x = F.normalize(torch.randn(n, 8, generator=g), dim=-1)
        k = min(6, n)
        first = torch.randint(n, (), generator=g)
        uniforms = torch.full((k - 1, 3), top)
        ref = greedy_seeding(x, k, first, uniforms)
        xp = _pad(x, 9, seed)
        valid = torch.arange(n + 9) < n
        got = greedy_seeding(xp, k, first, uniforms, valid=valid, last=torch.tensor(n - 1))
        assert torch.equal(got, ref) and int(got.max()) < n


@pytest.mark.parametrize("pooling", ["exact", "official"])
@pytest.mark.parametrize("init", ["greedy", "single"])
def test_refiner_with_padded_points_paints_the_same_labels(photo_batch, pooling, init):
    _, sp, c4 = photo_batch
    counts = SegmentCounts.of(sp)
    refiner = RegionRefiner(superpixel_pooling=pooling, kmeans_init=init)
    assert padded_point_count(sp.shape[0], counts.present) > counts.present  # the padded call does pad
    for seed in range(2):
        for k in (4, 128):
            ref = refiner(c4, sp, k, SIZE // 4, torch.Generator().manual_seed(seed))  # counts read from sp
            got = refiner(c4, sp, k, SIZE // 4, torch.Generator().manual_seed(seed), counts, pad=True)
            assert got[1] == ref[1] == k and torch.equal(got[0], ref[0])


def test_lloyd_block_equals_checking_every_iteration():
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        x = F.normalize(torch.randn(300, 16, generator=g) + torch.randn(12, 16, generator=g).repeat(25, 1), dim=-1)
        x_sq = (x * x).sum(-1)
        first, uniforms = seeding_draws(300, 12, "greedy", g, x.device)
        centres, assign = EagerSteps(x, x_sq, None, None).seeding(12, first, uniforms)
        # the per-iteration loop: stop at the first iteration that leaves the assignment unchanged
        c, a, done, stop = centres, assign, 0, False
        while not stop and done < 200:
            c, new = lloyd_step(x, x_sq, None, c, a)
            stop, a, done = torch.equal(new, a), new, done + 1
        cb, ab, changed = lloyd_block(x, x_sq, None, centres, assign, 8 * ((done + 7) // 8))
        assert torch.equal(cb, c) and torch.equal(ab, a)
        assert int(changed.logical_not().nonzero()[0]) + 1 == done  # the flags tell the same count
        r1 = kmeans_with_iterations(x, 12, 200, torch.Generator().manual_seed(seed), check_every=1)
        for every in (3, 8):
            r = kmeans_with_iterations(x, 12, 200, torch.Generator().manual_seed(seed), check_every=every)
            assert torch.equal(r[0], r1[0]) and torch.equal(r[1], r1[1]) and r[2] == r1[2]
        # a fixed number of iterations never reads the flags and runs them all
        assert kmeans_with_iterations(x, 12, 13, torch.Generator().manual_seed(seed), False, check_every=8)[2] == 13


def test_region_labels_read_nothing_back_from_the_device():
    # on the meta device every read of a value (item, tolist, a boolean-mask gather, bincount) raises:
    # with the loader's counts and fixed k-means iterations (no convergence test), the refined path runs
    sp = torch.arange(16).view(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1).expand(2, 32, 32).clone()
    counts = SegmentCounts.of(sp)
    for pooling in ("exact", "official"):
        for init in ("greedy", "single"):
            torch.manual_seed(0)
            model = R2O(depth=18, projector_hidden=32, projector_out=16, predictor_hidden=32, kmeans_iters=3)
            model.refiner = RegionRefiner(3, False, pooling, "nearest", init)
            model = model.to("meta")
            raw = torch.empty(2, 3, 32, 32, device="meta")
            labels, num, _ = model.region_labels(raw, sp.to("meta"), 4, 8, None, segments=counts)
            assert labels.shape == (2, 8, 8) and labels.device.type == "meta" and num == 4
            with pytest.raises((NotImplementedError, RuntimeError)):  # without counts it has to read the map
                model.region_labels(raw, sp.to("meta"), 4, 8, None)
    for method, label_map in (("detcon", "nearest"), ("detcon", "official")):
        model = R2O(depth=18, method=method, projector_hidden=32, projector_out=16, predictor_hidden=32).to("meta")
        model.refiner = RegionRefiner(label_map=label_map)
        _, num, _ = model.region_labels(raw, sp.to("meta"), 4, 8, None, segments=counts)
        assert num == 16


def test_segment_counts_come_with_the_batch_and_are_checked(photo_batch):
    _, sp, c4 = photo_batch
    gappy = sp.clone()
    gappy[0][gappy[0] == 3] = 4  # image 0 lacks id 3: the exact pooling does not cluster that slot
    samples = [{"superpixels": s, "boxes": torch.zeros(2, 5), "index": i, "skipped": []} for i, s in enumerate(gappy)]
    for s in samples:
        s["views"] = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
        s["raw"] = torch.zeros(3, 8, 8, dtype=torch.uint8)
    counts = collate(samples)["segment_counts"]
    per_image = [len(np.unique(s.numpy())) for s in gappy]
    assert counts == SegmentCounts(int(gappy.max()) + 1, sum(per_image))
    _, valid = superpixel_features(c4, gappy)
    assert int(valid.sum()) == counts.present
    wrong = SegmentCounts(counts.slots, counts.present + 1)
    with pytest.raises(ValueError, match="num_valid"):
        RegionRefiner()(c4, gappy, 4, 8, torch.Generator().manual_seed(0), wrong)


def test_the_graph_switch_is_wired_and_eager_on_a_cpu():
    assert load_config(None).model.kmeans_cuda_graphs == "auto"
    with pytest.raises(ConfigError, match="model.kmeans_cuda_graphs"):
        load_config(None, ["model.kmeans_cuda_graphs=on"])
    cfg = load_config(None, ["model.depth=18", "model.kmeans_cuda_graphs=off"])
    assert build_model(cfg).refiner.kmeans_cuda_graphs == "off"
    assert not RegionRefiner().uses_graphs(torch.device("cpu"))
    x = torch.randn(10, 4)
    assert isinstance(KMeansGraphs().steps(x, (x * x).sum(-1), None, None), EagerSteps)  # CPU: eager


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_cuda_graphs_match_eager_on_a_gpu(photo_batch):
    _, sp, c4 = photo_batch
    counts = SegmentCounts.of(sp)
    c4, sp = c4.cuda(), sp.cuda()
    graphs, eager = RegionRefiner(), RegionRefiner(kmeans_cuda_graphs="off")
    for k in (4, 16, 128):
        for _ in range(2):  # first call captures and checks, the second replays
            got = graphs(c4, sp, k, SIZE // 4, torch.Generator("cuda").manual_seed(0), counts)
            ref = eager(c4, sp, k, SIZE // 4, torch.Generator("cuda").manual_seed(0), counts)
            assert got[1] == ref[1]
            assert (got[0] == ref[0]).float().mean() > 0.99  # float atomics in the centre sums may differ
    assert (
        graphs.graphs.failed is None and graphs.graphs.captures >= 6 and graphs.graphs.replays > graphs.graphs.captures
    )


def test_a_failed_capture_falls_back_to_eager_with_one_warning(caplog):
    # the graph path's bookkeeping on a CPU, where every capture fails: the clustering goes on eagerly,
    # with the same bits, and says so once
    from r2o_pretrain.model.kmeans import run_lloyd
    from r2o_pretrain.model.kmeans_graphs import GraphSteps, _Points

    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(200, 8, generator=g), dim=-1)
    x_sq, valid, last = (x * x).sum(-1), torch.arange(200) < 190, torch.tensor(189)
    eager = EagerSteps(x, x_sq, valid, last)
    graphs = KMeansGraphs()
    steps = GraphSteps(graphs, _Points({"x": x, "x_sq": x_sq, "valid": valid, "last": last}), eager)
    first, uniforms = seeding_draws(190, 10, "greedy", g, x.device)
    with caplog.at_level("WARNING", logger="r2o_pretrain.model.kmeans_graphs"):
        got = run_lloyd(steps, *steps.seeding(10, first, uniforms), 200, True, 8)
    ref = run_lloyd(eager, *eager.seeding(10, first, uniforms), 200, True, 8)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1]) and got[2] == ref[2]
    assert graphs.failed and graphs.captures == 0 and len(caplog.records) == 1
    graphs.shapes[("any",)] = steps.points
    assert not copy.deepcopy(graphs).shapes and graphs.shapes  # a copy of the model starts with no graphs
    assert "running eagerly" in caplog.records[0].getMessage()
