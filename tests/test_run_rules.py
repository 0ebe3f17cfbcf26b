"""Mutation-audit tests of the run-folder and checkpoint machinery, without training: when ``LastCheckpoint`` saves
(step and minute periods, the epoch's last batch, SIGTERM in training or validation, the DDP agreement where rank 0
decides and any rank's signal stops all, the save after a late SIGTERM), ``take_sigterm``'s handler swap, the
random-state round trip, ``ValidateLastEpoch``, the moved-folder mapping of ``RunCheckpoint``, the speed and epoch-line
numbers users read (``SpeedMonitor``, ``EpochLog``, ``format_duration``), the sweep guard, and ``run_folder``'s rules
for which checkpoint a run continues from and which resumes are refused. Trainers are small fakes with known values;
every expected number is computed by hand in the test."""

from __future__ import annotations

import logging
import os
import random
import re
import signal
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.trainer.connectors.signal_connector import _HandlersCompose
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities.exceptions import SIGTERMException

import yolo9000.callbacks.checkpointing as checkpointing
import yolo9000.callbacks.progress as progress
import yolo9000.callbacks.speed as speed
from yolo9000 import run_folder
from yolo9000.callbacks.checkpointing import (
    STOP_IN_TRAINING,
    STOP_IN_VALIDATION,
    LastCheckpoint,
    RandomState,
    RunCheckpoint,
    ValidateLastEpoch,
    atomic_save_checkpoint,
    take_sigterm,
)
from yolo9000.callbacks.sweep_guard import SweepGuard, sweep_conflicts

# ---------------------------------------------------------------------------------------------------------------
# LastCheckpoint with a fake trainer


class Clock:
    """A settable clock for ``time.monotonic`` / ``time.perf_counter``."""

    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeTrainer:
    """The parts of ``pl.Trainer`` the callbacks read. ``save_checkpoint`` writes the global step (rank 0 only, as
    Lightning); ``others`` are the flags [due, signal] the other ranks contribute to a max-reduce."""

    def __init__(self, world_size: int = 1, rank: int = 0, batches: int = 10, others: list[float] | None = None):
        self.world_size, self.global_rank, self.is_global_zero = world_size, rank, rank == 0
        self.global_step, self.current_epoch = 0, 0
        self.num_training_batches = batches
        self.state = SimpleNamespace(fn=TrainerFn.FITTING)
        self.validating = self.sanity_checking = False
        self._signal_connector = SimpleNamespace(received_sigterm=False, _sigterm_notifier_fn=self._notifier)
        self.fit_loop = SimpleNamespace(
            epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(current=SimpleNamespace(processed=0)))
        )
        self.others = others if others is not None else [0.0, 0.0]
        self.calls: list[str] = []  # save_checkpoint(step) / barrier / reduce, in order
        self.strategy = SimpleNamespace(
            barrier=lambda name: self.calls.append("barrier"), reduce=self._reduce, root_device=torch.device("cpu")
        )

    def _notifier(self, signum: int, frame: Any) -> None:
        self.calls.append("lightning notifier")

    def _reduce(self, flags: torch.Tensor, group: Any = None, reduce_op: str = "mean") -> torch.Tensor:
        assert reduce_op == "max"  # (a wrong op is caught by the results, this only documents it)
        self.calls.append("reduce")
        return torch.maximum(flags, torch.tensor(self.others))

    @property
    def received_sigterm(self) -> bool:
        return self._signal_connector.received_sigterm

    def save_checkpoint(self, path: Path, weights_only: bool = False) -> None:
        assert not weights_only  # the full training state
        self.calls.append(f"save {self.global_step}")
        if self.is_global_zero:
            Path(path).write_text(str(self.global_step))


def _train(cb: LastCheckpoint, trainer: FakeTrainer, clock: Clock, seconds: list[float]) -> list[int]:
    """Runs an epoch of ``len(seconds)`` batches (batch i takes seconds[i]) through ``cb``, then its end; returns
    the global steps saved."""
    trainer.num_training_batches = len(seconds)
    for i, dt in enumerate(seconds):
        clock.now += dt
        trainer.global_step += 1
        trainer.fit_loop.epoch_loop.batch_progress.current.processed = i + 1
        cb.on_train_batch_end(trainer, None, None, None, i)  # type: ignore[arg-type]
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    return _saved(trainer)


def _saved(trainer: FakeTrainer) -> list[int]:
    return [int(c.split()[1]) for c in trainer.calls if c.startswith("save")]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock(1000.0)
    monkeypatch.setattr(checkpointing.time, "monotonic", c)
    return c


def test_step_period_saves_inside_the_epoch_but_not_in_its_last_batch(tmp_path: Path, clock: Clock) -> None:
    """every 5 steps in a 10-batch epoch: step 5 mid-epoch; step 10 is the epoch's last batch: saved once, at the
    epoch end (after its validation), never before it (that save resumed as a finished, unvalidated epoch)."""
    cb = LastCheckpoint(tmp_path, every_n_minutes=None, every_n_train_steps=5)
    trainer = FakeTrainer()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    assert _train(cb, trainer, clock, [1.0] * 10) == [5, 10]
    assert (tmp_path / "last.ckpt").read_text() == "10" and not (tmp_path / "last.ckpt.tmp").exists()
    cb = LastCheckpoint(tmp_path, every_n_minutes=None, every_n_train_steps=3)
    trainer = FakeTrainer()
    assert _train(cb, trainer, clock, [1.0] * 7) == [3, 6, 7]


def test_no_period_saves_at_epoch_ends_only(tmp_path: Path, clock: Clock) -> None:
    cb = LastCheckpoint(tmp_path, every_n_minutes=None, every_n_train_steps=None)
    trainer = FakeTrainer()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    assert _train(cb, trainer, clock, [3600.0] * 4) == [4]


def test_minute_period_counts_from_the_start_of_training_and_the_last_save(tmp_path: Path, clock: Clock) -> None:
    """every 10 minutes: the clock starts when training starts (not when the callback was built, before the data
    was set up), and again at every save; the step period still applies beside it."""
    cb = LastCheckpoint(tmp_path, every_n_minutes=10)
    clock.now += 3000  # data set-up, sanity check: not training time
    trainer = FakeTrainer()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    # batches end at +100, +599, +600 (save), +1100, +1200 (save), +1250 (the last batch: the epoch end saves)
    assert _train(cb, trainer, clock, [100.0, 499.0, 1.0, 500.0, 100.0, 50.0]) == [3, 5, 6]
    both = LastCheckpoint(tmp_path, every_n_minutes=10, every_n_train_steps=2)
    trainer = FakeTrainer()
    both.on_train_start(trainer, None)  # type: ignore[arg-type]
    assert _train(both, trainer, clock, [1.0] * 5) == [2, 4, 5]


