import torch
import torch.nn.functional as F

from r2o_pretrain.model.masks import mask_mass, mask_pool, view_masks
from r2o_pretrain.model.refiner import bilinear_one_hot, paint_clusters, superpixel_label_map


def test_mask_pool_equals_mean_over_masks_of_at_least_one_cell():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 4, 4, generator=g)
    masks = (torch.rand(2, 3, 16, generator=g) > 0.5).float()
    masks[0, 0, :2] = 1  # at least one cell everywhere but the empty mask below
    masks[1, 2] = 0  # an empty mask pools to zeros
    pooled = mask_pool(feats, masks)
    assert pooled.shape == (2, 3, 5)
    for b in range(2):
        for m in range(3):
            sel = masks[b, m].bool()
            expected = feats[b].flatten(1)[:, sel].mean(1) if sel.any() else torch.zeros(5)
            torch.testing.assert_close(pooled[b, m], expected, atol=1e-5, rtol=1e-5)


def test_mask_smaller_than_a_cell_pools_to_area_times_mean():
    # the authors divide by max(area, 1): a quarter-cell mask on a cell of value 8 pools to 0.25 * 8 = 2
    feats = torch.tensor([8.0, 4.0, 0.0, 0.0]).view(1, 1, 2, 2)
    masks = torch.tensor([[[0.25, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 0.0]]])
    torch.testing.assert_close(mask_pool(feats, masks), torch.tensor([[[2.0], [6.0]]]))
    # the true mean (area_floor=0) would give 8 and 6
    torch.testing.assert_close(mask_pool(feats, masks, area_floor=0.0), torch.tensor([[[8.0], [6.0]]]))


def planted_label_map():
    """28x28 label map: label 1 on the top-left 7x7 block (image [0,.25]x[0,.25]), 0 elsewhere."""
    labels = torch.zeros(1, 28, 28, dtype=torch.long)
    labels[0, :7, :7] = 1
    return labels


def test_roi_aligned_masks_follow_crop_and_flip_with_the_authors_alignment():
    labels = planted_label_map()
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.5, 0.5, 1.0]]])
    masks = view_masks(labels, boxes, num_labels=2, out_size=2)  # [1,2,2,4]
    # aligned=False: box [0,14] -> bins of 7 px, ceil(7) = 7 samples per bin at 0.5, 1.5, ..., 6.5 in
    # pixel-index coordinates; the last reads half of pixel 6 (label 1) and half of pixel 7 (label 0):
    # 6.5/7 per axis (aligned=True would sample pixel centres and give exactly 1)
    inside = (6.5 / 7) ** 2
    plain = masks[0, 0, 1].view(2, 2)
    flipped = masks[0, 1, 1].view(2, 2)
    assert abs(plain[0, 0] - inside) < 1e-5 and abs(flipped[0, 1] - inside) < 1e-5
    assert plain[1, 1] < 1e-6 and flipped[1, 0] < 1e-6 and flipped[0, 0] < 0.05
    # the background label covers the rest, so each cell's masks sum to one
    torch.testing.assert_close(masks[0].sum(1), torch.ones(2, 4), atol=1e-5, rtol=0)


def test_roi_aligned_mask_of_region_outside_crop_is_empty():
    labels = planted_label_map()
    boxes = torch.tensor([[[0.5, 0.5, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 0.0]]])
    masks = view_masks(labels, boxes, num_labels=2, out_size=4)
    mass = mask_mass(masks)
    assert mass[0, 0, 1] < 1e-6  # the planted block is outside view 0
    assert mass[0, 1, 1] > 0.5  # and inside view 1 (the whole image)


def test_bilinear_one_hot_equals_interpolate_of_the_full_one_hot():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 6, (2, 32, 32), generator=g)
    full = F.one_hot(labels, 6).permute(0, 3, 1, 2).float()
    for size in ((8, 8), (14, 14), (5, 7)):
        expected = F.interpolate(full, size=size, mode="bilinear", align_corners=False).flatten(2)
        torch.testing.assert_close(bilinear_one_hot(labels, size, 6), expected, atol=1e-6, rtol=0)


def test_official_label_map_makes_stray_boundary_ids():
    sp = torch.zeros(1, 16, 16, dtype=torch.long)
    sp[0, :, 6:] = 1  # boundary between columns 5 and 6: output column 1 reads pixels 5 and 6 (x4 downscale)
    cluster_of = torch.tensor([[0, 3]])
    nearest = paint_clusters(sp, cluster_of, 4, "nearest")
    official = paint_clusters(sp, cluster_of, 4, "official")
    assert set(nearest.unique().tolist()) == {0, 3}
    assert official[0, 0].tolist() == [0, 1, 3, 3]  # int(0.5 * 0 + 0.5 * 3) = 1: an id of neither side
    # superpixels-only path: bilinear + argmax (ties to the lower id)
    assert superpixel_label_map(sp, 4, "official")[0, 0].tolist() == [0, 0, 1, 1]


def test_official_superpixels_only_masks_are_the_soft_bilinear_maps():
    from torchvision.ops import roi_align

    from r2o_pretrain.model.masks import view_masks_from_maps
    from r2o_pretrain.model.r2o import R2O
    from r2o_pretrain.model.refiner import superpixel_maps

    g = torch.Generator().manual_seed(0)
    sp = torch.randint(0, 5, (2, 10, 10), generator=g).repeat_interleave(2, 1).repeat_interleave(2, 2)  # 20x20
    full = F.one_hot(sp, 5).permute(0, 3, 1, 2).float()
    soft = F.interpolate(full, size=(8, 8), mode="bilinear", align_corners=False)  # the authors' to_binary_mask
    torch.testing.assert_close(superpixel_maps(sp, 8), soft, atol=1e-6, rtol=0)
    assert ((soft > 0.01) & (soft < 0.99)).any()  # soft on boundaries: not a one-hot
    model = R2O(depth=18, projector_hidden=8, projector_out=4, predictor_hidden=8, label_map="official")
    labels, num, maps = model.region_labels(torch.zeros(2, 3, 32, 32), sp, 200, 8, None, superpixels_only=True)
    torch.testing.assert_close(maps, soft, atol=1e-6, rtol=0)
    assert num == 5 and torch.equal(labels, soft.argmax(1))  # the argmax only for the logs
    _, _, none = R2O(depth=18, projector_hidden=8, projector_out=4, predictor_hidden=8).region_labels(
        torch.zeros(2, 3, 32, 32), sp, 200, 8, None, superpixels_only=True
    )
    assert none is None  # our default: the nearest label map, one-hot masks
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0, 0.0], [0.25, 0.0, 1.0, 0.75, 1.0]]]).expand(2, 2, 5)
    masks = view_masks_from_maps(maps, boxes, 2)
    rois = torch.tensor([[0, 0, 0, 8, 8], [0, 0, 2, 6, 8]], dtype=torch.float)
    expected = roi_align(soft[:1], rois, output_size=2, spatial_scale=1.0, sampling_ratio=-1, aligned=False)
    torch.testing.assert_close(masks[0, 0], expected[0].flatten(1))
    torch.testing.assert_close(masks[0, 1], expected[1].flip(-1).flatten(1))
    # on one-hot maps it is exactly view_masks
    torch.testing.assert_close(view_masks_from_maps(full, boxes, 2), view_masks(sp, boxes, 5, 2))
