"""Evaluate a trained detector: `python src/eval.py ckpt_path=<ckpt> [data=...] [split=val]`.

Writes metrics.json (mAP@0.5, mAP@[.5:.95], per-class AP) and per_class.md into the run directory.

With ``sizes=[...]`` (or ``--config-name eval_tradeoff``: the paper's 288..544) it evaluates and times the checkpoint
at every input size instead: tradeoff.md / .csv / .png, the paper's Table 3 and Figure 4 (:mod:`yolo9000.tradeoff`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, ListConfig, OmegaConf

from yolo9000.build import instantiate_list
from yolo9000.callbacks.predictions import PredictionImages
from yolo9000.checkpoints import load_module, module_settings
from yolo9000.data.resize import normal_size, size_text
from yolo9000.environment import (
    FILE_ONLY,
    PROJECT_ROOT,
    hint_unknown_overrides,
    hint_unset_env,
    hydra_flags_first,
    log_to_job_log,
    reported_failures,
    setup_environment,
)
from yolo9000.modules.detector import DetectorModule
from yolo9000.multirun import task_overrides
from yolo9000.results import (
    evaluated_on,
    format_group_table,
    format_metric_table,
    group_means,
    table_for_log,
    write_metrics,
)
from yolo9000.run_folder import hydra_list

log = logging.getLogger("yolo9000.eval")
setup_environment()


@hydra.main(version_base="1.3", config_path="../conf", config_name="eval.yaml")
def main(cfg: DictConfig) -> float:
    """Evaluate (or, with ``sizes``, sweep) a checkpoint; a user's mistake ends a single run with its message (the
    traceback in the job's log)."""
    log_to_job_log()
    with reported_failures(log):
        return evaluate(cfg)


def evaluate(cfg: DictConfig) -> float:
    """The evaluation of :func:`main`; returns the headline mAP@0.5."""
    pl.seed_everything(cfg.seed, workers=True)
    out_dir = Path(cfg.paths.output_dir)
    settings = module_settings(
        cfg, "conf_thresh", "nms_thresh", "pre_nms_topk", "voc07", "tree_decode", "tree_thresh", "eval_map"
    )
    if cfg.split not in ("val", "test"):
        raise ValueError(
            f"split={cfg.split}: val or test (the data's splits a detector is evaluated on); the training images "
            "are evaluated as the test split: data.test.split=train"
        )
    sizes = cfg.get("sizes")
    if sizes is not None and not isinstance(sizes, int) and len(sizes) == 0:
        raise ValueError("sizes=[]: list the input sizes to evaluate at (sizes=[320,416]), or leave sizes out")
    if sizes:
        settings["voc07"] = True  # the trade-off table's VOC07 column
    # the checkpoint's module, configured with this run's settings (None: as trained)
    module = load_module(cfg.ckpt_path, expect=DetectorModule, **settings)  # a classifier: refused, naming how
    hc = HydraConfig.get()
    trained_cfg = run_config(cfg)  # the checkpoint's training-run config, read once
    # a converted darknet cfg's rectangular [net] is evaluated at its height x width, as darknet's `detector valid`
    eval_size = normal_size(module.input_hw)
    letterbox = bool(module.hparams.get("letterbox", False))  # the run's eval resize, for other data than its own
    data_cfg, data_source = eval_data_config(cfg, task_overrides(hc), trained_cfg, eval_size, letterbox)
    log.info("data: %s", data_source)
    with hint_unset_env(data_cfg):  # a dataset not found names the .env variable that was not set
        datamodule = hydra.utils.instantiate(data_cfg)
        log.info("input size: %s (data.img_size=... sets another)", size_text(datamodule.img_size))
        if list(datamodule.class_names) != list(module.class_names):
            raise ValueError(
                class_mismatch_message(
                    list(module.class_names),
                    list(datamodule.class_names),
                    str(cfg.ckpt_path),
                    hc.runtime.choices.get("data") or "?",
                    task_overrides(hc),
                    tree=module.tree is not None,
                )
            )
        if cfg.get("sizes"):
            return tradeoff(cfg, data_cfg, module, out_dir)
        datamodule.setup("test")
        datamodule.check_has_boxes("test")  # no box (all of another class): every metric nan, not an evaluation
    callbacks = [PredictionImages(cfg.draw, cfg.score_thresh)] if cfg.draw else []
    trainer: pl.Trainer = hydra.utils.instantiate(
        cfg.trainer, logger=instantiate_list(cfg.get("logger")), callbacks=callbacks
    )
    # the loader is built by trainer.test once the processes exist: under DDP each rank evaluates its own shard
    datamodule.test_split = str(cfg.split)
    module.test_prefix = str(cfg.split)  # val/map_50 ... in the console table and the loggers for split=val
    tested = trainer.test(module, datamodule=datamodule)
    if not trainer.is_global_zero:  # every rank holds the gathered result; rank 0 writes it
        return float(module.test_results["map_50"])
    log.info(
        "%s metrics:\n%s", cfg.split, format_metric_table(tested, f"{cfg.split.capitalize()} metric"), extra=FILE_ONLY
    )
    per_class = module.test_results.get("per_class", {})
    groups = run_metric_groups(cfg, trained_cfg)  # the training run's (YOLO9000 digits: seen / unseen), as train.py
    metrics = write_metrics(
        out_dir,
        module.test_results,
        module.eval_class_names,
        {"checkpoint": str(cfg.ckpt_path)}
        | evaluated_on(datamodule, trainer.precision)  # split, img_size, precision: as train.py's test
        | group_means(per_class, groups)
        | datamodule.data_report(),
    )
    log.info("per-class AP (%s):\n%s", cfg.split, table_for_log(out_dir / "per_class.md"))
    if groups:
        table = format_group_table(per_class, groups)
        (out_dir / "groups.md").write_text(table + "\n")
        log.info("metric groups (%s):\n%s", cfg.split, table)
    log.info("%s -> %s", summary_line(metrics), out_dir / "metrics.json")
    return float(metrics["map_50"])


