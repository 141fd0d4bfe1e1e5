"""The fast loader: uint8 batches, crop boxes that describe the crops, reduced-scale JPEG decoding,
determinism, and the batched photometric augmentation (run here on CPU tensors) against PIL's ops."""

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from r2o_pretrain.data import photometric as P
from r2o_pretrain.data.dataset import PretrainDataset, build_loader
from r2o_pretrain.data.device_augment import augment_batch, augment_per_sample_torchvision, batch_on_device
from r2o_pretrain.data.folder import open_rgb
from r2o_pretrain.data.superpixels import SuperpixelCache
from r2o_pretrain.data.views import TwoViewTransform, _from_pil, _to_pil


def ramp_jpeg(path, width=640, height=480):
    """R rises with x, G with y (255 * coordinate / size): a pixel's value says where it came from."""
    x = (np.arange(width) + 0.5) / width * 255
    y = (np.arange(height) + 0.5) / height * 255
    rgb = np.stack(np.broadcast_arrays(x[None, :], y[:, None], np.full((height, width), 128.0)), -1)
    Image.fromarray(np.round(rgb).astype(np.uint8)).save(path, quality=95)
    return str(path)


@pytest.fixture
def photo_folder(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    photo = skdata.astronaut()
    for i in range(4):
        Image.fromarray(photo[i * 40 : i * 40 + 300 : 3, i * 30 : i * 30 + 400 : 3]).save(
            root / f"p{i}.jpg", quality=90
        )
    return root


@pytest.mark.parametrize("augment_on", ["cpu", "device"])
def test_batches_are_uint8_and_become_normalised_on_the_device(photo_folder, augment_on):
    ds = PretrainDataset(str(photo_folder), TwoViewTransform(32, 40, augment_on=augment_on), SuperpixelCache(None, 10))
    loader, _ = build_loader(ds, batch_size=2, num_workers=0)
    batch = next(iter(loader))
    assert batch["views"].dtype == torch.uint8 and batch["views"].shape == (2, 2, 3, 32, 32)
    assert batch["raw"].dtype == torch.uint8 and batch["raw"].shape == (2, 3, 40, 40)
    assert batch["boxes"].shape == (2, 2, 5) and batch["superpixels"].shape == (2, 40, 40)
    assert ("photometric" in batch) == (augment_on == "device")
    views, boxes, raw, sp = batch_on_device(batch, "cpu")
    assert views.dtype == raw.dtype == torch.float32 and views.shape == (2, 2, 3, 32, 32)
    assert sp.dtype == torch.int64 and torch.equal(boxes, batch["boxes"])
    expected_raw = (batch["raw"].float() / 255 - torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)) / torch.tensor(
        [0.229, 0.224, 0.225]
    ).view(3, 1, 1)
    torch.testing.assert_close(raw, expected_raw)


