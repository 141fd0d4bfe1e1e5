"""Config additions (``cfg.MODEL.R2O``, ``cfg.INPUT.LSJ``, ``cfg.INPUT.MAPPER``) and the SyncBN → BN switch."""

from __future__ import annotations

from detectron2.config import CfgNode as CN

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