def test_sigterm_in_training_stops_after_the_batch_saved_and_is_announced_once(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    cb = LastCheckpoint(tmp_path, every_n_minutes=None)
    trainer = FakeTrainer()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step, trainer.fit_loop.epoch_loop.batch_progress.current.processed = 3, 3
    with caplog.at_level(logging.WARNING, logger="yolo9000.train"):
        cb.request_stop(trainer)  # type: ignore[arg-type]
        cb.request_stop(trainer)  # type: ignore[arg-type]  # a second signal: no second line
    assert trainer.received_sigterm  # Lightning stops after this batch...
    cb.on_train_batch_end(trainer, None, None, None, 2)  # type: ignore[arg-type]
    assert _saved(trainer) == [3]  # ... which is saved first
    assert [r.getMessage() for r in caplog.records] == ["SIGTERM" + STOP_IN_TRAINING]
    assert [r.getMessage() for r in caplog.records if "[rank" in r.getMessage()] == []


def test_sigterm_during_a_fitting_validation_is_held_until_it_ends(
    tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A signal while a fit validates: the validation finishes (Lightning's flag is down during its batches),
    the flag is back when it ends, and the epoch end saves before Lightning stops."""
    cb = LastCheckpoint(tmp_path, every_n_minutes=None)
    trainer = FakeTrainer()
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step = 10
    trainer.validating = True
    with caplog.at_level(logging.WARNING, logger="yolo9000.train"):
        cb.request_stop(trainer, "Ctrl-C")  # type: ignore[arg-type]
        assert not trainer.received_sigterm  # not set in a validation: it would stop at this batch
        trainer._signal_connector.received_sigterm = True  # (Lightning's own handler, where it stays)
        for _ in range(3):
            cb.on_validation_batch_end(trainer)  # type: ignore[arg-type]
            assert not trainer.received_sigterm
    assert [r.getMessage() for r in caplog.records] == ["Ctrl-C" + STOP_IN_VALIDATION, "SIGTERM" + STOP_IN_VALIDATION]
    trainer.validating = False
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.received_sigterm
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert _saved(trainer) == [10]


def test_sigterm_in_the_epochs_last_batch_stops_after_its_validation_and_save(tmp_path: Path, clock: Clock) -> None:
    """The signal arrives in the last training batch (one process): Lightning's flag is down through the validation
    that follows and up again when it ends, so the run stops after the epoch-end save, not an epoch later."""
    cb = LastCheckpoint(tmp_path, every_n_minutes=None)
    trainer = FakeTrainer(batches=4)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step, trainer.fit_loop.epoch_loop.batch_progress.current.processed = 4, 4
    cb.request_stop(trainer)  # type: ignore[arg-type]
    cb.on_train_batch_end(trainer, None, None, None, 3)  # type: ignore[arg-type]
    assert _saved(trainer) == []  # not before the validation
    trainer.validating = True
    cb.on_validation_batch_end(trainer)  # type: ignore[arg-type]
    assert not trainer.received_sigterm
    trainer.validating = False
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.received_sigterm
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert _saved(trainer) == [4]


@pytest.mark.parametrize("where", ["sanity check", "trainer.validate"])
def test_sigterm_outside_a_fitting_validation_is_not_held(tmp_path: Path, where: str) -> None:
    cb = LastCheckpoint(tmp_path, every_n_minutes=None)
    trainer = FakeTrainer()
    trainer.validating = True
    if where == "sanity check":
        trainer.sanity_checking = True
    else:
        trainer.state.fn = TrainerFn.VALIDATING
    trainer._signal_connector.received_sigterm = True
    cb.on_validation_batch_end(trainer)  # type: ignore[arg-type]
    assert trainer.received_sigterm  # Lightning stops as it would


def test_ddp_rank_zero_decides_when_to_save_and_any_rank_signal_stops_all(tmp_path: Path, clock: Clock) -> None:
    """With several processes, a mid-epoch save is rank 0's decision (the clocks differ; every rank must save
    together) and a SIGTERM received by any process becomes Lightning's stop flag in every process."""

    def one_batch(trainer: FakeTrainer, cb: LastCheckpoint) -> None:
        trainer.global_step += 1
        trainer.fit_loop.epoch_loop.batch_progress.current.processed = trainer.global_step
        cb.on_train_batch_end(trainer, None, None, None, 0)  # type: ignore[arg-type]

    # rank 1's clock says due, rank 0 says not: no save on rank 1
    cb, trainer = LastCheckpoint(tmp_path, every_n_minutes=10), FakeTrainer(world_size=2, rank=1)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    clock.now += 700
    one_batch(trainer, cb)
    assert _saved(trainer) == [] and trainer.calls == ["reduce"] and not trainer.received_sigterm
    # rank 1 is told rank 0's decision: it saves with it
    trainer.others = [1.0, 0.0]
    one_batch(trainer, cb)
    assert _saved(trainer) == [2]
    # rank 0 due, the other rank not: saved (the max of the flags)
    cb, trainer = LastCheckpoint(tmp_path, every_n_minutes=10), FakeTrainer(world_size=2, rank=0)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    clock.now += 700
    one_batch(trainer, cb)
    assert _saved(trainer) == [1]
    # a signal on rank 1 only: rank 0 stops after this batch, saved
    clock.now += 1
    trainer.others = [0.0, 1.0]
    one_batch(trainer, cb)
    assert trainer.received_sigterm and _saved(trainer) == [1, 2]
    # this rank's own signal is only recorded where it arrives (a flag of one process alone would stop it where
    # the others wait); it is everyone's at the next agreement
    cb, trainer = LastCheckpoint(tmp_path, every_n_minutes=None), FakeTrainer(world_size=2, rank=1)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    cb.request_stop(trainer)  # type: ignore[arg-type]
    assert not trainer.received_sigterm
    one_batch(trainer, cb)
    assert trainer.received_sigterm and _saved(trainer) == [1]


def test_ddp_signal_before_the_epoch_end_is_agreed_before_its_save(tmp_path: Path) -> None:
    cb, trainer = LastCheckpoint(tmp_path, every_n_minutes=None), FakeTrainer(world_size=2, rank=0)
    trainer.global_step = 10
    cb.request_stop(trainer)  # type: ignore[arg-type]
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.calls[0] == "reduce" and trainer.received_sigterm and _saved(trainer) == [10]


def test_ddp_signal_during_a_validation_is_agreed_when_it_ends(tmp_path: Path) -> None:
    cb, trainer = LastCheckpoint(tmp_path, every_n_minutes=None), FakeTrainer(world_size=2, rank=1)
    trainer.validating = True
    cb.request_stop(trainer)  # type: ignore[arg-type]
    cb.on_validation_batch_end(trainer)  # type: ignore[arg-type]
    trainer.validating = False
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.received_sigterm  # every process stops after the epoch-end save


def test_late_sigterm_saves_the_batch_once_and_only_in_training(tmp_path: Path) -> None:
    """Lightning raises SIGTERMException at the batch end when the signal came after this callback's batch end:
    that batch is saved, unless its state is saved already; other exceptions and validations save nothing."""
    cb, trainer = LastCheckpoint(tmp_path, every_n_minutes=None), FakeTrainer()
    trainer.global_step = 5
    cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]  # step 5 saved
    cb.on_exception(trainer, None, SIGTERMException())  # type: ignore[arg-type]
    assert _saved(trainer) == [5]
    trainer.global_step = 6
    cb.on_exception(trainer, None, RuntimeError("a bug"))  # type: ignore[arg-type]
    assert _saved(trainer) == [5]
    trainer.validating = True
    cb.on_exception(trainer, None, SIGTERMException())  # type: ignore[arg-type]
    assert _saved(trainer) == [5]
    trainer.validating = False
    cb.on_exception(trainer, None, SIGTERMException())  # type: ignore[arg-type]
    cb.on_exception(trainer, None, SIGTERMException())  # type: ignore[arg-type]
    assert _saved(trainer) == [5, 6]


def test_atomic_save_on_a_rank_that_writes_nothing_still_meets_the_barrier(tmp_path: Path) -> None:
    """Lightning writes on rank 0 only: rank 1 takes part in the save (its state gathered) and the barrier,
    and renames nothing."""
    trainer = FakeTrainer(world_size=2, rank=1)
    atomic_save_checkpoint(trainer, tmp_path / "last.ckpt")  # type: ignore[arg-type]
    assert trainer.calls == ["save 0", "barrier"] and list(tmp_path.iterdir()) == []
    trainer = FakeTrainer()
    atomic_save_checkpoint(trainer, tmp_path / "last.ckpt")  # type: ignore[arg-type]
    assert trainer.calls == ["save 0", "barrier"] and [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


# ---------------------------------------------------------------------------------------------------------------
# take_sigterm


@pytest.fixture
def sigterm_restored() -> Any:
    before = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, before)


def test_ddp_agreement_reduces_host_flags_over_a_gloo_group_of_its_own(tmp_path: Path, sigterm_restored: Any) -> None:
    """Under DDP the fit's agreement reduces host tensors over a gloo group made at the fit's start, not the default
    group on the root device (a GPU's: the reduce and its barrier waited on the GPU's queue after every batch). A
    one-process gloo group stands in for the processes; the root device is ``meta``, where no flag may go."""
    dist = torch.distributed
    assert checkpointing.host_group() is None  # no process group: nothing to make
    dist.init_process_group("gloo", store=dist.FileStore(str(tmp_path / "store"), 1), rank=0, world_size=1)
    try:
        trainer = FakeTrainer(world_size=2, rank=1, others=[1.0, 0.0])  # rank 0 says due
        seen: list[tuple[str, Any]] = []

        def reduce(flags: torch.Tensor, group: Any = None, reduce_op: str = "mean") -> torch.Tensor:
            seen.append((flags.device.type, group))
            dist.all_reduce(flags, op=dist.ReduceOp.MAX, group=group)  # runs: a gloo group takes host tensors
            return torch.maximum(flags, torch.tensor(trainer.others))

        trainer.strategy.reduce, trainer.strategy.root_device = reduce, torch.device("meta")
        cb = LastCheckpoint(tmp_path, every_n_minutes=None)
        cb.on_train_start(trainer, None)  # type: ignore[arg-type]
        group = cb._group
        assert group is not None and group is not dist.group.WORLD and dist.get_backend(group) == "gloo"
        cb.request_stop(trainer)  # type: ignore[arg-type]
        assert cb._agree(trainer) and trainer.received_sigterm and seen == [("cpu", group)]
    finally:
        dist.destroy_process_group()


def test_take_sigterm_replaces_lightnings_notifier_and_keeps_the_other_handlers(sigterm_restored: Any) -> None:
    trainer = FakeTrainer()
    seen: list[str] = []
    requeue = lambda signum, frame: seen.append("requeue")  # noqa: E731
    compose = _HandlersCompose([requeue, trainer._notifier])
    signal.signal(signal.SIGTERM, compose)
    cb = LastCheckpoint("unused", every_n_minutes=None)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]  # takes the handler
    compose(signal.SIGTERM, None)  # type: ignore[arg-type]
    assert seen == ["requeue"] and "lightning notifier" not in trainer.calls and trainer.received_sigterm
    assert len(compose.signal_handlers) == 2


