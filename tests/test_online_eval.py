"""Online evaluation during pretraining: the same numbers as tools/eval_unsup_seg.py, kNN on folders whose
answer is known, bad eval data stopped at start-up, the curve across a kill + preemption + resume, and a
2-process torchrun run (gloo) with the work sharded."""

from __future__ import annotations

import importlib.util
import json
import re
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import ROOT, run_main, run_tool, tiny_overrides
from PIL import Image
from test_scale import HELPER, _finish, _torchrun, launched

from r2o_pretrain.config import ConfigError, load_config
from r2o_pretrain.eval.knn import knn_predict, list_labelled, load_image, pooled_features, top1
from r2o_pretrain.eval.online import check_eval_data
from r2o_pretrain.eval.unsup_seg import evaluate, list_pairs
from r2o_pretrain.model.encoder import ResNetEncoder, load_encoder

EVAL_SIZE, EVAL_SEGMENTS = 64, 20


def colour_folder(root: Path, per_class: int, seed: int, colours=((220, 30, 30), (30, 30, 220))) -> Path:
    """root/<class>/*.png: one saturated colour per class with noise (kNN's answer is known)."""
    rng = np.random.default_rng(seed)
    for c, rgb in enumerate(colours):
        (root / f"class_{c}").mkdir(parents=True)
        for i in range(per_class):
            img = np.clip(np.array(rgb) + rng.normal(0, 25, (40, 40, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / f"class_{c}" / f"{i}.png")
    return root


def eval_overrides(demo_dir: Path, out: Path, **extra: object) -> list[str]:
    """tiny_overrides on the first 8 demo images (2 steps of 4 per epoch, 2 epochs), evaluation every epoch
    on the 8 fg-mask pairs."""
    listing = out.parent / f"{out.name}_train.txt"
    listing.parent.mkdir(parents=True, exist_ok=True)
    listing.write_text("".join(f"{f}\n" for f in sorted((demo_dir / "images").glob("*.jpg"))[:8]))
    fg = demo_dir / "fg_masks"
    values = {
        "eval__every_epochs": 1,
        "eval__images": fg / "images",
        "eval__masks": fg / "masks",
        "eval__size": EVAL_SIZE,
        "eval__n_segments": EVAL_SEGMENTS,
        "eval__pictures": 2,
        "eval__chunk": 2,
        **extra,
    }
    return tiny_overrides(listing, out, **values)


def load_tool(name: str):
    """tools/<name>.py as a module (its main() runs in this process)."""
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / f"tools/{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def eval_lines(out: Path) -> list[dict]:
    """Every online-evaluation record of metrics.jsonl, in file order, duplicates included."""
    lines = (out / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if "eval/unsup_miou" in r]


@pytest.fixture(scope="module")
def knn_folders(tmp_path_factory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("knn")
    return colour_folder(tmp / "train", 6, 0), colour_folder(tmp / "val", 3, 1)


@pytest.fixture(scope="module")
def full(demo_dir, knn_folders, tmp_path_factory) -> Path:
    """An uninterrupted run with evaluation every epoch (2 epochs of 2 steps: evaluations at 2 and 4)."""
    out = tmp_path_factory.mktemp("online_full")
    train, val = knn_folders
    r = run_main("tools/pretrain.py", *eval_overrides(demo_dir, out, eval__knn_train=train, eval__knn_val=val))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


def test_online_numbers_equal_the_tool_on_the_same_checkpoint(full, demo_dir, capsys):
    records = eval_lines(full)
    assert [r["step"] for r in records] == [2, 4]
    assert [(r["epoch"], r["k"]) for r in records] == [(1, 6), (2, 2)]  # K of the curriculum at that step
    last = records[-1]
    ckpt = full / "checkpoints/last.pth"
    assert torch.load(ckpt, weights_only=True)["step"] == 4
    pairs = list_pairs(demo_dir / "fg_masks/images", demo_dir / "fg_masks/masks").pairs
    assert last["eval/images"] == len(pairs) == 8
    ref = evaluate(load_encoder(str(ckpt)), pairs, EVAL_SIZE, EVAL_SEGMENTS)
    assert last["eval/unsup_miou"] == pytest.approx(ref.rule.miou, abs=1e-9)
    assert last["eval/unsup_fg_iou"] == pytest.approx(ref.rule.fg_iou, abs=1e-9)
    assert last["eval/unsup_oracle_miou"] == pytest.approx(ref.oracle.miou, abs=1e-9)
    # the CLI's table (2 decimals) on the same checkpoint: the checkpoint row at step 4, and the
    # random-init (its --seed = train.seed) and colour rows logged once, with the first evaluation
    code = load_tool("eval_unsup_seg").main([
        "--checkpoint", str(ckpt), "--images", str(demo_dir / "fg_masks/images"),
        "--masks", str(demo_dir / "fg_masks/masks"), "--size", str(EVAL_SIZE), "--n-segments", str(EVAL_SEGMENTS),
        "--seed", "3",
    ])  # fmt: skip
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    table = {m.group(1): [float(v) for v in m.groups()[1:]] for m in re.finditer(
        r"^(checkpoint|random init|colour \(Lab\))\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)$", stdout, re.M
    )}  # fmt: skip
    first = records[0]
    for row, rec, prefix in (
        ("checkpoint", last, "eval/unsup_"),
        ("random init", first, "eval/random_unsup_"),
        ("colour (Lab)", first, "eval/colour_unsup_"),
    ):
        fg, miou, _, oracle_miou = table[row]
        assert round(100 * rec[prefix + "fg_iou"], 2) == fg, row
        assert round(100 * rec[prefix + "miou"], 2) == miou, row
        assert round(100 * rec[prefix + "oracle_miou"], 2) == oracle_miou, row
    assert "eval/random_unsup_miou" not in last  # once per run
    assert all(r["eval/knn_top1"] >= 0.99 for r in records)  # two colour classes
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(full / "tensorboard"), size_guidance={"images": 0}).Reload()
    assert [e.step for e in tb.Scalars("eval/unsup_miou")] == [2, 4]
    assert [e.step for e in tb.Images("eval/masks")] == [2, 4]


def test_curve_continues_after_a_kill_a_preemption_during_evaluation_and_resume(
    full, demo_dir, knn_folders, tmp_path, capsys
):
    out = tmp_path / "run"
    train, val = knn_folders
    args = eval_overrides(demo_dir, out, eval__knn_train=train, eval__knn_val=val)
    killed = run_tool("tools/pretrain.py", *args, "debug.kill_at_step=3")
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert [r["step"] for r in eval_lines(out)] == [2]
    # forgetting --resume: refused before anything is touched (the checkpoint of step 2 would be replaced)
    before = (out / "metrics.jsonl").read_bytes()
    assert load_tool("pretrain").main(args) == 2
    err = capsys.readouterr().err
    assert "last.pth holds a run at step 2 of 4 that did not finish" in err and "--resume auto" in err, err[-2000:]
    assert (out / "metrics.jsonl").read_bytes() == before
    # resume, and send SIGUSR1 once the evaluation at step 4 has started: stopped with the checkpoint of
    # step 4 (written before the evaluation); the evaluation is logged once, whether cut short or not
    log = tmp_path / "preempted.log"
    with launched((["tools/pretrain.py", *args, "--resume", "auto"], log)) as (proc,):
        deadline = time.monotonic() + 300
        while "online evaluation at step 4" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGUSR1)
        assert _finish(proc, log, timeout=300) == 75, log.read_text()[-3000:]
    marker = json.loads((out / "checkpoints/PREEMPTED").read_text())
    assert marker["signal"] == "SIGUSR1" and marker["step"] == 4
    assert torch.load(out / "checkpoints/last.pth", weights_only=True)["step"] == 4
    resumed = run_tool("tools/pretrain.py", *args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = eval_lines(out)
    assert [r["step"] for r in records] == [2, 4]  # no gap, no duplicate
    assert sum("eval/random_unsup_miou" in r for r in records) == 1
    for a, b in zip(records, eval_lines(full)):  # exact resume: the same curve as the uninterrupted run
        for key in ("eval/unsup_miou", "eval/unsup_oracle_miou", "eval/knn_top1"):
            assert a[key] == pytest.approx(b[key], abs=1e-9), (a["step"], key)
    assert (out / "eval_masks.png").is_file()  # the latest evaluation's picture, beside TensorBoard's
    # a run from scratch (no --resume) in the same folder: a curve of its own, the old records kept aside,
    # and the once-per-run rows logged again (they were read from the old records before)
    fresh = run_main("tools/pretrain.py", *args, "train.max_steps=2")
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "were moved to metrics." in fresh.stderr and "last.pth holds a finished run" in fresh.stderr
    new = eval_lines(out)
    assert [r["step"] for r in new] == [2] and "eval/random_unsup_miou" in new[0]
    (kept,) = out.glob("metrics.*.jsonl")
    assert [r["step"] for r in map(json.loads, kept.read_text().splitlines()) if "eval/unsup_miou" in r] == [2, 4]


def test_torchrun_two_ranks_share_the_evaluation_and_agree(demo_dir, knn_folders, tmp_path):
    out = tmp_path / "run"
    knn = {"eval__knn_train": knn_folders[0], "eval__knn_val": knn_folders[1]}
    args = _torchrun(
        "--standalone", "--nproc-per-node", "2", HELPER, str(tmp_path), *eval_overrides(demo_dir, out, **knn)
    )  # fmt: skip
    log = tmp_path / "ddp.log"
    with launched((args, log)) as (launcher,):
        assert _finish(launcher, log) == 0, log.read_text()[-3000:]
    s0, s1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert s0["world"] == s1["world"] == 2
    assert all(torch.equal(v, s1["state"][k]) for k, v in s0["state"].items())  # the same steps on both ranks
    ckpt = out / "checkpoints/last.pth"
    assert torch.load(ckpt, weights_only=True)["step"] == 2  # 8 images / (4 x 2 ranks) = 1 step x 2 epochs
    records = eval_lines(out)
    assert [r["step"] for r in records] == [1, 2] and all(r["eval/images"] == 8 for r in records)
    assert all(r["eval/knn_top1"] >= 0.99 for r in records)  # bank and queries gathered from both ranks
    pairs = list_pairs(demo_dir / "fg_masks/images", demo_dir / "fg_masks/masks").pairs
    ref = evaluate(load_encoder(str(ckpt)), pairs, EVAL_SIZE, EVAL_SEGMENTS)  # rank 0's network, all images
    assert records[-1]["eval/unsup_miou"] == pytest.approx(ref.rule.miou, abs=1e-9)
    assert records[-1]["eval/unsup_oracle_miou"] == pytest.approx(ref.oracle.miou, abs=1e-9)


def test_files_that_stop_decoding_mid_run_are_skipped_and_counted(demo_dir, knn_folders, tmp_path, caplog):
    """Checked at start-up, then broken on disk: the evaluation skips them, counts them in the record, and
    warns about a kNN file once."""
    import logging
    import shutil

    from r2o_pretrain.engine.distributed import DistInfo
    from r2o_pretrain.eval.online import OnlineEvaluator

    fg = tmp_path / "fg"
    shutil.copytree(demo_dir / "fg_masks", fg)
    knn_train = shutil.copytree(knn_folders[0], tmp_path / "knn_train")
    cfg = _cfg(demo_dir, images=fg / "images", masks=fg / "masks", knn_train=knn_train, knn_val=knn_folders[1],
               size=EVAL_SIZE, n_segments=EVAL_SEGMENTS, pictures=0)  # fmt: skip
    data = check_eval_data(cfg)
    evaluator = OnlineEvaluator(data, cfg.eval, DistInfo(0, 1, 0, torch.device("cpu")), 0, 18)
    for path in (data.pairs[3].image, data.knn_train.files[0]):
        whole = path.read_bytes()
        path.write_bytes(whole[: len(whole) // 2])
    torch.manual_seed(0)
    encoder = ResNetEncoder(18)
    with caplog.at_level(logging.WARNING, logger="r2o"):
        records = [evaluator.run(encoder, 4, lambda: False)[0] for _ in range(2)]
    for record in records:
        assert record["eval/images"] == len(data.pairs) - 1 and record["eval/skipped_images"] == 1
        assert record["eval/knn_skipped_images"] == 1 and record["eval/knn_top1"] >= 0.99
    warnings = [r.getMessage() for r in caplog.records if "kNN: skipped" in r.getMessage()]
    assert len(warnings) == 1 and str(data.knn_train.files[0]) in warnings[0]


# ---------------------------------------------------------------- kNN


def test_knn_vote_on_hand_made_vectors():
    bank = torch.nn.functional.normalize(torch.tensor([[1.0, 0], [0.9, 0.1], [0, 1.0], [0.1, 0.9]]), dim=1)
    labels = torch.tensor([0, 0, 1, 1])
    queries = torch.nn.functional.normalize(torch.tensor([[1.0, 0.2], [0.2, 1.0]]), dim=1)
    assert knn_predict(bank, labels, queries, 2, k=2).tolist() == [0, 1]
    assert knn_predict(bank, labels, queries, 2, k=20).tolist() == [0, 1]  # k capped at the bank size
    # weights exp(sim / T): one very close neighbour outvotes two far ones at low temperature
    bank2 = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0]]), dim=1)
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.3]]), dim=1)
    assert knn_predict(bank2, torch.tensor([0, 1, 1]), q, 2, k=3, temperature=0.07).tolist() == [0]
    assert top1(torch.tensor([0, 1, 1]), torch.tensor([0, 1, 0])) == pytest.approx(2 / 3)


