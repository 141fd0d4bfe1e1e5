"""A user's round trip with mmseg on VOC palette PNGs with 255 borders (not the demo's data): a training
(validating on the palette PNGs) → `mim train --resume`, and what the checkpoint reader allows; VOC2012 without
SBD: the VOC-aug config's message, configs/r2o_fcn_voc2012.py trained on real photos. The trainings before the
resume build the config's own runner in process as `mim train` does (test_mmseg_protocols_e2e.build_runner, the
same --cfg-options): `mim train --resume` is the real command line here. `mim test --checkpoint` on a training
checkpoint: tests/test_cityscapes_e2e.py."""

import pickle
import re

import numpy as np
import pytest
import torch
from conftest import ROOT
from test_mmseg import SMALL_VOC, mim_train
from test_mmseg_protocols_e2e import train_in_process
from user_data import write_voc2012_photo_tree, write_voc_palette_tree

SMALL = SMALL_VOC


def test_voc_palette_pngs_train_and_resume(r2o_checkpoint, tmp_path, monkeypatch):
    root = write_voc_palette_tree(tmp_path / "VOC2012")
    work = tmp_path / "work"
    text = train_in_process("r2o_fcn_voc.py", work, monkeypatch, r2o_checkpoint, root, *SMALL, "train_cfg.max_iters=2")
    assert "loaded 100/100 backbone tensors" in text and "every backbone tensor was loaded" in text
    assert "reverted to BatchNormXd" in text  # SyncBN → BN without distribution, logged by mmengine
    assert re.search(r"mIoU: \d", text)
    assert (work / "iter_2.pth").is_file()

    # the real command line resumes from what the first run left in --work-dir
    resume = [*SMALL, "train_cfg.max_iters=4", "train_cfg.val_interval=5"]  # no validation: the first run had one
    r = mim_train("configs/r2o_fcn_voc.py", work, r2o_checkpoint, root, *resume, resume=True)
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert "resumed epoch: 0, iter: 2" in text and (work / "iter_4.pth").is_file()


class _Attr:
    """Pickles as getattr(owner, name), the way pickle protocol 2 writes a class's method."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def test_checkpoint_reader_allows_history_buffer_statistics_and_nothing_else(tmp_path):
    from mmengine.logging import HistoryBuffer

    import r2o_mmseg  # noqa: F401  (installs the allow-list, as the configs' custom_imports do)

    buffer = HistoryBuffer()
    buffer.update(2.0)
    buffer.update(4.0)
    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "message_hub": {"loss": buffer}}, good)
    loaded = torch.load(good, weights_only=True)
    assert loaded["message_hub"]["loss"].mean() == pytest.approx(3.0)
    assert loaded["message_hub"]["loss"].statistics("max") == pytest.approx(4.0)

    for owner, name in ((np.ndarray, "tofile"), (HistoryBuffer, "__init__"), (HistoryBuffer, "update")):
        bad = tmp_path / f"bad_{name}.pth"
        torch.save({"state_dict": {}, "x": _Attr(owner, name)}, bad)
        with pytest.raises(pickle.UnpicklingError, match="only HistoryBuffer's statistics methods"):
            torch.load(bad, weights_only=True)
    assert getattr not in torch.serialization.get_safe_globals()  # the builtin itself is never allow-listed


def test_voc_aug_config_on_voc2012_alone_names_sbd_and_the_voc2012_config(tmp_path, monkeypatch):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope

    from r2o_mmseg.data_files import DatasetFileError
    from r2o_mmseg.runner import R2ORunner

    root = write_voc2012_photo_tree(tmp_path / "VOC2012")
    monkeypatch.setenv("R2O_DATA_ROOT", str(root))
    cfg = Config.fromfile(str(ROOT / "configs/r2o_fcn_voc.py"))
    init_default_scope("mmseg")
    with pytest.raises(DatasetFileError) as err:  # mmseg alone: "Failed to load `ann_file` .../aug.txt"
        R2ORunner.build_dataloader(cfg.train_dataloader)
    msg = str(err.value)
    assert f"datasets.1.ann_file = {root}/ImageSets/Segmentation/aug.txt: not found" in msg
    assert f"datasets.1.data_prefix.seg_map_path = {root}/SegmentationClassAug: not found" in msg
    assert "SBD" in msg and "configs/r2o_fcn_voc2012.py" in msg and msg.count("VOC-aug protocol") == 1
    assert "datasets.0" not in msg  # train.txt, JPEGImages and SegmentationClass are there
    loader = R2ORunner.build_dataloader(cfg.val_dataloader)  # val.txt alone: nothing missing
    assert len(loader.dataset) == 2


def test_voc2012_config_is_the_voc_config_on_train_txt(tmp_path, monkeypatch):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    root = write_voc2012_photo_tree(tmp_path / "VOC2012", n_train=4, n_val=2)
    monkeypatch.setenv("R2O_DATA_ROOT", str(root))
    cfg = Config.fromfile(str(ROOT / "configs/r2o_fcn_voc2012.py"))
    voc = Config.fromfile(str(ROOT / "configs/r2o_fcn_voc.py"))
    for key in ("model", "val_dataloader", "optim_wrapper", "param_scheduler", "train_cfg", "runner_type"):
        assert cfg[key] == voc[key], key  # only the training set differs
    assert cfg.train_dataloader.dataset.pipeline == voc.train_dataloader.dataset.datasets[0].pipeline
    init_default_scope("mmseg")
    train = DATASETS.build(cfg.train_dataloader.dataset)  # the 4 names of train.txt, palette PNG labels
    assert len(train) == 4 and all("/SegmentationClass/" in train.get_data_info(i)["seg_map_path"] for i in range(4))


@pytest.mark.e2e
def test_voc2012_config_trains_on_train_txt_alone(r2o_checkpoint, tmp_path, monkeypatch):
    root = write_voc2012_photo_tree(tmp_path / "VOC2012", n_train=4, n_val=2)
    work = tmp_path / "work"
    small = [o.replace("datasets.0.", "") for o in SMALL if "datasets.1." not in o]
    text = train_in_process(
        "r2o_fcn_voc2012.py", work, monkeypatch, r2o_checkpoint, root, *small, "train_cfg.max_iters=2"
    )
    assert "every backbone tensor was loaded" in text
    assert re.search(r"mIoU: \d", text) and (work / "iter_2.pth").is_file()