def test_take_sigterm_leaves_unknown_handlers_and_other_threads_alone(sigterm_restored: Any) -> None:
    trainer = FakeTrainer()
    other = _HandlersCompose([lambda signum, frame: None])  # Lightning's form, without its notifier
    signal.signal(signal.SIGTERM, other)
    assert not take_sigterm(trainer, lambda t, s: None)  # type: ignore[arg-type]
    assert len(other.signal_handlers) == 1
    compose = _HandlersCompose([trainer._notifier])
    signal.signal(signal.SIGTERM, compose)
    result: list[bool] = []
    worker = threading.Thread(target=lambda: result.append(take_sigterm(trainer, lambda t, s: None)))  # type: ignore[arg-type]
    worker.start()
    worker.join()
    assert result == [False] and compose.signal_handlers == [trainer._notifier]


# ---------------------------------------------------------------------------------------------------------------
# RandomState, ValidateLastEpoch, RunCheckpoint


def _draws() -> tuple[float, float, float]:
    return random.random(), float(np.random.rand()), float(torch.rand(()))  # noqa: NPY002


def test_random_state_restores_every_generator_once() -> None:
    cb = RandomState()
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002
    np.random.rand()  # noqa: NPY002  # a position inside the key block
    torch.manual_seed(3)
    saved = cb.state_dict()
    expected = _draws()
    _draws()
    resumed = RandomState()
    resumed.load_state_dict(saved)
    resumed.on_train_start(None, None)  # type: ignore[arg-type]
    assert _draws() == expected
    after = _draws()
    random.seed(after[0])
    later = (random.random(), 0.0, 0.0)
    random.seed(after[0])
    resumed.on_train_start(None, None)  # type: ignore[arg-type]  # a second fit: nothing to restore any more
    assert random.random() == later[0]


def _val_trainer(current_epoch: int, max_epochs: int, period: int) -> SimpleNamespace:
    return SimpleNamespace(current_epoch=current_epoch, max_epochs=max_epochs, check_val_every_n_epoch=period)


def test_the_last_epoch_is_validated_whatever_the_period(caplog: pytest.LogCaptureFixture) -> None:
    cb = ValidateLastEpoch()
    trainer = _val_trainer(1, 3, 5)  # not the last epoch
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    assert trainer.check_val_every_n_epoch == 5
    trainer.current_epoch = 2  # the last one (3 of 3)
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    assert trainer.check_val_every_n_epoch == 1
    cb.on_train_end(trainer, None)  # type: ignore[arg-type]
    assert trainer.check_val_every_n_epoch == 5  # the trainer's setting is given back
    resumed = _val_trainer(2, 3, 5)  # a resume inside the last epoch: no on_train_epoch_start
    ValidateLastEpoch().on_train_start(resumed, None)  # type: ignore[arg-type]
    assert resumed.check_val_every_n_epoch == 1
    due = _val_trainer(9, 10, 5)  # the last epoch is a validated one anyway: nothing changed, nothing said
    with caplog.at_level(logging.INFO, logger="yolo9000.train"):
        ValidateLastEpoch().on_train_epoch_start(due, None)  # type: ignore[arg-type]
    assert due.check_val_every_n_epoch == 5 and not caplog.records


