"""Two defects of the CSV box-table parser (``data=csv``) found by a user: a fraction table with one value of
``1.0004`` (an export's rounding) was read as pixels, every box sub-pixel, silently; a table whose split column has no
``test`` rows left ``data.test`` without images at the end of training, where every other layout falls back to val."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import data_config
from test_data_csv import _write
from yolo9000.data import IssueLog
from yolo9000.data.csv_boxes import CSVParser

HEADER = ["filename", "class", "xmin", "ymin", "xmax", "ymax"]
W, H = 200, 100
# fractions, and the pixels they are of a 200 x 100 image
FRACTIONS = [["a.jpg", "cat", "0.25", "0.5", "1.0", "1.0"], ["b.jpg", "cat", "0", "0", "0.5", "0.25"]]
PIXELS = {"a": [[50.0, 50.0, 200.0, 100.0]], "b": [[0.0, 0.0, 100.0, 25.0]]}


def _images(folder: Path, names: list[str], size: tuple[int, int] = (W, H)) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for n in names:
        Image.new("RGB", size).save(folder / n)


def _boxes(parser: CSVParser, issues: IssueLog | None = None) -> dict[str, list[list[float]]]:
    recs = parser.parse(["cat"], issues if issues is not None else IssueLog("error"))
    return {r.image_id: np.round(r.boxes, 3).tolist() for r in recs}


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


# ---------------------------------------------------------------------------------------------------- units
def test_a_fraction_table_with_a_rounded_1_0004_is_read_as_fractions(tmp_path: Path) -> None:
    """A value of 1.0004 (or -0.0003) in a fraction table is rounding: the table is read as fractions, the boxes in
    the same pixels as the clean table's, the stray values clipped into [0, 1] and reported (fixed, never an error)
    naming the table and the line."""
    _images(tmp_path, ["a.jpg", "b.jpg"])
    clean = _boxes(CSVParser(_write(tmp_path / "clean.csv", HEADER, FRACTIONS), "all"))
    assert clean == PIXELS
    rounded = [["a.jpg", "cat", "0.25", "0.5", "1.0004", "1.0"], ["b.jpg", "cat", "-0.0003", "0", "0.5", "0.25"]]
    table = _write(tmp_path / "rounded.csv", HEADER, rounded)
    issues = IssueLog("error")
    assert _boxes(CSVParser(table, "all"), issues) == clean
    clipped = [i for i in issues.issues if i.reason == "a box fraction outside [0, 1] clipped"]
    assert [(i.file, i.action) for i in clipped] == [(str(table), "fixed")] * 2
    assert [i.detail.split(":")[0] for i in clipped] == ["line 2", "line 3"]
    assert "1.0004" in clipped[0].detail and "-0.0003" in clipped[1].detail


def test_a_stray_value_beyond_the_tolerance_reads_pixels_and_says_so_naming_file_and_line(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One value of 1.5 in a fraction table: beyond the rounding tolerance, so the auto rule reads pixels; its boxes
    being mostly under 2 px, a warning names the table, the cause and the line, and the data problems hold it (no
    silent run on nothing)."""
    _images(tmp_path, ["a.jpg", "b.jpg"])
    rows = [FRACTIONS[0], ["b.jpg", "cat", "0", "0", "1.5", "0.25"]]
    table = _write(tmp_path / "t.csv", HEADER, rows)
    issues = IssueLog("skip")
    with caplog.at_level(logging.INFO, "yolo9000"):
        got = _boxes(CSVParser(table, "all"), issues)
    assert got["a"] == [[0.25, 0.5, 1.0, 1.0]]  # pixels, as the rule says
    (warning,) = [w for w in _warnings(caplog) if "look like fractions" in w]
    assert warning.startswith(f"{table}: ") and "line 3: 1.5" in warning and "data.normalized=true" in warning
    assert [i.file for i in issues.issues if i.reason == "box values read as pixels look like fractions"] == [
        str(table)
    ]


