"""The region refinement module: superpixels grouped into K regions by clustering the target's c4.

R2O_METHOD.md, step 3: pool the target encoder's layer3 map of the raw view under every superpixel,
L2-normalise, run k-means with K clusters over all superpixels of the batch, and paint each
superpixel's cluster id back into a label map of the raw view.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .kmeans import kmeans


def resize_labels(labels: torch.Tensor, size: int) -> torch.Tensor:
    """int64[B,H,W] → int64[B,size,size], nearest neighbour (ids never blend)."""
    return F.interpolate(labels[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()


def superpixel_cell_counts(superpixels: torch.Tensor, grid: tuple[int, int], num_segments: int) -> torch.Tensor:
    """How many pixels of each superpixel fall into each cell of a coarse grid.

    superpixels: int64[B,R,R] ids in [0, num_segments); grid: (h, w).
    returns float[B,num_segments,h*w] — the one-hot superpixel map area-pooled to h×w, unnormalised.
    """
    b, rh, rw = superpixels.shape
    h, w = grid
    dev = superpixels.device
    rows = torch.arange(rh, device=dev) * h // rh
    cols = torch.arange(rw, device=dev) * w // rw
    cell = (rows[:, None] * w + cols[None, :]).expand(b, rh, rw)
    index = (superpixels * (h * w) + cell).reshape(b, -1)
    counts = torch.zeros(b, num_segments * h * w, device=dev)
    counts.scatter_add_(1, index, torch.ones_like(index, dtype=counts.dtype))
    return counts.view(b, num_segments, h * w)


def superpixel_features(c4: torch.Tensor, superpixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean c4 feature of every superpixel, L2-normalised.

    c4: float[B,C,h,w]; superpixels: int64[B,R,R].
    returns (features float[B,S,C], valid bool[B,S]) with S = max id + 1 over the batch;
    ``valid`` is False for ids an image does not use.
    """
    num_segments = int(superpixels.max().item()) + 1
    counts = superpixel_cell_counts(superpixels, c4.shape[-2:], num_segments)
    area = counts.sum(-1)
    weights = counts / area.clamp_min(1)[..., None]
    feats = torch.bmm(weights, c4.float().flatten(2).transpose(1, 2))
    return F.normalize(feats, dim=-1), area > 0


@dataclass
class RegionRefiner:
    """(target c4 of the raw view, superpixels, K) → label map int64[B,Hm,Wm] with ids in [0, K')."""

    kmeans_iters: int = 10
    nearest_resize: bool = True

    @torch.no_grad()
    def __call__(
        self,
        c4: torch.Tensor,
        superpixels: torch.Tensor,
        k: int,
        label_size: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, int]:
        with torch.autocast(c4.device.type, enabled=False):  # pooling and clustering stay fp32 under AMP
            feats, valid = superpixel_features(c4, superpixels)
        # Diverged weights give NaN features; cluster zeros instead so that the step reaches the loss,
        # whose non-finite value the trainer detects on every process at once (no DDP hang).
        feats = torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
        assign, centres = kmeans(feats[valid], k, self.kmeans_iters, generator)
        cluster_of = torch.zeros(valid.shape, dtype=torch.long, device=feats.device)
        cluster_of[valid] = assign
        num_labels = centres.shape[0]
        if self.nearest_resize:
            sp = resize_labels(superpixels, label_size)
            return torch.gather(cluster_of, 1, sp.flatten(1)).view_as(sp), num_labels
        # The official behaviour: one-hot at full size, bilinear resize, argmax (stray boundary ids).
        full = torch.gather(cluster_of, 1, superpixels.flatten(1)).view_as(superpixels)
        onehot = F.one_hot(full, num_labels).permute(0, 3, 1, 2).float()
        small = F.interpolate(onehot, size=(label_size, label_size), mode="bilinear", align_corners=False)
        return small.argmax(1), num_labels
