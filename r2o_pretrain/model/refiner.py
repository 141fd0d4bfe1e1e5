"""The region refinement module: superpixels grouped into K regions by clustering the target's c4.

docs/method.md, "Region refinement": pool the target encoder's layer3 map of the raw view under every superpixel,
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


def _bilinear_taps(in_size: int, out_size: int, device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The two source rows (index int64[out], weight float[out]) of each output row of
    ``F.interpolate(mode="bilinear", align_corners=False)`` without antialiasing."""
    scale = in_size / out_size
    src = ((torch.arange(out_size, device=device, dtype=torch.float32) + 0.5) * scale - 0.5).clamp_min(0)
    i0 = src.floor().long().clamp_max(in_size - 1)
    i1 = (i0 + 1).clamp_max(in_size - 1)
    w1 = src - i0
    return [(i0, 1 - w1), (i1, w1)]


def bilinear_one_hot(labels: torch.Tensor, size: tuple[int, int], num_labels: int) -> torch.Tensor:
    """``F.interpolate(one_hot(labels), size, mode="bilinear")`` without building the full-size one-hot.

    labels int64[B,H,W] in [0, num_labels) → float[B,num_labels,h*w]. A bilinear downscale reads two
    rows and two columns per output cell, so four scatters give the same numbers.
    """
    b, hh, ww = labels.shape
    h, w = size
    dev = labels.device
    out = torch.zeros(b, num_labels * h * w, device=dev)
    cell = torch.arange(h * w, device=dev).view(h, w)
    for rows, wr in _bilinear_taps(hh, h, dev):
        for cols, wc in _bilinear_taps(ww, w, dev):
            tap = labels[:, rows][:, :, cols]  # [B,h,w]
            weight = (wr[:, None] * wc[None, :]).expand(b, h, w)
            out.scatter_add_(1, (tap * (h * w) + cell).reshape(b, -1), weight.reshape(b, -1))
    return out.view(b, num_labels, h * w)


def official_superpixel_features(c4: torch.Tensor, superpixels: torch.Tensor) -> torch.Tensor:
    """The authors' points for the clustering: float[B,S,C], S = max id + 1 over the batch.

    The one-hot superpixel map is resized bilinearly to c4's grid and c4 pooled per id with
    max(area, 1); every slot is kept, so ids an image lacks (or that the resize lost) are zero vectors.
    """
    num_segments = int(superpixels.max().item()) + 1
    weights = bilinear_one_hot(superpixels, tuple(c4.shape[-2:]), num_segments)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1)
    feats = torch.bmm(weights, c4.float().flatten(2).transpose(1, 2))
    return F.normalize(feats, dim=-1)


def superpixel_maps(superpixels: torch.Tensor, size: int) -> torch.Tensor:
    """The authors' superpixels-only masks: the one-hot superpixel map resized bilinearly,
    float[B,S,size,size] (S = max id + 1 over the batch), soft on boundaries."""
    num = int(superpixels.max().item()) + 1
    return bilinear_one_hot(superpixels, (size, size), num).view(-1, num, size, size)


def superpixel_label_map(superpixels: torch.Tensor, size: int, mode: str = "nearest") -> torch.Tensor:
    """The superpixels themselves as the label map int64[B,size,size] (the superpixels-only path):
    nearest resize, or the authors' bilinear resize of the one-hot map + argmax (``official``)."""
    if mode == "nearest":
        return resize_labels(superpixels, size)
    num = int(superpixels.max().item()) + 1
    return bilinear_one_hot(superpixels, (size, size), num).argmax(1).view(-1, size, size)


def paint_clusters(
    superpixels: torch.Tensor, cluster_of: torch.Tensor, size: int, mode: str = "nearest"
) -> torch.Tensor:
    """Label map int64[B,size,size]: each superpixel's cluster id (cluster_of int64[B,S]).

    ``nearest``: nearest resize of the superpixel map, then the ids. ``official`` (the authors'): the
    one-hot superpixel map resized bilinearly, times the ids, summed and truncated — on boundaries this
    makes ids that belong to neither neighbour.
    """
    if mode == "nearest":
        sp = resize_labels(superpixels, size)
        return torch.gather(cluster_of, 1, sp.flatten(1)).view_as(sp)
    b = superpixels.shape[0]
    painted = torch.zeros(b, size, size, device=superpixels.device)
    for rows, wr in _bilinear_taps(superpixels.shape[1], size, superpixels.device):
        for cols, wc in _bilinear_taps(superpixels.shape[2], size, superpixels.device):
            tap = superpixels[:, rows][:, :, cols]
            ids = torch.gather(cluster_of, 1, tap.flatten(1)).view_as(tap).float()
            painted += wr[:, None] * wc[None, :] * ids
    return painted.long()


@dataclass
class RegionRefiner:
    """(target c4 of the raw view, superpixels, K) → label map int64[B,Hm,Wm] with ids in [0, K').

    Training calls it on a batch; the unsupervised evaluation (``eval/unsup_seg.py``, K=2) and the
    region pictures (``viz.py``) on their own images, the same code path."""

    kmeans_iters: int = 200
    until_converged: bool = True
    superpixel_pooling: str = "exact"  # exact | official
    label_map: str = "nearest"  # nearest | official
    kmeans_init: str = "greedy"  # greedy | single (k-means++ seeding)

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
            if self.superpixel_pooling == "official":
                feats = official_superpixel_features(c4, superpixels)
                valid = torch.ones(feats.shape[:2], dtype=torch.bool, device=feats.device)
            else:
                feats, valid = superpixel_features(c4, superpixels)
        return self.cluster(feats, valid, superpixels, k, label_size, generator)

    @torch.no_grad()
    def cluster(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor,
        superpixels: torch.Tensor,
        k: int,
        label_size: int,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Superpixel features float[B,S,D] (``valid`` bool[B,S]) → (label map int64[B,label_size,
        label_size], K'): k-means over the valid superpixels of the batch, ids painted back."""
        # Diverged weights give NaN features; cluster zeros instead so that the step reaches the loss,
        # whose non-finite value the trainer detects on every process at once (no DDP hang).
        feats = torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0)
        assign, centres = kmeans(
            feats[valid], k, self.kmeans_iters, generator, self.until_converged, init=self.kmeans_init
        )
        cluster_of = torch.zeros(valid.shape, dtype=torch.long, device=feats.device)
        cluster_of[valid] = assign
        return paint_clusters(superpixels, cluster_of, label_size, self.label_map), centres.shape[0]
