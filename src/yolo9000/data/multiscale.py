"""darknet multi-scale training: a new square input size every ``period`` batches (darknet's ``random=1``; with it
off, every batch at one size, a side or (height, width): darknet's ``random=0`` trains at its ``[net]`` width and
height, rectangular or not).

The size of batch ``k`` (counted across epochs) is a pure function of ``(seed, k // period)``, so it is
the same on every DDP rank and independent of the number of DataLoader workers: the batch sampler runs
in the main process and hands ``(index, size, sample_seed)`` triples to the dataset. ``sample_seed`` seeds
that sample's augmentation (a pure function of the seed, the epoch and the image index), so augmentation does
not depend on which worker loads the image nor on where a run was interrupted and resumed.

The sampler can start in the middle of an epoch (:meth:`MultiScaleBatchSampler.start_at`): an exactly resumed
run skips the batches the interrupted run had already trained on without loading them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

from yolo9000.models import STRIDE, check_flags

from .resize import Size, normal_size

__all__ = ["MultiScaleBatchSampler", "resolve_sizes", "sample_seed", "size_for_batch"]


def resolve_sizes(
    sizes: Sequence[int] | None = None, min_size: int = 320, max_size: int = 608, step: int = STRIDE
) -> list[int]:
    """Explicit ``sizes``, else ``range(min_size, max_size + 1, step)``; all must be multiples of the stride."""
    out = [int(s) for s in sizes] if sizes else list(range(int(min_size), int(max_size) + 1, int(step)))
    if not out:
        raise ValueError(f"empty multi-scale size set (sizes={sizes}, min={min_size}, max={max_size}, step={step})")
    bad = [s for s in out if s <= 0 or s % STRIDE]
    if bad:
        raise ValueError(f"multi-scale sizes must be positive multiples of {STRIDE} (the network stride), got {bad}")
    return out


def size_for_batch(seed: int, k: int, sizes: Sequence[int], period: int = 10) -> int:
    """Input size of global batch ``k``: ``sizes[hash(seed, k // period) % len(sizes)]`` (pure, stable)."""
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    digest = hashlib.blake2b(f"{int(seed)}:{int(k) // int(period)}".encode(), digest_size=8).digest()
    return int(sizes[int.from_bytes(digest, "little") % len(sizes)])


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """Augmentation seed of image ``index`` in ``epoch``: a stable 32-bit hash of ``(seed, epoch, index)``."""
    digest = hashlib.blake2b(f"aug:{int(seed)}:{int(epoch)}:{int(index)}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")


class _EpochRelay(Sampler[int]):
    """The index sampler seen as ``batch_sampler.sampler``: Lightning calls ``set_epoch`` on it at every
    epoch start, which sets the epoch of the owning :class:`MultiScaleBatchSampler` (and of the sampler)."""

    def __init__(self, owner: MultiScaleBatchSampler, sampler: Sampler[int]) -> None:
        self.owner = owner
        self.base = sampler

    def __iter__(self) -> Iterator[int]:
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class MultiScaleBatchSampler(Sampler[list[tuple[int, Size, int]]]):
    """Batches of ``(index, size, sample_seed)`` triples; the size changes every ``period`` batches (darknet: 10).

    ``size = size_for_batch(seed, epoch * len(self) + i, sizes, period)`` for batch ``i`` of ``epoch``;
    with ``final_size_after`` set, batches with global index >= it use ``final_size`` (darknet trains the
    last 200 iterations at 608). Disabled: every batch uses ``fixed_size``. ``sample_seed`` is
    :func:`sample_seed` ``(aug_seed, epoch, index)``.

    Args:
        sampler: index sampler (e.g. a ``DistributedSampler``; its ``set_epoch`` is called by ours).
        batch_size, drop_last: as ``torch.utils.data.BatchSampler``.
        sizes: candidate input sizes.
        period: batches per size.
        seed: seed of the size sequence.
        enabled: multi-scale on / off.
        fixed_size: size of every batch when disabled (required then): a side, or (height, width).
        final_size_after: global batch index from which ``final_size`` is used (None: never).
        final_size: size of the final phase (default: max(sizes)).
        aug_seed: seed of the per-sample augmentation seeds (default: ``seed``).
    """

    def __init__(
        self,
        sampler: Sampler[int],
        batch_size: int,
        drop_last: bool,
        sizes: Sequence[int],
        period: int = 10,
        seed: int = 0,
        enabled: bool = True,
        fixed_size: Size | None = None,
        final_size_after: int | None = None,
        final_size: int | None = None,
        aug_seed: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        check_flags("data.multiscale", enabled=enabled)
        if not enabled and fixed_size is None:
            raise ValueError("fixed_size is required when multi-scale is disabled")
        self.sampler = _EpochRelay(self, sampler)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.sizes = [int(s) for s in sizes]
        self.period = int(period)
        self.seed = int(seed)
        self.enabled = bool(enabled)
        self.fixed_size = normal_size(fixed_size) if fixed_size is not None else None
        self.final_size_after = final_size_after
        self.final_size = int(final_size) if final_size is not None else max(self.sizes)
        self.aug_seed = int(aug_seed) if aug_seed is not None else self.seed
        self.epoch = 0
        self._skip = 0  # batches of ``self.epoch`` to skip (resuming in the middle of an epoch)

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (global batch numbering) and forward it to the index sampler. Another epoch than the
        current one cancels a pending :meth:`start_at` skip."""
        if int(epoch) != self.epoch:
            self._skip = 0
        self.epoch = int(epoch)
        base_set_epoch = getattr(self.sampler.base, "set_epoch", None)
        if callable(base_set_epoch):
            base_set_epoch(self.epoch)

    def start_at(self, epoch: int, batch: int) -> None:
        """The next iteration yields the batches ``batch, batch + 1, ...`` of ``epoch`` (the first ``batch`` are
        skipped without touching the data); later epochs are whole again."""
        self._skip = 0
        self.set_epoch(epoch)
        self._skip = max(0, int(batch))

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(int(state["epoch"]))

    def size_at(self, k: int) -> Size:
        """Input size of global batch ``k`` (a side; disabled: ``fixed_size``, which may be (height, width))."""
        if not self.enabled:
            return self.fixed_size  # type: ignore[return-value]
        if self.final_size_after is not None and k >= self.final_size_after:
            return self.final_size
        return size_for_batch(self.seed, k, self.sizes, self.period)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def _batch(self, k: int, indices: list[int]) -> list[tuple[int, Size, int]]:
        size = self.size_at(k)
        return [(j, size, sample_seed(self.aug_seed, self.epoch, j)) for j in indices]

    def __iter__(self) -> Iterator[list[tuple[int, Size, int]]]:
        k0 = self.epoch * len(self)
        skip, self._skip = self._skip, 0  # a start_at() position applies to one iteration
        indices = [int(i) for i in self.sampler]
        bs = self.batch_size
        for i in range(skip, len(self)):
            batch = indices[i * bs : (i + 1) * bs]
            if len(batch) < bs and self.drop_last:
                break
            yield self._batch(k0 + i, batch)
