#!/usr/bin/env python
"""Real-photo object benchmark: r2o vs detcon vs byol (same budget, seeds and optimiser) and random init.

Pretraining: configs/pretrain/demo.yaml's recipe (ResNet-18, LARS, base lr 0.3, cosine K 32 → 4) on
DATA/pretrain/images (tools/make_objects_data.py), views 96 px, raw view 112 px, 50 SLIC segments;
the preset sets epochs and batch. Scores per run (the random-init rows: an untrained ResNet-18 per seed, as
initialised and with BatchNorm statistics from 1,000 pretraining scenes, random_bn):
  (a) unsup:     unsupervised foreground mIoU on DATA/val_single (r2o_pretrain.eval.unsup_seg, fg rule,
                 128 px, 50 segments); the colour-only baseline (mean Lab per superpixel) is scored once;
  (b) probe_c4 / probe_c5: mIoU (14 classes) of a frozen linear per-pixel probe on c4 / c5 features,
                 trained on DATA/train, scored on DATA/val (128 px; benchmarks/ablation_demo.probe_ious);
  (c) fcn:       mIoU of `mim train mmseg configs/r2o_fcn_objects.py` (ResNet-18 FCN, short schedule);
  (d) Mask R-CNN is not run here (optional in the issue; tools/train_net.py --coco-dataset reads DATA/train).
Every (method, seed) writes RESULTS/<method>_s<seed>.json as its scores come in; a rerun skips finished
runs and scores (and resumes a killed pretraining from its last checkpoint). The table: mean ± std over seeds.
The pretraining evaluates itself online (eval.*, r2o_pretrain/eval/online.py) on DATA/val_single at the
end of every epoch, with (a)'s settings, so (a) is the curve's last point; each JSON keeps that curve
("curve": [{step, epoch, k, unsup, unsup_oracle}]) and --plot draws mIoU against step per method
(mean over seeds) with the random-init and colour rows (benchmarks/plot_eval_curves.py).

  python tools/make_objects_data.py /work/data_objects               # once
  python benchmarks/objects_ablation.py [--preset cpu|gpu] [--data /work/data_objects] [--seeds 0 1]
  python benchmarks/objects_ablation.py --smoke                       # everything, tiny budget, own tiny data

Presets: cpu (2 cores, <= 2.5 h: 4 epochs x 156 steps of 16 on the first 2,500 scenes, fp32 unless the CPU
has native bf16; sized from measured step times, see PRESETS), gpu (one H100, <= 8 min: (a)+(b) only, no mmseg
there; untested), smoke (a few minutes; results under --out, not benchmarks/results).
  python benchmarks/objects_ablation.py --table                      # the table of the runs finished so far
  python benchmarks/objects_ablation.py --plot                       # the (a) curves: RESULTS/online_eval.png
  python benchmarks/objects_ablation.py --set optim.base_lr=76.8 --out runs/x --results benchmarks/results/x
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from ablation_demo import load_split, mean_iou, probe_ious
from common import table
from PIL import Image
from plot_eval_curves import plot
from torch.optim.swa_utils import update_bn

from r2o_pretrain.config import load_config
from r2o_pretrain.data.device_augment import to_input_tensor
from r2o_pretrain.engine.run_log import eval_records, read_metrics
from r2o_pretrain.engine.trainer import train
from r2o_pretrain.eval.unsup_seg import evaluate, list_pairs
from r2o_pretrain.model.encoder import ResNetEncoder, load_encoder
from r2o_pretrain.scenes.objects import (
    CLASSES,
    AssetsError,
    objects_dataset_ready,
    write_objects_dataset,
)
from r2o_pretrain.weights.checkpoint_file import atomic_save

ROOT = Path(__file__).resolve().parents[1]

METHODS = ("r2o", "detcon", "byol")
# untrained ResNet-18s: as initialised (eval-mode BatchNorm is the identity: running mean 0, var 1), and with
# its BatchNorm statistics estimated on pretraining scenes (what a pretrained encoder's BN holds)
BASELINES = ("random", "random_bn")
ROW_NAMES = {"random": "random init", "random_bn": "random init, BN stats"}
NUM_CLASSES = 1 + len(CLASSES)
DEFAULT_ASSETS = Path(os.environ.get("R2O_CACHE_DIR", Path.home() / ".cache/r2o")) / "assets"


@dataclass(frozen=True)
class Preset:
    epochs: int
    batch: int
    loader_workers: int
    probe_train: int  # train scenes for the probe (0: all)
    probe_steps: int
    fcn_iters: int  # 0: no mmseg fine-tune
    fcn_batch: int
    view: int = 96
    raw: int = 112
    n_segments: int = 50
    eval_size: int = 128
    extra: tuple[str, ...] = ()  # further pretraining overrides
    pretrain_images: int = 0  # pretrain on the first N scenes of DATA/pretrain/images (0: all)
    bn_images: int = 1000  # random_bn: BatchNorm statistics from the first N pretraining scenes at eval_size
    # probe training labels at 1/8 of the image (16x16 at 128 px; val is scored at 1/4): the full-batch
    # probe's time goes into upsampling logits to the label map, 216 s per probe at 1/4 on 2 cores
    probe_label_stride: int = 8


def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matrix work natively (AVX512-BF16 or AMX). Without it torch emulates
    bf16 and a training step is 10-20x slower than fp32 (measured on an AMD EPYC, docs/benchmarks.md, Performance)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


CPU_FAST_PATH = ("train.amp=bf16", "train.channels_last=true") if cpu_has_native_bf16() else ()

PRESETS = {
    # Measured on this project's 2-core AMD EPYC (no native bf16, so fp32): 11 images/s for an R2O step of
    # 16 at 96/112 px with augment_on=device and 1 loader worker (9.4 with PIL photometrics, 8.3 with
    # 2 workers): ~1.45 s per step. 2.5 h for 6 pretrainings + 8 scorings leaves ~625 steps per run, so:
    # 4 epochs over the first 2,500 scenes (the curriculum K 32 -> 4 gets 4 points) = 625 steps of 16.
    # Where the CPU has native bf16, bf16 autocast + channels_last (docs/benchmarks.md, Performance).
    "cpu": Preset(
        epochs=4,
        batch=16,
        loader_workers=1,
        probe_train=1000,
        probe_steps=300,
        fcn_iters=300,
        fcn_batch=8,
        extra=("data.augment_on=device", *CPU_FAST_PATH),
        pretrain_images=2500,
    ),
    # one H100: batch 128, 5 epochs = 390 steps per run (50,000 images); (a) + (b) only: no mmseg there
    "gpu": Preset(
        epochs=5,
        batch=128,
        loader_workers=12,
        probe_train=0,
        probe_steps=300,
        fcn_iters=0,
        fcn_batch=8,
        extra=("train.amp=bf16", "train.channels_last=true"),
    ),
    "smoke": Preset(
        epochs=1, batch=8, loader_workers=0, probe_train=0, probe_steps=10, fcn_iters=2, fcn_batch=2, eval_size=64
    ),
}
SMOKE_DATA = dict(size=96, num_pretrain=16, num_train=8, num_val=4, num_val_single=4)


def pretrain(method: str, seed: int, p: Preset, data: Path, out: Path) -> Path:
    """Pretrain (resuming a killed run) and return the checkpoint."""
    root = data / "pretrain/images"
    if p.pretrain_images:
        files = sorted(root.glob("*.jpg"))[: p.pretrain_images]
        root = out / f"pretrain_first_{p.pretrain_images}.txt"
        root.parent.mkdir(parents=True, exist_ok=True)
        root.write_text("".join(f"{f}\n" for f in files))
    cfg = load_config(
        ROOT / "configs/pretrain/demo.yaml",
        [
            f"model.method={method}",
            f"train.seed={seed}",
            f"train.epochs={p.epochs}",
            f"train.batch_size={p.batch}",
            f"train.output_dir={out / f'{method}_s{seed}'}",
            "train.regions_png=false",
            "data.demo=false",
            f"data.root={root}",
            f"data.view_size={p.view}",
            f"data.raw_size={p.raw}",
            f"data.n_segments={p.n_segments}",
            f"data.num_workers={p.loader_workers}",
            f"data.superpixel_cache={out / 'superpixel_cache'}",
            "train.keep_every_epochs=1",  # epoch_NNNN.pth: the regions-across-the-curriculum picture
            *online_eval_overrides(p, data),
            *p.extra,
        ],
    )
    return Path(train(cfg, resume="auto").checkpoint)


def online_eval_overrides(p: Preset, data: Path) -> list[str]:
    """(a) during the pretraining, every epoch: the same images, size and segments as (a) (all 300
    val_single pairs at 128 px: ~10 s per evaluation on 2 cores, ~3.5% of a cpu-preset epoch). It leaves
    the training untouched (eval mode, the global RNG restored), so it is not part of the pretrain stamp."""
    return [
        "eval.every_epochs=1",
        f"eval.images={data / 'val_single/images'}",
        f"eval.masks={data / 'val_single/masks'}",
        "eval.max_images=0",
        f"eval.size={p.eval_size}",
        f"eval.n_segments={p.n_segments}",
    ]


def recorded_curve(run_dir: Path) -> list[dict]:
    """The online evaluations in a pretraining's metrics.jsonl: [{step, epoch, k, unsup, unsup_oracle}] (%)."""
    return [
        {
            "step": r["step"],
            "epoch": r["epoch"],
            "k": r["k"],
            "unsup": 100 * r["eval/unsup_miou"],
            "unsup_oracle": 100 * r["eval/unsup_oracle_miou"],
        }
        for r in eval_records(read_metrics(run_dir))
    ]


