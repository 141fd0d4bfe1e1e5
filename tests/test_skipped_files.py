"""Unreadable files in a user's own folder of photos: each is warned once per run and counted once (across
loader workers, epochs and fallbacks), the totals are exact, and a folder with no decodable image is one
clear error before the first step."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import cv2
import pytest
from conftest import run_main, tiny_overrides
from PIL import Image
from user_data import _photos

from r2o_pretrain.data.dataset import PretrainDataset, build_loader
from r2o_pretrain.data.folder import DatasetError
from r2o_pretrain.data.superpixels import SuperpixelCache
from r2o_pretrain.data.views import TwoViewTransform


def write_photos(folder: Path, n: int) -> list[Path]:
    """``n`` JPEGs cut from scikit-image's bundled photographs (real camera pictures), 96 x 72 px."""
    folder.mkdir(parents=True, exist_ok=True)
    photos, paths = _photos(), []
    for i in range(n):
        photo = photos[i % len(photos)]
        h, w = photo.shape[:2]
        x0 = (i // len(photos)) * w // 4  # another crop of the same photo for the second round
        crop = cv2.resize(photo[:, x0 : x0 + 3 * w // 4], (96, 72), interpolation=cv2.INTER_AREA)
        paths.append(folder / f"photo_{i:02d}.jpg")
        Image.fromarray(crop).save(paths[-1], quality=90)
    return paths


def write_bad_pair(folder: Path, good: Path) -> list[Path]:
    """Two unusable files side by side in the listing order (so one's fallback runs into the other):
    a web page saved as .jpg and a photo cut short."""
    fake, cut = folder / "photo_00a.jpg", folder / "photo_00b.jpg"
    fake.write_text("<html><body>404 Not Found</body></html>")
    data = good.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    return [fake, cut]


def _dataset(root) -> PretrainDataset:
    return PretrainDataset(str(root), TwoViewTransform(32, 32), SuperpixelCache(None, 10), seed=0, min_image_size=16)


def test_loader_reports_each_unusable_file_by_path_from_every_worker(tmp_path):
    photos = write_photos(tmp_path / "photos", 10)
    bad = write_bad_pair(tmp_path / "photos", photos[0])
    ds = _dataset(tmp_path / "photos")
    loader, sampler = build_loader(ds, batch_size=4, num_workers=2)
    reports: Counter = Counter()
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ds.set_epoch(epoch)
        for batch in loader:
            reports.update(path for path, _ in batch["skipped"])
    assert set(reports) == {str(p) for p in bad}
    # each bad file is passed over at its own index, the second also as the first one's fallback, in every
    # epoch: the raw reports overstate, which is why the trainer counts distinct paths
    assert sum(reports.values()) > len(bad)


def test_folder_without_a_decodable_image_is_one_error_naming_it(tmp_path):
    folder = tmp_path / "fakes"
    folder.mkdir()
    for i in range(70):  # more than the loader's old 64-file fallback limit
        (folder / f"img_{i:03d}.jpg").write_text(f"not a picture {i}")
    with pytest.raises(DatasetError) as err:
        _dataset(folder)
    text = str(err.value)
    assert str(folder) in text and "none of the 70 image files" in text and "img_000.jpg" in text


def _skip_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "skipped (for the rest of the run)" in line]


def _summary(log: str) -> int:
    m = re.search(r"(\d+) unreadable image file\(s\) were skipped in this run", log)
    return int(m.group(1)) if m else 0


@pytest.mark.e2e  # a short training (2 epochs of 3 steps, 2 loader workers)
def test_training_warns_and_counts_each_unreadable_file_once(tmp_path):
    """A list file of real photos with two unusable files and two missing paths, each pair side by side."""
    photos = write_photos(tmp_path / "photos", 8)
    bad = write_bad_pair(tmp_path / "photos", photos[0])
    missing = [tmp_path / "gone" / "a.jpg", tmp_path / "gone" / "b.jpg"]
    listing = tmp_path / "train.txt"  # 12 entries: 3 full batches of 4 per epoch, every entry read each epoch
    listing.write_text("\n".join(str(p) for p in [photos[0], *bad, *photos[1:5], *missing, *photos[5:]]) + "\n")
    out = tmp_path / "run"
    args = tiny_overrides(listing, out, data__demo="false", data__num_workers=2, train__epochs=2)
    r = run_main("tools/pretrain.py", *args)
    assert r.returncode == 0, r.stderr[-3000:]
    log = (out / "log.txt").read_text()
    lines = _skip_lines(log)
    assert len(lines) == 4, lines
    for path in [*bad, *missing]:
        assert sum(str(path) in line for line in lines) == 1, (path, lines)
    assert _summary(log) == 4
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["step"] == 6 and records[-1]["skipped_images"] == 4


def test_training_on_a_folder_of_fake_jpgs_stops_before_the_first_step(tmp_path):
    folder = tmp_path / "fakes"
    folder.mkdir()
    for i in range(70):
        (folder / f"img_{i:03d}.jpg").write_bytes(b"\xff\xd8 not really a jpeg " + bytes([i]))
    out = tmp_path / "run"
    r = run_main("tools/pretrain.py", *tiny_overrides(folder, out, data__demo="false"))
    assert r.returncode == 2
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(folder) in errors[0] and "Point data.root" in errors[0]
    assert "Traceback" not in r.stderr and "skipped" not in r.stderr
    assert not (out / "checkpoints").exists() and not (out / "metrics.jsonl").exists()
