"""kNN top-1 on pooled c5 features: the weighted kNN monitor of DINO / solo-learn (k=20, cosine, T=0.07).

Every validation image votes with its k most similar bank images (cosine similarity of the
L2-normalised global-average-pooled layer4 features); a neighbour's vote weighs exp(similarity / T).
The folders are in the ImageNet ``train/<class>/*.JPEG`` layout; classes are the sub-folder names.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.device_augment import to_input_tensor
from ..data.folder import IMAGE_EXTENSIONS, open_rgb
from ..model.encoder import ResNetEncoder
from .sampling import evenly_spaced


class LabelledFolderError(ValueError):
    """A labelled folder cannot be used for kNN; the message names it."""


@dataclass
class LabelledFolder:
    files: list[Path]
    labels: list[int]  # index into classes
    classes: list[str]


def list_labelled(root: str | os.PathLike, classes: list[str] | None = None) -> LabelledFolder:
    """``root/<class>/<image>`` → files and labels (sorted by class, then name). With ``classes`` (the
    bank's), every class folder of ``root`` must be one of them."""
    root = Path(root)
    if not root.is_dir():
        raise LabelledFolderError(f"{root} is not a folder")
    found = sorted(d.name for d in root.iterdir() if d.is_dir())
    names = classes if classes is not None else found
    unknown = [c for c in found if c not in names]
    if unknown:
        raise LabelledFolderError(f"{root} has class folders that the kNN bank lacks: {', '.join(unknown[:5])}")
    files, labels = [], []
    for c in found:
        for f in sorted((root / c).iterdir()):
            if f.suffix.lower() in IMAGE_EXTENSIONS:
                files.append(f)
                labels.append(names.index(c))
    if not files:
        raise LabelledFolderError(f"{root} has no images in class sub-folders (the layout is {root}/<class>/<image>)")
    return LabelledFolder(files, labels, list(names))


def subset(folder: LabelledFolder, limit: int) -> LabelledFolder:
    keep = evenly_spaced(len(folder.files), limit)
    return LabelledFolder([folder.files[i] for i in keep], [folder.labels[i] for i in keep], folder.classes)


def load_image(path: Path, size: int) -> torch.Tensor:
    """An image → normalised float[3,size,size]: shorter side to size * 8/7, centre crop (as 256 → 224).
    Decoded as the training decodes (``open_rgb``): BadImageError naming a file that does not decode."""
    img = open_rgb(str(path))
    w, h = img.size
    short = round(size * 8 / 7)
    scale = short / min(w, h)
    img = img.resize((max(short, round(w * scale)), max(short, round(h * scale))), Image.BICUBIC)
    w, h = img.size
    left, top = (w - size) // 2, (h - size) // 2
    return to_input_tensor(np.asarray(img.crop((left, top, left + size, top + size))))


@torch.no_grad()
def pooled_features(encoder: ResNetEncoder, images: torch.Tensor) -> torch.Tensor:
    """float[B,3,S,S] → L2-normalised global-average-pooled c5, float[B,C5] (on the CPU)."""
    device = next(encoder.parameters()).device
    _, c5 = encoder(images.to(device))
    return F.normalize(c5.float().mean(dim=(2, 3)), dim=1).cpu()


def knn_predict(
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    queries: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> torch.Tensor:
    """bank float[N,D], bank_labels int64[N], queries float[M,D] (all L2-normalised) → int64[M] predictions.

    Each query's k nearest bank rows by cosine similarity vote for their class with weight exp(sim / T)
    (k is capped at N)."""
    sim = queries @ bank.T
    top_sim, top_idx = sim.topk(min(k, bank.shape[0]), dim=1)
    votes = torch.zeros(queries.shape[0], num_classes, dtype=sim.dtype)
    votes.scatter_add_(1, bank_labels[top_idx], (top_sim / temperature).exp())
    return votes.argmax(dim=1)


def top1(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    """Fraction of correct predictions (0..1)."""
    return float((predictions == labels).double().mean())
