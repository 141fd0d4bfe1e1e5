"""From a list of files to training batches: the pretraining dataset, sampler and loader.

A sample is a pure function of (seed, epoch, index): the augmentation runs under a forked torch RNG
seeded from those three numbers, and the sampler's order depends only on (seed, epoch). Together with
a start offset in the sampler this lets ``--resume`` continue a killed run with the same batches.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..seeding import sample_seed
from .folder import BadImageError, DatasetError, list_images
from .segment_counts import SegmentCounts
from .superpixels import SuperpixelCache
from .views import TwoViewTransform

logger = logging.getLogger(__name__)

MAX_FALLBACKS = 64


class PretrainDataset(Dataset):
    """Images under ``root`` → dicts with views, boxes, raw, superpixels (see TwoViewTransform; views and
    raw are uint8 pictures, normalised on the device by ``device_augment.batch_on_device``).

    A file that cannot be used is skipped with a warning naming it; the next file takes its place
    (so batch sizes stay equal across processes) and the sample records the skip in ``"skipped"``.
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
        self.files = listing.files
        self.skipped_non_images = listing.skipped_non_images
        self.transform = transform
        self.superpixels = superpixels
        self.seed = seed
        self.epoch = 0
        self.min_image_size = min_image_size

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
        skipped: list[str] = []
        for attempt in range(MAX_FALLBACKS):
            i = (index + attempt) % len(self.files)
            try:
                sample = self.load(i)
            except BadImageError as exc:
                logger.warning("skipping %s", exc)
                skipped.append(str(exc))
                continue
            sample["skipped"] = skipped
            return sample
        raise BadImageError(
            f"{MAX_FALLBACKS} consecutive files from {self.files[index]} on could not be read "
            f"(last: {skipped[-1]}); check the dataset."
        )


STACKED = ("boxes", "superpixels", "photometric")
PICTURES = ("views", "raw")  # uint8 [..., 3, H, W] with channels-last strides


def collate(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack tensors (views and raw stay uint8: ``device_augment.batch_on_device`` makes them float on the
    device); ``skipped`` becomes one flat list of messages for the batch; ``segment_counts`` holds the
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