def curves_and_lines(records: list[dict], colour: dict) -> tuple[dict[str, list], dict[str, float]]:
    """What the (a)-against-step picture draws: method -> one (steps, mIoU %) per seed, and the dashed
    lines (label -> mIoU %: both random-init rows as the mean over their seeds, and the colour row)."""
    curves: dict[str, list] = {}
    for r in records:
        if r.get("curve") and r["method"] in METHODS:
            curves.setdefault(r["method"], []).append(
                ([c["step"] for c in r["curve"]], [c["unsup"] for c in r["curve"]])
            )
    flat = {}
    for method, label in (("random", "random init"), ("random_bn", "random init, BN stats")):
        values = [r["scores"]["unsup"] for r in records if r["method"] == method and "unsup" in r["scores"]]
        if values:
            flat[label] = statistics.mean(values)
    flat["colour (Lab)"] = colour["unsup"]
    return curves, flat


def plot_curves(records: list[dict], colour: dict, out: Path, note: str) -> Path:
    """(a) against step: each method's recorded curves (mean over seeds); both random-init rows and colour as lines."""
    return plot(*curves_and_lines(records, colour), out, note)


def random_encoder(seed: int, bn_scenes: Sequence[Path] = (), size: int = 128) -> ResNetEncoder:
    """An untrained ResNet-18 (``torch.manual_seed(seed)``); with ``bn_scenes`` its BatchNorm running
    statistics are then estimated on those pictures, resized to ``size`` (``torch.optim.swa_utils.update_bn``:
    a cumulative mean over all of them; the weights stay untrained)."""
    torch.manual_seed(seed)
    encoder = ResNetEncoder(18)
    if bn_scenes:
        pictures = [
            to_input_tensor(np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BICUBIC)))
            for f in bn_scenes
        ]
        update_bn(torch.stack(pictures).split(64), encoder)
    return encoder