def test_moved_run_maps_its_last_checkpoint_record_and_partial_files_keep_lightnings_way(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    new.mkdir()
    for name in ("epoch_001.ckpt", "epoch_002.ckpt"):
        (new / name).write_bytes(b"x")
    state = {
        "monitor": "val/map_50",
        "best_model_score": torch.tensor(0.5),
        "best_model_path": str(old / "epoch_002.ckpt"),
        "current_score": torch.tensor(0.5),
        "dirpath": str(old),
        "best_k_models": {str(old / "epoch_001.ckpt"): torch.tensor(0.4), str(old / "epoch_002.ckpt"): 0.5},
        "kth_best_model_path": str(old / "epoch_001.ckpt"),
        "kth_value": torch.tensor(0.4),
        "last_model_path": str(old / "last.ckpt"),
    }
    cb = RunCheckpoint(dirpath=str(new), monitor="val/map_50", mode="max", save_top_k=2)
    cb.load_state_dict(dict(state))
    assert cb.last_model_path == str(new / "last.ckpt") and cb.kth_best_model_path == str(new / "epoch_001.ckpt")
    (new / "epoch_001.ckpt").unlink()  # one of the records is not there: not this run's folder
    partial = RunCheckpoint(dirpath=str(new), monitor="val/map_50", mode="max", save_top_k=2)
    with pytest.warns(UserWarning, match="dirpath has changed"):
        partial.load_state_dict(dict(state))
    assert partial.best_model_score is None


# ---------------------------------------------------------------------------------------------------------------
# SpeedMonitor


def test_training_speed_skips_each_process_first_batch_and_counts_all_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock(0.0)
    monkeypatch.setattr(speed.time, "perf_counter", clock)
    logged: list[tuple[str, float]] = []
    module = SimpleNamespace(device=torch.device("cpu"), log=lambda k, v: logged.append((k, v)))
    trainer = SimpleNamespace(world_size=2)
    batch = {"images": torch.zeros(4, 3, 8, 8)}  # 4 images a process: 8 a step

    def epoch(cb: speed.SpeedMonitor, seconds: list[float]) -> None:
        cb.on_train_epoch_start(trainer, module)  # type: ignore[arg-type]
        for dt in seconds:
            cb.on_train_batch_start(trainer, module, batch, 0)  # type: ignore[arg-type]
            clock.now += dt
            cb.on_train_batch_end(trainer, module, None, batch, 0)  # type: ignore[arg-type]
        cb.on_train_epoch_end(trainer, module)  # type: ignore[arg-type]

    cb = speed.SpeedMonitor()
    epoch(cb, [3.0, 1.0, 1.0])  # epoch: 24 images in 5 s; the run: the first batch (warm-up) left out
    epoch(cb, [2.0])  # 8 in 2 s
    assert logged == [("train/img_per_s", 24 / 5), ("train/img_per_s", 8 / 2)]
    assert cb.summary() == {"train_img_per_s": 24 / 4}  # batches 2, 3 and 4: 24 images in 4 s
    resumed = speed.SpeedMonitor()  # a resume: the totals of the processes before
    resumed.load_state_dict(cb.state_dict())
    epoch(resumed, [1.0, 2.0])  # its own first batch is a warm-up again
    assert resumed.summary() == {"train_img_per_s": (24 + 8) / (4 + 2)}


def test_inference_speed_leaves_out_the_first_test_batch_unless_it_is_the_only_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock(0.0)
    monkeypatch.setattr(speed.time, "perf_counter", clock)
    module = SimpleNamespace(device=torch.device("cpu"))

    def test(cb: speed.SpeedMonitor, sizes_seconds: list[tuple[int, float]]) -> dict[str, float]:
        for n, dt in sizes_seconds:
            batch = {"images": torch.zeros(n, 3, 8, 8)}
            cb.on_test_batch_start(None, module, batch, 0)  # type: ignore[arg-type]
            clock.now += dt
            cb.on_test_batch_end(None, module, None, batch, 0)  # type: ignore[arg-type]
        return cb.summary()

    assert test(speed.SpeedMonitor(), [(2, 0.5)]) == {"inference_fps": 4.0}
    assert test(speed.SpeedMonitor(), [(2, 10.0), (4, 1.0), (2, 1.0)]) == {"inference_fps": 3.0}
    assert speed.SpeedMonitor().summary() == {}


# ---------------------------------------------------------------------------------------------------------------
# EpochLog, format_duration, the model summary


def test_format_duration_rounds_and_refuses_nothing() -> None:
    cases = {59.6: "1m00s", 3599.5: "1h00m00s", 0.4: "0s", -5.0: "0s", float("nan"): "?", float("inf"): "?"}
    assert {k: progress.format_duration(k) for k in cases} == cases


class LineTrainer(SimpleNamespace):
    pass


def _line_trainer(**kw: Any) -> LineTrainer:
    base = {
        "world_size": 2,
        "is_global_zero": True,
        "global_step": 0,
        "current_epoch": 0,
        "max_epochs": 4,
        "max_steps": -1,
        "optimizers": [SimpleNamespace(param_groups=[{"lr": 0.001}, {"lr": 0.001}])],
        "sanity_checking": False,
        "callback_metrics": {},
    }
    return LineTrainer(**(base | kw))


def test_epoch_line_of_a_run_killed_mid_epoch_and_resumed_goes_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The epoch line's numbers, by hand: a run of 4 epochs (2 processes of 2 images a batch) killed inside its
    second epoch and resumed from the save: that epoch's loss, img/s, elapsed time and ETA cover both processes."""
    clock = Clock(100.0)
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    batch = {"images": torch.zeros(2, 3, 8, 8)}

    def step(cb: progress.EpochLog, trainer: LineTrainer, seconds: float, loss: float) -> None:
        cb.on_train_batch_start(trainer, None)  # type: ignore[arg-type]
        clock.now += seconds
        trainer.global_step += 1
        cb.on_train_batch_end(trainer, None, {"loss": torch.tensor(loss)}, batch)  # type: ignore[arg-type]

    first, trainer = progress.EpochLog(), _line_trainer()
    first.on_train_start(trainer, None)  # type: ignore[arg-type]  # t=100
    first.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    step(first, trainer, 2.0, 2.0)
    step(first, trainer, 2.0, 4.0)
    clock.now = 110.0
    # 8 images in 4 s of training; 10 s for 1 of 4 epochs: 30 s left
    assert first.line(trainer) == "epoch 1/4 | loss 3 | 2.0 img/s | lr 1.00e-03 | 10s elapsed, ETA 30s"  # type: ignore[arg-type]
    trainer.current_epoch = 1
    first.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    step(first, trainer, 1.0, 6.0)  # t=111, step 3
    clock.now = 115.0
    saved = first.state_dict()  # the last save before the kill: 15 s into the run

    clock.now = 1000.0
    resumed, trainer = progress.EpochLog(), _line_trainer(global_step=3, current_epoch=1, max_steps=6)
    resumed.load_state_dict(saved)
    resumed.on_train_start(trainer, None)  # type: ignore[arg-type]  # mid-epoch: no on_train_epoch_start
    step(resumed, trainer, 1.0, 2.0)  # step 4
    trainer.callback_metrics = {"val/map_50": torch.tensor(0.25)}
    resumed.on_validation_end(trainer, None)  # type: ignore[arg-type]
    clock.now = 1005.0
    # epoch 2: loss (6 + 2) / 2; 8 images in 2 s; elapsed 15 + 5 s over 2 epochs: 2 epochs left take 20 s, but
    # max_steps=6 ends it first: 2 of the 4 steps done in 20 s are left: 10 s
    assert resumed.line(trainer) == (  # type: ignore[arg-type]
        "epoch 2/4 (step 4/6) | loss 4 | 4.0 img/s | lr 1.00e-03 | val/map_50 0.2500 | 20s elapsed, ETA 10s"
    )
    again, trainer = progress.EpochLog(), _line_trainer(global_step=3, current_epoch=1)  # no step cap: by epochs
    again.load_state_dict(saved)
    again.on_train_start(trainer, None)  # type: ignore[arg-type]  # t=1005
    clock.now = 1020.0  # 15 + 15 s over the 2 epochs timed: the 2 left take 30 s
    assert again.line(trainer).endswith("| 30s elapsed, ETA 30s")  # type: ignore[arg-type]


def test_steps_done_count_only_the_runs_own_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A process started at step 100 without an epoch-line state (a checkpoint without it) did 4 steps in 8 s;
    resumed from its save, the ETA to max_steps is paced by those 4 steps, not by 104."""
    clock = Clock(0.0)
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    cb, trainer = progress.EpochLog(), _line_trainer(global_step=100, max_epochs=-1, max_steps=120)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step, clock.now = 104, 8.0
    cb._global_step = 104  # (as on_train_batch_end records it)
    saved = cb.state_dict()
    resumed = progress.EpochLog()
    resumed.load_state_dict(saved)
    clock.now = 50.0
    resumed.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step, clock.now = 106, 54.0  # 6 steps in 12 s: 14 steps left take 28 s
    line = resumed.line(trainer)  # type: ignore[arg-type]
    assert line.startswith("epoch 1 (step 106/120) |") and line.endswith("| 12s elapsed")  # no epoch total
    cb2, trainer2 = progress.EpochLog(), _line_trainer(global_step=104, max_epochs=50, max_steps=120)
    cb2.load_state_dict(saved)
    clock.now = 50.0
    cb2.on_train_start(trainer2, None)  # type: ignore[arg-type]
    trainer2.global_step, clock.now = 106, 54.0
    assert cb2.line(trainer2).endswith("12s elapsed, ETA 28s")  # type: ignore[arg-type]


def test_epoch_line_values_of_this_epoch_only(caplog: pytest.LogCaptureFixture) -> None:
    """A new epoch starts from nothing: no images, loss or validation values of the one before; the sanity check's
    values are not an epoch's; a step output that is not one number is not averaged; rank 0 alone prints."""
    cb, trainer = progress.EpochLog(), _line_trainer(optimizers=[])
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    trainer.sanity_checking, trainer.callback_metrics = True, {"val/map_50": torch.tensor(0.0)}
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    trainer.sanity_checking = False
    cb.on_train_batch_start(trainer, None)  # type: ignore[arg-type]
    out = {"loss": torch.tensor(1.0), "terms": {"train/coord": torch.tensor([1.0, 2.0])}}
    cb.on_train_batch_end(trainer, None, out, {"images": torch.zeros(2, 3, 8, 8)})  # type: ignore[arg-type]
    assert cb.mean("train/coord") is None and "val/" not in cb.line(trainer)  # type: ignore[arg-type]
    trainer.callback_metrics = {"val/map_50": torch.tensor(0.5)}
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    trainer.current_epoch = 1
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]  # the next epoch is not validated
    assert cb._images == 0 and cb.mean("train/loss") is None and "val/" not in cb.line(trainer)  # type: ignore[arg-type]
    trainer.is_global_zero = False
    with caplog.at_level(logging.INFO, logger="yolo9000.train"):
        cb.on_train_epoch_end(trainer, None)  # type: ignore[arg-type]
    assert not caplog.records


