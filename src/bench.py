"""Speed numbers on whatever machine this runs: ``python src/bench.py`` prints a table and writes ``bench.json``.

For every variant (``bench.variants``: a precision and fast-path switches, see ``conf/bench.yaml``), with the model
built exactly as training builds it (:func:`yolo9000.build.build`: classes from the data, priors resolved; random
weights), at ``bench.batch_size`` x ``bench.size``:

* ``bare_img_per_s``: the network alone in a plain PyTorch loop (forward, a trivial loss, backward, optimizer step);
* ``loss_img_per_s``: the same loop with the region loss and its target assignment;
* ``lightning_img_per_s``: the real thing, ``trainer.fit`` (the configured trainer) with the real DataModule (fixed
  size ``bench.size``, its own loader workers and augmentation), timed after the first batches; ``real_over_bare``
  is its share of the bare loop's speed (on the CPU against bare steps run between its batches,
  ``paired_bare_img_per_s``: both see the same machine), and on the CPU where the difference goes: the median
  milliseconds of each phase of a batch (``lightning_fetch_ms``, ``_forward_ms``, ``_backward_ms``, ``_step_ms``)
  beside the paired bare step's (``paired_bare_forward_ms``, ...);
* ``loss_share_of_step``: region loss + targets (forward + backward on a fixed output) over the loop step with loss;
* ``infer_b<N>_forward_img_per_s`` / ``infer_b<N>_e2e_img_per_s``: the eval forward pass of the network the
  Detector runs at that batch (``infer_fold_bn``: batch norms folded into the convs, its default;
  ``infer_fuse``: conv + leaky fused for batches of 2+ on the CPU, its default, ``infer_fused_layers`` how many),
  and end to end
  (:meth:`yolo9000.Detector.predict` on decoded ``bench.infer_image_hw`` images: resize, forward, decode, NMS,
  boxes mapped back) at each batch of ``bench.infer_batches``; ``infer_b<N>_e2e_over_forward`` their ratio;
  ``infer_b<N>_dets_per_img`` the detections it returned (``bench.infer_ckpt`` / ``bench.infer_images``: trained
  weights and real photos instead of random ones);
* ``peak_mem_mb``: CUDA: the variant's peak allocated memory; CPU: the process's peak resident memory so far.

``loss_protocol`` (once): the region loss on the PyTorch ports' common protocol (``bench.loss_protocol``: B=16, 13x13,
5 anchors, 20 classes, 8 truths an image, 2 threads): forward + backward including target building, against a
1x1 conv 1024 -> A * (5 + C) forward + backward on the same grid (weights only, and with the input's gradient as in
a network); the two alternate in rounds, the fastest round of each is compared (other processes only add time), in a
Python process of their own (``bench.loss_protocol.fresh_process``).

Once: DataLoader images/s (with the configured workers, and in one process: per worker), and decode + NMS per
image for the built head and untrained heads of other class counts (the worst case). On the CPU the issue's
targets are checked (``targets``). Times per call are means on CUDA and medians on the CPU (robust to other
processes sharing the cores; the machine's load is reported). Benchmarks print; tests never time.

``python src/bench.py --config-name bench_gpu_full``: the full GPU table (YOLOv2-416, batch 64, fp32 / bf16 /
bf16 + channels_last / + compile).
"""

from __future__ import annotations

import collections
import copy
import gc
import glob
import json
import logging
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pytorch_lightning as pl
import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from yolo9000.build import build, instantiate_module
from yolo9000.data.image_io import read_image
from yolo9000.environment import hint_unknown_overrides, hydra_flags_first, reported_failures, setup_environment
from yolo9000.loss import RegionLoss, TruthAssignment
from yolo9000.models import STRIDE
from yolo9000.speed import (
    PRECISION_AUTOCAST,
    FastPath,
    call_times,
    channels_last_images,
    cpu_bf16_units,
    device_name,
    inference_dtype,
    machine_busy,
    set_channels_last,
    sync,
    timeit,
)

log = logging.getLogger("yolo9000.bench")

setup_environment()

SEEN = 1  # images seen passed to the loss: darknet's prior-matching term on, as in training's first 12,800 images
TARGETS = {  # the CPU targets of the default model at the default batch and size
    "real_over_bare": (">=", 0.9),
    "loss_share_of_step": ("<=", 0.05),
    "e2e_over_forward": (">=", 0.9),
    "loss_over_conv1x1": ("<=", 0.3),
}


def seconds_per_call(fn: Callable[[], Any], b: DictConfig, device: torch.device) -> float:
    """Seconds per call of ``fn`` (``bench.warmup`` untimed calls, then ``bench.steps``): on CUDA the mean (queued
    work overlaps from one call to the next), on the CPU the median call (robust to other processes on the
    cores)."""
    if device.type == "cuda":
        return timeit(fn, b.steps, b.warmup, device)
    return statistics.median(call_times(fn, b.steps, b.warmup, device))


def paired_seconds_per_call(
    a: Callable[[], Any], b_fn: Callable[[], Any], rounds: int, b: DictConfig, device: torch.device
) -> tuple[float, float]:
    """Seconds per call of ``a`` and ``b_fn``, called alternately (``rounds`` each after ``bench.warmup`` untimed
    pairs) so that both see the same machine: drift and other processes weigh on both alike, which separate
    blocks of calls do not (their ratio is what the targets compare). CPU: the median call of each; CUDA: the
    mean (device synchronised around every call)."""
    for _ in range(int(b.warmup)):
        a()
        b_fn()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(max(int(rounds), 1)):
        times[0].extend(call_times(a, 1, 0, device))
        times[1].extend(call_times(b_fn, 1, 0, device))
    pick = statistics.fmean if device.type == "cuda" else statistics.median
    return pick(times[0]), pick(times[1])


