import torch

from r2o_pretrain.model.masks import mask_mass, mask_pool, view_masks


def test_mask_pool_equals_mean_over_mask():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 5, 4, 4, generator=g)
    masks = (torch.rand(2, 3, 16, generator=g) > 0.5).float()
    masks[1, 2] = 0  # an empty mask pools to zeros
    pooled = mask_pool(feats, masks)
    assert pooled.shape == (2, 3, 5)
    for b in range(2):
        for m in range(3):
            sel = masks[b, m].bool()
            expected = feats[b].flatten(1)[:, sel].mean(1) if sel.any() else torch.zeros(5)
            torch.testing.assert_close(pooled[b, m], expected, atol=1e-5, rtol=1e-5)


def test_mask_pool_is_area_normalised_for_soft_masks():
    feats = torch.arange(4.0).view(1, 1, 2, 2)
    masks = torch.tensor([[[0.5, 0.5, 0.0, 0.0]]])
    torch.testing.assert_close(mask_pool(feats, masks), torch.tensor([[[0.5]]]), atol=1e-5, rtol=0)


def planted_label_map():
    """28x28 label map: label 1 on the top-left 7x7 block (image [0,.25]x[0,.25]), 0 elsewhere."""
    labels = torch.zeros(1, 28, 28, dtype=torch.long)
    labels[0, :7, :7] = 1
    return labels


def test_roi_aligned_masks_follow_crop_and_flip():
    labels = planted_label_map()
    boxes = torch.tensor([[[0.0, 0.0, 0.5, 0.5, 0.0], [0.0, 0.0, 0.5, 0.5, 1.0]]])
    masks = view_masks(labels, boxes, num_labels=2, out_size=2)  # [1,2,2,4]
    plain = masks[0, 0, 1].view(2, 2)
    flipped = masks[0, 1, 1].view(2, 2)
    torch.testing.assert_close(plain, torch.tensor([[1.0, 0.0], [0.0, 0.0]]), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped, torch.tensor([[0.0, 1.0], [0.0, 0.0]]), atol=1e-5, rtol=0)
    # the background label covers the rest, so each cell's masks sum to one
    torch.testing.assert_close(masks[0].sum(1), torch.ones(2, 4), atol=1e-5, rtol=0)


def test_roi_aligned_mask_of_region_outside_crop_is_empty():
    labels = planted_label_map()
    boxes = torch.tensor([[[0.5, 0.5, 1.0, 1.0, 0.0], [0.0, 0.0, 1.0, 1.0, 0.0]]])
    masks = view_masks(labels, boxes, num_labels=2, out_size=4)
    mass = mask_mass(masks)
    assert mass[0, 0, 1] < 1e-6  # the planted block is outside view 0
    assert mass[0, 1, 1] > 0.5  # and inside view 1 (the whole image)
    # whole-image view: the block is the top-left cell of a 4x4 grid
    torch.testing.assert_close(masks[0, 1, 1].view(4, 4)[0, 0], torch.tensor(1.0), atol=1e-5, rtol=0)
