"""What each departure from the authors' code changes, measured on one real batch (docs/method.md table).

One batch of 8 real photographs bundled with scikit-image (astronaut, chelsea, coffee, rocket, retina,
immunohistochemistry, hubble_deep_field, camera), 224 px raw view and views, 100 SLIC segments, and the
c4 map of a randomly initialised ResNet-50 target encoder (the situation at step 0; no weights can be
downloaded here). For every switch both settings run on the same inputs and the same k-means seed.

  python benchmarks/departures.py            # prints the table, writes benchmarks/results/departures.json
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy.optimize import linear_sum_assignment
from skimage import data as skdata

from r2o_pretrain.data.device_augment import normalize_images
from r2o_pretrain.data.superpixels import slic_labels
from r2o_pretrain.data.views import TwoViewTransform
from r2o_pretrain.model.encoder import ResNetEncoder
from r2o_pretrain.model.kmeans import kmeans_with_iterations
from r2o_pretrain.model.masks import mask_mass, view_masks
from r2o_pretrain.model.refiner import (
    official_superpixel_features,
    paint_clusters,
    superpixel_features,
)

ROOT = Path(__file__).resolve().parents[1]

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "retina", "immunohistochemistry", "hubble_deep_field", "camera")
SIZE = 224
KS = (128, 16, 4)


def photos() -> list[Image.Image]:
    out = []
    for name in PHOTOS:
        img = getattr(skdata, name)()
        if img.ndim == 2:
            img = np.stack([img] * 3, -1)
        out.append(Image.fromarray(img[..., :3]))
    return out


def relabel_agreement(a: np.ndarray, b: np.ndarray) -> float:
    """Fraction of pixels on which two label maps agree after the best one-to-one matching of labels."""
    la, ia = np.unique(a, return_inverse=True)
    lb, ib = np.unique(b, return_inverse=True)
    table = np.zeros((len(la), len(lb)))
    np.add.at(table, (ia.ravel(), ib.ravel()), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / a.size)


def refine(c4, sp, k, pooling, label_mode, seed=0):
    """Label map, K actually used, points clustered, zero points, empty clusters (a NaN centre for the authors)."""
    if pooling == "official":
        feats = official_superpixel_features(c4, sp)
        valid = torch.ones(feats.shape[:2], dtype=torch.bool)
    else:
        feats, valid = superpixel_features(c4, sp)
    points = feats[valid]
    assign, centres, iters = kmeans_with_iterations(points, k, 200, torch.Generator().manual_seed(seed))
    cluster_of = torch.zeros(valid.shape, dtype=torch.long)
    cluster_of[valid] = assign
    labels = paint_clusters(sp, cluster_of, SIZE // 4, label_mode)
    zero = points.norm(dim=-1) == 0
    zero_only = [c for c in assign[zero].unique().tolist() if bool((assign[~zero] != c).all())]
    return {
        "labels": labels,
        "cluster_of": cluster_of,
        "k_used": int(labels.unique().numel()),
        "points": int(points.shape[0]),
        "zero_points": int(zero.sum()),
        "clusters_of_zero_points_only": len(zero_only),
        "empty_clusters": int(centres.shape[0] - assign.unique().numel()),
        "kmeans_iterations": iters,
    }


def main() -> dict:
    torch.manual_seed(0)
    imgs = photos()
    results: dict = {"photos": list(PHOTOS), "size": SIZE}

    # flip: the authors' flip probability is 1 (a bug); ours 0.5
    flips = {}
    for p in (1.0, 0.5):
        tf = TwoViewTransform(SIZE, SIZE, flip_prob=p)
        boxes = []
        for rep in range(8):  # 8 draws of the batch: 64 image pairs
            torch.manual_seed(rep)
            boxes += [tf(img)["boxes"] for img in imgs]
        f = torch.stack(boxes)[:, :, 4]
        flips[p] = {
            "views_flipped": float(f.mean()),
            "pairs_with_different_flips": float((f[:, 0] != f[:, 1]).float().mean()),
        }
    results["flip"] = flips

    tf = TwoViewTransform(SIZE, SIZE, flip_prob=0.5)
    torch.manual_seed(0)
    samples = [tf(img) for img in imgs]
    raw_rgb = [s["raw_rgb"] for s in samples]
    raw = normalize_images(torch.stack([s["raw"] for s in samples]))  # uint8 pictures → encoder input
    boxes = torch.stack([s["boxes"] for s in samples])

    # SLIC input
    sp_u8 = [slic_labels(r, 100, 10.0, "uint8") for r in raw_rgb]
    sp_norm = [slic_labels(r, 100, 10.0, "normalized") for r in raw_rgb]
    results["slic_input"] = {
        "segments_uint8": float(np.mean([s.max() + 1 for s in sp_u8])),
        "segments_normalized": float(np.mean([s.max() + 1 for s in sp_norm])),
        # each normalized-input segment mapped to the uint8 segment it overlaps most
        "pixels_in_a_different_segment": float(
            1 - np.mean([_majority_agreement(a, b) for a, b in zip(sp_norm, sp_u8)])
        ),
    }
    sp = torch.from_numpy(np.stack(sp_u8))

    encoder = ResNetEncoder(50).train()  # the target at step 0, in train mode as in the authors' code
    with torch.no_grad():
        c4 = encoder.forward_c4(raw)

    pooling, label_map, small_masks = {}, {}, {}
    for k in KS:
        ours = refine(c4, sp, k, "exact", "nearest")
        theirs = refine(c4, sp, k, "official", "nearest")
        reseeded = refine(c4, sp, k, "exact", "nearest", seed=1)  # what k-means' own randomness changes
        pooling[k] = {
            "k_used_exact": ours["k_used"],
            "k_used_official": theirs["k_used"],
            "points_exact": ours["points"],
            "points_official": theirs["points"],
            "zero_points_official": theirs["zero_points"],
            "clusters_spent_on_zero_points_official": theirs["clusters_of_zero_points_only"],
            "empty_clusters_exact": ours["empty_clusters"],
            "empty_clusters_official": theirs["empty_clusters"],
            "kmeans_iterations_exact": ours["kmeans_iterations"],
            "mask_pixels_changed": _changed(ours["labels"], theirs["labels"]),
            "mask_pixels_changed_by_another_kmeans_seed": _changed(ours["labels"], reseeded["labels"]),
        }
        official = paint_clusters(sp, ours["cluster_of"], SIZE // 4, "official")
        stray = _stray_fraction(official, sp, ours["cluster_of"])
        label_map[k] = {
            "pixels_changed": float((official != ours["labels"]).float().mean()),
            "pixels_with_an_id_of_neither_neighbour": stray,
            "k_used_nearest": ours["k_used"],
            "k_used_official": int(official.unique().numel()),
        }
        masks = view_masks(ours["labels"], boxes, int(ours["labels"].max()) + 1, SIZE // 32)
        mass = mask_mass(masks)
        counted = (mass[:, 0] > 1e-3) & (mass[:, 1] > 1e-3)
        both = torch.cat([mass[:, 0][counted], mass[:, 1][counted]])
        small_masks[k] = {
            "counted_masks_per_image": float(counted.sum() / counted.shape[0]),
            "counted_masks_smaller_than_one_cell": float((both < 1).float().mean()),
        }
    results["superpixel_pooling"] = pooling
    results["label_map"] = label_map
    results["max_area_1_pooling"] = small_masks
    return results


def _changed(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fraction of pixels whose region differs, after matching region ids per image."""
    return 1 - float(np.mean([relabel_agreement(x, y) for x, y in zip(a.numpy(), b.numpy())]))


