"""Run under torchrun by test_trainer.py and test_scale.py: trains a few steps with DDP (gloo), then every
rank saves its online weights so the test can check that the replicas stayed identical.

  ddp_train.py OUT_DIR [--resume auto|PATH] key=value ..."""

import sys
from pathlib import Path

import torch

from r2o_pretrain.config import load_config
from r2o_pretrain.engine.trainer import Trainer


def main() -> None:
    out_dir, overrides = sys.argv[1], sys.argv[2:]
    resume = None
    if overrides[:1] == ["--resume"]:
        resume, overrides = overrides[1], overrides[2:]
    cfg = load_config(None, overrides)
    trainer = Trainer(cfg, resume)
    rank, world = trainer.info.rank, trainer.info.world_size
    model = trainer.model
    trainer.fit()
    state = {k: v.detach().cpu() for k, v in model.named_parameters()}  # buffers (BN stats) stay per rank
    torch.save({"world": world, "state": state}, Path(out_dir) / f"rank{rank}.pt")


if __name__ == "__main__":
    main()
