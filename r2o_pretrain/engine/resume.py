"""What a resumed run trains with: its own saved settings, and the changes to them it accepts.

``--resume auto`` continues **the run in the output folder**. Its settings are the checkpoint's (the
``config`` entry every checkpoint holds; before the first checkpoint, the folder's ``config.yaml``) unless
a ``--config`` file is given; ``key=value`` overrides apply on top. Each setting that then differs from the
saved run's is a change of one of two kinds:

* **harmless** (``HARMLESS``): how the run is watched, where it writes, how fast it loads — logging and
  picture cadence, checkpoint cadence and retention, output folder, where this invocation stops
  (``train.max_steps``: the plan is the epochs'), preemption signals, loader workers,
  the superpixel cache's folder, the online evaluation. Applied, with a note in the log.
* **the run's meaning**: everything else (data, batch size, epochs, method, model,
  curriculum, optimiser, precision, device, seed...). Refused with ``ConfigError`` (exit 2), each change
  named (``old → new``), unless the resume is asked for with ``--resume-with-changes``; the world size and
  the number of steps per epoch (a changed batch size or data folder) are checked the same way by the
  trainer, which then keeps the epoch bookkeeping: ``renumbered_step``.

``debug.*`` (fault injection) is never taken from a checkpoint: a resumed run would kill itself again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import Config, ConfigError, config_from_dict, known_settings, read_config_file
from .checkpoint import CheckpointError, read_run_record

logger = logging.getLogger("r2o")

ALLOW_FLAG = "--resume-with-changes"

HARMLESS = (
    "train.output_dir",
    "train.max_steps",  # where this invocation stops; the plan (lr, tau, K) is the epochs' (training in chunks)
    "train.log_every",
    "train.image_log_every",
    "train.checkpoint_every",
    "train.keep_every_epochs",
    "train.regions_png",
    "train.preempt_signals",
    "data.num_workers",
    "data.pin_memory",
    "data.superpixel_cache",
    "data.num_examples",  # --dry-run only
    "eval.",  # every eval.* key: what the online evaluation scores, not what is trained
    "debug.",
)
NOT_INHERITED = ("debug",)  # sections a resumed run never takes from its checkpoint


@dataclass(frozen=True)
class Change:
    """One setting that differs between the saved run and the resumed one."""

    key: str  # section.key
    old: Any
    new: Any

    @property
    def harmless(self) -> bool:
        return any(self.key == h or (h.endswith(".") and self.key.startswith(h)) for h in HARMLESS)

    def __str__(self) -> str:
        return f"{self.key}: {self.old!r} → {self.new!r}"


def config_changes(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[Change]:
    """The settings (``section.key``) whose values differ between two ``Config.to_dict()`` mappings."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += config_changes(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(Change(f"{prefix}{key}", a, b))
    return out


def resume_checkpoint(output_dir: str | Path, resume: str | None) -> Path | None:
    """The checkpoint a ``--resume`` asks for: ``auto`` → ``output_dir/checkpoints/last.pth`` if it exists
    (None: there is none, the run starts from scratch), a path → that file (CheckpointError if missing)."""
    if not resume:
        return None
    if resume == "auto":
        path = Path(output_dir) / "checkpoints" / "last.pth"
        return path if path.is_file() else None
    path = Path(resume)
    if not path.is_file():
        raise CheckpointError(f"--resume {path}: no such file")
    return path


def saved_settings(checkpoint: Path | None, output_dir: str | Path) -> tuple[dict[str, Any], str] | None:
    """(settings, where they were read) of the run being resumed: the checkpoint's ``config``, else (no
    checkpoint yet) the run folder's ``config.yaml``; None when there is neither."""
    if checkpoint is not None:
        return read_run_record(checkpoint)["config"], str(checkpoint)
    saved = Path(output_dir) / "config.yaml"
    if saved.is_file():
        return read_config_file(saved), str(saved)
    return None


def resumed_config(saved: dict[str, Any], where: str, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """The saved run's settings (without ``NOT_INHERITED`` sections and keys this r2o does not know), then
    ``overrides``; validated."""
    values, dropped = known_settings({k: v for k, v in saved.items() if k not in NOT_INHERITED})
    if dropped:
        logger.warning("%s: settings this r2o does not know were left out: %s", where, ", ".join(dropped))
    return config_from_dict(values, overrides, source=where)


def check_changes(saved: dict[str, Any], cfg: Config, where: str, allow: bool) -> list[Change]:
    """The changes from ``saved`` (a run's settings) to ``cfg``: ConfigError naming each change of the run's
    meaning unless ``allow``; the harmless ones are logged. Returns every change."""
    values, _ = known_settings(saved)
    old = config_from_dict(values, source=where).to_dict()  # the saved run's settings as this r2o reads them
    changes = config_changes(old, cfg.to_dict())
    meaning = [c for c in changes if not c.harmless]
    if meaning and not allow:
        raise ConfigError(
            f"resuming {where} with settings that change the run: {'; '.join(map(str, meaning))}. A resumed run "
            f"continues with its own settings (leave out --config and these key=value overrides); to continue it "
            f"with them on purpose, add {ALLOW_FLAG}; to start another run, give another --output-dir"
        )
    harmless = [c for c in changes if c.harmless and not c.key.startswith("debug.")]
    if harmless:
        logger.info("resuming with changed settings that do not change the run: %s", "; ".join(map(str, harmless)))
    if meaning:
        logger.warning("resuming with changes to the run (%s): %s", ALLOW_FLAG, "; ".join(map(str, meaning)))
    return changes


def renumbered_step(step: int, epochs_done: int, old_steps_per_epoch: int, new_steps_per_epoch: int) -> int:
    """The step a resumed run continues at when its steps per epoch changed (batch size, world size or the
    number of images): the start of the epoch after the last one the checkpoint finished, in the new plan's
    steps (``epochs_done x new_steps_per_epoch``); the steps of a partly done epoch are run again. Unchanged
    steps per epoch: ``step`` itself."""
    if old_steps_per_epoch == new_steps_per_epoch:
        return step
    return epochs_done * new_steps_per_epoch
