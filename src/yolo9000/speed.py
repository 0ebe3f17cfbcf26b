"""Wall-clock timing shared by the speed numbers (``src/bench.py``, :mod:`yolo9000.tradeoff`): calls timed after
untimed warm-up calls, synchronised on CUDA, and the name of the device they ran on. Benchmarks print; tests never
assert on a time. Also the module's fast-path switches (:class:`FastPath`, ``model.fast``): channels_last,
``torch.compile`` and the fused / foreach optimizer."""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = [
    "PRECISION_AUTOCAST",
    "keep_freed_memory",
    "FastPath",
    "apply_fast_path",
    "call_times",
    "channels_last_images",
    "float_images",
    "machine_busy",
    "device_name",
    "inference_dtype",
    "is_compiled",
    "optimizer_flags",
    "set_channels_last",
    "sync",
    "time_calls",
    "timeit",
]


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


def call_times(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device | str) -> list[float]:
    """Seconds of each of ``steps`` calls of ``fn`` (at least one) after ``warmup`` untimed ones, the device
    synchronised around every call: their median is robust to other processes sharing the CPU."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(max(int(steps), 1)):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def timeit(fn: Callable[[], Any], steps: int, warmup: int, device: torch.device | str) -> float:
    """Seconds per call of ``fn`` (mean over ``steps`` calls after ``warmup`` untimed ones)."""
    return time_calls(fn, steps, warmup, device)[0]


def _cpuinfo_field(name: str) -> str | None:
    """The first ``name : value`` of ``/proc/cpuinfo`` (Linux), else None."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.split(":", 1)[0].strip() == name:
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_model() -> str | None:
    """The processor's model name (Linux's ``/proc/cpuinfo``), else None."""
    return _cpuinfo_field("model name")


_BF16_UNITS = ("amx_bf16", "smeb16f32", "avx512_bf16", "svebf16", "bf16")  # best first; Linux's names for them


def cpu_bf16_units(flags: str | None = None) -> str:
    """The CPU's bfloat16 arithmetic, from its feature flags (``flags``: a ``/proc/cpuinfo`` ``flags`` line (x86) or
    ``Features`` line (ARM); None: this machine's). Matrix units first, then vector ones: ``amx_bf16`` (Intel Xeon
    4th generation and later), ``smeb16f32`` (ARM's SME bf16 outer products), ``avx512_bf16`` / ``svebf16`` / ``bf16``
    (vector dot products: x86, ARM SVE, ARM NEON), else ``none`` (no bf16 arithmetic: autocast only adds
    conversions), or ``unknown`` (no flags to read: not Linux). What bf16-mixed gained on an AMX CPU:
    ``docs/results/bench_cpu_s36``."""
    line = (_cpuinfo_field("flags") or _cpuinfo_field("Features")) if flags is None else flags
    if line is None:
        return "unknown"
    have = set(line.split())
    return next((f for f in _BF16_UNITS if f in have), "none")


def dtype_name(dtype: torch.dtype) -> str:
    """``float32``, ``bfloat16``, ``float16``: a torch dtype as the Detector, tradeoff.csv and the logs name it."""
    return str(dtype).removeprefix("torch.")


