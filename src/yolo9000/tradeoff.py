"""Speed / accuracy trade-off of one detector over input sizes (paper Table 3 and Figure 4).

``python src/eval.py ckpt_path=<ckpt> sizes=[288,352,416,480,544]`` (or ``--config-name eval_tradeoff``, the
paper's sizes) evaluates the checkpoint at every size and writes, into the run folder:

* ``tradeoff.csv`` / ``tradeoff.md``: per size mAP@0.5 (COCO-style 101-point, the ``map_50`` of metrics.json),
  VOC2007 11-point AP@0.5, mAP@[.5:.95], end-to-end images/s and ms per image at each batch size of
  ``speed_batches``, forward GFLOPs, the device, the precision timed (``dtype``) and the torch thread count;
* ``tradeoff.png``: mAP against images/s, the paper's Table 3 (VOC 2007 test, Titan X) beside ours when the
  data's classes are VOC's 20;
* ``size_<S>/``: metrics.json, per_class.md, pr_curves.png (and predictions/) of each size, as a plain
  ``eval.py data.img_size=<S>`` writes them.

Accuracy at a size is exactly what a plain eval at that size reports: the data module is built anew with
``data.img_size=<S>`` and the test runs through the same Trainer. Speed is measured apart, on the first
preprocessed images of the split at that size, by the checkpoint's :class:`~yolo9000.Detector` (see :data:`TIMED`:
the network as an application runs it, batch norms folded; the same detections up to float rounding); the network
is whatever the checkpoint holds (trained here or converted from darknet ``.weights``).
"""

from __future__ import annotations

import csv
import gc
import json
import logging
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo9000.api import Detector
from yolo9000.data.resize import Size, check_input_size, input_hw, normal_size, size_text
from yolo9000.models import STRIDE
from yolo9000.results import checkpoint_label
from yolo9000.speed import (
    device_name,
    dtype_name,
    inference_compile_options,
    inference_dtype,
    is_compiled,
    machine_busy,
    time_calls,
)

log = logging.getLogger("yolo9000.tradeoff")

__all__ = [
    "PAPER_TABLE3",
    "TIMED",
    "VOC_CLASSES",
    "EvalImages",
    "SweepSettings",
    "collect_images",
    "format_markdown",
    "is_voc",
    "plot_series",
    "plot_tradeoff",
    "run_sweep",
    "time_end_to_end",
    "write_csv",
]

# Paper Table 3 (YOLOv2 on VOC 2007 test, Titan X): (input size, mAP %, FPS)
PAPER_TABLE3: list[tuple[int, float, float]] = [
    (288, 69.0, 91.0),
    (352, 73.7, 81.0),
    (416, 76.8, 67.0),
    (480, 77.8, 59.0),
    (544, 78.6, 40.0),
]
PAPER_LABEL = "paper (Titan X)"
VOC_CLASSES = [
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow", "diningtable", "dog",
    "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
]  # fmt: skip
TIMED = (
    "end to end on preprocessed images of the split (already decoded and resized), as yolo9000.Detector runs them "
    "(batch norms folded into the convs, NHWC on a CPU; there, in float32 and eager, conv + leaky fused at batches "
    "of 2 and more): "
    "host-to-device copy of the uint8 batch, conversion to float, "
    "forward pass, decode, threshold and NMS with boxes mapped back to original image pixels, synchronised; warm-up "
    "batches excluded, image reading and resizing not included"
)


def is_voc(class_names: Sequence[str]) -> bool:
    """Whether a class list is PASCAL VOC's 20 classes (in any order, any case): the paper's Table 3 applies."""
    return len(class_names) == len(VOC_CLASSES) and sorted(str(c).lower() for c in class_names) == sorted(VOC_CLASSES)


# --------------------------------------------------------------------------------------------------- timing
@dataclass
class EvalImages:
    """Preprocessed images of one input size and what maps their boxes back: ``images`` (N, 3, S, S),
    ``transforms`` (N, 4), ``orig_sizes`` (N, 2), on the CPU."""

    images: torch.Tensor
    transforms: torch.Tensor
    orig_sizes: torch.Tensor

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def batches(self, batch_size: int) -> list[EvalImages]:
        """Batches of ``batch_size`` images taken in turn from these (cycling when fewer are held), enough that
        every image appears: ``ceil(N / batch_size)`` of them."""
        n = len(self)
        out = []
        for j in range(max(1, math.ceil(n / batch_size))):
            idx = torch.tensor([(j * batch_size + i) % n for i in range(batch_size)])
            out.append(EvalImages(self.images[idx], self.transforms[idx], self.orig_sizes[idx]))
        return out