def test_boxes_and_flips_describe_the_crops_also_when_decoded_at_reduced_scale(tmp_path):
    path = ramp_jpeg(tmp_path / "ramp.jpg")
    assert open_rgb(path, draft=lambda size: (size[0] // 4, size[1] // 4)).size == (160, 120)  # decoded at 1/4
    t = TwoViewTransform(32, 32, augment_on="device")
    drafted = 0
    for seed in range(12):
        torch.manual_seed(seed)
        crops = t.draw_crops(640, 480)
        drafted += t.draft_size(crops, 640, 480) is not None
        torch.manual_seed(seed)
        out = t.load(path)
        for view, (y0, x0, y1, x1, flip) in zip(out["views"].float(), out["boxes"].tolist()):
            centres = (torch.arange(32) + 0.5) / 32
            want_x = 255 * (x0 + centres * (x1 - x0))
            want_y = 255 * (y0 + centres * (y1 - y0))
            got_x = view[0].mean(0).flip(0) if flip else view[0].mean(0)
            got_y = view[1].mean(1)
            assert (got_x[2:-2] - want_x[2:-2]).abs().max() < 2.5, (seed, flip)
            assert (got_y[2:-2] - want_y[2:-2]).abs().max() < 2.5, seed
    assert drafted >= 3  # the reduced-scale path was exercised


def test_samples_are_a_function_of_seed_epoch_index(photo_folder):
    def sample(augment_on, seed=3, epoch=0, index=1):
        ds = PretrainDataset(
            str(photo_folder), TwoViewTransform(32, 32, augment_on=augment_on), SuperpixelCache(None, 10), seed
        )
        ds.set_epoch(epoch)
        return ds[index]

    a, b = sample("device"), sample("device")
    assert torch.equal(a["views"], b["views"]) and torch.equal(a["photometric"], b["photometric"])
    assert not torch.equal(sample("device", epoch=1)["boxes"], a["boxes"])
    assert not torch.equal(sample("device", seed=4)["boxes"], a["boxes"])
    cpu = sample("cpu")
    assert torch.equal(cpu["boxes"], a["boxes"]) and torch.equal(cpu["raw"], a["raw"])  # same crops either way
    assert torch.equal(cpu["views"], sample("cpu")["views"])


@pytest.mark.parametrize("flip_prob", [0.0, 1.0])
def test_flip_prob(flip_prob):
    t = TwoViewTransform(16, 16, flip_prob=flip_prob)
    flags = [c.flip for s in range(8) for c in (torch.manual_seed(s), t.draw_crops(50, 40))[1]]
    assert all(f == bool(flip_prob) for f in flags)


def one_op(**values) -> torch.Tensor:
    p = torch.zeros(P.NUM_PARAMS)
    p[P.ORDER] = torch.arange(4.0)
    p[[P.BRIGHTNESS, P.CONTRAST, P.SATURATION]] = 1.0
    for name, v in values.items():
        p[getattr(P, name.upper())] = v
    return p


OPS = {
    "brightness": one_op(jitter=1, brightness=1.35),
    "contrast": one_op(jitter=1, contrast=0.65),
    "saturation": one_op(jitter=1, saturation=1.2),
    "hue": one_op(jitter=1, hue=0.08),
    "grayscale": one_op(grayscale=1),
    "blur": one_op(blur_sigma=1.5),
    "solarize": one_op(solarize=1),
}


@pytest.mark.parametrize("name", list(OPS))
def test_device_op_matches_the_pil_op_with_the_same_parameters(name):
    img = Image.fromarray(skdata.chelsea()[::4, ::4])  # 75x113 photo
    params = OPS[name]
    want = _from_pil(P.apply_photometric_pil(img, params)).float()
    got = augment_batch(_from_pil(img).float().unsqueeze(0) / 255, params.unsqueeze(0))[0] * 255
    diff = (got - want).abs()
    change = (want - _from_pil(img).float()).abs().mean()
    assert change > 3  # the op does something visible
    assert diff.mean() < 1.0 and torch.quantile(diff.flatten(), 0.99) < 4.0, (name, diff.mean(), diff.max())


def test_device_augment_is_per_sample_and_matches_pil_on_random_draws():
    img = Image.fromarray(skdata.coffee()[::5, ::5])
    x = _from_pil(img).float() / 255
    torch.manual_seed(0)
    params = torch.cat([P.sample_two_views() for _ in range(6)])  # 12 views
    batch = augment_batch(x.expand(12, -1, -1, -1), params)
    for i in range(12):
        torch.testing.assert_close(batch[i], augment_batch(x[None], params[i : i + 1])[0])  # no cross-talk
        want = _from_pil(P.apply_photometric_pil(_to_pil(_from_pil(img)), params[i])).float()
        # PIL rounds to uint8 after every op and hues in 8-bit HSV: ~1.5-3 levels apart on average
        assert (batch[i] * 255 - want).abs().mean() < 3.5, (i, params[i])


def test_batched_ops_equal_torchvision_v2_per_sample():
    torch.manual_seed(0)
    x = torch.rand(12, 3, 24, 24)
    params = torch.cat([P.sample_two_views() for _ in range(6)])
    params[:4, P.JITTER] = 1.0
    params[4:8, P.SOLARIZE] = 1.0
    want = augment_per_sample_torchvision(x, params)
    torch.testing.assert_close(augment_batch(x, params), want, atol=1e-4, rtol=0)


NO_PHOTOMETRIC = P.PhotometricSpec(color_jitter_p=0, grayscale_p=0, blur_p=(0, 0), solarize_p=(0, 0))


def test_photometric_settings_change_only_the_colours_of_a_sample(photo_folder):
    """Weaker or no colour augmentation draws the same crops (the same random stream); with every
    photometric op off, the CPU-augmented views are the un-augmented ones bit for bit."""
    path = str(photo_folder / "p0.jpg")
    samples = {}
    for name, t in {
        "byol": TwoViewTransform(32, 32, augment_on="cpu"),
        "off": TwoViewTransform(32, 32, augment_on="cpu", photometric=NO_PHOTOMETRIC),
        "raw": TwoViewTransform(32, 32, augment_on="device"),
    }.items():
        torch.manual_seed(3)
        samples[name] = t.load(path)
    assert torch.equal(samples["byol"]["boxes"], samples["off"]["boxes"])
    assert torch.equal(samples["off"]["views"], samples["raw"]["views"])
    assert not torch.equal(samples["byol"]["views"], samples["raw"]["views"])  # BYOL's blurs view 1 always
    # the device path applies the same no-op parameters as identity
    x = samples["raw"]["views"].float() / 255
    torch.manual_seed(0)
    off = torch.stack([P.sample_two_views(NO_PHOTOMETRIC)[0] for _ in range(2)])
    torch.testing.assert_close(augment_batch(x, off), x)


def test_jitter_strengths_bound_the_drawn_factors():
    spec = P.PhotometricSpec(color_jitter_p=1.0, color_jitter=(0.1, 0.0, 0.3, 0.05), grayscale_p=0.0)
    torch.manual_seed(0)
    params = torch.cat([P.sample_two_views(spec) for _ in range(300)])
    assert params[:, P.JITTER].eq(1).all() and params[:, P.GRAYSCALE].eq(0).all()
    for col, lo, hi in (
        (P.BRIGHTNESS, 0.9, 1.1),
        (P.CONTRAST, 1.0, 1.0),
        (P.SATURATION, 0.7, 1.3),
        (P.HUE, -0.05, 0.05),
    ):
        v = params[:, col]
        assert v.min() >= lo - 1e-6 and v.max() <= hi + 1e-6, col
        if hi > lo:  # the range is used, not a point inside it
            assert v.min() < lo + 0.1 * (hi - lo) and v.max() > hi - 0.1 * (hi - lo), col


def test_photometric_config_keys_reach_the_dataset_and_are_checked(photo_folder):
    from r2o_pretrain.build import build_dataset
    from r2o_pretrain.config import ConfigError, load_config

    cfg = load_config(
        None,
        [
            "data.color_jitter_p=0.5",
            "data.color_jitter=[0.2,0.2,0.1,0.05]",
            "data.grayscale_p=0",
            "data.solarize_p=[0,0]",
            f"data.root={photo_folder}",
            "data.superpixel_cache=",
        ],
    )
    spec = build_dataset(cfg, str(photo_folder)).transform.photometric
    assert spec == P.PhotometricSpec(0.5, (0.2, 0.2, 0.1, 0.05), 0.0, (1.0, 0.1), (0.0, 0.0))
    for bad, key in (
        ("data.color_jitter=[0.4,0.4,0.2,0.7]", "data.color_jitter"),
        ("data.grayscale_p=1.5", "data.grayscale_p"),
        ("data.blur_p=[1.0,-0.1]", "data.blur_p"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [bad])


def test_data_config_defaults_are_the_photometric_spec_defaults():
    """config.py repeats BYOL's numbers (it imports no torch); the two sets must not drift apart."""
    from r2o_pretrain.config import DataConfig

    assert P.PhotometricSpec.from_settings(DataConfig()) == P.PhotometricSpec() == P.BYOL