def _majority_agreement(a: np.ndarray, b: np.ndarray) -> float:
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a.ravel(), b.ravel()), 1)
    return float(table.max(1).sum() / a.size)


def _stray_fraction(official: torch.Tensor, sp: torch.Tensor, cluster_of: torch.Tensor) -> float:
    """Pixels of the 56x56 map whose id is the cluster of none of the superpixels in its 4x4 source block."""
    b, r, _ = sp.shape
    size = official.shape[-1]
    ids = torch.gather(cluster_of, 1, sp.flatten(1)).view(b, size, r // size, size, r // size)
    block = ids.permute(0, 1, 3, 2, 4).reshape(b, size, size, -1)
    return float((block != official[..., None]).all(-1).float().mean())


def print_table(r: dict) -> None:
    f = r["flip"]
    f = {1.0: f["1.0"], 0.5: f["0.5"]}
    print(
        f"flip: views flipped {f[1.0]['views_flipped']:.2f} (p=1) vs {f[0.5]['views_flipped']:.2f} (p=0.5); "
        f"pairs with different flips {f[1.0]['pairs_with_different_flips']:.2f} vs {f[0.5]['pairs_with_different_flips']:.2f}"
    )
    s = r["slic_input"]
    print(
        f"SLIC input: segments {s['segments_uint8']:.1f} (uint8) vs {s['segments_normalized']:.1f} (normalized); "
        f"{100 * s['pixels_in_a_different_segment']:.1f}% of pixels in a different segment"
    )
    for k in KS:
        p, lm, sm = (r[name][str(k)] for name in ("superpixel_pooling", "label_map", "max_area_1_pooling"))
        print(
            f"K={k}: pooling official vs exact: {100 * p['mask_pixels_changed']:.1f}% mask pixels change "
            f"(another k-means seed alone: {100 * p['mask_pixels_changed_by_another_kmeans_seed']:.1f}%), "
            f"points {p['points_official']} vs {p['points_exact']} ({p['zero_points_official']} zero), "
            f"clusters spent on zero points {p['clusters_spent_on_zero_points_official']}, "
            f"k-means iterations {p['kmeans_iterations_exact']}"
        )
        print(
            f"K={k}: label map official vs nearest: {100 * lm['pixels_changed']:.1f}% pixels change, "
            f"{100 * lm['pixels_with_an_id_of_neither_neighbour']:.1f}% get an id of no superpixel under them; "
            f"counted masks/image {sm['counted_masks_per_image']:.1f}, "
            f"{100 * sm['counted_masks_smaller_than_one_cell']:.0f}% smaller than one 7x7 cell"
        )


if __name__ == "__main__":
    res = main()
    res = json.loads(json.dumps(res))  # int keys become strings, as in the file
    out = ROOT / "benchmarks" / "results" / "departures.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print_table(res)
    print(f"written: {out}")