def summary_line(metrics: dict[str, Any]) -> str:
    """The closing log line: mAP@0.5, mAP@[.5:.95] and, when computed (``voc07=true``, data=voc's headline), the
    VOC2007 11-point mAP@0.5 the paper's VOC tables give (the line left it out: ``voc07=true`` printed the
    101-point number alone)."""
    line = f"mAP@0.5 {metrics['map_50']:.4f}  mAP@[.5:.95] {metrics['map']:.4f}"
    voc07 = metrics.get("voc07_map_50")
    if voc07 is not None:
        line += f"  VOC07 11-point mAP@0.5 {voc07:.4f}"
    return line


def run_metric_groups(cfg: DictConfig, trained_cfg: DictConfig) -> dict[str, list[str]]:
    """``metric_groups`` of this command line, else of the checkpoint's training run (``trained_cfg``:
    :func:`run_config`)."""
    groups = cfg.get("metric_groups") or trained_cfg.get("metric_groups")
    return OmegaConf.to_container(groups, resolve=True) if groups else {}  # type: ignore[return-value]


def run_config_file(cfg: DictConfig) -> Path:
    """The checkpoint's training-run config (``<run>/config.yaml``, beside ``<run>/checkpoints/``): where the path
    given lies (a symlink placed in a run's folder is that run's), else where it points to."""
    given = Path(os.path.abspath(str(cfg.ckpt_path))).parent.parent / "config.yaml"
    return given if given.is_file() else Path(str(cfg.ckpt_path)).resolve().parent.parent / "config.yaml"


def run_config(cfg: DictConfig) -> DictConfig:
    """The checkpoint's training-run config, or an empty one (a checkpoint moved or converted)."""
    file = run_config_file(cfg)
    return OmegaConf.load(file) if file.is_file() else OmegaConf.create({})  # type: ignore[return-value]


