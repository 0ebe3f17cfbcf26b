"""Where a CSV box table's images are found: Kaggle's layout (``train.csv`` at the root, its images in ``train/``,
ids without a suffix as Global Wheat's ``image_id``), ``data.image_dir`` naming another folder, and a missing image
reported with the folders looked in and the key that fixes it."""

from __future__ import annotations

from pathlib import Path

from test_darknet_csv_rules import _boxes, _image, _table
from yolo9000.data.csv_boxes import CSVParser
from yolo9000.data.records import IssueLog

HEADER = ["image_id", "width", "height", "bbox", "source"]
ROWS = [["a", "40", "30", "[1.0, 2.0, 10.0, 10.0]", "x"], ["b", "40", "30", "[5, 5, 4, 3]", "x"]]


def test_kaggle_layout_finds_the_images_in_the_folder_named_as_the_csv(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "a.jpg")
    _image(tmp_path / "train" / "b.jpg")
    _image(tmp_path / "test" / "c.jpg")  # Kaggle's unlabelled test images: no table names them
    _table(tmp_path / "train.csv", HEADER, ROWS)
    assert _boxes(CSVParser(tmp_path, "all", csv_file="train.csv"), ["object"]) == {
        "a": [[1.0, 2.0, 11.0, 12.0]],
        "b": [[5.0, 5.0, 9.0, 8.0]],
    }


def test_image_dir_names_the_images_folder(tmp_path: Path) -> None:
    _image(tmp_path / "pictures" / "a.jpg")
    _image(tmp_path / "pictures" / "b.jpg")
    _image(tmp_path / "a.jpg", size=(80, 60))  # beside the table: image_dir wins over the default places
    _table(tmp_path / "boxes.csv", HEADER, ROWS)
    records = CSVParser(tmp_path, "all", image_dir="pictures").parse(["object"], IssueLog("error"))
    assert {r.image_id: r.image_path for r in records} == {
        "a": tmp_path / "pictures" / "a.jpg",
        "b": tmp_path / "pictures" / "b.jpg",
    }


def test_a_missing_image_names_the_folders_looked_in_and_the_key(tmp_path: Path) -> None:
    _image(tmp_path / "train" / "a.jpg")
    _table(tmp_path / "train.csv", HEADER, ROWS)
    issues = IssueLog("skip")
    records = CSVParser(tmp_path, "all", csv_file="train.csv").parse(["object"], issues)
    assert [r.image_id for r in records] == ["a"]
    (issue,) = [i for i in issues.issues if i.reason == "missing image file"]
    assert "looked for b (with .jpg, .jpeg, .png or .JPG) in" in issue.detail
    assert str(tmp_path / "train") in issue.detail and "data.image_dir names the images' folder" in issue.detail
