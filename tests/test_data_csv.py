"""CSV box tables (TensorFlow Object Detection CSV as Roboflow exports it, a single table with or without a split
column, Open Images' normalised CSV): BCCD's VOC boxes written as CSV by an independent regex reading of the XML
must parse to the VOC parser's boxes."""

from __future__ import annotations

import csv
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import data_config
from yolo9000.data import DataError, DetectionDataset, DetectionTransform, IssueLog, VOCParser
from yolo9000.data.csv_boxes import CSVParser

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT / "data" / "bccd"
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]
IDS = ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002", "BloodImage_00003", "BloodImage_00004"]


def _xml_rows(image_id: str) -> list[list[str]]:
    """(class, xmin - 1, ymin - 1, xmax, ymax) rows of a VOC XML, read by regex: VOC's 1-based inclusive pixels as
    0-based continuous coordinates (the convention of a CSV table)."""
    text = (BCCD / "Annotations" / f"{image_id}.xml").read_text()
    rows = []
    for obj in re.findall(r"<object>(.*?)</object>", text, re.S):
        name = re.search(r"<name>\s*(.*?)\s*</name>", obj).group(1)  # type: ignore[union-attr]
        x0, y0, x1, y1 = (
            int(re.search(rf"<{k}>\s*(-?\d+)\s*<", obj).group(1)) for k in ("xmin", "ymin", "xmax", "ymax")
        )  # type: ignore[union-attr]
        rows.append([name, str(x0 - 1), str(y0 - 1), str(x1), str(y1)])
    return rows