def eval_data_config(
    cfg: DictConfig,
    overrides: Sequence[str],
    trained_cfg: DictConfig | None = None,
    eval_size: int | Sequence[int] | None = None,
    letterbox: bool | None = None,
) -> tuple[DictConfig, str]:
    """The data to evaluate on, resolved (a config of its own), and where it comes from.

    With ``data=...`` among ``overrides`` (another dataset): the composed ``cfg.data``. Else the ``data`` block of
    the checkpoint's run folder (``<run>/config.yaml``, which train.py writes beside ``<run>/checkpoints/``), with
    this command line's ``data.<key>=...`` applied on top (``data.img_size=416`` evaluates the run's data at 416):
    the checkpoint is evaluated on the data it was trained on, not on eval.yaml's default. Without that file (a
    checkpoint moved or converted): the composed config. ``trained_cfg``: that run config already read
    (:func:`run_config`; None: read here). Data other than the run's is evaluated at ``eval_size`` (the
    checkpoint's evaluation size, not the data config's default: a side, or [height, width]) unless
    ``data.img_size=...`` is given, and resized as its run evaluated (``letterbox``: the checkpoint's
    ``data.augment.letterbox``; None: the data config's) unless ``data.augment.letterbox=...`` is given.
    """
    composed = OmegaConf.create(OmegaConf.to_container(cfg.data, resolve=True))
    if eval_size is not None and not any(re.match(r"^[~+]*data\.img_size=", o) for o in overrides):
        composed.img_size = eval_size if isinstance(eval_size, int) else [int(v) for v in eval_size]
    given_lb = any(re.match(r"^[~+]*data\.augment(\.letterbox)?=", o) for o in overrides)
    if letterbox is not None and not given_lb and OmegaConf.select(composed, "augment") is not None:
        composed.augment.letterbox = bool(letterbox)
    if any(re.match(r"^[~+]*data=", o) for o in overrides):
        return composed, "as configured on the command line"
    run_cfg = run_config_file(cfg)
    trained = (run_config(cfg) if trained_cfg is None else trained_cfg).get("data")
    if trained is None:
        return composed, f"the default ({run_cfg} not found; data=... chooses)"
    changed = []
    for o in overrides:
        m = re.match(r"^([~+]*)data\.([^=]+)(=|$)", o)
        if m:
            key = m.group(2)
            if m.group(1).startswith("~"):
                parent, _, leaf = key.rpartition(".")
                node = OmegaConf.select(trained, parent) if parent else trained
                if isinstance(node, DictConfig) and leaf in node:
                    node.pop(leaf)
            else:
                before, value = OmegaConf.select(trained, key), OmegaConf.select(composed, key)
                OmegaConf.update(trained, key, value, force_add=True)
                if "." not in key:
                    _follow_in_parsers(trained, key, before, value)
            changed.append(f"data.{key}")
    extra = f", with {', '.join(changed)} from the command line" if changed else ""
    return trained, f"the training run's ({run_cfg}{extra}; data=... evaluates on other data)"


def _follow_in_parsers(data: DictConfig, key: str, before: Any, value: Any) -> None:
    """A top-level ``data.<key>`` changed from ``before`` to ``value``: the split parsers' copies of it follow.

    The run's ``config.yaml`` is resolved, so a parser's ``root: ${..root}`` is stored as the path itself: every
    parser entry of ``train`` / ``val`` / ``test`` (nested lists too) whose ``key`` equals ``before`` takes
    ``value``, and when ``before`` is a path (holds a ``/``), any parser value under it (``<root>/images``) moves
    under ``value``. Other values stay (a parser's own setting)."""
    prefix = before.rstrip("/") + "/" if isinstance(before, str) and "/" in before and isinstance(value, str) else None
    nodes: list[Any] = [data.get(split) for split in ("train", "val", "test")]
    while nodes:
        node = nodes.pop()
        if isinstance(node, ListConfig):
            nodes.extend(node)
        elif isinstance(node, DictConfig):
            for k, v in node.items_ex(resolve=False):
                if k == key and v == before:
                    node[k] = value
                elif prefix and isinstance(v, str) and v.startswith(prefix):
                    node[k] = value.rstrip("/") + "/" + v[len(prefix) :]
                elif isinstance(v, DictConfig | ListConfig):
                    nodes.append(v)


