"""The switches that bring back the authors' behaviour where we depart from it (docs/method.md)."""

import numpy as np
import pytest
import torch
from PIL import Image

from r2o_pretrain.config import ConfigError, load_config
from r2o_pretrain.data.superpixels import SuperpixelCache, slic_labels
from r2o_pretrain.data.views import TwoViewTransform
from r2o_pretrain.model.r2o import R2O


def test_flip_probability_switch():
    img = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    for p, expected in ((1.0, {1.0}), (0.0, {0.0})):
        tf = TwoViewTransform(32, 32, flip_prob=p)
        assert {float(f) for _ in range(5) for f in tf(img)["boxes"][:, 4]} == expected
    assert load_config(None).data.flip_prob == 0.5


def test_slic_on_the_normalised_picture_is_its_own_cache_entry(tmp_path):
    from skimage import data as skdata

    rgb = np.asarray(Image.fromarray(skdata.chelsea()).resize((48, 48), Image.BICUBIC))
    a, b = slic_labels(rgb, 16, 10.0, "uint8"), slic_labels(rgb, 16, 10.0, "normalized")
    assert a.shape == b.shape == (48, 48) and b.min() == 0 and not np.array_equal(a, b)
    path = tmp_path / "x.png"
    Image.fromarray(rgb).save(path)
    ours, theirs = SuperpixelCache(str(tmp_path), 16), SuperpixelCache(str(tmp_path), 16, slic_input="normalized")
    assert ours.entry(str(path), 48) != theirs.entry(str(path), 48)
    np.testing.assert_array_equal(theirs.labels_for(str(path), rgb), b)


def test_invalid_switch_values_are_named():
    for key, value in (
        ("model.superpixel_pooling", "bilinear"),
        ("model.label_map", "argmax"),
        ("data.slic_input", "x"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [f"{key}={value}"])


@pytest.mark.parametrize("superpixels_only", [False, True])
def test_model_trains_with_every_official_switch(superpixels_only):
    torch.manual_seed(0)
    model = R2O(
        depth=18,
        projector_hidden=32,
        projector_out=16,
        predictor_hidden=32,
        superpixel_pooling="official",
        label_map="official",
        kmeans_until_converged=False,
        kmeans_iters=3,
    ).train()
    b = 2
    sp = torch.arange(16).view(4, 4).repeat_interleave(16, 0).repeat_interleave(16, 1).expand(b, 64, 64).clone()
    boxes = torch.tensor([[0.0, 0.0, 0.8, 0.9, 1.0], [0.1, 0.2, 1.0, 1.0, 1.0]]).expand(b, 2, 5)
    out = model(torch.randn(b, 2, 3, 64, 64), boxes, torch.randn(b, 3, 64, 64), sp, 4, None, superpixels_only)
    out.loss.backward()
    assert torch.isfinite(out.loss) and out.num_labels == (16 if superpixels_only else 4)
    assert set(out.monitors) == {"collapse_std", "masks_per_image", "mask_area"}
