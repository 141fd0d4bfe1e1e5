import numpy as np
import pytest
import torch
from conftest import run_main, run_tool
from PIL import Image

from r2o_pretrain.data.dataset import PretrainDataset, build_loader
from r2o_pretrain.data.folder import DatasetError, list_images, open_rgb
from r2o_pretrain.data.prefill import prefill_superpixels, shard_indices
from r2o_pretrain.data.superpixels import SuperpixelCache, slic_labels
from r2o_pretrain.data.views import TwoViewTransform


def make_odd_folder(root):
    """Good images in every awkward mode, plus files that must be skipped."""
    rng = np.random.default_rng(0)
    (root / "class_a").mkdir(parents=True)
    (root / "class_b").mkdir()
    rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(root / "class_a" / "good.jpg")
    Image.fromarray(rgb[..., 0]).save(root / "class_a" / "gray.png")
    Image.fromarray(rgb).convert("CMYK").save(root / "class_a" / "cmyk.jpg")
    Image.fromarray(np.dstack([rgb, rgb[..., :1]])).save(root / "class_b" / "rgba.png")
    Image.fromarray((rng.integers(0, 65535, (40, 40))).astype(np.uint16)).save(root / "class_b" / "deep16.png")
    Image.fromarray(rgb[:4, :4]).save(root / "class_b" / "tiny.png")
    (root / "class_b" / "corrupt.jpg").write_bytes(b"not a jpeg at all" * 10)
    good = (root / "class_a" / "good.jpg").read_bytes()
    (root / "class_b" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "class_b" / "notes.txt").write_text("hello")
    return root


def test_listing_recursive_and_text_file(tmp_path):
    root = make_odd_folder(tmp_path / "imgs")
    listing = list_images(root)
    assert len(listing.files) == 8 and len(listing.skipped_non_images) == 1
    listfile = tmp_path / "list.txt"
    listfile.write_text("imgs/class_a/good.jpg\n# comment\nimgs/class_a/gray.png\n")
    assert [p.split("/")[-1] for p in list_images(listfile).files] == ["good.jpg", "gray.png"]


def test_empty_and_missing_folders_are_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="does not exist"):
        list_images(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DatasetError, match="no images found"):
        list_images(tmp_path / "empty")


def test_modes_convert_to_rgb(tmp_path):
    root = make_odd_folder(tmp_path / "imgs")
    for name in ("class_a/gray.png", "class_a/cmyk.jpg", "class_b/rgba.png", "class_b/deep16.png"):
        img = open_rgb(str(root / name))
        assert img.mode == "RGB"
    deep = np.asarray(open_rgb(str(root / "class_b/deep16.png")))
    assert deep.max() == 255 and deep.min() == 0  # rescaled, not clipped to white


def test_dataset_skips_bad_files_and_names_them(tmp_path):
    root = make_odd_folder(tmp_path / "imgs")
    ds = PretrainDataset(str(root), TwoViewTransform(32, 32), SuperpixelCache(None, 10), seed=0, min_image_size=16)
    skipped = []
    for i in range(len(ds)):
        s = ds[i]
        assert s["views"].shape == (2, 3, 32, 32) and s["superpixels"].shape == (32, 32)
        skipped += s["skipped"]
    names = " ".join(reason for _, reason in skipped)
    assert "corrupt.jpg" in names and "truncated.jpg" in names and "tiny.png" in names
    assert "good.jpg" not in names and "cmyk.jpg" not in names