# ---------------------------------------------------------------------------------------------- setup
def bench_config(cfg: DictConfig) -> DictConfig:
    """``cfg`` with the data at the bench's batch and fixed size (``bench.batch_size`` x ``bench.size``, multi-scale
    off, no partial batch): every number of a variant is taken at the same shape. ``bench.train_repeat`` > 1 lists
    the training parsers that many times (a small dataset's epoch long enough for every loader worker)."""
    cfg = copy.deepcopy(cfg)
    b = cfg.bench
    with open_dict(cfg):
        cfg.data.batch_size = int(b.batch_size)
        cfg.data.drop_last = True
        cfg.data.multiscale.enabled = False
        cfg.data.multiscale.fixed_size = int(b.size)
        repeat = int(b.get("train_repeat") or 1)
        if repeat > 1:  # resolved where they stand (their ${..key} interpolations point at the data section)
            train = OmegaConf.to_container(cfg.data.train, resolve=True)
            cfg.data.train = (train if isinstance(train, list) else [train]) * repeat
    return cfg


def split_variant(settings: Any) -> tuple[str | None, dict[str, Any]]:
    """A variant's ``precision`` (None: the trainer's) and its ``model.fast`` overrides (checked)."""
    s = dict(OmegaConf.to_container(settings, resolve=True) if OmegaConf.is_config(settings) else settings or {})
    precision = s.pop("precision", None)
    if precision is not None and str(precision) not in PRECISION_AUTOCAST:
        raise ValueError(f"bench.variants: precision must be one of {sorted(PRECISION_AUTOCAST)}, got {precision!r}")
    FastPath.of(s)  # unknown keys raise
    return None if precision is None else str(precision), s


def variant_module(model_config: dict[str, Any], fast: dict[str, Any], device: torch.device) -> Any:
    """The built detector (its resolved config, fresh random weights) with ``fast`` over ``model.fast``, set up for
    fitting as Lightning does (channels_last, compile) and on ``device``."""
    mc = copy.deepcopy(model_config)
    mc["fast"] = {**(mc.get("fast") or {}), **fast}
    module = instantiate_module(mc)
    module.setup("fit")  # the fast path; trainer.fit's own setup() then has nothing left to do
    return module.to(device)