def fcn_miou(checkpoint: Path | None, seed: int, p: Preset, data: Path, work: Path) -> float:
    """mIoU (%) of `mim train mmseg configs/r2o_fcn_objects.py` from ``checkpoint`` (None: random init)."""
    cmd = [sys.executable, "-m", "mim", "train", "mmseg", "configs/r2o_fcn_objects.py", "--work-dir", str(work)]
    cmd += ["--gpus", "0", "--cfg-options", f"randomness.seed={seed}", f"train_cfg.max_iters={p.fcn_iters}"]
    cmd += [f"train_cfg.val_interval={p.fcn_iters}", f"train_dataloader.batch_size={p.fcn_batch}"]
    cmd += [f"param_scheduler.0.end={p.fcn_iters}", f"default_hooks.checkpoint.interval={p.fcn_iters}"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "R2O_DATA_ROOT": str(data)}
    env["R2O_CHECKPOINT"] = str(checkpoint) if checkpoint else "none"
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    found = re.findall(r"mIoU: ([\d.]+)", r.stdout + r.stderr)
    if r.returncode != 0 or not found:
        tail = (r.stdout + r.stderr)[-3000:]
        raise RuntimeError(f"mim train mmseg failed (exit {r.returncode}, work dir {work}):\n{tail}")
    return float(found[-1])


