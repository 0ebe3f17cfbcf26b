"""Process set-up shared by the entry scripts: ``.env``, W&B defaults, config resolvers, quiet start-up."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]

__all__ = [
    "FILE_ONLY",
    "PROJECT_ROOT",
    "ConsoleSkip",
    "hydra_flags_first",
    "close_keys",
    "hint_unknown_overrides",
    "override_hints",
    "hint_unset_env",
    "concise_exit",
    "is_user_error",
    "log_failure",
    "log_to_job_log",
    "provenance",
    "reported_failures",
    "setup_environment",
]

# log.info(..., extra=FILE_ONLY): into the job's log file only, for what the console already shows as a Rich table
# (the model summary, the test metrics)
FILE_ONLY = {"file_only": True}


class ConsoleSkip(logging.Filter):
    """The console handler's filter (``conf/hydra/default.yaml``): records logged with ``extra=FILE_ONLY`` are
    left to the log file."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


_QUIET_WARNINGS = (
    r".*You have overridden `on_(before|after)_batch_transfer` in `LightningModule` but have passed in a",  # intended
    r".*pkg_resources is deprecated.*",
    r".*The `srun` command is available on your system but is not used.*",
    r".*isinstance\(treespec, LeafSpec\)` is deprecated.*",  # Lightning's own pytree use with newer torch
    r".*Checkpoint directory .* exists and is not empty.*",  # every resume (the run's own checkpoints are there)
    # bf16-mixed / 16-mixed: the weights stay float32 under mixed precision, so the 32-bit size the summary falls
    # back to is the right one (Lightning warned on every such run, a CPU's bf16 too)
    r".*Precision (bf16|16)-mixed is not supported by the model summary.*",
    # DDP: the evaluation metrics are gathered over the ranks before they are logged (every rank logs the same
    # value), and train/img_per_s is already the rate of all ranks: Lightning's advice to reduce them again is not
    # for these (it printed a warning per metric and stage)
    r"(?s).*`self\.log\('(val|test)/.*sync_dist=True.*when logging on epoch level in distributed setting.*",
    r"(?s).*`self\.log\('train/img_per_s'.*sync_dist=True.*when logging on epoch level in distributed setting.*",
)
_QUIET_INFO = ("💡 Tip", "litlogger", "Trainer already configured with model summary callbacks")


def _quiet_startup() -> None:
    """Silence start-up noise that tells a user nothing about their run: Lightning's tips, setuptools' and
    pkg_resources' deprecation chatter, library-internal deprecations, and Lightning's note that the module's
    ``on_after_batch_transfer`` is used with a DataModule (intended: the module converts uint8 batches)."""
    for pattern in _QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
    for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).addFilter(lambda r: not any(t in r.getMessage() for t in _QUIET_INFO))


def setup_environment() -> None:
    """Load .env (if any), default W&B to offline and PROJECT_ROOT to the repository root, register the config
    resolvers, quiet the start-up. Call before Hydra."""
    try:
        from dotenv import load_dotenv

        load_dotenv(PROJECT_ROOT / ".env", override=False)
    except ImportError:  # pragma: no cover - python-dotenv is a dependency
        pass
    expand_home_in_path_vars()
    os.environ.setdefault("PROJECT_ROOT", str(PROJECT_ROOT))
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    from yolo9000.multirun import register_resolvers

    register_resolvers()  # ${tags_with_overrides:...}, ${cpus:N}, ${coalesce:...}
    fit_torch_threads()
    _quiet_startup()


# the dataset variables of .env.example (VOC_ROOT, COCO_ROOT, ..., IMAGENET9K_LIST) and PROJECT_ROOT
_PATH_VAR = re.compile(r"[A-Z][A-Z0-9_]*_(ROOT|LIST)")


def expand_home_in_path_vars() -> list[str]:
    """Expand a leading ``~`` in the path variables (``*_ROOT``, ``*_LIST``): python-dotenv and a quoted shell value
    keep it as it is, and ``VOC_ROOT=~/datasets/VOCdevkit`` in ``.env`` looked for a folder named ``~``. Returns the
    variables changed."""
    changed = []
    for var, value in list(os.environ.items()):
        if _PATH_VAR.fullmatch(var) and value.startswith("~"):
            expanded = os.path.expanduser(value)
            if expanded != value:
                os.environ[var] = expanded
                changed.append(var)
    return changed


