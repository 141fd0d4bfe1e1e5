"""Weight conversion, proven against the real libraries: torchvision → detectron2 / mmseg outputs equal."""

import pickle

import pytest
import torch
import torchvision
from conftest import official_checkpoint, run_main, run_tool
from torch import nn

from r2o_pretrain.weights import ConversionError, read_resnet_weights, write_weights
from r2o_pretrain.weights.resnet_keys import detectron2_to_torchvision, torchvision_to_detectron2


def random_resnet(depth: int, seed: int = 0) -> nn.Module:
    """Random weights and non-trivial BatchNorm statistics, in eval mode."""
    torch.manual_seed(seed)
    net = torchvision.models.__dict__[f"resnet{depth}"](weights=None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return net.eval()


def torchvision_stages(net, x):
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    outs = []
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        x = layer(x)
        outs.append(x)
    return outs


def d2_backbone(depth: int):
    from detectron2.config import get_cfg
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.backbone import build_resnet_backbone

    cfg = get_cfg()
    cfg.MODEL.RESNETS.DEPTH = depth
    cfg.MODEL.RESNETS.STRIDE_IN_1X1 = False
    cfg.MODEL.RESNETS.OUT_FEATURES = ["res2", "res3", "res4", "res5"]
    cfg.MODEL.RESNETS.RES2_OUT_CHANNELS = 64 if depth < 50 else 256
    cfg.MODEL.RESNETS.NORM = "BN"
    cfg.MODEL.BACKBONE.FREEZE_AT = 0
    return build_resnet_backbone(cfg, ShapeSpec(channels=3)).eval()


def load_d2(backbone, pkl_path):
    from detectron2.checkpoint import DetectionCheckpointer

    wrapper = nn.Module()
    wrapper.backbone = backbone
    # the d2 checkpointer matches our names onto backbone.* by its heuristics
    DetectionCheckpointer(wrapper).load(str(pkl_path))
    return backbone


def mmseg_resnet(depth: int, checkpoint):
    from mmseg.models.backbones import ResNet

    net = ResNet(
        depth=depth,
        style="pytorch",
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type="BN", requires_grad=True),
        init_cfg=dict(type="Pretrained", checkpoint=str(checkpoint)),
    )
    net.init_weights()
    net.eval()  # mmseg's ResNet.train() returns None, so no chaining
    return net


