"""The pretraining loop: plan values → EMA → forward → backward → LARS step → logs → checkpoints → export.

Runs as one process or under torchrun (DDP; gloo on CPU, NCCL on GPU). Everything a resumed run needs
to continue exactly is in the checkpoint (weights, optimiser, step); the data order and augmentations
are functions of (seed, epoch, index) and the k-means seed is a function of (seed, step, rank).
"""

from __future__ import annotations

import logging
import math
import os
import signal
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from ..build import build_dataset, build_model, build_training_optimizer, resolve_data_root
from ..config import Config, ConfigError
from ..data.dataset import build_loader
from ..data.device_augment import batch_on_device, normalize_images
from ..eval.online import OnlineEvaluator, check_eval_data, demo_note
from ..optim import set_lr
from ..schedules import StepValues, TrainingPlan, plan_from_config
from ..seeding import step_seed
from ..viz import denormalize, region_grid, regions_picture, save_png
from ..weights.checkpoint_file import atomic_save
from ..weights.writers import torchvision_loading
from .checkpoint import (
    CheckpointError,
    clear_finished,
    load_training_state,
    mark_finished,
    read_run_record,
    save_checkpoint,
    training_state,
    unfinished_run_problem,
)
from .distributed import (
    all_true,
    any_true,
    barrier,
    cleanup,
    convert_sync_batchnorm,
    init_distributed,
    union_across_ranks,
)
from .preemption import PreemptionGuard
from .resume import ALLOW_FLAG, check_changes, renumbered_step, resume_checkpoint
from .run_log import MetricsLog, logged_evaluations, setup_logging

logger = logging.getLogger("r2o")


class NonFiniteLossError(RuntimeError):
    """The loss became NaN/inf; the last checkpoint on disk is the last good state."""


class NonFiniteWeightsError(RuntimeError):
    """The weights became NaN/inf; the checkpoint on disk was not overwritten and is the last good state."""


@dataclass
class StepResult:
    """What one training step did: the plan's values, the loss and the run-health monitors."""

    loss: float
    values: StepValues  # lr, tau, K of this step
    num_labels: int  # K actually used (<= values.k; the number of superpixels on the superpixels-only path)
    num_masks: int  # counted masks, both directions
    monitors: dict[str, float]  # collapse_std, masks_per_image, mask_area
    label_map: torch.Tensor  # for the region pictures
    raw: torch.Tensor
    superpixels: torch.Tensor

    def record(self) -> dict[str, float | int]:
        v = self.values
        return {
            "loss": self.loss,
            "lr": v.lr,
            "tau": v.tau,
            "k": v.k,
            "num_labels": self.num_labels,
            "num_masks": self.num_masks,
            **self.monitors,
        }


@dataclass
class TrainResult:
    output_dir: Path
    step: int
    checkpoint: Path
    export: Path | None
    regions_png: Path | None
    losses: list[float]
    is_main: bool = True  # the process that wrote the checkpoint and the export (rank 0)


