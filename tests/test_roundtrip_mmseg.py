"""A user's round trip with mmseg on VOC palette PNGs with 255 borders (not the demo's data):
`mim train` (validating on the palette PNGs) → `mim train --resume`, and what the checkpoint reader allows.
`mim test --checkpoint` on a training checkpoint: tests/test_cityscapes_e2e.py."""

import pickle
import re

import numpy as np
import pytest
import torch
from test_mmseg import SMALL_VOC, mim_train
from user_data import write_voc_palette_tree

SMALL = SMALL_VOC


def test_voc_palette_pngs_train_and_resume(r2o_checkpoint, tmp_path):
    root = write_voc_palette_tree(tmp_path / "VOC2012")
    work = tmp_path / "work"
    r = mim_train("configs/r2o_fcn_voc.py", work, r2o_checkpoint, root, *SMALL, "train_cfg.max_iters=2")
    text = r.stdout + r.stderr
    assert r.returncode == 0, text[-4000:]
    assert "loaded 100/100 backbone tensors" in text and "every backbone tensor was loaded" in text
    assert "reverted to BatchNormXd" in text  # SyncBN → BN without distribution, logged by mmengine
    assert re.search(r"mIoU: \d", text)
    assert (work / "iter_2.pth").is_file()

    r = mim_train("configs/r2o_fcn_voc.py", work, r2o_checkpoint, root, *SMALL, "train_cfg.max_iters=4", resume=True)
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
