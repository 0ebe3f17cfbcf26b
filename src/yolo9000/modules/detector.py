"""The detection LightningModule: YOLOv2 / YOLO9000 training, validation and testing.

The module owns ``seen`` (images seen, counted over all DDP ranks; stored in the checkpoint through a buffer),
which switches darknet's prior-matching term off after 12,800 images.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any, Literal

import torch
from torch import nn

from yolo9000.loss import RegionLoss, assign_truths
from yolo9000.metrics import DetectionEvaluator
from yolo9000.models import STRIDE, check_flags
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules.base import DarknetModule
from yolo9000.modules.pretrained import load_pretrained
from yolo9000.postprocess import average_outputs, check_decode_settings, postprocess
from yolo9000.region_decode import as_map, check_tree_decode
from yolo9000.wordtree import WordTree, check_tree_classes

log = logging.getLogger(__name__)


class DetectorModule(DarknetModule):
    """YOLOv2 detection training.

    ``monitor`` names the validation metric that picks the best checkpoint.

    Args:
        model: the :class:`YOLOv2` network (its ``anchors`` buffer and ``location`` drive loss and decode).
        loss: a :class:`RegionLoss` (built by Hydra as a partial that gets ``num_classes``, ``location`` and
            ``bias_match`` from the model).
        optimizer: ``sgd`` (darknet) or ``adam``; lr, momentum, weight_decay as darknet's cfg.
        burn_in, steps, scales: darknet's ``policy=steps`` schedule (steps as fractions of the run when all <= 1).
        lr_policy: ``steps`` (darknet's detector cfgs) or ``poly`` (lr * (1 - it / total)^power, darknet19.cfg).
        power: exponent of the poly policy.
        loss_normalize: ``batch`` divides the batch-summed loss by the batch size (darknet divides the learning
            rate by the batch instead: same update).
        conf_thresh, nms_thresh, max_det: evaluation decode (darknet's validation: 0.005, 0.45, no cap: None).
            COCO's AP keeps its own 100 detections per image (its definition) whatever the cap.
        pre_nms_topk: candidates kept per image before NMS, the highest scores (None or 0 = all, as darknet);
            bounds the decode + NMS cost of an early network, whose scores nearly all pass ``conf_thresh``.
        voc07: also compute VOC2007 11-point AP (``voc07_map_50``).
        voc07_levels: its recall levels: ``darknet`` (darknet's ``reval_voc.py``) or ``devkit`` (the MATLAB
            devkit's); they differ at a recall of exactly 0.6 or 0.7 (:data:`yolo9000.voc_eval.VOC07_LEVELS`).
        headline_metric: the data's benchmark metric (``map_50`` COCO-style AP@0.5, ``voc07_map_50`` VOC2007
            11-point AP, ``map`` COCO AP@[.5:.95]): it picks the best checkpoint (``monitor``), shows in the
            progress bar and heads metrics.json.
        tree_decode: how a WordTree head names a box without ``eval_map``: ``darknet`` (darknet's descent over
            absolute probabilities, scored by objectness) or ``paper`` (descent on the path probability, scored
            ``obj * P(node)``); see :func:`yolo9000.postprocess.tree_candidates`.
        tree_thresh: threshold of the WordTree descent (darknet's ``hier_thresh``, 0.5).
        eval_map: with a WordTree, the label set evaluated and reported (darknet's ``map``): every box scored
            ``obj * P_abs(node)`` for each listed node; node names / WordNet ids, node indices, or a darknet map
            file (``coco9k.map``); None or ``all`` = one node per box by ``tree_decode``.
        class_names: names for per-class tables (filled from the DataModule when None).
        backbone_ckpt: optional checkpoint whose ``backbone.*`` weights initialise the backbone.
        eval_size: evaluation input side the network was validated at (the default size of ``detect.py``).
        predict_hw: the default input (height, width) of the predict API and eval.py where it is not ``eval_size``
            square: a converted darknet cfg's rectangular ``[net]`` (its width and height), or the rectangular
            ``data.img_size`` a detector was trained and validated at; None: ``eval_size``
            square.
        letterbox: the resize the network was evaluated with in training (``data.augment.letterbox``: the aspect
            ratio kept, grey padding; else stretched), the default of the predict API and detect.py.
        priors: the prior spec (``anchors``: list | null | kmeans | handpicked, ``k``, ``metric``) the network's
            anchors were resolved from at build time; a record, the network holds the anchors.
        build_info: what the build computed (:class:`yolo9000.build.BuildInfo`), kept in the checkpoint.
        fast: the fast-path switches (:class:`yolo9000.speed.FastPath`: channels_last, compile, fused optimizer).
        skip_nonfinite: skip (and count) a step whose gradients are not finite instead of poisoning the weights;
            stop with an error after this many in a row; 0 = no guard (darknet). See
            :meth:`DarknetModule.on_before_optimizer_step`.
        start_seen: images seen before this run: ``seen`` starts there (the prior-matching term's 12,800, the
            ``seen`` of the weights written back). ``model=darknet``: its weights file's header ``seen``, as darknet
            goes on counting (0: darknet's ``-clear``).
        start_iteration: the schedule's iteration at the start (burn-in and the steps before it done; darknet:
            ``seen / [net] batch``).
    """

    def __init__(
        self,
        model: YOLOv2,
        loss: Any,
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        burn_in: int = 1000,
        lr_policy: Literal["steps", "poly"] = "steps",
        power: float = 4.0,
        steps: list[float] | None = None,
        scales: list[float] | None = None,
        loss_normalize: Literal["batch", "none"] = "batch",
        conf_thresh: float = 0.005,
        nms_thresh: float = 0.45,
        max_det: int | None = None,
        pre_nms_topk: int | None = 1000,
        voc07: bool = True,
        voc07_levels: str = "darknet",
        headline_metric: str = "map_50",
        tree_decode: Literal["darknet", "paper"] = "darknet",
        tree_thresh: float = 0.5,
        eval_map: str | list[str | int] | None = None,
        class_names: list[str] | None = None,
        backbone_ckpt: str | None = None,
        eval_size: int = 416,
        predict_hw: list[int] | None = None,
        letterbox: bool = False,
        priors: dict[str, Any] | None = None,
        build_info: dict[str, Any] | None = None,
        fast: dict[str, Any] | None = None,
        skip_nonfinite: int = 50,
        start_seen: int | None = 0,
        start_iteration: int | None = 0,
    ) -> None:
        super().__init__(fast)
        self.save_hyperparameters(ignore=["model", "loss"], logger=False)
        self.seen.fill_(int(start_seen or 0))  # darknet weights' count goes on (a checkpoint's load replaces it)
        self.model = model
        self.criterion: RegionLoss = (
            loss(num_classes=model.num_classes, location=model.location, bias_match=model.bias_match)
            if callable(loss) and not isinstance(loss, nn.Module)
            else loss
        )
        self.class_names = list(class_names) if class_names else [str(i) for i in range(model.num_classes)]
        self.tree = None if self.criterion.tree.num_groups == 1 else self.criterion.tree
        if self.tree is not None and class_names:
            check_tree_classes(self.tree, self.class_names)
        self.eval_nodes = resolve_map(self.tree, eval_map)  # (K,) node indices or None
        check_decode_settings(conf_thresh=conf_thresh, nms_thresh=nms_thresh, tree_thresh=tree_thresh, max_det=max_det)
        check_tree_decode(tree_decode)  # before any data is read (eval.py / detect.py settings)
        if isinstance(eval_size, bool) or int(eval_size) != eval_size or eval_size <= 0 or eval_size % STRIDE:
            raise ValueError(f"eval_size must be a positive multiple of {STRIDE}, got {eval_size!r}")
        if predict_hw is not None and (
            len(predict_hw) != 2 or any(isinstance(v, bool) or int(v) != v or v <= 0 or v % STRIDE for v in predict_hw)
        ):
            raise ValueError(f"predict_hw must be (height, width), positive multiples of {STRIDE}, got {predict_hw!r}")
        check_flags(type(self).__name__, letterbox=letterbox)
        if headline_metric == "voc07_map_50" and not voc07:
            raise ValueError("headline_metric voc07_map_50 needs voc07=true")
        self.monitor = f"val/{headline_metric}"  # the validation metric that picks the best checkpoint
        # the evaluated label set: every class, or with a WordTree map its nodes (COCO's 80 through coco9k.map)
        self.eval_class_names = evaluated_names(self.class_names, self.eval_nodes)
        lut = None
        if self.eval_nodes is not None:  # node index -> position in the map (-1: a node the map leaves out)
            lut = torch.full((len(self.class_names),), -1, dtype=torch.long)
            lut[self.eval_nodes] = torch.arange(len(self.eval_nodes))
        self.register_buffer("_eval_lut", lut, persistent=False)
        self.val_eval = DetectionEvaluator(self.eval_class_names, voc07=voc07, voc07_levels=voc07_levels)
        self.test_eval = DetectionEvaluator(self.eval_class_names, voc07=voc07, voc07_levels=voc07_levels)
        self.test_results: dict[str, Any] = {}
        self.test_prefix = "test"  # the logged names of a test run's metrics (eval.py split=val: "val")
        if backbone_ckpt:  # a classifier's or detector's checkpoint, or darknet weights (darknet19_448.conv.23)
            if not hasattr(self.model, "backbone"):
                raise ValueError(
                    f"model.backbone_ckpt={backbone_ckpt}: this network ({type(self.model).__name__}) has no "
                    "Darknet-19 backbone; a darknet cfg's network starts from darknet weights: model.net.weights=..."
                )
            load_pretrained(self.model.backbone, backbone_ckpt, part="backbone")
        self.example_input_array = torch.zeros(1, 3, *self.input_hw)  # the model summary's FLOPs

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> raw head output (B, A * (5 + C), H / 32, W / 32), contiguous NCHW."""
        return self.model(images).contiguous()

    def on_before_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """A batch with truths gets ``assignment``: which predictor each truth trains (:func:`yolo9000.loss.
        assign_truths`), made here on the host from the collated truths before the batch goes to the device. The
        loss then has nothing to read back from a GPU (with ``bias_match``; without, it depends on the predictions
        and the loss makes it)."""
        if (
            isinstance(batch, dict)
            and self.criterion.bias_match
            and isinstance(batch.get("images"), torch.Tensor)
            and len(batch["images"])  # an empty batch (every image unreadable) is skipped by the step
            and isinstance(batch.get("targets"), torch.Tensor)
            and batch["targets"].device.type == "cpu"
        ):
            h, w = batch["images"].shape[-2:]
            batch["assignment"] = assign_truths(
                batch["targets"], batch["target_mask"], self.host_anchors(), (h // STRIDE, w // STRIDE)
            )
        return batch

    def host_anchors(self) -> torch.Tensor:
        """The network's priors (A, 2) on the host: a copy made once per stage (they do not change while fitting
        or evaluating; reading a GPU buffer every batch would wait for the device)."""
        anchors = self.model.anchors
        if anchors.device.type == "cpu":
            return anchors
        cached = self.__dict__.get("_anchors_host")
        if cached is None or cached.shape != anchors.shape:
            cached = self._anchors_host = anchors.detach().cpu()
        return cached

    def setup(self, stage: str) -> None:
        """The fast path (:meth:`DarknetModule.setup`), and the region loss compiled for fitting when
        ``model.fast.compile_loss`` asks (the training steps' loss; validation's runs eager)."""
        super().setup(stage)
        if stage == "fit" and self.fast.compile_loss and self.criterion.compile_options is None:
            self.criterion.compile_deltas(backend=self.fast.compile_backend)

    def on_fit_start(self) -> None:
        self._anchors_host = None  # the priors of the weights this stage runs (a checkpoint may have replaced them)

    def on_validation_start(self) -> None:
        self._anchors_host = None

    def on_test_start(self) -> None:
        self._anchors_host = None

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        """The loss of one batch. Returns ``{"loss", "terms"}``: ``terms`` (detached 0-d tensors by name) are what
        the epoch line (:class:`yolo9000.callbacks.progress.EpochLog`) averages over the epoch, read from the step's
        outputs (no logging call, no host sync); the loss is logged every step (progress bar), its terms and the
        diagnostics (avg IoU, recall, seen, input size...) on the steps the loggers write. None for a batch without
        a readable image (:meth:`skip_empty_batch`)."""
        if self.skip_empty_batch(batch, "train"):
            return None  # Lightning: no backward, no optimizer step
        images = batch["images"]
        bsz = images.shape[0]
        seen = self.count_seen(bsz)
        written = self.logs_written_this_step()
        raw = self.model(images).float()  # the loss in fp32 (autocast); its gradient comes back in raw's layout
        out = self.criterion(
            raw, batch["targets"], batch["target_mask"], self.model.anchors, seen, written, batch.get("assignment")
        )
        loss = out.loss / bsz if self.hparams.loss_normalize == "batch" else out.loss
        terms = {f"train/{k}": getattr(out, k).detach() / bsz for k in ("coord", "obj", "noobj", "cls")}
        self.log("train/loss", loss, prog_bar=True, batch_size=bsz)
        if written:  # the terms and diagnostics: on the steps the loggers write
            stats = {f"train/{k}": getattr(out, k) for k in ("avg_iou", "recall", "avg_obj", "avg_anyobj", "avg_cat")}
            size = {"train/input_size": float(images.shape[-1]), "train/seen": self.seen.float()}
            self.log_dict({**terms, **stats, **size}, batch_size=bsz)
        if "classonly" in batch:  # joint training (yolo9000.data.joint): counts and losses per source
            terms |= self._source_terms(batch["classonly"].to(raw.device), out.per_image, bsz, written)
        return {"loss": loss, "terms": terms}

    def _source_terms(
        self, classonly: torch.Tensor, per_image: dict[str, torch.Tensor], bsz: int, written: bool
    ) -> dict[str, torch.Tensor]:
        """Per source (``detection`` / ``classification``): images this epoch (``train/images_<source>``, logged
        and summed every step), and the mean per-image loss and terms (``train/<source>/<term>``: returned for the
        epoch line, logged when ``written``). ``classonly``: (B,) bool."""
        total = sum(per_image.values())  # (B,)
        terms: dict[str, torch.Tensor] = {}
        for source, sel in (("detection", ~classonly), ("classification", classonly)):
            n = int(sel.sum())
            self.log(f"train/images_{source}", float(n), on_step=False, on_epoch=True, reduce_fx="sum", sync_dist=True)
            if n:
                parts = {f"train/{source}/{k}": v[sel].mean().detach() for k, v in per_image.items()}
                parts = {f"train/{source}/loss": total[sel].mean().detach(), **parts}
                terms |= parts
                if written:
                    self.log_dict(parts, batch_size=n)
        return terms

    # ---------------------------------------------------------------- evaluation
    def _eval_step(
        self, batch: dict[str, Any], evaluator: DetectionEvaluator, stage: str
    ) -> list[dict[str, torch.Tensor]]:
        images = batch["images"]
        raw = self.model(images).float().contiguous()  # loss and decode in fp32 (autocast), NCHW (channels_last)
        targets, mask, anchors = batch["targets"], batch["target_mask"], self.model.anchors
        out = self.criterion(raw, targets, mask, anchors, self.seen_images, True, batch.get("assignment"))
        self.log(f"{stage}/loss", out.loss / images.shape[0], batch_size=images.shape[0], sync_dist=True)
        preds = self.predict_raw(raw, images.shape[-2:], batch["transforms"], batch["orig_sizes"])
        targets = [
            {"boxes": b, "labels": lab, "difficult": d}
            for b, lab, d in zip(batch["gt_boxes"], batch["gt_labels"], batch["gt_difficult"], strict=True)
        ]
        evaluator.update(*to_evaluated(preds, targets, self._eval_lut))
        return preds

    @property
    def input_hw(self) -> tuple[int, int]:
        """The default network input (height, width) of the predict API and eval.py: a converted darknet cfg's
        rectangular ``[net]`` (``predict_hw``), else ``eval_size`` square."""
        hw = self.hparams.get("predict_hw")
        return (int(hw[0]), int(hw[1])) if hw else (int(self.hparams.eval_size), int(self.hparams.eval_size))

    def predict_raw(
        self,
        raw: torch.Tensor,
        input_hw: Any,
        transforms: torch.Tensor | None,
        orig_sizes: torch.Tensor | None,
        conf_thresh: float | None = None,
        nms_thresh: float | None = None,
        max_det: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """Decode + threshold + NMS, boxes in original image pixels (see :func:`yolo9000.postprocess.postprocess`);
        ``conf_thresh`` / ``nms_thresh`` / ``max_det`` override the module's settings for this call (None: keep)."""
        hp = self.hparams
        anchors = self.model.anchors
        if anchors.device != raw.device:  # decoded on the host after a GPU forward pass (Detector's decode_on)
            anchors = self.host_anchors() if raw.device.type == "cpu" else anchors.to(raw.device)
        return postprocess(
            raw,
            anchors,
            (int(input_hw[0]), int(input_hw[1])),
            transforms,
            orig_sizes,
            location=self.model.location,
            conf_thresh=hp.conf_thresh if conf_thresh is None else float(conf_thresh),
            nms_thresh=hp.nms_thresh if nms_thresh is None else float(nms_thresh),
            max_det=hp.max_det if max_det is None else int(max_det),
            pre_nms_topk=self.hparams.pre_nms_topk,
            tree=self.tree,
            tree_thresh=self.hparams.tree_thresh,
            tree_decode=self.hparams.tree_decode,
            tree_map=self.eval_nodes,
            class_activation=self.criterion.class_activation,  # the loss's head: one home for it
        )

    def average_outputs(self, raws: torch.Tensor) -> torch.Tensor:
        """(K, A * (5 + C), H, W) head outputs of K frames -> (1, ...) raw outputs of their activated mean, for
        :meth:`predict_raw` (darknet's demo; :func:`yolo9000.postprocess.average_outputs` with this head's
        location, class activation and tree)."""
        return average_outputs(
            raws,
            int(self.model.anchors.shape[0]),
            location=self.model.location,
            class_activation=self.criterion.class_activation,
            tree=self.tree,
        )

    def predict_step(self, batch: dict[str, Any], batch_idx: int = 0) -> dict[str, Any]:
        """Detections of a batch of :class:`yolo9000.data.predict.PredictCollate` (or any batch with ``images``,
        ``transforms``, ``orig_sizes``): boxes in original image pixels (the transform maps them back).

        Returns:
            ``{"detections": [per image {"path", "boxes" (N, 4) xyxy, "scores" (N,), "labels" (N,), "names"}],
            "failed": [{"file", "reason"}]}`` (tensors on the CPU).
        """
        images = batch["images"]
        out: list[dict[str, Any]] = []
        if len(images):
            preds = self.predict_raw(self(images), images.shape[-2:], batch["transforms"], batch["orig_sizes"])
            paths = batch.get("image_paths") or [str(i) for i in range(len(preds))]
            for path, p in zip(paths, preds, strict=True):
                p = {k: v.cpu() for k, v in p.items()}
                out.append({"path": path, **p, "names": [self.class_names[int(c)] for c in p["labels"]]})
        return {"detections": out, "failed": list(batch.get("failed", []))}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not self.skip_empty_batch(batch, "val"):
            self._eval_step(batch, self.val_eval, "val")

    def on_validation_epoch_end(self) -> None:
        res = self.val_eval.compute()
        self.val_eval.reset()
        head = self.hparams.headline_metric
        scalars = {f"val/{k}": float(v) for k, v in res.items() if _is_scalar(v) and k != head}
        self.log_dict(scalars)
        self.log(f"val/{head}", float(res[head]), prog_bar=True)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> list[dict[str, torch.Tensor]]:
        if self.skip_empty_batch(batch, "test"):
            return []
        return self._eval_step(batch, self.test_eval, self.test_prefix)

    def on_test_epoch_end(self) -> None:
        res = self.test_eval.compute()
        self.test_eval.reset()
        self.log_dict({f"{self.test_prefix}/{k}": float(v) for k, v in res.items() if _is_scalar(v)})
        self.test_results = res


def to_evaluated(
    preds: list[dict[str, torch.Tensor]], targets: list[dict[str, torch.Tensor]], lut: torch.Tensor | None
) -> tuple[list[dict[str, torch.Tensor]], list[dict[str, torch.Tensor]]]:
    """Predictions and truths with their labels as positions in the evaluated label set: ``lut`` (n,) maps a tree
    node to its position in the map (-1: a node the map leaves out, whose truths are not evaluated); None: as they
    are. Per image: preds ``boxes`` (N, 4), ``scores`` (N,), ``labels`` (N,); truths ``boxes`` (M, 4), ``labels``
    (M,), ``difficult`` (M,)."""
    if lut is None:
        return preds, targets
    mapped = [{**p, "labels": lut[p["labels"].to(lut.device)].to(p["labels"].device)} for p in preds]
    kept = []
    for t in targets:
        k = lut[t["labels"].to(lut.device)].to(t["labels"].device)
        keep = k >= 0
        kept.append({**t, "boxes": t["boxes"][keep], "labels": k[keep], "difficult": t["difficult"][keep]})
    return mapped, kept


def evaluated_names(class_names: list[str], nodes: torch.Tensor | None) -> list[str]:
    """The names of the evaluated classes (every class, or the ``nodes`` of a WordTree map, in the map's order),
    each unique: a name that several of them share gets its class index, ``"sheep [7255]"`` (darknet's 9k tree
    gives 1,247 of its 9,418 nodes a name another node has: per-class results keyed by name overwrote each other)."""
    idx = list(range(len(class_names))) if nodes is None else [int(n) for n in nodes.tolist()]
    names = [class_names[i] for i in idx]
    counts = Counter(names)
    return [f"{n} [{i}]" if counts[n] > 1 else n for n, i in zip(names, idx, strict=True)]


def resolve_map(tree: WordTree | None, spec: str | list[str | int] | None) -> torch.Tensor | None:
    """``eval_map`` as (K,) tree node indices: a darknet map file, or a list of node indices / names / wnids;
    None or ``"all"`` (every node, one per box by ``tree_decode``) -> None."""
    if spec is None or spec == "all":
        return None
    if tree is None:
        raise ValueError("eval_map needs a WordTree head (model.loss.tree); a flat head reports all its classes")
    if isinstance(spec, str):  # a map file
        return as_map(spec, tree)
    if not len(spec):
        raise ValueError("eval_map=[] reports no class (null or 'all': every node, one per box)")
    # an integer is a node index wherever it stands; anything else a node name or wnid
    nodes = [x if isinstance(x, int) and not isinstance(x, bool) else int(tree.map_labels([str(x)])[0]) for x in spec]
    repeated = sorted({n for n in nodes if nodes.count(n) > 1})
    if repeated:  # one node reported as two classes: its boxes twice, each AP against the other's truths
        raise ValueError(
            f"eval_map {list(spec)}: "
            + ", ".join(f"node {n}" + (f" ({tree.names[n]!r})" if 0 <= n < tree.n else "") for n in repeated)
            + " listed more than once"
        )
    named = {n: i for i, n in enumerate(tree.names)}
    other = [(x, named[str(x)]) for x in spec if isinstance(x, int) and named.get(str(x), x) != x]
    if other:  # eval_map=[5,6] on the digits: nodes 5 and 6, not the digits named "5", "6" (metric_groups reads names)
        log.warning(
            "eval_map %s: integers are node indices, and the nodes named %s are other nodes (%s); quote them to "
            'mean the names (eval_map=\'["5","6"]\')',
            list(spec),
            ", ".join(repr(str(x)) for x, _ in other),
            ", ".join(
                f"{str(x)!r} is node {i}, node {x} is {tree.names[x]!r}" for x, i in other if x < len(tree.names)
            ),
        )
    return as_map(nodes, tree)


def _is_scalar(v: Any) -> bool:
    return isinstance(v, int | float) or (isinstance(v, torch.Tensor) and v.numel() == 1)
