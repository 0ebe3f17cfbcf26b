"""What a job of a Hydra multirun (``-m``) needs beyond a single run.

- :func:`register_resolvers`: ``${tags_with_overrides:${tags}}`` for W&B tags (the
  experiment's tags plus the job's own overrides, i.e. its ablation values), ``${run_group:...}`` (the W&B
  group: :func:`run_group`) and ``${cpus:8}`` (the CPUs available, capped) and
  ``${loader_workers:<accelerator>,8}`` (the default ``data.num_workers``:
  0 for a CPU trainer, see :func:`loader_workers`).
- :func:`prepare_ddp_relaunch`: Lightning's ``ddp`` strategy starts ranks > 0 by re-running ``sys.argv``; under
  ``-m`` that would start the whole sweep again. Point it at this job instead.
- :func:`end_distributed`: destroy the process group a DDP job created and restore the DDP environment variables
  Lightning set (``LOCAL_RANK``, ``MASTER_PORT``, ...), so the next job of the sweep (same process) launches its
  own ranks again, after :func:`retire_ddp_children` has seen the job's other ranks end and stopped Lightning's
  watcher of them.
"""

from __future__ import annotations

import functools
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf, read_write

WANDB_TAG_MAX = 64  # W&B's limit on the length of a tag
# Set in the launching process by Lightning's subprocess launcher; a leftover LOCAL_RANK makes the next job believe
# its processes are started externally (and wait forever for them).
DDP_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")
_saved_env: dict[str, str | None] | None = None
log = logging.getLogger(__name__)


def tags_with_overrides(tags: Sequence[Any] | None, overrides: Sequence[str] | None) -> list[str]:
    """The config's ``tags`` followed by the job's overrides (``key=value``, at most 64 characters each, W&B's
    limit), without duplicates."""
    out: list[str] = []
    for t in [*(tags or []), *(overrides or [])]:
        t = str(t)[:WANDB_TAG_MAX]
        if t and t not in out:
            out.append(t)
    return out


def available_cpus(cap: int | str | None = None) -> int:
    """CPUs this process may run on (``os.sched_getaffinity``: respects taskset / cgroup CPU sets; else
    ``os.cpu_count()``), at most ``cap``: the ``${cpus:8}`` resolver for ``data.num_workers``."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        n = os.cpu_count() or 1
    return max(1, min(n, int(cap))) if cap not in (None, "") else max(1, n)


def rank_suffix() -> str:
    """``""`` in the main process, ``_rank<r>`` in a distributed job's process of global rank r > 0 (read from the
    environment its launcher set: ``RANK`` (torchrun), ``SLURM_PROCID`` (SLURM tasks), ``LOCAL_RANK`` (Lightning's
    own launcher, one node)): the ``${rank_suffix:}`` resolver of the job's log file name, so that the ranks > 0
    of a run write their own log beside the run's ``<task>.log`` instead of repeating their lines into it."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        value = os.environ.get(key, "")
        if value.isdigit():
            return f"_rank{value}" if int(value) > 0 else ""
    return ""


def loader_workers(accelerator: str | None = "cpu", cap: int | str | None = None) -> int:
    """The default ``data.num_workers`` for a trainer on ``accelerator``: 0 on the CPU, else
    :func:`available_cpus` (at most ``cap``); the ``${loader_workers:${trainer.accelerator},4}`` resolver.

    A CPU training step already keeps every core busy (torch's intra-op threads), so loader workers can only run
    by taking cores from it, and each time one does, the step's other threads wait for it at their next barrier:
    on a 2-core EPYC the real step ran at 0.76-0.79 of the bare loop with two workers, at 0.85-0.89 loading in
    the main process between steps (``src/bench.py``, bare steps paired with the Lightning batches). ``auto``
    counts as the CPU when no CUDA device is present.
    """
    acc = str(accelerator or "cpu").lower()
    if acc == "auto":
        import torch

        acc = "gpu" if torch.cuda.is_available() else "cpu"
    return 0 if acc == "cpu" else available_cpus(cap)


RESUMED_RECORD = ".hydra_resumed"  # the record of a later start in a run's folder (then _2, _3, ...)


