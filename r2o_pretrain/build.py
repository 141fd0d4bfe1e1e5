"""Builders: a config → the model, the data folder, the dataset, the optimiser and the run's plan.

Plain functions with no distribution: the trainer and the tools (``tools/cache_superpixels.py``,
``tools/pretrain.py --dry-run``) call the same ones.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from .config import Config, ConfigError
from .data.dataset import PretrainDataset
from .data.folder import list_images
from .data.photometric import PhotometricSpec
from .data.superpixels import SuperpixelCache
from .data.views import TwoViewTransform
from .model.r2o import R2O
from .optim import build_optimizer
from .scenes.demo import demo_dataset_ready, write_demo_dataset
from .schedules import TrainingPlan, plan_from_config

logger = logging.getLogger("r2o")


def build_model(cfg: Config) -> R2O:
    m = cfg.model
    model = R2O(
        depth=m.depth,
        method=m.method,
        projector_hidden=m.projector_hidden,
        projector_out=m.projector_out,
        predictor_hidden=m.predictor_hidden,
        kmeans_iters=m.kmeans_iters,
        kmeans_until_converged=m.kmeans_until_converged,
        mask_area_threshold=m.mask_area_threshold,
        pool_area_floor=m.pool_area_floor,
        superpixel_pooling=m.superpixel_pooling,
        label_map=m.label_map,
        kmeans_init=m.kmeans_init,
        sparse_heads=m.sparse_heads,
    )
    model.refiner = dataclasses.replace(model.refiner, kmeans_cuda_graphs=m.kmeans_cuda_graphs)
    return model


def build_training_optimizer(cfg: Config, model: R2O) -> torch.optim.Optimizer:
    """LARS (or SGD) over the model's trained modules (``R2O.online_modules``), as ``cfg.optim`` says."""
    o = cfg.optim
    return build_optimizer(
        model.online_modules(), o.optimizer, o.weight_decay, o.momentum, o.trust_coefficient, o.lars, o.exclude
    )


def resolve_data_root(cfg: Config, write_demo: bool = True) -> str:
    """The folder (or list file) to train on: ``data.root`` when given, else the demo scenes
    (``data.demo``), written first if missing and ``write_demo`` (under distribution only the main process
    writes; the others wait at a barrier)."""
    if cfg.data.root:
        return cfg.data.root
    if not cfg.data.demo:
        raise ConfigError("data.root is empty: give an image folder (data.root=PATH) or use data.demo=true")
    demo_dir = Path(cfg.data.demo_dir)
    if write_demo and not demo_dataset_ready(demo_dir):
        logger.info("writing the demo scenes to %s (tools/make_demo_data.py does the same)", demo_dir)
        write_demo_dataset(demo_dir)
    return str(demo_dir / "images")


def build_dataset(cfg: Config, root: str) -> PretrainDataset:
    """The pretraining dataset of ``root`` with the views and region prior that ``cfg`` asks for."""
    d = cfg.data
    return PretrainDataset(
        root,
        TwoViewTransform(
            d.view_size,
            d.raw_size,
            tuple(d.crop_scale),
            tuple(d.crop_ratio),
            flip_prob=d.flip_prob,
            augment_on=d.augment_on,
            blur=d.blur,
            photometric=PhotometricSpec.from_settings(d),
        ),
        SuperpixelCache(
            d.superpixel_cache or None, d.n_segments, d.slic_compactness, root=root, slic_input=d.slic_input
        ),
        seed=cfg.train.seed,
        min_image_size=d.min_image_size,
    )


def dry_run_plan(cfg: Config, world_size: int) -> TrainingPlan:
    """The run's plan without training: N from ``data.num_examples`` if given, else by listing the images
    (the demo scenes are written first if missing, as training would)."""
    n = cfg.data.num_examples
    if n <= 0:
        if not cfg.data.root and not cfg.data.demo:
            raise ConfigError("--dry-run needs data.root=PATH (to count the images) or data.num_examples=N")
        n = len(list_images(resolve_data_root(cfg)).files)
    plan = plan_from_config(cfg, n, world_size)
    if plan.steps_per_epoch < 1:
        raise ConfigError(
            f"{n} images are fewer than one global batch ({cfg.train.batch_size} x {world_size} processes)"
        )
    return plan
