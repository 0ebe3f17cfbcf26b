"""This project's Lightning checkpoints: loading a trained module (:func:`load_module`) and the conversions to and
from darknet cfg + ``.weights`` (behind ``src/convert.py``).

Application code on top of the :mod:`yolo9000.darknet` library: it reads ``conf/model/yolov2.yaml``, builds the
Lightning module with :func:`yolo9000.build.instantiate_module`, and points darknet's data-file lookups
(``[region] tree=data/9k.tree``) at the repository's vendored ``data/darknet``.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf
from torch import nn

from yolo9000.build import instantiate_module
from yolo9000.darknet import (
    WeightsInfo,
    build_native,
    darknet_convs,
    load_weights,
    match_native,
    native_cfg_text,
    native_net_config,
    net_training_options,
    option,
    parse_cfg,
    region_meta,
    save_weights,
)
from yolo9000.darknet.cfg import (
    conv_load_options,
    detector_cfg_text,
    parse_cfg_text,
    read_names,
    source_line,
    trained_net_lines,
)
from yolo9000.environment import PROJECT_ROOT
from yolo9000.models import STRIDE
from yolo9000.models.layers import DarknetBatchNorm2d
from yolo9000.text_io import decode_text
from yolo9000.wordtree import WordTree

log = logging.getLogger("yolo9000")

DARKNET_DATA = PROJECT_ROOT / "data" / "darknet"
WORDTREE_DIR = DARKNET_DATA / "wordtree"
# where a cfg's darknet-relative data files are looked up after its own folder (see yolo9000.darknet.resolve_data_file)
DARKNET_SEARCH = (WORDTREE_DIR, DARKNET_DATA)
MODEL_CONFIG = PROJECT_ROOT / "conf" / "model" / "yolov2.yaml"
GENERIC_NET_TARGET = "yolo9000.darknet.darknet_net_from_text"


def model_yaml(path: str | Path = MODEL_CONFIG) -> DictConfig:
    """A ``conf/model`` file with its defaults list applied (the files it names in its folder first, then its own
    keys, as Hydra composes them): ``conf/model/yolov2.yaml`` is ``_detector.yaml`` + its priors and net."""
    path = Path(path)
    own = OmegaConf.load(path)
    assert isinstance(own, DictConfig)
    parts = []
    for entry in own.pop("defaults", None) or []:
        if entry == "_self_":
            parts.append(own)
        else:
            parts.append(model_yaml(path.parent / f"{entry}.yaml"))
    if not any(p is own for p in parts):
        parts.append(own)
    merged = OmegaConf.merge(*parts)
    assert isinstance(merged, DictConfig)
    return merged


def detector_model_config(
    sections: Sequence[dict[str, Any]],
    net_cfg: dict[str, Any],
    class_names: list[str],
    base: str | Path = MODEL_CONFIG,
    names_file: str | Path | None = None,
) -> dict[str, Any]:
    """``conf/model/yolov2.yaml`` with ``net`` replaced by ``net_cfg`` and darknet's ``[net]`` / ``[region]``
    training options filled in (lr, momentum, decay, burn_in, steps, scales; thresh, scales, rescore, tree) and
    darknet's decode (no cap on the candidates before NMS, as on the detections after it). ``names_file``: the
    class names' file, which names a tree's nodes too (darknet's names line up with its tree)."""
    cfg = OmegaConf.to_container(model_yaml(base), resolve=False)
    assert isinstance(cfg, dict)
    if net_cfg["_target_"] == GENERIC_NET_TARGET:
        cfg["net"] = net_cfg  # the generic network takes only its cfg text
    else:
        cfg["net"] = {**cfg["net"], **net_cfg}
    region = region_meta(sections, DARKNET_SEARCH)
    assert region is not None
    anchors = [[float(w), float(h)] for w, h in region.anchors.tolist()]
    cfg["priors"] = {"anchors": anchors, "k": len(anchors), "metric": "iou"}  # a record: the cfg's own priors
    loss = cfg["loss"]
    loss.update(region.loss_options())  # darknet's own thresh, scales, rescore and class activation
    if region.tree is not None:
        loss["tree"] = {"_target_": "yolo9000.wordtree.WordTree.from_file", "path": str(region.tree.resolve())}
        if names_file is not None:
            loss["tree"]["names_file"] = str(Path(names_file).resolve())
        # the cfg's `map` (yolo9000.cfg: coco9k.map) is a training map in darknet: it puts COCO's truth labels on
        # tree nodes (forward_region_layer). `detector test` passes no map and names each box by
        # hierarchy_top_prediction over all nodes, so no eval_map here; eval_map=<coco9k.map> reports COCO's 80
        # (as validate_detector with the .data file's map)
    ns = sections[0]
    try:  # darknet's own schedule, to train on from these weights (train.py model.backbone_ckpt / resume)
        training = net_training_options(sections)
    except ValueError as e:  # converting the weights needs no schedule: the module's stays
        log.warning("%s; the checkpoint keeps conf/model's schedule (model.lr_policy and its keys)", e)
    else:
        policy, _, _ = training.pop("policy"), training.pop("max_batches"), training.pop("batch")
        if training["lr_policy"] is None:  # step, exp, sigmoid, random: the module's schedule stays
            log.warning("%s: not a schedule here (steps, poly); the checkpoint keeps conf/model's", policy)
            del training["lr_policy"], training["steps"], training["scales"]
        cfg.update(training)
    cfg["class_names"] = class_names
    cfg["eval_size"], predict_hw = _input_sizes(ns)
    if predict_hw:  # a rectangular [net]
        cfg["predict_hw"] = predict_hw
    cfg["pre_nms_topk"] = None  # every candidate goes on to NMS, as darknet's (the trained default caps at 1000)
    return cfg


def _input_sizes(net: dict[str, Any]) -> tuple[int, list[int] | None]:
    """The detector's input sizes from ``[net]``: ``eval_size`` (the height: the square side of a trade-off's
    default) and ``predict_hw`` ((height, width) of the predict API, ``detect.py`` and ``eval.py`` where width !=
    height, as darknet's ``detector test`` / ``valid`` run the network; None: square), each made a multiple of the
    network stride (the nearest, halves up (80 x 48 runs 96 x 64, not Python's round's 64 x 64), at least one
    stride) with a warning."""
    height, width = option(net, "height", 416), option(net, "width", option(net, "height", 416))
    h, w = (max(STRIDE, int(v / STRIDE + 0.5) * STRIDE) for v in (height, width))
    if (h, w) != (height, width):
        log.warning(
            "%s: [net] width=%d height=%d: not multiples of %d; the detector runs %d x %d (height x width)",
            source_line(net),
            width,
            height,
            STRIDE,
            h,
            w,
        )
    if h != w:
        log.info(
            "%s: [net] width=%d height=%d: the predict API, detect.py and eval.py run %d x %d (height x width) as "
            "darknet does (the trade-off's sizes are square)",
            source_line(net),
            width,
            height,
            h,
            w,
        )
    return h, [h, w] if h != w else None


def darknet_to_checkpoint(
    cfg: str | Path, weights: str | Path | None = None, names: str | Path | None = None, strict: bool = False
) -> dict[str, Any]:
    """A darknet cfg (+ ``.weights``) as a checkpoint dict.

    Detectors: ``{"state_dict": DetectorModule.state_dict() ("model.<param>", "seen" = the header's seen),
    "yolo9000_model_config": ..., "darknet": {...}}``, loadable by :func:`load_module`. The net is
    the native YOLOv2 / YOLOv2(fuse=False) when the structure matches, else a
    :class:`~yolo9000.darknet.DarknetNet` built from the stored cfg text. Classifiers: ``{"state_dict":
    {"model.<param>"}, "yolo9000_classifier_config": net config, ...}`` (``backbone.*`` keys usable as
    ``model.backbone_ckpt``). ``darknet`` holds the cfg's bytes and the header, so :func:`checkpoint_to_darknet`
    writes the same bytes back. ``names``: one class name a line (default: the WordTree's 9k.names for a 9418-node
    tree, else "0", "1", ...). ``strict``: a weights file holding more floats than the cfg's layers take is refused
    (default: the rest is ignored with a warning, as darknet ignores it; see
    :func:`~yolo9000.darknet.weights.load_weights`).
    """
    cfg = Path(cfg)
    sections = parse_cfg(cfg)
    spec = match_native(sections)
    info: WeightsInfo | None = None
    region = region_meta(sections, DARKNET_SEARCH)
    dk: dict[str, Any] = {"cfg_name": cfg.name, "cfg_bytes": cfg.read_bytes(), "weights": str(weights or "")}
    if region is None:
        if spec is None or spec.kind != "classifier":
            classifier = any(s["type"] in ("avgpool", "connected", "softmax", "cost") for s in sections)
            raise NotImplementedError(
                f"{cfg}: "
                + ("a classifier other than Darknet-19" if classifier else "no [region] layer: not a detector cfg")
                + "; only detectors (a [region] last) and Darknet-19 classifiers convert to a checkpoint (any darknet "
                "network loads with yolo9000.darknet.load_darknet)"
            )
        net_cfg = native_net_config(spec)
        model = build_native(spec)
        if weights is not None:
            info = load_weights(model, weights, options=conv_load_options(sections), strict=strict)
        dk["header"] = vars(info) if info else None
        state = {f"model.{k}": v for k, v in model.state_dict().items()}
        return {"state_dict": state, "yolo9000_classifier_config": net_cfg, "darknet": dk}

    if option(sections[0], "channels", 3) != 3:
        raise NotImplementedError(
            f"{cfg}: [net] channels={option(sections[0], 'channels', 3)}: detectors read RGB images (channels=3)"
        )
    if spec is not None and spec.kind == "detector":
        net_cfg = native_net_config(spec)
    else:
        net_cfg = {
            "_target_": GENERIC_NET_TARGET,
            "cfg_text": decode_text(dk["cfg_bytes"], str(cfg)),
            "source": str(cfg),
        }
    names_file = names
    nine_k = WORDTREE_DIR / "9k.names"
    if names_file is None and region.tree is not None and region.classes == 9418 and nine_k.is_file():
        names_file = nine_k
    if names_file is not None:
        class_names = read_names(names_file, region.classes)  # darknet's lines; more than the classes: the first
    elif region.tree is not None:  # the tree file's node ids
        class_names = WordTree.from_file(region.tree).names
        if len(class_names) != region.classes:
            raise ValueError(f"{region.tree}: {len(class_names)} nodes for the {region.classes} classes of {cfg}")
    else:
        class_names = [str(i) for i in range(region.classes)]
    model_cfg = detector_model_config(sections, net_cfg, class_names, names_file=names_file)
    module = instantiate_module(model_cfg)
    if weights is not None:
        info = load_weights(module.model, weights, options=conv_load_options(sections), strict=strict)
        module.seen.fill_(info.seen)
        if info.layers_loaded < info.layers_total:  # a backbone file (darknet19_448.conv.23) given as a detector's
            log.warning(
                "%s: a partial weights file: it filled %d of the %d conv layers of %s; %s keep their random "
                "initialisation: this detector is untrained (for a backbone to train from, use model.backbone_ckpt)",
                weights,
                info.layers_loaded,
                info.layers_total,
                cfg,
                "all of them" if info.layers_loaded == 0 else f"conv layers {info.layers_loaded + 1} on (the head)",
            )
    dk["header"] = vars(info) if info else None
    return {"state_dict": module.state_dict(), "yolo9000_model_config": model_cfg, "darknet": dk}


def module_settings(cfg: Any, *keys: str) -> dict[str, Any]:
    """The entry script's overrides of saved module settings (``conf_thresh``, ``eval_map``, ...) as plain Python
    values, for :func:`load_module` (a missing or null key keeps the checkpoint's value)."""
    out = {k: cfg.get(k) for k in keys}
    return {k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v for k, v in out.items()}


def load_module(
    ckpt_path: str | Path, map_location: str = "cpu", expect: type | None = None, **settings: Any
) -> pl.LightningModule:
    """Rebuild the module saved by training or conversion (architecture from the checkpoint's
    ``yolo9000_model_config``), load its weights and put it in eval mode. ``settings`` (those not None) replace
    the saved module settings before it is built, e.g. ``conf_thresh=0.25`` or ``voc07=True`` (eval / detect
    configure the module, never patch it). ``expect``: the module class the caller runs (a classifier checkpoint
    given to a detector's tool is refused before it is built). Raises FileNotFoundError / ValueError naming the
    file, TypeError for a module of another class than ``expect``."""
    ckpt_path = Path(ckpt_path)
    if ckpt_path.is_dir():
        raise FileNotFoundError(f"{ckpt_path} is a folder: pass a checkpoint file in it (e.g. checkpoints/last.ckpt)")
    if not ckpt_path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {ckpt_path}")
    try:
        ckpt = torch.load(ckpt_path, map_location=map_location, weights_only=False)
    except Exception as e:  # truncated, not a torch file, a darknet .weights
        hint = (
            " (darknet .weights: convert them first, python src/convert.py --cfg ... --weights ...)"
            if str(ckpt_path).endswith(".weights")
            else ""
        )
        raise ValueError(f"{ckpt_path}: not a readable PyTorch checkpoint{hint} ({type(e).__name__}: {e})") from e
    return module_from_checkpoint(ckpt, ckpt_path, expect, **settings)


def _classifier_eval_hint(name: str | Path) -> str:
    """How a classifier checkpoint is evaluated: its run's own command (:func:`yolo9000.run_folder.run_overrides`
    of the run folder holding ``checkpoints/<file>``: the experiment and data it was trained with) with
    ``train=false``."""
    from yolo9000.run_folder import LAUNCH_FILE, run_overrides

    path = Path(name)
    run = path.parent.parent if path.parent.name == "checkpoints" else None
    overrides = run_overrides(run) if run is not None else None
    if overrides is not None:
        return (
            f"; a classifier is evaluated with its run's command and train=false: `python src/train.py "
            f"{overrides} train=false ckpt_path={path}` (the overrides of {run})"
        )
    return (
        "; a classifier is evaluated with `python src/train.py experiment=<its experiment> train=false "
        f"ckpt_path={path}` and the data overrides of the run that wrote it (its {LAUNCH_FILE})"
    )


def module_from_checkpoint(
    ckpt: Any, name: str | Path, expect: type | None = None, **settings: Any
) -> pl.LightningModule:
    """:func:`load_module` of a checkpoint already in memory (``torch.load``'s dict, or
    :func:`darknet_to_checkpoint`'s); ``name`` (its file) names it in the errors."""
    model_cfg = ckpt.get("yolo9000_model_config") if isinstance(ckpt, dict) else None
    if model_cfg is None and isinstance(ckpt, dict) and "yolo9000_classifier_config" in ckpt:
        raise TypeError(
            f"{name}: a classifier network converted from darknet weights (convert.py), not a trained module: "
            "it starts a detector's backbone (`python src/train.py model.backbone_ckpt=<ckpt>`) or a classifier's "
            "training (`experiment=pretrain_darknet19 model.init_ckpt=<ckpt>`)"
        )
    if model_cfg is None:
        raise ValueError(f"{name}: not a yolo9000 checkpoint (no 'yolo9000_model_config')")
    target = str(model_cfg.get("_target_", ""))
    kind = target.rsplit(".", 1)[-1] or "module"
    if expect is not None and kind != expect.__name__:
        hint = _classifier_eval_hint(name) if "Class" in kind else ""
        raise TypeError(f"{name}: a {kind} checkpoint, not a {expect.__name__}{hint}")
    # the weights come from the state dict below, not from the checkpoints the run started from
    model_cfg = {**model_cfg, "backbone_ckpt": None} if model_cfg.get("backbone_ckpt") else model_cfg
    model_cfg = {**model_cfg, "init_ckpt": None} if model_cfg.get("init_ckpt") else model_cfg
    if isinstance(model_cfg.get("net"), dict) and model_cfg["net"].get("weights"):  # model=darknet's start
        model_cfg = {**model_cfg, "net": {**model_cfg["net"], "weights": None}}
    given = {k: v for k, v in settings.items() if v is not None}
    if given and target:
        cls = hydra.utils.get_class(target)
        accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "args", "kwargs"}
        unknown = sorted(set(given) - accepted)
        if unknown:
            raise TypeError(
                f"{name}: {', '.join(unknown)} is no setting of a {cls.__name__}; its settings: "
                + ", ".join(sorted(accepted - {"net", "model", "priors"}))
            )
    try:
        module = instantiate_module({**model_cfg, **given})
    except InstantiationException as e:  # a setting the module refuses (conf_thresh=2): its own error, with the file
        cause = e.__cause__
        if isinstance(cause, ValueError | TypeError):
            named = [k for k in given if k in str(cause)]
            if named:  # the caller's setting, not the checkpoint, is wrong
                saved = ", ".join(f"{k}={model_cfg[k]!r}" for k in named if k in model_cfg)
                raise type(cause)(
                    f"{cause} (given for {name}" + (f", whose saved setting is {saved})" if saved else ")")
                ) from cause
            raise type(cause)(f"{name}: {cause}") from cause
        raise
    module.load_state_dict(ckpt["state_dict"])
    module.eval()
    return module


