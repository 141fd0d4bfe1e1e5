"""The R2O model: online network, EMA target, region masks by method, and the symmetric masked loss.

One call of ``R2O.forward`` is one training step's forward pass (docs/method.md, "One training step"),
in the authors' order: the raw view through the target as it was before this step's EMA update →
k-means → masks → online forward → EMA update of the target with tau (when given) → target forward on
the views. The optimiser step is the trainer's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import record_function

from ..data.segment_counts import SegmentCounts
from ..loss import masked_byol_loss, overlap_indicator
from .encoder import ResNetEncoder
from .heads import MLP, OccupiedRows, apply_heads
from .masks import mask_mass, mask_pool, view_masks, view_masks_from_maps
from .refiner import RegionRefiner, superpixel_label_map, superpixel_maps


@dataclass
class R2OOutput:
    """Everything one forward of the model returns: the loss, what it counted, the label map and monitors."""

    loss: torch.Tensor  # scalar: mean over both directions and counted masks
    num_masks: torch.Tensor  # int64 scalar: counted masks (in both views), summed over both directions
    num_labels: int  # K actually used this step (<= requested K)
    label_map: torch.Tensor  # int64[B,Hm,Wm] region ids of the raw view (detached), for pictures
    monitors: dict[str, torch.Tensor]  # detached scalars for the logs (see R2O.monitors)


class R2O(nn.Module):
    """``method``: ``r2o`` (refined masks), ``detcon`` (fixed SLIC masks), ``byol`` (one whole-image mask).

    ``sparse_heads``: the projectors and the predictor run on the non-empty mask rows plus one
    representative zero row that counts n_zero times in their BatchNorm (model/heads.py): the numbers of
    running them on all rows (False), at the cost of the non-empty ones.
    """

    def __init__(
        self,
        depth: int = 50,
        method: str = "r2o",
        projector_hidden: int = 4096,
        projector_out: int = 256,
        predictor_hidden: int = 4096,
        kmeans_iters: int = 200,
        kmeans_until_converged: bool = True,
        mask_area_threshold: float = 1e-3,
        pool_area_floor: float = 1.0,
        superpixel_pooling: str = "exact",
        label_map: str = "nearest",
        kmeans_init: str = "greedy",
        sparse_heads: bool = True,
    ) -> None:
        super().__init__()
        if method not in ("r2o", "detcon", "byol"):
            raise ValueError(f"method must be r2o, detcon or byol, got '{method}'")
        self.method = method
        self.online_encoder = ResNetEncoder(depth)
        self.online_projector = MLP(self.online_encoder.c5_channels, projector_hidden, projector_out)
        self.predictor = MLP(projector_out, predictor_hidden, projector_out)
        self.target_encoder = copy.deepcopy(self.online_encoder)
        self.target_projector = copy.deepcopy(self.online_projector)
        for p in self.target_parameters():
            p.requires_grad_(False)
        self.refiner = RegionRefiner(kmeans_iters, kmeans_until_converged, superpixel_pooling, label_map, kmeans_init)
        self.mask_area_threshold = mask_area_threshold
        self.pool_area_floor = pool_area_floor
        self.sparse_heads = sparse_heads

    def online_modules(self) -> list[nn.Module]:
        """The trained modules, in the optimiser's order: online encoder, online projector, predictor."""
        return [self.online_encoder, self.online_projector, self.predictor]

    def online_parameters(self) -> list[nn.Parameter]:
        return [p for module in self.online_modules() for p in module.parameters()]

    def target_parameters(self) -> list[nn.Parameter]:
        return [*self.target_encoder.parameters(), *self.target_projector.parameters()]

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """target ← tau · target + (1 − tau) · online, for encoder and projector parameters (the one EMA),
        written as the authors' ``mul_(tau).add_(online, alpha=1 − tau)`` (the same rounding)."""
        online = [*self.online_encoder.parameters(), *self.online_projector.parameters()]
        target = self.target_parameters()
        torch._foreach_mul_(target, tau)
        torch._foreach_add_(target, online, alpha=1.0 - tau)

    @torch.no_grad()
    def region_labels(
        self,
        raw: torch.Tensor,
        superpixels: torch.Tensor,
        k: int,
        label_size: int,
        generator: torch.Generator | None,
        superpixels_only: bool = False,
        segments: SegmentCounts | None = None,
    ) -> tuple[torch.Tensor, int, torch.Tensor | None]:
        """(label map int64[B,label_size,label_size] of the raw view, its number of labels M, soft maps).

        The soft maps float[B,M,label_size,label_size] replace the one-hot label map as the masks' source
        on the superpixels path with ``label_map=official`` (the authors' bilinearly resized one-hot
        superpixel maps; the label map is then their argmax, for the logs); otherwise None.
        ``segments``: the batch's superpixel counts from the loader (None: read from ``superpixels``, a
        host synchronisation on a GPU); with them the only one left is the k-means's per block.
        """
        b = raw.shape[0]
        if self.method == "byol":
            return torch.zeros(b, label_size, label_size, dtype=torch.long, device=raw.device), 1, None
        if segments is None:
            segments = SegmentCounts.of(superpixels)
        if self.method == "detcon" or superpixels_only:
            if self.refiner.label_map == "official":
                maps = superpixel_maps(superpixels, label_size, segments.slots)
                return maps.argmax(1), maps.shape[1], maps
            labels = superpixel_label_map(superpixels, label_size, self.refiner.label_map, segments.slots)
            return labels, segments.slots, None
        with record_function("r2o.raw_view_c4"):
            # train mode: as in the authors' code, this forward also updates the target's BN statistics
            c4 = self.target_encoder.forward_c4(raw)
        with record_function("r2o.refine"):
            labels, num = self.refiner(c4, superpixels, k, label_size, generator, segments)
        return labels, num, None

    def _embed(
        self,
        encoder: ResNetEncoder,
        heads: list[MLP],
        views: torch.Tensor,
        masks: torch.Tensor,
        rows: OccupiedRows | None = None,
    ) -> list[torch.Tensor]:
        """views float[N,3,S,S], masks float[N,M,h*w] → each head's output float[N,M,D], the heads chained
        on the pooled features (BN over all N·M rows; with ``sparse_heads`` computed on the non-empty ones:
        ``rows``, or found from ``masks``)."""
        _, c5 = encoder(views)
        pooled = mask_pool(c5, masks, self.pool_area_floor)
        return apply_heads(pooled, heads, rows)

    def occupied_rows(self, masks: torch.Tensor) -> OccupiedRows | None:
        """masks float[N,M,h*w] → their non-empty rows (an all-zero mask pools to zeros); None without
        ``sparse_heads``. On CUDA this waits for the device once per step (``nonzero``)."""
        return OccupiedRows(masks.ne(0).any(-1)) if self.sparse_heads else None

    def forward(
        self,
        views: torch.Tensor,
        boxes: torch.Tensor,
        raw: torch.Tensor,
        superpixels: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
        superpixels_only: bool = False,
        tau: float | None = None,
        segments: SegmentCounts | None = None,
    ) -> R2OOutput:
        """views float[B,2,3,S,S], boxes float[B,2,5], raw float[B,3,R,R], superpixels int64[B,R,R].

        As the authors: the region labels come from the target before this step's EMA update; the
        online network sees cat([view1, view2]); then the target is updated with ``tau`` (skipped when
        None) and sees cat([view2, view1]). Every BatchNorm normalises over both views at once and row i
        of the online predictions meets row i of the target projections (view1↔view2, view2↔view1).
        Under DDP the update runs here, on this (unwrapped) module's parameters. ``segments``: see
        ``region_labels``.
        """
        label_size = raw.shape[-1] // 4
        out_size = views.shape[-1] // 32
        label_map, num_labels, maps = self.region_labels(
            raw, superpixels, k, label_size, generator, superpixels_only, segments
        )
        with record_function("r2o.view_masks"):
            if maps is None:
                masks = view_masks(label_map, boxes.float(), num_labels, out_size)  # [B,2,M,h*w]
            else:
                masks = view_masks_from_maps(maps, boxes.float(), out_size)
            mass = mask_mass(masks)
            counted = overlap_indicator(mass[:, 0], mass[:, 1], self.mask_area_threshold)
        with record_function("r2o.online_forward"):
            online_masks = torch.cat([masks[:, 0], masks[:, 1]])
            rows = self.occupied_rows(online_masks)
            online, preds = self._embed(
                self.online_encoder,
                [self.online_projector, self.predictor],
                torch.cat([views[:, 0], views[:, 1]]),
                online_masks,
                rows,
            )  # [2B,M,D] each
        if tau is not None:
            with record_function("r2o.ema_update"):
                self.update_target(tau)
        with torch.no_grad(), record_function("r2o.target_forward"):
            (targets,) = self._embed(
                self.target_encoder,
                [self.target_projector],
                torch.cat([views[:, 1], views[:, 0]]),
                torch.cat([masks[:, 1], masks[:, 0]]),
                None if rows is None else rows.halves_swapped(),  # the same masks, views swapped
            )
        with record_function("r2o.loss"):
            counted_both = torch.cat([counted, counted])
            loss, n = masked_byol_loss(preds, targets, counted_both)
        monitors = self.monitors(online.detach(), counted_both, mass, counted, out_size * out_size)
        return R2OOutput(loss, n, num_labels, label_map.detach(), monitors)

    @staticmethod
    @torch.no_grad()
    def monitors(
        online: torch.Tensor, counted_both: torch.Tensor, mass: torch.Tensor, counted: torch.Tensor, cells: int
    ) -> dict[str, torch.Tensor]:
        """Run-health scalars from tensors the step already has (no extra forward).

        collapse_std: std over the counted masks' L2-normalised online projections, averaged over
        dimensions (about 1/sqrt(D) when healthy, towards 0 at collapse); masks_per_image: counted masks
        per image; mask_area: mean area of a counted mask as a fraction of the view.
        """
        z = F.normalize(online.float(), dim=-1).flatten(0, 1)  # weighted by counted: no host sync
        w = counted_both.flatten().float()[:, None]
        mean = (w * z).sum(0) / w.sum().clamp_min(1)
        collapse = ((w * (z - mean).square()).sum(0) / w.sum().clamp_min(1)).sqrt().mean()
        n = counted.sum()
        area = (mass.float() * counted[:, None]).sum() / (2 * n.clamp_min(1) * cells)
        return {"collapse_std": collapse, "masks_per_image": n.float() / counted.shape[0], "mask_area": area}