def device_name(device: torch.device | str) -> str:
    """What a timing ran on: the GPU's name (``cuda``), else ``cpu`` and the processor model where known. The
    thread count is reported apart (``torch.get_num_threads()``)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    if device.type == "cpu":
        model = cpu_model()
        return f"cpu ({model})" if model else "cpu"
    return str(device)


# ---------------------------------------------------------------------------------------------- fast path
@dataclass(frozen=True)
class FastPath:
    """The module's fast-path switches (``model.fast``; every one off by default, the plain fp32 eager path).
    Mixed precision (``trainer.precision``), cudnn benchmark (``trainer.benchmark``) and pinned memory
    (``data.pin_memory``) are Lightning's and the DataModule's keys.

    Attributes:
        channels_last: NHWC memory format for the network's weights and the input batches (faster convolutions
            with tensor cores under bf16 / fp16).
        compile: ``torch.compile`` the network in place (:meth:`torch.nn.Module.compile`: parameter names and
            checkpoints unchanged) for fitting (training and validation).
        compile_mode: ``torch.compile`` mode (None = ``default``; ``reduce-overhead``, ``max-autotune``...).
        compile_dynamic: ``None``: the first input shape compiles static, a dimension that changes later (the
            multi-scale size, a last smaller batch) is marked dynamic and compiled once more: a handful of graphs
            in all, none per step. ``True``: dynamic from the start (one graph per mode). ``False``: one static
            graph per input shape (fastest kernels; every multi-scale size compiles once, the recompile limit is
            raised to :data:`STATIC_RECOMPILE_LIMIT`).
        compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager`` traces without generating code).
        compile_loss: ``torch.compile`` the detector's region loss (:meth:`yolo9000.loss.RegionLoss.compile_deltas`:
            dynamic shapes, the backend above) for fitting: its few hundred small operations become a few fused
            kernels (fewer GPU launches, less CPU dispatch). Detectors only.
        fused_optimizer: None / ``auto`` (fused kernels on CUDA, torch's default elsewhere), ``True`` (fused, also
            on the CPU), ``foreach`` (multi-tensor kernels), ``False`` (a loop over the parameters).
        keep_freed_memory: the process's malloc keeps freed memory for reuse (:func:`keep_freed_memory`): CPU steps
            stop page-faulting their activations back in. Process-wide, the same values.
    """

    channels_last: bool = False
    compile: bool = False
    compile_mode: str | None = None
    compile_dynamic: bool | None = None
    compile_backend: str = "inductor"
    compile_loss: bool = False
    fused_optimizer: bool | str | None = None
    keep_freed_memory: bool = False

    @classmethod
    def of(cls, cfg: Mapping[str, Any] | FastPath | None) -> FastPath:
        """From the ``model.fast`` mapping (None: all off); an unknown key raises."""
        if isinstance(cfg, FastPath):
            return cfg
        cfg = dict(cfg or {})
        unknown = set(cfg) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"model.fast: unknown keys {sorted(unknown)}; known: {[f.name for f in fields(cls)]}")
        fast = cls(**cfg)
        for name in ("channels_last", "compile", "compile_loss", "keep_freed_memory", "compile_dynamic"):
            value = getattr(fast, name)  # a string such as "maybe" is truthy: it compiled instead of refusing
            if not isinstance(value, bool) and not (value is None and name == "compile_dynamic"):
                allowed = "true/false" + ("/null" if name == "compile_dynamic" else "")
                raise ValueError(f"model.fast.{name} must be {allowed}, got {value!r}")
        if fast.fused_optimizer not in (None, True, False, "auto", "foreach"):
            raise ValueError(
                f"model.fast.fused_optimizer must be null/auto/true/false/foreach, got {fast.fused_optimizer!r}"
            )
        return fast


STATIC_RECOMPILE_LIMIT = 64  # graphs per compiled frame allowed with compile_dynamic=false (sizes x modes x batches)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc mallopt parameters (malloc.h)
_KEPT = False
log = logging.getLogger(__name__)


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to keep freed memory for reuse, for the rest of the process: blocks of any size come from
    the heap (no fresh ``mmap`` pages for large ones) and the heap is never trimmed back.

    PyTorch's CPU tensors use malloc. With glibc's defaults every activation over ~32 MB is a fresh mapping, freed
    back to the system at the end of the step, so each training step page-faults its activations in again: the
    default CPU model (batch 16 at 256) took 53-69k minor faults a step, 267-309 ms, and 1-2k faults, 177-200 ms,
    with this (2-core EPYC, plain PyTorch loop). Until the heap has settled, glibc's placement may still grow it
    (fresh pages) for a few steps; after that none (``tests/test_fast_path.py``). The values computed are the
    same; the process's resident memory stays at its peak instead of shrinking between steps. Forked processes
    (DataLoader workers) inherit it.

    Returns:
        True when applied (Linux with glibc; again: a no-op), False where there is no glibc (nothing changes).
    """
    global _KEPT
    if _KEPT:
        return True
    ok = _mallopt(mmap_threshold=1 << 30, trim_threshold=2**31 - 1, top_pad=64 << 20)
    if ok:
        _KEPT = True
        log.info("malloc keeps freed memory for reuse (model.fast.keep_freed_memory)")
    return ok