def synthetic_batch(b: DictConfig, num_classes: int, device: torch.device, channels_last: bool) -> dict[str, Any]:
    """``bench.batch_size`` random images with ``bench.num_boxes`` boxes each (seed 0); the truths also on the host
    (``targets_host``, ``mask_host``), where training's loader hands them over."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(b.batch_size, 3, b.size, b.size, generator=g).to(device)
    wh = torch.rand(b.batch_size, b.num_boxes, 2, generator=g) * 0.2 + 0.05
    xy = torch.rand(b.batch_size, b.num_boxes, 2, generator=g) * 0.8 + 0.1
    cls = torch.randint(0, num_classes, (b.batch_size, b.num_boxes, 1), generator=g).float()
    targets, mask = torch.cat([xy, wh, cls], -1), torch.ones(b.batch_size, b.num_boxes, dtype=torch.bool)
    return {
        "images": channels_last_images(x) if channels_last else x,
        "targets": targets.to(device),
        "mask": mask.to(device),
        "targets_host": targets,
        "mask_host": mask,
    }


def host_assignment(module: Any, batch: dict[str, Any]) -> TruthAssignment | None:
    """What training's ``on_before_batch_transfer`` adds to a batch (the module's own hook): the truths' assignment,
    made on the host (None where the loss makes it: ``bias_match=False``)."""
    host = {"images": batch["images"], "targets": batch["targets_host"], "target_mask": batch["mask_host"]}
    return module.on_before_batch_transfer(host, 0).get("assignment")


def autocast(device: torch.device, precision: str) -> torch.autocast:
    dtype = PRECISION_AUTOCAST[precision]
    return torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)


# ---------------------------------------------------------------------------------------------- training
def bare_step(
    module: Any,
    batch: dict[str, Any],
    precision: str,
    opt: torch.optim.Optimizer | None = None,
    phases: list[dict[str, float]] | None = None,
) -> Callable[[], None]:
    """One step of the plain PyTorch loop on ``batch``: forward, a trivial loss, backward, an optimizer step
    (``opt``, default: the module's own; the network put in training mode). ``phases``: each call appends its
    ``forward`` (with zero_grad and the trivial loss), ``backward`` and ``step`` seconds (no device sync: CPU use)."""
    net, x = module.model, batch["images"]
    opt = opt or module.configure_optimizers()["optimizer"]
    net.train()

    def bare() -> None:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with autocast(x.device, precision):
            out = net(x)
        loss = out.float().square().mean()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        if phases is not None:
            phases.append({"forward": t1 - t0, "backward": t2 - t1, "step": time.perf_counter() - t2})

    return bare


def time_loops(module: Any, batch: dict[str, Any], precision: str, b: DictConfig, device: torch.device) -> dict:
    """The plain PyTorch loop (module's optimizer) without and with the region loss, and the loss alone."""
    net, crit = module.model, module.criterion
    opt = module.configure_optimizers()["optimizer"]
    x, targets, mask = batch["images"], batch["targets"], batch["mask"]
    bsz = x.shape[0]
    net.train()

    def forward() -> torch.Tensor:
        with autocast(device, precision):
            return net(x)

    bare = bare_step(module, batch, precision, opt)

    def with_loss() -> None:  # as the training step: the truths assigned on the host, then the forward and loss
        assignment = host_assignment(module, batch)
        opt.zero_grad(set_to_none=True)
        raw = forward().float()  # as the training step
        (crit(raw, targets, mask, net.anchors, SEEN, assignment=assignment).loss / bsz).backward()
        opt.step()

    raw = forward().detach().float().requires_grad_(True)

    def loss_only() -> None:
        crit(raw, targets, mask, net.anchors, SEEN, assignment=host_assignment(module, batch)).loss.backward()

    t_bare = seconds_per_call(bare, b, device)
    t_step = seconds_per_call(with_loss, b, device)
    t_loss = seconds_per_call(loss_only, b, device)
    opt.zero_grad(set_to_none=True)
    return {
        "bare_img_per_s": bsz / t_bare,
        "loss_img_per_s": bsz / t_step,
        "step_s": t_step,
        "loss_fwd_bwd_s": t_loss,
        "loss_share_of_step": t_loss / t_step,
    }


class StepTimer(pl.Callback):
    """Wall clock of the training batches after the first ``skip`` ones, each from the end of the batch before to
    its own end (loading, transfer, step, logging), synchronised on CUDA.

    ``paired``: a call (the bare loop's step) run after every batch, outside the timed intervals and timed on its
    own (``paired_times``, one per timed batch): both then see the same machine, as
    :func:`paired_seconds_per_call` does.

    ``audit``: on CUDA, the host syncs of batch number ``audit`` (from 1; its own end-of-batch sync excluded) are
    recorded (``torch.cuda.set_sync_debug_mode``): ``syncs``, the call sites and their counts. Each one stops the
    host until the device has caught up, so the GPU idles while the host then launches what follows."""

    def __init__(self, skip: int, paired: Callable[[], Any] | None = None, audit: int | None = None) -> None:
        self.skip, self.ended = max(1, skip), 0
        self.audit, self.syncs = audit, collections.Counter()
        self._audit_ctx: warnings.catch_warnings | None = None
        self._audit_log: list[warnings.WarningMessage] = []
        self.batches: list[tuple[int, float]] = []  # (images, seconds) of the timed batches
        self.paired, self.paired_times = paired, []
        self.phases: list[dict[str, float]] = []  # CPU: seconds per phase of the timed batches
        self._last = 0.0
        self._marks: dict[str, float] = {}

    # the phases of a batch (CPU only: marks without a device sync): fetch (loader, collate, transfer, float
    # conversion), forward (training_step: network, loss, logging), backward, step (optimizer, guards, hooks)
    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: Any, *_: Any) -> None:
        if pl_module.device.type == "cuda" and self.ended + 1 == self.audit:
            self._audit_ctx = warnings.catch_warnings(record=True)
            self._audit_log = self._audit_ctx.__enter__()
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
        self._marks = {"start": time.perf_counter()}

    def _end_audit(self) -> None:
        if self._audit_ctx is None:
            return
        torch.cuda.set_sync_debug_mode(0)
        self._audit_ctx.__exit__(None, None, None)
        self._audit_ctx = None
        for w in self._audit_log:
            if "synchroniz" in str(w.message):
                self.syncs[f"{Path(w.filename).name}:{w.lineno}"] += 1

    def on_before_backward(self, trainer: pl.Trainer, pl_module: Any, loss: torch.Tensor) -> None:
        self._marks["backward"] = time.perf_counter()

    def on_after_backward(self, trainer: pl.Trainer, pl_module: Any) -> None:
        self._marks["step"] = time.perf_counter()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        self._end_audit()
        sync(pl_module.device)
        now = time.perf_counter()
        self.ended += 1
        if self.ended > self.skip:
            self.batches.append((int(batch["images"].shape[0]), now - self._last))
            m = self._marks
            if pl_module.device.type == "cpu" and {"start", "backward", "step"} <= m.keys():
                self.phases.append(
                    {
                        "fetch": m["start"] - self._last,
                        "forward": m["backward"] - m["start"],
                        "backward": m["step"] - m["backward"],
                        "step": now - m["step"],
                    }
                )
        if self.paired is not None:
            with torch.enable_grad():
                t = call_times(self.paired, 1, 0, pl_module.device)
            if self.ended > self.skip:
                self.paired_times.extend(t)
        self._last = time.perf_counter()

    def img_per_s(self, device: torch.device) -> float:
        """On CUDA images over seconds of all timed batches; on the CPU the median batch's (as
        :func:`seconds_per_call`; the batches are all full)."""
        if not self.batches:
            return float("nan")
        if device.type == "cuda":
            return sum(n for n, _ in self.batches) / sum(t for _, t in self.batches)
        return statistics.median(n / t for n, t in self.batches)


def time_lightning(
    cfg: DictConfig,
    module: Any,
    precision: str | None,
    device: torch.device,
    paired: Callable[[], Any] | None = None,
    paired_phases: list[dict[str, float]] | None = None,
) -> dict[str, float]:
    """``trainer.fit`` of the configured trainer (one device, no logger, checkpoints, progress bar or validation)
    with a fresh real DataModule for ``bench.warmup`` (at least 1) + ``bench.steps`` batches; with ``paired`` (a
    bare loop step) also that step's img/s, timed between the batches (``paired_bare_img_per_s``), and
    ``real_over_bare``: the median over the batches of (bare step time / batch time). On the CPU also the median
    milliseconds of each phase of a batch (``lightning_<fetch|forward|backward|step>_ms``) and of the paired bare
    step (``paired_bare_<forward|backward|step>_ms``, from ``paired_phases``, the list ``paired`` appends to). On
    CUDA also the host syncs of the last batch (``lightning_host_syncs``, their call sites ``lightning_sync_sites``):
    each lets the GPU idle while the host launches what follows it."""
    b = cfg.bench
    timer = StepTimer(int(b.warmup), paired, audit=max(1, int(b.warmup)) + int(b.steps))
    overrides: dict[str, Any] = {
        "accelerator": "gpu" if device.type == "cuda" else "cpu",
        "devices": [device.index or 0] if device.type == "cuda" else 1,
        "strategy": "auto",
        "num_nodes": 1,
        "sync_batchnorm": False,
        "max_epochs": -1,
        "max_steps": timer.skip + int(b.steps),
        "limit_train_batches": None,
        "limit_val_batches": 0,
        "num_sanity_val_steps": 0,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "callbacks": [timer],
    }
    if precision is not None:
        overrides["precision"] = precision
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer, **overrides)
    datamodule = hydra.utils.instantiate(cfg.data)
    trainer.fit(module, datamodule=datamodule)
    out = {"lightning_img_per_s": timer.img_per_s(device), "lightning_precision": str(trainer.precision)}
    out["lightning_loader_workers"] = int(datamodule.num_workers)
    if device.type == "cuda":
        out["lightning_host_syncs"] = sum(timer.syncs.values())
        out["lightning_sync_sites"] = ", ".join(f"{site} x{n}" for site, n in timer.syncs.most_common())
    if timer.paired_times:
        out["paired_bare_img_per_s"] = int(b.batch_size) / statistics.median(timer.paired_times)
        # the median of the pairs' ratios (each Lightning batch against the bare step right after it)
        pairs = zip(timer.batches, timer.paired_times, strict=True)
        out["real_over_bare"] = statistics.median(t_bare / t for (_, t), t_bare in pairs)
    # where the difference goes (CPU): median milliseconds per phase, the Lightning batch's and the paired bare
    # step's (their forward includes zero_grad and the trivial loss; step: the optimizer)
    timed_pairs = paired_phases[len(paired_phases) - len(timer.paired_times) :] if paired_phases else []  # no warm-up
    for prefix, rows in (("lightning", timer.phases), ("paired_bare", timed_pairs)):
        for key in rows[0] if rows else ():
            out[f"{prefix}_{key}_ms"] = 1e3 * statistics.median(r[key] for r in rows)
    return out


