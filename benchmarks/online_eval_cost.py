#!/usr/bin/env python
"""What the online evaluation costs against training, per image, on this machine (CPU or GPU).

One evaluated image (``OnlineEvaluator.run`` of the trainer, steady state: SLIC cached, baselines done) and
its parts — the encoder's c4 forward, the pooling + k-means (K=2) on the CPU, the scores — against one
trained image of an R2O step (ResNet-50, views and raw view at 224 px, bf16 autocast + channels_last on a
GPU, fp32 on a CPU). The ratio is the evaluation's cost in trained images; with the ImageNet defaults
(1,000 pairs every 5 epochs, 1,281,167 images an epoch) it gives the share of an epoch:

  python benchmarks/online_eval_cost.py                       (GPU if there is one; ~1 min on a GPU)
  python benchmarks/online_eval_cost.py --depth 18 --size 112 --images 16 --batch 8    (a quick CPU look)

The images are the demo's fg-mask scenes (tools/make_demo_data.py, written to a temporary folder).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import median_time, table
from step import make_batch, make_step

from r2o_pretrain.config import Config
from r2o_pretrain.engine.distributed import DistInfo
from r2o_pretrain.eval.online import OnlineEvaluator, check_eval_data
from r2o_pretrain.eval.unsup_seg import image_scores, two_way_labels
from r2o_pretrain.model.encoder import ResNetEncoder

ROOT = Path(__file__).resolve().parents[1]
IMAGENET = 1_281_167


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--depth", type=int, default=50)
    p.add_argument("--size", type=int, default=224, help="eval.size (the step trains at 224 px, as on ImageNet)")
    p.add_argument("--images", type=int, default=64, help="evaluated pairs")
    p.add_argument("--batch", type=int, default=128, help="training batch of the step measured")
    p.add_argument("--k", type=int, default=64, help="K of the step measured (the curriculum starts at 128)")
    a = p.parse_args(argv)
    device = torch.device(a.device)
    gpu = device.type == "cuda"
    if gpu:
        torch.backends.cudnn.benchmark = True  # as the trainer sets them
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    tmp = Path(tempfile.mkdtemp(prefix="r2o_eval_cost_"))
    subprocess.run(
        [sys.executable, str(ROOT / "tools/make_demo_data.py"), str(tmp), "--train", "1", "--val", "1",
         "--fg", str(a.images)],
        check=True, capture_output=True,
    )  # fmt: skip
    cfg = Config()
    cfg.eval.every_epochs, cfg.eval.size, cfg.eval.max_images = 5, a.size, 0
    cfg.eval.images, cfg.eval.masks = str(tmp / "fg_masks/images"), str(tmp / "fg_masks/masks")
    data = check_eval_data(cfg)
    assert data is not None
    info = DistInfo(rank=0, world_size=1, local_rank=0, device=device)
    evaluator = OnlineEvaluator(data, cfg.eval, info, seed=0, depth=a.depth)
    torch.manual_seed(0)
    encoder = ResNetEncoder(a.depth).to(device)
    if gpu:
        encoder = encoder.to(memory_format=torch.channels_last)  # the trainer's fast path
    n = len(data.pairs)

    def evaluation() -> None:
        evaluator.run(encoder, 4, lambda: False)
        sync(device)

    tic = time.perf_counter()
    evaluation()  # SLIC, the random-init and colour rows, the picture
    first = time.perf_counter() - tic
    t_eval = median_time(evaluation, repeats=3, warmup=0) / n

    samples = [evaluator._sample(i) for i in range(n)]
    encoder.eval()
    x = torch.stack([s[0] for s in samples]).to(device)

    def forward() -> None:
        with torch.no_grad():
            for i in range(n):
                encoder.forward_c4(x[i : i + 1])
        sync(device)

    def forward_batched() -> None:
        with torch.no_grad():
            for i in range(0, n, 16):
                encoder.forward_c4(x[i : i + 16])
        sync(device)

    def segment_all() -> list:
        return [two_way_labels(encoder, s[0], s[1]) for s in samples]

    labels = segment_all()

    def scores() -> None:
        for lab, s in zip(labels, samples):
            image_scores(lab, s[2])

    t_forward = median_time(forward, repeats=3) / n
    t_forward_b = median_time(forward_batched, repeats=3) / n
    t_segment = median_time(segment_all, repeats=3) / n
    t_scores = median_time(scores, repeats=3) / n
    t_picture = median_time(lambda: evaluator.picture(encoder, 4), repeats=3)

    batch = make_batch(a.batch, 224, 224)
    amp = torch.bfloat16 if gpu else None
    step = make_step("r2o", a.depth, batch, a.k, device.type, amp, gpu, hidden=4096)
    t_train = median_time(step, repeats=5, warmup=2) / a.batch
    ratio = t_eval / t_train

    what = f"ResNet-{a.depth}, {a.size} px, {n} pairs, {device.type}"
    name = torch.cuda.get_device_name() if gpu else "CPU"
    print(f"{name}, torch {torch.__version__}; first evaluation (SLIC + random/colour rows) {first:.2f} s")
    rows = [
        [what, f"trained image (R2O step, batch {a.batch}, K {a.k}{', bf16 + NHWC' if gpu else ''})",
         f"{t_train * 1e3:.2f} ms", "1 (baseline)"],
        [what, "evaluated image, whole OnlineEvaluator.run", f"{t_eval * 1e3:.2f} ms", f"{ratio:.2f}"],
        [what, "  c4 forward, batch 1", f"{t_forward * 1e3:.2f} ms", f"{t_forward / t_train:.2f}"],
        [what, "  c4 forward, batch 16 (per image)", f"{t_forward_b * 1e3:.2f} ms", f"{t_forward_b / t_train:.2f}"],
        [what, "  segment (forward + pooling + k-means K=2)", f"{t_segment * 1e3:.2f} ms", f"{t_segment / t_train:.2f}"],
        [what, "  scores (fg rule + oracle)", f"{t_scores * 1e3:.2f} ms", f"{t_scores / t_train:.2f}"],
        [what, f"  picture ({cfg.eval.pictures} images, once per evaluation)", f"{t_picture * 1e3:.1f} ms", ""],
    ]  # fmt: skip
    print(table(rows, ["setting", "measurement", "time per image", "trained images"]))
    per_eval = 1000 * ratio + t_picture / t_train
    print(
        f"ImageNet defaults (eval.max_images=1000, eval.every_epochs=5): {per_eval:,.0f} trained images per "
        f"evaluation = {100 * per_eval / IMAGENET:.3f}% of an epoch, {100 * per_eval / IMAGENET / 5:.3f}% averaged "
        "over the 5 epochs between two (sharding over W ranks divides both by W)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