def _mallopt(mmap_threshold: int, trim_threshold: int, top_pad: int) -> bool:
    """glibc's ``mallopt`` of the three settings (bytes) for this process; False where there is no glibc (musl,
    macOS, Windows: malloc as it is)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        settings = ((_M_MMAP_THRESHOLD, mmap_threshold), (_M_TRIM_THRESHOLD, trim_threshold), (_M_TOP_PAD, top_pad))
        return all(libc.mallopt(param, ctypes.c_int(value)) for param, value in settings)
    except (OSError, AttributeError):
        return False


def worker_malloc(mmap_threshold: int = 128 << 10) -> bool:
    """A DataLoader worker's malloc: blocks of ``mmap_threshold`` bytes and more are mappings of their own, given
    back to the system when freed, and the heap's free top is trimmed (glibc's start-up settings, made fixed).

    A worker allocates and frees the same few large buffers every sample (decoded images, crops, the collated
    batch). glibc's default raises its mmap threshold to the largest such block freed (up to 32 MB), after which
    they come from the heap, which fragments and is never given back: ImageNet-sized classification at 224, batch
    128, 2 workers: +1.0-1.3 GB of private heap per worker after 25k samples; with this +1-46 MB (2-core Xeon VM).
    A worker forked from a process that applied :func:`keep_freed_memory` (the CPU models) would keep everything.

    Returns:
        True when applied (Linux with glibc), False elsewhere (nothing changes).
    """
    global _KEPT
    ok = _mallopt(mmap_threshold=mmap_threshold, trim_threshold=128 << 10, top_pad=0)
    _KEPT = _KEPT and not ok
    return ok


def apply_fast_path(model: nn.Module, fast: FastPath, compile: bool = True) -> nn.Module:
    """``model`` (modified in place and returned) in channels_last and compiled, as ``fast`` asks; ``compile=False``
    skips compiling (evaluation outside fitting)."""
    if fast.keep_freed_memory:
        keep_freed_memory()
    if fast.channels_last:
        set_channels_last(model, True)
    if fast.compile and compile:
        if fast.compile_dynamic is False:
            allow_static_graphs()
        model.compile(backend=fast.compile_backend, mode=fast.compile_mode, dynamic=fast.compile_dynamic)
    return model


def allow_static_graphs() -> None:
    """Raise torch's recompile limit (process-wide) to :data:`STATIC_RECOMPILE_LIMIT` graphs per compiled frame, for
    one static graph per input shape (past the limit torch falls back to eager with only a warning)."""
    cfg = torch._dynamo.config
    cfg.recompile_limit = max(int(cfg.recompile_limit), STATIC_RECOMPILE_LIMIT)


COMPILE_KEYS = ("backend", "mode", "dynamic", "fullgraph", "options")  # torch.compile's keywords an inference takes


def inference_compile_options(setting: bool | str | Mapping[str, Any] | None) -> dict[str, Any] | None:
    """``torch.compile`` keywords of an inference network's ``compile`` setting (:class:`yolo9000.Detector`): None or
    False: None (eager); True: ``{"dynamic": False}``; a string: that ``mode`` (``reduce-overhead``: CUDA graphs,
    ``max-autotune``, ...); a mapping: those keywords (:data:`COMPILE_KEYS`). ``dynamic`` defaults to False: one
    static graph per input shape, each compiled once (on a 2-core CPU a dynamic graph of the default model took 400 s
    to compile against 10-20 s for a static one, and its detections of 32 photos were not all the eager network's;
    the static graphs' outputs were identical to it)."""
    if setting is None or setting is False:
        return None
    if setting is True:
        return {"dynamic": False}
    if isinstance(setting, str):
        return {"mode": setting, "dynamic": False}
    if isinstance(setting, Mapping):  # a dict, or a config's mapping (made plain, nested ones too)
        unknown = sorted(set(setting) - set(COMPILE_KEYS))
        if unknown:
            raise ValueError(f"compile: unknown torch.compile keys {unknown}; known: {list(COMPILE_KEYS)}")
        return {"dynamic": False, **_plain(setting)}
    raise TypeError(f"compile must be a bool, a torch.compile mode or a mapping of its keywords, got {setting!r}")


def _plain(value: Any) -> Any:
    """``value`` with every mapping in it a plain dict (a Hydra config's ``DictConfig`` included)."""
    return {k: _plain(v) for k, v in value.items()} if isinstance(value, Mapping) else value


def compile_network(model: nn.Module, options: Mapping[str, Any]) -> nn.Module:
    """``torch.compile(model, **options)``: a compiled wrapper (``model`` itself stays eager); static graphs
    (``dynamic=False``) get :func:`allow_static_graphs`. An unknown ``mode`` raises here; a backend that cannot
    build (no C++ compiler for the CPU's inductor) at the first call."""
    if options.get("dynamic") is False:
        allow_static_graphs()
    return torch.compile(model, **options)


def is_compiled(model: nn.Module) -> bool:
    """Whether ``model`` runs compiled: a ``torch.compile`` wrapper, or it or a submodule ``compile()``-d in place
    (``model.fast.compile``)."""
    if isinstance(getattr(model, "_orig_mod", None), nn.Module):
        return True
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


# Lightning's precision settings an inference can reproduce: the forward pass's autocast dtype (None: float32)
PRECISION_AUTOCAST: dict[str, torch.dtype | None] = {
    "32-true": None,
    "32": None,
    "bf16-mixed": torch.bfloat16,
    "16-mixed": torch.float16,
}


def inference_dtype(precision: Any) -> torch.dtype:
    """The dtype an inference runs at to reproduce a Trainer's ``precision``: float32, or the autocast dtype of a
    ``*-mixed`` one. Raises ValueError for the others (``bf16-true``, ``64-true``: weights themselves converted)."""
    key = str(precision)
    if key not in PRECISION_AUTOCAST:
        raise ValueError(f"precision {key!r} has no inference counterpart: use one of {sorted(PRECISION_AUTOCAST)}")
    return PRECISION_AUTOCAST[key] or torch.float32


def set_channels_last(model: nn.Module, on: bool) -> nn.Module:
    """``model``'s 4-D weights in NHWC (``on``) or NCHW memory, in place (the same values)."""
    return model.to(memory_format=torch.channels_last if on else torch.contiguous_format)


def channels_last_images(images: torch.Tensor) -> torch.Tensor:
    """A (B, C, H, W) batch in NHWC memory format (same values and shape)."""
    return images.contiguous(memory_format=torch.channels_last) if images.dim() == 4 else images


def float_images(images: torch.Tensor, channels_last: bool, pixels: bool = False) -> torch.Tensor:
    """uint8 (B, C, H, W) pixels -> float32 in [0, 1] in NHWC (``channels_last``) or NCHW memory, in one copy
    whatever the input's layout (the NCHW-from-NHWC conversion of uint8 alone costs more than this whole call).
    ``pixels``: the values kept at 0-255, cast only (a network whose first convolution has the 1 / 255 folded in,
    :func:`~yolo9000.models.layers.fold_input_scale`: the division reads and writes the batch a second time, 32
    images at 256: 0.6 ms against 1.6 on a 2-core Xeon VM). A float batch (values in [0, 1]) is returned as it is
    in the requested layout, or scaled to 0-255 for ``pixels``."""
    fmt = torch.channels_last if channels_last and images.dim() == 4 else torch.contiguous_format
    if images.dtype != torch.uint8:
        return images.mul(255.0).contiguous(memory_format=fmt) if pixels else images.contiguous(memory_format=fmt)
    x = images.to(torch.float32, memory_format=fmt)
    return x if pixels else x.div_(255.0)


def machine_busy(load_avg: float) -> bool:
    """A 1-minute load average above the machine's CPU count: other work shared the CPU with a timing."""
    return load_avg > (os.cpu_count() or 1)


def optimizer_flags(setting: bool | str | None, device: torch.device | str) -> dict[str, bool]:
    """``torch.optim`` keyword arguments of ``fused_optimizer`` on ``device`` ({} = torch's default)."""
    if setting is None or setting == "auto":
        return {"fused": True} if torch.device(device).type == "cuda" else {}
    if setting == "foreach":
        return {"foreach": True}
    return {"fused": True} if setting else {"foreach": False}