def tradeoff(cfg: DictConfig, data_cfg: DictConfig, module: DetectorModule, out_dir: Path) -> float:
    """``sizes=[...]``: the checkpoint evaluated (``data_cfg`` built with ``img_size=<size>``, the rest unchanged)
    and timed at every size (:func:`yolo9000.tradeoff.run_sweep`). Returns the mAP@0.5 at the largest size."""
    from yolo9000.tradeoff import SweepSettings, run_sweep

    def make_datamodule(size: int | tuple[int, int]) -> pl.LightningDataModule:
        sized = copy.deepcopy(data_cfg)
        sized.img_size = size if isinstance(size, int) else list(size)
        return hydra.utils.instantiate(sized)

    def make_trainer(callbacks: list[pl.Callback]) -> pl.Trainer:
        return hydra.utils.instantiate(cfg.trainer, logger=False, callbacks=callbacks)

    settings = SweepSettings(
        # one size (sizes=416) or a list ([h, w]: a rectangle); anything else is named by SweepSettings' error
        sizes=OmegaConf.to_container(cfg.sizes) if OmegaConf.is_config(cfg.sizes) else [cfg.sizes],
        speed_batches=OmegaConf.to_container(cfg.speed_batches)
        if OmegaConf.is_config(cfg.speed_batches)
        else [cfg.speed_batches],  # speed_batches=32: one batch size
        speed_warmup=int(cfg.speed_warmup),
        speed_iters=int(cfg.speed_iters),
        speed_seconds=cfg.speed_seconds,
        speed_compile=cfg.speed_compile,
        draw=int(cfg.draw),
        score_thresh=float(cfg.score_thresh),
        split=str(cfg.split),
    )
    rows = run_sweep(
        module,
        make_datamodule,
        make_trainer,
        settings,
        out_dir,
        loggers=instantiate_list(cfg.get("logger")),
        extra={"checkpoint": str(cfg.ckpt_path)},
    )
    log.info("trade-off -> %s", out_dir / "tradeoff.md")
    return float(rows[-1]["map_50"])