def _knn_accuracy(train: Path, val: Path) -> float:
    torch.manual_seed(0)
    encoder = ResNetEncoder(18).eval()
    bank = list_labelled(train)
    queries = list_labelled(val, bank.classes)
    feats = [pooled_features(encoder, torch.stack([load_image(f, 32) for f in s.files])) for s in (bank, queries)]
    pred = knn_predict(feats[0], torch.tensor(bank.labels), feats[1], len(bank.classes))
    return top1(pred, torch.tensor(queries.labels))


def test_knn_top1_is_near_100_on_colour_classes_and_near_chance_on_random_labels(knn_folders, tmp_path):
    assert _knn_accuracy(*knn_folders) == 1.0
    rng = np.random.default_rng(0)
    for split, n in (("train", 120), ("val", 120)):
        for c in range(4):
            (tmp_path / split / f"c{c}").mkdir(parents=True)
        for i in range(n):  # the same kind of noise picture in every class: the label says nothing
            img = rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)
            Image.fromarray(img).save(tmp_path / split / f"c{rng.integers(4)}" / f"{i}.png")
    acc = _knn_accuracy(tmp_path / "train", tmp_path / "val")
    assert 0.1 <= acc <= 0.4, acc  # chance: 0.25 (120 queries: a 95% interval of about +-0.08)


