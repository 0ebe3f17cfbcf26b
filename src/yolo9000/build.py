"""Building a run from a composed config, as a pure function of it: the DataModule, the Lightning module and what
the build computed (class names, priors, eval size) as a :class:`BuildInfo`. The composed config is only read;
what the build adds goes into a plain copy (the architecture saved in checkpoints) and into the result."""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf

from yolo9000.anchors import output_grid, resolve_priors
from yolo9000.darknet import (
    detector_cfg_text,
    fixed_input_size,
    net_training_options,
    parse_cfg_text,
    read_header,
    read_text,
    region_lines,
    region_meta,
)
from yolo9000.data.resize import check_input_size
from yolo9000.environment import hint_unset_env
from yolo9000.models import STRIDE
from yolo9000.modules.schedules import DarknetSteps, fraction_steps

log = logging.getLogger("yolo9000")

__all__ = ["BuildInfo", "Built", "build", "check_config", "instantiate_list", "instantiate_module"]

# keys of checkpoints written before the prior spec moved from model.net to model.priors
_LEGACY_NET_KEYS = ("num_anchors", "anchors_metric")
# the network of model=darknet: a darknet detector cfg set to the data's classes and priors
DARKNET_DETECTOR_TARGET = "yolo9000.darknet.darknet_detector"


@dataclass(frozen=True)
class BuildInfo:
    """What :func:`build` computed from the config and the data (logged, written to ``<run>/build.json``, kept in
    the module's hyper-parameters and so in every checkpoint).

    Attributes:
        class_names: the data's classes (index = position).
        eval_size: evaluation / default inference input side (``data.img_size``; a rectangle's height).
        predict_hw: ``[height, width]`` of a rectangular ``data.img_size`` (the default input of eval.py, detect.py
            and the predict API; None: ``eval_size`` square).
        anchors: the network's priors, ``[w, h]`` in grid cells (detector; None: no anchors or a classifier).
        anchors_avg_iou: their average IoU with the training boxes (Table 1's measure).
        prior_source: ``list`` | ``kmeans`` | ``handpicked`` | ``none`` (detector).
        fc_grid: the fc head's output grid (``head: fc`` only).
        letterbox: the evaluation's resize (``data.augment.letterbox``: aspect ratio kept with grey padding, else
            stretched), the default of detect.py and the predict API (detector).
    """

    class_names: list[str]
    eval_size: int
    anchors: list[list[float]] | None = None
    anchors_avg_iou: float | None = None
    prior_source: str | None = None
    fc_grid: int | None = None
    predict_hw: list[int] | None = None
    letterbox: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Built:
    """The result of :func:`build`."""

    datamodule: pl.LightningDataModule
    module: pl.LightningModule
    info: BuildInfo


