"""How many superpixel ids a batch has, as host integers: what the step needs to know of its region prior
in order to fix its tensor shapes without reading the device back.

The loader's ``collate`` computes them in the worker process (numpy over the CPU label maps: free); the
trainer passes them to the model with the batch. A caller without them (the evaluation, the pictures)
gets them from ``SegmentCounts.of(superpixels)``: host arithmetic for a CPU tensor, one read-back for a
device tensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class SegmentCounts:
    """slots: the batch's largest superpixel id + 1 (S: the points per image of the authors' pooling, the
    masks of the superpixels-only path); present: ids that occur in their image, summed over the images
    (the points of the exact pooling)."""

    slots: int
    present: int

    @classmethod
    def of(cls, superpixels: torch.Tensor | np.ndarray) -> SegmentCounts:
        """int[B,H,W] (or [H,W]) segment ids ≥ 0 → their counts (a device tensor is copied to the host)."""
        labels = superpixels.detach().cpu().numpy() if isinstance(superpixels, torch.Tensor) else superpixels
        labels = np.asarray(labels)
        labels = labels.reshape(-1, labels.shape[-2] * labels.shape[-1]) if labels.ndim >= 2 else labels[None]
        if labels.size == 0:
            raise ValueError(f"no superpixel ids in an array of shape {np.shape(superpixels)}")
        slots = int(labels.max()) + 1
        offsets = (np.arange(labels.shape[0], dtype=np.int64) * slots)[:, None]
        present = int(np.count_nonzero(np.bincount((labels + offsets).ravel(), minlength=labels.shape[0] * slots)))
        return cls(slots, present)