def fit_torch_threads() -> int | None:
    """Torch's CPU threads at most the CPUs this process is given: the CPUs it may run on (a cgroup or taskset
    CPU set) and a SLURM task's ``SLURM_CPUS_PER_TASK`` (a cluster without CPU binding leaves the set whole).
    Torch counts the machine's cores whatever the process was given: a 2-CPU SLURM task on a 16-core node ran 16
    threads on its 2 CPUs. ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, when set, are the user's choice and stand.

    Returns:
        the thread count set, or None when nothing changed.
    """
    if os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"):
        return None
    import torch

    from yolo9000.multirun import available_cpus

    given = available_cpus()
    slurm = os.environ.get("SLURM_CPUS_PER_TASK", "")
    if slurm.isdigit() and int(slurm) > 0:
        given = min(given, int(slurm))
    if given >= torch.get_num_threads():
        return None
    torch.set_num_threads(given)
    return given


# Hydra's command-line options that take a value (the next word unless written --opt=value); --info's is optional
_HYDRA_VALUE_OPTS = ("--config-path", "-cp", "--config-name", "-cn", "--config-dir", "-cd", "--cfg", "-c")
_HYDRA_VALUE_OPTS += ("--package", "-p", "--experimental-rerun")
_HYDRA_INFO = ("--info", "-i")
_HYDRA_INFO_VALUES = ("all", "config", "defaults", "defaults-tree", "plugins", "searchpath")


def _split_command_line(argv: list[str]) -> tuple[list[list[str]], list[str]]:
    """A command line's Hydra options, each with its value word when it takes one (``["--config-name", "x"]``,
    ``["-m"]``, ``["--config-name=x"]``), and its overrides in their order (``argv[0]`` left out)."""
    options: list[list[str]] = []
    overrides: list[str] = []
    i = 1
    while i < len(argv):
        word = argv[i]
        i += 1
        if not word.startswith("-") or word == "-":
            overrides.append(word)
            continue
        options.append([word])
        takes = word in _HYDRA_VALUE_OPTS or (word in _HYDRA_INFO and i < len(argv) and argv[i] in _HYDRA_INFO_VALUES)
        if takes and i < len(argv):
            options[-1].append(argv[i])
            i += 1
    return options, overrides


def hydra_flags_first(argv: list[str]) -> list[str]:
    """``argv`` with Hydra's options (``-m``, ``--cfg job``, ``--config-name x`` ...) moved before the overrides,
    each keeping its value, the overrides in their order: Hydra's parser takes the overrides as one run of words,
    so ``train.py experiment=x -m seed=1,2`` (an override after ``-m``) stopped with "unrecognized arguments"."""
    options, overrides = _split_command_line(argv)
    return [argv[0], *(word for option in options for word in option), *overrides]


_CONFIG_OPTS = {"-cn": "--config-name", "-cp": "--config-path", "-cd": "--config-dir"}


def _config_options(argv: list[str]) -> dict[str, str]:
    """The command line's ``--config-name`` / ``--config-path`` / ``--config-dir`` (short forms and ``--x=value``
    too) that carry a value, by their long names."""
    found: dict[str, str] = {}
    for option in _split_command_line(argv)[0]:
        opt, eq, value = option[0].partition("=")
        opt = _CONFIG_OPTS.get(opt, opt)
        if opt in _CONFIG_OPTS.values() and (eq or len(option) > 1):
            found[opt] = option[1] if len(option) > 1 else value
    return found


def _override_words(argv: list[str]) -> tuple[list[str], str | None]:
    """The overrides of a command line (Hydra's options and their values left out) and its ``--config-name``."""
    return _split_command_line(argv)[1], _config_options(argv).get("--config-name")


def _config_keys(node: Any, prefix: str = "") -> list[str]:
    """Every dotted key of a plain (``to_container``) config tree, inner nodes included."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    keys: list[str] = []
    for k, v in items:
        keys.append(f"{prefix}{k}")
        keys += _config_keys(v, f"{prefix}{k}.")
    return keys


def _lookup(tree: Any, parts: list[str]) -> tuple[bool, Any]:
    """(found, node) of a dotted key's parts in a plain config tree."""
    node = tree
    for part in parts:
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False, None
    return True, node