# ---------------------------------------------------------------------------------------------- inference
def inference_images(b: DictConfig) -> list[np.ndarray]:
    """The decoded images of the inference rows, as many as the largest of ``bench.infer_batches``: the files of
    ``bench.infer_images`` (a glob, cycled), else random pixels of ``bench.infer_image_hw``."""
    n = max((int(k) for k in b.infer_batches), default=0)
    if b.get("infer_images"):
        files = sorted(glob.glob(str(b.infer_images)))
        if not files:
            raise FileNotFoundError(f"bench.infer_images={b.infer_images!r}: no file matches")
        return [read_image(files[i % len(files)]) for i in range(n)]
    g = np.random.default_rng(0)
    hw = [int(s) for s in b.infer_image_hw]
    return [g.integers(0, 256, (*hw, 3), dtype=np.uint8) for _ in range(n)]


def time_inference(
    module: Any,
    precision: str,
    images: list[np.ndarray],
    b: DictConfig,
    device: torch.device,
    channels_last: bool | None = None,
    warp: bool = True,
) -> dict[str, Any]:
    """Eval forward pass and end to end (:class:`yolo9000.Detector`) at every batch of ``bench.infer_batches``;
    ``channels_last`` as the Detector's (None: its default, NHWC on the CPU); the forward pass in its layout;
    ``warp``: its eval resize's (the data's ``augment.eval_warp``, as training evaluates)."""
    from yolo9000 import Detector

    dtype = inference_dtype(precision)
    det = Detector(
        module,
        device=device,
        dtype=dtype,
        channels_last=channels_last,
        fold_bn=bool(b.infer_fold_bn),
        fuse=bool(b.get("infer_fuse", True)),  # a bench config made before the key: the default
        compile=b.get("infer_compile", False),
        warp=warp,
    )
    res: dict[str, Any] = {
        "infer_channels_last": det.channels_last,
        "infer_fold_bn": det.fold_bn,
        "infer_fused_layers": det.fused_layers,
        "infer_warp": det.warp,
        "infer_compile": str(det.compile_options) if det.compile_options is not None else False,
    }
    g = torch.Generator().manual_seed(1)
    for n in [int(n) for n in b.infer_batches]:
        x = torch.rand(n, 3, b.size, b.size, generator=g).to(device)
        x = channels_last_images(x) if det.channels_last else x

        # the bare forward of the network the Detector runs at this batch (batch norms folded or not, fused or not,
        # compiled or not)
        net = det.network_for(n)

        def forward(x: torch.Tensor = x, net: torch.nn.Module = net) -> None:
            with torch.no_grad(), autocast(device, precision):
                net(x)

        batch = images[:n]

        def e2e(batch: list[np.ndarray] = batch, n: int = n) -> None:
            det.predict(batch, size=int(b.size), batch_size=n, conf=float(b.infer_conf), num_workers=b.infer_workers)

        t_fwd, t_end = paired_seconds_per_call(forward, e2e, max(int(b.steps), int(b.infer_rounds) // n), b, device)
        fwd, end = n / t_fwd, n / t_end
        dets = det.predict(batch, size=int(b.size), batch_size=n, conf=float(b.infer_conf))
        res |= {
            f"infer_b{n}_forward_img_per_s": fwd,
            f"infer_b{n}_e2e_img_per_s": end,
            f"infer_b{n}_e2e_over_forward": end / fwd,
            f"infer_b{n}_dets_per_img": sum(len(d.scores) for d in dets) / n,  # decode + NMS cost grows with it
        }
    return res


def time_postprocess(
    module: Any, x: torch.Tensor, forward: Callable[[torch.Tensor], torch.Tensor], b: DictConfig
) -> dict[str, float]:
    """Eval forward pass and decode + NMS (``module.predict_raw``, the module's thresholds) on the batch ``x``
    (B, 3, S, S): seconds per batch of each, ms per image and share of the forward pass of decode + NMS, and the
    detections per image it returned."""
    device = x.device
    module.eval()
    with torch.no_grad():
        t_fwd = seconds_per_call(lambda: forward(x), b, device)
        raw = forward(x).float().contiguous()
        hw = tuple(x.shape[-2:])
        t_post = seconds_per_call(lambda: module.predict_raw(raw, hw, None, None), b, device)
        dets = module.predict_raw(raw, hw, None, None)
    return {
        "forward_s": t_fwd,
        "postprocess_s": t_post,
        "ms_per_img": 1000 * t_post / x.shape[0],
        "share_of_forward": t_post / t_fwd,
        "dets_per_img": sum(len(d["scores"]) for d in dets) / x.shape[0],
    }


def time_heads(module: Any, x: torch.Tensor, precision: str, b: DictConfig) -> dict[str, float]:
    """Decode + NMS (:func:`time_postprocess`) of the built head and of untrained heads with
    ``bench.worst_case_classes`` classes: ``postprocess_<head>_{conf,ms_per_img,share_of_forward,dets_per_img}``."""
    heads = [(f"{module.model.num_classes}cls", module)]
    for num_classes in b.worst_case_classes or []:
        wc = worst_case_module(module.model_config, int(num_classes), float(b.worst_case_conf))
        heads.append((f"{num_classes}cls_untrained", wc.to(x.device)))
    res: dict[str, float] = {}
    for name, m in heads:
        # the module's own layout, as its batch ``x`` (the Detector of the inference rows may have changed it)
        set_channels_last(m.model, m.fast.channels_last)

        def forward(images: torch.Tensor, m: Any = m) -> torch.Tensor:
            with autocast(x.device, precision):
                return m(images)

        p = time_postprocess(m, x, forward, b)
        res[f"postprocess_{name}_conf"] = float(m.hparams.conf_thresh)
        res[f"postprocess_{name}_ms_per_img"] = p["ms_per_img"]
        res[f"postprocess_{name}_share_of_forward"] = p["share_of_forward"]
        res[f"postprocess_{name}_dets_per_img"] = p["dets_per_img"]
    return res


def worst_case_module(model_config: dict[str, Any], num_classes: int, conf_thresh: float) -> Any:
    """The built detector (its resolved ``model_config``) with a ``num_classes`` head, random weights and
    ``conf_thresh``: an untrained network scores nearly every (box, class) pair above darknet's 0.005, the
    slowest decode + NMS. Eager (no compile)."""
    mc = copy.deepcopy(model_config)
    mc["net"]["num_classes"] = num_classes
    mc.update(class_names=None, backbone_ckpt=None, conf_thresh=conf_thresh)
    mc["fast"] = {**(mc.get("fast") or {}), "compile": False}
    return instantiate_module(mc)


# ---------------------------------------------------------------------------------------------- data
def loader_rate(loader: Any, batches: int) -> float:
    """Images/s of ``loader`` over ``batches`` batches after the first (which starts the workers), epochs
    restarting as needed."""
    it = iter(loader)
    next(it)
    t0, n, done = time.perf_counter(), 0, 0
    while done < batches:
        try:
            n += next(it)["images"].shape[0]
            done += 1
        except StopIteration:
            it = iter(loader)
    return n / (time.perf_counter() - t0)


def time_loader(cfg: DictConfig, datamodule: Any, b: DictConfig) -> dict[str, float]:
    """Training DataLoader throughput over ``bench.loader_batches`` batches: ``loader_img_per_s`` with the
    configured workers, and ``loader_img_per_s_per_worker`` measured in one process (``num_workers=0``)."""
    workers = int(datamodule.num_workers)
    res = {"loader_workers": workers, "loader_img_per_s": loader_rate(datamodule.train_dataloader(), b.loader_batches)}
    if workers:
        single = hydra.utils.instantiate(cfg.data, num_workers=0)
        single.prepare_data()
        single.setup("fit")
        datamodule = single
    res["loader_img_per_s_per_worker"] = loader_rate(datamodule.train_dataloader(), b.loader_batches)
    return res


# ---------------------------------------------------------------------------------------------- report
def time_loss_protocol(p: DictConfig, device: torch.device) -> dict[str, float]:
    """The region loss (forward + backward, targets included) against a 1x1 conv 1024 -> A * (5 + C) (forward +
    backward) on one grid: ``p`` = ``bench.loss_protocol`` (batch, grid, anchors, classes, truths, threads, rounds,
    calls, compiled_backend). Random head output (scaled like a trained head's) and truths; ``seen`` past the prior
    term. With ``compiled_backend`` the loss compiled with it (``model.fast.compile_loss``) is timed too, beside
    the eager one (the default path, which the target judges).

    Steady state, as the ports' timings are loops of calls: every round starts with an untimed call of each
    function (this 2-core VM runs code that has not run for a few ms several times slower; the loss's ~330 small
    operations paid that on the first call of each round, the conv's few large kernels hardly at all: 1.3-1.4 ms
    against 1.1 ms at steady state), then ``calls`` timed calls.

    The loss's input is one leaf tensor whose gradient is dropped before each call (as the conv's output is fresh
    from the conv): a training step hands the head's output to the loss as it is. Cloning the head output into a
    new leaf every call (as sessions before 13 did) timed a 1.35 MB copy with the loss: 0.19 ms of 2.15."""
    threads = torch.get_num_threads()
    if p.threads:
        torch.set_num_threads(int(p.threads))
    try:
        g = torch.Generator().manual_seed(0)
        bsz, grid, na, nc, nt = (int(p[k]) for k in ("batch", "grid", "anchors", "classes", "truths"))
        x = torch.randn(bsz, 1024, grid, grid, generator=g).to(device)
        conv = torch.nn.Conv2d(1024, na * (5 + nc), 1).to(device)
        raw = (conv(x) * 0.5).detach()
        anchors = (torch.rand(na, 2, generator=g) * (grid / 2) + 0.5).to(device)
        truths = torch.cat(
            [
                torch.rand(bsz, nt, 2, generator=g),
                torch.rand(bsz, nt, 2, generator=g) * 0.5 + 0.05,
                torch.randint(0, nc, (bsz, nt, 1), generator=g).float(),
            ],
            -1,
        ).to(device)
        mask = torch.ones(bsz, nt, dtype=torch.bool, device=device)
        x_in = x.clone().requires_grad_(True)
        out = raw.clone().requires_grad_(True)

        def loss_step(loss: RegionLoss) -> Callable[[], None]:
            def step() -> None:
                out.grad = None  # the gradient is handed over, not accumulated
                loss(out, truths, mask, anchors, seen=12800).loss.backward()

            return step

        def conv_step(inp: torch.Tensor) -> Callable[[], None]:
            return lambda: conv(inp).sum().backward()

        fns = {"loss": loss_step(RegionLoss(nc)), "conv": conv_step(x), "conv_in": conv_step(x_in)}
        backend = p.get("compiled_backend")
        if backend:  # model.fast.compile_loss: compiled by the first (untimed) call
            fns["loss_compiled"] = loss_step(RegionLoss(nc).compile_deltas(backend=str(backend)))
        best = {k: float("inf") for k in fns}
        for f in fns.values():
            f()
        for _ in range(int(p.rounds)):
            for k, f in fns.items():
                f()  # untimed: the round's timed calls find the function's code warm
                sync(device)
                t0 = time.perf_counter()
                for _ in range(int(p.calls)):
                    f()
                sync(device)
                best[k] = min(best[k], (time.perf_counter() - t0) / int(p.calls))
        out = {
            "loss_protocol_threads": torch.get_num_threads(),
            "loss_protocol_loss_ms": best["loss"] * 1e3,
            "loss_protocol_conv1x1_ms": best["conv"] * 1e3,
            "loss_protocol_conv1x1_with_input_grad_ms": best["conv_in"] * 1e3,
            "loss_over_conv1x1": best["loss"] / best["conv"],
            "loss_over_conv1x1_with_input_grad": best["loss"] / best["conv_in"],
        }
        if backend:
            out["loss_protocol_compiled_backend"] = str(backend)
            out["loss_protocol_compiled_loss_ms"] = best["loss_compiled"] * 1e3
            out["compiled_loss_over_conv1x1"] = best["loss_compiled"] / best["conv"]
        return out
    finally:
        torch.set_num_threads(threads)


def loss_protocol_in_fresh_process(p: DictConfig, device: torch.device) -> dict[str, float]:
    """:func:`time_loss_protocol` in a Python process of its own, as the ports time their losses (a script of its
    own): in this process, after the training and inference rows, the heap, the garbage collector's many tracked
    objects and idle threads cost the loss's ~300 small operations 0.1-0.2 ms (1.69-1.74 ms against 1.54-1.58 in a
    fresh process on a 2-core Xeon VM; the conv's few large kernels hardly change)."""
    code = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import torch; from omegaconf import OmegaConf; "
        "from bench import time_loss_protocol; "
        "print(json.dumps(time_loss_protocol(OmegaConf.create(json.loads(sys.argv[2])), torch.device(sys.argv[3]))))"
    )
    spec = json.dumps(OmegaConf.to_container(p, resolve=True))
    res = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).resolve().parent), spec, str(device)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode:
        raise RuntimeError(f"the loss protocol's process failed (exit {res.returncode}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: peak allocated since the last reset; CPU: this process's peak resident memory (Linux: KiB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def targets_variant(variants: Mapping[str, Any]) -> str:
    """The variant the CPU targets judge: the default model's, i.e. the first with no settings of its own (as
    composed), else the first."""
    return next((name for name, v in variants.items() if not v), next(iter(variants)))


def check_targets(variant: dict[str, Any], infer_batches: list[int], trained_weights: bool = True) -> dict[str, Any]:
    """The issue's CPU targets on a variant's numbers: ``{name: {"value", "target", "met"}}`` (and ``note`` where
    no verdict is given for a value). The end-to-end targets are judged on trained weights only
    (``bench.infer_ckpt``): the bench's random weights detect an arbitrary number of boxes (53 and 245 an image at
    ``infer_conf`` 0.25 in two runs on a 2-core EPYC VM, against ~25 on BCCD photos for a trained model), and the
    decode + NMS around the forward pass costs with them. The Lightning / bare ratio is judged without loader
    workers only (``lightning_loader_workers`` 0, the CPU default)."""
    values = {k: variant.get(k) for k in ("real_over_bare", "loss_share_of_step", "loss_over_conv1x1")}
    for n in infer_batches:
        values[f"e2e_over_forward_b{n}"] = variant.get(f"infer_b{n}_e2e_over_forward")
    out = {}
    for name, value in values.items():
        op, limit = TARGETS[name.rsplit("_b", 1)[0] if name.startswith("e2e") else name]
        met = None if value is None or value != value else (value >= limit if op == ">=" else value <= limit)
        out[name] = {"value": value, "target": f"{op} {limit}", "met": met}
        if name == "real_over_bare" and variant.get("lightning_loader_workers") and met is not None:
            # on the CPU the bare steps run between the Lightning batches, and loader workers use them to prepare
            # the next batch: the pair then times neither as training runs (2-core VM, session 38: 0.92-0.94 with
            # one worker at nice 19, 0.89-0.91 without workers, and the same training speed in runs of their own)
            note = "loader workers prepare batches during the paired bare steps: run with data.num_workers=0"
            out[name] |= {"met": None, "note": note}
        if name.startswith("e2e") and not trained_weights and met is not None:
            dets = variant.get(f"infer_b{name.rsplit('_b', 1)[1]}_dets_per_img")
            shown = f"{dets:.0f} detections an image" if isinstance(dets, float | int) else "detections unknown"
            out[name] |= {"met": None, "note": f"random weights ({shown}): give bench.infer_ckpt=<trained checkpoint>"}
    return out


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def format_table(res: dict[str, Any]) -> str:
    """The variants side by side (one column each), then the figures measured once and the targets."""
    variants = res["variants"]
    rows = list(dict.fromkeys(k for v in variants.values() for k in v if not k.endswith("_sites")))
    width = max(map(len, rows + ["metric"]))
    cols = [max(len(name), *(len(_fmt(v.get(r, ""))) for r in rows)) for name, v in variants.items()]
    lines = [f"{'metric':<{width}}  " + "  ".join(f"{n:>{c}}" for n, c in zip(variants, cols, strict=True))]
    for r in rows:
        cells = [f"{_fmt(v.get(r, '')):>{c}}" for v, c in zip(variants.values(), cols, strict=True)]
        lines.append(f"{r:<{width}}  " + "  ".join(cells))
    lines += [f"{k} ({name}): {v[k] or 'none'}" for name, v in variants.items() for k in v if k.endswith("_sites")]
    once = {**res["machine"], **res["setup"], **res.get("data_loader", {}), **res.get("postprocess", {})}
    once |= res.get("loss_protocol", {})
    kw = max(map(len, once))
    lines += [""] + [f"{k:<{kw}}  {_fmt(v)}" for k, v in once.items()]
    judged = f" ({res['targets_variant']})" if len(variants) > 1 and res.get("targets_variant") else ""
    for name, t in (res.get("targets") or {}).items():
        verdict = {True: "met", False: "NOT met", None: "n/a"}[t["met"]] + (f": {t['note']}" if t.get("note") else "")
        lines.append(f"target {name}{judged}: {_fmt(t['value'])} ({t['target']}): {verdict}")
    notes = [n for n in (busy_note(res), bf16_note(res)) if n]
    return "\n".join(lines + [f"\n{n}" for n in notes])


def busy_note(res: dict[str, Any]) -> str | None:
    """A warning when the load average at the start or the end exceeded the CPUs (other work shared them: every
    timing and so every verdict above is off), else None."""
    m = res["machine"]
    loads = [m.get(k) for k in ("load_avg_1min_at_start", "load_avg_1min_at_end") if m.get(k) is not None]
    cpus = os.cpu_count() or 1
    if not any(machine_busy(v) for v in loads):
        return None
    return (
        f"WARNING: the load average ({', '.join(f'{v:.2f}' for v in loads)} at the start / end) exceeded the "
        f"{cpus} CPUs: other work shared them, so the timings and the verdicts above are not this machine's; run "
        "the bench again on an idle machine"
    )


def bf16_note(res: dict[str, Any]) -> str | None:
    """A line for a CPU run on AMX that timed no bf16 variant: the command that does (None otherwise)."""
    if res["machine"].get("cpu_bf16") != "amx_bf16":
        return None
    if any(str(v.get("precision", "")).startswith("bf16") for v in res["variants"].values()):
        return None
    return (
        "note: this CPU has AMX bf16 units: 'bench.variants={fp32:{precision:32-true},bf16:{precision:bf16-mixed}}' "
        "times bf16-mixed beside fp32 (trainer.precision=bf16-mixed and detect.py dtype=bfloat16 use it; what it "
        "gained on one such CPU: docs/results/bench_cpu_s36)"
    )


def _report(res: dict[str, Any], out: Path) -> None:
    """Write ``res`` to ``out`` (bench.json); the table and that path go to the terminal and the run's bench.log."""
    out.write_text(json.dumps(res, indent=2))
    log.info("results\n%s\n\nall numbers: %s", format_table(res), out)


def check_settings(b: DictConfig) -> None:
    """Refuse ``bench.*`` settings that a measurement would fail on only after the ones before it ran, naming the
    key: the input size, the batches, the inference weights and images, the device."""
    for key in ("size", "batch_size", "steps"):
        v = b.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 1 or (key == "size" and v % STRIDE):
            what = f"a positive multiple of {STRIDE}" if key == "size" else "a positive integer"
            raise ValueError(f"bench.{key} must be {what}, got {v!r}")
    batches = list(b.get("infer_batches") or [])
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in batches):
        raise ValueError(f"bench.infer_batches must be positive integers, got {batches}")
    if b.get("infer_ckpt") and not Path(str(b.infer_ckpt)).is_file():
        raise FileNotFoundError(f"bench.infer_ckpt={b.infer_ckpt}: no such checkpoint file")
    if b.get("infer_images") and not glob.glob(str(b.infer_images)):
        raise FileNotFoundError(f"bench.infer_images={b.infer_images!r}: no file matches")
    if str(b.device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"bench.device={b.device}: torch finds no CUDA device here (bench.device=cpu times the CPU)")