def test_model_summary_reaches_the_log_file_once_and_lightnings_logger_is_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from pytorch_lightning.callbacks import ModelSummary

    plain = logging.getLogger(ModelSummary.__module__)
    data = [(" ", ["0"]), ("Name", ["net"]), ("Type", ["Linear"]), ("Params", ["6"]), ("Mode", ["train"])]
    data += [("FLOPs", ["0"])]
    with caplog.at_level(logging.INFO):
        progress.LoggedRichModelSummary.summarize(data, 6, 6, 0.0, {"train": 1, "eval": 0}, total_flops=0)
    tables = [r for r in caplog.records if "Linear" in r.getMessage()]
    assert [r.name for r in tables] == ["yolo9000.train"] and tables[0].getMessage().startswith("model summary:")
    assert plain.propagate and not [h for h in plain.handlers if isinstance(h, progress._Capture)]


# ---------------------------------------------------------------------------------------------------------------
# the sweep guard


def _hydra(sweep_dir: Path, subdir: str = "${hydra.job.num}") -> DictConfig:
    return OmegaConf.create(
        {
            "hydra": {
                "sweep": {"dir": str(sweep_dir), "subdir": subdir},
                "sweeper": {
                    "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
                    "params": {"seed": "1,2,3"},
                },
                "overrides": {"task": ["data=voc"]},
            }
        }
    )


def _job(folder: Path, overrides: list[str]) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))


def test_sweep_guard_names_the_jobs_whose_folder_holds_another_configuration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The grid seed=1,2,3 numbers its jobs 0, 1, 2; folder 0 holds seed=1 (the same job), folder 1 seed=3 (another
    configuration), folder 2 nothing yet."""
    _job(tmp_path / "0", ["seed=1", "data=voc"])
    _job(tmp_path / "1", ["seed=3", "data=voc"])
    config = _hydra(tmp_path)
    conflicts = sweep_conflicts(config.hydra)
    assert conflicts == [(tmp_path / "1", ["seed: 3 (the run) vs 2 (this job)"])]
    with pytest.raises(SystemExit) as stop:
        SweepGuard().on_multirun_start(config)
    err = capsys.readouterr().err
    assert stop.value.code == 1 and "1 job(s) would be another configuration" in err
    assert f"  {tmp_path / '1'} ({tmp_path / '1' / '.hydra' / 'overrides.yaml'}):\n    seed: 3 (the run)" in err
    assert str(tmp_path / "0") + " " not in err
    # job folders named otherwise: not known beforehand, left to each job's own check
    assert sweep_conflicts(_hydra(tmp_path, "${hydra.job.override_dirname}").hydra) == []


def test_sweep_guard_lets_the_same_grid_run_silently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _job(tmp_path / "0", ["seed=1", "data=voc"])
    _job(tmp_path / "2", ["seed=3", "data=voc", "trainer.max_epochs=9"])  # trained further: the same job
    SweepGuard().on_multirun_start(_hydra(tmp_path))
    assert capsys.readouterr().err == ""


# ---------------------------------------------------------------------------------------------------------------
# run_folder: which checkpoint a run continues from, what is refused


def _run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("seed: 1\n")
    return run


def _ckpt(path: Path, epoch: int, step: int, mtime: float) -> Path:
    torch.save({"epoch": epoch, "global_step": step}, path)
    os.utime(path, (mtime, mtime))
    return path


def _cfg(resume: Path | str | None, ckpt_path: Path | str | None = None) -> DictConfig:
    return OmegaConf.create({"resume": None if resume is None else str(resume), "ckpt_path": ckpt_path})


def test_a_requeued_run_continues_from_its_newest_checkpoint(tmp_path: Path) -> None:
    """A SLURM requeue leaves hpc_ckpt_<n>.ckpt beside last.ckpt: the newer of them is the run's state, whether the
    job lands in the folder (no resume=) or is given resume=<run>; resume=<the older one> is refused."""
    run = _run_dir(tmp_path)
    last = _ckpt(run / "checkpoints" / "last.ckpt", 1, 6, 100)
    hpc = _ckpt(run / "hpc_ckpt_1.ckpt", 1, 8, 200)
    assert run_folder.resume_checkpoint(_cfg(None), run) == str(hpc)
    assert run_folder.resume_checkpoint(_cfg(run), run) == str(hpc)
    assert run_folder.resume_checkpoint(_cfg(hpc), run) == str(hpc)
    with pytest.raises(run_folder.ResumeRefused, match=f"newest checkpoint, {hpc}: resume={run}"):
        run_folder.resume_checkpoint(_cfg(last), run)
    os.utime(last, (300, 300))  # last.ckpt written after the requeue's save
    assert run_folder.resume_checkpoint(_cfg(run, ckpt_path=tmp_path / "other.ckpt"), run) == str(last)


def test_a_run_killed_before_its_first_last_ckpt_continues_from_its_epoch_checkpoint(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Killed between its first epoch checkpoint (validation end) and its first last.ckpt (epoch end): the run
    continues from the newest readable checkpoint (it was refused as having "saved no checkpoint", and resume=<that
    checkpoint> sent back to resume=<run>); one cut short by a kill, and last.ckpt.tmp, are passed over; a run with
    none readable is still refused with its own command to start again."""
    run = _run_dir(tmp_path)
    (run / "launch_overrides.txt").write_text("seed=1\n")
    best = _ckpt(run / "checkpoints" / "epoch_000.ckpt", 0, 3, 100)
    older = _ckpt(run / "checkpoints" / "epoch_002.ckpt", 0, 2, 300)  # a newer file of an earlier state
    cut = run / "checkpoints" / "epoch_001.ckpt"
    cut.write_bytes(best.read_bytes()[:40])  # the kill came during its write
    os.utime(cut, (200, 200))
    (run / "checkpoints" / "last.ckpt.tmp").write_bytes(best.read_bytes())
    with caplog.at_level(logging.WARNING, "yolo9000"):
        assert run_folder.resume_checkpoint(_cfg(run), run) == str(best)
    assert "no last.ckpt" in caplog.text
    assert "continuing from epoch_000.ckpt, the newest readable checkpoint, saved in epoch 1 at optimizer step 3" in (
        caplog.text
    )
    assert run_folder.resume_checkpoint(_cfg(best), run) == str(best)
    assert run_folder.resume_checkpoint(_cfg(None, ckpt_path=tmp_path / "start.ckpt"), run) == str(best)
    with pytest.raises(run_folder.ResumeRefused, match="a run continues from its newest checkpoint"):
        run_folder.resume_checkpoint(_cfg(older), run)
    assert run_folder.saved_at_text(best) == "epoch 1, optimizer step 3" and run_folder.saved_at_text(cut) == ""
    best.unlink(), older.unlink()
    with pytest.raises(run_folder.ResumeRefused, match=r"saved no checkpoint .* python src/train.py seed=1 hydra"):
        run_folder.resume_checkpoint(_cfg(run), run)