class Scorer:
    """Holds the evaluation data once for all runs."""

    def __init__(self, data: Path, p: Preset, device: torch.device) -> None:
        self.p, self.data, self.device = p, data, device
        self.meta = json.loads((data / "objects.json").read_text())
        self.pairs = list_pairs(data / "val_single/images", data / "val_single/masks").pairs
        self.train = load_split(data / "train", "train", p.eval_size, p.probe_train, p.probe_label_stride)
        self.val = load_split(data / "val", "val", p.eval_size)

    def unsup(self, encoder: ResNetEncoder | None) -> dict:
        res = evaluate(encoder.cpu() if encoder is not None else None, self.pairs, self.p.eval_size, self.p.n_segments)
        return {"unsup": 100 * res.rule.miou, "unsup_oracle": 100 * res.oracle.miou}

    def probe(self, encoder: ResNetEncoder, layer: str) -> float:
        enc = encoder.to(self.device)
        try:
            return 100 * mean_iou(probe_ious(enc, self.train, self.val, NUM_CLASSES, self.p.probe_steps, layer))
        finally:
            encoder.cpu()


PRETRAIN_FIELDS = ("epochs", "batch", "view", "raw", "n_segments", "extra", "pretrain_images")
SCORE_FIELDS = {  # the preset fields each score depends on (besides the pretraining)
    "unsup": ("eval_size",),
    "probe_c4": ("eval_size", "probe_train", "probe_steps", "probe_label_stride"),
    "probe_c5": ("eval_size", "probe_train", "probe_steps", "probe_label_stride"),
    "fcn": ("fcn_iters", "fcn_batch"),
}


def _set_aside(path: Path) -> None:
    stale = path.with_name(path.name + ".stale")
    shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    path.rename(stale)


