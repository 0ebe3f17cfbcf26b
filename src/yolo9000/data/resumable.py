"""A training DataLoader that Lightning can checkpoint and restore in the middle of an epoch.

The state is the position of the next batch, ``(epoch, batch)``, read from the trainer's own progress counters
(not from the loader's iterator, which prefetches ahead of training); restoring it makes the batch sampler skip
the batches that were already trained on, without loading them.

Lightning saves ``state_dict()`` of a stateful training loader in the checkpoint (``loops.fit_loop.state_dict
.combined_loader``) and only then treats the loader as resumable. It would call ``load_state_dict()`` before the
first iterator, but when ``configure_optimizers`` asks for ``trainer.estimated_stepping_batches`` the loader is
built before the loop states are restored and that call never comes; the DataModule therefore saves the same
position in its own state (restored before the loader is built) and starts the sampler there.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch.utils.data import DataLoader

from .multiscale import MultiScaleBatchSampler

__all__ = ["ResumableDataLoader", "trainer_position"]


def trainer_position(trainer: Any, fallback_epoch: int = 0) -> tuple[int, int]:
    """``(epoch, batch)`` of the next training batch of ``trainer``.

    Inside an epoch (started, not completed): the batches processed so far, or ``(epoch + 1, 0)`` once they are
    all done (checkpoints written at validation or epoch end). Between epochs and after ``fit``: the next
    epoch's start.
    """
    if trainer is None:
        return fallback_epoch, 0
    epochs = trainer.fit_loop.epoch_progress.current
    completed = int(epochs.completed)
    if int(epochs.started) <= completed:
        return completed, 0
    done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
    if done >= trainer.num_training_batches:
        return completed + 1, 0
    return completed, done


class ResumableDataLoader(DataLoader):
    """``DataLoader`` over a :class:`MultiScaleBatchSampler` with Lightning's ``state_dict`` /
    ``load_state_dict`` interface.

    Args:
        *args, **kwargs: as ``DataLoader`` (``batch_sampler`` must be a :class:`MultiScaleBatchSampler`).
        position: callable returning ``(epoch, batch)`` of the next batch to train on (see
            :func:`trainer_position`).
    """

    def __init__(self, *args: Any, position: Callable[[], tuple[int, int]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not isinstance(self.batch_sampler, MultiScaleBatchSampler):
            raise TypeError(f"ResumableDataLoader needs a MultiScaleBatchSampler, got {type(self.batch_sampler)}")
        self._position = position

    def state_dict(self) -> dict[str, int]:
        epoch, batch = self._position()
        return {"epoch": int(epoch), "batch": int(batch)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        sampler = self.batch_sampler
        assert isinstance(sampler, MultiScaleBatchSampler)
        sampler.start_at(int(state_dict["epoch"]), int(state_dict.get("batch", 0)))