def test_resume_of_unreadable_checkpoints_is_not_the_same_state(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"not a checkpoint")
    other = run / "checkpoints" / "epoch_000.ckpt"
    other.write_bytes(b"neither")
    os.utime(other, (1, 1))
    with pytest.raises(run_folder.ResumeRefused, match="the checkpoint cannot be read"):
        run_folder.resume_checkpoint(_cfg(other), run)


def test_a_damaged_last_ckpt_is_named_and_passed_over(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """last.ckpt cut short (a full disk, an interrupted copy): the resume names it and continues from the newest
    readable checkpoint (it stopped with the loader's traceback, naming no file); resume=<that file> and a run with
    nothing readable are refused naming it; check_resume_progress names a damaged ckpt_path= file too."""
    run = _run_dir(tmp_path)
    best = _ckpt(run / "checkpoints" / "epoch_000.ckpt", 0, 3, 100)
    last = run / "checkpoints" / "last.ckpt"
    torch.save({"epoch": 1, "global_step": 6}, last)
    last.write_bytes(last.read_bytes()[:-200])
    with caplog.at_level(logging.WARNING, "yolo9000"):
        assert run_folder.resume_checkpoint(_cfg(run), run) == str(best)
    assert f"{last} cannot be read (" in caplog.text and "cut short or damaged; passed over" in caplog.text
    with pytest.raises(run_folder.ResumeRefused, match=rf"resume={last}: the checkpoint cannot be read \("):
        run_folder.resume_checkpoint(_cfg(last), run)
    best.unlink()
    with pytest.raises(run_folder.ResumeRefused, match=rf"{last}: cannot be read .* no other readable checkpoint"):
        run_folder.resume_checkpoint(_cfg(run), run)
    with pytest.raises(run_folder.ResumeRefused, match=rf"{last}: cannot be read as a checkpoint"):
        run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": 3}}), last)


def test_resume_of_nothing_or_of_a_checkpoints_folder_outside_a_run(tmp_path: Path) -> None:
    gone = tmp_path / "gone"
    with pytest.raises(FileNotFoundError, match=f"resume={gone}: no such run folder or checkpoint file"):
        run_folder.resume_checkpoint(_cfg(gone, ckpt_path=tmp_path / "start.ckpt"), tmp_path)
    stray = tmp_path / "stray" / "checkpoints"  # a folder named checkpoints that is no run's
    stray.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=r"not the folder of a training run \(no config.yaml\)"):
        run_folder.resume_folder(str(stray))
    with pytest.raises(FileNotFoundError, match=r"\(no config.yaml: not the folder of a training run"):
        run_folder.resume_checkpoint(_cfg(stray), stray)


def test_run_overrides_are_quoted_and_a_malformed_record_falls_back_to_the_launch(tmp_path: Path) -> None:
    (tmp_path / run_folder.LAUNCH_FILE).write_text("seed=2\n")
    (tmp_path / "metrics.json").write_text('{"overrides": ["data.max_images={train: 8}", "seed=3"]}')
    assert run_folder.run_overrides(tmp_path) == "'data.max_images={train: 8}' seed=3"
    (tmp_path / "metrics.json").write_text('{"overrides": ["seed=3", 4]}')
    assert run_folder.run_overrides(tmp_path) == "seed=2"


def _saved_config(folder: Path, config: dict[str, Any]) -> None:
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(config)))


def test_resume_refusal_lists_twenty_differences_then_counts_the_rest(tmp_path: Path) -> None:
    _saved_config(tmp_path, {"model": {f"k{i:02d}": 0 for i in range(22)}})
    with pytest.raises(run_folder.ResumeRefused) as err:
        run_folder.check_resume_config(OmegaConf.create({"model": {f"k{i:02d}": 1 for i in range(22)}}), tmp_path)
    lines = str(err.value).splitlines()
    assert "(data=... model=...)" in lines[0] and "None" not in lines[0]  # no overrides known: no command
    assert lines[1].startswith("22 difference(s)")
    assert lines[2:23] == [f"  model.k{i:02d}: 0 (the run) vs 1 (now)" for i in range(20)] + ["  ... 2 more"]


@pytest.mark.parametrize(
    ("key", "run", "now"), [("max_images", 8, 16), ("drop_last", True, False), ("max_boxes", 30, 50)]
)
def test_resume_with_another_data_amount_or_batch_rule_is_refused(
    tmp_path: Path, key: str, run: object, now: object
) -> None:
    _saved_config(tmp_path, {"data": {key: run}})
    with pytest.raises(run_folder.ResumeRefused, match=re.escape(f"data.{key}: {run!r} (the run) vs {now!r} (now)")):
        run_folder.check_resume_config(OmegaConf.create({"data": {key: now}}), tmp_path)


@pytest.mark.parametrize(("key", "now"), [("accumulate_grad_batches", 2), ("limit_train_batches", 0.5)])
def test_resume_with_other_optimizer_steps_per_epoch_is_refused(tmp_path: Path, key: str, now: object) -> None:
    """Accumulating gradients over more batches (or training fewer batches an epoch) changes the optimizer steps
    of an epoch as another data.batch_size does (refused): it was only a warning."""
    _saved_config(tmp_path, {"trainer": {"max_epochs": 2}})
    with pytest.raises(run_folder.ResumeRefused, match=re.escape(f"trainer.{key}: None (the run) vs {now!r} (now)")):
        run_folder.check_resume_config(OmegaConf.create({"trainer": {"max_epochs": 2, key: now}}), tmp_path)


@pytest.mark.parametrize("text", ["seed: [1\n", "- a list\n"])
def test_a_damaged_config_yaml_refuses_the_resume_naming_it(tmp_path: Path, text: str) -> None:
    """The run's config.yaml cut short or edited into no config: the resume stopped with YAML's traceback (and left
    a failed.json in the run's folder); it is refused naming the file."""
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(run_folder.ResumeRefused, match=re.escape(f"resume={tmp_path}: {tmp_path / 'config.yaml'} ")):
        run_folder.check_resume_config(OmegaConf.create({"seed": 1}), tmp_path)


def test_a_run_stopped_before_its_config_yaml_is_started_again_not_called_no_run(tmp_path: Path) -> None:
    """Ctrl-C or an error while the run reads its data leaves the folder with launch_overrides.txt and train.log but
    no config.yaml: resume= said "not the folder of a training run"; it says the run stopped while starting and
    gives the command that starts it again into its folder."""
    (tmp_path / run_folder.LAUNCH_FILE).write_text("data.max_images=8 seed=2\n")
    with pytest.raises(FileNotFoundError) as err:
        run_folder.resume_folder(str(tmp_path))
    assert "the run stopped while starting, before it wrote its config.yaml" in str(err.value)
    assert str(err.value).endswith(f"python src/train.py data.max_images=8 seed=2 hydra.run.dir={tmp_path}")