# ---------------------------------------------------------------------------------------------- main
@hydra.main(version_base="1.3", config_path="../conf", config_name="bench.yaml")
def main(cfg: DictConfig) -> None:
    """Run the benchmark; a user's mistake ends a single run with its message (the traceback in the job's log)."""
    with reported_failures(log):
        bench(cfg)


def bench(cfg: DictConfig) -> None:
    """The benchmark of :func:`main`: every variant timed, the table printed, bench.json written."""
    b = cfg.bench
    check_settings(b)  # before any timing: a wrong key would otherwise fail minutes in, after the training rows
    if b.threads:
        torch.set_num_threads(int(b.threads))
    device = torch.device(b.device)
    if cfg.trainer.get("benchmark") is not None:  # as the trainer sets it, for every measurement alike
        torch.backends.cudnn.benchmark = bool(cfg.trainer.benchmark)
    cfg = bench_config(cfg)
    built = build(cfg)  # what train.py builds (classes, priors), at the bench's batch and size
    mc = built.module.model_config
    base_precision = str(cfg.trainer.precision)
    images = inference_images(b)

    res: dict[str, Any] = {
        "machine": {
            "device": device_name(device),
            **({"cpu_bf16": cpu_bf16_units()} if device.type == "cpu" else {}),  # bf16-mixed pays with amx_bf16
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "python": platform.python_version(),
            "load_avg_1min_at_start": round(os.getloadavg()[0], 2),
        },
        "setup": {
            "batch": int(b.batch_size),
            "size": int(b.size),
            "params": sum(p.numel() for p in built.module.model.parameters()),
            "width": float(cfg.model.net.backbone.width),
            "classes": len(built.info.class_names),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        },
        "variants": {},
    }
    if device.type == "cuda":  # PyTorch's defaults: cuDNN convolutions in TF32 even in a 32-true variant
        res["setup"]["cudnn_allow_tf32"] = bool(torch.backends.cudnn.allow_tf32)
        res["setup"]["matmul_allow_tf32"] = bool(torch.backends.cuda.matmul.allow_tf32)
    for i, (name, settings) in enumerate((b.variants or {"default": {}}).items()):
        precision, fast = split_variant(settings)
        precision = precision or base_precision
        if device.type == "cuda":  # the previous variant's module (held in a cycle with its trainer) freed first
            gc.collect()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        torch._dynamo.reset()  # every variant compiles its own graphs (a compile variant times its compilation)
        module = variant_module(mc, fast, device)
        batch = synthetic_batch(b, module.model.num_classes, device, module.fast.channels_last)
        row: dict[str, Any] = {"precision": precision, **fast}
        row |= time_loops(module, batch, precision, b, device)
        if b.lightning:
            # on the CPU the ratio comes from bare steps alternating with the Lightning batches (a fresh copy of
            # the module: separate blocks of each varied by +-25 % on a shared 2-core VM); on CUDA from the loops
            phases: list[dict[str, float]] = []
            paired = None
            if device.type == "cpu":
                paired = bare_step(variant_module(mc, fast, device), batch, precision, phases=phases)
            row |= time_lightning(cfg, module, precision, device, paired, phases)
            row.setdefault("real_over_bare", row["lightning_img_per_s"] / row["bare_img_per_s"])
        if b.get("infer_ckpt"):  # trained weights for the inference rows (random ones: any number of boxes)
            module.load_state_dict(torch.load(b.infer_ckpt, map_location=device, weights_only=False)["state_dict"])
        warp = bool(OmegaConf.select(cfg, "data.augment.eval_warp", default=True))
        row |= time_inference(module, precision, images, b, device, fast.get("channels_last"), warp)
        row["peak_mem_mb"] = peak_memory_mb(device)
        res["variants"][name] = row
        if i == 0 and b.postprocess:
            res["postprocess"] = time_heads(module, batch["images"], precision, b)
        del module, batch
    if b.data_loader:
        res["data_loader"] = time_loader(cfg, built.datamodule, b)
    if b.get("loss_protocol"):
        p = b.loss_protocol
        fresh = p.get("fresh_process", True)
        res["loss_protocol"] = loss_protocol_in_fresh_process(p, device) if fresh else time_loss_protocol(p, device)
        res["loss_protocol"]["loss_protocol_fresh_process"] = bool(fresh)
    if device.type == "cpu":
        judged = res["targets_variant"] = targets_variant(b.variants or {"default": {}})
        row = res["variants"][judged]
        batches = [int(n) for n in b.infer_batches]
        res["targets"] = check_targets(row | res.get("loss_protocol", {}), batches, bool(b.get("infer_ckpt")))
    res["machine"]["load_avg_1min_at_end"] = round(os.getloadavg()[0], 2)
    _report(res, Path(cfg.paths.output_dir) / "bench.json")


if __name__ == "__main__":
    sys.argv = hydra_flags_first(sys.argv)  # overrides may follow -m
    with hint_unknown_overrides("bench.yaml"):  # a typo'd key: "did you mean ...?" under Hydra's message
        main()