def collect_images(loader: Any, count: int) -> EvalImages:
    """The first ``count`` images of an eval DataLoader's dataset (all of them when it holds fewer), read and
    collated in this process as the loader would (its workers, whose iterator may persist, are left alone)."""
    dataset, collate = loader.dataset, loader.collate_fn
    samples = [dataset[i] for i in range(min(int(count), len(dataset)))]
    batch = collate(samples) if samples else None
    if batch is None or not len(batch["images"]):
        raise ValueError("no image to time: the evaluation split is empty or unreadable")
    return EvalImages(batch["images"], batch["transforms"], batch["orig_sizes"])


COMPILED_WARMUP = 3  # untimed batches before a compiled network is timed: its compile, CUDA graphs' recording


@torch.inference_mode()
def time_end_to_end(
    detector: Detector,
    images: EvalImages,
    batch_size: int,
    warmup: int = 2,
    iters: int = 20,
    max_seconds: float | None = 3.0,
) -> dict[str, float]:
    """Images/s and ms per image of ``detector``'s inference (:data:`TIMED`) at ``batch_size``: its
    :meth:`~yolo9000.Detector.detect_batch` on the preprocessed ``images``, on its device.

    Args:
        detector: the checkpoint's :class:`~yolo9000.Detector` (its device, dtype and network).
        images: the preprocessed images, cycled through in batches of ``batch_size``.
        warmup: untimed batches first; at least :data:`COMPILED_WARMUP` when the detector's network is compiled
            (the compile, CUDA graphs' recording, untimed).
        iters, max_seconds: timed batches: ``iters``, or fewer (at least one) once ``max_seconds`` have passed.

    Returns:
        ``img_per_s``, ``ms_per_img`` and ``batches`` (how many batches were timed).
    """
    device = detector.device
    batches = images.batches(batch_size)
    if device.type == "cuda":  # as predict's reading: pinned host memory, copied asynchronously
        batches = [EvalImages(b.images.pin_memory(), b.transforms, b.orig_sizes) for b in batches]
    turn = [0]

    def step() -> None:
        b = batches[turn[0] % len(batches)]
        turn[0] += 1
        detector.detect_batch(b.images, b.transforms, b.orig_sizes)

    compiled = detector.compile_options is not None or is_compiled(detector.network)
    warmup = max(int(warmup), COMPILED_WARMUP) if compiled else int(warmup)
    sec, n = time_calls(step, iters, warmup, device, max_seconds)
    return {"img_per_s": batch_size / sec, "ms_per_img": 1000.0 * sec / batch_size, "batches": float(n)}


# ---------------------------------------------------------------------------------------------------- sweep
@dataclass
class SweepSettings:
    """What :func:`run_sweep` does (eval.yaml's keys of the same names).

    Args:
        sizes: input sizes: sides, or (height, width) of a rectangle (multiples of 32); evaluated in increasing
            order of area, duplicates once.
        speed_batches: batch sizes timed at every size.
        speed_warmup: untimed batches before each timing.
        speed_iters, speed_seconds: timed batches at most, and the time after which timing stops early.
        speed_compile: time the network compiled (:func:`~yolo9000.speed.inference_compile_options`: True, a
            ``torch.compile`` mode such as ``reduce-overhead``, or its keywords; one static graph per size and batch,
            compiled in the untimed warm-up): the Detector's ``compile``; False: eager. The mAPs are the evaluated
            module's either way (eager, its batch norms unfolded).
        draw, score_thresh: prediction pictures per size (``size_<S>/predictions/``), as eval.py's.
        split: the evaluated split (``test`` | ``val``), for the reports.
    """

    sizes: list[Size]
    speed_batches: list[int] = field(default_factory=lambda: [1, 32])
    speed_warmup: int = 2
    speed_iters: int = 20
    speed_seconds: float | None = 3.0
    speed_compile: bool | str | dict[str, Any] | None = False
    draw: int = 0
    score_thresh: float = 0.3
    split: str = "test"

    def __post_init__(self) -> None:
        try:
            sizes = [normal_size(check_input_size(s)) for s in self.sizes]
        except (TypeError, ValueError):
            sizes = []
        if not sizes:
            raise ValueError(
                f"sizes must be positive multiples of {STRIDE} (or [height, width] of them), got {list(self.sizes)}"
            )
        self.sizes = sorted(dict.fromkeys(sizes), key=lambda s: (math.prod(input_hw(s)), input_hw(s)))
        try:  # whole numbers >= 1 only: "abc", 2.5 or True are no batch size
            given = list(self.speed_batches)
            batches = [int(b) for b in given if not isinstance(b, bool) and int(b) == b]
        except (TypeError, ValueError):
            given, batches = [], []
        if not batches or len(batches) != len(given) or min(batches) < 1:
            raise ValueError(f"speed_batches must be batch sizes >= 1, got {self.speed_batches!r}")
        self.speed_batches = list(dict.fromkeys(batches))
        self.compile_options = inference_compile_options(self.speed_compile)  # None: eager; a bad value raises here