def _write(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _voc(ids: list[str]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    recs = VOCParser(BCCD, "all").parse(BCCD_CLASSES, IssueLog("skip"))
    return {r.image_id: (r.boxes, r.labels) for r in recs if r.image_id in ids}


def _roboflow(tmp_path: Path, splits: dict[str, list[str]]) -> Path:
    """Roboflow's TensorFlow CSV export: <split>/ with the images and _annotations.csv."""
    for folder, ids in splits.items():
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        rows = []
        for i in ids:
            shutil.copy(BCCD / "JPEGImages" / f"{i}.jpg", tmp_path / folder / f"{i}.jpg")
            w, h = Image.open(BCCD / "JPEGImages" / f"{i}.jpg").size
            rows += [[f"{i}.jpg", str(w), str(h), r[0], *r[1:]] for r in _xml_rows(i)]
        _write(
            tmp_path / folder / "_annotations.csv",
            ["filename", "width", "height", "class", *"xmin ymin xmax ymax".split()],
            rows,
        )
    return tmp_path


def test_roboflow_tf_csv_equals_the_voc_boxes(tmp_path: Path) -> None:
    """Split folders with _annotations.csv: each split's records carry the VOC parser's boxes and labels."""
    root = _roboflow(tmp_path, {"train": IDS[:3], "valid": IDS[3:4], "test": IDS[4:]})
    want = _voc(IDS)
    got = {}
    for split, ids in (("train", IDS[:3]), ("val", IDS[3:4]), ("test", IDS[4:])):
        recs = CSVParser(root, split).parse(BCCD_CLASSES, IssueLog("error"))
        assert [r.image_id for r in recs] == ids
        got |= {r.image_id: (r.boxes, r.labels) for r in recs}
    for i in IDS:
        assert np.array_equal(got[i][0], want[i][0]) and np.array_equal(got[i][1], want[i][1]), i


def test_class_names_are_every_split_s_classes_sorted(tmp_path: Path) -> None:
    """Without given names: the union over all splits' CSVs, sorted (a class seen only in test still has its id in
    train), the same list from every split's parser."""
    header = ["filename", "class", "xmin", "ymin", "xmax", "ymax"]
    for split, cls in (("train", "zebra"), ("valid", "cat"), ("test", "ant")):
        (tmp_path / split).mkdir()
        Image.new("RGB", (20, 20)).save(tmp_path / split / "a.png")
        _write(tmp_path / split / "_annotations.csv", header, [["a.png", cls, "1", "1", "5", "5"]])
    assert CSVParser(tmp_path, "train").discover_class_names() == ["ant", "cat", "zebra"]
    assert CSVParser(tmp_path, "test").discover_class_names() == ["ant", "cat", "zebra"]
    (rec,) = CSVParser(tmp_path, "train").parse()
    assert rec.labels.tolist() == [2]


def test_single_csv_with_a_split_column_and_without(tmp_path: Path) -> None:
    """One table: its split column picks the rows (valid = val); without one, a hash split puts every image in
    exactly one split."""
    Path(tmp_path / "images").mkdir()
    rows = []
    for k, i in enumerate(IDS):
        shutil.copy(BCCD / "JPEGImages" / f"{i}.jpg", tmp_path / "images" / f"{i}.jpg")
        rows += [[f"{i}.jpg", r[0], *r[1:], ["train", "train", "valid", "test", "train"][k]] for r in _xml_rows(i)]
    table = _write(tmp_path / "boxes.csv", ["image", "label", "x1", "y1", "x2", "y2", "subset"], rows)
    assert [r.image_id for r in CSVParser(tmp_path, "val").parse(BCCD_CLASSES)] == [IDS[2]]
    assert [r.image_id for r in CSVParser(table, "train").parse(BCCD_CLASSES)] == [IDS[0], IDS[1], IDS[4]]
    assert [r.image_id for r in CSVParser(tmp_path, "trainval").parse(BCCD_CLASSES)] == [IDS[0], IDS[1], IDS[2], IDS[4]]
    plain = _write(tmp_path / "boxes.csv", ["image", "label", "x1", "y1", "x2", "y2"], [r[:-1] for r in rows])
    parts = {
        s: [r.image_id for r in CSVParser(plain, s, split_seed=3).parse(BCCD_CLASSES)] for s in ("train", "val", "test")
    }
    assert sorted(sum(parts.values(), [])) == sorted(IDS)
    everything = CSVParser(plain, "all").parse(BCCD_CLASSES)
    want = _voc(IDS)
    assert all(np.array_equal(r.boxes, want[r.image_id][0]) for r in everything)


def test_open_images_normalised_values_and_image_ids_without_suffix(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """XMin, XMax, YMin, YMax in [0, 1] (Open Images' column order) are fractions of the image's sides; ImageID
    names the file without its suffix; forcing pixels reads the same numbers as pixels."""
    Image.new("RGB", (200, 100)).save(tmp_path / "abc123.jpg")
    header = ["ImageID", "Source", "LabelName", "Confidence", "XMin", "XMax", "YMin", "YMax"]
    _write(
        tmp_path / "train-annotations-bbox.csv",
        header,
        [["abc123", "xclick", "/m/01g317", "1", "0.1", "0.5", "0.2", "0.9"]],
    )
    with caplog.at_level(logging.INFO, "yolo9000.data"):
        (rec,) = CSVParser(tmp_path, "all").parse(["/m/01g317"])
    assert np.allclose(rec.boxes, [[20.0, 20.0, 100.0, 90.0]])
    assert "read as fractions" in caplog.text
    (px,) = CSVParser(tmp_path, "all", normalized=False).parse(["/m/01g317"])
    assert np.allclose(px.boxes, [[0.1, 0.2, 0.5, 0.9]])


def test_rows_that_lose_data_are_reported_with_file_and_line(tmp_path: Path) -> None:
    """A missing image, a class outside the list, a non-number: each reported naming the CSV (or image), the first
    raising under the error policy; a size that is not the file's rescales the boxes at load (reported, as VOC's); an
    empty row keeps its image as a negative."""
    for n in ("a", "b", "c", "d"):
        Image.new("RGB", (40, 30)).save(tmp_path / f"{n}.jpg")
    header = ["filename", "width", "height", "class", "xmin", "ymin", "xmax", "ymax"]
    rows = [
        ["a.jpg", "40", "30", "cat", "1", "2", "11", "12"],
        ["a.jpg", "40", "30", "dog", "1", "2", "11", "12"],  # not a class of the run
        ["a.jpg", "40", "30", "cat", "1", "x", "11", "12"],  # not a number
        ["a.jpg", "40", "30", "cat", "50", "2", "60", "12"],  # outside the 40 x 30 image
        ["b.jpg", "80", "60", "cat", "2", "4", "22", "24"],  # the CSV's size is not the file's: rescaled at load
        ["c.jpg", "40", "30", "", "", "", "", ""],  # no objects
        ["gone.jpg", "40", "30", "cat", "1", "2", "3", "4"],
    ]
    table = _write(tmp_path / "t.csv", header, rows)
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in CSVParser(tmp_path, "all").parse(["cat"], issues)}
    assert sorted(recs) == ["a", "b", "c"]
    assert (recs["b"].width, recs["b"].height) == (80, 60)  # the dataset maps its boxes onto the 40 x 30 pixels
    sample = DetectionDataset([recs["b"]], DetectionTransform(train=False), issues=issues)[(0, 64)]
    assert np.allclose(sample["gt_boxes"], [[1.0, 2.0, 11.0, 12.0]])
    assert recs["a"].boxes.tolist() == [[1.0, 2.0, 11.0, 12.0]] and len(recs["c"].boxes) == 0
    report = issues.report_dict()
    assert report["unknown class 'dog'"]["files"] == [str(table)]
    assert report["box outside the image"]["files"] == [str(tmp_path / "a.jpg")]  # a box's problem names its image
    assert report["a box value is not a number"]["files"] == [str(table)]
    assert report["annotation size differs from the image, boxes rescaled"]["files"] == [str(tmp_path / "b.jpg")]
    assert report["missing image file"]["files"] == [str(tmp_path / "gone.jpg")]
    with pytest.raises(DataError, match=r"t\.csv: unknown class 'dog'"):
        CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))


