"""What the detection and classification DataModules share: ``max_images`` limits, DDP rank/world from the trainer,
lazy ``setup`` per split, unpadded evaluation shards (every image evaluated exactly once), and the resumable training
loader (position saved mid-epoch, per-sample augmentation seeds); inside a Hydra job, the data issues report's path."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.trainer.states import TrainerFn
from torch.utils.data import DataLoader, DistributedSampler, Sampler, SequentialSampler

from .multiscale import MultiScaleBatchSampler
from .resumable import ResumableDataLoader, trainer_position

__all__ = ["REPORT_FILE", "ShardedDataModule", "default_report_path", "plain", "worker_init"]


class _ShardSampler(Sampler[int]):
    """Unpadded, unshuffled DDP shard for evaluation: indices ``rank, rank + world, ...`` (every image is
    evaluated exactly once; ranks may get one image more or less)."""

    def __init__(self, n: int, rank: int, world_size: int) -> None:
        self.n, self.rank, self.world_size = n, rank, world_size

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.n, self.world_size))

    def __len__(self) -> int:
        return len(range(self.rank, self.n, self.world_size))


def plain(x: Any) -> Any:
    """OmegaConf containers -> Python containers (leaves other objects alone)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf
    except ImportError:  # pragma: no cover
        return x
    if isinstance(x, (DictConfig, ListConfig)):
        return OmegaConf.to_container(x, resolve=True)
    return x


# where a DataModule writes the full list of data issues; here, not in records.py, because a file-format module
# knows nothing of Hydra (tests/test_import_layers.py)
REPORT_FILE = "data_issues.txt"


def default_report_path() -> Path | None:
    """``<Hydra run dir>/data_issues.txt`` inside a Hydra job (where the full list of data issues is written),
    else None."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.output_dir) / REPORT_FILE
    except (ImportError, ValueError, AttributeError):  # pragma: no cover - Hydra missing or not configured
        pass
    return None


def worker_init(worker_id: int) -> None:
    """DataLoader worker start-up: ignore SLURM's SIGUSR1 / SIGTERM, which reach every process of a job, and a
    terminal's Ctrl-C (SIGINT), which reaches its whole process group. The main process handles them (Lightning: hpc
    checkpoint + requeue; SIGTERM and Ctrl-C: stop after the batch, saved); a worker ended by them would fail the job
    before the checkpoint is written. Then Lightning's worker seeding (``seed_everything(workers=True)``);
    augmentation does not depend on it (per-sample seeds from the batch sampler). malloc gives large freed blocks
    back (:func:`yolo9000.speed.worker_malloc`: a worker's heap grew by a gigabyte over an ImageNet-sized epoch)."""
    import signal

    from lightning_fabric.utilities.seed import pl_worker_init_function

    from yolo9000.speed import worker_malloc

    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, signal.SIG_IGN)
    worker_malloc()
    pl_worker_init_function(worker_id)