def _closest(word: str, choices: list[str], cutoff: float) -> list[str]:
    """The choices most like ``word`` (difflib's ratio at least ``cutoff``): the best, and those nearly as close
    (``max_image``: ``max_images``, not ``cache_images`` too)."""
    import difflib

    near = difflib.get_close_matches(word, choices, n=3, cutoff=cutoff)
    if not near:
        return []
    best = difflib.SequenceMatcher(None, near[0], word).ratio()
    return [c for c in near if difflib.SequenceMatcher(None, c, word).ratio() >= best - 0.05]


def close_keys(key: str, tree: dict[str, Any]) -> list[str]:
    """The keys of a config (a plain ``to_container`` tree) that ``key``, not one of them, was likely meant to be:
    a close name beside it (``data.max_image`` -> ``data.max_images``), else a name beside it that it begins
    (``conf`` -> ``conf_thresh``, the predict API's word for detect.py's key), else a close full dotted key
    (``dta.max_images`` -> ``data.max_images``), else the keys that end in the same name (``max_epochs`` ->
    ``trainer.max_epochs``); none when nothing is close (no guess that would mislead)."""
    parts = key.split(".")
    found, parent = _lookup(tree, parts[:-1])
    if found and isinstance(parent, dict):
        siblings = [str(k) for k in parent]
        near = _closest(parts[-1], siblings, cutoff=0.6) or [k for k in siblings if k.startswith(f"{parts[-1]}_")][:3]
        if near:
            return [".".join([*parts[:-1], k]) for k in near]
    keys = _config_keys(tree)
    near = _closest(key, keys, cutoff=0.8)
    if near:
        return near
    return [k for k in keys if k.rsplit(".", 1)[-1] == parts[-1]][:3]


def _did_you_mean(text: str, key: str, choices: list[str]) -> str:
    """``did you mean a=1 or b=1?`` with each choice in place of ``key`` in the override ``text``."""
    options = [text.replace(key, choice, 1) for choice in choices]
    return "did you mean " + " or ".join(options) + "?"


