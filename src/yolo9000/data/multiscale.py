"""darknet multi-scale training: a new square input size every ``period`` batches.

The size of batch ``k`` (counted across epochs) is a pure function of ``(seed, k // period)``, so it is
the same on every DDP rank and independent of the number of DataLoader workers: the batch sampler runs
in the main process and hands ``(index, size)`` pairs to the dataset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from torch.utils.data import Sampler

__all__ = ["MultiScaleBatchSampler", "resolve_sizes", "size_for_batch"]


def resolve_sizes(
    sizes: Sequence[int] | None = None, min_size: int = 320, max_size: int = 608, step: int = 32
) -> list[int]:
    """Explicit ``sizes``, else ``range(min_size, max_size + 1, step)``; all must be multiples of 32."""
    out = [int(s) for s in sizes] if sizes else list(range(int(min_size), int(max_size) + 1, int(step)))
    if not out:
        raise ValueError(f"empty multi-scale size set (sizes={sizes}, min={min_size}, max={max_size}, step={step})")
    bad = [s for s in out if s <= 0 or s % 32]
    if bad:
        raise ValueError(f"multi-scale sizes must be positive multiples of 32 (the network stride), got {bad}")
    return out


def size_for_batch(seed: int, k: int, sizes: Sequence[int], period: int = 10) -> int:
    """Input size of global batch ``k``: ``sizes[hash(seed, k // period) % len(sizes)]`` (pure, stable)."""
    if period < 1:
        raise ValueError(f"period must be >= 1, got {period}")
    digest = hashlib.blake2b(f"{int(seed)}:{int(k) // int(period)}".encode(), digest_size=8).digest()
    return int(sizes[int.from_bytes(digest, "little") % len(sizes)])


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


class MultiScaleBatchSampler(Sampler[list[tuple[int, int]]]):
    """Batches of ``(index, size)`` pairs; the size changes every ``period`` batches (darknet: 10).

    ``size = size_for_batch(seed, epoch * len(self) + i, sizes, period)`` for batch ``i`` of ``epoch``;
    with ``final_size_after`` set, batches with global index >= it use ``final_size`` (darknet trains the
    last 200 iterations at 608). Disabled: every batch uses ``fixed_size``.

    Args:
        sampler: index sampler (e.g. a ``DistributedSampler``; its ``set_epoch`` is called by ours).
        batch_size, drop_last: as ``torch.utils.data.BatchSampler``.
        sizes: candidate input sizes.
        period: batches per size.
        seed: seed of the size sequence.
        enabled: multi-scale on / off.
        fixed_size: size of every batch when disabled (required then).
        final_size_after: global batch index from which ``final_size`` is used (None: never).
        final_size: size of the final phase (default: max(sizes)).
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
        fixed_size: int | None = None,
        final_size_after: int | None = None,
        final_size: int | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not enabled and fixed_size is None:
            raise ValueError("fixed_size is required when multi-scale is disabled")
        self.sampler = _EpochRelay(self, sampler)
        self.batch_size = int(batch_size)
        self.drop_last = bool(drop_last)
        self.sizes = [int(s) for s in sizes]
        self.period = int(period)
        self.seed = int(seed)
        self.enabled = bool(enabled)
        self.fixed_size = int(fixed_size) if fixed_size is not None else None
        self.final_size_after = final_size_after
        self.final_size = int(final_size) if final_size is not None else max(self.sizes)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch (global batch numbering) and forward it to the index sampler."""
        self.epoch = int(epoch)
        base_set_epoch = getattr(self.sampler.base, "set_epoch", None)
        if callable(base_set_epoch):
            base_set_epoch(self.epoch)

    def state_dict(self) -> dict[str, Any]:
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.set_epoch(int(state["epoch"]))

    def size_at(self, k: int) -> int:
        """Input size of global batch ``k``."""
        if not self.enabled:
            return self.fixed_size  # type: ignore[return-value]
        if self.final_size_after is not None and k >= self.final_size_after:
            return self.final_size
        return size_for_batch(self.seed, k, self.sizes, self.period)

    def __len__(self) -> int:
        n = len(self.sampler)
        return n // self.batch_size if self.drop_last else (n + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k0 = self.epoch * len(self)
        i, batch = 0, []
        for idx in self.sampler:
            batch.append(int(idx))
            if len(batch) == self.batch_size:
                size = self.size_at(k0 + i)
                yield [(j, size) for j in batch]
                i, batch = i + 1, []
        if batch and not self.drop_last:
            size = self.size_at(k0 + i)
            yield [(j, size) for j in batch]