def instantiate_list(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a config group like ``callbacks`` or ``logger``."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if isinstance(c, DictConfig) and "_target_" in c]


def check_config(cfg: DictConfig) -> None:
    """Fail early, with the keys to change, on combinations that cannot train (reads only)."""
    h, w = _img_hw(cfg)  # a side, or [height, width]: darknet trains a rectangular [net] at its size (random=0)
    net = cfg.model.net
    if net.get("_target_") == DARKNET_DETECTOR_TARGET:  # model=darknet: its cfg is there, before the data is read
        if net.get("region_options", "cfg") not in ("cfg", "keys"):
            raise ValueError(f"model.net.region_options must be cfg or keys, got {net.region_options!r}")
        name = str(net.get("cfg") or "<cfg>")
        fixed = fixed_input_size(parse_cfg_text(_cfg_text(net), name))
        aug = cfg.data.augment
        log.info(
            "%s: training augmentation jitter %s, hue %s, saturation %s, exposure %s, multi-scale %s (darknet's: the "
            "cfg's [region] jitter / random and [net] hue / saturation / exposure, unless data.augment.* or "
            "data.multiscale.enabled is given)",
            name, aug.jitter, aug.hue, aug.saturation, aug.exposure, "on" if cfg.data.multiscale.enabled else "off",
        )  # fmt: skip
        if fixed is not None and (cfg.data.multiscale.enabled or fixed != (h, w)):
            fh, fw = fixed
            raise ValueError(
                f"{name}: its [connected] layer takes the C x H x W values of a {fh} x {fw} input ([net] height / "
                f"width) only: train it at data.img_size={fh if fh == fw else [fh, fw]} with "
                "data.multiscale.enabled=false"
            )
    if net.get("head") == "fc":
        if cfg.data.multiscale.enabled:
            raise ValueError("model.net.head=fc needs a fixed input size: set data.multiscale.enabled=false")
        if h != w:
            raise ValueError(f"model.net.head=fc has a square grid: data.img_size={[h, w]} is not square")
        if net.get("fc_grid") is not None and int(net.fc_grid) != h // STRIDE:
            raise ValueError(f"model.net.fc_grid={net.fc_grid} but data.img_size={h} gives a {h // STRIDE} grid")


def _img_hw(cfg: DictConfig) -> tuple[int, int]:
    """(height, width) of ``data.img_size`` (a side, or [height, width]), each a multiple of the stride."""
    size = cfg.data.img_size
    try:
        return check_input_size(OmegaConf.to_container(size) if OmegaConf.is_config(size) else size)
    except (TypeError, ValueError):
        raise ValueError(
            f"data.img_size must be a multiple of {STRIDE}, got {size} (a side, or [height, width] of such sides)"
        ) from None


def build_info(cfg: DictConfig, datamodule: Any) -> BuildInfo:
    """Classes from the data; for a detector (a ``model.priors`` node) the priors resolved on the training boxes
    (:func:`yolo9000.anchors.resolve_priors`) and the fc head's grid."""
    h, w = _img_hw(cfg)
    rect = [h, w] if h != w else None
    names = [str(c) for c in datamodule.class_names]
    spec = cfg.model.get("priors")
    if spec is None:
        return BuildInfo(names, h, predict_hw=rect)
    grid = output_grid(h, w, STRIDE)
    anchors = spec.get("anchors")
    if anchors == "cfg":  # model=darknet: the cfg's own [region] anchors
        anchors = _cfg_anchors(cfg.model.net)
    priors = resolve_priors(
        OmegaConf.to_container(anchors) if OmegaConf.is_config(anchors) else anchors,
        datamodule.box_sizes("train"),
        grid,
        k=int(spec.get("k", 5)),
        metric=str(spec.get("metric", "iou")),  # type: ignore[arg-type]
        seed=int(cfg.seed),
        max_boxes=spec.get("max_boxes"),
    )
    net = cfg.model.net
    fc_grid = (int(net.fc_grid) if net.get("fc_grid") is not None else h // STRIDE) if net.get("head") == "fc" else None
    source = "cfg" if spec.get("anchors") == "cfg" else priors.source
    letterbox = bool(OmegaConf.select(cfg, "data.augment.letterbox", default=False))
    return BuildInfo(names, h, priors.anchors, priors.avg_iou, source, fc_grid, rect, letterbox)


def _cfg_text(net: Any) -> str:
    """The darknet cfg text of a ``model=darknet`` network config (``cfg_text``, else the ``cfg`` file's)."""
    if net.get("cfg_text"):
        return str(net.cfg_text)
    path = net.get("cfg") if not OmegaConf.is_missing(net, "cfg") else None
    if not path:
        raise ValueError("model=darknet needs a darknet detector cfg: model.net.cfg=<path to a .cfg with a [region]>")
    if not Path(str(path)).is_file():
        raise FileNotFoundError(f"darknet cfg not found: {path} (model.net.cfg)")
    return read_text(str(path))


def _cfg_anchors(net: Any) -> list[list[float]]:
    """``priors.anchors: cfg``: the ``[region]`` anchors of the network's darknet cfg (grid cells)."""
    region = region_meta(parse_cfg_text(_cfg_text(net), str(net.get("cfg") or "<cfg>")), search=None)
    if region is None:
        raise ValueError(f"{net.get('cfg')}: no [region] layer: not a YOLOv2 detector cfg (model=darknet)")
    return [[round(float(w), 6), round(float(h), 6)] for w, h in region.anchors.tolist()]  # the float32s as written


def resolved_model_config(model_cfg: DictConfig, info: BuildInfo) -> dict[str, Any]:
    """A plain copy of ``cfg.model`` with what the build computed filled in (``net.num_classes``, ``net.anchors``,
    ``net.fc_grid``, ``class_names``, ``eval_size``; a darknet cfg's text, ``net.cfg_text``): the architecture saved
    in checkpoints."""
    m = OmegaConf.to_container(model_cfg, resolve=True)
    assert isinstance(m, dict)
    m["net"]["num_classes"] = len(info.class_names)
    if m["net"].get("_target_") == DARKNET_DETECTOR_TARGET:
        m["net"]["cfg_text"] = _cfg_text(model_cfg.net)  # the checkpoint holds the cfg itself, not only its path
        _region_options(m)
        _log_net_options(m)
    m["class_names"] = list(info.class_names)
    if "priors" in m:
        m["net"]["anchors"] = info.anchors
        m["eval_size"] = info.eval_size
        if info.predict_hw is not None:  # a rectangular data.img_size: the default input of eval / detect / predict
            m["predict_hw"] = list(info.predict_hw)
        if info.fc_grid is not None:
            m["net"]["fc_grid"] = info.fc_grid
        if info.letterbox:  # the eval resize, the default of detect.py and the predict API (absent: stretched)
            m["letterbox"] = True
    return m


def _region_options(m: dict[str, Any]) -> None:
    """``model.net.region_options`` of a ``model=darknet`` config ``m`` (a plain copy, filled in here and the key
    removed): ``cfg`` (darknet's way) gives the loss the cfg's ``[region]`` thresh, scales, rescore and softmax,
    logging those that differ from ``model.loss``; ``keys`` keeps ``model.loss`` and writes it into the
    ``[region]`` of the cfg text the checkpoint keeps (so ``convert.py --to-darknet`` writes the cfg as trained)."""
    mode = m["net"].pop("region_options", "cfg")
    name = str(m["net"].get("cfg") or "<cfg>")
    _drop_cfg_tree(m, name)
    if mode == "keys":
        text = m["net"]["cfg_text"]
        m["net"]["cfg_text"] = detector_cfg_text(text, source=name, set_region=region_lines(m["loss"]))
        return
    if mode != "cfg":
        raise ValueError(f"model.net.region_options must be cfg or keys, got {mode!r}")
    region = region_meta(parse_cfg_text(m["net"]["cfg_text"], name), search=None)
    assert region is not None  # _cfg_anchors / darknet_detector refuse a cfg without one
    own = region.loss_options()
    changed = [f"{k} {m['loss'].get(k)} -> {v}" for k, v in own.items() if m["loss"].get(k) != v]
    if changed:
        log.info("%s: the loss takes the cfg's [region] (model.net.region_options=cfg): %s", name, ", ".join(changed))
    m["loss"].update(own)


def _drop_cfg_tree(m: dict[str, Any], name: str) -> None:
    """A ``model=darknet`` cfg whose ``[region]`` names a WordTree (``tree=``, ``map=``: yolo9000.cfg) has its
    classes set to the data's; the head trains over ``model.loss.tree`` (a flat softmax without one), so those
    lines leave the cfg text the checkpoint keeps (written back with them, the cfg said ``classes=3`` over a
    9418-node tree: neither darknet nor ``from_darknet`` could read it); ``--to-darknet`` writes a tree run's own
    tree beside the cfg. Logged, a warning where the run trains without a tree."""
    region = region_meta(parse_cfg_text(m["net"]["cfg_text"], name), search=None)
    named = {k: v for k, v in (("tree", region.tree), ("map", region.map)) if v} if region is not None else {}
    if not named:
        return
    m["net"]["cfg_text"] = detector_cfg_text(m["net"]["cfg_text"], source=name, drop_region=list(named))
    lines = ", ".join(f"{k}={v}" for k, v in named.items())
    if m["loss"].get("tree") is None:
        log.warning(
            "%s: [region] %s: this run trains a flat softmax over the data's classes (model.loss.tree is not set: "
            "a WordTree run sets it, as experiment=yolo9000 does); the cfg it keeps leaves those lines out",
            name,
            lines,
        )
    else:
        log.info(
            "%s: [region] %s: the run's tree is model.loss.tree's (the cfg it keeps leaves those lines out)",
            name,
            lines,
        )


def _log_net_options(m: dict[str, Any]) -> None:
    """Log the ``[net]`` training options of a ``model=darknet`` config ``m`` (conf/model/darknet.yaml takes them
    from the cfg): those the command line replaced, and ``max_batches`` (darknet's run length, trainer.max_steps's)."""
    name = str(m["net"].get("cfg") or "<cfg>")
    own = net_training_options(parse_cfg_text(m["net"]["cfg_text"], name))
    if own["lr_policy"] is None:  # a policy the schedules do not run: the keys given on the command line run
        own = {k: v for k, v in own.items() if k not in ("lr_policy", "steps", "scales")}
        log.info("%s: darknet's, not a schedule here: model.lr_policy=%s runs", own["policy"], m.get("lr_policy"))
    given = [f"model.{k}={m.get(k)} (the cfg's {own[k]})" for k in own if k in m and m.get(k) != own[k]]
    if given:
        log.info("%s: [net] training options replaced on the command line: %s", name, ", ".join(given))
    if own["max_batches"]:
        log.info(
            "%s: [net] max_batches=%d (darknet stops there; here trainer.max_steps / max_epochs end the run)",
            name,
            own["max_batches"],
        )
    seen, start = int(m.get("start_seen") or 0), int(m.get("start_iteration") or 0)
    weights = m["net"].get("weights")
    if not seen and not start and weights and Path(str(weights)).is_file():
        header = int(read_header(str(weights))[0].seen)
        if header:  # model.start_seen=0 given: the loader's lines still name the header's count
            log.info(
                "%s: seen %d in its header set aside (model.start_seen=0, darknet's -clear): seen and the schedule "
                "start at 0",
                weights,
                header,
            )
    if seen or start:
        factor = _schedule_factor(m, start)
        lr = f" = {float(m['lr']) * factor:.4g}" if m.get("lr") is not None else ""
        log.info(
            "%s: seen %d in its header: the run goes on from it as darknet's does (the prior-matching term stops "
            "at %d), its schedule from iteration %d (burn-in and the steps before it done: lr x %.4g now%s); "
            "model.start_seen=0 starts both at 0 (darknet's -clear)",
            weights or "start_seen",
            seen,
            m["loss"].get("prior_seen", 12800),
            start,
            factor,
            lr,
        )
        if own["max_batches"] and start >= own["max_batches"]:
            log.warning(
                "%s: iteration %d is past the cfg's max_batches=%d: darknet would stop at once (darknet's -clear: "
                "model.start_seen=0)",
                name,
                start,
                own["max_batches"],
            )


def _schedule_factor(m: dict[str, Any], start: int) -> float:
    """The learning-rate multiplier of a ``steps`` schedule at iteration ``start`` (1 for ``poly``: its end is the
    run's)."""
    steps = list(m.get("steps") or [])
    if m.get("lr_policy") != "steps" or fraction_steps(steps):  # fractions: of the run, not darknet iterations
        return 1.0
    scales = list(m.get("scales") or [])
    return DarknetSteps(int(m.get("burn_in") or 0), steps, scales, float(m.get("power", 4.0)), start)(0)


def instantiate_module(model_config: Mapping[str, Any], **kwargs: Any) -> pl.LightningModule:
    """The Lightning module of a resolved model config (:func:`resolved_model_config`, or a checkpoint's): the
    ``net`` first, then the module around it (``kwargs`` go to the module). The config is saved in the module's
    checkpoints (``yolo9000_model_config``), so eval / detect / convert rebuild the same network."""
    if OmegaConf.is_config(model_config):
        model_config = OmegaConf.to_container(model_config, resolve=True)  # type: ignore[assignment]
    cfg = copy.deepcopy(dict(model_config))
    net_cfg = {k: v for k, v in cfg["net"].items() if k not in _LEGACY_NET_KEYS}
    net = hydra.utils.instantiate(net_cfg, _convert_="all")
    module_cfg = {k: v for k, v in cfg.items() if k != "net"}
    module = hydra.utils.instantiate(module_cfg, model=net, **kwargs, _convert_="all")
    module.model_config = cfg
    return module


def build(cfg: DictConfig) -> Built:
    """DataModule (set up for fitting), Lightning module and :class:`BuildInfo` from a composed config."""
    check_config(cfg)
    with hint_unset_env(cfg.data):  # a dataset not found names the .env variable that was not set
        datamodule = hydra.utils.instantiate(cfg.data)
        datamodule.prepare_data()
        datamodule.setup("fit")
    info = build_info(cfg, datamodule)
    if info.prior_source is not None:
        log.info(
            "priors (%s): %s; average IoU with the training boxes %s",
            info.prior_source,
            # float32 values printed as written (16.62); none: a head without priors (priors=none, YOLOv1's fc)
            "none" if info.anchors is None else [[round(float(v), 4) for v in a] for a in info.anchors],
            "n/a" if info.anchors_avg_iou is None else f"{info.anchors_avg_iou:.4f}",
        )
    module = instantiate_module(resolved_model_config(cfg.model, info), build_info=info.as_dict())
    joint = (getattr(datamodule, "specs", None) or {}).get("classification") is not None
    if joint and getattr(datamodule, "classification_per_detection", 0) > 0 and getattr(module, "tree", 1) is None:
        log.warning(
            "joint data (classification images) with a flat head: model.loss.tree is not set, so the classes are a "
            "flat softmax over the data's %d class names (the tree's nodes as unrelated classes); YOLO9000 joins the "
            "two through the WordTree: model.loss.tree={_target_: yolo9000.wordtree.WordTree.from_file, path: <the "
            "data's tree>, names_file: ...} (as experiment=yolo9000)",
            len(info.class_names),
        )
    _warn_other_trees(datamodule, getattr(module, "tree", None))
    return Built(datamodule, module, info)


def _warn_other_trees(datamodule: Any, tree: Any) -> None:
    """Warn where a parser's WordTree (the data's node labels: ``TreeLabels``, ``ImageListParser``) and the head's
    (``model.loss.tree``) hold the same nodes in another hierarchy (or under other ids): the head trains over its
    own, which the checks by node name took for the data's."""
    specs = getattr(datamodule, "specs", None)
    if tree is None or not isinstance(specs, Mapping):
        return
    for split in specs:
        for parser in datamodule.parsers(split):
            own = getattr(parser, "tree", None)
            if own is None or own is tree or own.n != tree.n or list(own.names) != list(tree.names):
                continue  # another node list is refused by name elsewhere
            differ = [
                k for k, (a, b) in enumerate(zip(own.parent.tolist(), tree.parent.tolist(), strict=True)) if a != b
            ]
            ids = [k for k, (a, b) in enumerate(zip(own.wnids, tree.wnids, strict=True)) if a != b]
            if differ or ids:
                i = (differ or ids)[0]
                log.warning(
                    "%s: its WordTree and the head's (model.loss.tree) name the same %d nodes in another %s: node %d "
                    "%r has %s in the data's, %s in the head's; the head trains over its own (give both the same tree)",
                    parser,
                    tree.n,
                    "hierarchy" if differ else "set of ids",
                    i,
                    tree.names[i],
                    f"parent {int(own.parent[i])}" if differ else f"id {own.wnids[i]!r}",
                    f"parent {int(tree.parent[i])}" if differ else f"id {tree.wnids[i]!r}",
                )
