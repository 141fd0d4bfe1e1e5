"""Dataset registration (any COCO-format json or PASCAL VOC-layout folder by name, the bundled demo scenes)
and the classes a config's datasets agree on, so that the model's number of classes can follow the data.

COCO 2017 and PASCAL VOC 2007/2012 themselves are registered by detectron2 (``coco_2017_train``,
``voc_2007_trainval``, ``voc_2012_trainval``, ``voc_2007_test`` … under ``$DETECTRON2_DATASETS``).
"""

from __future__ import annotations

import logging
import os
import xml.etree.ElementTree as ET

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json
from detectron2.data.datasets.pascal_voc import CLASS_NAMES as VOC_CLASSES
from detectron2.data.datasets.pascal_voc import load_voc_instances, register_pascal_voc

from .config import R2OConfigError

logger = logging.getLogger("r2o_d2")

DEMO_SPLITS = {
    "r2o_demo_train": ("instances_train.json", "images"),
    "r2o_demo_val": ("instances_val.json", "images_val"),
}


def load_checked_coco_json(json_file: str, image_root: str, name: str) -> list[dict]:
    """detectron2's COCO loader, plus a clear error when the json's images are not on disk; notes in the metadata
    how many instances are RLE and drops ``json_file`` when evaluation could not use it (no area/iscrowd)."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"dataset '{name}': annotation file {json_file} does not exist")
    records = load_coco_json(json_file, image_root, name, extra_annotation_keys=["area"])
    missing = [r["file_name"] for r in records if not os.path.isfile(r["file_name"])]
    if missing:
        raise FileNotFoundError(
            f"dataset '{name}': {len(missing)} of {len(records)} images listed in {json_file} are missing "
            f"under {image_root}; the first is {missing[0]}. Check the IMAGE_DIR given for this dataset."
        )
    annotations = [a for r in records for a in r["annotations"]]
    meta = MetadataCatalog.get(name)
    meta.set(rle_instances=sum(isinstance(a.get("segmentation"), dict) for a in annotations if not a.get("iscrowd")))
    if meta.get("json_file") == json_file and any("area" not in a or "iscrowd" not in a for a in annotations):
        # pycocotools' evaluation needs both in the ground truth: without json_file, detectron2's
        # COCOEvaluator writes a complete COCO json from these records instead (areas computed, iscrowd 0).
        # detectron2 loads a test set before it builds its evaluator, so this runs first.
        logger.info("dataset '%s': annotations without 'area'/'iscrowd'; evaluation uses a completed copy", name)
        delattr(meta, "json_file")
    return records


def check_mask_format(names: list[str], mask_format: str) -> None:
    """Polygon masks (detectron2's default) cannot hold instances stored as RLE: say so before training."""
    if mask_format != "polygon":
        return
    for name in names:
        rle = MetadataCatalog.get(name).get("rle_instances", 0)
        if rle:
            raise R2OConfigError(
                f"dataset '{name}': {rle} instances store their mask as RLE ('segmentation' with 'counts'), "
                "which INPUT.MASK_FORMAT polygon cannot hold: add INPUT.MASK_FORMAT bitmask (it reads polygons "
                "and RLE alike)."
            )


def register_coco_dataset(name: str, json_file: str, image_root: str) -> None:
    """Register (or re-register) a COCO-format instances dataset under ``name``."""
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(name, lambda: load_checked_coco_json(json_file, image_root, name))
    MetadataCatalog.get(name).set(json_file=json_file, image_root=image_root, evaluator_type="coco")


VOC_YEARS = (2007, 2012)  # detectron2's PascalVOCDetectionEvaluator: 2007 = the VOC07 11-point AP, 2012 = area AP


def _voc_problem(dirname: str, split: str, class_names) -> str:
    """What in a VOC-layout folder keeps detectron2's ``load_voc_instances`` from reading it (for the error)."""
    split_file = os.path.join(dirname, "ImageSets", "Main", f"{split}.txt")
    if not os.path.isfile(split_file):
        return f"the split file {split_file} does not exist (one image id per line)"
    with open(split_file) as f:
        ids = [line.strip() for line in f if line.strip()]
    if not ids:
        return f"the split file {split_file} lists no image"
    for image_id in ids:
        xml = os.path.join(dirname, "Annotations", f"{image_id}.xml")
        if not os.path.isfile(xml):
            return f"{xml} (listed in {split_file}) does not exist"
        try:
            tree = ET.parse(xml)
        except ET.ParseError as exc:
            return f"{xml} is not valid XML ({exc})"
        for field in ("size/height", "size/width"):
            if tree.find(field) is None:
                return f"{xml} has no <{field.replace('/', '><')}>"
        for obj in tree.findall("object"):
            name = obj.findtext("name")
            if name not in class_names:
                return f"{xml}: object '{name}' is not one of the {len(class_names)} VOC classes ({', '.join(class_names)})"
            if obj.find("bndbox") is None or any(
                obj.find(f"bndbox/{k}") is None for k in ("xmin", "ymin", "xmax", "ymax")
            ):
                return f"{xml}: an object '{name}' has no complete <bndbox> (xmin, ymin, xmax, ymax)"
    return "see the error above"


def load_checked_voc(dirname: str, split: str, name: str, class_names=VOC_CLASSES) -> list[dict]:
    """detectron2's ``load_voc_instances``, with an error naming the file when the folder does not fit it and
    when a listed JPEG is missing (detectron2 would fail later, in a data-loader worker)."""
    try:
        records = load_voc_instances(dirname, split, class_names)
    except (OSError, ValueError, TypeError, IndexError, AttributeError, ET.ParseError) as exc:
        raise FileNotFoundError(
            f"dataset '{name}': the VOC folder {dirname} (split '{split}') cannot be read: "
            f"{_voc_problem(dirname, split, class_names)} ({type(exc).__name__}: {exc})"
        ) from exc
    missing = [r["file_name"] for r in records if not os.path.isfile(r["file_name"])]
    if missing:
        raise FileNotFoundError(
            f"dataset '{name}': {len(missing)} of {len(records)} images of split '{split}' are missing under "
            f"{os.path.join(dirname, 'JPEGImages')}; the first is {missing[0]}."
        )
    return records


def register_voc_dataset(name: str, dirname: str, split: str, year: int) -> None:
    """Register (or re-register) a PASCAL VOC-layout folder (``JPEGImages/``, ``Annotations/*.xml``,
    ``ImageSets/Main/{split}.txt``; VOC's 20 classes) with detectron2's own ``register_pascal_voc``, so that
    ``PascalVOCDetectionEvaluator`` finds ``dirname``/``split``/``year`` in its metadata."""
    if str(year) not in {str(y) for y in VOC_YEARS}:
        raise R2OConfigError(
            f"dataset '{name}': year {year} is not one of {VOC_YEARS}; detectron2's VOC evaluator uses it for the "
            "metric: 2007 = VOC07 11-point AP (the VOC07 test protocol), 2012 = area under the PR curve"
        )
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    register_pascal_voc(name, dirname, split, int(year))
    DatasetCatalog.remove(name)  # the same records, with the checks above
    DatasetCatalog.register(name, lambda: load_checked_voc(dirname, split, name))
    MetadataCatalog.get(name).set(evaluator_type="pascal_voc")


def register_demo_datasets(root: str | None = None) -> None:
    """``r2o_demo_train`` / ``r2o_demo_val`` from ``tools/make_demo_data.py`` output ($R2O_DEMO_DIR, data/demo)."""
    root = root or os.environ.get("R2O_DEMO_DIR", "data/demo")
    for name, (json_name, images) in DEMO_SPLITS.items():
        register_coco_dataset(name, os.path.join(root, json_name), os.path.join(root, images))


def dataset_classes(name: str) -> list[str]:
    """The class names of a registered dataset in contiguous-id order (detectron2's ``thing_classes``).

    detectron2's own datasets carry them in their metadata; a COCO json registered here is loaded once to
    read its categories (which also checks that its images exist).
    """
    if name not in DatasetCatalog.list():
        raise R2OConfigError(
            f"dataset '{name}' is not registered: add --coco-dataset {name} JSON IMAGE_DIR or --voc-dataset {name} "
            f"DIR SPLIT YEAR, or name one of "
            f"{', '.join(sorted(DatasetCatalog.list())[:8])}, ..."
        )
    meta = MetadataCatalog.get(name)
    if not hasattr(meta, "thing_classes"):
        DatasetCatalog.get(name)  # load_coco_json sets thing_classes from the json's categories
    if not hasattr(meta, "thing_classes"):
        raise R2OConfigError(f"dataset '{name}' has no thing_classes in its metadata: is it an instance dataset?")
    return list(meta.thing_classes)


def agreed_classes(names: list[str]) -> list[str]:
    """The classes that every dataset in ``names`` has, in the same order; an error naming the first that differs.

    The model predicts one set of classes: training and test sets must share categories (names and order).
    """
    if not names:
        raise R2OConfigError("no dataset named: set DATASETS.TRAIN / DATASETS.TEST")
    reference = dataset_classes(names[0])
    for name in names[1:]:
        classes = dataset_classes(name)
        if classes != reference:
            differ = next(
                (f"class {i}: '{a}' vs '{b}'" for i, (a, b) in enumerate(zip(reference, classes)) if a != b),
                f"{len(reference)} vs {len(classes)} classes",
            )
            raise R2OConfigError(
                f"datasets '{names[0]}' ({len(reference)} classes) and '{name}' ({len(classes)} classes) do not "
                f"have the same categories ({differ}). The model predicts one set of classes: give both jsons the "
                "same 'categories' list (same names, ids in the same order), empty ones included. (DATASETS.TEST "
                "comes from the config file unless set: DATASETS.TEST '(\"my_val\",)', or '()' for none.)"
            )
    return reference