def override_hints(config_dir: str | Path, config_name: str, overrides: list[str]) -> list[str]:
    """Hints for the overrides that name nothing in the composed config (a key, a config group's option): Hydra's
    "Key 'max_image' is not in struct ... To append to your config use +data.max_image=8" suggests adding the wrong
    key. Composes ``config_name`` from ``config_dir`` with the overrides that select config groups (a group's option
    that does not exist is left out, and hinted) and checks every other override's key there. ``+`` / ``++``
    overrides add keys and are not checked; an override Hydra cannot parse is its own to report. Costs a
    composition: for a run that already failed."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.initialize import get_gh_backup, restore_gh_from_backup
    from omegaconf import OmegaConf

    parser = OverridesParser.create()
    parsed = []
    for text in overrides:
        try:
            parsed.append(parser.parse_override(text))
        except Exception:  # Hydra reports it, with its own message
            continue
    hints: list[str] = []
    backup = get_gh_backup()  # a caller's Hydra (a test's compose) stays as it was
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(Path(config_dir).resolve()), version_base="1.3"):
            loader = GlobalHydra.instance().config_loader()
            groups: set[str] = set()
            todo = [""]
            while todo:
                parent = todo.pop()
                for child in loader.list_groups(parent):
                    groups.add(f"{parent}/{child}" if parent else child)
                    todo.append(f"{parent}/{child}" if parent else child)
            selections, values = [], []
            for o in parsed:
                (selections if o.key_or_group in groups else values).append(o)
            usable, group_hints = [], []
            for o in selections:
                if o.is_delete():
                    usable.append(o.input_line)
                    continue
                try:
                    chosen = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.value()]
                except Exception:  # a range or interval over a group: Hydra's to judge
                    continue
                flat = [x for v in chosen for x in (v if isinstance(v, list) else [v])]  # callbacks=[a,b]
                names = [v for v in flat if isinstance(v, str)]
                options = loader.get_group_options(o.key_or_group)
                wrong = [n for n in names if n not in options]
                options = [n for n in options if not n.startswith("_")]  # not the bases (model/_detector)
                if wrong:  # hinted when the config selects the group (below), or the override adds it
                    near = _closest(wrong[0], options, cutoff=0.6)
                    suggestion = " or ".join(f"{o.get_key_element()}={n}" for n in near)  # +group=, group@pkg=
                    text = f"{o.key_or_group} has no option '{wrong[0]}'"
                    text += f"; did you mean {suggestion}?" if near else f" (its options: {', '.join(options)})"
                    group_hints.append((o.key_or_group, o.is_add() or o.is_force_add(), text))
                elif names and o.is_sweep_override():
                    usable.append(f"{o.get_key_element()}={names[0]}")  # compose takes one value
                elif names or o.value() is None:
                    usable.append(o.input_line)
            try:
                cfg = compose(config_name, overrides=usable, return_hydra_config=True)
            except Exception:  # the groups' overrides together do not compose: the config's own keys
                cfg = compose(config_name, overrides=[], return_hydra_config=True)
    finally:
        restore_gh_from_backup(backup)
    chosen_groups = cfg.hydra.runtime.choices
    hints += [text for group, added, text in group_hints if added or group in chosen_groups]  # else not this config's
    # a group this config does not select (detect.py model=...): Hydra says only "No match in the defaults list"
    used = sorted({g.split("/")[0] for g in chosen_groups if not g.startswith("hydra")})
    for o in selections:
        top = o.key_or_group.split("/")[0]
        if not (o.is_add() or o.is_force_add()) and top not in used and top != "hydra":
            groups = ", ".join(used) or "none"
            hints.append(f"{config_name} does not use the {o.key_or_group} group (its groups: {groups})")
    tree = OmegaConf.to_container(cfg, resolve=False)
    for o in values:
        if o.is_add() or o.is_force_add() or _lookup(tree, o.key_or_group.split("."))[0]:
            continue
        key = o.key_or_group
        near = close_keys(key, tree)  # type: ignore[arg-type]
        if near:
            hints.append(f"'{key}' is not in the config; {_did_you_mean(o.input_line or key, key, near)}")
        else:
            hints.append(f"'{key}' is not in the config, and no key there is close to it (--cfg job prints the config)")
    return hints


@contextlib.contextmanager
def hint_unknown_overrides(config_name: str, argv: list[str] | None = None) -> Iterator[None]:
    """Around a Hydra main's call: when it stops because the config did not compose (Hydra's composition or
    override-parsing error, before any job ran), the overrides that name no key or group option get a hint under
    Hydra's own message (:func:`override_hints`: "did you mean data.max_images=8?"); the exit status and Hydra's
    message stay. Nothing is done when the run succeeds, nor after a job's failure (a multirun's failed job, a
    launcher's): its overrides composed."""
    try:
        yield
    except (SystemExit, Exception) as e:
        if _failed_to_compose(e):
            _print_override_hints(config_name, sys.argv if argv is None else argv)
        raise


def _failed_to_compose(error: BaseException) -> bool:
    """Whether ``error`` is Hydra's report of a config that did not compose: its ``sys.exit(1)`` inside the handler
    of a composition or override-parsing error (the error is the exit's context), or that error itself
    (``HYDRA_FULL_ERROR=1``). A job's failure, even one Hydra ends with ``sys.exit(1)``, is none."""
    try:
        from hydra.errors import ConfigCompositionException, OverrideParseException
    except ImportError:  # pragma: no cover - Hydra is a dependency
        return False
    if isinstance(error, SystemExit):
        if error.code != 1:
            return False
        error = error.__context__  # type: ignore[assignment]
    return isinstance(error, ConfigCompositionException | OverrideParseException)


