"""Every weights reader refuses every file it cannot read with its own error naming the file — never a
``KeyError: 101`` from the pickle machine. Fuzzed with a fixed seed: text files, random bytes, torch
``.pth`` zips cut at many lengths, detectron2 ``.pkl`` pickles cut at many lengths; through the library
readers, the command lines' ``main()`` (exit 2), pretraining's resume and both plugins' loaders."""

from __future__ import annotations

import pickle
import string
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_main, tiny_overrides

from r2o_pretrain.engine.checkpoint import CheckpointError, load_training_state
from r2o_pretrain.weights import ConversionError, read_resnet_weights, read_weights_file

SEED = 30
pytestmark = pytest.mark.filterwarnings("ignore:Detected pickle protocol:UserWarning")  # torch.load on random bytes


def _small_torch_file(path: Path) -> Path:
    """A real torch.save zip (a few tensors of a ResNet's names, in an mmengine-style wrapper)."""
    g = torch.Generator().manual_seed(SEED)
    state = {
        "conv1.weight": torch.randn(8, 3, 7, 7, generator=g),
        "bn1.running_mean": torch.randn(8, generator=g),
        "layer1.0.conv1.weight": torch.randn(8, 8, 3, 3, generator=g),
    }
    torch.save({"state_dict": state, "meta": {"iter": 2, "note": "fuzz"}}, path)
    return path


def _small_d2_pickle(path: Path, protocol: int) -> Path:
    """detectron2's .pkl layout: numpy arrays under d2 names, written by pickle."""
    rng = np.random.default_rng(SEED)
    model = {
        "stem.conv1.weight": rng.standard_normal((8, 3, 7, 7)).astype(np.float32),
        "stem.conv1.norm.running_mean": rng.standard_normal(8).astype(np.float32),
        "res2.0.conv1.weight": rng.standard_normal((8, 8, 1, 1)).astype(np.float32),
    }
    with open(path, "wb") as f:
        pickle.dump({"model": model, "__author__": "Detectron2 Model Zoo", "matching_heuristics": True}, f, protocol)
    return path


def unreadable_files(folder: Path) -> list[Path]:
    """About 300 files no reader can use: texts, random bytes, cut zips, cut pickles (fixed seed)."""
    rng = np.random.default_rng(SEED)
    folder.mkdir(parents=True, exist_ok=True)
    files: list[Path] = []

    def write(name: str, data: bytes) -> None:
        path = folder / name
        path.write_bytes(data)
        files.append(path)

    # the issue's two, an empty file, and random printable texts (a README or a log saved as .pth)
    for i, text in enumerate(["hello", "epoch 3", "", "step 22 (epoch 7)\n", "{'model': 1}"]):
        write(f"text_{i}.pth", text.encode())
    printable = np.array(list(string.printable))
    for i in range(50):
        write(f"text_rand_{i}.pth", "".join(rng.choice(printable, rng.integers(1, 300))).encode())
    for i in range(60):  # random bytes, some starting like a zip or a pickle
        head = [b"", b"PK\x03\x04", b"\x80\x02", b"\x80\x04", b"\x80\x05"][i % 5]
        write(f"bytes_{i}.pth", head + rng.bytes(int(rng.integers(1, 4000))))
    full_zip = _small_torch_file(folder / "full.pth").read_bytes()
    for n in sorted({int(x) for x in rng.integers(0, len(full_zip), 90)} | {0, 1, 2, 3, 4, len(full_zip) - 1}):
        write(f"zip_cut_{n}.pth", full_zip[:n])
    for protocol in (2, 4):
        full_pkl = _small_d2_pickle(folder / f"full_p{protocol}.pkl", protocol).read_bytes()
        for n in sorted({int(x) for x in rng.integers(1, len(full_pkl), 45)} | {1, 2, len(full_pkl) - 1}):
            write(f"pkl_p{protocol}_cut_{n}.pkl", full_pkl[:n])
    return files


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory) -> list[Path]:
    return unreadable_files(tmp_path_factory.mktemp("unreadable"))


def test_the_uncut_files_are_real(tmp_path):
    """The cut files come from readable ones: the reader reads them whole."""
    assert set(read_weights_file(_small_torch_file(tmp_path / "a.pth"))["state_dict"]) >= {"conv1.weight"}
    for protocol in (2, 4):
        obj = read_weights_file(_small_d2_pickle(tmp_path / f"a{protocol}.pkl", protocol))
        assert obj["model"]["stem.conv1.weight"].shape == (8, 3, 7, 7)


