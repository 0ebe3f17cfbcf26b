"""What the detection and classification LightningModules share: ``seen`` (darknet's image counter), uint8 ->
float batches on the device, the model config saved in checkpoints (so eval / detect / convert rebuild the
network), darknet's optimisation, pretrained weights (:func:`yolo9000.modules.pretrained.load_pretrained`) and the
fast-path switches (``model.fast``, :class:`yolo9000.speed.FastPath`)."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any

import pytorch_lightning as pl
import torch

from yolo9000.data.records import DataError
from yolo9000.modules.schedules import darknet_optimization, fraction_steps, replan_schedule
from yolo9000.speed import FastPath, apply_fast_path, float_images, optimizer_flags

log = logging.getLogger(__name__)


_FOUND_INF_OPTIMIZERS = (torch.optim.SGD, torch.optim.Adam, torch.optim.AdamW)  # fused steps that honour found_inf


def _skips_on_device(optimizer: torch.optim.Optimizer, trainer: pl.Trainer | None, stepped: list[torch.Tensor]) -> bool:
    """Whether ``optimizer``'s fused step can skip a non-finite step by its ``found_inf`` flag: a fused SGD /
    Adam / AdamW whose every parameter with a gradient (``stepped``) has its state (a first step would allocate
    momentum it then skipped initialising), under no loss scaler (fp16's GradScaler sets ``found_inf`` itself)."""
    if not isinstance(optimizer, _FOUND_INF_OPTIMIZERS):
        return False
    if not all(g.get("fused") for g in optimizer.param_groups):
        return False
    if trainer is not None and getattr(getattr(trainer, "precision_plugin", None), "scaler", None) is not None:
        return False
    momentum = any(g.get("momentum", 1) for g in optimizer.param_groups)  # SGD without momentum keeps no state
    return not momentum or all(optimizer.state.get(p) for p in stepped)


def all_finite(tensors: list[torch.Tensor]) -> torch.Tensor:
    """0-d bool tensor on the first tensor's device: True when no element of ``tensors`` (a non-empty list of dense
    floating tensors, any shapes, dtypes and devices; sparse ones are refused by the kernel) is inf or NaN. No host
    sync.

    One pass over each tensor by GradScaler's check (``torch._amp_foreach_non_finite_check_and_unscale_``, per
    device) with a scale of one, which leaves every value as it was (x * 1.0 is x, signed zeros, subnormals and NaN
    alike): on the default model's gradients ~2.5x faster on the CPU than the total norm this check took before
    (0.35 against 0.85 ms warm; ~2.4 ms of a training step cold)."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}  # one call per device and dtype, the
    for t in tensors:  # groups GradScaler hands the kernel
        groups.setdefault((t.device, t.dtype), []).append(t)
    found = torch.zeros(1, device=tensors[0].device)
    for (dev, _), group in groups.items():
        flag = torch.zeros(1, device=dev)  # set to 1 by the kernel on an inf or NaN
        torch._amp_foreach_non_finite_check_and_unscale_(group, flag, torch.ones(1, device=dev))
        found += flag.to(found.device)
    return found[0] == 0


class DarknetModule(pl.LightningModule):
    """Base of :class:`DetectorModule` and :class:`ClassifierModule`; subclasses set ``self.model`` and keep
    darknet's optimisation keys in ``hparams``. ``model_config`` (the resolved model config, set by
    :func:`yolo9000.build.instantiate_module`) is saved in every checkpoint. ``fast``: the fast-path switches
    (:class:`yolo9000.speed.FastPath`), applied to ``self.model`` in :meth:`setup` (compile: when fitting only)."""

    model: torch.nn.Module
    model_config: dict[str, Any] | None = None

    def __init__(self, fast: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.fast = FastPath.of(fast)
        self._fast_compiled = False  # setup() compiled self.model
        # images seen over all ranks (darknet's ``seen``: its prior-matching term stops after 12,800); a buffer, so
        # it is saved in checkpoints and restored on resume
        self.register_buffer("seen", torch.zeros((), dtype=torch.long))

    def count_seen(self, batch_size: int) -> int:
        """Add this step's images of all ranks to ``seen`` (darknet counts before the forward pass); returns it,
        counted on the host too while fitting (reading the buffer back would wait for the GPU every step)."""
        world = self.trainer.world_size if self._trainer is not None else 1
        self.seen += batch_size * world
        host = self.__dict__.get("_seen_host")
        self._seen_host = int(self.seen) if host is None else host + batch_size * world
        return self._seen_host

    @property
    def seen_images(self) -> int:
        """``seen`` as an int: the host's count while fitting, else the buffer's."""
        host = self.__dict__.get("_seen_host")
        return int(self.seen) if host is None else host

    def on_train_start(self) -> None:
        """The host's ``seen`` from the buffer (restored by a resume before this hook); a restored learning-rate
        schedule re-planned for this run's length (:func:`~yolo9000.modules.schedules.replan_schedule`)."""
        self._seen_host = int(self.seen)
        self._replan_restored_schedule()

    def _replan_restored_schedule(self) -> None:
        """The schedule a resume restored (its end planned for the first run's ``trainer.max_epochs``) made to end
        where this run's does (the one :meth:`configure_optimizers` planned), the learning rate of the next step
        with it; logged when that moves it (a run trained further)."""
        planned = self.__dict__.pop("_planned_policy", None)
        if planned is None or self._trainer is None:
            return
        fractions = fraction_steps(self.hparams.get("steps"))
        for config in self.trainer.lr_scheduler_configs:
            sched = config.scheduler
            if not isinstance(sched, torch.optim.lr_scheduler.LambdaLR):
                continue
            for fn in sched.lr_lambdas:
                before = dict(fn.__dict__)
                if not replan_schedule(fn, planned, fractions):
                    continue
                lrs = [base * fn(sched.last_epoch) for base in sched.base_lrs]
                for group, lr in zip(sched.optimizer.param_groups, lrs, strict=True):
                    group["lr"] = lr
                sched._last_lr = lrs  # type: ignore[attr-defined]
                log.info(
                    "the learning-rate schedule planned for %d optimizer steps (this run's length): %s (the "
                    "checkpoint's: %s); the next step's lr %.3g",
                    int(self.trainer.estimated_stepping_batches),
                    _schedule_end(fn.__dict__),
                    _schedule_end(before),
                    lrs[0],
                )

    def on_train_end(self) -> None:
        self._seen_host = None  # the buffer is the count again (a later load or edit changes it)

    def logs_written_this_step(self) -> bool:
        """Whether the loggers write this training step's on-step values (Lightning's ``log_every_n_steps``): per-step
        diagnostics nobody else reads are logged on those steps only (the same logs; each ``self.log`` costs a
        fraction of a millisecond). True outside a trainer or where Lightning does not say."""
        if self._trainer is None:
            return True
        return bool(getattr(getattr(self._trainer, "_logger_connector", None), "should_update_logs", True))

    def setup(self, stage: str) -> None:
        """The fast path (``model.fast``): channels_last weights; ``torch.compile`` of the network when fitting."""
        compile_now = stage == "fit" and not self._fast_compiled
        apply_fast_path(self.model, self.fast, compile=compile_now)  # channels_last again: a no-op
        self._fast_compiled |= compile_now

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """``skip_nonfinite`` (an hparam: N > 0 on, 0 off): a step whose gradients hold inf or NaN is skipped (the
        optimizer leaves the weights and its state alone) and counted (``train/skipped_steps``; warnings for the
        first and then every 100th), instead of writing NaN into the weights for good; after N such steps in a row
        the run has diverged and stops with an error. darknet has no such guard: a diverging run trains on as NaN.

        A fused optimizer whose state exists (every step after the first; no fp16 loss scaler) skips on the device:
        its ``found_inf`` flag makes the fused kernels leave everything alone, and the counts are read back on the
        steps the loggers write and at the end of each epoch (a GPU step then waits for nothing here; the
        divergence error comes at the next of those reads). Other optimizers: the check reads the gradient norm
        back every step and drops the gradients of a bad step."""
        limit = int(self.hparams.get("skip_nonfinite", 0) or 0)
        if limit <= 0:
            return
        params = [p for g in optimizer.param_groups for p in g["params"]]  # what steps (no walk of the modules)
        stepped = [p for p in params if p.grad is not None]
        grads = [p.grad for p in stepped]
        if not grads:
            return
        finite = all_finite(grads)
        if _skips_on_device(optimizer, self._trainer, stepped):
            bad = (~finite).long()
            optimizer.found_inf = bad.float()  # read by the fused step right after this hook
            counts = self.__dict__.get("_nonfinite_counts")
            if counts is None or counts.device != bad.device:
                counts = self._nonfinite_counts = self._nonfinite_host_counts().to(bad.device)
            counts[0] += bad  # steps skipped in all
            counts[1] = (counts[1] + bad) * bad  # in a row
            if self.logs_written_this_step():
                self._check_nonfinite(limit)
                if self._trainer is not None:
                    self.log("train/skipped_steps", counts[0].float(), on_step=True, on_epoch=False)
            return
        if getattr(optimizer, "found_inf", None) is not None:  # a flag this hook set for a fused step before
            optimizer.found_inf = None
        self._nonfinite_counts = None  # the host counts below are the counts again
        if bool(finite):
            self._nonfinite_run = 0
        else:
            for p in params:
                p.grad = None
            self.skipped_steps = getattr(self, "skipped_steps", 0) + 1
            self._nonfinite_run = getattr(self, "_nonfinite_run", 0) + 1
            self._warn_nonfinite(self.skipped_steps - 1, self.skipped_steps)
            self._raise_if_diverged(limit)
        if self._trainer is not None and (self.logs_written_this_step() or self._nonfinite_run):
            self.log("train/skipped_steps", float(getattr(self, "skipped_steps", 0)), on_step=True, on_epoch=False)

    def _nonfinite_host_counts(self) -> torch.Tensor:
        """(2,) long: the host's skipped steps in all and in a row (the device counters start from them)."""
        return torch.tensor([getattr(self, "skipped_steps", 0), getattr(self, "_nonfinite_run", 0)])

    def _check_nonfinite(self, limit: int | None = None) -> None:
        """The device's counts of skipped steps read back (one host sync): warnings for new ones, the divergence
        error when ``limit`` steps in a row were skipped."""
        counts = self.__dict__.get("_nonfinite_counts")
        if counts is None:
            return
        total, run = counts.tolist()
        before = getattr(self, "skipped_steps", 0)
        self.skipped_steps, self._nonfinite_run = total, run
        self._warn_nonfinite(before, total)
        limit = int(self.hparams.get("skip_nonfinite", 0) or 0) if limit is None else limit
        if limit > 0:
            self._raise_if_diverged(limit)

    def _warn_nonfinite(self, before: int, total: int) -> None:
        """Warnings for skipped steps ``before + 1 .. total``: each of the first 10, then every 100th."""
        shown = [n for n in range(before + 1, total + 1) if n <= 10 or n % 100 == 0]
        if shown:
            log.warning("step %d: non-finite gradients, step skipped (%d so far)", self.global_step, max(shown))

    def _raise_if_diverged(self, limit: int) -> None:
        if getattr(self, "_nonfinite_run", 0) >= limit:
            raise FloatingPointError(
                f"training diverged: {limit} steps in a row with non-finite gradients (up to step "
                f"{self.global_step}; {self.skipped_steps} skipped in all); lower model.lr or check the data"
            )

    def on_train_epoch_start(self) -> None:
        self._epoch_batches = self._epoch_empty_batches = 0  # training batches of this epoch, and those skipped empty

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._epoch_batches = getattr(self, "_epoch_batches", 0) + 1

    def on_train_epoch_end(self) -> None:
        self._check_nonfinite()  # the device-side counts of the epoch's last steps
        batches, empty = getattr(self, "_epoch_batches", 0), getattr(self, "_epoch_empty_batches", 0)
        if batches and empty == batches:
            raise DataError(
                f"epoch {self.current_epoch}: none of its {batches} training batches held a readable image (every "
                "training image failed to load; see the warnings and data_issues.txt): nothing was trained; fix or "
                "remove those files"
            )

    def skip_empty_batch(self, batch: Any, stage: str) -> bool:
        """Whether ``batch`` holds no image: every one of its images was unreadable and skipped
        (``data.on_error=skip``; the collates' empty batch). The step then does nothing (a training step returns
        None: no backward, no optimizer step; an evaluation step adds nothing to the metrics), with a warning.

        Raises:
            yolo9000.data.records.DataError: such a training batch in a run of several processes, where one
                process cannot leave out a step the others' gradient all-reduce waits for.
        """
        images = batch.get("images") if isinstance(batch, dict) else None
        if not isinstance(images, torch.Tensor) or images.shape[0]:
            return False
        world = self.trainer.world_size if self._trainer is not None else 1
        if stage == "train" and world > 1:
            raise DataError(
                f"every image of a training batch of process {self.global_rank} was unreadable (see the warnings "
                "and data_issues.txt): several processes cannot leave out one process's step; remove or fix those "
                "files"
            )
        if stage == "train":
            self._epoch_empty_batches = getattr(self, "_epoch_empty_batches", 0) + 1
        step = f" (step {self.global_step})" if stage == "train" else ""
        log.warning("a %s batch without a readable image was skipped%s: every image of it was unreadable", stage, step)
        return True

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 images (cheap to collate and copy) -> float in [0, 1], on the device (NHWC with
        ``fast.channels_last``)."""
        if isinstance(batch, dict) and isinstance(batch.get("images"), torch.Tensor):
            batch["images"] = float_images(batch["images"], self.fast.channels_last)
        return batch

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The model config and the skipped non-finite steps (in all, in a row): a resumed run goes on counting
        them (``train/skipped_steps`` restarted at 0, and so did the divergence stop's count of steps in a row)."""
        checkpoint["yolo9000_model_config"] = self.model_config
        counts = self.__dict__.get("_nonfinite_counts")  # the device's counts (fused steps), else the host's
        checkpoint["yolo9000_skipped_steps"] = (
            counts if counts is not None else self._nonfinite_host_counts()
        ).tolist()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._seen_host = None
        self.model_config = checkpoint.get("yolo9000_model_config", self.model_config)
        total, run = checkpoint.get("yolo9000_skipped_steps", (0, 0))
        self.skipped_steps, self._nonfinite_run = int(total), int(run)
        self._nonfinite_counts = None  # the device's counters start again from these
        for state in checkpoint.get("lr_schedulers") or []:  # restored after this hook
            for fn in state.get("lr_lambdas") or []:
                if isinstance(fn, dict) and "burn_in" in fn:  # a darknet schedule saved before its ``start``: it
                    fn.setdefault("start", 0)  # counted from 0, whatever this run's config now says

    def configure_optimizers(self) -> Any:
        total = int(self.trainer.estimated_stepping_batches) if self._trainer is not None else 1
        flags = optimizer_flags(self.fast.fused_optimizer, next(self.model.parameters()).device)
        out = darknet_optimization(self.model, self.hparams, total, flags)
        # this run's plan: a resume restores the checkpoint's schedule over it, re-planned in on_train_start
        self._planned_policy = copy.copy(out["lr_scheduler"]["scheduler"].lr_lambdas[0])
        return out


def _schedule_end(state: Mapping[str, Any]) -> str:
    """A schedule's length-dependent part, for the log: poly's last iteration or the steps."""
    return f"poly ends at step {state['max_iters']}" if "max_iters" in state else f"steps at {state.get('steps')}"