def detection_data_configs(conf_dir: Path = PROJECT_ROOT / "conf") -> dict[str, list[str] | None]:
    """The detection data configs (``conf/data/<name>.yaml`` composed by Hydra, defaults included, building a
    ``DetectionDataModule``): name -> the class list it sets, None for those that read their classes from the
    dataset (``class_names: null``). Inside a Hydra app its config path is used, else ``conf_dir``."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    names = sorted(p.stem for p in (conf_dir / "data").glob("*.yaml") if not p.stem.startswith("_"))
    outside_app = not GlobalHydra.instance().is_initialized()
    ctx = initialize_config_dir(str(conf_dir), version_base="1.3") if outside_app else contextlib.nullcontext()
    out: dict[str, list[str] | None] = {}
    with ctx:
        for name in names:
            try:
                data = compose(overrides=[f"+data={name}"]).data
            except Exception as e:  # a config that does not compose is no candidate
                log.debug("data=%s does not compose: %s", name, e)
                continue
            if not str(data.get("_target_", "")).endswith("DetectionDataModule"):
                continue  # classification data (ImageFolder, crops)
            classes = OmegaConf.to_container(data, resolve=False).get("class_names")  # type: ignore[union-attr]
            out[name] = [str(c) for c in classes] if isinstance(classes, list) else None
    return out


_LIST_MAX = 100  # class lists of at most this many names are written out in the suggested command


def class_mismatch_message(
    ckpt_classes: list[str],
    data_classes: list[str],
    ckpt_path: str,
    data_choice: str,
    overrides: Sequence[str],
    configs: dict[str, list[str] | None] | None = None,
    tree: bool = False,
) -> str:
    """The error for a checkpoint whose classes differ from the data's: the data config that lists the
    checkpoint's classes and the exact command to run with it, or, when none does, how to pass the classes (a
    list of at most ``_LIST_MAX`` names in full); classes that are only numbers (darknet weights converted
    without their ``.names``): to convert again with them; a WordTree head (``tree``): data through its tree.

    Args:
        overrides: the command line overrides of this run (kept in the suggested command, but for the data ones
            it replaces).
        configs: :func:`detection_data_configs` (read from conf/data when None).
        tree: the checkpoint's head is a WordTree (its classes are the tree's nodes).
    """

    def show(names: list[str]) -> str:
        return f"{len(names)} classes [{', '.join(names[:10])}{', ...' if len(names) > 10 else ''}]"

    configs = detection_data_configs() if configs is None else configs
    keep = [o for o in overrides if not re.match(r"^[~+]*data(=|\.class_names=)", o)]
    cmd = ["python", "src/eval.py", *keep]
    if not any(o.startswith("ckpt_path=") for o in keep):
        cmd.insert(2, f"ckpt_path={ckpt_path}")
    head = (
        f"the checkpoint {ckpt_path} was trained on {show(ckpt_classes)}, but data={data_choice} has "
        f"{show(data_classes)}."
    )
    if sorted(ckpt_classes) == sorted(data_classes):  # the same classes in another order: the data stays
        same = [o for o in overrides if not re.match(r"^[~+]*data\.class_names=", o)]
        argv = ["python", "src/eval.py", *same]
        if not any(o.startswith("ckpt_path=") for o in same):
            argv.insert(2, f"ckpt_path={ckpt_path}")
        return (
            f"{head}\nThe same classes in another order: list them in the checkpoint's order (every layout takes "
            "each box's class by name; YOLO label ids through the dataset's own names):\n  "
            + shlex.join([*argv, f"data.class_names={hydra_list(ckpt_classes)}"])
        )
    fits = [name for name, names in configs.items() if names == ckpt_classes]
    if fits:
        others = f" (also: {', '.join(f'data={f}' for f in fits[1:])})" if len(fits) > 1 else ""
        return f"{head}\nconf/data/{fits[0]}.yaml lists the checkpoint's classes{others}; run:\n  " + shlex.join(
            [*cmd, f"data={fits[0]}"]
        )
    if tree:
        return (
            f"{head}\nIts head is a WordTree of {len(ckpt_classes)} nodes: evaluate it on data labelled through "
            "that tree, e.g. COCO on darknet's 9k tree with COCO's 80 classes reported:\n  "
            + shlex.join([*cmd, "data=coco9k", "eval_map=data/darknet/wordtree/coco9k.map"])
        )
    from_dataset = [name for name, names in configs.items() if names is None]
    lines = [head]
    if ckpt_classes == [str(i) for i in range(len(ckpt_classes))]:
        lines += [
            "Its classes are numbers, as darknet weights converted without their names: convert them again with "
            "the names, in the order of the network's outputs:",
            "  python src/convert.py --cfg <cfg> --weights <weights> --names <classes>.names --out <checkpoint>",
            "Or, if the dataset's classes are these numbers:",
        ]
    lines.append("No data config in conf/data lists the checkpoint's classes.")
    shared = set(ckpt_classes) & set(data_classes)
    if data_choice in from_dataset and shared:  # the user's own dataset, some of its classes the checkpoint's
        lines.append(
            f"data={data_choice} read its classes from the dataset; the checkpoint's classes given as "
            f"data.class_names take each box's class by name ({len(shared)} of the dataset's {len(data_classes)} "
            "classes are the checkpoint's; boxes of the others are dropped):"
        )
        cmd = [*cmd, f"data={data_choice}"]  # kept: another config reading datasets (data=coco) is no fix
    elif from_dataset:
        names = " or ".join(f"data={n}" for n in from_dataset)
        lines += [
            f"If it was trained on {names} (they read their classes from the dataset), run:",
            "  " + shlex.join([*cmd, f"data={from_dataset[0]}"]),
            "Otherwise pass the classes and the dataset folder (VOC layout; add data=yolo or data=coco for theirs):",
        ]
    else:
        lines.append("Pass the classes and the dataset folder:")
    root = [] if any(o.startswith("data.root=") for o in keep) else ["data.root=<dataset folder>"]
    if len(ckpt_classes) > _LIST_MAX:  # the whole list would bury the message (a 9418-node tree: 100 KB)
        lines.append("  " + shlex.join([*cmd, f"data.class_names=<its {len(ckpt_classes)} names>", *root]))
        lines.append(
            "(a list of the checkpoint's names in its order: `yolo9000.Detector.from_checkpoint(...).class_names`)"
        )
    else:
        lines.append("  " + shlex.join([*cmd, f"data.class_names={hydra_list(ckpt_classes)}", *root]))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.argv = hydra_flags_first(sys.argv)  # overrides may follow -m
    with hint_unknown_overrides("eval.yaml"):  # a typo'd key: "did you mean ...?" under Hydra's message
        main()