# ---------------------------------------------------------------- bad input, dry run


def _cfg(demo_dir: Path, **eval_values: object):
    return load_config(
        ROOT / "configs/pretrain/demo.yaml", [f"data.root={demo_dir / 'images'}", *[
            f"eval.{k}={v}" for k, v in {"every_epochs": 1, **eval_values}.items()
        ]],
    )  # fmt: skip


def test_bad_eval_data_is_a_config_error_naming_file_and_setting(demo_dir, knn_folders, tmp_path, capsys, caplog):
    fg = demo_dir / "fg_masks"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    rgb = np.zeros((32, 32, 3), np.uint8)
    Image.fromarray(rgb).save(images / "a.png")
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(masks / "a.png")  # another size
    one_class = tmp_path / "one"
    (one_class / "only").mkdir(parents=True)
    Image.fromarray(rgb).save(one_class / "only" / "x.png")
    one_with_images = tmp_path / "one_with_images"  # two class folders, images in one
    (one_with_images / "a").mkdir(parents=True)
    (one_with_images / "b").mkdir()
    Image.fromarray(rgb).save(one_with_images / "a" / "x.png")
    (one_with_images / "b" / "readme.txt").write_text("no images here")
    cases = [
        ({"images": tmp_path / "none", "masks": masks}, ["eval.images", "none", "is not a folder"]),
        ({"images": images, "masks": masks}, ["eval.masks", "a.png is 16x16 but image", "32x32"]),
        ({"images": images, "masks": fg / "masks"}, ["eval.images", "missing mask", "a.png"]),
        ({"images": tmp_path / "masks_only", "masks": tmp_path / "masks_only"}, ["no image/mask pairs", "empty"]),
        ({"images": fg / "images", "masks": fg / "masks", "knn_train": one_class,
          "knn_val": knn_folders[1]}, ["eval.knn_train", "images of 1 class(es) (only", "at least 2 classes"]),
        ({"images": fg / "images", "masks": fg / "masks", "knn_train": one_with_images,
          "knn_val": one_with_images}, ["eval.knn_train", "images of 1 class(es) (a; 2 class folder(s)"]),
        ({"images": fg / "images", "masks": fg / "masks", "knn_train": knn_folders[0],
          "knn_val": tmp_path / "nope"}, ["eval.knn_val", "nope"]),
        ({"images": ""}, ["eval.every_epochs=1 needs eval.images and eval.masks"]),
    ]  # fmt: skip
    (tmp_path / "masks_only").mkdir()
    for values, words in cases:
        with pytest.raises(ConfigError) as err:
            check_eval_data(_cfg(demo_dir, **values))
        assert all(w in str(err.value) for w in words), (values, str(err.value))
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(masks / "a.png")
    with caplog.at_level("WARNING", logger="r2o"):  # usable, but scores every image as all background
        assert len(check_eval_data(_cfg(demo_dir, images=images, masks=masks)).pairs) == 1
    assert "1 of 1 masks have no foreground as read (first: " in caplog.text and "a.png" in caplog.text
    (images / "a.png").write_bytes(b"not a png")
    with pytest.raises(ConfigError, match=r"eval\.images=.*image .*a\.png: cannot decode image"):
        check_eval_data(_cfg(demo_dir, images=images, masks=masks))
    with pytest.raises(ConfigError, match="eval.every_epochs must be >= 0"):
        _cfg(demo_dir, every_epochs=-1)
    # tools/pretrain.py: exit 2 at start-up, before any step
    out = tmp_path / "cli"
    code = load_tool("pretrain").main(eval_overrides(demo_dir, out, eval__images=images, eval__masks=masks))
    err = capsys.readouterr().err
    assert code == 2 and f"image {images / 'a.png'}: cannot decode image" in err, err[-2000:]
    assert not (out / "metrics.jsonl").exists()


