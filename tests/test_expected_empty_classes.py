"""Classes without images: a warning for a flat class list, where an empty class is a data problem; for the digit
WordTree's classification data (``data=digits_cls``, whose labels are tree nodes) the nodes that are never labels
(the root; the parity nodes in val / test, and in train without ``coarse_fraction``) are logged as expected, and
only the others are warned about."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from PIL import Image

from yolo9000.data.digits_cls import DigitsClassificationDataModule
from yolo9000.data.imagefolder import ClassificationDataModule

WARNING = "without images:"
EXPECTED = "without images, as expected:"


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


def test_a_flat_class_list_warns_about_an_empty_class(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = tmp_path / "ds"
    for split in ("train", "val"):
        for name, value in (("cat", 30), ("dog", 200)):
            (root / split / name).mkdir(parents=True)
            Image.new("RGB", (20, 16), (value,) * 3).save(root / split / name / "a.png")
    dm = ClassificationDataModule(str(root), class_names=["cat", "dog", "owl"], img_size=32, num_workers=0)
    with caplog.at_level(logging.INFO, logger="yolo9000"):
        dm.setup("fit")
    warned = [m for m in messages(caplog, logging.WARNING) if WARNING in m]
    assert warned == ["data.train: 1 class without images: ['owl']", "data.val: 1 class without images: ['owl']"]
    assert not any(EXPECTED in m for m in messages(caplog, logging.INFO))


@pytest.mark.parametrize("coarse", [0.0, 0.3])
def test_the_digit_trees_internal_nodes_are_expected_without_images(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, coarse: float
) -> None:
    dm = DigitsClassificationDataModule(
        cache_dir=tmp_path / "digits",
        coarse_fraction=coarse,
        max_images={"train": 200, "val": 100},
        img_size=32,
        num_workers=0,
    )
    with caplog.at_level(logging.INFO, logger="yolo9000"):
        dm.setup("fit")
    assert not any(WARNING in m for m in messages(caplog, logging.WARNING))
    infos = [m for m in messages(caplog, logging.INFO) if EXPECTED in m]
    train = "['digit']" if coarse else "['digit', 'even', 'odd']"
    assert infos == [
        f"data.train: {'1 class' if coarse else '3 classes'} {EXPECTED} {train}",
        f"data.val: 3 classes {EXPECTED} ['digit', 'even', 'odd']",
    ]