def _print_override_hints(config_name: str, argv: list[str]) -> None:
    """The hints of :func:`hint_unknown_overrides` on stderr; never an error of its own."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():  # a job ran: its overrides composed
            return
        overrides, name = _override_words(argv)
        options = _config_options(argv)
        if not overrides:
            return
        # configs from another search path (--config-dir, hydra.searchpath): composing conf/ alone would call their
        # groups' options unknown
        if "--config-dir" in options or any(o.lstrip("+~").startswith("hydra.searchpath") for o in overrides):
            return
        config_dir = PROJECT_ROOT / "conf"
        if "--config-path" in options:  # in place of conf/: absolute, or relative to the script (as Hydra reads it)
            path = options["--config-path"]
            if path.startswith("pkg://"):
                return
            config_dir = Path(argv[0]).resolve().parent / path
        for hint in override_hints(config_dir, name or config_name, overrides):
            print(f"Hint: {hint}", file=sys.stderr)
    except Exception:  # pragma: no cover - a hint must never hide Hydra's own message
        return


# the default may hold interpolations of its own (``${oc.env:IMAGENET_ROOT,${paths.data_dir}/imagenet}``): one level
_ENV_REF = re.compile(r"\$\{oc\.env:([A-Za-z_][A-Za-z0-9_]*)\s*,\s*((?:[^{}]|\$\{[^{}]*\})*)\}")


def env_references(node: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, variable, default as written) of every ``${oc.env:VAR,default}`` in a config node (unresolved)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    raw = OmegaConf.to_container(node, resolve=False) if isinstance(node, DictConfig | ListConfig) else node
    found: list[tuple[str, str, str]] = []
    if isinstance(raw, dict):
        for k, v in raw.items():
            found += env_references(v, f"{prefix}{k}.")
    elif isinstance(raw, list):
        for i, v in enumerate(raw):
            found += env_references(v, f"{prefix}{i}.")
    elif isinstance(raw, str):
        found += [(prefix.rstrip("."), m[1], m[2].strip()) for m in _ENV_REF.finditer(raw)]
    return found


def unset_env_defaults(node: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, variable, default used) of every ``${oc.env:VAR,default}`` in a config node (unresolved) whose
    variable is not set: the values that fell back to their defaults."""
    return [(k, var, default) for k, var, default in env_references(node, prefix) if var not in os.environ]


def missing_env_paths(node: Any, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, variable, value) of every ``${oc.env:VAR,default}`` in a config node (unresolved) whose variable is
    set to a path that does not exist (a typo in ``.env``, an unmounted disk)."""
    found = [(k, var, os.environ.get(var, "")) for k, var, _ in env_references(node, prefix)]
    return [(k, var, value) for k, var, value in found if value and not Path(value).exists()]


@contextlib.contextmanager
def hint_unset_env(node: Any, prefix: str = "data.") -> Iterator[None]:
    """A FileNotFoundError raised inside (a dataset not where the config says) names the variables that were not
    set and the defaults used instead (``COCO_ROOT`` unset: ``data.root`` fell back to ``data/coco``), the fix the
    README gives (``.env``); the error keeps its type and traceback."""
    try:
        yield
    except FileNotFoundError as e:
        if len(e.args) == 1 and isinstance(e.args[0], str):
            text = e.args[0]
            # a variable set to a path that does not exist: the error named only the folders looked for under it
            # (and the key of a sub-folder to set), never the variable, nor that the root itself is missing
            missing = [m for m in missing_env_paths(node, prefix) if m[2] in text or str(Path(m[2]).resolve()) in text]
            if missing:
                said = "; ".join(f"{var}={value} (.env or the environment) does not exist" for _, var, value in missing)
                e.args = (f"{text} ({said}: correct it, or give {missing[0][0]}=...)",)
                raise
            # an optional variable (default null: IMAGENET9K_ROOT, the list's folder) is never why a file is missing
            unset = [(k, v, _resolved(node, k.removeprefix(prefix), d)) for k, v, d in unset_env_defaults(node, prefix)]
            unset = [u for u in unset if u[2] != "null"]
            if unset:
                said = "; ".join(f"{var} is not set, so {key} fell back to {default}" for key, var, default in unset)
                e.args = (f"{text} ({said}: set it in .env or the environment, or give {unset[0][0]}=...)",)
        raise


def _resolved(node: Any, key: str, default: str) -> str:
    """The value ``key`` of ``node`` resolves to (``${paths.data_dir}/coco`` -> the path), else ``default``."""
    from omegaconf import DictConfig, OmegaConf

    try:
        value = OmegaConf.select(node, key) if isinstance(node, DictConfig) else None
    except Exception:  # noqa: BLE001 - an interpolation that does not resolve here: the default as written
        return default
    return value if isinstance(value, str) else default


# libraries that log through a console handler of their own (added at import when logging had no handlers yet);
# torch's loggers (its warnings, and what TORCH_LOGS asks for: recompilations, graph breaks...) each have one and do
# not propagate: every ``torch`` / ``torch.*`` logger that torch gave a console handler
_LIBRARY_LOGGERS = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")


def log_to_job_log() -> None:
    """Send Python warnings, Lightning's own messages (the checkpoint it restores, why it stopped, a logging
    interval longer than the epoch) and torch's (a recompilation limit hit; what ``TORCH_LOGS=recompiles`` or
    ``graph_breaks`` asks for) through the root logger, so that the job's log file holds them as the console does.
    Call at the start of a Hydra job (after Hydra configured logging)."""
    # off, then on: captureWarnings(True) does nothing when logging thinks it captures already, and a
    # warnings.catch_warnings() block since (a library's, an earlier job's in this process) may have put the original
    # showwarning back: the job's warnings would then reach the console only
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    torch_loggers = [
        lg
        for name, lg in list(logging.root.manager.loggerDict.items())
        if (name == "torch" or name.startswith("torch.")) and isinstance(lg, logging.Logger)
    ]
    # Lightning's always propagate; torch's where torch gave them a console handler (one without it and not
    # propagating is an artifact TORCH_LOGS left off)
    for lg, always in [*((logging.getLogger(n), True) for n in _LIBRARY_LOGGERS), *((t, False) for t in torch_loggers)]:
        console = [h for h in lg.handlers if _is_console(h)]
        for handler in console:
            lg.removeHandler(handler)  # the root's console handler shows them now
        if always or console:
            lg.propagate = True


def _is_console(handler: logging.Handler) -> bool:
    """A handler that writes to the console: a plain StreamHandler or torch's own stderr handler (not a file)."""
    return type(handler) is logging.StreamHandler or type(handler).__name__ == "_StderrHandler"


