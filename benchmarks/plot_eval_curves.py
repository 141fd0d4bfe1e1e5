#!/usr/bin/env python
"""Unsupervised object segmentation mIoU against training step, from the online evaluation's records.

Each run directory's metrics.jsonl holds one record per online evaluation (``eval/unsup_miou`` at its
``step``; the once-per-run ``eval/random_unsup_miou`` and ``eval/colour_unsup_miou`` rows in the first).
Runs of the same method (model.method in the run's config.yaml) are drawn as their mean over seeds (a
band from the lowest to the highest seed when there are several); the random-init and colour-only rows
are horizontal lines (mean over the runs).

  python benchmarks/plot_eval_curves.py runs/online_eval_demo/{r2o,detcon,byol} --out docs/online_eval_demo.png
  python benchmarks/objects_ablation.py --plot            # the objects benchmark's recorded curves
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

from r2o_pretrain.engine.run_log import eval_records, read_metrics

STYLE = {"r2o": ("R2O", "C0"), "detcon": ("DetCon", "C1"), "byol": ("BYOL", "C2")}
FLAT_STYLE = {"random init": "0.4", "random init, BN stats": "0.65", "colour (Lab)": "C5"}
Curve = tuple[list[int], list[float]]  # steps, mIoU (%)


def run_curve(run_dir: str | Path, key: str = "eval/unsup_miou") -> Curve:
    """(steps, 100 * key) of a run's online evaluations, in step order (one point per step)."""
    records = eval_records(read_metrics(Path(run_dir)))
    return [r["step"] for r in records], [100 * r[key] for r in records]


def run_baselines(run_dir: str | Path) -> dict[str, float]:
    """The once-per-run rows of a run (%): {"random init": ..., "colour (Lab)": ...} where logged."""
    out = {}
    for r in eval_records(read_metrics(Path(run_dir))):
        for name, key in (("random init", "eval/random_unsup_miou"), ("colour (Lab)", "eval/colour_unsup_miou")):
            if key in r:
                out[name] = 100 * r[key]
    return out


def run_method(run_dir: str | Path) -> str:
    cfg = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    return cfg["model"]["method"]


def plot(curves: Mapping[str, Sequence[Curve]], flat: Mapping[str, float], out: str | Path, title: str) -> Path:
    """curves: method → one (steps, mIoU %) per seed; flat: label → mIoU % (dashed lines). Writes ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    order = {m: i for i, m in enumerate(STYLE)}
    drawn: list[float] = []
    for method, seeds in sorted(curves.items(), key=lambda mc: order.get(mc[0], len(order))):
        seeds = [c for c in seeds if c[0]]
        if not seeds:
            continue
        label, colour = STYLE.get(method, (method, None))
        steps = sorted(set.intersection(*(set(s) for s, _ in seeds)))
        values = [[dict(zip(*c))[s] for s in steps] for c in seeds]
        mean = [statistics.mean(v) for v in zip(*values)]
        drawn += [v for vs in values for v in vs]
        n = f" ({len(seeds)} seeds)" if len(seeds) > 1 else ""
        (line,) = ax.plot(steps, mean, marker="o", ms=3, color=colour, label=label + n)
        if len(seeds) > 1:
            ax.fill_between(steps, [min(v) for v in zip(*values)], [max(v) for v in zip(*values)],
                            color=line.get_color(), alpha=0.15)  # fmt: skip
    # a line far from the curves (colour-only at 50 % over curves at 32-36 %) would flatten them: it is
    # named in the legend with its value and an arrow instead of being drawn
    lo, hi = (min(drawn), max(drawn)) if drawn else (min(flat.values(), default=0), max(flat.values(), default=1))
    span = max(hi - lo, 1.0)
    for name, value in flat.items():
        colour = FLAT_STYLE.get(name, "C6")
        if lo - 2 * span <= value <= hi + 2 * span:
            ax.axhline(value, ls="--", lw=1, color=colour, label=f"{name}")
            lo, hi = min(lo, value), max(hi, value)
        else:
            arrow = "↑ above" if value > hi else "↓ below"
            ax.plot([], [], ls="--", lw=1, color=colour, label=f"{name}: {value:.1f} ({arrow} the plot)")
    ax.set_ylim(lo - 0.15 * span, hi + 0.15 * span)
    ax.set_xlabel("training step")
    ax.set_ylabel("unsupervised object segmentation mIoU (%)")
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="run directories (train.output_dir) with online evaluations")
    ap.add_argument("--out", default="docs/online_eval_demo.png")
    ap.add_argument("--title", default="online evaluation: unsupervised fg mIoU during pretraining")
    a = ap.parse_args(argv)
    curves: dict[str, list[Curve]] = {}
    flat: dict[str, list[float]] = {}
    for run in a.runs:
        curve = run_curve(run)
        if not curve[0]:
            print(f"error: {run}/metrics.jsonl has no online evaluation (eval.every_epochs=0?)", file=sys.stderr)
            return 2
        curves.setdefault(run_method(run), []).append(curve)
        for name, value in run_baselines(run).items():
            flat.setdefault(name, []).append(value)
        print(f"{run}: " + ", ".join(f"step {s}: {v:.2f}" for s, v in zip(*curve)))
    means = {name: statistics.mean(v) for name, v in flat.items()}
    print(", ".join(f"{k} {v:.2f}" for k, v in means.items()))
    print(plot(curves, means, a.out, a.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
