"""bench.py's training rows (the Lightning step with bare steps paired, nothing else) with the pieces of a batch's
making timed: where the Lightning step's time beyond the bare loop's goes.

    PROJECT_ROOT=$PWD .venv/bin/python docs/results/bench_cpu_s41/bench_phases.py [bench.py overrides]
    SRC=/path/to/other/checkout/src ...   # the same for another commit (A/B in alternating processes)

Prints bench.py's table, then the median milliseconds per batch of: the dataset's samples (``items``), the collate,
Lightning's fetch of a batch (``fetcher_next``: both, and its own work), the truths' assignment on the host
(``before_transfer``), the uint8 -> float conversion (``after_transfer``), the network's forward inside the training
step and outside it (the paired bare steps), the training step, the region loss's forward, ``self.log`` and the
non-finite gradient check. The wrappers cost a few microseconds a call.
"""

from __future__ import annotations

import atexit
import os
import runpy
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

SRC = os.environ.get("SRC", os.path.join(os.path.dirname(__file__), "..", "..", "..", "src"))
sys.path.insert(0, SRC)

import pytorch_lightning as pl  # noqa: E402
from pytorch_lightning.loops import fetchers  # noqa: E402

from yolo9000.data import dataset as D  # noqa: E402
from yolo9000.loss import RegionLoss  # noqa: E402
from yolo9000.models.yolov2 import YOLOv2  # noqa: E402
from yolo9000.modules.base import DarknetModule  # noqa: E402
from yolo9000.modules.detector import DetectorModule  # noqa: E402

times: dict[str, list[float]] = {}
in_step = [False]


def timed(cls: type, name: str, key: str | Callable[[], str]) -> None:
    """Wrap ``cls.name`` so each call's seconds are appended to ``times[key]`` (``key()`` when callable)."""
    orig = getattr(cls, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        out = orig(*args, **kwargs)
        times.setdefault(key() if callable(key) else key, []).append(time.perf_counter() - t0)
        return out

    setattr(cls, name, wrapper)


def items(self: D.DetectionDataset, indices: list[Any]) -> list[Any]:
    """The DataLoader's batch of samples (what its fetcher does without ``__getitems__``), timed."""
    t0 = time.perf_counter()
    out = [self[i] for i in indices]
    times.setdefault("items", []).append(time.perf_counter() - t0)
    return out


def training_step(self: DetectorModule, *args: Any, **kwargs: Any) -> Any:
    in_step[0] = True
    try:
        return step(self, *args, **kwargs)
    finally:
        in_step[0] = False


D.DetectionDataset.__getitems__ = items  # type: ignore[attr-defined]
timed(D.DetectionCollate, "__call__", "collate")
timed(fetchers._PrefetchDataFetcher, "__next__", "fetcher_next")
timed(DetectorModule, "on_before_batch_transfer", "before_transfer")
timed(DarknetModule, "on_after_batch_transfer", "after_transfer")
timed(DarknetModule, "on_before_optimizer_step", "nonfinite_check")
timed(YOLOv2, "forward", lambda: "net_forward_" + ("lightning" if in_step[0] else "bare"))
timed(RegionLoss, "forward", "loss_forward")
timed(pl.LightningModule, "log", "log")
timed(DetectorModule, "training_step", "training_step")
step = DetectorModule.training_step
DetectorModule.training_step = training_step  # type: ignore[method-assign]


@atexit.register
def report() -> None:
    for key, values in times.items():
        kept = values[3:] or values  # the first calls: warm-up
        print(f"{key:16s} median ms {1e3 * statistics.median(kept):8.3f} over {len(values)} calls")


sys.argv = [
    "bench.py",
    "bench.data_loader=false",
    "bench.infer_batches=[]",
    "bench.postprocess=false",
    "bench.loss_protocol=null",
    "bench.worst_case_classes=[]",
    f"hydra.run.dir={os.environ.get('TMPDIR', '/tmp')}/bench_phases_{os.getpid()}",
    *sys.argv[1:],
]
runpy.run_path(os.path.join(SRC, "bench.py"), run_name="__main__")
