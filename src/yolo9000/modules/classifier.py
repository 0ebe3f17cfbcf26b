"""The classification LightningModule: Darknet-19 pretraining (paper Section 3, "Training for classification")
and the high-resolution fine-tune ("High Resolution Classifier": 448 x 448 for 10 epochs).

The network is :class:`~yolo9000.models.darknet19.Darknet19Classifier`, whose ``backbone`` is the detector's
:class:`~yolo9000.models.darknet19.Darknet19`: a checkpoint of this module holds ``model.backbone.*`` tensors,
which ``model.backbone_ckpt=<ckpt>`` of the detector loads (:func:`yolo9000.modules.pretrained.load_pretrained`,
the classifier head dropped).

With a :class:`~yolo9000.wordtree.WordTree` (``model.tree``; paper Section 3 "Hierarchical classification", the
WordTree1k setting) the head predicts the tree's nodes, trained with the hierarchical softmax: a softmax cross-entropy
in every sibling group on the label's path to the root (darknet's softmax layer with a tree; its classifier truth is
the label node and all its ancestors, ``fill_hierarchy``). A label may be an internal node ("dog" without the breed):
only the groups above it are trained. Evaluation reports leaf top-1 / top-k over the leaves' absolute probabilities
(darknet ``validate_classifier``, ``hierarchy_predictions(only_leaves=1)``), the accuracy at every depth of the tree,
and ``tree_top1``: the node of the paper's top-down descent (threshold 0.5) against the label node.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from yolo9000.models.darknet19 import Darknet19Classifier
from yolo9000.modules.base import DarknetModule
from yolo9000.modules.pretrained import load_pretrained
from yolo9000.wordtree import WordTree, check_tree_classes

log = logging.getLogger(__name__)

__all__ = ["ClassifierModule", "NodeCounts", "ancestors_by_depth", "format_accuracy_table", "tree_cross_entropy"]


def tree_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, tree: WordTree) -> torch.Tensor:
    """The hierarchical softmax loss of each sample: the sum over the sibling groups on the label's path to the root
    of the group's softmax cross-entropy toward the path node, ``-sum_{v in path(label)} log P(v | parent(v))``
    (darknet's ``softmax_x_ent`` on a tree; groups off the path get no gradient).

    Args:
        logits: (B, n) raw scores of the tree's nodes.
        labels: (B,) int64 tree node of each sample (a leaf or an internal node).
        tree: the WordTree.
    Returns:
        (B,) float32 loss per sample.
    """
    logp = tree.log_softmax(logits.float())  # (B, n) log P(node | parent)
    path = tree.paths.to(labels.device)[labels]  # (B, D): label, parent, ..., root, -1 padding
    picked = logp.gather(1, path.clamp_min(0))  # (B, D)
    return -torch.where(path >= 0, picked, torch.zeros((), device=picked.device)).sum(1)


def ancestors_by_depth(tree: WordTree) -> tuple[torch.Tensor, torch.Tensor]:
    """Each node's ancestors indexed by depth.

    Returns:
        (n, D) int64: ``[x, d - 1]`` = the node at depth d (a root has depth 1) on x's path, x itself at its own
        depth, -1 below it; and (n,) int64 depth of every node.
    """
    valid = tree.paths >= 0  # (n, D)
    depth = valid.sum(1)  # (n,)
    rows, cols = torch.nonzero(valid, as_tuple=True)
    anc = torch.full_like(tree.paths, -1)
    anc[rows, depth[rows] - 1 - cols] = tree.paths[rows, cols]  # paths[x, j] sits at depth depth[x] - j
    return anc, depth


class NodeCounts(Metric):
    """Per-class (per-node) correct predictions and support, summed over DDP ranks: the per-class table of a tree
    head, whose confusion matrix (n x n) would be large."""

    full_state_update = False
    correct: torch.Tensor
    support: torch.Tensor

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.add_state("correct", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("support", torch.zeros(num_classes, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, labels: torch.Tensor, correct: torch.Tensor) -> None:
        """labels: (B,) int64 class; correct: (B,) bool."""
        self.support.index_add_(0, labels, torch.ones_like(labels))
        self.correct.index_add_(0, labels, correct.long())

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(C,) correct, (C,) support."""
        return self.correct, self.support


class ClassifierModule(DarknetModule):
    """Darknet-19 classification training, validation (top-1 / top-5) and testing (+ per-class accuracy).

    Batches: ``{"images": uint8 or float (B, 3, S, S), "labels": int64 (B,), "paths": list[str]}``
    (see :class:`~yolo9000.data.imagefolder.ClassificationCollate`); with a ``tree`` the labels are tree nodes.

    Metrics (``val/<key>``, ``test/<key>``; the test values also in :attr:`test_results`, hence metrics.json):
    flat: ``top1``, ``top5`` (top-k), ``loss``. With a tree (D = ``tree.depth``):

    - ``top1`` / ``top5``: the label among the best 1 / k leaves by absolute probability, over leaf labels only;
    - ``acc_depth_<d>``, d = 1..D: the best leaf's ancestor at depth d is the label's, over labels of depth >= d;
    - ``tree_top1``: the node of ``tree.top_down(P(node | parent), tree_thresh)`` is the label node (all labels);
    - ``loss``: :func:`tree_cross_entropy`.

    Args:
        model: the :class:`Darknet19Classifier` ((B, 3, S, S) in [0, 1] -> (B, C) logits).
        optimizer: ``sgd`` (darknet) or ``adam``.
        lr, momentum, weight_decay: darknet19.cfg learning_rate 0.1, momentum 0.9, decay 5e-4 (conv weights
            only, as darknet).
        burn_in: iterations of ``lr * (it / burn_in)^power`` warm-up (darknet19.cfg: 1000).
        lr_policy: ``poly`` (darknet19.cfg: ``lr * (1 - it / total)^power`` over the whole run) or ``steps``.
        power: exponent of the poly policy and of the burn-in (darknet19.cfg: 4).
        steps, scales: the ``steps`` policy (steps as fractions of the run when all <= 1).
        label_smoothing: cross-entropy label smoothing (darknet: 0; flat softmax only).
        top_k: the "top-5" accuracy's k (imagenet1k.data ``top=5``), clipped to the number of classes.
        class_names: names for the per-class table (default "0", "1", ...; with a tree: its node names).
        tree: a :class:`~yolo9000.wordtree.WordTree` for the hierarchical softmax (the head predicts its ``tree.n``
            nodes, so the data's class list must be the tree's nodes in the tree's order); None = flat softmax.
        tree_thresh: threshold of the top-down descent behind ``tree_top1`` (the paper / darknet: 0.5).
        init_ckpt: a checkpoint of this module (or a state dict of the network) to start from, e.g. the 224
            model for the 448 fine-tune; every tensor must fit (:func:`~yolo9000.modules.pretrained.load_pretrained`).
        build_info: what the build computed (:class:`yolo9000.build.BuildInfo`), kept in the checkpoint.
        fast: the fast-path switches (:class:`yolo9000.speed.FastPath`), as the detector's.
    """

    monitor = "val/top1"  # the metric that picks the best checkpoint (mode max)

    def __init__(
        self,
        model: Darknet19Classifier,
        optimizer: Literal["sgd", "adam"] = "sgd",
        lr: float = 0.1,
        momentum: float = 0.9,
        weight_decay: float = 5e-4,
        burn_in: int = 1000,
        lr_policy: Literal["poly", "steps"] = "poly",
        power: float = 4.0,
        steps: Sequence[float] | None = None,
        scales: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
        top_k: int = 5,
        class_names: Sequence[str] | None = None,
        tree: WordTree | None = None,
        tree_thresh: float = 0.5,
        init_ckpt: str | None = None,
        build_info: dict[str, Any] | None = None,
        fast: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(fast)
        if self.fast.compile_loss:  # a switch that would change nothing must not look applied
            raise ValueError("model.fast.compile_loss compiles a detector's region loss; a classifier has none")
        self.save_hyperparameters(ignore=["model", "tree"], logger=False)  # the tree: its spec in model_config
        self.model = model
        num_classes = self.num_classes
        if num_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, the model has {num_classes}")
        self.tree = tree
        self.tree_thresh = float(tree_thresh)
        if tree is not None:
            if tree.n != num_classes:
                raise ValueError(
                    f"the WordTree has {tree.n} nodes but the head predicts {num_classes} classes: the data's class "
                    "list must be the tree's nodes in the tree's order (labels are node indices), e.g. "
                    "data.class_file=<the tree's labels or names file>"
                )
            if label_smoothing:
                raise ValueError("label_smoothing applies to the flat softmax only (model.tree is set)")
        default_names = tree.names if tree is not None else [str(i) for i in range(num_classes)]
        self.class_names = list(class_names) if class_names else list(default_names)
        if tree is not None and class_names:
            check_tree_classes(tree, self.class_names)
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a {num_classes}-class model")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        if tree is None:
            self.k = min(int(top_k), num_classes)
            for stage in ("val", "test"):
                setattr(self, f"{stage}_top1", MulticlassAccuracy(num_classes, top_k=1, average="micro"))
                setattr(self, f"{stage}_topk", MulticlassAccuracy(num_classes, top_k=self.k, average="micro"))
                setattr(self, f"{stage}_loss", MeanMetric())
            self.test_confusion = MulticlassConfusionMatrix(num_classes)
        else:
            anc, depth = ancestors_by_depth(tree)
            leaves = torch.nonzero(tree.child_group < 0).flatten()
            # per-tree lookup tables, moved with the module, not saved (the tree's files rebuild them)
            self.register_buffer("tree_ancestors", anc, persistent=False)  # (n, D) node at depth d, -1 below
            self.register_buffer("tree_depth", depth, persistent=False)  # (n,) depth of each node (root: 1)
            self.register_buffer("tree_leaves", leaves, persistent=False)  # (L,) leaf nodes
            self.register_buffer("tree_is_leaf", tree.child_group < 0, persistent=False)  # (n,) bool
            self.k = min(int(top_k), len(leaves))
            for stage in ("val", "test"):
                for key in self._tree_keys():
                    setattr(self, f"{stage}_{key}", MeanMetric())  # weighted: masked samples count 0
            self.test_nodes = NodeCounts(num_classes)
        if self.k == (num_classes if tree is None else len(leaves)):  # k clipped to every class (or exactly it)
            log.info(
                "top5 is the top-%d accuracy here (%d classes): always 1.0, it says nothing about this model",
                self.k,
                self.k,
            )
        self.test_results: dict[str, Any] = {}
        size = int((build_info or {}).get("eval_size") or 224)
        if init_ckpt:  # e.g. the 224 model for the 448 fine-tune: every tensor must fit
            names = list(class_names) if class_names else None
            load_pretrained(self.model, init_ckpt, class_names=names, input_size=(build_info or {}).get("eval_size"))
        self.example_input_array = torch.zeros(1, 3, size, size)  # the model summary's FLOPs

    @property
    def num_classes(self) -> int:
        return int(self.model.head.conv.out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C) logits."""
        return self.model(images)

    def _tree_keys(self) -> list[str]:
        """Metric keys of a tree head (the flat ones are top1, topk, loss)."""
        assert self.tree is not None
        return ["top1", "topk", "loss", *(f"acc_depth_{d}" for d in range(1, self.tree.depth + 1)), "tree_top1"]

    def tree_outputs(self, logits: torch.Tensor) -> dict[str, torch.Tensor]:
        """What a tree head predicts (``tree`` set).

        Args:
            logits: (B, n) node scores.
        Returns:
            ``cond`` (B, n) P(node | parent); ``prob`` (B, n) absolute P(node); ``leaf`` (B,) best leaf node by
            absolute probability; ``topk`` (B, k) the k best leaves, best first; ``top_down`` (B,) the node of
            the top-down descent (``tree.top_down(cond, tree_thresh)``).
        """
        assert self.tree is not None
        cond = self.tree.softmax(logits.float())
        prob = self.tree.absolute(cond)
        leaf_prob = prob.index_select(1, self.tree_leaves)  # (B, L)
        topk = self.tree_leaves[leaf_prob.topk(self.k, dim=1).indices]  # (B, k)
        top_down = self.tree.top_down(cond.contiguous(), self.tree_thresh)
        return {"cond": cond, "prob": prob, "leaf": topk[:, 0], "topk": topk, "top_down": top_down}

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        """The loss of one batch; returns ``{"loss", "terms"}`` as the detector's (``terms``: ``train/top1`` for the
        epoch line; logged on the steps the loggers write); None for a batch without a readable image."""
        if self.skip_empty_batch(batch, "train"):
            return None  # Lightning: no backward, no optimizer step
        images, labels = batch["images"], batch["labels"]
        bsz = images.shape[0]
        self.count_seen(bsz)
        logits = self.model(images)
        if self.tree is None:
            loss = self.criterion(logits, labels)
            top1 = (logits.argmax(1) == labels).float().mean()
        else:
            loss = tree_cross_entropy(logits, labels, self.tree).mean()  # darknet: batch sum, lr / batch
            with torch.no_grad():
                prob = self.tree.absolute(self.tree.softmax(logits.detach().float()))
                leaf = self.tree_leaves[prob.index_select(1, self.tree_leaves).argmax(1)]
                is_leaf = self.tree_is_leaf[labels]
                top1 = (leaf == labels)[is_leaf].float().mean() if bool(is_leaf.any()) else None
        self.log("train/loss", loss, prog_bar=True, batch_size=bsz)
        terms = {} if top1 is None else {"train/top1": top1.detach()}
        if self.logs_written_this_step():
            self.log_dict({**terms, "train/seen": self.seen.float()}, batch_size=bsz)
        return {"loss": loss, "terms": terms}

    # ---------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        """Updates the stage's metrics; returns the (B, C) logits."""
        logits = self.model(batch["images"])
        self.update_metrics(stage, logits, batch["labels"])
        return logits

    def update_metrics(self, stage: str, logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add a batch to the ``val`` / ``test`` metrics (per-class counts too for ``test``).

        Args:
            logits: (B, C) scores; labels: (B,) int64 class (tree node with a tree).
        """
        if self.tree is None:
            loss = nn.functional.cross_entropy(logits, labels, reduction="none")  # (B,): unsmoothed eval loss
            getattr(self, f"{stage}_loss").update(loss)
            getattr(self, f"{stage}_top1").update(logits, labels)
            getattr(self, f"{stage}_topk").update(logits, labels)
            if stage == "test":
                self.test_confusion.update(logits, labels)
            return
        out = self.tree_outputs(logits)
        leaf, anc = out["leaf"], self.tree_ancestors
        is_leaf = self.tree_is_leaf[labels].float()  # (B,): top-1 / top-k count leaf labels only
        label_depth = self.tree_depth[labels]  # (B,)
        values = {
            "top1": ((leaf == labels).float(), is_leaf),
            "topk": ((out["topk"] == labels.unsqueeze(1)).any(1).float(), is_leaf),
            "loss": (tree_cross_entropy(logits, labels, self.tree), torch.ones_like(is_leaf)),
            "tree_top1": ((out["top_down"] == labels).float(), torch.ones_like(is_leaf)),
        }
        for d in range(1, self.tree.depth + 1):  # the predicted leaf's ancestor at depth d vs the label's
            values[f"acc_depth_{d}"] = ((anc[leaf, d - 1] == anc[labels, d - 1]).float(), (label_depth >= d).float())
        for key, (value, weight) in values.items():
            getattr(self, f"{stage}_{key}").update(value, weight)
        if stage == "test":  # per class: the best leaf lies under the label node (the leaf itself for a leaf label)
            self.test_nodes.update(labels, anc[leaf, label_depth - 1] == labels)

    def _compute(self, stage: str) -> dict[str, float]:
        keys = ["top1", "topk", "loss"] if self.tree is None else self._tree_keys()
        out = {}
        for name in keys:
            metric = getattr(self, f"{stage}_{name}")
            out["top5" if name == "topk" else name] = float(metric.compute())
            metric.reset()
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not self.skip_empty_batch(batch, "val"):
            self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        res = self._compute("val")
        self.log("val/top1", res.pop("top1"), prog_bar=True)
        self.log_dict({f"val/{k}": v for k, v in res.items()})

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor | None:
        return None if self.skip_empty_batch(batch, "test") else self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        res: dict[str, Any] = self._compute("test")
        scalars = list(res)
        if self.tree is None:
            cm = self.test_confusion.compute().cpu()  # (C, C): rows = true class, columns = predicted
            self.test_confusion.reset()
            support, correct = cm.sum(1), cm.diagonal()
        else:
            correct, support = (t.cpu() for t in self.test_nodes.compute())
            self.test_nodes.reset()
        res["top5_k"] = self.k
        res["num_images"] = int(support.sum())
        res["per_class"] = {
            name: {
                "accuracy": float(correct[i] / support[i]) if support[i] else float("nan"),
                "num_images": int(support[i]),
            }
            for i, name in enumerate(self.class_names)
        }
        accs = [v["accuracy"] for v in res["per_class"].values() if not math.isnan(v["accuracy"])]
        res["mean_class_accuracy"] = sum(accs) / len(accs) if accs else float("nan")
        if self.tree is None:
            res["confusion_matrix"] = cm.tolist()
        self.log_dict({f"test/{k}": float(res[k]) for k in (*scalars, "mean_class_accuracy")})
        self.test_results = res

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """Flat: ``{"probs": (B, C) softmax, "paths": list[str]}``. With a tree: ``{"probs": (B, n) absolute
        P(node), "nodes": (B,) top-down node, "names": list[str] its tree name, "leaves": (B,) best leaf,
        "leaf_names": list[str], "paths": list[str]}``."""
        logits = self.model(batch["images"])
        if self.tree is None:
            return {"probs": logits.softmax(-1), "paths": batch.get("paths")}
        out = self.tree_outputs(logits)
        names = self.tree.names
        return {
            "probs": out["prob"],
            "nodes": out["top_down"],
            "names": [names[i] for i in out["top_down"].tolist()],
            "leaves": out["leaf"],
            "leaf_names": [names[i] for i in out["leaf"].tolist()],
            "paths": batch.get("paths"),
        }

    # ---------------------------------------------------------------- checkpoints


def format_accuracy_table(per_class: Mapping[str, Mapping[str, float]], class_names: Sequence[str]) -> str:
    """Markdown table of per-class accuracy (``ClassifierModule.test_results["per_class"]``): class | accuracy |
    #images, with a final row of the mean over classes with images and the total."""
    lines = ["| class | accuracy | #images |", "|---|---:|---:|"]
    accs, total = [], 0
    for name in class_names:
        row = per_class.get(name, {})
        acc, n = float(row.get("accuracy", float("nan"))), int(row.get("num_images", 0))
        total += n
        if not math.isnan(acc):
            accs.append(acc)
        lines.append(f"| {name} | {'–' if math.isnan(acc) else f'{acc:.4f}'} | {n} |")
    mean = sum(accs) / len(accs) if accs else float("nan")
    lines.append(f"| mean | {'–' if math.isnan(mean) else f'{mean:.4f}'} | {total} |")
    return "\n".join(lines)
