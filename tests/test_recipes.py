"""The small-budget pretraining recipes (configs/pretrain/r2o_r50_{coco,imagenet100}_200ep.yaml): their plans
on 1 GPU and on 8 by the project's lr rule, and tools/make_imagenet100.py on a fake ImageNet tree of real photos."""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_main
from PIL import Image

from r2o_pretrain.config import load_config
from r2o_pretrain.data.folder import list_images
from r2o_pretrain.eval.knn import list_labelled

RECIPES = {  # config: images per epoch
    "configs/pretrain/r2o_r50_coco_200ep.yaml": 118_287,
    "configs/pretrain/r2o_r50_imagenet100_200ep.yaml": 126_689,
}


def plan_rows(stdout: str) -> dict[int, list[str]]:
    """--dry-run's table: epoch -> [epoch, K, steps, lr, tau]."""
    return {int(p[0]): p for p in (line.split() for line in stdout.splitlines()) if p and p[0].isdigit()}


@pytest.mark.parametrize("config", RECIPES)
@pytest.mark.parametrize("gpus", [1, 8])
def test_recipe_plans_on_one_gpu_and_eight(config, gpus):
    n = RECIPES[config]
    r = run_main(
        "tools/pretrain.py", "--config", config, "--dry-run", "--world-size", str(gpus), f"data.num_examples={n}"
    )
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = load_config(ROOT / config)
    batch = cfg.train.batch_size * gpus
    steps = n // batch  # the sampler drops the last partial batch
    max_lr = cfg.optim.base_lr * batch / 256  # the project's rule: base_lr x global batch / 256 (x K/16)
    assert f"global batch {batch}, {steps} steps/epoch; max lr {max_lr:g} (x K/16: True)" in r.stdout
    rows = plan_rows(r.stdout)
    assert sorted(rows) == list(range(1, 201))
    ks = [int(rows[e][1]) for e in range(1, 201)]
    assert ks[0] == 127 and ks[-1] == 4 and ks == sorted(ks, reverse=True)  # quarter cosine 128 -> 4 over 200
    assert int(rows[100][1]) == 91  # K(E/2) = 91 for 128 -> 4, whatever E (the ImageNet recipe: K(150) = 91)
    warm_end = int(cfg.optim.warmup_epochs * n // batch)
    assert f"warm-up {warm_end} steps" in r.stdout
    # lr at the first step after warm-up's epochs: the cosine's value x K/16, below the scaled max
    assert 0 < float(rows[12][3]) <= max_lr * ks[11] / 16
    assert f"total: {200 * steps} steps" in r.stdout
    assert "every 10 epoch(s) and at the end: 20 evaluations of 1000 image/mask pairs" in r.stdout
    # without the CUB folders the dry run warns that the run would stop at start-up
    assert "warning: training would stop at start-up" in r.stdout and "data/CUB_200_2011/images" in r.stdout


def test_recipes_turn_the_evaluation_off_cleanly(tmp_path):
    photos = write_fake_imagenet(tmp_path / "imagenet", ["n01440764"], per_class=3, val_per_class=0)
    for config in RECIPES:
        r = run_main(
            "tools/pretrain.py", "--config", config, "--dry-run", f"data.root={photos / 'train'}",
            "train.batch_size=2", "eval.every_epochs=0",
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert "N=3, 1 process(es) x 2 = global batch 2, 1 steps/epoch" in r.stdout
        assert "online evaluation: off" in r.stdout and "warning" not in r.stdout


# ---------------------------------------------------------------- ImageNet-100 class list and subset tool
CLASS_LIST = ROOT / "configs/pretrain/imagenet100_classes.txt"


def test_shipped_class_list_is_cmcs_100_wordnet_ids():
    tool = load_tool()
    ids = tool.read_class_list(CLASS_LIST)
    assert len(ids) == len(set(ids)) == 100 and all(re.fullmatch(r"n\d{8}", i) for i in ids)
    assert ids[:3] == ["n02869837", "n01749939", "n02488291"] and ids[-1] == "n02090622"  # CMC's file order
    assert "HobbitLong/CMC" in CLASS_LIST.read_text().splitlines()[1]  # the source is cited


def load_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_imagenet100", ROOT / "tools/make_imagenet100.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_fake_imagenet(root: Path, wnids: list[str], per_class: int, val_per_class: int) -> Path:
    """root/{train,val}/<wnid>/*.JPEG: small crops of scikit-image's photographs (real pictures, no download)."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(0)
    for split, count in (("train", per_class), ("val", val_per_class)):
        for c, wnid in enumerate(wnids):
            folder = root / split / wnid
            folder.mkdir(parents=True)
            for i in range(count):
                photo = photos[c % len(photos)]
                y, x = int(rng.integers(0, photo.shape[0] - 48)), int(rng.integers(0, photo.shape[1] - 48))
                Image.fromarray(photo[y : y + 48, x : x + 48]).save(folder / f"{wnid}_{i}.JPEG", quality=90)
    return root


def test_make_imagenet100_links_the_listed_classes(tmp_path):
    wnids = ["n01440764", "n01443537", "n01484850", "n01491361"]
    imagenet = write_fake_imagenet(tmp_path / "imagenet", wnids, per_class=3, val_per_class=2)
    classes = tmp_path / "classes.txt"
    classes.write_text("# three of the four\nn01491361\nn01440764\n\nn01484850  # a comment\n")
    out = tmp_path / "in100"
    r = run_main("tools/make_imagenet100.py", str(imagenet), str(out), "--classes", str(classes))
    assert r.returncode == 0, r.stderr
    assert f"{out / 'train'}: 3 classes, 9 images" in r.stdout and f"{out / 'val'}: 3 classes, 6 images" in r.stdout
    assert "6 link(s) made, 0 already there" in r.stdout
    for split in ("train", "val"):
        assert sorted(p.name for p in (out / split).iterdir()) == ["n01440764", "n01484850", "n01491361"]
        for link in (out / split).iterdir():
            assert link.is_symlink() and Path(os.readlink(link)) == (imagenet / split / link.name).resolve()
    # what pretraining and the kNN monitor read through the links
    listed = list_images(str(out / "train")).files
    assert len(listed) == 9 and not any("n01443537" in str(f) for f in listed)
    assert sorted(list_labelled(out / "val").classes) == ["n01440764", "n01484850", "n01491361"]
    # again: nothing to do, nothing changed
    r = run_main("tools/make_imagenet100.py", str(imagenet), str(out), "--classes", str(classes))
    assert r.returncode == 0 and "0 link(s) made, 6 already there" in r.stdout


def test_make_imagenet100_names_what_is_missing_and_links_nothing(tmp_path):
    imagenet = write_fake_imagenet(tmp_path / "imagenet", ["n01440764", "n01443537"], per_class=2, val_per_class=1)
    out = tmp_path / "in100"
    # the shipped list on a tree of two other classes: all 100 missing, in train and val
    r = run_main("tools/make_imagenet100.py", str(imagenet), str(out))
    assert r.returncode == 2 and not out.exists()
    assert f"{imagenet / 'train'}: 100 of the 100 class folders are missing: n02869837, n01749939" in r.stderr
    assert "and 90 more" in r.stderr and f"{imagenet / 'val'}: 100 of the 100" in r.stderr

    classes = tmp_path / "classes.txt"
    classes.write_text("n01440764\nn09999999\n")
    r = run_main("tools/make_imagenet100.py", str(imagenet), str(out), "--classes", str(classes))
    assert r.returncode == 2 and not out.exists()
    assert f"{imagenet / 'train'}: 1 of the 2 class folders are missing: n09999999" in r.stderr

    # a flat val/ (the download's 50,000 files in one folder) and a bad class list
    flat = tmp_path / "flat"
    write_fake_imagenet(flat, ["n01440764"], per_class=2, val_per_class=0)
    (flat / "val" / "n01440764").rmdir()
    Image.new("RGB", (32, 32)).save(flat / "val" / "ILSVRC2012_val_00000001.JPEG")
    classes.write_text("n01440764\n")
    r = run_main("tools/make_imagenet100.py", str(flat), str(out), "--classes", str(classes))
    assert r.returncode == 2 and "val: no class folders" in r.stderr and "--splits train" in r.stderr
    r = run_main("tools/make_imagenet100.py", str(flat), str(out), "--classes", str(classes), "--splits", "train")
    assert r.returncode == 0 and (out / "train" / "n01440764").is_symlink()
    classes.write_text("n01440764\nbirds\n")
    r = run_main("tools/make_imagenet100.py", str(flat), str(out), "--classes", str(classes))
    assert r.returncode == 2 and "line 2: 'birds' is not a WordNet id" in r.stderr
    # an entry in the output that is not our link is not replaced
    (out / "train" / "n01440764").unlink()
    (out / "train" / "n01440764").mkdir()
    classes.write_text("n01440764\n")
    r = run_main("tools/make_imagenet100.py", str(flat), str(out), "--classes", str(classes), "--splits", "train")
    assert r.returncode == 2 and "exists and is not a link to" in r.stderr
