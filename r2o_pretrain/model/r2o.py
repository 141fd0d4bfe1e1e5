"""The R2O model: online network, EMA target, region masks by method, and the symmetric masked loss.

One call of ``R2O.forward`` is one training step's forward pass (R2O_METHOD.md, steps 3-6); the
optimiser step and ``update_target`` (step 7) are the trainer's.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn
from torch.profiler import record_function

from ..loss import masked_byol_loss, overlap_indicator
from .encoder import ResNetEncoder
from .heads import MLP
from .masks import mask_mass, mask_pool, view_masks
from .refiner import RegionRefiner, resize_labels


@dataclass
class LossOutput:
    loss: torch.Tensor  # scalar, the symmetric loss
    num_masks: torch.Tensor  # int64 scalar: masks counted (in both views), summed over both directions
    num_labels: int  # K actually used this step (<= requested K)
    label_map: torch.Tensor  # int64[B,Hm,Wm] region ids of the raw view (detached), for pictures


class R2O(nn.Module):
    """``method``: ``r2o`` (refined masks), ``detcon`` (fixed SLIC masks), ``byol`` (one whole-image mask)."""

    def __init__(
        self,
        depth: int = 50,
        method: str = "r2o",
        projector_hidden: int = 4096,
        projector_out: int = 256,
        predictor_hidden: int = 4096,
        kmeans_iters: int = 10,
        superpixel_only_above: int = 128,
        mask_area_threshold: float = 1e-3,
        nearest_label_resize: bool = True,
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
        self.refiner = RegionRefiner(kmeans_iters, nearest_label_resize)
        self.superpixel_only_above = superpixel_only_above
        self.mask_area_threshold = mask_area_threshold

    def online_parameters(self) -> list[nn.Parameter]:
        return [*self.online_encoder.parameters(), *self.online_projector.parameters(), *self.predictor.parameters()]

    def target_parameters(self) -> list[nn.Parameter]:
        return [*self.target_encoder.parameters(), *self.target_projector.parameters()]

    @torch.no_grad()
    def update_target(self, tau: float) -> None:
        """target ← tau · target + (1 − tau) · online, for encoder and projector parameters."""
        online = [*self.online_encoder.parameters(), *self.online_projector.parameters()]
        torch._foreach_lerp_(self.target_parameters(), online, 1.0 - tau)

    @torch.no_grad()
    def region_labels(
        self, raw: torch.Tensor, superpixels: torch.Tensor, k: int, label_size: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, int]:
        """Label map int64[B,label_size,label_size] of the raw view and its number of labels."""
        b = raw.shape[0]
        if self.method == "byol":
            return torch.zeros(b, label_size, label_size, dtype=torch.long, device=raw.device), 1
        if self.method == "detcon" or k > self.superpixel_only_above:
            labels = resize_labels(superpixels, label_size)
            return labels, int(superpixels.max().item()) + 1
        with record_function("r2o.raw_view_c4"):
            c4 = self.target_encoder.forward_c4(raw)
        with record_function("r2o.refine"):
            return self.refiner(c4, superpixels, k, label_size, generator)

    def _embed(
        self, encoder: ResNetEncoder, projector: nn.Module, view: torch.Tensor, masks: torch.Tensor
    ) -> torch.Tensor:
        """view float[B,3,S,S], masks float[B,M,h*w] → projections float[B,M,D]."""
        _, c5 = encoder(view)
        pooled = mask_pool(c5, masks)
        b, m, c = pooled.shape
        return projector(pooled.reshape(b * m, c)).view(b, m, -1)

    def forward(
        self,
        views: torch.Tensor,
        boxes: torch.Tensor,
        raw: torch.Tensor,
        superpixels: torch.Tensor,
        k: int,
        generator: torch.Generator | None = None,
    ) -> LossOutput:
        """views float[B,2,3,S,S], boxes float[B,2,5], raw float[B,3,R,R], superpixels int64[B,R,R]."""
        label_size = raw.shape[-1] // 4
        out_size = views.shape[-1] // 32
        label_map, num_labels = self.region_labels(raw, superpixels, k, label_size, generator)
        with record_function("r2o.view_masks"):
            masks = view_masks(label_map, boxes.float(), num_labels, out_size)  # [B,2,M,h*w]
            mass = mask_mass(masks)
            counted = overlap_indicator(mass[:, 0], mass[:, 1], self.mask_area_threshold)
        with record_function("r2o.online_forward"):
            online = [self._embed(self.online_encoder, self.online_projector, views[:, v], masks[:, v]) for v in (0, 1)]
            preds = [self.predictor(z.flatten(0, 1)).view_as(z) for z in online]
        with torch.no_grad(), record_function("r2o.target_forward"):
            targets = [
                self._embed(self.target_encoder, self.target_projector, views[:, v], masks[:, v]) for v in (0, 1)
            ]
        with record_function("r2o.loss"):
            loss_a, n_a = masked_byol_loss(preds[0], targets[1], counted)
            loss_b, n_b = masked_byol_loss(preds[1], targets[0], counted)
        return LossOutput(loss_a + loss_b, n_a + n_b, num_labels, label_map.detach())