def run(method: str, seed: int, p: Preset, scorer: Scorer, out: Path, results: Path) -> dict:
    """Pretrain and score one (method, seed); resumes and skips what RESULTS already holds for the same
    data and settings, and sets aside (*.stale) what was made with other data or pretraining settings."""
    path, run_dir = results / f"{method}_s{seed}.json", out / f"{method}_s{seed}"
    settings = json.loads(json.dumps(asdict(p)))
    pretrain_stamp = {"data": {k: scorer.meta[k] for k in ("version", "size", "seed", "counts")}}
    pretrain_stamp.update({k: settings[k] for k in PRETRAIN_FIELDS})
    score_settings = {key: {k: settings[k] for k in fields} for key, fields in SCORE_FIELDS.items()}
    rec = json.loads(path.read_text()) if path.is_file() else {}
    stamp_file = run_dir / "benchmark_stamp.json"
    old_stamp = json.loads(stamp_file.read_text()) if stamp_file.is_file() else None
    if (rec and rec.get("pretrain_stamp") != pretrain_stamp) or (old_stamp and old_stamp != pretrain_stamp):
        print(f"{method} seed {seed}: made with other data or pretraining settings: set aside as *.stale", flush=True)
        for old in (path, run_dir):
            if old.exists():
                _set_aside(old)
        rec = {}
    rec = rec or {"method": method, "seed": seed, "pretrain_stamp": pretrain_stamp, "scores": {}, "seconds": {}}
    wanted = ["unsup", "probe_c4", "probe_c5"] + (["fcn"] if scorer.p.fcn_iters else [])
    used = rec.setdefault("score_settings", {})
    for key in wanted:  # a score made with other scoring settings is made again (the pretraining is kept)
        if key in rec["scores"] and used.get(key) != score_settings[key]:
            for stale in (key, "unsup_oracle") if key == "unsup" else (key,):
                rec["scores"].pop(stale, None)
    if method not in BASELINES:
        run_dir.mkdir(parents=True, exist_ok=True)
        stamp_file.write_text(json.dumps(pretrain_stamp, indent=1))
    if all(k in rec["scores"] for k in wanted):
        if method not in BASELINES and not rec.get("curve") and recorded_curve(run_dir):
            rec["curve"] = recorded_curve(run_dir)
            path.write_text(json.dumps(rec, indent=1))
        print(f"{method} seed {seed}: done before ({path})", flush=True)
        return rec

    def save() -> None:
        path.write_text(json.dumps(rec, indent=1))

    t = time.time()
    if method == "random":
        encoder, checkpoint = random_encoder(seed), None
    elif method == "random_bn":
        scenes = sorted((scorer.data / "pretrain/images").glob("*.jpg"))[: p.bn_images]
        encoder, checkpoint = random_encoder(seed, scenes, p.eval_size), run_dir.with_suffix(".pth")
        rec["bn_images"] = len(scenes)
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        atomic_save(encoder.state_dict(), checkpoint)  # the FCN starts from it (torchvision keys)
    else:
        checkpoint = pretrain(method, seed, p, scorer.data, out)
        encoder = load_encoder(str(checkpoint))
        rec["seconds"].setdefault("pretrain", round(time.time() - t, 1))
        rec["curve"] = recorded_curve(run_dir)
        save()
    for key, fn in (
        ("unsup", lambda: scorer.unsup(encoder)),
        ("probe_c4", lambda: scorer.probe(encoder, "c4")),
        ("probe_c5", lambda: scorer.probe(encoder, "c5")),
        ("fcn", lambda: fcn_miou(checkpoint, seed, p, scorer.data, out / f"fcn_{method}_s{seed}")),
    ):
        if key in wanted and key not in rec["scores"]:
            t = time.time()
            value = fn()
            rec["scores"].update(value if isinstance(value, dict) else {key: value})
            used[key] = score_settings[key]
            rec["seconds"][key] = round(time.time() - t, 1)
            save()
    scores = ", ".join(f"{k} {v:.2f}" for k, v in rec["scores"].items())
    print(f"{method} seed {seed}: {scores} ({rec['seconds']})", flush=True)
    return rec


def recorded_runs(results: Path) -> list[dict]:
    """The record of every (method, seed) RESULTS holds (a run cut short: the scores it got)."""
    return [json.loads(f.read_text()) for f in sorted(results.glob("*_s*.json"))]