def test_resume_config_check_without_a_record_and_logger_changes_are_silent(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run_folder.check_resume_config(OmegaConf.create({"seed": 1}), tmp_path)  # no config.yaml: nothing to compare
    _saved_config(tmp_path, {"seed": 1, "logger": {"wandb": {"name": "a"}}, "trainer": {"max_epochs": 2}})
    with caplog.at_level(logging.INFO, logger="yolo9000.train"):
        run_folder.check_resume_config(
            OmegaConf.create({"seed": 1, "logger": {"wandb": {"name": "b"}}, "trainer": {"precision": "bf16-mixed"}}),
            tmp_path,
        )
    (info, warning) = caplog.records
    assert info.levelno == logging.INFO and info.getMessage().endswith("continued with trainer.max_epochs: 2 -> None")
    assert warning.levelno == logging.WARNING and "1 setting(s) differ from the run's" in warning.getMessage()
    assert "trainer.precision: None -> 'bf16-mixed'" in warning.getMessage() and "logger" not in caplog.text


def test_an_emptied_model_setting_is_a_difference(tmp_path: Path) -> None:
    _saved_config(tmp_path, {"model": {"head": {}}})
    with pytest.raises(run_folder.ResumeRefused, match=re.escape("model.head: {} (the run) vs None (now)")):
        run_folder.check_resume_config(OmegaConf.create({"model": {"head": None}}), tmp_path)


def test_progress_of_a_checkpoint_without_a_loader_position_counts_its_epochs(tmp_path: Path) -> None:
    """Lightning's epoch 2 (0-based) is 3 epochs trained: max_epochs=3 continues (and finds it done), 2 is
    refused; a position inside an epoch is named as such."""
    plain = tmp_path / "plain.ckpt"
    torch.save({"epoch": 2}, plain)
    run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": 3}}), plain)
    with pytest.raises(run_folder.ResumeRefused, match=r"has trained epoch 3; trainer.max_epochs=2 would stop"):
        run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": 2}}), plain)
    inside = tmp_path / "inside.ckpt"
    torch.save({"loops": {"fit_loop": {"state_dict": {"combined_loader": [{"epoch": 1, "batch": 4}]}}}}, inside)
    with pytest.raises(run_folder.ResumeRefused, match=r"has trained into epoch 2; trainer.max_epochs=1 "):
        run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": 1}}), inside)


def test_a_continuation_on_another_process_count_is_refused(tmp_path: Path) -> None:
    ckpt = tmp_path / "last.ckpt"
    torch.save({"epoch": 0, "DetectionDataModule": {"world_size": 2}}, ckpt)
    run_folder.check_resume_world(ckpt, 2)
    with pytest.raises(run_folder.ResumeRefused, match=r"the run trained on 2 process\(es\) .* this job starts 1"):
        run_folder.check_resume_world(ckpt, 1)
    torch.save({"epoch": 0, "DetectionDataModule": {"batch_size": 4}}, ckpt)  # from before the world was recorded
    run_folder.check_resume_world(ckpt, 1)


def test_a_job_may_train_further_by_steps_and_a_missing_override_is_a_difference(tmp_path: Path) -> None:
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(["seed=1", "data=voc"])))
    run_folder.check_same_job(tmp_path, ["seed=1", "data=voc", "trainer.max_steps=500"])
    assert run_folder.job_differences(tmp_path, ["data=voc"]) == ["seed: 1 (the run) vs (not set) (this job)"]


def test_a_required_key_set_to_an_empty_string_is_missing() -> None:
    cfg = OmegaConf.create({"required": ["model.init_ckpt"], "model": {"init_ckpt": ""}})
    with pytest.raises(ValueError, match=r"add model.init_ckpt=<path>"):
        run_folder.check_required(cfg)


