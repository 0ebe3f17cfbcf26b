"""The classification LightningModule: Darknet-19 pretraining (paper Section 3, "Training for classification")
and the high-resolution fine-tune ("High Resolution Classifier": 448 x 448 for 10 epochs).

The network is :class:`~yolo9000.models.darknet19.Darknet19Classifier`, whose ``backbone`` is the detector's
:class:`~yolo9000.models.darknet19.Darknet19`: a checkpoint of this module holds ``model.backbone.*`` tensors,
which ``model.backbone_ckpt=<ckpt>`` of the detector loads (:func:`yolo9000.modules.pretrained.load_pretrained`,
the classifier head dropped).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from yolo9000.models.darknet19 import Darknet19Classifier
from yolo9000.modules.base import DarknetModule
from yolo9000.modules.pretrained import load_pretrained

log = logging.getLogger(__name__)

__all__ = ["ClassifierModule", "format_accuracy_table"]


class ClassifierModule(DarknetModule):
    """Darknet-19 classification training, validation (top-1 / top-5) and testing (+ per-class accuracy).

    Batches: ``{"images": uint8 or float (B, 3, S, S), "labels": int64 (B,), "paths": list[str]}``
    (see :class:`~yolo9000.data.imagefolder.ClassificationCollate`).

    Args:
        model: the :class:`Darknet19Classifier` ((B, 3, S, S) in [0, 1] -> (B, C) logits).
        optimizer: ``sgd`` (darknet) or ``adam``.
        lr, momentum, weight_decay: darknet19.cfg learning_rate 0.1, momentum 0.9, decay 5e-4 (conv weights
            only, as darknet).
        burn_in: iterations of ``lr * (it / burn_in)^power`` warm-up (darknet19.cfg: 1000).
        lr_policy: ``poly`` (darknet19.cfg: ``lr * (1 - it / total)^power`` over the whole run) or ``steps``.
        power: exponent of the poly policy and of the burn-in (darknet19.cfg: 4).
        steps, scales: the ``steps`` policy (steps as fractions of the run when all <= 1).
        label_smoothing: cross-entropy label smoothing (darknet: 0).
        top_k: the "top-5" accuracy's k (imagenet1k.data ``top=5``), clipped to the number of classes.
        class_names: names for the per-class table (default "0", "1", ...).
        init_ckpt: a checkpoint of this module (or a state dict of the network) to start from, e.g. the 224
            model for the 448 fine-tune; every tensor must fit (:func:`~yolo9000.modules.pretrained.load_pretrained`).
        build_info: what the build computed (:class:`yolo9000.build.BuildInfo`), kept in the checkpoint.
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
        init_ckpt: str | None = None,
        build_info: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["model"], logger=False)
        self.model = model
        num_classes = self.num_classes
        if num_classes < 2:
            raise ValueError(f"classification needs at least 2 classes, the model has {num_classes}")
        self.class_names = list(class_names) if class_names else [str(i) for i in range(num_classes)]
        if len(self.class_names) != num_classes:
            raise ValueError(f"{len(self.class_names)} class names for a {num_classes}-class model")
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self.k = min(int(top_k), num_classes)
        for stage in ("val", "test"):
            setattr(self, f"{stage}_top1", MulticlassAccuracy(num_classes, top_k=1, average="micro"))
            setattr(self, f"{stage}_topk", MulticlassAccuracy(num_classes, top_k=self.k, average="micro"))
            setattr(self, f"{stage}_loss", MeanMetric())
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_results: dict[str, Any] = {}
        if init_ckpt:  # e.g. the 224 model for the 448 fine-tune: every tensor must fit
            load_pretrained(self.model, init_ckpt)
        size = int((build_info or {}).get("eval_size") or 224)
        self.example_input_array = torch.zeros(1, 3, size, size)  # the model summary's FLOPs

    @property
    def num_classes(self) -> int:
        return int(self.model.head.conv.out_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [0, 1] -> (B, C) logits."""
        return self.model(images)

    # ---------------------------------------------------------------- training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        images, labels = batch["images"], batch["labels"]
        bsz = images.shape[0]
        self.count_seen(bsz)
        logits = self.model(images)
        loss = self.criterion(logits, labels)
        self.log("train/loss", loss, prog_bar=True, batch_size=bsz)
        self.log("train/top1", (logits.argmax(1) == labels).float().mean(), batch_size=bsz)
        self.log("train/seen", self.seen.float(), batch_size=bsz)
        return loss

    # ---------------------------------------------------------------- evaluation
    def _eval_step(self, batch: dict[str, Any], stage: str) -> torch.Tensor:
        """Updates the stage's metrics; returns the (B, C) logits."""
        images, labels = batch["images"], batch["labels"]
        logits = self.model(images)
        loss = nn.functional.cross_entropy(logits, labels, reduction="none")  # (B,): unsmoothed eval loss
        getattr(self, f"{stage}_loss").update(loss)
        getattr(self, f"{stage}_top1").update(logits, labels)
        getattr(self, f"{stage}_topk").update(logits, labels)
        return logits

    def _compute(self, stage: str) -> dict[str, float]:
        out = {}
        for key, name in (("top1", "top1"), ("top5", "topk"), ("loss", "loss")):
            metric = getattr(self, f"{stage}_{name}")
            out[key] = float(metric.compute())
            metric.reset()
        return out

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        res = self._compute("val")
        self.log("val/top1", res["top1"], prog_bar=True)
        self.log_dict({"val/top5": res["top5"], "val/loss": res["loss"]})

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self._eval_step(batch, "test")
        self.test_confusion.update(logits, batch["labels"])
        return logits

    def on_test_epoch_end(self) -> None:
        res: dict[str, Any] = self._compute("test")
        cm = self.test_confusion.compute().cpu()  # (C, C): rows = true class, columns = predicted
        self.test_confusion.reset()
        support = cm.sum(1)
        correct = cm.diagonal()
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
        res["confusion_matrix"] = cm.tolist()
        scalars = ("top1", "top5", "loss", "mean_class_accuracy")
        self.log_dict({f"test/{k}": float(res[k]) for k in scalars})
        self.test_results = res

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        """``{"probs": (B, C) softmax, "paths": list[str]}``."""
        return {"probs": self.model(batch["images"]).softmax(-1), "paths": batch.get("paths")}

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