def summary(records: list[dict], colour: dict, note: str) -> str:
    def fmt(values: list[float]) -> str:
        if not values:
            return "-"
        m = statistics.mean(values)
        return f"{m:.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{m:.2f}"

    keys = ["unsup", "probe_c4", "probe_c5", "fcn"]
    rows = []
    for method in (*METHODS, *BASELINES):
        recs = [r for r in records if r["method"] == method]
        if recs:
            name = ROW_NAMES.get(method, method)
            rows.append(
                [name, str(len(recs)), *[fmt([r["scores"][k] for r in recs if k in r["scores"]]) for k in keys]]
            )
    rows.append(["colour (Lab)", "-", f"{colour['unsup']:.2f}", "-", "-", "-"])
    head = ["method", "seeds", "(a) unsup. fg mIoU", "(b) probe c4 mIoU", "(b) probe c5 mIoU", "(c) FCN mIoU"]
    return table(rows, head) + "\n\n" + note


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--smoke", action="store_true", help="tiny budget and tiny data of its own, a few minutes")
    ap.add_argument("--data", default="/work/data_objects", help="tools/make_objects_data.py's output")
    ap.add_argument("--assets", default=str(DEFAULT_ASSETS), help="assets for --smoke's own data")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--methods", nargs="+", default=[*METHODS, *BASELINES], choices=[*METHODS, *BASELINES])
    ap.add_argument("--table", action="store_true", help="only print the table of the runs RESULTS holds so far")
    ap.add_argument("--plot", action="store_true", help="only draw (a) against step from RESULTS' recorded curves")
    ap.add_argument("--epochs", type=int, default=None, help="pretraining epochs instead of the preset's")
    ap.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="KEY=VALUE",
        help="further pretraining overrides (recorded with each run; use with --out/--results of their own)",
    )
    ap.add_argument("--no-fcn", action="store_true", help="skip (c), the mmseg fine-tune (no mmseg installed)")
    ap.add_argument("--out", default=None, help="runs (default runs/objects_<preset>)")
    ap.add_argument("--results", default=None, help="JSON per run (default benchmarks/results/objects_<preset>)")
    a = ap.parse_args(argv)
    name = "smoke" if a.smoke else a.preset
    p = PRESETS[name] if not a.no_fcn else replace(PRESETS[name], fcn_iters=0)
    p = replace(p, epochs=a.epochs) if a.epochs else p
    p = replace(p, extra=(*p.extra, *a.set)) if a.set else p
    out = Path(a.out or f"runs/objects_{name}")
    results = Path(a.results or (out / "results" if a.smoke else ROOT / f"benchmarks/results/objects_{name}"))
    if a.plot:
        records = recorded_runs(results)
        if not any(r.get("curve") for r in records):
            print(
                f"error: no run in {results} recorded a curve (pretrained before the online evaluation)",
                file=sys.stderr,
            )
            return 2
        colour = json.loads((results / "colour.json").read_text())
        title = f"objects benchmark ({name} preset): (a) unsup. fg mIoU on val_single during pretraining"
        print(plot_curves(records, colour, results / "online_eval.png", title))
        return 0
    if a.table:
        records = recorded_runs(results)
        colour = json.loads((results / "colour.json").read_text())
        seeds = sorted({r["seed"] for r in records})
        print(summary(records, colour, f"finished runs in {results} (seeds {seeds}); settings in each JSON"))
        return 0
    results.mkdir(parents=True, exist_ok=True)
    data = Path(a.data)
    if a.smoke:
        data = out / "data"
        if not objects_dataset_ready(data):
            try:
                write_objects_dataset(data, a.assets, workers=2, **SMOKE_DATA)
            except AssetsError as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
    elif not objects_dataset_ready(data):
        print(f"error: no object dataset in {data}: run python tools/make_objects_data.py {data}", file=sys.stderr)
        return 2
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.time()
    scorer = Scorer(data, p, device)
    colour_path = results / "colour.json"
    data_meta = {k: scorer.meta[k] for k in ("version", "size", "seed", "counts")}
    colour = json.loads(colour_path.read_text()) if colour_path.is_file() else {}
    if colour.get("data") != data_meta or colour.get("eval_size") != p.eval_size:
        colour = {"data": data_meta, "eval_size": p.eval_size, **scorer.unsup(None)}
        colour_path.write_text(json.dumps(colour, indent=1))
    # the bar first (item 4 of the issue: r2o vs random init over every seed), then detcon and byol,
    # seed-major, so that a benchmark cut short has answered the main question
    rank = {m: i for i, m in enumerate(("random", "r2o", *METHODS, "random_bn"))}
    pairs = sorted(
        ((m, s) for m in a.methods for s in a.seeds),
        key=lambda ms: (ms[0] not in ("random", "r2o"), ms[1], rank[ms[0]]),
    )
    for m, s in pairs:
        run(m, s, p, scorer, out, results)
    records = recorded_runs(results)  # also those of earlier invocations (e.g. with other --methods)
    meta = scorer.meta
    note = (
        f"preset {name}: ResNet-18, {p.epochs} epochs x {(p.pretrain_images or meta['counts']['pretrain']) // p.batch} "
        f"steps of {p.batch} on {p.pretrain_images or meta['counts']['pretrain']} scenes "
        f"(views {p.view} px, raw {p.raw} px, {p.n_segments} SLIC segments"
        f"{'; --set ' + ' '.join(a.set) + ' after these' if a.set else ''}); scores at "
        f"{p.eval_size} px on {len(scorer.pairs)} val_single / {len(scorer.train[0])} probe-train / "
        f"{len(scorer.val[0])} val scenes; FCN {p.fcn_iters} iterations; this invocation: {len(pairs)} runs "
        f"(seeds {a.seeds}) in {time.time() - t0:.0f} s; the table: every run in {results}"
    )
    text = summary(records, colour, note)
    print(text)
    (results / "summary.md").write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