def test_demo_config_evaluates_only_on_the_demo_and_dry_run_states_the_cost(demo_dir, knn_folders, tmp_path, capsys):
    assert check_eval_data(load_config(ROOT / "configs/pretrain/demo.yaml", [f"data.root={demo_dir}"])) is None
    demo = load_config(ROOT / "configs/pretrain/demo.yaml", [f"data.demo_dir={demo_dir}"])
    data = check_eval_data(demo)
    assert data is not None and len(data.pairs) == 8 and data.images == str(demo_dir / "fg_masks/images")
    assert load_tool("pretrain").main(["--dry-run", *eval_overrides(demo_dir, tmp_path / "unused")]) == 0
    stdout = capsys.readouterr().out
    assert "online evaluation: every 1 epoch(s) and at the end: 2 evaluations of 8 image/mask pairs" in stdout
    assert "% of an epoch of 8 images" in stdout
    assert "on a GPU (measured on an H200): 68 trained-image equivalents per evaluation" in stdout  # 8 x 8.44
    # with kNN folders: priced at the images they hold (12 + 6), not at eval.knn_max_images (10,000 each)
    knn = {"eval__knn_train": knn_folders[0], "eval__knn_val": knn_folders[1]}
    assert load_tool("pretrain").main(["--dry-run", *eval_overrides(demo_dir, tmp_path / "unused", **knn)]) == 0
    stdout = capsys.readouterr().out
    assert "kNN top-1 with 12 bank and 6 val images" in stdout, stdout[-1500:]
    per_eval = 8 * 0.259 + 18 * 0.166  # COST_SEGMENT per pair + COST_KNN per kNN image, in trained images
    assert f"estimated cost: {per_eval:,.0f} trained-image equivalents per evaluation" in stdout
    # eval.images=demo while training on another folder: the dry run says it is off, as the run will be
    assert load_tool("pretrain").main(["--dry-run", f"data.root={demo_dir / 'images'}", "train.batch_size=8"]) == 0
    stdout = capsys.readouterr().out
    assert "online evaluation: off (eval.images=demo evaluates on the demo scenes only" in stdout, stdout[-800:]
    assert "evaluations of" not in stdout


