"""Wall-clock timing shared by the speed numbers (``src/bench.py``, :mod:`yolo9000.tradeoff`): calls timed after
untimed warm-up calls, synchronised on CUDA, and the name of the device they ran on. Benchmarks print; tests never
assert on a time."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

__all__ = ["device_name", "sync", "time_calls", "timeit"]


def sync(device: torch.device | str) -> None:
    """Wait for the device's queued work (CUDA kernels run asynchronously; a no-op elsewhere)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any],
    steps: int,
    warmup: int,
    device: torch.device | str,
    max_seconds: float | None = None,
) -> tuple[float, int]:
    """Seconds per call of ``fn`` and the number of calls timed: ``warmup`` untimed calls, then ``steps`` timed
    ones, or fewer (at least one) once ``max_seconds`` have passed. The device is synchronised before the clock
    starts and after the last call, so asynchronous work is counted."""
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    n = 0
    while n < max(int(steps), 1):
        fn()
        n += 1
        if max_seconds is not None and time.perf_counter() - t0 >= max_seconds:
            break
    sync(device)
    return (time.perf_counter() - t0) / n, n


def timeit(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device | str) -> float:
    """Seconds per call of ``fn`` (mean over ``steps`` calls after ``warmup`` untimed ones)."""
    return time_calls(fn, steps, warmup, device)[0]


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def device_name(device: torch.device | str) -> str:
    """What a timing ran on: the GPU's name (``cuda``), else ``cpu`` and the processor model where known. The
    thread count is reported apart (``torch.get_num_threads()``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        model = _cpu_model()
        return f"cpu ({model})" if model else "cpu"
    return str(device)
