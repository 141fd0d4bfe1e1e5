"""From a list of files to training batches: the pretraining dataset, sampler and loader.

A sample is a pure function of (seed, epoch, index): the augmentation runs under a forked torch RNG
seeded from those three numbers, and the sampler's order depends only on (seed, epoch). Together with
a start offset in the sampler this lets ``--resume`` continue a killed run with the same batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..seeding import sample_seed
from .folder import BadImageError, DatasetError, list_images, open_rgb
from .segment_counts import SegmentCounts
from .superpixels import SuperpixelCache
from .views import TwoViewTransform


class PretrainDataset(Dataset):
    """Images under ``root`` → dicts with views, boxes, raw, superpixels (see TwoViewTransform; views and
    raw are uint8 pictures, normalised on the device by ``device_augment.batch_on_device``).

    A file that cannot be used is skipped: the next usable file takes its place (so batch sizes stay equal
    across processes) and the sample lists ``(path, reason)`` of every file it skipped in ``"skipped"``.
    The dataset logs nothing itself (its samples are made in loader workers, once per epoch): the training
    loop warns once per file and counts distinct files. A dataset none of whose files decodes is a
    ``DatasetError`` at construction, before any step.
    """

    def __init__(
        self,
        root: str,
        transform: TwoViewTransform,
        superpixels: SuperpixelCache,
        seed: int = 0,
        min_image_size: int = 16,
    ) -> None:
        listing = list_images(root)
        self.root = str(root)
        self.files = listing.files
        self.skipped_non_images = listing.skipped_non_images
        self.transform = transform
        self.superpixels = superpixels
        self.seed = seed
        self.epoch = 0
        self.min_image_size = min_image_size
        self.unreadable: dict[str, str] = {}  # path → reason, as found by this process (each worker has its own)
        self._check_some_file_decodes()

    def _check_some_file_decodes(self) -> None:
        """Decode files in order until one is an image (usually the first); raise DatasetError when none is."""
        for path in self.files:
            try:
                open_rgb(path, self.min_image_size)
                return
            except BadImageError as exc:
                self.unreadable[path] = str(exc)
        first = next(iter(self.unreadable.values()))
        raise DatasetError(
            f"none of the {len(self.files)} image files under {self.root} can be used as an image (first: {first}). "
            "They may be corrupt or truncated, not images at all (a web page or text saved as .jpg), or smaller "
            f"than data.min_image_size={self.min_image_size}. Point data.root at a folder (or list file) of "
            "decodable images: JPEG, PNG, BMP, GIF, TIFF, WebP."
        )

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def load(self, index: int) -> dict[str, Any]:
        path = self.files[index]
        with torch.random.fork_rng(devices=[]):
            # the CPU generator only: torch.manual_seed also queues CUDA/XPU/MTIA seeding, with a Python stack
            # trace each (~1 ms per sample in a worker)
            torch.default_generator.manual_seed(sample_seed(self.seed, self.epoch, index))
            out = self.transform.load(path, self.min_image_size)
        raw_rgb = out.pop("raw_rgb")
        out["superpixels"] = torch.from_numpy(self.superpixels.labels_for(path, raw_rgb))
        out["index"] = index
        return out

    def __getitem__(self, index: int) -> dict[str, Any]:
        """The sample of ``index``, or of the next usable file; ``"skipped"``: [(path, reason)] passed over.
        A file found unusable once is not decoded again by this process."""
        skipped: list[tuple[str, str]] = []
        for attempt in range(len(self.files)):
            i = (index + attempt) % len(self.files)
            path = self.files[i]
            if path in self.unreadable:
                skipped.append((path, self.unreadable[path]))
                continue
            try:
                sample = self.load(i)
            except BadImageError as exc:
                self.unreadable[path] = str(exc)
                skipped.append((path, str(exc)))
                continue
            sample["skipped"] = skipped
            return sample
        raise BadImageError(  # every file became unreadable after the check at construction (deleted, ...)
            f"none of the {len(self.files)} files under {self.root} can be read any more (last: {skipped[-1][1]}); "
            "check the dataset"
        )


STACKED = ("boxes", "superpixels", "photometric")
PICTURES = ("views", "raw")  # uint8 [..., 3, H, W] with channels-last strides


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (views and raw stay uint8: ``device_augment.batch_on_device`` makes them float on the
    device); ``skipped`` becomes one flat list of (path, reason) for the batch; ``segment_counts`` holds the
    superpixel counts the step needs as host ints (counted here, in the worker, from the CPU maps)."""
    batch: dict[str, Any] = {k: torch.stack([s[k] for s in samples]) for k in STACKED if k in samples[0]}
    for k in PICTURES:  # stacked in their channels-last layout (a plain copy, no transpose)
        batch[k] = torch.stack([s[k].movedim(-3, -1) for s in samples]).movedim(-1, -3)
    batch["index"] = torch.tensor([s["index"] for s in samples])
    if "superpixels" in batch:
        batch["segment_counts"] = SegmentCounts.of(batch["superpixels"])
    batch["skipped"] = [m for s in samples for m in s["skipped"]]
    return batch


class ResumableSampler(DistributedSampler):
    """torch's DistributedSampler (drop_last) that can start part-way into an epoch."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int, batch_size: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size
        self.start_batch = 0

    def set_start_batch(self, start_batch: int) -> None:
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        usable = (len(indices) // self.batch_size) * self.batch_size
        return iter(indices[self.start_batch * self.batch_size : usable])

    def __len__(self) -> int:
        return max(0, (self.num_samples // self.batch_size - self.start_batch) * self.batch_size)

    def batches_per_epoch(self) -> int:
        return self.num_samples // self.batch_size


def seed_worker(worker_id: int) -> None:
    """numpy/random per worker from torch's per-worker seed (torch seeds each worker itself)."""
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    dataset: PretrainDataset,
    batch_size: int,
    num_workers: int,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    pin_memory: bool = False,
) -> tuple[DataLoader, ResumableSampler]:
    if len(dataset) < batch_size * world_size:
        raise DatasetError(
            f"the dataset has {len(dataset)} images, fewer than one global batch "
            f"({batch_size} x {world_size} processes): lower train.batch_size or add images"
        )
    sampler = ResumableSampler(dataset, world_size, rank, seed, batch_size)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate,
        pin_memory=pin_memory,
        drop_last=True,
        worker_init_fn=seed_worker,
        persistent_workers=False,
    )
    return loader, sampler