def test_samples_are_deterministic_per_seed_epoch_index(tmp_path):
    root = make_odd_folder(tmp_path / "imgs")
    ds = PretrainDataset(str(root), TwoViewTransform(32, 32), SuperpixelCache(None, 10), seed=5)
    a, b = ds[0], ds[0]
    torch.testing.assert_close(a["views"], b["views"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["views"], a["views"])
    boxes = a["boxes"]
    assert boxes.shape == (2, 5) and (boxes[:, :4] >= 0).all() and (boxes[:, :4] <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_loader_batches_and_resume_offset(tmp_path):
    root = make_odd_folder(tmp_path / "imgs")
    ds = PretrainDataset(str(root), TwoViewTransform(32, 32), SuperpixelCache(None, 10), seed=0)
    loader, sampler = build_loader(ds, batch_size=2, num_workers=0)
    full = [b["index"].tolist() for b in loader]
    assert len(full) == sampler.batches_per_epoch() == 4
    sampler.set_start_batch(2)
    assert [b["index"].tolist() for b in loader] == full[2:]
    batch = next(iter(loader))
    assert batch["views"].shape == (2, 2, 3, 32, 32) and batch["boxes"].shape == (2, 2, 5)
    with pytest.raises(DatasetError, match="fewer than one global batch"):
        build_loader(ds, batch_size=64, num_workers=0)


def test_superpixel_cache_hits_and_repairs_corrupt_entries(tmp_path):
    img_path = tmp_path / "x.png"
    rgb = np.random.default_rng(0).integers(0, 255, (48, 48, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(img_path)
    cache = SuperpixelCache(str(tmp_path / "cache"), n_segments=20)
    first = cache.labels_for(str(img_path), rgb)
    again = cache.labels_for(str(img_path), rgb)
    assert cache.misses == 1 and cache.hits == 1
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, slic_labels(rgb, 20))
    assert first.min() == 0 and len(np.unique(first)) == first.max() + 1
    entry = cache.entry(str(img_path), 48)
    entry.write_bytes(b"garbage")
    repaired = cache.labels_for(str(img_path), rgb)
    assert cache.repaired == 1
    np.testing.assert_array_equal(repaired, first)
    assert cache.labels_for(str(img_path), rgb) is not None and cache.hits == 2
    # different parameters never share an entry
    assert SuperpixelCache(str(tmp_path / "cache"), n_segments=30).entry(str(img_path), 48) != entry


def test_demo_scenes_exports(demo_dir):
    import json

    coco = json.loads((demo_dir / "instances_train.json").read_text())
    assert len(coco["images"]) == 24 and len(coco["categories"]) == 4 and coco["annotations"]
    ann = coco["annotations"][0]
    from pycocotools import mask as mask_util

    rle = mask_util.frPyObjects(ann["segmentation"], *ann["segmentation"]["size"])
    assert mask_util.decode(rle).sum() == ann["area"]
    seg = Image.open(demo_dir / "voc/SegmentationClass/train_0000.png")
    assert seg.mode == "P"
    values = set(np.unique(np.asarray(seg)).tolist())
    assert 255 in values and 0 in values and values <= {0, 1, 2, 3, 4, 255}
    assert len((demo_dir / "voc/ImageSets/Segmentation/val.txt").read_text().split()) == 8
    masks = sorted((demo_dir / "fg_masks/masks").glob("*.png"))
    assert len(masks) == 8 and set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 255}


def test_demo_scenes_are_deterministic(tmp_path):
    from r2o_pretrain.scenes.demo import SceneGenerator

    a = SceneGenerator(64).scene(np.random.default_rng(3), 3)
    b = SceneGenerator(64).scene(np.random.default_rng(3), 3)
    np.testing.assert_array_equal(a.image, b.image)
    assert [i.category for i in a.instances] == [i.category for i in b.instances]


@pytest.mark.e2e  # runs a real pretraining / detectron2 training
def test_prefill_warms_exactly_the_entries_training_reads(tmp_path, monkeypatch):
    root = make_odd_folder(tmp_path / "imgs")
    cache_dir = tmp_path / "cache"

    def make():
        cache = SuperpixelCache(str(cache_dir), n_segments=10)
        return PretrainDataset(str(root), TwoViewTransform(view_size=32, raw_size=32), cache)

    # two shards together cover every file once
    assert sorted(shard_indices(7, 0, 2) + shard_indices(7, 1, 2)) == list(range(7))
    first = prefill_superpixels(make(), workers=2, shard=0, num_shards=2)
    second = prefill_superpixels(make(), workers=0, shard=1, num_shards=2)
    total = first + second
    assert total["unreadable"] == 3 and total["computed"] == 5  # corrupt, truncated, tiny; 5 good images
    dataset = make()
    for i in range(len(dataset)):
        dataset[i]
    assert dataset.superpixels.misses == 0 and dataset.superpixels.hits >= 5  # training starts warm
    again = prefill_superpixels(make(), workers=0)
    assert again["cached"] == 5 and again["computed"] == 0

    # the command line: same config system as pretrain.py; unreadable files are named (a real command line once,
    # the rest through the same main() in this process)
    args = [f"data.root={root}", f"data.superpixel_cache={tmp_path / 'cli'}", "data.raw_size=32", "data.n_segments=10"]
    r = run_tool("tools/cache_superpixels.py", *args, "--workers", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "5 computed" in r.stdout and "3 unreadable" in r.stdout and "corrupt.jpg" in r.stderr
    off = run_main("tools/cache_superpixels.py", *args, "data.superpixel_cache=")
    assert off.returncode == 2 and "superpixel_cache is empty" in off.stderr
    with pytest.raises(SystemExit) as exit_:  # argparse's usage error: exit status 2
        run_main("tools/cache_superpixels.py", *args, "--shard", "2/2")
    assert exit_.value.code == 2
    # under torchrun each process fills its share: RANK/WORLD_SIZE pick the shard
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    ranked = run_main("tools/cache_superpixels.py", *args, "--workers", "0")
    assert ranked.returncode == 0 and "3 of 8 images (shard 1/3)" in ranked.stdout