class ShardedDataModule(pl.LightningDataModule):
    """What the detection and classification DataModules share: ``max_images`` limits, DDP rank/world from the
    trainer, lazy ``setup`` per split, and unpadded evaluation shards (every image evaluated exactly once).

    Subclasses set ``datasets``, ``max_images``, ``num_workers``, ``pin_memory``, ``persistent_workers``,
    ``eval_batch_size`` and implement ``collate_fn()`` and ``train_dataloader()``.
    """

    datasets: dict[str, Any]
    _epoch = 0  # position of the next training batch: epoch ...
    _start_batch = 0  # ... and batch (restored by load_state_dict, applied when the sampler is built)
    _train_batch_sampler: MultiScaleBatchSampler | None = None
    _stats_before: dict[str, dict[str, int]] = {}  # noqa: RUF012 - replaced, never mutated: earlier processes' counts
    test_split = "test"  # the split trainer.test evaluates (eval.py split=val: "val"), sharded once the ranks exist

    def collate_fn(self, train: bool = False) -> Any:
        """The loaders' collate function (``train``: the training loader's)."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------- resumable training
    # Training batches come from a MultiScaleBatchSampler (shuffle, input size and every sample's augmentation
    # seed are pure functions of seed, epoch and batch) wrapped in a ResumableDataLoader. The position of the next
    # batch, (epoch, batch), is saved with the DataModule: Lightning restores the DataModule before it first
    # builds the training loader (configure_optimizers already asks for the number of steps), so the sampler
    # starts where an interrupted run stopped. The loader's own state holds the same position for Lightning's
    # resumability check.
    def _train_batch_sampler_for(
        self, ds: Any, sizes: Sequence[int], index_sampler: Sampler[int] | None = None, **kwargs: Any
    ) -> MultiScaleBatchSampler:
        """A batch sampler over ``index_sampler`` (default: a DDP-sharded shuffle of ``ds``) (``kwargs``:
        :class:`MultiScaleBatchSampler`'s), starting at the restored position."""
        world, rank = self._dist()
        base = index_sampler or DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=True, seed=self.seed, drop_last=False
        )
        sampler = MultiScaleBatchSampler(base, self.batch_size, self.drop_last, sizes, aug_seed=self.seed, **kwargs)
        sampler.start_at(self._epoch, self._start_batch)
        self._start_batch = 0
        return sampler

    def _resumable_train_loader(self, batch_sampler: MultiScaleBatchSampler) -> DataLoader:
        self._train_batch_sampler = batch_sampler
        return ResumableDataLoader(
            self._dataset("train"),
            batch_sampler=batch_sampler,
            position=self._train_position,
            **self._loader_kwargs(train=True),
        )

    def _train_position(self) -> tuple[int, int]:
        """(epoch, batch) of the next training batch (what a checkpoint written now resumes from)."""
        return trainer_position(getattr(self, "trainer", None), self._epoch)

    def split_stats(self, split: str) -> dict[str, int]:
        """The split dataset's counters (``stats()``: samples loaded, boxes dropped, ...) over the whole run: this
        process's plus those of the earlier processes of a resumed run (saved with the DataModule). Exact with the
        loading in the main process; with loader workers, the batches they had loaded ahead of the last save
        before a kill are counted again when the resumed run loads them (at most workers x prefetch batches)."""
        before = self._stats_before.get(split, {})
        return {k: int(v) + int(before.get(k, 0)) for k, v in self.datasets[split].stats().items()}

    def state_dict(self) -> dict[str, Any]:
        epoch, batch = self._train_position()
        stats = {s: self.split_stats(s) for s, d in self.datasets.items() if hasattr(d, "stats")}
        # the processes that trained it: the shards and the schedule's steps depend on it (check_resume_world)
        return {"epoch": epoch, "batch": batch, "stats": stats, "world_size": self._dist()[0]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # the counters: a checkpoint restored to fit (a resume) holds the totals that precede this process's counts;
        # one restored to test (trainer.test(ckpt_path=best), a test-only run) changes nothing: this process's
        # counts and the fit restore's offset stand
        trainer = getattr(self, "trainer", None)
        if trainer is None or trainer.state.fn in (None, TrainerFn.FITTING):
            self._stats_before = {str(s): dict(v) for s, v in (state_dict.get("stats") or {}).items()}
        self._epoch = int(state_dict.get("epoch", 0))
        self._start_batch = int(state_dict.get("batch", 0))
        if self._train_batch_sampler is not None:
            self._train_batch_sampler.start_at(self._epoch, self._start_batch)
            self._start_batch = 0

    def _limit(self, split: str) -> int | None:
        if self.max_images is None:
            return None
        if isinstance(self.max_images, Mapping):
            v = self.max_images.get(split)
            return int(v) if v is not None else None
        return int(self.max_images)

    def _dist(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def counts_scope(self) -> dict[str, str]:
        """What the load-time counts of :meth:`data_report` cover: under DDP every process counts what it loads
        (its shard of the images) and the report is rank 0's; ``{}`` in a single process."""
        world = self._dist()[0]
        if world <= 1:
            return {}
        return {
            "counts_scope": f"rank 0 of {world} processes: samples_loaded, boxes dropped in augmentation and "
            "problems found at load time count its shard of the images only"
        }

    def _rank_zero(self) -> bool:
        return self._dist()[1] == 0

    def _dataset(self, split: str) -> Any:
        stages = {"train": "fit", "val": "validate", "test": "test"}
        if split not in stages:
            raise ValueError(f"split={split!r}: one of {', '.join(stages)}")
        if split not in self.datasets:
            self.setup(stages[split])
        if split not in self.datasets:
            raise ValueError(f"data.{split} is not configured")
        return self.datasets[split]

    def _loader_kwargs(self, train: bool = False) -> dict[str, Any]:
        return {
            "worker_init_fn": worker_init if self.num_workers > 0 else None,
            "num_workers": self.num_workers,
            "pin_memory": self.pin_memory and torch.cuda.is_available(),
            "persistent_workers": self.persistent_workers and self.num_workers > 0,
            "collate_fn": self.collate_fn(train),
        }

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self._dataset(split)
        world, rank = self._dist()
        sampler = _ShardSampler(len(ds), rank, world) if world > 1 else SequentialSampler(ds)
        return DataLoader(ds, batch_size=self.eval_batch_size, sampler=sampler, **self._loader_kwargs())

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader(self.test_split)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")
