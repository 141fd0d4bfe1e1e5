"""The region refinement module: superpixels grouped into K regions by clustering the target's c4.

docs/method.md, "Region refinement": pool the target encoder's layer3 map of the raw view under every superpixel,
L2-normalise, run k-means with K clusters over all superpixels of the batch, and paint each
superpixel's cluster id back into a label map of the raw view.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..data.segment_counts import SegmentCounts
from .kmeans import fp32_region, kmeans
from .kmeans_graphs import CUDA_GRAPH_MODES, KMeansGraphs

POINT_SLOT_MULTIPLE = 16  # padded points per image: the batch's mean rounded up to this (few graph shapes)


def num_slots(superpixels: torch.Tensor, num_segments: int | None) -> int:
    """S = the batch's largest id + 1: ``num_segments`` when the caller knows it (the loader's
    ``SegmentCounts.slots``), else read from the tensor (a host synchronisation on a GPU)."""
    return num_segments if num_segments is not None else int(superpixels.max().item()) + 1


def padded_point_count(batch: int, points: int, multiple: int = POINT_SLOT_MULTIPLE) -> int:
    """The k-means's fixed point count for ``points`` points of a batch of ``batch`` images: batch × (the
    points per image, rounded up to ``multiple``) — a handful of shapes over a run, so a handful of graphs."""
    per_image = -(-points // batch)
    return batch * (-(-per_image // multiple) * multiple)


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


def superpixel_features(
    c4: torch.Tensor, superpixels: torch.Tensor, num_segments: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean c4 feature of every superpixel, L2-normalised.

    c4: float[B,C,h,w]; superpixels: int64[B,R,R]; num_segments: S if known (see ``num_slots``).
    returns (features float[B,S,C], valid bool[B,S]) with S = max id + 1 over the batch;
    ``valid`` is False for ids an image does not use (their features are zero).
    """
    num_segments = num_slots(superpixels, num_segments)
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


def official_superpixel_features(
    c4: torch.Tensor, superpixels: torch.Tensor, num_segments: int | None = None
) -> torch.Tensor:
    """The authors' points for the clustering: float[B,S,C], S = max id + 1 over the batch
    (``num_segments`` if known, see ``num_slots``).

    The one-hot superpixel map is resized bilinearly to c4's grid and c4 pooled per id with
    max(area, 1); every slot is kept, so ids an image lacks (or that the resize lost) are zero vectors.
    """
    num_segments = num_slots(superpixels, num_segments)
    weights = bilinear_one_hot(superpixels, tuple(c4.shape[-2:]), num_segments)
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1)
    feats = torch.bmm(weights, c4.float().flatten(2).transpose(1, 2))
    return F.normalize(feats, dim=-1)


def superpixel_maps(superpixels: torch.Tensor, size: int, num_segments: int | None = None) -> torch.Tensor:
    """The authors' superpixels-only masks: the one-hot superpixel map resized bilinearly,
    float[B,S,size,size] (S = max id + 1 over the batch, see ``num_slots``), soft on boundaries."""
    num = num_slots(superpixels, num_segments)
    return bilinear_one_hot(superpixels, (size, size), num).view(-1, num, size, size)


