"""The objects benchmark's (a)-against-step picture (benchmarks/objects_ablation.py --plot): what it draws
from the per-run JSONs, the PNG it writes, and the error when no run recorded a curve."""

import importlib
import json
import sys

import pytest
from conftest import ROOT
from PIL import Image


@pytest.fixture(scope="module")
def ablation():
    sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark imports its neighbours as top-level modules
    try:
        yield importlib.import_module("objects_ablation")
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))


def _curve(*points):
    return [{"step": s, "epoch": i + 1, "k": 4, "unsup": v, "unsup_oracle": v + 2} for i, (s, v) in enumerate(points)]


def _write_results(folder, with_curves=True):
    runs = {
        "r2o_s0": {"method": "r2o", "seed": 0, "curve": _curve((10, 30.0), (20, 34.0)), "scores": {"unsup": 34.0}},
        "r2o_s1": {"method": "r2o", "seed": 1, "curve": _curve((10, 32.0), (20, 36.0)), "scores": {"unsup": 36.0}},
        "byol_s0": {"method": "byol", "seed": 0, "curve": _curve((10, 31.0), (20, 33.0)), "scores": {"unsup": 33.0}},
        "random_s0": {"method": "random", "seed": 0, "scores": {"unsup": 31.0}},
        "random_s1": {"method": "random", "seed": 1, "scores": {"unsup": 33.0}},
        "random_bn_s0": {"method": "random_bn", "seed": 0, "scores": {"unsup": 33.5}},
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, rec in runs.items():
        if not with_curves:
            rec.pop("curve", None)
        (folder / f"{name}.json").write_text(json.dumps(rec))
    (folder / "colour.json").write_text(json.dumps({"unsup": 50.0}))


def test_curves_per_seed_and_the_baseline_lines(ablation, tmp_path):
    _write_results(tmp_path)
    curves, lines = ablation.curves_and_lines(ablation.recorded_runs(tmp_path), {"unsup": 50.0})
    assert sorted(curves) == ["byol", "r2o"]
    assert sorted(curves["r2o"]) == [([10, 20], [30.0, 34.0]), ([10, 20], [32.0, 36.0])]
    assert lines == {"random init": 32.0, "random init, BN stats": 33.5, "colour (Lab)": 50.0}


def test_plot_writes_the_picture_and_refuses_results_without_curves(ablation, tmp_path, capsys):
    _write_results(tmp_path / "with")
    assert ablation.main(["--plot", "--results", str(tmp_path / "with")]) == 0
    with Image.open(tmp_path / "with/online_eval.png") as png:
        assert png.size[0] > 400 and len(png.getcolors(1 << 16) or range(1 << 16)) > 10  # a drawing, not blank
    _write_results(tmp_path / "without", with_curves=False)
    assert ablation.main(["--plot", "--results", str(tmp_path / "without")]) == 2
    assert "no run in" in capsys.readouterr().err