def test_hydra_list_round_trips_through_hydras_parser() -> None:
    """Hydra's quoted strings take a backslash literally unless it precedes a quote (or ends the string)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    names = ["cat", "null", "two words", 'a"b', "back\\slash", "ends\\", 'q\\"', "C:\\dir\\n"]
    parsed = OverridesParser.create().parse_override("x=" + run_folder.hydra_list(names)).value()
    assert parsed == names


def test_a_class_list_of_a_hundred_names_is_written_out(tmp_path: Path) -> None:
    ckpt = tmp_path / "c.ckpt"
    names = [f"c{i}" for i in range(100)]
    torch.save({"hyper_parameters": {"class_names": names}}, ckpt)
    with pytest.raises(ValueError, match=r"data.class_names=\[c0,c1,") as err:
        run_folder.check_checkpoint_classes(ckpt, names[::-1])
    assert "c99]" in str(err.value)


def test_a_checkpoint_of_another_kind_or_optimizer_is_refused_before_training(tmp_path: Path) -> None:
    """``ckpt_path=`` given a classifier's checkpoint in a detection run (and the reverse) is refused naming both
    kinds and the keys that start from its weights (Lightning's missing-keys traceback came at the fit's start);
    training on from an Adam checkpoint with model.optimizer=sgd is refused naming both (the Adam state loaded into
    SGD: ``KeyError: 'momentum'``), testing it is not."""

    class ClassifierModule:  # stand-ins: the check reads the class's name and its hparams
        hparams = {"optimizer": "sgd"}

    class DetectorModule:
        hparams = {"optimizer": "sgd"}

    ckpt = tmp_path / "c.ckpt"
    target = "yolo9000.modules.classifier.ClassifierModule"
    torch.save({"yolo9000_model_config": {"_target_": target}, "hyper_parameters": {"optimizer": "adam"}}, ckpt)
    with pytest.raises(ValueError, match=r"a ClassifierModule checkpoint; this run trains a DetectorModule .*"
                       r"model\.backbone_ckpt=<ckpt>"):  # fmt: skip
        run_folder.check_checkpoint_classes(ckpt, ["a"], DetectorModule(), training=False)
    with pytest.raises(ValueError, match=r"model\.optimizer=adam, this run has model\.optimizer=sgd.*model\.init_ckpt"):
        run_folder.check_checkpoint_classes(ckpt, ["a"], ClassifierModule(), training=True)
    run_folder.check_checkpoint_classes(ckpt, ["a"], ClassifierModule(), training=False)  # a test: no optimizer
    cfg = OmegaConf.create({"trainer": {"max_steps": -1, "max_epochs": 0}})
    torch.save({"yolo9000_model_config": {"_target_": target}, "epoch": 3, "global_step": 10}, ckpt)
    with pytest.raises(run_folder.ResumeRefused, match=r"python src/train.py <its overrides> train=false ckpt_path="):
        run_folder.check_resume_progress(cfg, ckpt)
    # a ckpt_path= that is not there is said as such (it read as "cannot be read ... cut short or damaged")
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.ckpt \(ckpt_path\)"):
        run_folder.check_resume_progress(cfg, tmp_path / "nope.ckpt")


def _finished(tmp_path: Path, metrics: str, trainer: dict[str, int] | None) -> None:
    (tmp_path / "metrics.json").write_text(metrics)
    if trainer is not None:
        (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml({"trainer": trainer}))


def test_finished_result_is_the_headline_of_the_same_schedule(tmp_path: Path) -> None:
    same = OmegaConf.create({"trainer": {"max_epochs": 4, "max_steps": 100}})
    _finished(tmp_path, '{"headline_metric": "top1", "top1": 0.75, "map_50": 0.1}', None)
    assert run_folder.finished_result(same, tmp_path) is None  # no record of the run's config: not known finished
    _finished(tmp_path, '{"headline_metric": "top1", "top1": 0.75, "map_50": 0.1}', {"max_epochs": 4, "max_steps": 100})
    assert run_folder.finished_result(same, tmp_path) == 0.75
    more = OmegaConf.create({"trainer": {"max_epochs": 4, "max_steps": 200}})
    assert run_folder.finished_result(more, tmp_path) is None  # trained further by steps
    _finished(tmp_path, '{"map_50": 0}', {"max_epochs": 4, "max_steps": 100})  # a finished run that found nothing
    assert run_folder.finished_result(same, tmp_path) == 0.0


# ---------------------------------------------------------------------------------------------------------------
# bugs found by the audit


def test_a_continuation_may_not_end_before_the_checkpoints_step(tmp_path: Path) -> None:
    """trainer.max_steps below the steps the run has trained stops it at once, as a too small max_epochs does
    (Lightning's fit loop is done when global_step >= max_steps): its weights were tested as the run's result."""
    ckpt = tmp_path / "last.ckpt"
    torch.save({"epoch": 1, "global_step": 150}, ckpt)
    for max_steps in (150, 200, -1):
        run_folder.check_resume_progress(
            OmegaConf.create({"trainer": {"max_epochs": 10, "max_steps": max_steps}}), ckpt
        )
    with pytest.raises(run_folder.ResumeRefused, match=r"trainer.max_steps=100 would stop it there"):
        run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": 10, "max_steps": 100}}), ckpt)


def test_training_speed_survives_the_test_restore_of_an_earlier_best_checkpoint(tmp_path: Path) -> None:
    """trainer.test(ckpt_path=best) restores every callback's state from the best checkpoint, saved before the
    training ended: the training totals of metrics.json's train_img_per_s must stay this run's (they went back
    to the best epoch's)."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from conftest import quiet_trainer

    class Tiny(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
            return (self.w - batch["images"].mean()) ** 2

        def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
            pass

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    batches = [{"images": torch.ones(2, 1)}] * 3  # 3 batches of 2 images an epoch
    loader = DataLoader(batches, batch_size=None)

    class SaveFirstEpoch(pl.Callback):
        def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if trainer.current_epoch == 0:
                trainer.save_checkpoint(tmp_path / "best.ckpt")

    monitor = speed.SpeedMonitor()
    trainer = quiet_trainer(max_epochs=3, callbacks=[monitor, SaveFirstEpoch()])
    module = Tiny()
    trainer.fit(module, train_dataloaders=loader)
    assert monitor.train_images == 16  # 9 batches of 2, the first a warm-up
    trainer.test(module, dataloaders=loader, ckpt_path=str(tmp_path / "best.ckpt"), verbose=False)
    assert monitor.train_images == 16  # (the best checkpoint holds 4)


def test_provenance_marks_changed_tracked_files_dirty_but_not_untracked_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``commit`` is HEAD's short hash; ``+dirty`` when a tracked file differs from it, not for a file git does not
    track (outputs, a .env); ``unknown`` outside a checkout. A throw-away repository stands in for the project."""
    import subprocess

    from yolo9000 import environment

    def git(*args: str) -> str:
        env = {
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@t",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t",
        }
        done = subprocess.run(["git", *args], cwd=tmp_path, capture_output=True, text=True, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    monkeypatch.setattr(environment, "PROJECT_ROOT", tmp_path)
    assert environment.provenance()["commit"] == "unknown"
    git("init", "-q")
    (tmp_path / "tracked.py").write_text("a = 1\n")
    git("add", "tracked.py")
    git("commit", "-qm", "first")
    head = git("rev-parse", "--short=12", "HEAD")
    (tmp_path / "untracked.txt").write_text("output\n")
    assert environment.provenance()["commit"] == head  # an untracked file leaves it clean
    (tmp_path / "tracked.py").write_text("a = 2\n")
    assert environment.provenance()["commit"] == f"{head}+dirty"


def test_setup_environment_defaults_wandb_offline_and_keeps_what_the_user_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """W&B stays on this machine unless the user asks (``WANDB_MODE`` in the environment or in ``.env``)."""
    from yolo9000 import environment

    # set (and so undone afterwards): setup_environment would leave the patched root to later tests' subprocesses
    monkeypatch.setenv("PROJECT_ROOT", str(environment.PROJECT_ROOT))
    monkeypatch.setattr(environment, "PROJECT_ROOT", tmp_path)  # no .env there
    monkeypatch.delenv("WANDB_MODE", raising=False)
    environment.setup_environment()
    assert os.environ["WANDB_MODE"] == "offline"
    monkeypatch.setenv("WANDB_MODE", "online")
    environment.setup_environment()
    assert os.environ["WANDB_MODE"] == "online"
    monkeypatch.delenv("WANDB_MODE")
    (tmp_path / ".env").write_text("WANDB_MODE=disabled\n")
    environment.setup_environment()
    assert os.environ["WANDB_MODE"] == "disabled"


def test_a_resume_in_a_moved_run_folder_ignores_the_paths_that_moved_with_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run folder copied elsewhere and resumed there: settings that were paths inside the old folder and are the
    same paths inside the new one are no difference; a path elsewhere that changed still is."""
    old, new = "/runs/a", str(tmp_path)
    _saved_config(
        tmp_path,
        {
            "paths": {"output_dir": old},
            "callbacks": {"ckpt": {"dirpath": f"{old}/checkpoints"}},
            "trainer": {"default_root_dir": old},
            "data": {"cache_dir": "/cache/x"},
            "other": {"file": "/runs/ab/f.txt"},  # beside the old folder, not inside it
        },
    )
    now = {
        "paths": {"output_dir": new},
        "callbacks": {"ckpt": {"dirpath": f"{new}/checkpoints"}},
        "trainer": {"default_root_dir": new},
        "data": {"cache_dir": "/cache/y"},
        "other": {"file": f"{new}b/f.txt"},
    }
    with caplog.at_level(logging.INFO, logger="yolo9000.train"):
        run_folder.check_resume_config(OmegaConf.create(now), tmp_path)
    (warning,) = caplog.records
    text = warning.getMessage()
    assert "2 setting(s) differ" in text and "data.cache_dir" in text and "other.file" in text
    assert "dirpath" not in text and "default_root_dir" not in text


def test_start_weights_are_checked_before_the_data_and_a_run_folder_is_named_as_one(tmp_path: Path) -> None:
    """model.backbone_ckpt / init_ckpt naming a run's folder said "pretrained weights not found" after the data was
    parsed and the priors computed; a missing file the same. Both are said first, the folder with its last.ckpt."""
    run = _run_dir(tmp_path)
    last = _ckpt(run / "checkpoints" / "last.ckpt", 1, 6, 100)
    for key in ("backbone_ckpt", "init_ckpt"):
        with pytest.raises(FileNotFoundError, match=rf"model\.{key}={run} is a folder: .*model\.{key}={last}"):
            run_folder.check_start_weights(OmegaConf.create({"model": {key: str(run)}}))
    with pytest.raises(FileNotFoundError, match=r"model\.init_ckpt=.*nope\.ckpt: no such file"):
        run_folder.check_start_weights(OmegaConf.create({"model": {"init_ckpt": str(tmp_path / "nope.ckpt")}}))
    run_folder.check_start_weights(OmegaConf.create({"model": {"backbone_ckpt": str(last), "init_ckpt": None}}))
    run_folder.check_start_weights(OmegaConf.create({"model": {}}))


def test_eval_finds_the_run_config_of_a_symlinked_checkpoint(tmp_path: Path) -> None:
    """A checkpoint linked into a run's checkpoints/ folder is that run's (its config.yaml gives the data): the link
    was resolved to where it points, whose parent holds no config; a link with no config beside it still follows
    the target."""
    from conftest import load_script

    eval_script = load_script("eval")
    run, other = _run_dir(tmp_path), tmp_path / "elsewhere"
    (other / "checkpoints").mkdir(parents=True)
    target = _ckpt(other / "checkpoints" / "best.ckpt", 0, 1, 100)
    link = run / "checkpoints" / "best.ckpt"
    link.symlink_to(target)
    assert eval_script.run_config_file(OmegaConf.create({"ckpt_path": str(link)})) == run / "config.yaml"
    (other / "config.yaml").write_text("seed: 2\n")
    loose = tmp_path / "loose.ckpt"
    loose.symlink_to(target)
    assert eval_script.run_config_file(OmegaConf.create({"ckpt_path": str(loose)})) == other / "config.yaml"