def columns(batches: Sequence[int]) -> list[str]:
    """The columns of tradeoff.csv (mAPs as fractions, as metrics.json)."""
    speed = [c for b in batches for c in (f"img_per_s_bs{b}", f"ms_per_img_bs{b}")]
    return ["size", "map_50", "voc07_map_50", "map", *speed, "gflops", "device", "dtype", "threads", "load_avg_1min"]


def _check_sizes(module: Any, sizes: Sequence[Size]) -> None:
    """A fully connected head (``model.net.head=fc``) takes one input size only."""
    net = module.model
    if getattr(net, "head_type", "conv") == "fc":
        fixed = int(net.fc_grid) * STRIDE
        if any(input_hw(s) != (fixed, fixed) for s in sizes):
            raise ValueError(f"the checkpoint's fc head takes {fixed}x{fixed} inputs only; sizes={list(sizes)}")


def _evaluate_size(
    module: Any,
    size: Size,
    make_datamodule: Callable[[Size], Any],
    make_trainer: Callable[[list[Any]], Any],
    settings: SweepSettings,
    out_dir: Path,
    extra: dict[str, Any],
) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """One size of :func:`run_sweep`: the test (``size_<S>/``, ``size_<H>x<W>/`` for a rectangle) and the timings.
    Returns the row, the number of images evaluated and the data module's report."""
    shown = size_text(size)  # 416, or 352x608 (height x width)
    from yolo9000.callbacks.predictions import PredictionImages
    from yolo9000.results import model_stats, write_metrics

    datamodule = make_datamodule(size)
    datamodule.setup("test")
    loader = datamodule.val_dataloader() if settings.split == "val" else datamodule.test_dataloader()
    callbacks = (
        [PredictionImages(settings.draw, settings.score_thresh, dirname=f"size_{shown}/predictions")]
        if settings.draw
        else []
    )
    trainer = make_trainer(callbacks)
    if trainer.world_size > 1:  # refused before any process starts
        raise ValueError(
            f"sizes=[...] times the checkpoint in one process; the trainer runs {trainer.world_size} "
            "(trainer.devices / num_nodes): evaluate the trade-off with trainer=default (CPU) or trainer=gpu"
        )
    try:  # the timing reproduces the test's precision: refused before the test rather than after it
        dtype = inference_dtype(trainer.precision)
    except ValueError as e:
        raise ValueError(f"sizes=[...]: trainer.precision: {e}") from None
    module.test_prefix = settings.split  # val/map_50 ... in the console table for split=val, as a plain eval
    trainer.test(module, dataloaders=loader)
    res = module.test_results
    img_size = size if isinstance(size, int) else list(size)
    write_metrics(
        out_dir / f"size_{shown}", res, module.class_names, {**extra, "split": settings.split, "img_size": img_size}
    )
    # timed as an application runs it: the Detector's network (batch norms folded, NHWC on a CPU, speed_compile)
    detector = Detector(module, device=trainer.strategy.root_device, dtype=dtype, compile=settings.speed_compile)
    device = detector.device
    images = collect_images(loader, max(settings.speed_batches))
    row: dict[str, Any] = {
        "size": size if isinstance(size, int) else shown,
        "map_50": float(res["map_50"]),
        "voc07_map_50": float(res.get("voc07_map_50", float("nan"))),
        "map": float(res["map"]),
    }
    for b in settings.speed_batches:
        t = time_end_to_end(detector, images, b, settings.speed_warmup, settings.speed_iters, settings.speed_seconds)
        row[f"img_per_s_bs{b}"], row[f"ms_per_img_bs{b}"] = t["img_per_s"], t["ms_per_img"]
        log.info(
            "size %s batch %d: %.2f img/s, %.2f ms/img (%d batches timed)",
            shown, b, t["img_per_s"], t["ms_per_img"], t["batches"],
        )  # fmt: skip
    row["gflops"] = model_stats(module.model, size)["gflops"]
    # the 1-minute load average after the timing: this process's threads plus anything else that shared the CPU
    row.update(
        device=device_name(device),
        dtype=dtype_name(detector.dtype),  # the precision the img/s were timed at (bf16 autocast or float32)
        threads=torch.get_num_threads(),
        load_avg_1min=round(os.getloadavg()[0], 2),
    )
    if machine_busy(row["load_avg_1min"]):
        log.warning(
            "size %s: the load average was %.2f on %d CPUs while it was timed: other work shared the CPU, its img/s "
            "are low", shown, row["load_avg_1min"], os.cpu_count() or 1,
        )  # fmt: skip
    log.info(
        "size %s: mAP@0.5 %.4f  VOC07 %.4f  mAP@[.5:.95] %.4f", shown, row["map_50"], row["voc07_map_50"], row["map"]
    )
    module.cpu()
    report = datamodule.data_report() if hasattr(datamodule, "data_report") else {}
    return row, len(loader.dataset), report


