"""End-to-end pretraining: the CLI, exact resume after a kill, DDP replicas, bad data, NaN stop."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import ROOT, run_main, run_tool, tiny_overrides
from PIL import Image


def read_losses(out):
    losses = {}
    for line in (out / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "loss" not in rec:
            continue  # an online evaluation's record
        assert rec["step"] not in losses, f"step {rec['step']} logged twice"  # a resume drops the re-run steps
        losses[rec["step"]] = rec
    return losses


@pytest.fixture(scope="module")
def full_run(demo_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("full")
    r = run_main(
        "tools/pretrain.py", *tiny_overrides(demo_dir / "images", out, data__num_workers=2, train__regions_png=True)
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r


def test_cli_writes_checkpoint_export_logs_and_picture(full_run):
    out, r = full_run
    assert (out / "checkpoints/last.pth").is_file()
    assert (out / "regions.png").is_file() and Image.open(out / "regions.png").size[0] > 300
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    export = torch.load(out / "export/backbone_torchvision.pth", weights_only=True)
    import torchvision

    net = torchvision.models.resnet18()
    missing, unexpected = net.load_state_dict(export, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
    recs = read_losses(out)
    assert len(recs) == 12  # 24 images / batch 4 = 6 steps x 2 epochs
    # the authors' quarter cosine 8 → 2 over epochs [0, 2]: epoch 1 K = int(cos(pi/4) * 6 + 2) = 6, epoch 2 K = 2
    assert {recs[s]["k"] for s in range(1, 7)} == {6} and {recs[s]["k"] for s in range(7, 13)} == {2}
    assert [recs[s]["epoch"] for s in (1, 6, 7, 12)] == [1, 1, 2, 2]
    # 24 images, batch 4: warm-up 1 * 24 // 4 = 6 steps, T = 2 * 24 // 4 = 12; max lr 0.3 * 4 / 256, x K/16
    assert recs[1]["lr"] == 0.0 and recs[4]["lr"] == pytest.approx(3 / 6 * 0.3 * 4 / 256 * 6 / 16)
    assert recs[1]["tau"] == pytest.approx(0.99) and recs[7]["tau"] == pytest.approx(
        1 - 0.01 * (math.cos(math.pi / 2) + 1) / 2
    )
    # the run-health monitors are logged every step
    for rec in recs.values():
        assert 0 < rec["collapse_std"] < 1 and rec["masks_per_image"] > 0 and 0 < rec["mask_area"] <= 1.0
    assert "exported backbone" in r.stdout


def test_bf16_channels_last_fast_path_trains_and_resumes_exactly(demo_dir, tmp_path):
    """The GPU fast path's code (bf16 autocast, NHWC model) on CPU autocast: the same resume guarantee as fp32
    (whose killed + resumed run is compared with an uninterrupted one in test_run_is_what_was_asked.py): killed
    after step 3, resumed from the checkpoint of step 2, step 3 runs again to the same loss, bit for bit."""
    fast = {"train__amp": "bf16", "train__channels_last": "true", "train__epochs": 1, "train__max_steps": 4}
    args = tiny_overrides(demo_dir / "images", tmp_path / "run", **fast)
    killed = run_tool("tools/pretrain.py", *args, "debug.kill_at_step=3")
    assert killed.returncode == -9, killed.stderr[-3000:]
    assert "running in fp32" not in killed.stderr
    before = read_losses(tmp_path / "run")
    assert sorted(before) == [1, 2, 3]
    resumed = run_tool("tools/pretrain.py", *args, "--resume", "auto")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "at step 2 (" in resumed.stderr
    after = read_losses(tmp_path / "run")
    assert sorted(after) == [1, 2, 3, 4] and all(np.isfinite(after[s]["loss"]) for s in after)
    assert after[3]["loss"] == before[3]["loss"]  # resumed from step 2's state: the same step 3, to the last bit
    state = torch.load(tmp_path / "run/checkpoints/last.pth", weights_only=True)
    assert state["step"] == 4
    assert state["model"]["online_encoder.conv1.weight"].dtype == torch.float32  # autocast keeps fp32 master weights
    export = torch.load(tmp_path / "run/export/backbone_torchvision.pth", weights_only=True)
    assert all(v.is_contiguous() for v in export.values())  # exported NCHW, whatever the training layout


def test_resume_refuses_foreign_checkpoint(demo_dir, tmp_path):
    bad = tmp_path / "foreign.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}}, bad)
    r = run_main("tools/pretrain.py", *tiny_overrides(demo_dir / "images", tmp_path / "o"), "--resume", str(bad))
    assert r.returncode == 2 and "not an r2o training checkpoint" in r.stderr
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(b"PK\x03\x04garbage")
    r = run_main("tools/pretrain.py", *tiny_overrides(demo_dir / "images", tmp_path / "o"), "--resume", str(truncated))
    assert r.returncode == 2 and str(truncated) in r.stderr


def test_a_run_from_scratch_keeps_a_checkpoint_unless_its_run_finished(r2o_checkpoint, tmp_path):
    """unfinished_run_problem: the session's checkpoint (a finished 2-step run, so FINISHED says step 2)
    may be replaced; without the mark, with a mark of another step, in the legacy non-zip format or as a
    file that is not a checkpoint, it is kept, and the reason names the file and what to do."""
    import shutil

    from r2o_pretrain.engine.checkpoint import FINISHED_MARKER, mark_finished, unfinished_run_problem

    assert json.loads((r2o_checkpoint.parent / FINISHED_MARKER).read_text()) == {"step": 2}
    last = tmp_path / "checkpoints/last.pth"
    last.parent.mkdir()
    assert unfinished_run_problem(last) is None  # nothing to keep
    shutil.copy(r2o_checkpoint, last)
    problem = unfinished_run_problem(last)
    assert f"{last} holds a run at step 2 of 2 that did not finish" in problem and "--resume auto" in problem
    mark_finished(last, 2)
    assert unfinished_run_problem(last) is None
    mark_finished(last, 1)  # the mark of an earlier checkpoint, not of this one
    assert "at step 2 of 2 that did not finish" in unfinished_run_problem(last)
    state = torch.load(r2o_checkpoint, weights_only=True)
    del state["stop_step"]  # as written before the entry existed, and in torch's legacy format
    torch.save(state, last, _use_new_zipfile_serialization=False)
    assert "holds a run at step 2 that did not finish" in unfinished_run_problem(last)
    mark_finished(last, 2)
    assert unfinished_run_problem(last) is None
    last.write_bytes(b"not a checkpoint")
    problem = unfinished_run_problem(last)
    assert "is not a readable r2o training checkpoint" in problem and f"delete {last}" in problem


def test_resume_names_the_switch_for_a_timm_lars_state(r2o_checkpoint, demo_dir, tmp_path):
    """A checkpoint written with optim.lars=timm (timm's Lars state), resumed with the default LARS."""
    from timm.optim import Lars

    from r2o_pretrain.model.r2o import R2O

    state = torch.load(r2o_checkpoint, weights_only=True)
    model = R2O(depth=18, projector_hidden=64, projector_out=32, predictor_hidden=64)
    model.load_state_dict(state["model"])
    state["optimizer"] = Lars(model.online_parameters(), lr=0.0).state_dict()
    timm_ckpt = tmp_path / "timm_lars.pth"
    torch.save(state, timm_ckpt)
    own = tiny_overrides(demo_dir / "images", tmp_path / "o", train__epochs=1, train__max_steps=2)  # the run's settings
    r = run_main("tools/pretrain.py", *own, "--resume", str(timm_ckpt))
    assert r.returncode == 2 and str(timm_ckpt) in r.stderr and "optim.lars=timm" in r.stderr


def test_ddp_two_processes_keep_replicas_identical_on_the_fast_path(demo_dir, tmp_path):
    """bf16 autocast + channels_last under DDP (fp32 replicas: test_scale.py's two-node run)."""
    out = tmp_path / "ddp"
    out.mkdir()
    fast = {"train__amp": "bf16", "train__channels_last": "true"}
    r = run_tool(
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        str(ROOT / "tests/helpers/ddp_train.py"),
        str(out),
        *tiny_overrides(demo_dir / "images", out / "run", train__epochs=1, **fast),
        env={"OMP_NUM_THREADS": "1"},
    )
    assert r.returncode == 0, r.stderr[-4000:]
    s0 = torch.load(out / "rank0.pt", weights_only=True)
    s1 = torch.load(out / "rank1.pt", weights_only=True)
    assert s0["world"] == s1["world"] == 2
    init = torch.load(out / "run/checkpoints/last.pth", weights_only=True)
    assert init["step"] == 3  # 24 images / (4 x 2 processes)
    assert len(s0["state"]) > 50
    for key, value in s0["state"].items():  # every parameter, online and target
        assert torch.equal(value, s1["state"][key]), key


def test_training_on_a_folder_with_bad_images_reports_skips(tmp_path):
    from test_data import make_odd_folder

    root = make_odd_folder(tmp_path / "odd")
    # enough good images for two batches of 4
    rng = np.random.default_rng(1)
    for i in range(6):
        Image.fromarray(rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)).save(root / "class_a" / f"extra{i}.png")
    out = tmp_path / "out"
    r = run_main("tools/pretrain.py", *tiny_overrides(root, out, train__epochs=1))
    assert r.returncode == 0, r.stderr[-3000:]
    assert "corrupt.jpg" in r.stderr and "truncated.jpg" in r.stderr
    assert "non-image files" in r.stderr
    last = list(read_losses(out).values())[-1]
    assert last["skipped_images"] >= 3