def record_subdir(output_dir: str) -> str:
    """Hydra's ``output_subdir`` of a job writing into ``output_dir``: ``.hydra``, or, when the folder's ``.hydra/``
    already holds the record of the run started there (``resume=<run>``, a sweep re-run into its folder, a requeued
    job), which stays the run's record (sweep summaries read it), the first free of ``.hydra_resumed``,
    ``.hydra_resumed_2``, ...: every later start keeps its own record."""
    folder = Path(str(output_dir))
    if not (folder / ".hydra" / "overrides.yaml").is_file():
        return ".hydra"
    n = 1
    while (folder / (RESUMED_RECORD if n == 1 else f"{RESUMED_RECORD}_{n}")).exists():
        n += 1
    name = RESUMED_RECORD if n == 1 else f"{RESUMED_RECORD}_{n}"
    _RESUMED_RECORDS[str(folder)] = name
    return name


_RESUMED_RECORDS: dict[str, str] = {}  # run folder -> the later-start record this process chose there


def drop_resumed_record(output_dir: str | Path) -> None:
    """Remove the ``.hydra_resumed*`` record this process's start wrote into ``output_dir`` (a refused resume
    leaves the folder as it found it); nothing when it wrote none there."""
    import shutil

    name = _RESUMED_RECORDS.pop(str(Path(str(output_dir))), None)
    if name is not None:
        shutil.rmtree(Path(str(output_dir)) / name, ignore_errors=True)


def _resume_folder(resume: str | None) -> str | None:
    """:func:`yolo9000.run_folder.resume_folder` for ``hydra.run.dir``: a ``resume=`` that names no run stops the
    command with its reason alone (Hydra resolves the folder before the job starts; an exception there is shown as
    a page of Hydra's and OmegaConf's frames), before anything is created or written."""
    from yolo9000.run_folder import resume_folder

    try:
        return resume_folder(resume)
    except FileNotFoundError as e:
        raise SystemExit(f"Error: {e}") from None


def run_group(experiment: str, mode: Any, run_dir: str, sweep_dir: str) -> str:
    """A W&B run's group: ``<experiment>_<sweep folder name>`` for a sweep's jobs (they share it), else
    ``<experiment>_<run folder name>``, which a resumed run keeps (its folder is the same; the sweep folder's name was
    the resuming start's timestamp, a group of its own)."""
    folder = sweep_dir if "MULTIRUN" in str(mode) else run_dir
    return f"{experiment}_{Path(str(folder)).name}"


def register_resolvers() -> None:
    """Register the OmegaConf resolvers the configs use (idempotent)."""
    if not OmegaConf.has_resolver("run_group"):  # ${run_group:<experiment>,${hydra:mode},<run dir>,<sweep dir>}
        OmegaConf.register_new_resolver("run_group", run_group)
    if not OmegaConf.has_resolver("max"):  # ${max:a,b}: the larger number (null counts as 0)
        OmegaConf.register_new_resolver("max", lambda *values: max(int(v or 0) for v in values))
    if not OmegaConf.has_resolver("coalesce"):  # ${coalesce:a,b}: a unless it is null, else b
        OmegaConf.register_new_resolver("coalesce", lambda value, default: default if value is None else value)
    if not OmegaConf.has_resolver("resume_folder"):  # ${resume_folder:${resume}}: the run folder a resume continues
        OmegaConf.register_new_resolver("resume_folder", _resume_folder)
    if not OmegaConf.has_resolver("record_subdir"):  # ${record_subdir:<job folder>}: where Hydra saves the job's config
        OmegaConf.register_new_resolver("record_subdir", record_subdir, use_cache=True)
    if not OmegaConf.has_resolver("pid"):  # ${pid:}: this process's id, resolved once (cached like Hydra's ${now:},
        # and copied with it into every job's config, so a sweep's jobs and a SLURM job see the launcher's value)
        OmegaConf.register_new_resolver("pid", os.getpid, use_cache=True)
    if not OmegaConf.has_resolver("rank_suffix"):  # ${rank_suffix:}: "" for rank 0, "_rank<r>" for the others
        OmegaConf.register_new_resolver("rank_suffix", rank_suffix)
    if not OmegaConf.has_resolver("cpus"):  # ${cpus:8}: the CPUs this process may use, at most 8
        OmegaConf.register_new_resolver("cpus", available_cpus)
    if not OmegaConf.has_resolver("loader_workers"):  # ${loader_workers:${trainer.accelerator},8}: 0 on the CPU
        OmegaConf.register_new_resolver("loader_workers", loader_workers)
    if not OmegaConf.has_resolver("darknet_net"):  # ${darknet_net:lr}: model.net's darknet cfg's [net] option
        OmegaConf.register_new_resolver("darknet_net", darknet_net_option)
    if not OmegaConf.has_resolver("tags_with_overrides"):
        OmegaConf.register_new_resolver(
            "tags_with_overrides",
            _tags_node,
        )