class Trainer:
    def __init__(self, cfg: Config, resume: str | None = None, allow_changes: bool = False) -> None:
        """``resume``: None, "auto" or a checkpoint path; ``allow_changes``: resume even with settings that
        change the run's meaning (``--resume-with-changes``; r2o_pretrain/engine/resume.py)."""
        self.cfg = cfg
        self.allow_changes = allow_changes
        self.info = init_distributed(cfg.train.device)
        self.out = Path(cfg.train.output_dir)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        barrier(self.info)
        setup_logging(self.out if self.info.is_main else None, self.info.rank)
        if not resume:
            self._check_no_unfinished_run()  # first: before listing a large dataset or decoding the eval set
        self.resume_from = self._find_resume(resume)
        if self.resume_from is not None:  # settings that change the run are refused before any data is read
            self.run_record = read_run_record(self.resume_from)
            check_changes(self.run_record["config"], cfg, str(self.resume_from), allow_changes)
            self._check_unchanged("the world size", self.run_record.get("world_size"), self.info.world_size)
        t = cfg.train
        self.device = self.info.device
        root = self.data_root = resolve_data_root(cfg, write_demo=self.info.is_main)
        barrier(self.info)  # the main process has written the demo scenes, if asked to
        self.eval_data = check_eval_data(cfg)  # every rank: bad eval folders stop here, before any step
        self.dataset = build_dataset(cfg, root)
        d = cfg.data
        self.loader, self.sampler = build_loader(
            self.dataset,
            t.batch_size,
            d.num_workers,
            self.info.world_size,
            self.info.rank,
            t.seed,
            pin_memory=d.pin_memory and self.device.type == "cuda",
        )
        self.plan: TrainingPlan = plan_from_config(cfg, len(self.dataset), self.info.world_size)
        self.steps_per_epoch = self.sampler.batches_per_epoch()
        assert self.steps_per_epoch == self.plan.steps_per_epoch, "the plan and the sampler disagree"
        self.total_steps = self.plan.run_steps
        self.stop_step = self.total_steps if t.max_steps < 0 else min(t.max_steps, self.total_steps)
        self.global_batch = self.plan.global_batch

        torch.manual_seed(t.seed)
        self.model = build_model(cfg).to(self.device)
        if self.info.distributed and self.device.type == "cuda" and t.sync_bn:
            # the heads' row-weighted BatchNorm all-reduces its weighted sums itself (model.sparse_heads)
            self.model = convert_sync_batchnorm(self.model, keep_row_weighted=cfg.model.sparse_heads)
            logger.info("BatchNorm → SyncBatchNorm (world size %d)", self.info.world_size)
        if t.channels_last:  # the encoders bring their inputs to this layout (ResNetEncoder.forward_c4)
            self.model = self.model.to(memory_format=torch.channels_last)
        if t.compile:
            # in place (nn.Module.compile), so parameter names and checkpoints stay torchvision's
            self.model.online_encoder.compile()
            self.model.target_encoder.compile()
            logger.info("torch.compile: online and target encoders")
        self.optimizer = build_training_optimizer(cfg, self.model)
        self.amp_dtype = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}[t.amp]
        if self.amp_dtype == torch.float16 and self.device.type != "cuda":
            # bf16 autocast runs on CPUs too (fast where they have AVX512-BF16/AMX); fp16 needs the GPU's scaler
            logger.warning(
                "train.amp=fp16 needs a GPU; running in fp32 on %s (train.amp=bf16 works on CPU)", self.device
            )
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.renumbered = False  # a resume with other steps per epoch: the log's step axis starts anew
        if self.resume_from is not None:
            self._load(self.resume_from)
        self.net: torch.nn.Module = self.model
        if self.info.distributed:
            self.net = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.checkpoint_path = self.out / "checkpoints" / "last.pth"

    # ------------------------------------------------------------------ resume
    def _find_resume(self, resume: str | None) -> Path | None:
        path = resume_checkpoint(self.out, resume)
        if resume == "auto" and path is None:
            logger.info("--resume auto: no checkpoint in %s, starting from scratch", self.out / "checkpoints")
        return path

    def _check_unchanged(self, what: str, old: int | None, new: int) -> None:
        """A quantity of the run that no setting names (world size, images, steps per epoch): ConfigError
        when it changed and the resume does not allow changes (None: a checkpoint that predates the entry)."""
        if old is None or old == new:
            return
        if not self.allow_changes:
            raise ConfigError(
                f"resuming {self.resume_from}: {what} changed ({old} → {new}), which changes the run's plan. "
                f"Resume with what the run had, or add {ALLOW_FLAG} to continue it so on purpose"
            )
        logger.warning("resuming with %s changed (%d → %d) (%s)", what, old, new, ALLOW_FLAG)

    def _check_no_unfinished_run(self) -> None:
        """A run from scratch must not replace an unfinished run's checkpoint (a requeue script without
        --resume auto would lose it at its first save): rank 0 decides (``unfinished_run_problem``), every
        rank raises CheckpointError. A finished run's checkpoint is replaced, with a warning (its
        metrics.jsonl is moved aside by MetricsLog)."""
        earlier = self.out / "checkpoints" / "last.pth"
        problem = unfinished_run_problem(earlier) if self.info.is_main else None
        if any_true(problem is not None, self.info):
            raise CheckpointError(problem or f"rank 0 refused to replace {earlier}: see its error")
        if self.info.is_main and earlier.is_file():
            logger.warning("%s holds a finished run; this run starts from scratch and replaces it", earlier)

    def _load(self, path: Path) -> None:
        state = load_training_state(path)
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(
                f"{path} does not fit this model (model.depth={self.cfg.model.depth}, heads "
                f"{self.cfg.model.projector_hidden}/{self.cfg.model.projector_out}): {str(exc).splitlines()[0]}"
            ) from exc
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:  # another optimiser's state (optim.lars / optim.optimizer changed)
            raise CheckpointError(f"{path}: its optimizer state does not fit this run: {exc}") from exc
        if "scaler" in state and self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])
        self._resume_position(int(state["step"]), state.get("steps_per_epoch"), state.get("num_examples"))
        logger.info("resumed from %s at step %d (%s)", path, self.step, self._position(self.step))

    def _resume_position(self, step: int, old_spe: int | None, old_images: int | None) -> None:
        """``self.step`` from the checkpoint's step. With other steps per epoch (a changed batch size,
        world size or data; allowed by --resume-with-changes) the run continues at the start of the epoch
        after the last finished one, in the new plan's steps (resume.renumbered_step), and its log's steps
        are renumbered from there (MetricsLog(renumbered=True))."""
        self._check_unchanged("the number of images", old_images, len(self.dataset))
        self.step = step
        if old_spe is not None and old_spe != self.steps_per_epoch:
            if not self.allow_changes:  # (a changed batch size, world size or image count is refused above)
                self._check_unchanged("the steps per epoch", old_spe, self.steps_per_epoch)
            epochs_done = step // old_spe
            self.step = renumbered_step(step, epochs_done, old_spe, self.steps_per_epoch)
            self.renumbered = True
            redo = step - epochs_done * old_spe
            logger.warning(
                "steps per epoch %d → %d: the checkpoint's step %d (%d epoch(s) done%s) continues as step %d of "
                "the new plan; metrics.jsonl starts anew (the earlier records are kept aside)",
                old_spe,
                self.steps_per_epoch,
                step,
                epochs_done,
                f", and {redo} step(s) of epoch {epochs_done + 1}, which run again" if redo else "",
                self.step,
            )
        if self.step > self.stop_step:
            raise ConfigError(
                f"{self.resume_from} is at step {self.step} ({self._position(self.step)}), past the end of this "
                f"run at step {self.stop_step} (train.epochs={self.cfg.train.epochs}, "
                f"train.max_steps={self.cfg.train.max_steps}): resume with the run's own train.epochs"
            )

    def _position(self, step: int) -> str:
        """'epoch 8 of 20, 1 of its 3 steps done' for the step count ``step`` (the last step done is in
        epoch 8: what the progress bar and metrics.jsonl said), or 'the end of epoch 7 of 20'."""
        if step == 0:
            return f"before epoch 1 of {self.cfg.train.epochs}"
        epoch = self.plan.epoch_of(step - 1)
        done = step - (epoch - 1) * self.steps_per_epoch
        if done == self.steps_per_epoch:
            return f"the end of epoch {epoch} of {self.cfg.train.epochs}"
        return f"epoch {epoch} of {self.cfg.train.epochs}, {done} of its {self.steps_per_epoch} steps done"

    def _save(self, epoch: int) -> None:
        if not all(torch.isfinite(p).all() for p in self.model.parameters()):
            raise NonFiniteWeightsError(
                f"weights became NaN/inf at step {self.step}; not overwriting {self.checkpoint_path}. "
                "Lower optim.base_lr or use train.amp=none."
            )
        if self.info.is_main:
            clear_finished(self.checkpoint_path)  # the mark is true of a checkpoint until the next one replaces it
            save_checkpoint(
                training_state(
                    self.model.state_dict(),
                    self.optimizer.state_dict(),
                    self.step,
                    epoch,
                    self.cfg.to_dict(),
                    {
                        "steps_per_epoch": self.steps_per_epoch,  # tells a reader which epoch the last step was in
                        "stop_step": self.stop_step,  # step == stop_step: the run finished
                        "world_size": self.info.world_size,  # a resume checks these two (resume.py)
                        "num_examples": len(self.dataset),
                        **({"scaler": self.scaler.state_dict()} if self.scaler.is_enabled() else {}),
                    },
                ),
                self.checkpoint_path,
                self.steps_per_epoch,
                self.cfg.train.keep_every_epochs,
            )
        barrier(self.info)

    # ------------------------------------------------------------------ the step
    def train_step(self, batch: dict) -> StepResult:
        """One optimiser step at ``self.step``: the forward (which, as the authors' does, clusters with the
        target before its EMA update, runs the online network, updates the target with tau(step) and then
        runs the target on the views), backward and the LARS step."""
        dev = self.device
        nb = dev.type == "cuda"
        views, boxes, raw, superpixels = batch_on_device(batch, dev, non_blocking=nb)  # uint8 → normalised here
        values = self.plan.at(self.step)
        set_lr(self.optimizer, values.lr)
        generator = torch.Generator(device=dev)
        generator.manual_seed(step_seed(self.cfg.train.seed, self.step, self.info.rank))
        autocast = torch.autocast(dev.type, dtype=self.amp_dtype) if self.amp_dtype else nullcontext()
        with autocast:
            out = self.net(
                views,
                boxes,
                raw,
                superpixels,
                values.k,
                generator,
                values.superpixels_only,
                values.tau,
                segments=batch.get("segment_counts"),  # host ints from the loader: no read-back in the step
            )
        loss_value = float(out.loss.detach())
        if not all_true(math.isfinite(loss_value), self.info):
            raise NonFiniteLossError(
                f"loss is {loss_value} at step {self.step} (lr {values.lr:.4g}, K {values.k}); stopped before "
                f"the update. The last good checkpoint is {self.checkpoint_path}. Lower optim.base_lr, check the "
                "data, or resume with --resume auto after changing settings."
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out.loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        monitors = {name: float(v) for name, v in out.monitors.items()}
        return StepResult(
            loss_value, values, out.num_labels, int(out.num_masks), monitors, out.label_map, raw, superpixels
        )

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainResult:
        cfg, info = self.cfg, self.info
        if info.is_main:
            (self.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        resumed_at = self.step if self.resume_from is not None else None
        self.metrics = MetricsLog(self.out, enabled=info.is_main, resumed_at=resumed_at, renumbered=self.renumbered)
        self.losses: list[float] = []
        self.unreadable: dict[str, str] = {}  # path → reason of every file skipped so far (warned once each)
        self._log_run_header()
        self.model.train()
        self.preemption = PreemptionGuard(cfg.train.preempt_signals, info, self.checkpoint_path.parent)
        self.preemption.install(self.loader)
        self._setup_online_eval()
        try:
            epoch = self.step // self.steps_per_epoch  # epochs completed (the plan numbers epochs from 1)
            if self.renumbered:  # the checkpoint in the new plan's steps (a run resumed at its end finishes so)
                self._save(epoch)
            self._evaluate_if_due()  # a resumed run first makes up an evaluation that a kill cut short
            while self.step < self.stop_step:
                self.train_one_epoch(epoch)
                if self.step % self.steps_per_epoch == 0:
                    epoch += 1
                self._save(epoch)
                self._evaluate_if_due()  # after the checkpoint of this step: a kill here loses no step
            return self._finish()
        finally:
            self.preemption.uninstall()
            self.metrics.close()
            cleanup(info)

    def _log_run_header(self) -> None:
        cfg, info, p = self.cfg, self.info, self.plan
        logger.info(
            "%d images, %d steps/epoch, %d epochs (%d steps), global batch %d, max lr %.4g (x K/16: %s), "
            "warm-up %d steps, %s on %s x%d",
            len(self.dataset),
            self.steps_per_epoch,
            cfg.train.epochs,
            self.total_steps,
            self.global_batch,
            p.max_lr,
            p.lr_k_scaling,
            p.warmup_steps,
            cfg.model.method,
            self.device,
            info.world_size,
        )
        warmup = p.warmup_warning(self.stop_step if cfg.train.max_steps >= 0 else None)
        if warmup:
            logger.warning("%s", warmup)
        cache = cfg.data.superpixel_cache
        logger.info(
            "data: %s%s; superpixel cache: %s",
            self.data_root,
            "" if cfg.data.root else " (the demo scenes)",
            os.path.expanduser(cache) if cache else "off (data.superpixel_cache is empty)",
        )
        if self.dataset.skipped_non_images:
            logger.warning("%d non-image files were skipped at listing", len(self.dataset.skipped_non_images))

    def _finish(self) -> TrainResult:
        """After the last step: the backbone export and regions.png (main process), the summary."""
        is_main = self.info.is_main
        export = self._export() if is_main else None
        png = self.write_regions_png() if is_main and self.cfg.train.regions_png else None
        if is_main:
            mark_finished(self.checkpoint_path, self.step)  # a later run from scratch may replace this one
        logger.info("done: %d steps; checkpoint %s; export %s", self.step, self.checkpoint_path, export)
        skipped = union_across_ranks(set(self.unreadable), self.info)  # distinct files, every process's
        if skipped and is_main:
            logger.warning(
                "%d unreadable image file(s) were skipped in this run (each named once above; the loader used the "
                "next file in their place)",
                len(skipped),
            )
        return TrainResult(self.out, self.step, self.checkpoint_path, export, png, self.losses, is_main)

    def train_one_epoch(self, epoch: int) -> None:
        """Steps of epoch index ``epoch`` (0-based) from ``self.step`` on, until the epoch or the run ends."""
        cfg, info = self.cfg, self.info
        start = self.step - epoch * self.steps_per_epoch
        self.dataset.set_epoch(epoch)
        self.sampler.set_epoch(epoch)
        self.sampler.set_start_batch(start)
        bar = tqdm(
            total=self.steps_per_epoch,
            initial=start,
            desc=f"epoch {epoch + 1}/{cfg.train.epochs}",
            disable=not info.is_main,
            dynamic_ncols=True,
            mininterval=1.0,
        )
        tic = time.perf_counter()
        for batch in self.loader:
            self._warn_skipped(batch["skipped"])
            result = self.train_step(batch)
            self.step += 1
            self.losses.append(result.loss)
            now = time.perf_counter()
            ips = self.global_batch / max(now - tic, 1e-9)
            tic = now
            bar.update(1)
            bar.set_postfix(
                loss=f"{result.loss:.4f}",
                lr=f"{result.values.lr:.3g}",
                K=result.num_labels,
                ips=f"{ips:.1f}",
                **self.eval_postfix,
            )
            self._log(result, ips)
            self._log_picture(result)
            self._checkpoint(epoch)
            self._debug_kill()
            if self.step >= self.stop_step:
                break
            if self.preemption.stop_requested():  # all ranks agree, after the same step
                self._save(epoch)
                self.preemption.exit(self.step, self.checkpoint_path)
        bar.close()

    # ------------------------------------------------------------------ online evaluation
    def _setup_online_eval(self) -> None:
        """The evaluator (if eval.every_epochs > 0 and there is data) and what a resumed run has logged."""
        self.eval_postfix: dict[str, str] = {}
        self.evaluator: OnlineEvaluator | None = None
        self.evaluated_steps: set[int] = set()
        if self.eval_data is None:
            return
        cfg, info = self.cfg, self.info
        self.evaluator = OnlineEvaluator(self.eval_data, cfg.eval, info, cfg.train.seed, cfg.model.depth)
        # rank 0 alone reads the log (other nodes may not see the output dir); the others learn from it
        steps, baselines = logged_evaluations(self.out, self.step) if info.is_main else (set(), False)
        self.evaluated_steps = steps if info.is_main else set()
        self.evaluator.baselines_done = any_true(info.is_main and baselines, info)
        logger.info(
            "online evaluation every %d epoch(s) and at the end: %d image/mask pairs from %s at %d px%s%s",
            cfg.eval.every_epochs,
            len(self.eval_data.pairs),
            self.eval_data.images,
            cfg.eval.size,
            f", kNN {len(self.eval_data.knn_train.files)} -> {len(self.eval_data.knn_val.files)} images"
            if self.eval_data.knn_train is not None
            else "",
            f"; {len(steps)} evaluation(s) already logged" if steps else "",
        )

    def _eval_due(self) -> bool:
        if self.evaluator is None or self.step == 0:
            return False
        every = self.cfg.eval.every_epochs * self.steps_per_epoch
        boundary = self.step % every == 0 or self.step >= self.stop_step
        return any_true(boundary and self.info.is_main and self.step not in self.evaluated_steps, self.info)

    def _evaluate_if_due(self) -> None:
        """Score the online encoder at this step (a collective: every rank takes its share of the images).
        The checkpoint of this step is on disk already; a preemption signal during the evaluation stops
        the run there without logging a partial result, and --resume auto evaluates this step again."""
        if not self._eval_due():
            return
        assert self.evaluator is not None
        k = self.plan.at(self.step - 1).k
        logger.info("online evaluation at step %d ...", self.step)
        out = self.evaluator.run(self.model.online_encoder, k, self.preemption.stop_requested)
        if out is None:
            logger.warning("a preemption signal arrived during the online evaluation at step %d", self.step)
            self.preemption.exit(self.step, self.checkpoint_path)
        values, picture = out
        self.evaluated_steps.add(self.step)
        epoch = self.plan.epoch_of(self.step - 1)
        record = {"step": self.step, "epoch": epoch, "k": k, **values}
        self.metrics.write(record, scalars=True)
        if picture is not None:
            self.metrics.image("eval/masks", picture, self.step)
            save_png(picture, self.out / "eval_masks.png")  # the latest; TensorBoard keeps every step's
        miou = 100 * float(values["eval/unsup_miou"])
        self.eval_postfix = {"eval_mIoU": f"{miou:.1f}"}
        extra = "".join(
            f", {name} {100 * float(values[key]):.2f}"
            for name, key in (
                ("oracle", "eval/unsup_oracle_miou"),
                ("kNN top-1", "eval/knn_top1"),
                ("random init", "eval/random_unsup_miou"),
                ("colour", "eval/colour_unsup_miou"),
            )
            if key in values
        )
        logger.info(
            "eval at step %d (epoch %d, K=%d): unsup. mIoU %.2f (fg IoU %.2f%s) on %d images in %.1f s",
            self.step,
            epoch,
            k,
            miou,
            100 * float(values["eval/unsup_fg_iou"]),
            extra,
            int(values["eval/images"]),
            float(values["eval/seconds"]),
        )
        if ("eval/random_unsup_miou" in values or self.step == self.total_steps) and (
            note := demo_note(self.cfg, self.total_steps)
        ):
            logger.info(note)  # after the first evaluation (the baseline rows) and the last
        if self.preemption.stop_requested():  # a signal after the last check inside the evaluation
            self.preemption.exit(self.step, self.checkpoint_path)

    # ------------------------------------------------------------------ hooks after each step
    def _warn_skipped(self, skipped: list[tuple[str, str]]) -> None:
        """Warn once per file (its first time in any epoch or loader worker) and remember it."""
        for path, reason in skipped:
            if path not in self.unreadable:
                self.unreadable[path] = reason
                logger.warning("skipped (for the rest of the run): %s", reason)

    def _log(self, result: StepResult, images_per_s: float) -> None:
        """metrics.jsonl every step; TensorBoard scalars every ``train.log_every`` steps and at step 1."""
        record = {
            "step": self.step,
            "epoch": result.values.epoch,
            **result.record(),
            "images_per_s": images_per_s,
            "skipped_images": len(self.unreadable),  # distinct files so far (this process's)
        }
        self.metrics.write(record, scalars=self.step % self.cfg.train.log_every == 0 or self.step == 1)

    def _log_picture(self, result: StepResult) -> None:
        """The region picture to TensorBoard every ``train.image_log_every`` steps and at step 1."""
        if self.info.is_main and (self.step % self.cfg.train.image_log_every == 0 or self.step == 1):
            self.metrics.image("regions", self._picture(result), self.step)

    def _checkpoint(self, epoch: int) -> None:
        if self.step % self.cfg.train.checkpoint_every == 0:
            self._save(epoch)

    def _debug_kill(self) -> None:
        """``debug.kill_at_step``: SIGKILL this process after that step (the exact-resume tests)."""
        if self.step == self.cfg.debug.kill_at_step:
            logger.warning("debug.kill_at_step=%d: killing this process (SIGKILL)", self.step)
            self.metrics.close()
            os.kill(os.getpid(), signal.SIGKILL)

    def _picture(self, result: StepResult, rows: int = 4):
        return region_grid(
            denormalize(result.raw[:rows]),
            result.superpixels[:rows].cpu().numpy(),
            [(f"regions (K={result.num_labels})", result.label_map[:rows].cpu().numpy())],
        )

    def _export(self) -> Path:
        path = self.out / "export" / "backbone_torchvision.pth"
        # plain NCHW CPU tensors: loads with a bare torch.load anywhere, whatever the training layout/device
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.online_encoder.state_dict().items()}
        atomic_save(state, path)
        logger.info("backbone export %s (torchvision format): %s", path, torchvision_loading(path, state))
        return path

    @torch.no_grad()
    def write_regions_png(self, ks: tuple[int, ...] = (32, 16, 8, 4), rows: int = 4) -> Path:
        """image | superpixels | refined masks at several K, from the trained target encoder."""
        samples = [self.dataset[i] for i in range(min(rows, len(self.dataset)))]
        raw = normalize_images(torch.stack([s["raw"] for s in samples]).to(self.device))
        sp = torch.stack([s["superpixels"] for s in samples]).to(self.device)
        grid = regions_picture(self.model.target_encoder, raw, sp, ks, self.cfg.model.kmeans_iters)
        return save_png(grid, self.out / "regions.png")


def train(cfg: Config, resume: str | None = None, allow_changes: bool = False) -> TrainResult:
    """Build a Trainer for ``cfg`` (resuming from ``resume``: None, "auto" or a path; ``allow_changes``:
    --resume-with-changes) and run it."""
    return Trainer(cfg, resume, allow_changes).fit()