def log_failure(logger: logging.Logger, error: BaseException) -> None:
    """Write the error that ends a job, with its traceback, to the job's log files (the root logger's file
    handlers: Hydra's ``<task>.log``) only: the console already gets it from Hydra, and a log file must say why
    its run stopped. Call from an ``except`` block."""
    args = (type(error).__name__, error)
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 0, "the job stopped: %s: %s", args, sys.exc_info())
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def is_user_error(error: BaseException) -> bool:
    """Whether ``error`` is a user's mistake whose message names the file or key and the fix: a path, a setting, a
    dataset that does not fit (FileNotFoundError, NotADirectoryError, ValueError, NotImplementedError), a folder
    that would be overwritten (FileExistsError), a required key left unset (OmegaConf's MissingMandatoryValue) or a
    data problem under ``data.on_error=error`` (:class:`~yolo9000.data.records.DataError`)."""
    from yolo9000.data.records import DataError  # here: this module stays light to import (torch comes later)

    if _config_cause(error) is not None:
        return True
    from omegaconf.errors import MissingMandatoryValue  # a required key left ??? (eval.py without ckpt_path)

    user = (FileNotFoundError, NotADirectoryError, FileExistsError, ValueError, NotImplementedError, DataError)
    return isinstance(error, (*user, MissingMandatoryValue))


def _config_cause(error: BaseException) -> BaseException | None:
    """The error a config's ``_target_`` raised when Hydra's ``instantiate`` wraps it (InstantiationException "Error
    in call to target ..."): a value refused (ValueError, TypeError: ``model.net.passthrough=maybe``, a key the class
    does not take), a file not found; None for anything else."""
    from hydra.errors import InstantiationException
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    cause = error.__cause__
    # Lightning's refusal of a trainer setting (trainer=gpu where torch finds no GPU) is a setting too
    user = (FileNotFoundError, NotADirectoryError, ValueError, TypeError, NotImplementedError)
    user += (MisconfigurationException,)
    return cause if isinstance(error, InstantiationException) and isinstance(cause, user) else None


