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
        ("data.blur", "box"),
        ("model.kmeans_init", "random"),
        ("optim.lars", "lamb"),
        ("optim.exclude", "none"),
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


def test_blur_is_opencvs_on_the_cpu_and_within_one_level_on_the_device():
    import cv2
    from skimage import data as skdata

    from r2o_pretrain.data import photometric as P
    from r2o_pretrain.data.device_augment import gaussian_blur

    rgb = np.ascontiguousarray(skdata.astronaut()[::4, ::4])  # 128x128 photo
    img = Image.fromarray(rgb)
    params = torch.zeros(P.NUM_PARAMS)
    params[P.BLUR_SIGMA] = 1.7
    want = cv2.GaussianBlur(rgb, (23, 23), 1.7)  # the authors' call
    assert load_config(None).data.blur == "opencv"
    np.testing.assert_array_equal(np.asarray(P.apply_photometric_pil(img, params)), want)
    pil = np.asarray(P.apply_photometric_pil(img, params, blur="pil")).astype(int)
    assert np.abs(pil - want).max() > 3  # the switch is PIL's box-blur approximation, visibly different
    dev = gaussian_blur(torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255, torch.tensor([1.7]))
    dev = (dev[0].permute(1, 2, 0) * 255).round().numpy().astype(int)
    assert np.abs(dev - want).max() <= 1
    tf = TwoViewTransform(32, 32, blur="pil")
    assert tf.blur == "pil"
    with pytest.raises(ConfigError, match="data.blur"):
        load_config(None, ["data.blur=pil", "data.augment_on=device"])