def test_the_issue_examples_are_refused_by_name(tmp_path):
    for text in ("hello", "epoch 3"):
        path = tmp_path / "weights.pth"
        path.write_text(text)
        with pytest.raises(ConversionError) as err:
            read_weights_file(path)
        assert str(path) in str(err.value) and "truncated" in str(err.value)
        r = run_main("tools/convert.py", str(path), str(tmp_path / "out.pth"), "--to", "torchvision")
        assert r.returncode == 2 and str(path) in r.stderr and "Traceback" not in r.stderr
        assert not (tmp_path / "out.pth").exists()


def test_library_readers_refuse_every_unreadable_file_by_name(bad_files):
    assert len(bad_files) >= 250
    kinds = {p.name.split("_")[0] for p in bad_files}
    assert kinds == {"text", "bytes", "zip", "pkl"}
    for path in bad_files:
        try:
            read_weights_file(path)  # a valid pickle of something (random bytes can be one) may be returned
        except ConversionError as exc:
            assert str(path) in str(exc), (path, exc)
        with pytest.raises(ConversionError) as err:
            read_resnet_weights(path)
        assert str(path) in str(err.value), path
        with pytest.raises(CheckpointError) as err:  # pretraining's --resume reader
            load_training_state(path)
        assert str(path) in str(err.value), path


def test_command_lines_exit_2_naming_every_unreadable_file(bad_files, tmp_path):
    out = tmp_path / "out.pth"
    for path in bad_files:
        r = run_main("tools/convert.py", str(path), str(out), "--to", "d2")
        assert r.returncode == 2 and str(path) in r.stderr, (path, r.stderr)
        r = run_main("tools/eval_unsup_seg.py", "--checkpoint", str(path), "--images", ".", "--masks", ".")
        assert r.returncode == 2 and str(path) in r.stderr, (path, r.stderr)
    assert not out.exists()


def test_pretrain_resume_exits_2_naming_an_unreadable_file(bad_files, demo_dir, tmp_path):
    for path in (bad_files[0], next(p for p in bad_files if p.name.startswith("zip_cut_"))):
        overrides = tiny_overrides(demo_dir / "images", tmp_path / "run", data__demo="false")
        r = run_main("tools/pretrain.py", "--resume", str(path), *overrides)
        assert r.returncode == 2 and str(path) in r.stderr, r.stderr[-2000:]


def _sample(bad_files: list[Path], n: int) -> list[Path]:
    rng = np.random.default_rng(SEED)
    return [bad_files[i] for i in sorted(rng.choice(len(bad_files), n, replace=False))]


def test_detectron2_checkpointer_refuses_unreadable_files_by_name(bad_files):
    from test_weights_security import d2_model

    from r2o_d2 import R2OCheckpointer

    checkpointer = R2OCheckpointer(d2_model())
    for path in _sample(bad_files, 40):
        with pytest.raises(ConversionError) as err:
            checkpointer.load(str(path))
        assert str(path) in str(err.value), path


def test_mmseg_backbone_refuses_unreadable_files_by_name(bad_files):
    from mmseg.registry import MODELS

    import r2o_mmseg  # noqa: F401  (registers R2OResNet)

    for path in _sample(bad_files, 12):  # a backbone build per file (~0.5 s each)
        backbone = MODELS.build(
            dict(type="R2OResNet", depth=18, style="pytorch", init_cfg=dict(type="Pretrained", checkpoint=str(path)))
        )
        with pytest.raises(ConversionError) as err:
            backbone.init_weights()
        assert str(path) in str(err.value), path


def test_mmseg_runner_checkpoint_loading_names_unreadable_files(bad_files):
    """``load_from`` / ``mim test --checkpoint`` / ``--resume``: mmengine's own loader, errors named by R2ORunner."""
    import pickle

    from r2o_mmseg.runner import R2ORunner

    runner = object.__new__(R2ORunner)  # the file is read before the runner's state is used
    for path in _sample(bad_files, 40):
        with pytest.raises((ConversionError, pickle.UnpicklingError)) as err:
            runner.load_checkpoint(str(path))
        assert str(path) in str(err.value), (path, err.value)
    # --resume reads through load_checkpoint: the message names the file once, as --resume's
    runner._has_loaded = False
    for path in _sample(bad_files, 8):
        with pytest.raises((ConversionError, pickle.UnpicklingError)) as err:
            runner.resume(str(path), map_location="cpu")
        text = str(err.value)
        assert text.startswith("--resume ") and text.count(str(path)) == 1 and "load_from" not in text, text