def test_an_explicit_normalized_setting_wins_over_the_auto_rule(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``normalized=true`` reads the table with the stray 1.5 as fractions (the 1.5 clipped to the image); ``false``
    reads the clean fraction table as pixels (warned: they look like fractions); ``"auto"`` is None's rule."""
    _images(tmp_path, ["a.jpg", "b.jpg"])
    stray = _write(tmp_path / "stray" / "t.csv", HEADER, [FRACTIONS[0], ["b.jpg", "cat", "0", "0", "1.5", "0.25"]])
    _images(stray.parent, ["a.jpg", "b.jpg"])
    got = _boxes(CSVParser(stray, "all", normalized=True), IssueLog("skip"))
    assert got == {"a": PIXELS["a"], "b": [[0.0, 0.0, 200.0, 25.0]]}
    clean = _write(tmp_path / "clean.csv", HEADER, FRACTIONS)
    with caplog.at_level(logging.INFO, "yolo9000"):
        px = _boxes(CSVParser(clean, "all", normalized=False), IssueLog("skip"))
    assert px == {"a": [[0.25, 0.5, 1.0, 1.0]], "b": [[0.0, 0.0, 0.5, 0.25]]}
    assert any(w.startswith(f"{clean}: ") and "data.normalized=false" in w for w in _warnings(caplog))
    assert _boxes(CSVParser(clean, "all", normalized="auto")) == PIXELS


def test_a_pixel_table_is_read_as_pixels_without_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Ordinary pixel boxes (one of them small): pixels, no warning, no problem recorded."""
    _images(tmp_path, ["a.jpg", "b.jpg"])
    rows = [["a.jpg", "cat", "10", "20", "110", "70"], ["b.jpg", "cat", "1", "1", "2", "2"]]
    table = _write(tmp_path / "t.csv", HEADER, rows)
    issues = IssueLog("error")
    with caplog.at_level(logging.INFO, "yolo9000"):
        assert _boxes(CSVParser(table, "all"), issues) == {
            "a": [[10.0, 20.0, 110.0, 70.0]],
            "b": [[1.0, 1.0, 2.0, 2.0]],
        }
    assert not _warnings(caplog) and not issues.issues


# --------------------------------------------------------------------------------------------------- splits
def _split_table(tmp_path: Path, splits: list[str]) -> Path:
    """One table, image i.jpg in splits[i] (pixel boxes)."""
    names = [f"{i}.jpg" for i in range(len(splits))]
    _images(tmp_path / "images", names)
    rows = [[n, "cat", "10", "10", "50", "50", s] for n, s in zip(names, splits, strict=True)]
    return _write(tmp_path / "boxes.csv", [*HEADER, "split"], rows)


def test_a_split_column_without_test_rows_makes_test_the_val_rows(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """No ``test`` row in the split column: test is the val rows (a logged warning, as the split folders' and the
    other parsers' test = val), not an empty split; ``val+test`` lists val's images once."""
    table = _split_table(tmp_path, ["train", "train", "valid", "train", "valid"])
    with caplog.at_level(logging.INFO, "yolo9000"):
        test = sorted(_boxes(CSVParser(table, "test")))
    assert test == sorted(_boxes(CSVParser(table, "val"))) == ["2", "4"]
    assert f"{table}: no test rows: test = val" in _warnings(caplog)
    assert [r.image_id for r in CSVParser(table, "val+test").parse(["cat"])] == ["2", "4"]
    assert sorted(_boxes(CSVParser(table, "train"))) == ["0", "1", "3"]


def test_a_split_column_without_val_rows_makes_val_a_hash_share_of_train(tmp_path: Path) -> None:
    """No ``val`` rows either: val is a hash share of the train rows and train the rest (never both), test is val, as
    for a Roboflow export with only ``train/``."""
    table = _split_table(tmp_path, ["train"] * 16)
    ids = {s: sorted(_boxes(CSVParser(table, s))) for s in ("train", "val", "test")}
    assert ids["train"] and ids["val"] and not set(ids["train"]) & set(ids["val"])
    assert sorted(ids["train"] + ids["val"]) == sorted(str(i) for i in range(16))
    assert ids["test"] == ids["val"]


def test_data_csv_with_a_split_column_without_test_rows_gives_the_data_module_a_test_split(tmp_path: Path) -> None:
    """``data=csv`` on one table whose split column names train and valid only: ``setup("test")`` gives the val
    images as the test split (it raised ``data.test: no images`` after a whole training run)."""
    from hydra.utils import instantiate

    table = _split_table(tmp_path, ["train", "train", "valid", "train", "valid"])
    cfg = data_config("csv")
    cfg.data.root = str(table)
    cfg.data.num_workers = 0
    cfg.data.multiscale.enabled = False
    cfg.data.img_size = 64
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    dm.setup("test")
    assert sorted(r.image_id for r in dm.datasets["test"].records) == ["2", "4"]
    assert sorted(r.image_id for r in dm.datasets["val"].records) == ["2", "4"]


def test_a_pixel_table_of_tiny_boxes_the_integer_switch_and_a_utf16_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A genuine pixel table of 1-px point boxes (most values far beyond [0, 1]) is no table of fractions: no warning
    (it said 'fix those lines'); ``data.normalized=1`` (Hydra reads it as an int) is true; a table Excel saved as
    UTF-16 is read (it crashed with a bare UnicodeDecodeError)."""
    _images(tmp_path, ["a.jpg", "b.jpg"])
    points = [["a.jpg", "cat", "10", "10", "11", "11"], ["b.jpg", "cat", "150", "60", "151", "61"]]
    with caplog.at_level(logging.INFO, "yolo9000"):
        assert _boxes(CSVParser(_write(tmp_path / "p.csv", HEADER, points), "all")) == {
            "a": [[10.0, 10.0, 11.0, 11.0]], "b": [[150.0, 60.0, 151.0, 61.0]]
        }  # fmt: skip
    assert not [w for w in _warnings(caplog) if "look like fractions" in w]
    assert _boxes(CSVParser(_write(tmp_path / "f.csv", HEADER, FRACTIONS), "all", normalized=1)) == PIXELS
    wide = tmp_path / "wide.csv"
    wide.write_bytes((",".join(HEADER) + "\r\n" + "".join(",".join(r) + "\r\n" for r in FRACTIONS)).encode("utf-16"))
    assert _boxes(CSVParser(wide, "all")) == PIXELS
