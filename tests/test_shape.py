"""Where things live: one seed formula, one depth table, weights/ below engine/, one refiner path."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from r2o_pretrain.model.encoder import ResNetEncoder
from r2o_pretrain.resnet_depths import DEPTHS
from r2o_pretrain.seeding import sample_seed, step_seed
from r2o_pretrain.weights.resnet_keys import infer_depth


def test_derived_seeds_keep_the_values_of_earlier_runs():
    # the formulas checkpoints of earlier runs were trained with: a resumed run must draw the same numbers
    assert sample_seed(3, 5, 7) == (3 * 1_000_003 + 5 * 10_007 + 7 * 7_919 + 12_345) % (2**63 - 1)
    assert step_seed(3, 5, 7) == 3 * 1_000_003 + 5 * 1_009 + 7
    assert sample_seed(2**62, 1, 1) < 2**63 - 1  # fits torch.Generator.manual_seed
    assert len({step_seed(0, s, r) for s in range(50) for r in range(8)}) == 400


@pytest.mark.parametrize("depth", DEPTHS)
def test_depth_table_matches_torchvision_and_the_converter(depth):
    with torch.device("meta"):
        state = ResNetEncoder(depth).state_dict()
    assert infer_depth(state) == depth


def test_weights_package_does_not_import_the_engine(fresh_interpreter):
    # r2o_pretrain.weights imported first, alone, in the fresh interpreter of NO_TRANSFER_STACK below
    assert "weights imports engine: False" in fresh_interpreter.stdout.splitlines()


def test_eval_two_way_labels_are_the_refiner_with_k2():
    from r2o_pretrain.eval.unsup_seg import two_way_labels

    torch.manual_seed(0)
    encoder = ResNetEncoder(18).eval()
    x = torch.randn(3, 64, 64)
    sp = np.repeat(np.repeat(np.arange(16).reshape(4, 4), 16, 0), 16, 1)  # 16 square superpixels
    labels = two_way_labels(encoder, x, sp)
    assert labels.shape == (64, 64) and set(np.unique(labels)) <= {0, 1}
    for i in range(16):  # every superpixel gets one cluster id, painted over all its pixels
        assert len(np.unique(labels[sp == i])) == 1


TRANSFER_STACK = ("mmcv", "mmseg", "mmengine", "mim", "detectron2", "fvcore", "pycocotools", "r2o_d2", "r2o_mmseg")

# Every r2o_pretrain module and tools/pretrain.py imported with the transfer stack made uninstallable (an import
# of it raises, as in the venv of `make demo` = scripts/setup.sh --pretrain-only), then the plan of the demo.
NO_TRANSFER_STACK = f"""
import importlib, importlib.abc, importlib.util, pkgutil, sys
BLOCKED = {TRANSFER_STACK!r}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not installed (blocked by the test)")
sys.meta_path.insert(0, Block())
import r2o_pretrain.weights
print("weights imports engine:", any(m.startswith("r2o_pretrain.engine") for m in sys.modules))
for info in pkgutil.walk_packages(r2o_pretrain.__path__, "r2o_pretrain."):
    importlib.import_module(info.name)
spec = importlib.util.spec_from_file_location("pretrain_tool", "tools/pretrain.py")
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
assert tool.main(["--dry-run", "data.num_examples=1000"]) == 0
print(sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED))
"""


@pytest.fixture(scope="module")
def fresh_interpreter() -> subprocess.CompletedProcess:
    """NO_TRANSFER_STACK run once in a new interpreter (both import checks need one: this one has imported all)."""
    from conftest import ROOT

    return subprocess.run([sys.executable, "-c", NO_TRANSFER_STACK], capture_output=True, text=True, cwd=ROOT)


def test_pretraining_needs_none_of_the_transfer_stack(fresh_interpreter):
    # what `make demo` relies on: it installs neither mmcv/mmseg nor detectron2
    r = fresh_interpreter
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
    assert "steps" in r.stdout  # the dry run printed its plan
