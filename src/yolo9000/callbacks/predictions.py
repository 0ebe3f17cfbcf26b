"""Pictures of predicted boxes on test images, saved into the run directory and logged to W&B."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from yolo9000.data.image_io import ImageDecodeError, read_image_notes
from yolo9000.viz import draw_detections, save_image

log = logging.getLogger(__name__)


class PredictionImages(pl.Callback):
    """Draws the predictions (score >= ``score_thresh``; solid boxes) and the ground truth (dashed, in its class's
    colour and captioned with its name: a missed object's class can be read) on the first ``num_images`` test
    images into ``<run dir>/predictions/`` (under DDP rank 0 draws them from its shard: test images 0, W, 2W, ...
    with W processes). Each image is read as the dataset read it, so the boxes land in their frame: its EXIF
    orientation applied, or its stored pixels where the dataset kept those.

    Args:
        num_images: how many test images to draw.
        score_thresh: minimum score of a drawn box.
        dirname: folder name inside the trainer's ``default_root_dir``.
    """

    def __init__(self, num_images: int = 8, score_thresh: float = 0.3, dirname: str = "predictions") -> None:
        self.num_images, self.score_thresh, self.dirname = num_images, score_thresh, dirname
        self.saved: list[Path] = []

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.saved = []

    def on_test_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if not trainer.is_global_zero or len(self.saved) >= self.num_images or not outputs:
            return
        out_dir = Path(trainer.default_root_dir) / self.dirname
        out_dir.mkdir(parents=True, exist_ok=True)
        names = getattr(pl_module, "class_names", None)
        for i, pred in enumerate(outputs):
            if len(self.saved) >= self.num_images:
                break
            path = Path(batch["image_paths"][i])
            try:  # as the dataset read it (the boxes' frame): EXIF orientation applied, any format it decodes
                pixels = read_image_notes(path, notes=False)[0]
                sizes = batch.get("orig_sizes")
                if sizes is not None and pixels.shape[:2] != tuple(sizes[i].tolist()):
                    pixels = read_image_notes(path, notes=False, exif=False)[0]  # it kept the stored pixels
            except ImageDecodeError as e:  # the dataset already reported unreadable files
                log.warning("cannot draw %s: %s", path, e)
                continue
            image = torch.from_numpy(pixels).permute(2, 0, 1)
            keep = pred["scores"] >= self.score_thresh
            drawn = draw_detections(
                image,
                pred["boxes"][keep].cpu(),
                pred["labels"][keep].cpu(),
                pred["scores"][keep].cpu(),
                names,
                gt_boxes=batch["gt_boxes"][i].cpu(),
                gt_labels=batch["gt_labels"][i].cpu(),
            )
            target = out_dir / _free_name(path, {p.name for p in self.saved})
            save_image(drawn, target)
            self.saved.append(target)

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.saved:
            return
        log.info(
            "prediction pictures (predictions scored >= %g: solid, captioned name and score; ground truth: dashed, "
            "its class name at the bottom left; one colour per class): %s",
            self.score_thresh,
            self.saved[0].parent,
        )
        for lg in trainer.loggers:
            if isinstance(lg, pl.loggers.WandbLogger):
                prefix = getattr(pl_module, "test_prefix", "test")  # eval.py split=val: val/predictions
                lg.log_image(key=f"{prefix}/predictions", images=[str(p) for p in self.saved])


def _free_name(path: Path, used: set[str]) -> str:
    """The picture's file name: ``<stem>.jpg``; taken by an earlier picture of this test (a.jpg and a.png, or one
    name in two folders), ``<stem>_<suffix>.jpg``, then numbered."""
    name = f"{path.stem}.jpg"
    if name in used:
        name = f"{path.stem}_{path.suffix[1:]}.jpg" if path.suffix else name
    base, k = name[: -len(".jpg")], 1
    while name in used:
        name, k = f"{base}_{k}.jpg", k + 1
    return name
