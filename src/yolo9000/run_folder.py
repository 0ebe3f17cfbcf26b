"""A training run's folder: where a run starts from and what it must agree with to continue there.

``resume=<run>`` (or a requeued job) continues the folder's ``checkpoints/last.ckpt``; the folder keeps the
command-line overrides the run was started with (``launch_overrides.txt``), and a continuation must train on the
same data, the same classes, and stops at once when the folder already holds its finished result.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import re
import shlex
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from yolo9000.report import is_reporting_key

log = logging.getLogger("yolo9000.train")

__all__ = [
    "LAUNCH_FILE",
    "LOCK_FILE",
    "RunFolderBusy",
    "ResumeRefused",
    "check_checkpoint_classes",
    "module_kind",
    "check_required",
    "check_start_weights",
    "check_resume_config",
    "check_resume_progress",
    "check_same_job",
    "finished_result",
    "launching_process",
    "lock_run_folder",
    "release_run_folder",
    "resume_checkpoint",
    "resume_folder",
    "run_of",
]


def run_of(path: Path) -> Path:
    """The run folder a ``resume=`` path names, unchecked: a checkpoint file's run (its folder, or the one above
    ``checkpoints/``), the run of a ``checkpoints/`` folder, else the folder itself."""
    if path.is_file():
        path = path.parent
    return path.parent if path.name == "checkpoints" else path


def resume_folder(resume: str | None) -> str | None:
    """The run folder a ``resume=`` value continues (Hydra's ``hydra.run.dir``, resolved before Hydra creates or
    writes anything): the run's folder as given, or the run of its ``checkpoints/`` folder or of a checkpoint file
    in it (``<run>/checkpoints/last.ckpt``, ``<run>/hpc_ckpt_<n>.ckpt``); None for None.

    Raises:
        FileNotFoundError: ``resume`` does not exist, or names neither a training run's folder (one with
            ``config.yaml``) nor a checkpoint in one (a checkpoint kept elsewhere starts a new run:
            ``ckpt_path=``).
    """
    if resume is None:
        return None
    path = Path(str(resume))
    if not path.exists():
        raise FileNotFoundError(f"resume={resume}: no such run folder or checkpoint file")
    if path.is_file():
        run = run_of(path)
        if (run / "config.yaml").is_file():
            return str(run)
        raise FileNotFoundError(
            f"resume={resume}: not a checkpoint of a training run's folder (no config.yaml in {run}); to start a "
            f"new run from it: ckpt_path={resume}"
        )
    if path.name == "checkpoints" and (path.parent / "config.yaml").is_file():
        return str(path.parent)
    if not (path / "config.yaml").is_file() and (path / LAUNCH_FILE).is_file():  # a run that stopped at its start
        command = (path / LAUNCH_FILE).read_text().strip()
        raise FileNotFoundError(
            f"resume={resume}: the run stopped while starting, before it wrote its config.yaml or any checkpoint "
            f"(its log: {path / 'train.log'}): nothing to continue; start it again into its folder: python "
            f"src/train.py {command} hydra.run.dir={path}"
        )
    if not (path / "config.yaml").is_file():
        raise FileNotFoundError(
            f"resume={resume}: not the folder of a training run (no config.yaml); resume takes a run's folder or "
            f"its checkpoint, a checkpoint kept elsewhere starts a new run as ckpt_path=<file>"
        )
    return str(path)


def resume_checkpoint(cfg: DictConfig, out_dir: Path) -> str | None:
    """The checkpoint training starts from: when the run folder already holds checkpoints (``resume=<run>`` or
    ``resume=<its newest checkpoint>``, a requeued SLURM job, a run started from ``ckpt_path`` and continued), the
    newest of ``checkpoints/last.ckpt`` and Lightning's ``hpc_ckpt_<n>.ckpt`` (neither: a run killed between its
    first epoch checkpoint, written at validation end, and its first ``last.ckpt``, written at the epoch's end,
    continues from the newest readable ``checkpoints/*.ckpt``: the same state, the same training); else ``ckpt_path``
    when given (a new run from another run's state); else none (a fresh run).

    Raises:
        FileNotFoundError: ``resume`` names nothing, or a folder that is not a run's.
        ResumeRefused: ``resume`` names a checkpoint older than the run's newest (a run continues from its latest
            state; an earlier one starts a new run as ``ckpt_path=``; one saved at the same step, an epoch's
            ``epoch_NNN.ckpt`` beside its ``last.ckpt``, continues from the newest), or a run that saved none
            (started again with its own command instead).
    """
    resume = cfg.get("resume")
    if resume and not Path(resume).exists():
        raise FileNotFoundError(f"resume={resume}: no such run folder or checkpoint file")
    found = [p for p in [out_dir / "checkpoints" / "last.ckpt", *out_dir.glob("hpc_ckpt_*.ckpt")] if p.is_file()]
    damaged = {p: err for p in found if (err := _load_error(p)) is not None}
    if resume and Path(resume).is_file() and (err := damaged.get(Path(resume)) or _load_error(Path(resume))):
        raise ResumeRefused(
            f"resume={resume}: the checkpoint cannot be read ({err}): it was cut short or damaged; continue the "
            f"run from its newest readable checkpoint with resume={out_dir}"
        )
    for path, err in damaged.items():  # a file cut short (disk full, an interrupted copy): the run's older state
        log.warning("%s cannot be read (%s): it was cut short or damaged; passed over", path, err)
    found = [p for p in found if p not in damaged]
    if not found:
        found = _epoch_states(out_dir)
    if damaged and not found:
        names = ", ".join(str(p) for p in damaged)
        raise ResumeRefused(
            f"{names}: cannot be read ({next(iter(damaged.values()))}): cut short or damaged, and the run has no "
            f"other readable checkpoint in {out_dir / 'checkpoints'}: nothing to continue from; start the run "
            "again into a new folder"
        )
    if cfg.ckpt_path and not found:
        return str(cfg.ckpt_path)
    if resume and Path(resume).is_file():
        newest = max(found, key=lambda p: p.stat().st_mtime) if found else None
        if newest is None or not (newest.samefile(resume) or _same_state(newest, Path(resume))):
            raise ResumeRefused(
                f"resume={resume}: a run continues from its newest checkpoint, "
                f"{newest if newest is not None else 'none in ' + str(out_dir)}: resume={out_dir}; to train on from "
                f"this checkpoint instead, start a new run: ckpt_path={resume}"
            )
    if not found:
        if cfg.get("resume"):
            folder = Path(cfg.resume)
            if folder.name == "checkpoints" and (folder.parent / "config.yaml").is_file():
                hint = f": resume takes the run's folder, resume={folder.parent}"
            elif not (folder / "config.yaml").is_file():
                hint = " (no config.yaml: not the folder of a training run; a checkpoint file goes as ckpt_path=...)"
            else:
                launch = folder / LAUNCH_FILE
                command = launch.read_text().strip() if launch.is_file() else "<the run's overrides>"
                raise ResumeRefused(
                    f"resume={cfg.resume}: the run saved no checkpoint (it stopped before its first save): nothing "
                    f"to continue; start it again into its folder: python src/train.py {command} "
                    f"hydra.run.dir={folder}"
                )
            raise FileNotFoundError(
                f"resume={cfg.resume}: no checkpoints/last.ckpt or hpc_ckpt_*.ckpt to continue{hint}"
            )
        return None
    return str(max(found, key=lambda p: p.stat().st_mtime))


def run_overrides(out_dir: Path) -> str | None:
    """The overrides a run is continued with: those of the process that wrote its latest result (``metrics.json``
    records them: a run trained further has its longer ``trainer.max_epochs`` there), else those it was started
    with (``launch_overrides.txt``); None when neither is known."""
    metrics = out_dir / "metrics.json"
    launch = out_dir / LAUNCH_FILE
    try:
        recorded = json.loads(metrics.read_text()).get("overrides") if metrics.is_file() else None
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, list) and all(isinstance(o, str) for o in recorded):
        return " ".join(shlex.quote(o) for o in recorded)
    return launch.read_text().strip() if launch.is_file() else None


def _epoch_states(out_dir: Path) -> list[Path]:
    """The newest readable checkpoint of ``<run>/checkpoints`` (a list of at most one), for a run without
    ``last.ckpt``: killed after its first epoch checkpoint, before its first ``last.ckpt`` (or while writing it:
    ``last.ckpt.tmp`` is never read). A file cut short by the kill does not load and is passed over."""
    files = [p for p in (out_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
    saved = [(at, p) for p in files if (at := _saved_at(p)) is not None]
    if not saved:
        return []
    at, newest = max(saved, key=lambda s: (s[0], s[1].stat().st_mtime))
    log.warning(
        "%s: no last.ckpt (a run stopped before its first one was written, or it was deleted): continuing from "
        "%s, the newest readable checkpoint, saved in epoch %d at optimizer step %d",
        out_dir,
        newest.name,
        at[0] + 1,
        at[1],
    )
    return [newest]


def saved_at_text(ckpt_file: str | Path) -> str:
    """Where a checkpoint stands, for the resume line: ``epoch 3, optimizer step 120`` (epochs counted from 1, as
    the epoch lines count them); "" for a file that is not a Lightning checkpoint."""
    at = _saved_at(Path(ckpt_file))
    return f"epoch {at[0] + 1}, optimizer step {at[1]}" if at is not None else ""


def _same_state(a: Path, b: Path) -> bool:
    """Two checkpoints saved at the same (epoch, global_step) (an epoch's best checkpoint and its last.ckpt)."""
    at = _saved_at(a)
    return at is not None and at == _saved_at(b)


def _load_error(ckpt_file: Path) -> str | None:
    """Why a checkpoint file cannot be read (:func:`_loader_reason`), None when it loads."""
    try:
        torch.load(ckpt_file, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - whatever the loader says, the file is not a usable checkpoint
        return _loader_reason(err)
    return None


def _loader_reason(err: BaseException) -> str:
    """torch.load's error on a damaged file, shortened to its first sentence."""
    return f"{type(err).__name__}: {str(err).split('. ')[0]}"


def _saved_at(ckpt_file: Path) -> tuple[int, int] | None:
    """(epoch, global_step) a Lightning checkpoint was saved at (an epoch's best checkpoint and its last.ckpt are
    the same state); None for a file that is not one."""
    try:
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False, mmap=True)
        return int(ckpt["epoch"]), int(ckpt["global_step"])
    except Exception:  # noqa: BLE001 - any unreadable file is simply not the same state
        return None


# the keys that say which images and labels a run trains on (the rest of the data block may change on resume)
_DATA_KEYS = ("_target_", "root", "class_names", "yaml_file", "names_file", "data_file", "ann_files", "image_dir")
_DATA_KEYS += ("ann_dir", "images_dir")
_DATA_KEYS += ("split_files", "split_fractions", "split_seed", "max_images", "train", "val", "test")
LAUNCH_FILE = "launch_overrides.txt"  # the command-line overrides a run folder was started with (never rewritten)
# the settings that decide the rest of a run's training beside its data (the checkpoint restores the weights and
# the optimizer and schedule states, not these): a resume with other values would apply some and record others
_TRAJECTORY = ("seed", "model.", "data.batch_size", "data.seed", "data.multiscale.", "data.augment.", "data.img_size")
_TRAJECTORY += ("data.max_boxes", "data.shuffle_boxes", "data.include_difficult", "data.drop_last")
# the optimizer steps of an epoch (as the batch size: the schedule's steps, the position inside an epoch) and the
# batches an epoch trains (as data.max_images)
_TRAJECTORY += ("trainer.accumulate_grad_batches", "trainer.limit_train_batches")
_FREE = ("model.fast.",)  # speed switches: the same training either way
# the starting weights file's seen and schedule iteration: read from the file at the start (0 once it is gone); a
# resume takes both from its checkpoint (the seen buffer, the scheduler's state)
_FREE += ("model.start_seen", "model.start_iteration")


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    """A nested config container as {dotted key: leaf value}."""
    if not isinstance(d, dict) or not d:
        return {prefix.rstrip("."): d}
    return {k: v for key, val in d.items() for k, v in _flat(val, f"{prefix}{key}.").items()}


class ResumeRefused(ValueError):
    """A job that may not continue the run in its folder (other data, another sweep job's folder): nothing is
    written into the run's folder."""


def check_resume_config(cfg: DictConfig, out_dir: Path) -> None:
    """A run continued in its folder (``resume=<run>``) must go on with the data it was trained on.

    Hydra composes ``resume=<run>`` with the defaults plus what is on this command line, so a resume without the
    run's ``data=...`` overrides would train on the default data (BCCD), with its classes in its order. Compares
    the run's ``config.yaml`` (resolved, as this job's) with this job's config: a difference in the dataset keys or
    in the settings that decide the rest of the training (``seed``, ``model.*`` but its speed switches, the batch
    size, multi-scale and augmentation: a changed ``model.lr`` would not apply, the schedule's steps were counted
    at the run's batch size) raises :class:`ResumeRefused` naming every one and the overrides the run was started
    with (``launch_overrides.txt``). Other differences are logged: how far or how fast it goes on
    (``trainer.max_epochs`` / ``max_steps``, ``data.num_workers``) as information, paths that moved with the run folder
    (a folder copied elsewhere and resumed there) not at all, the rest as a warning."""
    saved = out_dir / "config.yaml"
    if not saved.is_file():
        return
    try:
        old = OmegaConf.to_container(OmegaConf.load(saved), resolve=False)
    except Exception as err:  # noqa: BLE001 - YAML's or OmegaConf's: the run's record cannot be compared
        raise ResumeRefused(
            f"resume={out_dir}: {saved} cannot be read ({type(err).__name__}: {' '.join(str(err).split())}): it "
            "records the run's config, which a resume is checked against; restore or repair it"
        ) from err
    if not isinstance(old, dict):
        raise ResumeRefused(f"resume={out_dir}: {saved} holds no config (a YAML mapping); restore or repair it")
    new = OmegaConf.to_container(cfg, resolve=True)
    old_data, new_data = old.get("data") or {}, new.get("data") or {}  # type: ignore[union-attr]
    diff = [
        f"data.{k}: {old_data.get(k)!r} (the run) vs {new_data.get(k)!r} (now)"
        for k in _DATA_KEYS
        if old_data.get(k) != new_data.get(k)
    ]  # type: ignore[union-attr]
    flat_old, flat_new = _flat(old), _flat(new)
    diff += [
        f"{k}: {flat_old.get(k)!r} (the run) vs {flat_new.get(k)!r} (now)"
        for k in sorted(set(flat_old) | set(flat_new))
        if k.startswith(_TRAJECTORY)
        and not k.startswith(_FREE)
        and flat_old.get(k) != flat_new.get(k)
        and not (k.startswith("data.") and k.split(".")[1] in _DATA_KEYS)  # listed above
    ]
    if diff:
        latest = run_overrides(out_dir)
        started = f"python src/train.py {latest} resume={out_dir}" if latest is not None else None
        shown = diff[:20] + ([f"... {len(diff) - 20} more"] if len(diff) > 20 else [])
        raise ResumeRefused(
            f"resume={out_dir}: this job's data or training settings differ from the run's; the run continues only "
            "as it was started, with its overrides again"
            + (f": {started}" if started else " (data=... model=...)")
            + f"\n{len(diff)} difference(s) from the run's {saved.name} ({saved}):\n  "
            + "\n  ".join(shown)
            + "\n(its checkpoint holds the weights and the optimizer and schedule states, not these settings; other "
            "settings train a new run: model.backbone_ckpt=<its checkpoint> starts from its backbone)"
        )
    skip = ("resume", "ckpt_path", "paths.", "logger.")  # the loggers' run names and groups change on every start
    dirs = flat_old.get("paths.output_dir"), flat_new.get("paths.output_dir")
    pairs = {k: (flat_old.get(k), flat_new.get(k)) for k in sorted(set(flat_old) | set(flat_new))}
    changed = [
        (k, f"{k}: {was!r} -> {now!r}")
        for k, (was, now) in pairs.items()
        if not k.startswith(skip) and was != now and not _moved(was, now, *dirs)
    ]
    free = [line for k, line in changed if _job_free(k)]  # how far or how fast: the same run
    other = [line for k, line in changed if not _job_free(k)]
    if free:
        log.info("resume=%s: continued with %s", out_dir, "; ".join(free))
    if other:
        log.warning(
            "resume=%s: %d setting(s) differ from the run's %s (the weights, optimizer and schedule states come from "
            "the checkpoint; this job's config is written to config_resumed.yaml):\n  %s",
            out_dir,
            len(other),
            saved,
            "\n  ".join(other[:20]) + (f"\n  ... {len(other) - 20} more" if len(other) > 20 else ""),
        )


def _moved(old: Any, new: Any, old_dir: Any, new_dir: Any) -> bool:
    """Whether a setting's run value ``old`` and this job's ``new`` are the same path inside the run folder, the
    folder moved from ``old_dir`` to ``new_dir`` (a run folder copied or moved elsewhere and resumed there)."""
    if not all(isinstance(v, str) for v in (old, new, old_dir, new_dir)):
        return False
    base = old_dir.rstrip("/")
    return (old == old_dir or old.startswith(base + "/")) and new == new_dir.rstrip("/") + old[len(base) :]


def check_resume_world(ckpt_file: str | Path, world_size: int) -> None:
    """A continuation must train on as many processes as the run did: ``data.batch_size`` is per process, so the
    batch of a step, the images of each process's shard and the position inside an epoch all depend on it (a
    resume at another ``data.batch_size`` is refused for the same reason). The DataModule's state in the checkpoint
    records the run's world size (checkpoints from before it did: not checked). Raises :class:`ResumeRefused`."""
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False, mmap=True)
    states = [v for k, v in ckpt.items() if k.endswith("DataModule") and isinstance(v, dict) and "world_size" in v]
    if not states or int(states[0]["world_size"]) == int(world_size):
        return
    was = int(states[0]["world_size"])
    raise ResumeRefused(
        f"{ckpt_file}: the run trained on {was} process(es) (trainer.devices x trainer.num_nodes), this job starts "
        f"{world_size}: data.batch_size is per process, so each step's batch, every process's share of the images "
        f"and the position inside the epoch would change. Continue it with {was} process(es) (the run's trainer=... "
        "overrides again); to train on with another count, start a new run from its weights "
        f"(model.backbone_ckpt={ckpt_file} for a detector, model.init_ckpt={ckpt_file} for a classifier)"
    )


# overrides a job may change when it lands in a folder holding its earlier run: they do not change what the run is
def _job_free(key: str) -> bool:
    """Whether a job may change ``key`` when it lands in a folder holding its earlier run: how long it trains
    (``trainer.max_epochs`` / ``max_steps``) or how it reports (:func:`~yolo9000.report.is_reporting_key`)."""
    return key.startswith(("trainer.max_epochs", "trainer.max_steps")) or is_reporting_key(key)


def check_resume_progress(cfg: DictConfig, ckpt_file: str | Path) -> None:
    """A continuation must not end before the checkpoint's own progress: ``trainer.max_epochs`` below the epochs
    the run has trained (or in) would stop it at once and test those weights as if the run had finished there (its
    folder then held a result that later resumes took as final); so does ``trainer.max_steps`` below the
    checkpoint's ``global_step``. Raises :class:`ResumeRefused`; FileNotFoundError for a file that is not there
    (it read as "cut short or damaged")."""
    if not Path(ckpt_file).is_file():
        what = "a folder: pass a checkpoint file in it" if Path(ckpt_file).is_dir() else "not found"
        raise FileNotFoundError(f"checkpoint {what}: {ckpt_file} (ckpt_path)")
    try:
        ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False, mmap=True)
    except Exception as err:  # noqa: BLE001 - a file cut short or damaged: say which, not the loader's traceback
        raise ResumeRefused(
            f"{ckpt_file}: cannot be read as a checkpoint ({_loader_reason(err)}): it was cut short or damaged"
        ) from err
    loops = ckpt.get("loops") or {}
    position = ((loops.get("fit_loop") or {}).get("state_dict") or {}).get("combined_loader") or [{}]
    pos = position[0] if isinstance(position[0], dict) and "epoch" in position[0] else None
    if pos is None:  # not this project's resumable loader: the epochs Lightning counted
        trained = int(ckpt.get("epoch", 0)) + 1
    else:  # epochs completed, or the one in progress
        trained = int(pos["epoch"]) + (1 if int(pos.get("batch", 0)) else 0)
    max_steps, steps = cfg.trainer.get("max_steps"), int(ckpt.get("global_step", 0))
    test = (  # eval.py tests detectors; a classifier is tested by train.py with train=false
        f"python src/train.py <its overrides> train=false ckpt_path={ckpt_file}"
        if "Classifier" in module_kind(ckpt)
        else f"python src/eval.py ckpt_path={ckpt_file}"
    )
    if max_steps is not None and 0 <= int(max_steps) < steps:  # Lightning's fit is done at global_step >= max_steps
        raise ResumeRefused(
            f"{ckpt_file}: the run has trained {steps} steps; trainer.max_steps={max_steps} would stop it there and "
            f"test those weights as its result. Continue with its trainer.max_steps (or more, or -1); to test the "
            f"checkpoint as it is: {test}"
        )
    max_epochs = cfg.trainer.get("max_epochs")
    if max_epochs is not None and 0 <= int(max_epochs) < trained:
        raise ResumeRefused(
            f"{ckpt_file}: the run has trained {'into ' if pos and int(pos.get('batch', 0)) else ''}epoch {trained}; "
            f"trainer.max_epochs={max_epochs} would stop it there and test those weights as its result. Continue "
            f"with its trainer.max_epochs (or more); to test the checkpoint as it is: {test}"
        )


SWEEP_GRID_HINT = (
    "A sweep re-run into its folder (hydra.sweep.dir=...) must keep its grid (the job numbers name the "
    "configurations): run a changed sweep into a new folder (without hydra.sweep.dir), or continue one run "
    "with resume=<its folder>"
)


def job_differences(out_dir: Path, overrides: Sequence[str]) -> list[str]:
    """How ``overrides`` differ from those the run in ``out_dir`` was started with (``.hydra/overrides.yaml``), one
    line per key, the keys that do not change what the run is (:func:`_job_free`) left out; [] for a folder without
    a run."""
    saved = out_dir / ".hydra" / "overrides.yaml"
    if not saved.is_file():
        return []
    from yolo9000.report import parse_override

    before = dict(parse_override(str(o)) for o in OmegaConf.to_container(OmegaConf.load(saved)) or [])  # type: ignore[union-attr]
    now = dict(parse_override(str(o)) for o in overrides)
    return [
        f"{k}: {before.get(k, '(not set)')} (the run) vs {now.get(k, '(not set)')} (this job)"
        for k in sorted(set(before) | set(now))
        if not _job_free(k) and (k not in before or k not in now or before[k] != now[k])
    ]


def check_same_job(out_dir: Path, overrides: Sequence[str], sweep: bool = True) -> None:
    """A job Hydra puts into a folder that already holds a run (a sweep re-run into its folder with
    ``hydra.sweep.dir=<sweep>``, ``hydra.run.dir=<run>``, a requeued job) must be that run: its job number or
    folder name is all that ties it there, and a changed sweep grid gives a job number to another configuration.

    Compares this job's overrides with the ones the folder's run was started with (``.hydra/overrides.yaml``,
    which a later start never rewrites: it writes ``.hydra_resumed/``); overrides that do not change what the run
    is (``trainer.max_epochs`` / ``max_steps``: train a finished run further; loader workers, loggers, paths) may
    differ. Raises :class:`ResumeRefused` naming the folder and every difference, and what to do instead (``sweep``:
    the job is one of a ``-m`` sweep; else a single run given ``hydra.run.dir``); nothing is written there."""
    saved = out_dir / ".hydra" / "overrides.yaml"
    diff = job_differences(out_dir, overrides)
    if not diff:
        return
    if sweep:
        hint = SWEEP_GRID_HINT
    else:
        hint = (
            "A run folder holds one run: give this one another folder (another hydra.run.dir, or none), or continue "
            f"that run with resume={out_dir} and its overrides"
        )
    raise ResumeRefused(
        f"{out_dir} holds the run of other overrides ({saved}):\n  "
        + "\n  ".join(diff)
        + f"\nit is left as it is. {hint}"
    )


def check_required(cfg: DictConfig) -> None:
    """The keys an experiment lists under ``required`` (finetune_448: ``model.init_ckpt``) must be set: a ``???``
    in an experiment file is lost when OmegaConf merges it over the model group's ``null``."""
    absent = object()
    for key in cfg.get("required") or []:
        value = OmegaConf.select(cfg, key, default=absent)
        if value is absent or value in (None, "", "???"):
            plus = "+" if value is absent else ""  # a key no config defines is added with +
            raise ValueError(f"{key} is required by this experiment: add {plus}{key}=<path> to the command line")


def check_start_weights(cfg: DictConfig) -> None:
    """A run's starting weights (``model.backbone_ckpt``, ``model.init_ckpt``) exist, checked before the data is read
    and the priors computed (they were found missing only when the module was built); a folder (a run's) is named
    as one, with the file to pass."""
    for key in ("model.backbone_ckpt", "model.init_ckpt"):
        value = OmegaConf.select(cfg, key, default=None)
        if value in (None, "", "???"):
            continue
        path = Path(str(value))
        if path.is_dir():
            inside = next((p for p in (path / "checkpoints" / "last.ckpt", path / "last.ckpt") if p.is_file()), None)
            raise FileNotFoundError(
                f"{key}={value} is a folder: pass a checkpoint file"
                + (f", e.g. {key}={inside}" if inside else " in it (checkpoints/last.ckpt, a best epoch_NNN.ckpt)")
            )
        if not path.is_file():
            raise FileNotFoundError(f"{key}={value}: no such file (pretrained weights: a .ckpt or darknet .weights)")


def hydra_list(items: Sequence[str]) -> str:
    """A list of strings in Hydra's override syntax, quoting the names the parser would change or reject."""
    plain = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")
    keywords = {"true", "false", "null", "nan", "inf"}

    def one(s: str) -> str:
        if plain.fullmatch(s) and s.lower() not in keywords:
            return s
        # Hydra's quoted strings take a backslash literally unless it precedes a quote or ends the string: only
        # those are doubled (a doubled backslash elsewhere parsed as two)
        return '"' + re.sub(r'(\\+)(?="|$)', r"\1\1", s).replace('"', '\\"') + '"'

    return "[" + ",".join(one(s) for s in items) + "]"


def module_kind(ckpt: Any) -> str:
    """The class name of the module a yolo9000 checkpoint (``torch.load``'s dict) rebuilds (``DetectorModule``,
    ``ClassifierModule``), from its ``yolo9000_model_config``; "" for another file."""
    config = ckpt.get("yolo9000_model_config") if isinstance(ckpt, dict) else None
    return str((config or {}).get("_target_") or "").rsplit(".", 1)[-1]


def check_checkpoint_classes(
    ckpt_file: str | Path,
    class_names: list[str],
    module: Any = None,
    training: bool = False,
) -> None:
    """Raise when a checkpoint does not fit the run given it with ``ckpt_path=``: a module of another kind than
    ``module`` (a classifier's given to a detection run: Lightning's missing-keys traceback), trained on other classes
    (or another order) than the composed data's (its weights would be tested / trained further with every label
    meaning another class), or, ``training`` on from it, with another optimizer than ``module``'s (its state was
    restored into the new optimizer: a KeyError after the start)."""
    ckpt = torch.load(ckpt_file, map_location="cpu", weights_only=False, mmap=True)  # its records, not its tensors
    kind = module_kind(ckpt)
    if module is not None and kind and kind != type(module).__name__:
        raise ValueError(
            f"{ckpt_file}: a {kind} checkpoint; this run trains a {type(module).__name__} (ckpt_path= goes on with "
            "a run of its own kind). A classifier's weights start a detector with model.backbone_ckpt=<ckpt>, a "
            "classifier's training with model.init_ckpt=<ckpt>"
        )
    hparams = ckpt.get("hyper_parameters") or {}
    mine = getattr(module, "hparams", {}).get("optimizer") if module is not None else None
    if training and mine is not None and hparams.get("optimizer") not in (None, mine):
        start = "model.init_ckpt" if "Class" in type(module).__name__ else "model.backbone_ckpt"
        raise ValueError(
            f"{ckpt_file}: trained with model.optimizer={hparams['optimizer']}, this run has model.optimizer={mine}: "
            f"ckpt_path= goes on with the run's optimizer and its state; start from its weights with {start}=<ckpt> "
            f"(a new optimizer), or keep model.optimizer={hparams['optimizer']}"
        )
    saved = hparams.get("class_names")
    if saved is not None and list(saved) != list(class_names):
        raise ValueError(
            f"{ckpt_file} was trained on the classes {list(saved)[:10]}, the data has {class_names[:10]}: pass the "
            "data overrides of the run that wrote it (its launch_overrides.txt), or "
            + (
                shlex.quote(f"data.class_names={hydra_list(saved)}")
                if len(saved) <= 100
                else "data.class_names=<its list>"
            )
        )


def finished_result(cfg: DictConfig, out_dir: Path) -> float | None:
    """The headline test value of a run folder that already holds this job's finished result (its metrics.json,
    trained to the same ``trainer.max_epochs`` / ``max_steps`` as the process that wrote it), else None. A sweep
    re-run into its folder, or a requeued job that had finished, then leaves the result as it is (resuming it would
    test again without the training's records); raise ``trainer.max_epochs`` to train such a run further."""
    # the config of the process that wrote metrics.json: the run's, or its last continuation's
    metrics_file, saved = out_dir / "metrics.json", out_dir / "config.yaml"
    if (out_dir / "config_resumed.yaml").is_file():
        saved = out_dir / "config_resumed.yaml"
    if not (metrics_file.is_file() and saved.is_file()):
        return None
    before = OmegaConf.load(saved).get("trainer") or {}
    if any(before.get(k, -1) != cfg.trainer.get(k, -1) for k in ("max_epochs", "max_steps")):
        return None
    metrics = json.loads(metrics_file.read_text())
    key = str(metrics.get("headline_metric", "map_50"))
    log.info("%s already holds this job's finished run (%s): not run again", out_dir, metrics_file.name)
    value = metrics.get(key)
    return float(value) if isinstance(value, int | float) else None


LOCK_FILE = ".train.lock"  # held (flock) by the process training the folder; the kernel lets it go when it ends
_HELD: dict[Path, int] = {}  # run folder (resolved) -> the descriptor of its lock file this process holds


class RunFolderBusy(RuntimeError):
    """Another process is training the run folder (it holds ``<run>/.train.lock``)."""


def _close_held_in_child() -> None:
    """A forked child (a DataLoader worker) closes its copies of the held locks: closing (not unlocking) leaves
    the lock with its process, and a worker outliving a SIGKILLed training process for a few seconds keeps none."""
    for fd in _HELD.values():
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_held_in_child)


def launching_process() -> bool:
    """Whether this process is a training's launching process (global rank 0), not one of the ranks a distributed
    run started beside it (Lightning's launcher: ``LOCAL_RANK``; torchrun: ``RANK``; SLURM tasks:
    ``SLURM_PROCID``; Lightning's multi-node start, the command run on each node: ``NODE_RANK``): those train the
    same folder under the launching process's lock."""
    keys = ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK")  # multirun.rank_suffix reads the first three too
    return not any(os.environ.get(k, "").isdigit() and int(os.environ[k]) > 0 for k in keys)


def lock_run_folder(folder: str | Path) -> bool:
    """Take ``<folder>/.train.lock`` (``flock``, exclusive) for as long as this process lives or until
    :func:`release_run_folder`: two processes never train one folder at once (a ``resume=`` of a run still
    training, a second ``hydra.run.dir`` into it). The kernel releases it when the process ends, even killed with
    SIGKILL: no stale lock. The file records the holder's pid, host and start for the refusal's message.

    Returns True when this call took the lock; False when this process already holds it, or the system offers no
    such lock (Windows; a file system without ``flock``): no guard there.

    Raises:
        RunFolderBusy: another process holds the lock; nothing is written into the folder.
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return False
    folder = Path(folder).resolve()
    if folder in _HELD:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    writable = True
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError:  # another user's lock file (a shared group folder): a read-only descriptor locks too
        writable = False
        try:
            fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
        except OSError as e:
            log.debug("%s: its lock file cannot be opened (%s): not guarded against a second training", folder, e)
            return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        holder = os.read(fd, 4096).decode(errors="replace").strip()
        os.close(fd)
        if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):  # no flock here (ENOLCK, EOPNOTSUPP)
            log.debug("%s: no lock on this file system (%s): not guarded against a second training", folder, e)
            return False
        raise RunFolderBusy(
            f"{folder} is being trained by another process ({holder or 'its pid unknown'}): wait for it to end or "
            "stop it; a run resumes from its last checkpoint"
        ) from None
    if writable:  # the holder, for the refusal's message (a read-only file keeps the last writer's)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since {started}\n".encode())
    _HELD[folder] = fd
    return True


def release_run_folder(folder: str | Path) -> None:
    """Let go of the lock :func:`lock_run_folder` took on ``folder`` (a sweep's job ends; the next trains its own
    folder); nothing when this process holds none there. The file stays (its record is the last holder's)."""
    fd = _HELD.pop(Path(folder).resolve(), None)
    if fd is not None:
        os.close(fd)  # closing the only descriptor releases the flock