def run_sweep(
    module: Any,
    make_datamodule: Callable[[Size], Any],
    make_trainer: Callable[[list[Any]], Any],
    settings: SweepSettings,
    out_dir: Path,
    loggers: Sequence[Any] = (),
    extra: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Evaluate ``module`` at every size and time it; write tradeoff.csv / .md / .png, ``size_<S>/`` and
    metrics.json into ``out_dir``, log to ``loggers`` (W&B: the table and the plot).

    Args:
        module: a detector whose test evaluator computes VOC07 AP (built with ``voc07=True``).
        make_datamodule: size -> the data module configured with that ``img_size`` (not set up).
        make_trainer: callbacks -> the Trainer that runs the test (no logger: per-size numbers are logged here).
        extra: what metrics.json and the reports also get (checkpoint, ...).

    Returns:
        the rows of tradeoff.csv.
    """
    _check_sizes(module, settings.sizes)
    out_dir.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    rows: list[dict[str, Any]] = []
    data_report: dict[str, Any] = {}
    num_images = 0
    if settings.compile_options:
        extra["speed_compile"] = str(settings.compile_options)
    for size in settings.sizes:
        row, num_images, data_report = _evaluate_size(
            module, size, make_datamodule, make_trainer, settings, out_dir, extra
        )
        rows.append(row)
        gc.collect()  # this size's loader, and with it its (persistent) worker processes, goes now

    voc = is_voc(module.class_names)
    info = {**extra, "split": settings.split, "images": num_images, "timed": TIMED}
    cols = columns(settings.speed_batches)
    write_csv(rows, out_dir / "tradeoff.csv", cols)
    (out_dir / "tradeoff.md").write_text(format_markdown(rows, settings.speed_batches, info, voc))
    series = plot_series(rows, settings.speed_batches, voc)
    plot_tradeoff(series, out_dir / "tradeoff.png", ylabel=_metric_label(voc), title=_title(rows, info))
    (out_dir / "metrics.json").write_text(
        json.dumps(
            {**info, "sizes": [size_text(s) if not isinstance(s, int) else s for s in settings.sizes], "tradeoff": rows}
            | data_report,
            indent=2,
            default=str,
        )
    )
    log_sweep(loggers, rows, cols, out_dir / "tradeoff.png")
    log.info("speed / accuracy trade-off:\n%s", (out_dir / "tradeoff.md").read_text())
    return rows


# -------------------------------------------------------------------------------------------------- reports
def write_csv(rows: Sequence[dict[str, Any]], path: Path, cols: Sequence[str]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(cols), extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def _pct(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def _num(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    return f"{v:.1f}" if v >= 10 else f"{v:.2f}" if v >= 1 else f"{v:.3f}"


def format_markdown(
    rows: Sequence[dict[str, Any]], batches: Sequence[int], info: dict[str, Any], voc: bool = False
) -> str:
    """tradeoff.md: the table (mAPs in %), what was timed and on what, and the paper's Table 3 when ``voc``."""
    head = ["size", "mAP@0.5 (%)", "VOC07 AP@0.5 (%)", "mAP@[.5:.95] (%)"]
    for b in batches:
        head += [f"img/s (batch {b})", f"ms/img (batch {b})"]
    head.append("GFLOPs")
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [str(r["size"]), _pct(r["map_50"]), _pct(r["voc07_map_50"]), _pct(r["map"])]
        for b in batches:
            cells += [_num(r[f"img_per_s_bs{b}"]), _num(r[f"ms_per_img_bs{b}"])]
        cells.append(_num(r["gflops"]))
        lines.append("| " + " | ".join(cells) + " |")
    devices = sorted({str(r["device"]) for r in rows})
    threads = sorted({int(r["threads"]) for r in rows})
    notes = [
        "",
        f"- split: {info.get('split', '?')} ({info.get('images', '?')} images); checkpoint: "
        f"{info.get('checkpoint', '?')}",
        "- mAP@0.5: COCO-style 101-point interpolation (metrics.json `map_50`); VOC07 AP@0.5: VOC2007 11-point "
        "(the paper's metric); mAP@[.5:.95]: COCO's.",
        f"- img/s, ms/img: {TIMED}. Batches larger than the images held cycle through them.",
        f"- device: {', '.join(devices)}; {_dtype_text(rows)}; torch threads: {', '.join(map(str, threads))}",
        *(
            [f"- timed with the network compiled (torch.compile {info['speed_compile']}); the mAPs are the eager one's"]
            if info.get("speed_compile")
            else []
        ),
        *_load_note(rows),
        "- GFLOPs: forward pass of one image (2 x multiply-adds).",
    ]
    if voc:
        notes += [
            "",
            "Paper Table 3 (YOLOv2, VOC 2007 test, Titan X):",
            "",
            "| size | mAP | FPS |",
            "|---:|---:|---:|",
            *(f"| {s} | {m:.1f} | {f:.0f} |" for s, m, f in PAPER_TABLE3),
        ]
    return "\n".join(lines + notes) + "\n"


def _dtype_text(rows: Sequence[dict[str, Any]]) -> str:
    """The rows' timing precision for tradeoff.md and the plot's title: ``float32``, or ``bfloat16 autocast``
    (rows written before the column existed: float32, the only precision then timed on a CPU)."""
    names = sorted({str(r.get("dtype") or "float32") for r in rows})
    return "/".join(n if n == "float32" else f"{n} autocast" for n in names)


def _load_note(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The markdown line of the load averages (1 minute, after each size's timing), a warning when one exceeded
    the machine's CPUs (other work shared them: those sizes' timings are low)."""
    loads = [r.get("load_avg_1min") for r in rows]
    if any(v is None for v in loads):
        return []
    busy = [str(r["size"]) for r in rows if machine_busy(float(r["load_avg_1min"]))]
    line = f"- load average (1 min, after each size's timing) on {os.cpu_count() or 1} CPUs: "
    line += ", ".join(f"{v:.2f}" for v in loads)
    if busy:
        line += f". **Above the CPU count at size {', '.join(busy)}: other work shared the CPU; time it again.**"
    return [line]


def _metric_label(voc: bool) -> str:
    return "VOC07 AP@0.5 (%)" if voc else "mAP@0.5 (%)"


def _title(rows: Sequence[dict[str, Any]], info: dict[str, Any] | None = None) -> str:
    """tradeoff.png's title: the device and threads; with ``info`` (tradeoff.md's) also the split, its image count
    and the checkpoint, and a warning when a timing shared the CPU (its img/s are low)."""
    devices = sorted({str(r["device"]) for r in rows})
    threads = sorted({int(r["threads"]) for r in rows})
    title = f"{', '.join(devices)}, {_dtype_text(rows)}, {'/'.join(map(str, threads))} threads"
    if info is None:
        return title
    head = [f"{info['split']} split ({info['images']} images)"] if "split" in info and "images" in info else []
    if info.get("checkpoint"):
        head.append(checkpoint_label(info["checkpoint"]))
    busy = [str(r["size"]) for r in rows if "load_avg_1min" in r and machine_busy(float(r["load_avg_1min"]))]
    if busy:
        title += f"\nother work shared the CPU at size {', '.join(busy)}: its img/s are low"  # own line: fits
    return "\n".join([", ".join(head), title] if head else [title])


def plot_series(
    rows: Sequence[dict[str, Any]], batches: Sequence[int], voc: bool
) -> dict[str, list[tuple[float, float, int]]]:
    """What tradeoff.png shows: label -> [(images/s, mAP %, size)] (size: a side, or ``HxW``): ``ours, batch <b>``
    for every timed batch size (VOC07 AP when ``voc``, else mAP@0.5) and, when ``voc``, the paper's Table 3 as
    ``paper (Titan X)``."""
    key = "voc07_map_50" if voc else "map_50"
    out: dict[str, list[tuple[float, float, int | str]]] = {}
    for b in batches:
        out[f"ours, batch {b}"] = [(float(r[f"img_per_s_bs{b}"]), 100 * float(r[key]), r["size"]) for r in rows]
    if voc:
        out[PAPER_LABEL] = [(fps, m, s) for s, m, fps in PAPER_TABLE3]
    return out


def _area(size: int | str) -> int:
    """Pixels of a size as a row shows it (a side, or ``HxW``)."""
    h, _, w = str(size).partition("x")
    return int(h) * int(w or h)


def plot_tradeoff(
    series: dict[str, list[tuple[float, float, int | str]]],
    path: Path,
    ylabel: str = "mAP@0.5 (%)",
    title: str | None = None,
    figsize: tuple[float, float] = (7.0, 5.0),
    dpi: int = 100,
) -> Path:
    """The paper's Figure 4: accuracy against frames per second, one line per series, points labelled with the
    input size ("416 px", "352x608 px"); a log x axis when the speeds span more than 20x (a CPU beside a Titan X)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=dpi)
    ax = fig.subplots()
    speeds = [p[0] for pts in series.values() for p in pts if np.isfinite(p[0]) and p[0] > 0]
    for i, (label, pts) in enumerate(series.items()):
        pts = sorted(pts, key=lambda p: _area(p[2]))
        paper = label == PAPER_LABEL
        ax.plot(
            [p[0] for p in pts],
            [p[1] for p in pts],
            marker="s" if paper else "o",
            linestyle="--" if paper else "-",
            color="grey" if paper else None,
            label=label,
        )
        for fps, m, s in pts:
            # the labels of alternate series above and below their points: two series at nearly the same point
            # (batch 1 and 32 of one size) printed one label over the other ("320320"); "96 px", not a bare "96"
            ax.annotate(
                f"{s} px", (fps, m), textcoords="offset points", xytext=(4, 4 if i % 2 == 0 else -11), fontsize=8
            )
    if speeds and max(speeds) / min(speeds) > 20:
        ax.set_xscale("log")
    ax.set_xlabel("images / s")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    if any(pts for pts in series.values()):  # nothing to name otherwise (matplotlib warns)
        ax.legend(loc="best")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path


def log_sweep(loggers: Sequence[Any], rows: Sequence[dict[str, Any]], cols: Sequence[str], png: Path) -> None:
    """Every size's numbers as ``tradeoff/<column>`` at step = size (a rectangle's: the side of a square of its
    area, rounded); W&B also gets the table (``tradeoff/table``) and the plot (``tradeoff/plot``)."""
    from pytorch_lightning.loggers import WandbLogger

    numeric = [c for c in cols if c not in ("size", "device", "dtype")]
    for lg in loggers:
        for r in rows:
            lg.log_metrics({f"tradeoff/{c}": float(r[c]) for c in numeric}, step=round(math.sqrt(_area(r["size"]))))
        if isinstance(lg, WandbLogger):
            # W&B's table takes one type a column: with a rectangle ("HxW") among the sizes, every size as text
            text = any(not isinstance(r["size"], int) for r in rows)
            data = [[str(r[c]) if c == "size" and text else r[c] for c in cols] for r in rows]
            lg.log_table(key="tradeoff/table", columns=list(cols), data=data)
            lg.log_image(key="tradeoff/plot", images=[str(png)])
        lg.save()
        lg.finalize("success")
