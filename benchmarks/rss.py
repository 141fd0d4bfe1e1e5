"""Peak resident memory of the demo run (tools/pretrain.py, demo config), in a child process."""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(epochs: int = 1) -> list[list[str]]:
    with tempfile.TemporaryDirectory() as tmp:
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "tools/pretrain.py"),
                f"train.epochs={epochs}",
                f"train.output_dir={tmp}/run",
                "train.regions_png=false",
            ],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    note = "" if peak_kb > before else " (an earlier child was larger)"
    return [
        [
            f"demo run ({epochs} epoch), largest process",
            "peak RSS",
            f"{peak_kb / 1024:.0f} MB{note}",
            f"{peak_kb / 1024 / 4096:.2f} of the 4 GB target",
        ]
    ]