# Lightning's "No supported gpu backend found!" for trainer=gpu / ddp (the GPU presets) on a machine without one
_NO_GPU_HINT = ": trainer=gpu and trainer=ddp need a CUDA GPU, and torch finds none here; trainer=cpu runs on the CPU"


def concise_exit(error: BaseException) -> SystemExit | None:
    """For a single run (not a Hydra multirun job) ended by a user's mistake (:func:`is_user_error`): a SystemExit
    (status 1) that prints ``Error: <message>`` and the log file holding its traceback (written by
    :func:`log_failure`), instead of the traceback on the console. None for other errors and for multirun jobs
    (re-raised: Hydra reports them)."""
    if not is_user_error(error):
        return None
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.RUN:
            return None
    except ImportError:  # pragma: no cover - Hydra is a dependency
        return None
    files = [h.baseFilename for h in logging.getLogger().handlers if isinstance(h, logging.FileHandler)]
    where = f"\n(the traceback: {files[0]})" if files else ""
    cause = _config_cause(error)
    if cause is not None:  # the class's own message, and which config entry built it
        target = re.search(r"target '([^']+)'", str(error))
        hint = _NO_GPU_HINT if "gpu backend" in str(cause).lower() else ""
        hint += _added_key_hint(cause, target.group(1) if target else None)
        return SystemExit(f"Error: {cause}" + (f" (building {target.group(1)})" if target else "") + hint + where)
    return SystemExit(f"Error: {user_message(error)}{where}")


def _added_key_hint(cause: BaseException, target: str | None) -> str:
    """A key added with Hydra's ``+`` (as its "To append to your config use +data.max_image=8" suggests) that the
    built class does not take: the class's closest argument, as the typo hints name it without the ``+``
    ("; did you mean data.max_images=8?"); "" where there is none."""
    import inspect

    found = re.search(r"unexpected keyword argument '(\w+)'", str(cause))
    if found is None or target is None:
        return ""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.utils import get_object

        params = [p for p in inspect.signature(get_object(target)).parameters if p not in ("self", "args", "kwargs")]
        added = [o.lstrip("+") for o in HydraConfig.get().overrides.task if o.startswith("+") and "=" in o]
    except Exception:  # noqa: BLE001 - a hint, never an error of its own
        return ""
    close = _closest(found.group(1), params, cutoff=0.6)
    for o in added:
        key, value = o.split("=", 1)
        if close and key.rsplit(".", 1)[-1] == found.group(1):
            return f"; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}={value}?"
    return ""


def user_message(error: BaseException) -> str:
    """A user's mistake (:func:`is_user_error`) as one message: its own, or for a required key left unset
    (OmegaConf's MissingMandatoryValue, whose message spans lines) ``<key> is required: add <key>=<value>``."""
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(error, MissingMandatoryValue):
        key = getattr(error, "full_key", None) or str(error).split(":", 1)[-1].split()[0]
        return f"{key} is required: add {key}=<value> to the command"
    return str(error)


@contextlib.contextmanager
def reported_failures(logger: logging.Logger) -> Iterator[None]:
    """Around a job: an error that ends it goes to the job's log with its traceback (:func:`log_failure`); a user's
    mistake in a single run then exits with its message alone (:func:`concise_exit`), any other error is re-raised."""
    try:
        yield
    except Exception as e:
        log_failure(logger, e)
        concise = concise_exit(e)
        if concise is not None:
            raise concise from None
        raise


def provenance() -> dict[str, str]:
    """Where a result came from: ``command`` (this process's command line), ``commit`` (the repository's HEAD, with
    ``+dirty`` when tracked files differ; ``unknown`` outside a git checkout) and ``machine`` (host, CPU, cores,
    torch threads, accelerator)."""
    import torch

    from yolo9000.speed import cpu_model

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "--short=12", "HEAD") or "unknown"
    if commit != "unknown" and git("status", "--porcelain", "--untracked-files=no"):
        commit += "+dirty"
    accel = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    cpu = cpu_model() or platform.processor() or platform.machine()  # Linux: the CPU's model name
    machine = f"{platform.node()}: {cpu}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads, {accel}"
    return {"command": shlex.join([Path(sys.executable).name, *sys.argv]), "commit": commit, "machine": machine}