def superpixel_label_map(
    superpixels: torch.Tensor, size: int, mode: str = "nearest", num_segments: int | None = None
) -> torch.Tensor:
    """The superpixels themselves as the label map int64[B,size,size] (the superpixels-only path):
    nearest resize, or the authors' bilinear resize of the one-hot map + argmax (``official``)."""
    if mode == "nearest":
        return resize_labels(superpixels, size)
    num = num_slots(superpixels, num_segments)
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
    region pictures (``viz.py``) on their own images, the same code path.

    Host synchronisations: none but the k-means's one per block of Lloyd iterations, when the caller
    passes the batch's ``SegmentCounts`` (the trainer does: the loader computes them); without them they
    are read from the superpixel tensor. ``kmeans_cuda_graphs``: ``auto`` replays the k-means as CUDA
    graphs on a GPU over points padded to ``padded_point_count`` (checked against eager on first capture,
    eager after any failure; model/kmeans_graphs.py); ``off``, and always on a CPU: eager, unpadded.
    """

    kmeans_iters: int = 200
    until_converged: bool = True
    superpixel_pooling: str = "exact"  # exact | official
    label_map: str = "nearest"  # nearest | official
    kmeans_init: str = "greedy"  # greedy | single (k-means++ seeding)
    kmeans_cuda_graphs: str = "auto"  # auto | off
    graphs: KMeansGraphs | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kmeans_cuda_graphs not in CUDA_GRAPH_MODES:
            raise ValueError(f"kmeans_cuda_graphs must be one of {CUDA_GRAPH_MODES}, got '{self.kmeans_cuda_graphs}'")

    def uses_graphs(self, device: torch.device) -> bool:
        return self.kmeans_cuda_graphs == "auto" and device.type == "cuda" and torch.cuda.is_available()

    @torch.no_grad()
    def __call__(
        self,
        c4: torch.Tensor,
        superpixels: torch.Tensor,
        k: int,
        label_size: int,
        generator: torch.Generator | None = None,
        counts: SegmentCounts | None = None,
        pad: bool | None = None,
    ) -> tuple[torch.Tensor, int]:
        """c4 float[B,C,h,w], superpixels int64[B,R,R] → (label map, K'). ``counts``: the batch's
        ``SegmentCounts`` (None: computed from ``superpixels``); ``pad``: pad the points (None: when
        the graphs are used)."""
        if counts is None:
            counts = SegmentCounts.of(superpixels)
        with fp32_region(c4.device):  # pooling and clustering stay fp32 under AMP
            if self.superpixel_pooling == "official":
                feats = official_superpixel_features(c4, superpixels, counts.slots)
                valid, num_valid = None, feats.shape[0] * feats.shape[1]
            else:
                feats, valid = superpixel_features(c4, superpixels, counts.slots)
                num_valid = counts.present
        return self.cluster(feats, valid, superpixels, k, label_size, generator, num_valid, pad)

    @torch.no_grad()
    def cluster(
        self,
        feats: torch.Tensor,
        valid: torch.Tensor | None,
        superpixels: torch.Tensor,
        k: int,
        label_size: int,
        generator: torch.Generator | None = None,
        num_valid: int | None = None,
        pad: bool | None = None,
    ) -> tuple[torch.Tensor, int]:
        """Superpixel features float[B,S,D] (``valid`` bool[B,S], None: all) → (label map int64[B,
        label_size,label_size], K'): k-means over the valid superpixels of the batch, ids painted back.

        ``num_valid`` (``valid``'s count, read from it when None) fixes K' = min(k, num_valid) on the host.
        The valid superpixels are moved to the front in their order (a stable sort: no boolean-mask
        gather, which would read the count back) and, with ``pad``, zero points appended up to
        ``padded_point_count``; the k-means ignores them (exactly: model/kmeans.py)."""
        b, s, _ = feats.shape
        use_graphs = self.uses_graphs(feats.device)
        pad = use_graphs if pad is None else pad
        # Diverged weights give NaN features; cluster zeros instead so that the step reaches the loss,
        # whose non-finite value the trainer detects on every process at once (no DDP hang).
        points = torch.nan_to_num(feats, nan=0.0, posinf=0.0, neginf=0.0).flatten(0, 1)
        order = None
        if valid is not None:
            if num_valid is None:
                num_valid = int(valid.sum().item())
            elif valid.device.type == "cpu" and int(valid.sum()) != num_valid:  # free to check on a CPU
                raise ValueError(f"num_valid is {num_valid} but {int(valid.sum())} superpixels are valid")
            order = torch.sort((~valid).flatten().to(torch.uint8), stable=True).indices  # valid slots first
            points = points.index_select(0, order)
        elif num_valid is None:
            num_valid = b * s
        total = padded_point_count(b, num_valid) if pad else num_valid
        points = F.pad(points[:total], (0, 0, 0, max(0, total - points.shape[0])))
        if use_graphs and self.graphs is None:
            self.graphs = KMeansGraphs(check=True)
        assign, centres = kmeans(
            points,
            k,
            self.kmeans_iters,
            generator,
            self.until_converged,
            init=self.kmeans_init,
            num_points=num_valid,
            graphs=self.graphs if use_graphs else None,
        )
        assign = assign[:num_valid]
        cluster_of = torch.zeros(b * s, dtype=torch.long, device=feats.device)
        slots = order[:num_valid] if order is not None else torch.arange(num_valid, device=feats.device)
        cluster_of.index_copy_(0, slots, assign)
        return paint_clusters(superpixels, cluster_of.view(b, s), label_size, self.label_map), centres.shape[0]