@pytest.mark.parametrize("depth", [18, 50])
@pytest.mark.parametrize("source", ["torchvision", "official"])
def test_converted_backbones_match_torchvision(depth, source, tmp_path):
    net = random_resnet(depth)
    src = tmp_path / "in.pth"
    torch.save(net.state_dict() if source == "torchvision" else official_checkpoint(net), src)
    weights = read_resnet_weights(src)
    assert weights.depth == depth
    assert weights.source_format.startswith("r2o-official" if source == "official" else "torchvision")
    write_weights(weights, tmp_path / "out.pkl", "d2")
    write_weights(weights, tmp_path / "out_mm.pth", "mmseg")
    write_weights(weights, tmp_path / "out_tv.pth", "torchvision")

    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = torchvision_stages(net, x)
        d2 = load_d2(d2_backbone(depth), tmp_path / "out.pkl")(x)
        mm = mmseg_resnet(depth, tmp_path / "out_mm.pth")(x)
        tv = torchvision.models.__dict__[f"resnet{depth}"]().eval()
        tv.load_state_dict(torch.load(tmp_path / "out_tv.pth", weights_only=True), strict=False)
        tv_out = torchvision_stages(tv, x)
    for i, name in enumerate(["res2", "res3", "res4", "res5"]):
        torch.testing.assert_close(d2[name], expected[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(mm[i], expected[i], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tv_out[i], expected[i], atol=1e-5, rtol=1e-5)


def test_official_target_encoder_is_selectable(tmp_path):
    net = random_resnet(18)
    torch.save(official_checkpoint(net), tmp_path / "off.pth")
    target = read_resnet_weights(tmp_path / "off.pth", encoder="target")
    assert torch.all(target.state["conv1.weight"] == 1)
    online = read_resnet_weights(tmp_path / "off.pth")  # the default: the online encoder, never _fpn
    torch.testing.assert_close(online.state["conv1.weight"], net.conv1.weight)
    assert any("ignored" in n and "_fpn" in n for n in online.notes)


def test_key_mapping_round_trip():
    for key in torchvision.models.resnet50().state_dict():
        if key.startswith("fc."):
            continue
        assert detectron2_to_torchvision(torchvision_to_detectron2(key)) == key
    assert torchvision_to_detectron2("layer1.0.downsample.1.running_var") == "res2.0.shortcut.norm.running_var"
    assert torchvision_to_detectron2("bn1.weight") == "stem.conv1.norm.weight"


def test_d2_pickle_layout(tmp_path):
    torch.save(random_resnet(18).state_dict(), tmp_path / "in.pth")
    write_weights(read_resnet_weights(tmp_path / "in.pth"), tmp_path / "o.pkl", "d2")
    with open(tmp_path / "o.pkl", "rb") as f:
        obj = pickle.load(f)
    assert obj["__author__"] == "r2o" and obj["matching_heuristics"] is True
    assert "stem.conv1.weight" in obj["model"] and "res5.1.conv2.norm.running_mean" in obj["model"]


def test_refusals_name_the_problem_and_write_nothing(tmp_path):
    net = random_resnet(18)
    state = net.state_dict()
    truncated = tmp_path / "truncated.pth"
    torch.save(state, truncated)
    truncated.write_bytes(truncated.read_bytes()[:2000])
    partial = tmp_path / "partial.pth"
    torch.save({k: v for k, v in state.items() if not k.startswith("layer4.1.")}, partial)
    foreign = tmp_path / "foreign.pth"
    torch.save({"encoder.weight": torch.zeros(3)}, foreign)
    shapes = tmp_path / "shapes.pth"
    bad = dict(state)
    bad["layer2.0.conv1.weight"] = torch.zeros(1, 1, 1, 1)
    torch.save(bad, shapes)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": state, "extra": Evil()}, evil)
    for path, message in [
        (truncated, "not a readable"),
        (partial, "layer4.1.conv1.weight"),
        (foreign, "not a ResNet"),
        (shapes, "shape mismatch"),
        (evil, "--allow-pickle"),
    ]:
        out = tmp_path / f"out_{path.stem}.pkl"
        r = run_main("tools/convert.py", str(path), str(out), "--to", "d2")  # in process: error paths only
        assert r.returncode == 2, (path, r.stderr)
        assert message in r.stderr and str(path) in r.stderr
        assert not out.exists()
        with pytest.raises(ConversionError):
            read_resnet_weights(path)


def test_never_overwrites_input(tmp_path):
    src = tmp_path / "in.pth"
    torch.save(random_resnet(18).state_dict(), src)
    before = src.read_bytes()
    r = run_main("tools/convert.py", str(src), str(src), "--to", "torchvision")  # in process: an error path
    assert r.returncode == 2 and "refusing to overwrite" in r.stderr
    assert src.read_bytes() == before


def test_pretraining_checkpoint_converts_from_the_command_line(r2o_checkpoint, tmp_path):
    ckpt = r2o_checkpoint  # the session's real 2-step pretraining run (checkpoint + export)
    out = ckpt.parent.parent
    for i, target in enumerate(("torchvision", "d2", "mmseg")):
        # the first as a real command line, the others through the same main() in process
        run = run_tool if i == 0 else run_main
        r = run("tools/convert.py", str(ckpt), str(tmp_path / f"o.{target}"), "--to", target)
        assert r.returncode == 0, r.stderr
        assert "r2o-pretrain (online encoder" in r.stdout and "ResNet-18" in r.stdout
    r = run_main(
        "tools/convert.py", str(out / "export/backbone_torchvision.pth"), str(tmp_path / "e.pkl"), "--to", "d2"
    )
    assert r.returncode == 0 and "torchvision" in r.stdout
    exported = torch.load(out / "export/backbone_torchvision.pth", weights_only=True)
    online = read_resnet_weights(ckpt).state
    assert all(torch.equal(online[k], exported[k]) for k in online)