def test_a_capped_listing_is_evenly_spaced_over_it():
    from r2o_pretrain.eval.sampling import evenly_spaced

    assert evenly_spaced(10, 0) == evenly_spaced(10, 10) == evenly_spaced(10, 99) == list(range(10))
    assert evenly_spaced(10, 3) == [0, 3, 6]
    picked = evenly_spaced(1000, 7)
    assert picked[0] == 0 and {b - a for a, b in zip(picked, picked[1:])} <= {142, 143}  # gaps of n / limit
    # a sorted class-folder listing (100 per class) capped at 40 keeps 10 of every class
    classes = [i // 100 for i in evenly_spaced(400, 40)]
    assert [classes.count(c) for c in range(4)] == [10, 10, 10, 10]


def test_demo_note_is_for_the_demo_evaluation_only(demo_dir):
    from r2o_pretrain.eval.online import demo_note

    demo = load_config(ROOT / "configs/pretrain/demo.yaml", [f"data.demo_dir={demo_dir}"])
    note = demo_note(demo, 42)
    assert note is not None and "42 steps" in note and "docs/benchmarks.md" in note and "\n" not in note
    assert demo_note(load_config(ROOT / "configs/pretrain/demo.yaml", [f"data.root={demo_dir}"]), 42) is None
    assert demo_note(load_config(ROOT / "configs/pretrain/demo.yaml", ["eval.every_epochs=0"]), 42) is None
    assert demo_note(load_config(ROOT / "configs/pretrain/r2o_r50_imagenet_300ep.yaml"), 42) is None


@pytest.mark.e2e
def test_the_demo_run_says_what_its_evaluation_can_show(demo_dir, tmp_path):
    # the demo's own path (data.demo, eval.images=demo), tiny: 1 epoch of 3 steps, one evaluation (first = last)
    out = tmp_path / "run"
    args = tiny_overrides(demo_dir / "images", out, train__epochs=1, train__batch_size=8, eval__every_epochs=1)
    args = [a for a in args if not a.startswith("data.root=")]
    args += [f"data.demo_dir={demo_dir}", "eval.images=demo", "eval.size=64", "eval.n_segments=20", "eval.pictures=0"]
    r = run_main("tools/pretrain.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert "random init" in log
    notes = [line for line in log.splitlines() if "what the demo's evaluation can show" in line]
    assert len(notes) == 1 and "its 3 steps" in notes[0], log[-1500:]
    assert log.index("unsup. mIoU") < log.index("what the demo's evaluation can show")
