"""Dataset registration (any COCO-format json by name, the bundled demo scenes) and the classes a config's
datasets agree on, so that the model's number of classes can follow the data.

COCO 2017 itself is registered by detectron2 (``coco_2017_train`` under ``$DETECTRON2_DATASETS``).
"""

from __future__ import annotations

import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

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
            f"dataset '{name}' is not registered: add --coco-dataset {name} JSON IMAGE_DIR, or name one of "
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