def test_a_missing_table_names_the_key_that_named_it(tmp_path: Path) -> None:
    """data.root given as the CSV itself: its not-found error names data.root; data.csv_file: that key."""
    with pytest.raises(FileNotFoundError, match=r"box table not found: .*nope\.csv \(data\.root\)"):
        CSVParser(tmp_path / "nope.csv", "train").parse(["a"])
    with pytest.raises(FileNotFoundError, match=r"box table not found: .*nope\.csv \(data\.csv_file\)"):
        CSVParser(tmp_path, "train", csv_file="nope.csv").parse(["a"])


def test_a_table_without_the_needed_columns_names_them(tmp_path: Path) -> None:
    """Neither the four corners nor a bbox column: the error names the file, its header and what is missing."""
    _write(tmp_path / "train.csv", ["image_id", "width", "height", "box_x", "source"], [["a", "1", "1", "2", "x"]])
    with pytest.raises(
        ValueError, match=r"train\.csv: no xmin, ymin, xmax, ymax column in the header \['image_id'.*a bbox column"
    ):
        CSVParser(tmp_path, "all").parse(["wheat"])


def test_a_global_wheat_table_reads_its_bbox_cells_as_one_class(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Kaggle's Global Wheat layout: ``image_id`` without a suffix, ``width`` / ``height``, a ``bbox`` cell
    ``[x, y, w, h]`` and no class column: boxes are x, y, x + w, y + h, all of the one class (``object`` unless
    class_names names it, logged); a class list of two for a table without classes is an error; a table with both
    corners and a bbox reads the corners."""
    for name in ("a", "b"):
        Image.new("RGB", (100, 80)).save(tmp_path / f"{name}.jpg")
    _write(
        tmp_path / "train.csv",
        ["image_id", "width", "height", "bbox", "source"],
        [["a", "100", "80", "[10.0, 20.0, 30.0, 15.5]", "usask_1"], ["a", "100", "80", "[0, 0, 5, 5]", "usask_1"],
         ["b", "100", "80", "50 40 10 10", "arvalis_1"]],
    )  # fmt: skip
    with caplog.at_level(logging.INFO, "yolo9000"):
        parser = CSVParser(tmp_path, "all")
        assert parser.discover_class_names() == ["object"]
    assert "no class column: every box is of one class, 'object'" in caplog.text
    recs = {r.image_id: r for r in CSVParser(tmp_path, "all").parse(["wheat"], IssueLog("error"))}
    assert recs["a"].boxes.tolist() == [[10.0, 20.0, 40.0, 35.5], [0.0, 0.0, 5.0, 5.0]]
    assert recs["b"].boxes.tolist() == [[50.0, 40.0, 60.0, 50.0]] and recs["a"].labels.tolist() == [0, 0]
    with pytest.raises(ValueError, match=r"train\.csv: no class column, so its boxes are of one class, but the "
                       r"class list has 2"):  # fmt: skip
        CSVParser(tmp_path, "all").parse(["wheat", "weed"])
    _write(
        tmp_path / "train.csv",
        ["filename", "class", "xmin", "ymin", "xmax", "ymax", "bbox"],
        [["a.jpg", "wheat", "1", "2", "3", "4", "[9, 9, 9, 9]"]],
    )
    (rec,) = CSVParser(tmp_path, "all").parse(["wheat"], IssueLog("skip"))
    assert rec.boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]]


def test_data_csv_config_feeds_the_data_module(tmp_path: Path) -> None:
    """`data=csv` composes and its DataModule reads a Roboflow export: class names from the CSVs, a training batch."""
    from hydra.utils import instantiate

    root = _roboflow(tmp_path, {"train": IDS[:3], "valid": IDS[3:4], "test": IDS[4:]})
    cfg = data_config("csv")
    cfg.data.root = str(root)
    cfg.data.num_workers = 0
    cfg.data.batch_size = 2
    cfg.data.multiscale.enabled = False
    cfg.data.img_size = 128
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    assert dm.class_names == ["Platelets", "RBC", "WBC"]
    batch = next(iter(dm.train_dataloader()))
    assert batch["images"].shape[0] == 2


def test_a_class_without_a_box_is_a_dropped_box_and_an_empty_row_a_negative(tmp_path: Path) -> None:
    """A row naming a class with empty box cells loses a box (reported, the image kept); a row with neither lists
    an image without objects."""
    for name in ("a", "b"):
        Image.new("RGB", (50, 40)).save(tmp_path / f"{name}.jpg")
    _write(
        tmp_path / "t.csv",
        ["filename", "class", "xmin", "ymin", "xmax", "ymax"],
        [["a.jpg", "cat", "", "", "", ""], ["a.jpg", "cat", "1", "2", "3", "4"], ["b.jpg", "", "", "", "", ""]],
    )
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in CSVParser(tmp_path, "all").parse(["cat"], issues)}
    assert recs["a"].boxes.tolist() == [[1.0, 2.0, 3.0, 4.0]] and len(recs["b"].boxes) == 0
    assert issues.count("drop_box", "a class without a box") == 1
