"""The torchvision files (pretraining's export, tools/convert.py --to torchvision) say how torchvision loads them,
and the stated call, run as printed, loads them with exactly the missing keys it names."""

from __future__ import annotations

import re

import torch
import torchvision
from conftest import run_main
from test_weights import random_resnet

STATED_CALL = re.compile(r"`(torchvision\.models\.resnet\d+\(\)\.load_state_dict\(.+?\))`")


def run_stated_call(text: str):
    """The ``load_state_dict`` call the message states, evaluated as written; its (missing, unexpected)."""
    m = STATED_CALL.search(text)
    assert m, text
    return eval(m.group(1), {"torch": torch, "torchvision": torchvision})


def bn_counters(net: torch.nn.Module) -> set[str]:
    return {k for k in net.state_dict() if k.endswith("num_batches_tracked")}


def test_converted_torchvision_file_loads_as_stated(tmp_path):
    net = random_resnet(18)
    source = tmp_path / "resnet18_with_fc.pth"
    torch.save(net.state_dict(), source)
    out = tmp_path / "r18_tv.pth"
    r = run_main("tools/convert.py", str(source), str(out), "--to", "torchvision")
    assert r.returncode == 0, r.stderr
    result = run_stated_call(r.stdout)
    assert set(result.missing_keys) == {"fc.weight", "fc.bias"} and not result.unexpected_keys
    assert "exactly fc.weight and fc.bias" in r.stdout
    # the file holds no BatchNorm step counters (not weights): torch's BatchNorm fills them, unreported
    assert not bn_counters(net) & set(torch.load(out, weights_only=True))
    loaded = torchvision.models.resnet18()
    loaded.load_state_dict(torch.load(out, weights_only=True), strict=False)
    for key, value in net.state_dict().items():
        if not key.startswith("fc.") and not key.endswith("num_batches_tracked"):
            assert torch.equal(loaded.state_dict()[key], value), key


def test_pretraining_export_loads_as_its_log_states(r2o_checkpoint):
    run = r2o_checkpoint.parent.parent
    line = next(line for line in (run / "log.txt").read_text().splitlines() if "backbone export" in line)
    assert str(run / "export/backbone_torchvision.pth") in line
    result = run_stated_call(line)
    assert set(result.missing_keys) == {"fc.weight", "fc.bias"} and not result.unexpected_keys
    assert "exactly fc.weight and fc.bias" in line