def test_nan_loss_stops_with_message_and_keeps_last_good_checkpoint(demo_dir, tmp_path):
    out = tmp_path / "nan"
    r = run_main(
        "tools/pretrain.py",
        *tiny_overrides(
            demo_dir / "images", out, optim__base_lr=1e30, optim__warmup_epochs=0, train__checkpoint_every=1
        ),
    )
    assert r.returncode == 3, r.stderr[-3000:]
    assert "NaN" in r.stderr or "nan" in r.stderr
    ckpt = out / "checkpoints/last.pth"
    if ckpt.exists():  # whatever was saved holds finite weights only
        state = torch.load(ckpt, weights_only=True)
        assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_cli_errors_are_clear(tmp_path):
    r = run_main("tools/pretrain.py", "train.nope=1")
    assert r.returncode == 2 and "unknown key 'train.nope'" in r.stderr
    r = run_main("tools/pretrain.py", "model.method=simclr")
    assert r.returncode == 2 and "model.method" in r.stderr
    r = run_main(
        "tools/pretrain.py", "data.demo=false", f"data.root={tmp_path / 'missing'}", f"train.output_dir={tmp_path}"
    )
    assert r.returncode == 2 and "does not exist" in r.stderr
    r = run_tool("tools/pretrain.py", "--help")
    assert r.returncode == 0 and "--resume" in r.stdout and "curriculum.schedule" in r.stdout
    # the built-in default, and what the default config (a run without --config) uses instead
    assert "  eval.max_images = 1000   (demo.yaml: 60)" in r.stdout and "  model.method = 'r2o'\n" in r.stdout