def checkpoint_to_darknet(
    ckpt_path: str | Path,
    weights_out: str | Path,
    cfg_out: str | Path | None = None,
    names_out: str | Path | None = None,
) -> WeightsInfo:
    """Write a checkpoint's network as darknet ``.weights`` (+ cfg, + a detector's class names).

    The header (version and ``seen``) is the one the checkpoint was converted from (``seen`` from the module's
    ``seen`` buffer for detectors), else 0.2.0 with seen = the module's ``seen``. The cfg is the stored cfg text
    when there is one (bytes unchanged), else generated by :func:`~yolo9000.darknet.native_cfg_text`.
    ``names_out``: a detector's class names, one a line in class order (the file darknet's ``.data`` names with
    ``names=``; a WordTree model's are its nodes'); a classifier checkpoint has none to write (an error).
    """
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    dk = ckpt.get("darknet") or {}
    header = dk.get("header") or {"major": 0, "minor": 2, "revision": 0, "seen": 0}
    names = (ckpt.get("yolo9000_model_config") or {}).get("class_names")
    if names_out is not None and not names:  # refused before any file is written
        raise ValueError(f"{ckpt_path}: no class names to write to {names_out} (a classifier checkpoint)")
    softmax = True  # [region] softmax of a generated cfg
    # the training settings a Lightning checkpoint records ([net] lines of a trained model=darknet cfg; none: none)
    hparams = ckpt.get("hyper_parameters") or {}
    if "yolo9000_model_config" in ckpt:
        module = load_module(ckpt_path)
        model: nn.Module = module.model
        # a detector's region loss says; a classifier's criterion (its generated cfg has no [region]) has no say
        softmax = getattr(module.criterion, "class_activation", "softmax") == "softmax"
        seen = int(module.seen)
        built = ((ckpt.get("hyper_parameters") or {}).get("build_info") or {}).get("eval_size")  # data.img_size
        default = 416 if "priors" in ckpt["yolo9000_model_config"] else 224  # a detector, else a classifier
        size: int | tuple[int, int] = int(ckpt["yolo9000_model_config"].get("eval_size") or built or default)
        rect = ckpt["yolo9000_model_config"].get("predict_hw")  # trained at a height x width: the [net] it ran
        if rect:
            size = (int(rect[0]), int(rect[1]))
    elif "yolo9000_classifier_config" in ckpt:
        model = hydra.utils.instantiate(ckpt["yolo9000_classifier_config"], _convert_="all")
        model.load_state_dict({k.removeprefix("model."): v for k, v in ckpt["state_dict"].items()})
        seen = int(header["seen"])
        size = 224
    else:
        raise ValueError(f"{ckpt_path}: neither a yolo9000 detection nor a converted classifier checkpoint")
    torch_bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d) and not isinstance(m, DarknetBatchNorm2d)]
    if torch_bns:  # darknet divides by sqrt(var') + 1e-6: var' = (sqrt(var + eps) - 1e-6)^2 gives the same outputs
        with torch.no_grad():
            for bn in torch_bns:
                std = (bn.running_var.double() + bn.eps).sqrt()
                bn.running_var.copy_((std - 1e-6).clamp_min(0).square())  # darknet's batch-norm epsilon
        log.info(
            "%s: trained with bn_style=torch: the %d variances are written as (sqrt(var + %g) - 1e-6)^2, which "
            "darknet's sqrt(var) + 1e-6 turns into the same normalisation",
            ckpt_path,
            len(torch_bns),
            torch_bns[0].eps,
        )
    # the cfg's per-layer options (dontsave) when the checkpoint came from one
    cfg_name = dk.get("cfg_name", "<cfg>")
    options = (
        conv_load_options(parse_cfg_text(decode_text(dk["cfg_bytes"], cfg_name), cfg_name))
        if dk.get("cfg_bytes")
        else None
    )
    save_weights(
        model, weights_out, seen, int(header["major"]), int(header["minor"]), int(header["revision"]), options=options
    )
    if cfg_out is not None:
        own = getattr(model, "cfg_text", None)  # a trained model=darknet network: the cfg it was built from
        if dk.get("cfg_bytes"):  # converted from darknet: its bytes as they were (a round trip is exact)
            text = dk["cfg_bytes"]
        else:  # a detector's WordTree head: its tree file beside the cfg, which names it ([region] tree=, relative
            # to the cfg's folder: from_darknet looks there, darknet in the folder it runs in)
            config = ckpt.get("yolo9000_model_config")  # a module's (then ``module`` is built above)
            head_tree = getattr(module, "tree", None) if config is not None else None
            tree = head_tree if config is not None and "priors" in config else None  # a detector's
            if head_tree is not None and tree is None:
                log.warning(
                    "%s: a classifier over a WordTree: its cfg's [softmax] is written without the tree (darknet "
                    "reads the outputs as one flat softmax)",
                    ckpt_path,
                )
            tree_out = Path(cfg_out).with_suffix(".tree") if tree is not None else None
            if own:  # [net] at the size it runs at (evaluated at), so darknet's and from_darknet's default is it
                h, w = (size, size) if isinstance(size, int) else size
                # and the optimizer and schedule it trained with (the command line's model.lr=... over the cfg's)
                trained, notes = trained_net_lines(hparams, parse_cfg_text(own, str(ckpt_path)))
                set_net = {"height": str(h), "width": str(w), **trained}
                # the run's tree, else none (a checkpoint of an earlier version may keep the cfg's tree / map lines)
                set_region = {"tree": tree_out.name} if tree_out is not None else None
                drop = ["map"] if tree_out is not None else ["tree", "map"]
                text = detector_cfg_text(
                    own, source=str(ckpt_path), set_net=set_net, set_region=set_region, drop_region=drop
                )
                text = ("".join(f"{note}\n" for note in notes) + text).encode()
            else:
                text = native_cfg_text(model, size, softmax, tree_out.name if tree_out is not None else None).encode()
            if tree_out is not None:  # after the cfg text: a cfg that cannot be written leaves no tree behind
                tree.to_file(tree_out)
        Path(cfg_out).write_bytes(text)
    if names_out is not None:
        Path(names_out).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")
    n = len(darknet_convs(model))
    return WeightsInfo(int(header["major"]), int(header["minor"]), int(header["revision"]), seen, n, n)
