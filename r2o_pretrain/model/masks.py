"""From a label map of the raw view to per-view soft masks, and pooling features under masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchvision.ops import roi_align


def view_masks(label_map: torch.Tensor, boxes: torch.Tensor, num_labels: int, out_size: int) -> torch.Tensor:
    """Soft masks of each view, aligned with that view's ``out_size``² feature map.

    label_map: int64[B,Hm,Wm] region ids in [0, num_labels) over the whole image.
    boxes:     float[B,V,5] per view (y0, x0, y1, x1, flipped), coordinates in [0, 1] of the image.
    returns:   float[B,V,num_labels,out_size*out_size], each cell the fraction of it covered by a region.

    As the authors: ``roi_align`` with ``aligned=False``, spatial scale 1 on the label map, boxes in
    label-map pixels; masks of flipped views are flipped.
    """
    onehot = F.one_hot(label_map, num_labels).permute(0, 3, 1, 2).float()  # [B,K,Hm,Wm]
    return view_masks_from_maps(onehot, boxes, out_size)


def view_masks_from_maps(maps: torch.Tensor, boxes: torch.Tensor, out_size: int) -> torch.Tensor:
    """``view_masks`` for any per-region maps float[B,M,Hm,Wm] (one-hot, or the authors' soft bilinear
    superpixel maps) → float[B,V,M,out_size*out_size]."""
    b, num_labels, hm, wm = maps.shape
    v = boxes.shape[1]
    scale = boxes.new_tensor([wm, hm, wm, hm])
    xyxy = boxes[..., [1, 0, 3, 2]] * scale  # (x0, y0, x1, y1) in label-map pixels
    batch_index = torch.arange(b, device=boxes.device, dtype=boxes.dtype).repeat_interleave(v)
    rois = torch.cat([batch_index[:, None], xyxy.reshape(b * v, 4)], dim=1)
    masks = roi_align(maps, rois, output_size=out_size, spatial_scale=1.0, sampling_ratio=-1, aligned=False)
    flipped = boxes.reshape(b * v, 5)[:, 4] > 0.5
    masks = torch.where(flipped[:, None, None, None], masks.flip(-1), masks)
    return masks.reshape(b, v, num_labels, out_size * out_size)


def mask_mass(masks: torch.Tensor) -> torch.Tensor:
    """float[...,M,h*w] → float[...,M]: a mask's total soft area, in feature-map cells."""
    return masks.sum(-1)


def mask_pool(features: torch.Tensor, masks: torch.Tensor, area_floor: float = 1.0) -> torch.Tensor:
    """``features`` summed under each mask, divided by ``max(area, area_floor)``.

    features: float[N,C,h,w]; masks: float[N,M,h*w] (non-negative, any scale).
    returns float[N,M,C]. With the authors' ``area_floor=1`` a mask smaller than one cell pools to
    area x mean; ``area_floor=0`` gives the plain mean (a mask with zero area pools to zeros).
    """
    weights = masks / masks.sum(-1, keepdim=True).clamp_min(max(area_floor, 1e-6))
    return torch.bmm(weights.to(features.dtype), features.flatten(2).transpose(1, 2))
