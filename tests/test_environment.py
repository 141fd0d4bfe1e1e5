"""The installed stack itself, with the real libraries: pinned versions, compiled mmcv ops, and one
tiny real training run each of detectron2's Mask R-CNN and of `mim train mmseg`."""

import importlib
import importlib.metadata as md

import pytest
import torch
from conftest import ROOT


def pins():
    out = {}
    for name in ("stack.txt", "nodeps.txt", "dev.txt"):
        for line in (ROOT / "requirements" / name).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                pkg, version = line.split("==")
                out[pkg] = version
    return out


def test_every_pinned_package_is_installed_at_its_pin():
    wrong = {}
    for pkg, version in pins().items():
        try:
            got = md.version(pkg)
        except md.PackageNotFoundError:
            got = None
        if got != version:
            wrong[pkg] = (version, got)
    assert not wrong, f"pinned vs installed: {wrong} (run make setup)"


@pytest.mark.parametrize(
    "module,dist,version",
    [
        ("torch", "torch", "2.14.1"),
        ("torchvision", "torchvision", "0.29.1"),
        ("mmcv", "mmcv", "2.1.0"),
        ("mmengine", "mmengine", "0.10.7"),
        ("mmseg", "mmsegmentation", "1.2.2"),
        ("mim", "openmim", "0.3.9"),
    ],
)
def test_core_versions(module, dist, version):
    importlib.import_module(module)
    assert md.version(dist).split("+")[0] == version


def test_everything_imports_together():
    for name in (
        "detectron2",
        "detectron2.modeling",
        "mmseg",
        "mmengine",
        "mmcv.ops",
        "mim",
        "pycocotools",
        "cityscapesscripts",
        "fvcore",
        "shapely",  # fvcore's crop of polygon masks (the LSJ mapper on COCO polygons)
        "skimage",
        "timm",
        "tensorboard",
    ):
        importlib.import_module(name)
    import setuptools

    assert int(setuptools.__version__.split(".")[0]) < 81  # pkg_resources is still there
    importlib.import_module("pkg_resources")


def test_mmcv_ops_have_their_compiled_extension():
    from mmcv.ops import nms, roi_align
    from mmcv.utils import ext_loader

    ext = ext_loader.load_ext("_ext", ["nms", "roi_align_forward", "deform_conv_forward"])
    assert ext.__file__.endswith(".so")
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    dets, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
    assert keep.tolist() == [0, 2]
    feat = torch.arange(16.0).view(1, 1, 4, 4)
    out = roi_align(feat, torch.tensor([[0, 0, 0, 4, 4.0]]), (1, 1), 1.0, 0, "avg", True)
    torch.testing.assert_close(out.flatten(), feat.mean().view(1))


def test_detectron2_missing_extension_fails_only_when_called():
    import detectron2
    from detectron2 import _C
    from detectron2.layers import DeformConv, ROIAlignRotated
    from detectron2.layers.rotated_boxes import pairwise_iou_rotated

    if not hasattr(_C, "MissingExtensionError"):
        pytest.skip(f"detectron2 {detectron2.__version__} has its compiled extension")
    # modules import and build; CPU deformable conv goes through torchvision's op and works
    out = DeformConv(4, 4, 3, padding=1)(torch.randn(1, 4, 8, 8), torch.zeros(1, 18, 8, 8))
    assert out.shape == (1, 4, 8, 8)
    boxes = torch.tensor([[5.0, 5.0, 4.0, 4.0, 0.0]])
    with pytest.raises(_C.MissingExtensionError, match="without its compiled"):
        pairwise_iou_rotated(boxes, boxes)
    with pytest.raises(_C.MissingExtensionError, match="box_iou_rotated|roi_align_rotated"):
        ROIAlignRotated((2, 2), 1.0, 0)(torch.randn(1, 1, 8, 8), torch.tensor([[0, 4.0, 4.0, 4.0, 4.0, 0.0]]))


def _patch_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_patch_detectron2", ROOT / "scripts/patch_detectron2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_offline_detectron2_carries_the_current_patch():
    """setup.sh reinstalls the offline detectron2 when scripts/patch_detectron2.py changed (its PATCH_ID)."""
    from detectron2 import _C

    if not hasattr(_C, "MissingExtensionError"):
        pytest.skip("detectron2 with its compiled extension (from git): not patched")
    try:
        from detectron2 import _r2o_patch
    except ImportError:
        pytest.fail(
            "the installed offline detectron2 has no _r2o_patch marker: an older setup built it; run make setup"
        )
    assert _r2o_patch.PATCH_ID == _patch_script().patch_id(), "detectron2 was patched by another version: make setup"


def test_patch_replaces_exactly_the_removed_numpy_aliases():
    patch = _patch_script()
    text = "np.str, np.int, np.long, np.unicode, np.bool, np.object; np.int64 np.float32 np.bool_ np.str_ np.integer"
    fixed = patch.NUMPY_ALIAS.sub(lambda m: patch.NUMPY_ALIASES[m.group(1)], text)
    assert fixed == "str, int, int, str, bool, object; np.int64 np.float32 np.bool_ np.str_ np.integer"
    assert "np.str" not in fixed.replace("np.str_", "")


# The stack's own training runs (Mask R-CNN in detectron2, FCN under `mim train`) are exercised end to end by
# tests/test_d2.py::test_demo_config_trains_and_evaluates_from_r2o_checkpoint (bbox and segm AP tables) and
# tests/test_mmseg.py::test_demo_config_trains_on_the_demo_voc_export (mIoU; `mim train` itself: test_cityscapes_e2e.py),
# with the r2o plugins loaded.
