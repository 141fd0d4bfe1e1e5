"""What each departure from the authors' code changes, measured on one real batch (docs/method.md table).

One batch of 8 real photographs bundled with scikit-image (astronaut, chelsea, coffee, rocket, retina,
immunohistochemistry, hubble_deep_field, camera), 224 px raw view and views, 100 SLIC segments, and the
c4 map of a randomly initialised ResNet-50 target encoder (the situation at step 0; no weights can be
downloaded here). For every switch both settings run on the same inputs and the same k-means seed.
Also measured: what the step-order, LARS, k-means seeding, superpixels-only mask and blur changes of
issue 23 (now the authors' behaviour by default) change against our earlier behaviour.

  python benchmarks/departures.py            # prints the table, writes benchmarks/results/departures.json
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageFilter
from scipy.optimize import linear_sum_assignment
from skimage import data as skdata

from r2o_pretrain.data.device_augment import gaussian_blur, normalize_images
from r2o_pretrain.data.superpixels import slic_labels
from r2o_pretrain.data.views import TwoViewTransform
from r2o_pretrain.model.encoder import ResNetEncoder
from r2o_pretrain.model.kmeans import kmeans_with_iterations
from r2o_pretrain.model.masks import mask_mass, view_masks, view_masks_from_maps
from r2o_pretrain.model.r2o import R2O
from r2o_pretrain.model.refiner import (
    official_superpixel_features,
    paint_clusters,
    resize_labels,
    superpixel_features,
    superpixel_maps,
)
from r2o_pretrain.optim import build_optimizer, set_lr, split_decay_groups
from r2o_pretrain.schedules import TrainingPlan

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


def refine(c4, sp, k, pooling, label_mode, seed=0, init="greedy"):
    """Label map, K actually used, points clustered, zero points, empty clusters (a NaN centre for the authors)."""
    if pooling == "official":
        feats = official_superpixel_features(c4, sp)
        valid = torch.ones(feats.shape[:2], dtype=torch.bool)
    else:
        feats, valid = superpixel_features(c4, sp)
    points = feats[valid]
    assign, centres, iters = kmeans_with_iterations(points, k, 200, torch.Generator().manual_seed(seed), init=init)
    inertia = float((points - centres[assign]).square().sum())
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
        "inertia": inertia,
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

    seeding = {}
    for k in KS:
        greedy, single = refine(c4, sp, k, "exact", "nearest"), refine(c4, sp, k, "exact", "nearest", init="single")
        seeding[k] = {
            "mask_pixels_changed": _changed(greedy["labels"], single["labels"]),
            "inertia_greedy": greedy["inertia"],
            "inertia_single": single["inertia"],
            "iterations_greedy": greedy["kmeans_iterations"],
            "iterations_single": single["kmeans_iterations"],
            "empty_clusters_greedy": greedy["empty_clusters"],
            "empty_clusters_single": single["empty_clusters"],
        }
    results["kmeans_seeding"] = seeding
    results["superpixels_only_masks"] = superpixels_only_masks(sp, boxes)
    results["blur"] = blur_differences(imgs)
    results["lars_step_ratio"] = lars_step_ratio()
    results.update(step_order_and_stem_bn(raw, samples, boxes, sp))
    return results


def superpixels_only_masks(sp: torch.Tensor, boxes: torch.Tensor) -> dict:
    """K > 128: the authors' soft bilinear one-hot maps vs our one-hot nearest label map, as 7x7 view masks."""
    size = SIZE // 4
    soft = view_masks_from_maps(superpixel_maps(sp, size), boxes, SIZE // 32)
    num = soft.shape[2]
    hard = view_masks(resize_labels(sp, size), boxes, num, SIZE // 32)
    mass_soft, mass_hard = mask_mass(soft), mask_mass(hard)
    counted = lambda m: float(((m[:, 0] > 1e-3) & (m[:, 1] > 1e-3)).sum() / m.shape[0])  # noqa: E731
    used = (mass_soft + mass_hard) > 1e-3
    return {
        "mean_abs_mask_difference_over_mask_mean": float((soft - hard).abs().mean() / hard.mean()),
        "masks_with_mass_change_over_10pct": float(
            ((mass_soft - mass_hard).abs() > 0.1 * mass_hard.clamp_min(1e-3))[used].float().mean()
        ),
        "counted_masks_per_image_soft": counted(mass_soft),
        "counted_masks_per_image_nearest": counted(mass_hard),
    }


def blur_differences(imgs: list[Image.Image]) -> dict:
    """Grey-level differences from the authors' cv2.GaussianBlur(img, (23, 23), sigma) on 224 px photos:
    PIL's GaussianBlur (our earlier CPU blur) and the device path's float 23-tap Gaussian, rounded."""
    out = {}
    for sigma in (0.5, 1.0, 1.5, 2.0):
        pil, dev, pil_inner = [], [], []
        for img in imgs:
            a = np.asarray(img.resize((SIZE, SIZE), Image.BICUBIC))
            ref = cv2.GaussianBlur(a, (23, 23), sigma).astype(np.int16)
            p = np.asarray(img.resize((SIZE, SIZE), Image.BICUBIC).filter(ImageFilter.GaussianBlur(sigma)))
            x = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255
            d = (gaussian_blur(x, torch.tensor([sigma]))[0].permute(1, 2, 0) * 255).round().numpy()
            pil.append(np.abs(p.astype(np.int16) - ref))
            pil_inner.append(pil[-1][11:-11, 11:-11])
            dev.append(np.abs(d.astype(np.int16) - ref))
        out[str(sigma)] = {
            "pil_max": int(max(x.max() for x in pil)),
            "pil_mean": float(np.mean([x.mean() for x in pil])),
            "pil_max_away_from_the_border": int(max(x.max() for x in pil_inner)),
            "device_max": int(max(x.max() for x in dev)),
            "device_mean": float(np.mean([x.mean() for x in dev])),
        }
    return out


def lars_step_ratio() -> dict:
    """How far the authors' LARS moves a weight relative to timm's at the same step, for a constant
    gradient and trust ratio, on the published ImageNet plan (lr in the buffer vs lr times the buffer):
    official sum_j m^(s-j) lr_j against timm's lr_s sum_j m^(s-j)."""
    plan = TrainingPlan(num_examples=1281167, world_size=128, batch_size=32, epochs=300)
    m, off, acc, out = 0.9, 0.0, 0.0, {}
    rows = plan.rows()
    changes = [r["first_step"] for r, prev in zip(rows[1:], rows) if r["k"] != prev["k"]]
    changes = changes[:2] + changes[-2:]  # the first K drops (127 -> 126 -> 125) and the last (6 -> 5 -> 4)
    marks = {1, 2, 10, 100, 500, 937, 938, 2000, *changes, *(s + 1 for s in changes), *(s + 10 for s in changes)}
    ks = {}
    for s in range(max(marks) + 1):
        lr = plan.at(s).lr
        off, acc = m * off + lr, m * acc + 1.0
        if s in marks:
            out[str(s)] = off / (lr * acc) if lr > 0 else float("nan")
            ks[str(s)] = plan.at(s).k
    return {"official_over_timm": out, "k": ks}


def step_order_and_stem_bn(raw: torch.Tensor, samples: list, boxes: torch.Tensor, sp: torch.Tensor) -> dict:
    """One real step (ResNet-50, lr 1, the authors' LARS) moves the online network away from the target;
    then the k-means points of the target before vs after the EMA update with tau 0.99 (the order of
    issue 23); and the trust ratio the stem BN weight gets under the authors' name rule."""
    torch.manual_seed(0)
    model = R2O(depth=50).train()
    views = normalize_images(torch.stack([s["views"] for s in samples]))
    opt = build_optimizer(model.online_modules(), exclude="official_names")
    set_lr(opt, 1.0)
    out = model(views, boxes, raw, sp, 16, torch.Generator().manual_seed(0))
    out.loss.backward()
    w, g = model.online_encoder.bn1.weight.detach(), model.online_encoder.bn1.weight.grad
    trust = float(1e-3 * w.norm() / (g.norm() + 1e-6 * w.norm()))
    opt.step()
    res = {
        "stem_bn": {
            "tensors_excluded_by_type_not_by_name": len(
                {id(p) for p in split_decay_groups(model.online_modules())[1]}
                - {id(p) for p in split_decay_groups(model.online_modules(), "official_names")[1]}
            ),
            "values": int(w.numel()),
            "trust_ratio_under_the_name_rule_at_step_0": trust,
        }
    }
    with torch.no_grad():  # train mode, as the authors' raw-view pass (batch statistics)
        pre = model.target_encoder.forward_c4(raw)
        model.update_target(0.99)
        post = model.target_encoder.forward_c4(raw)
    f_pre, valid = superpixel_features(pre, sp)
    f_post, _ = superpixel_features(post, sp)
    a, b = f_pre[valid], f_post[valid]
    order = {"relative_point_change": float(((a - b).norm(dim=-1) / a.norm(dim=-1)).mean()), "points": int(a.shape[0])}
    for k in KS:
        pa, _ = kmeans_with_iterations(a, k, 200, torch.Generator().manual_seed(0))[:2]
        pb, _ = kmeans_with_iterations(b, k, 200, torch.Generator().manual_seed(0))[:2]
        cluster_a = torch.zeros(valid.shape, dtype=torch.long)
        cluster_b = torch.zeros(valid.shape, dtype=torch.long)
        cluster_a[valid], cluster_b[valid] = pa, pb
        la = paint_clusters(sp, cluster_a, SIZE // 4)
        lb = paint_clusters(sp, cluster_b, SIZE // 4)
        moved = round((1 - relabel_agreement(pa.numpy(), pb.numpy())) * len(pa))
        order[str(k)] = {"points_changing_cluster": moved, "mask_pixels_changed": _changed(la, lb)}
    res["step_order"] = order
    return res


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

    print("issue 23 (the authors' behaviour is now the default; 'earlier' is the switch or our old order):")
    o = r["step_order"]
    print(
        f"step order: k-means points of the pre- vs post-EMA target (tau 0.99, after one lr-1 step) differ by "
        f"{100 * o['relative_point_change']:.2f}% on average ({o['points']} points); "
        + ", ".join(
            f"K={k}: {o[str(k)]['points_changing_cluster']} points change cluster, "
            f"{100 * o[str(k)]['mask_pixels_changed']:.1f}% mask pixels"
            for k in KS
        )
    )
    ratio = r["lars_step_ratio"]["official_over_timm"]
    print("LARS step, authors' / timm's (constant gradient): " + ", ".join(f"s={s}: {v:.3f}" for s, v in ratio.items()))
    sb = r["stem_bn"]
    print(
        f"stem BN under the name rule: {sb['tensors_excluded_by_type_not_by_name']} tensor ({sb['values']} values) "
        f"gets decay and a trust ratio of {sb['trust_ratio_under_the_name_rule_at_step_0']:.3g} (1 when excluded)"
    )
    for k in KS:
        ks = r["kmeans_seeding"][str(k)]
        print(
            f"K={k}: greedy vs single seeding: {100 * ks['mask_pixels_changed']:.1f}% mask pixels change; inertia "
            f"{ks['inertia_greedy']:.2f} vs {ks['inertia_single']:.2f}; iterations {ks['iterations_greedy']} vs "
            f"{ks['iterations_single']}; empty clusters {ks['empty_clusters_greedy']} vs {ks['empty_clusters_single']}"
        )
    so = r["superpixels_only_masks"]
    print(
        f"K>128 masks, soft (authors) vs nearest: mean |difference| {100 * so['mean_abs_mask_difference_over_mask_mean']:.0f}% "
        f"of the mean mask value; {100 * so['masks_with_mass_change_over_10pct']:.0f}% of masks change area by >10%; "
        f"counted masks/image {so['counted_masks_per_image_soft']:.1f} vs {so['counted_masks_per_image_nearest']:.1f}"
    )
    for sigma, b in r["blur"].items():
        print(
            f"blur sigma {sigma}: PIL vs OpenCV max {b['pil_max']} (away from the border {b['pil_max_away_from_the_border']}),"
            f" mean {b['pil_mean']:.2f} grey levels; device vs OpenCV max {b['device_max']}, mean {b['device_mean']:.3f}"
        )


if __name__ == "__main__":
    res = main()
    res = json.loads(json.dumps(res))  # int keys become strings, as in the file
    out = ROOT / "benchmarks" / "results" / "departures.json"
    out.write_text(json.dumps(res, indent=1) + "\n")
    print_table(res)
    print(f"written: {out}")
