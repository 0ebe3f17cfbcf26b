"""A YOLO dataset whose label files are not where its images say (a labels folder renamed): training stops saying
that no image has a label file and where they were looked for, not that the class names differ; a val split without
any label file is a warning (every image a negative, its mAP undefined), not notes alone."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from yolo9000.data.datamodule import DetectionDataModule
from yolo9000.data.records import DataError


def dataset(root: Path, train_labels: str, val_labels: str) -> Path:
    for split, labels in (("train", train_labels), ("val", val_labels)):
        for k in range(4):
            (root / "images" / split).mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 32), (90, 90, 90)).save(root / "images" / split / f"{split}{k}.jpg")
            (root / labels / split).mkdir(parents=True, exist_ok=True)
            (root / labels / split / f"{split}{k}.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    (root / "data.yaml").write_text("path: .\ntrain: images/train\nval: images/val\nnames: [cell]\n")
    return root


def module(root: Path) -> DetectionDataModule:
    parser = {"_target_": "yolo9000.data.yolo_txt.YOLOTxtParser", "root": str(root)}
    return DetectionDataModule(
        train={**parser, "split": "train"},
        val={**parser, "split": "val"},
        class_names=None,
        on_error="skip",
        batch_size=2,
        num_workers=0,
        img_size=64,
        cache_images=False,
    )


def test_no_label_file_for_any_training_image_says_so(tmp_path: Path) -> None:
    root = dataset(tmp_path / "ds", train_labels="annotations", val_labels="annotations")
    with pytest.raises(DataError) as err:
        module(root).setup("fit")
    msg = str(err.value)
    assert "none of its 4 images has a label file" in msg and str(root / "labels" / "train") in msg
    assert "class_names" not in msg


def test_a_val_split_without_label_files_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = dataset(tmp_path / "ds", train_labels="labels", val_labels="validation_labels")
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        dm = module(root)
        dm.setup("fit")
    warned = [r.getMessage() for r in caplog.records if "has a label file" in r.getMessage()]
    assert len(warned) == 1 and warned[0].startswith("data.val: none of its 4 images has a label file")
    assert str(root / "labels" / "val") in warned[0]
    assert sum(len(r.boxes) for r in dm.datasets["train"].records) == 4  # train is labelled: no warning for it
