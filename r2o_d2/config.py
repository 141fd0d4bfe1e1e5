"""Config additions (``cfg.MODEL.R2O``, ``cfg.INPUT.LSJ``, ``cfg.INPUT.MAPPER``), the SyncBN → BN switch and
the checks that a config fits the machine it runs on."""

from __future__ import annotations

from detectron2.config import CfgNode as CN


class R2OConfigError(ValueError):
    """A config (or a dataset it names) that cannot work; the message says which setting and what to do."""


NORM_KEYS = ("MODEL.RESNETS.NORM", "MODEL.FPN.NORM", "MODEL.ROI_BOX_HEAD.NORM", "MODEL.ROI_MASK_HEAD.NORM")


def add_r2o_config(cfg: CN) -> CN:
    cfg.MODEL.R2O = CN()
    cfg.MODEL.R2O.ENCODER = "online"  # which encoder of an R2O pretraining checkpoint to load
    cfg.MODEL.R2O.ALLOW_PICKLE = False  # allow MODEL.WEIGHTS that need full unpickling (trusted files only)
    cfg.INPUT.MAPPER = "default_mapper"  # lsj_mapper | default_mapper: a name in r2o_d2.MAPPER_REGISTRY
    cfg.INPUT.LSJ = CN()
    cfg.INPUT.LSJ.IMAGE_SIZE = 1024  # longest side before jitter; crop/pad size
    cfg.INPUT.LSJ.MIN_SCALE = 0.8
    cfg.INPUT.LSJ.MAX_SCALE = 1.25
    cfg.INPUT.LSJ.PAD_VALUE = 128.0
    return cfg


def _get(cfg: CN, dotted: str):
    node = cfg
    for part in dotted.split(".")[:-1]:
        node = node[part]
    return node, dotted.split(".")[-1]


def adapt_norm_to_world_size(cfg: CN, world_size: int) -> list[str]:
    """SyncBN needs a process group; with one process it is plain BN. Returns the keys changed (to log)."""
    changed = []
    if world_size > 1:
        return changed
    was_frozen = cfg.is_frozen()
    cfg.defrost()
    for key in NORM_KEYS:
        node, leaf = _get(cfg, key)
        if node[leaf] in ("SyncBN", "nnSyncBN", "naiveSyncBN"):
            node[leaf] = "BN"
            changed.append(key)
    if was_frozen:
        cfg.freeze()
    return changed


def check_batch_fits_reference_world_size(cfg: CN, world_size: int) -> None:
    """detectron2 rescales batch, lr and schedule from ``SOLVER.REFERENCE_WORLD_SIZE`` GPUs to ``world_size``;
    that needs ``IMS_PER_BATCH`` divisible by the reference. Say so before detectron2's bare assertion."""
    reference, batch = cfg.SOLVER.REFERENCE_WORLD_SIZE, cfg.SOLVER.IMS_PER_BATCH
    if reference in (0, world_size) or batch % reference == 0:
        return
    raise R2OConfigError(
        f"SOLVER.IMS_PER_BATCH {batch} is not divisible by SOLVER.REFERENCE_WORLD_SIZE {reference}: detectron2 "
        f"rescales batch, lr and schedule from the config's {reference} GPUs to your {world_size}, which needs a "
        f"batch divisible by {reference}. Either add SOLVER.REFERENCE_WORLD_SIZE 0 to train with IMS_PER_BATCH "
        f"{batch}, BASE_LR and MAX_ITER exactly as given (scale BASE_LR with the batch yourself), or give "
        f"SOLVER.IMS_PER_BATCH a multiple of {reference} (the batch of {reference} GPUs, scaled to your {world_size})."
    )