def darknet_net_option(key: str, *, _root_: Any) -> Any:
    """``${darknet_net:<key>}`` (conf/model/darknet.yaml): the detector module key ``key`` (``lr``, ``momentum``,
    ``weight_decay``, ``burn_in``, ``power``, ``lr_policy``, ``steps``, ``scales``) as darknet trains the cfg of
    ``model.net`` (``cfg_text``, else the ``cfg`` file): :func:`yolo9000.darknet.net_training_options`; or its
    training augmentation (``jitter``, ``random``, ``hue``, ``saturation``, ``exposure``;
    conf/model/_darknet_data.yaml): :func:`yolo9000.darknet.net_augment_options`. A key given on the command line
    replaces the interpolation. None while no cfg is set or found (the build then names it).

    ``start_seen``: the ``seen`` of ``model.net.weights``' header (darknet's ``load_network`` without ``-clear``
    goes on counting from it; 0 without a weights file, or when it is not there: a resumed run takes its count
    from its checkpoint). ``start_iteration``: darknet's ``get_current_batch`` at the start, ``model.start_seen``
    (0 given on the command line: darknet's ``-clear``) over the ``[net]`` batch."""
    net = OmegaConf.select(_root_, "model.net", default=None, throw_on_missing=False)
    if key == "start_seen":
        weights = OmegaConf.select(net, "weights", default=None, throw_on_missing=False) if net is not None else None
        if not weights or not Path(str(weights)).is_file():
            return 0
        from yolo9000.darknet import read_header

        return int(read_header(str(weights))[0].seen)
    text = OmegaConf.select(net, "cfg_text", default=None, throw_on_missing=False) if net is not None else None
    path = OmegaConf.select(net, "cfg", default=None, throw_on_missing=False) if net is not None else None
    if not text:
        if not path or not Path(str(path)).is_file():
            return None
        from yolo9000.darknet import read_text

        text = read_text(str(path))
    options = _net_options(str(text), str(path or "<cfg>"))
    if key == "start_iteration":
        return int(OmegaConf.select(_root_, "model.start_seen", default=0) or 0) // options["batch"]
    if key == "lr_policy" and options[key] is None:
        raise ValueError(
            f"{options['policy']}: darknet's policy is not a schedule here (steps, poly, constant): set "
            "model.lr_policy=steps|poly and its keys (model.steps, model.scales / model.power)"
        )
    return options[key]


@functools.lru_cache(maxsize=8)
def _net_options(text: str, name: str) -> dict[str, Any]:
    """The cfg's training options (:func:`yolo9000.darknet.net_training_options`) and augmentation
    (:func:`yolo9000.darknet.net_augment_options`)."""
    from yolo9000.darknet import net_augment_options, net_training_options, parse_cfg_text

    sections = parse_cfg_text(text, name)
    return {**net_training_options(sections), **net_augment_options(sections)}


def _tags_node(tags: Any = None, overrides: Any = None) -> Any:
    """``${tags_with_overrides:${tags}}``: :func:`tags_with_overrides` of the tags and the job's overrides as typed
    (``overrides``, else the running job's), as a list node whose ``${`` are escaped: an override's interpolation
    is kept as its text, never resolved inside the tags (it would resolve relative to the list and fail)."""
    plain = [
        OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
        for v in (tags, overrides if overrides is not None else _job_overrides())
    ]
    return OmegaConf.create([t.replace("${", "\\${") for t in tags_with_overrides(*plain)])