@pytest.mark.parametrize("method", ["detcon", "byol"])
def test_ablation_methods_train(method, demo_dir, tmp_path):
    out = tmp_path / method
    r = run_main(
        "tools/pretrain.py",
        *tiny_overrides(demo_dir / "images", out, train__epochs=1, train__max_steps=2, model__method=method),
    )
    assert r.returncode == 0, r.stderr[-3000:]
    recs = read_losses(out)
    if method == "byol":
        assert {rec["num_labels"] for rec in recs.values()} == {1}
    else:
        assert min(rec["num_labels"] for rec in recs.values()) > 8  # the superpixels themselves


def test_encoder_dims_follow_depth():
    from r2o_pretrain.model.encoder import ResNetEncoder

    for depth, (c4, c5) in {18: (256, 512), 34: (256, 512), 50: (1024, 2048)}.items():
        enc = ResNetEncoder(depth)
        assert (enc.c4_channels, enc.c5_channels) == (c4, c5)
        a, b = enc(torch.randn(2, 3, 64, 64))
        assert a.shape == (2, c4, 4, 4) and b.shape == (2, c5, 2, 2)


def test_channels_last_encoder_takes_strided_views_and_matches_nchw():
    from r2o_pretrain.model.encoder import ResNetEncoder

    torch.manual_seed(0)
    nchw = ResNetEncoder(18).eval()
    nhwc = ResNetEncoder(18).eval()
    nhwc.load_state_dict(nchw.state_dict())
    nhwc = nhwc.to(memory_format=torch.channels_last)
    views = torch.randn(2, 2, 3, 64, 64)  # [B,V,3,S,S] as the loader stacks them; views[:, 1] is a strided slice
    with torch.no_grad():
        c4_a, c5_a = nchw(views[:, 1])
        c4_b, c5_b = nhwc(views[:, 1])
    assert c4_b.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(c4_b, c4_a, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(c5_b, c5_a, rtol=1e-4, atol=1e-4)


def test_bn_sees_both_views_at_once_and_target_gets_them_swapped():
    """The authors' batching: online on cat([v1, v2]), target on cat([v2, v1]); one BN update per forward."""
    from r2o_pretrain.model.r2o import R2O

    torch.manual_seed(0)
    model = R2O(depth=18, method="byol", projector_hidden=32, projector_out=16, predictor_hidden=32).train()
    seen, bn_in = {}, []

    def record(name):
        def hook(module, inputs, output):
            seen.setdefault(name, inputs[0].detach().clone())

        return hook

    model.online_encoder.conv1.register_forward_hook(record("online"))
    model.target_encoder.conv1.register_forward_hook(record("target"))
    model.online_encoder.bn1.register_forward_hook(lambda m, i, o: bn_in.append(i[0].detach().clone()))
    b = 3
    views = torch.randn(b, 2, 3, 64, 64)
    boxes = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 1.0]]).expand(b, 2, 5)
    out = model(views, boxes, torch.randn(b, 3, 64, 64), torch.zeros(b, 64, 64, dtype=torch.long), 1)
    assert torch.equal(seen["online"], torch.cat([views[:, 0], views[:, 1]]))
    assert torch.equal(seen["target"], torch.cat([views[:, 1], views[:, 0]]))
    assert len(bn_in) == 1 and bn_in[0].shape[0] == 2 * b  # one BN pass over both views
    # running mean after one update (momentum 0.1) = 0.1 x the channel mean over all 2B images
    torch.testing.assert_close(model.online_encoder.bn1.running_mean, 0.1 * bn_in[0].mean((0, 2, 3)))
    assert int(out.num_masks) == 2 * b  # one whole-image mask per image, counted in both directions
