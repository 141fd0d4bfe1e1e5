"""Dataset registration: any COCO-format json by name, and the bundled demo scenes.

COCO 2017 itself is registered by detectron2 (``coco_2017_train`` under ``$DETECTRON2_DATASETS``).
"""

from __future__ import annotations

import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_coco_json

logger = logging.getLogger("r2o_d2")

DEMO_SPLITS = {
    "r2o_demo_train": ("instances_train.json", "images"),
    "r2o_demo_val": ("instances_val.json", "images_val"),
}


def load_checked_coco_json(json_file: str, image_root: str, name: str) -> list[dict]:
    """detectron2's COCO loader, plus a clear error when the json's images are not on disk."""
    if not os.path.isfile(json_file):
        raise FileNotFoundError(f"dataset '{name}': annotation file {json_file} does not exist")
    records = load_coco_json(json_file, image_root, name)
    missing = [r["file_name"] for r in records if not os.path.isfile(r["file_name"])]
    if missing:
        raise FileNotFoundError(
            f"dataset '{name}': {len(missing)} of {len(records)} images listed in {json_file} are missing "
            f"under {image_root}; the first is {missing[0]}. Check the IMAGE_DIR given for this dataset."
        )
    return records


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