def _job_overrides() -> list[str]:
    """The running Hydra job's overrides as typed (:func:`task_overrides`); [] outside a job. ``${hydra:
    overrides.task}`` in a config resolves each override's own interpolation in the wrong place (W&B's tags of a
    run given ``'data.root=${paths.data_dir}/x'`` failed to resolve)."""
    from hydra.core.hydra_config import HydraConfig

    return task_overrides(HydraConfig.get()) if HydraConfig.initialized() else []


def task_overrides(hc: Any) -> list[str]:
    """The job's command-line overrides (``hydra.overrides.task``) as typed: an interpolation in one
    (``'data.root=${paths.data_dir}/x'``) stays as written (reading the list's items resolves them, so the run
    folder's record, written raw by Hydra, never matched the job)."""
    return [str(o) for o in OmegaConf.to_container(hc.overrides.task, resolve=False)]  # type: ignore[union-attr]


def _multirun_job() -> Any | None:
    """The Hydra config of the current job when it is one job of a multirun, else None."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hc = HydraConfig.get()
    return hc if hc.mode == RunMode.MULTIRUN else None


def prepare_ddp_relaunch() -> None:
    """Under ``-m``, make Lightning's DDP subprocess launcher re-run this job, not the sweep.

    Lightning starts rank r > 0 as ``python <script> <sys.argv[1:]> hydra.run.dir=<hydra.run.dir> ...``. For a
    multirun job, ``sys.argv`` holds ``-m`` and the sweep, and ``hydra.run.dir`` is not the job's folder. So
    ``sys.argv`` becomes this job's own overrides (config path and name kept) and ``hydra.run.dir`` the job's
    output folder. A no-op outside a multirun (SLURM / submitit jobs create their processes externally).
    """
    global _saved_env
    hc = _multirun_job()
    if hc is None:
        return
    _saved_env = {k: os.environ.get(k) for k in DDP_ENV}
    args = [f"--config-name={hc.job.config_name}"]
    main = [s for s in hc.runtime.config_sources if s.provider == "main" and s.schema == "file"]
    if main:
        args.insert(0, f"--config-path={main[0].path}")
    sys.argv = [sys.argv[0], *args, *task_overrides(hc)]
    with read_write(hc):
        hc.run.dir = hc.runtime.output_dir


def retire_ddp_children(grace: float = 30.0) -> None:
    """Under ``-m``, when a DDP job ends: wait for its rank > 0 processes (SIGKILL those still running after
    ``grace`` seconds: a rank stuck in a collective of the failed job) and stop Lightning's watcher of them.

    The watcher (a thread of this process, polling every 5 s) SIGKILLs this process as soon as one of them has
    exited non-zero, which is right for a single run; in a sweep this process goes on with the next job, and a
    failed job's rank 1, exiting a moment after rank 0 gave up, killed the whole sweep there. A no-op outside a
    multirun."""
    if _multirun_job() is None:
        return
    try:
        from lightning_fabric.strategies.launchers.subprocess_script import _ChildProcessObserver
    except ImportError:  # another Lightning layout: nothing of ours to stop
        return
    for watcher in [t for t in threading.enumerate() if isinstance(t, _ChildProcessObserver)]:
        procs = list(watcher._child_processes)
        watcher._child_processes = []  # its next look finds nothing to judge (an empty list counts as all done)
        watcher._finished = True
        deadline = time.monotonic() + grace
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                log.warning("rank process %d of the ended job still runs after %.0f s: killed", proc.pid, grace)
                proc.kill()
                proc.wait()


def end_distributed() -> None:
    """After a multirun job: destroy its default process group and restore the DDP environment variables saved by
    :func:`prepare_ddp_relaunch` (the next job's DDP starts from scratch)."""
    global _saved_env
    import torch.distributed as dist

    if _multirun_job() is None:
        return
    retire_ddp_children()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    for k, v in (_saved_env or {}).items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    _saved_env = None
