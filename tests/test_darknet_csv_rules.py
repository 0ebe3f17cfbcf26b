"""Rules of darknet's generic-network layers (:mod:`yolo9000.models.layers`: the activations, ``[shortcut]``,
``[upsample]``, ``[connected]``, maxpool, reorg, darknet's batch norm), the cfg <-> native-module bridge
(:mod:`yolo9000.darknet.native`) and the CSV box-table parser (:mod:`yolo9000.data.csv_boxes`), each checked against
a hand-computed value, darknet's documented C behaviour or a documented property (found by mutation testing of these
modules).

Tensors are a few values; tables are tmp_path CSVs next to tiny blank images.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from yolo9000.data import IssueLog
from yolo9000.data.csv_boxes import CSVParser

BOX_HEADER = ["filename", "class", "xmin", "ymin", "xmax", "ymax"]


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """A blank RGB image of (width, height) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)
    return path


def _table(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    """A CSV written by the csv module (a header, then the rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _boxes(parser: CSVParser, names: list[str]) -> dict[str, list[list[float]]]:
    """image id -> its boxes, under the error policy (any lost row raises)."""
    return {r.image_id: r.boxes.tolist() for r in parser.parse(names, IssueLog("error"))}


# ------------------------------------------------------------------------------------------------ CSV: columns
def test_csv_header_names_ignore_case_spaces_underscores_and_hyphens(tmp_path: Path) -> None:
    """Header names match in any case with spaces, ``_`` and ``-`` ignored: ``File-Name``, ``X-Min``, ``y_max``."""
    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", ["File-Name", "Class", "X-Min", "Y Min", "x_max", "Y-MAX"], [["a.jpg", "cat", "1", "2", "11", "12"]])
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_a_column_serves_one_role_only(tmp_path: Path) -> None:
    """``name`` is the class column where another column names the file (``image,name,...``); a table whose only
    candidate for both is one ``name`` column has no class column (refused), never the file name as its class."""
    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", ["image", "name", "xmin", "ymin", "xmax", "ymax"], [["a.jpg", "cat", "1", "2", "11", "12"]])
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}
    _table(tmp_path / "t.csv", ["name", "xmin", "ymin", "xmax", "ymax"], [["a.jpg", "1", "2", "11", "12"]])
    with pytest.raises(ValueError, match="no class column"):
        CSVParser(tmp_path, "all").parse(["a.jpg"])


def test_csv_cells_are_stripped_and_short_rows_read_as_empty(tmp_path: Path) -> None:
    """Spaces around a cell are not part of it (``a.jpg, cat, 1``); a row shorter than the header reads its missing
    cells as empty: ``c.jpg`` alone is an image without objects (a negative), kept with no box."""
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "c.jpg")
    rows = [[" a.jpg", " cat ", " 1", "2 ", " 11 ", "12"], ["c.jpg"]]
    _table(tmp_path / "t.csv", BOX_HEADER, rows)
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]], "c": []}


def test_csv_an_excel_byte_order_mark_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    """A CSV saved with a UTF-8 byte-order mark (Excel's "CSV UTF-8") still has its ``filename`` column."""
    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]], encoding="utf-8-sig")
    assert (tmp_path / "t.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


# ------------------------------------------------------------------------------------------------- CSV: files
def test_csv_root_may_be_the_table_itself_in_any_suffix_case(tmp_path: Path) -> None:
    """``root`` naming a ``.CSV`` file is that table (its folder the root), as a ``.csv`` one."""
    _image(tmp_path / "a.jpg")
    table = _table(tmp_path / "BOXES.CSV", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    parser = CSVParser(table, "all")
    assert parser.root == tmp_path
    assert _boxes(parser, ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_files_a_split_set_to_none_is_absent(tmp_path: Path) -> None:
    """``csv_files={train: a.csv, val: b.csv, test: None}`` (a Hydra default left empty): no test table, so test is
    val's table (logged), not an error."""
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    _table(tmp_path / "a.csv", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    _table(tmp_path / "b.csv", BOX_HEADER, [["b.jpg", "cat", "3", "4", "13", "14"]])
    files = {"train": "a.csv", "val": "b.csv", "test": None}
    assert sorted(CSVParser(tmp_path, "test", csv_files=files).split_csvs()) == ["train", "val"]
    assert _boxes(CSVParser(tmp_path, "test", csv_files=files), ["cat"]) == {"b": [[3.0, 4.0, 13.0, 14.0]]}


def test_csv_split_folders_the_first_folder_of_a_split_in_name_order_wins(tmp_path: Path) -> None:
    """Two folders naming one split (``val/`` and ``valid/``): the split's table is the first folder's in name order
    (``val``), read alone, never the other one or a mix."""
    for folder, box in (("train", "1"), ("val", "2"), ("valid", "3")):
        _image(tmp_path / folder / f"{folder}.jpg")
        _table(tmp_path / folder / "_annotations.csv", BOX_HEADER, [[f"{folder}.jpg", "cat", box, box, "20", "20"]])
    parser = CSVParser(tmp_path, "val")
    assert parser.split_csvs()["val"] == tmp_path / "val" / "_annotations.csv"
    assert _boxes(parser, ["cat"]) == {"val": [[2.0, 2.0, 20.0, 20.0]]}


def test_csv_a_spreadsheet_s_blank_celled_first_line_is_skipped_before_the_header(tmp_path: Path) -> None:
    """A line of empty cells (``,,,,,`` as spreadsheets write empty rows) is blank: skipped, so the header is the first
    line with a value."""
    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", [""] * 6, [BOX_HEADER, ["a.jpg", "cat", "1", "2", "11", "12"], [""] * 6])
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


# ------------------------------------------------------------------------------------- CSV: normalised values
def test_csv_values_of_exactly_0_and_1_are_fractions(tmp_path: Path) -> None:
    """Every value in the CLOSED interval [0, 1] reads as fractions: an Open Images box from the left edge (0) to
    the right one (1) covers the 40 x 30 image's whole width."""
    _image(tmp_path / "a.jpg")
    header = ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"]
    _table(tmp_path / "oi.csv", header, [["a", "/m/x", "0", "1", "0.5", "1"]])
    assert _boxes(CSVParser(tmp_path, "all"), ["/m/x"]) == {"a": [[0.0, 15.0, 40.0, 30.0]]}


def test_csv_a_row_that_is_not_numbers_does_not_decide_the_reading(tmp_path: Path) -> None:
    """The fractions-or-pixels decision looks at every row that reads as numbers: a corrupted first row (reported,
    its box dropped) leaves the others, all in [0, 1], read as fractions."""
    _image(tmp_path / "a.jpg")
    header = ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"]
    _table(tmp_path / "oi.csv", header, [["a", "/m/x", "n/a", "0.5", "0.1", "0.2"], ["a", "/m/x", "0.25", "0.5", "0.1", "0.2"]])
    issues = IssueLog("skip")
    (rec,) = CSVParser(tmp_path, "all").parse(["/m/x"], issues)
    assert np.allclose(rec.boxes, [[10.0, 3.0, 20.0, 6.0]])
    assert issues.report_dict()["a box value is not a number"]["count"] == 1


# ------------------------------------------------------------------------------------------------ CSV: classes
def test_csv_discovered_class_names_are_sorted_and_never_empty(tmp_path: Path) -> None:
    """Without given names: every class the table names, sorted (eight names, so an unordered set cannot pass by
    chance), without the empty class of a negative image's row."""
    names = ["kiwi", "apple", "fig", "date", "lime", "banana", "cherry", "grape"]
    rows = [[f"{i}.jpg", n, "1", "1", "5", "5"] for i, n in enumerate(names)] + [["neg.jpg", "", "", "", "", ""]]
    _table(tmp_path / "t.csv", BOX_HEADER, rows)
    assert CSVParser(tmp_path, "all").discover_class_names() == sorted(names)


# ------------------------------------------------------------------------------------------------- CSV: splits
def test_csv_split_column_value_naming_the_asked_split_itself(tmp_path: Path) -> None:
    """A split column may hold a union's own name (VOC's ``trainval``): asking for ``trainval`` picks those rows (as
    well as any ``train`` / ``val`` ones), ``test`` only its own."""
    rows = [["a.jpg", "cat", "1", "1", "5", "5", "trainval"], ["b.jpg", "cat", "1", "1", "5", "5", "test"]]
    rows.append(["c.jpg", "cat", "1", "1", "5", "5", "train"])
    for r in rows:
        _image(tmp_path / r[0])
    _table(tmp_path / "t.csv", [*BOX_HEADER, "split"], rows)
    assert sorted(_boxes(CSVParser(tmp_path, "trainval"), ["cat"])) == ["a", "c"]
    assert sorted(_boxes(CSVParser(tmp_path, "test"), ["cat"])) == ["b"]


def test_csv_hash_split_without_a_test_fraction_makes_test_the_val_split(tmp_path: Path) -> None:
    """Fractions without ``test`` (``{train: 0.5, val: 0.5}``): the test split is the val split (module docstring: a
    missing test split is the val split), and train and val share out every image exactly once."""
    rows = [[f"{i}.jpg", "cat", "1", "1", "5", "5"] for i in range(12)]
    for r in rows:
        _image(tmp_path / r[0], (8, 8))
    _table(tmp_path / "t.csv", BOX_HEADER, rows)
    frac = {"train": 0.5, "val": 0.5}
    ids = {s: sorted(_boxes(CSVParser(tmp_path, s, split_fractions=frac), ["cat"])) for s in ("train", "val", "test")}
    assert ids["test"] == ids["val"]
    assert sorted(ids["train"] + ids["val"]) == sorted(str(i) for i in range(12))
    # a fraction keyed by an alias (``valid``) is val's; seed None is seed 0
    alias = CSVParser(tmp_path, "val", split_fractions={"train": 0.5, "valid": 0.5}, split_seed=None)
    assert sorted(_boxes(alias, ["cat"])) == ids["val"]


def test_csv_split_all_of_a_table_with_a_split_column_is_every_image(tmp_path: Path) -> None:
    """``split="all"`` (and None) reads every image of a one-table dataset, whatever its split column says."""
    rows = [["a.jpg", "cat", "1", "1", "5", "5", "train"], ["b.jpg", "cat", "1", "1", "5", "5", "valid"]]
    for r in rows:
        _image(tmp_path / r[0])
    _table(tmp_path / "t.csv", [*BOX_HEADER, "subset"], rows)
    assert sorted(_boxes(CSVParser(tmp_path, "all"), ["cat"])) == ["a", "b"]
    assert sorted(_boxes(CSVParser(tmp_path, None), ["cat"])) == ["a", "b"]


def test_csv_without_a_val_table_train_and_val_are_disjoint_hash_shares_of_train(tmp_path: Path) -> None:
    """Split folders with only ``train/`` (a Roboflow export without a valid split): val is a hash share of train's
    table and train the rest of it (as the YOLO-txt parser does), so no validation image is trained on; together they
    are every image once; test is val."""
    rows = [[f"{i}.jpg", "cat", "1", "1", "5", "5"] for i in range(16)]
    for r in rows:
        _image(tmp_path / "train" / r[0], (8, 8))
    _table(tmp_path / "train" / "_annotations.csv", BOX_HEADER, rows)
    ids = {s: sorted(_boxes(CSVParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    assert ids["val"] and ids["train"]
    assert not set(ids["train"]) & set(ids["val"])
    assert sorted(ids["train"] + ids["val"]) == sorted(str(i) for i in range(16))
    assert ids["test"] == ids["val"]


# ------------------------------------------------------------------------------------------------- CSV: images
def test_csv_an_image_id_without_suffix_finds_a_png_under_images(tmp_path: Path) -> None:
    """An ImageID names its file without the suffix: ``p`` is ``images/p.png`` when that is the file there."""
    _image(tmp_path / "images" / "p.png", (50, 20))
    _table(tmp_path / "t.csv", ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"], [["p", "/m/x", "0.2", "0.4", "0.5", "1"]])
    (rec,) = CSVParser(tmp_path, "all").parse(["/m/x"], IssueLog("error"))
    assert rec.image_path == tmp_path / "images" / "p.png"
    assert np.allclose(rec.boxes, [[10.0, 10.0, 20.0, 20.0]])


def test_csv_a_row_with_a_class_but_no_box_or_a_box_but_no_class_is_reported(tmp_path: Path) -> None:
    """Only a row with neither class nor box is a negative image; a class without its box, or a box without its class,
    loses a box: reported (raising under the error policy), never skipped silently."""
    from yolo9000.data import DataError

    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", BOX_HEADER, [["a.jpg", "cat", "", "", "", ""]])
    with pytest.raises(DataError, match="not a number"):
        CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    _table(tmp_path / "t.csv", BOX_HEADER, [["a.jpg", "", "1", "2", "11", "12"]])
    with pytest.raises(DataError, match="unknown class ''"):
        CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))


def test_csv_a_folder_s_preferred_table_name_matches_in_any_case(tmp_path: Path) -> None:
    """A folder holding ``_Annotations.CSV`` and another CSV: the preferred name (any case) is its table, no
    ambiguity error."""
    _image(tmp_path / "train" / "a.jpg")
    _table(tmp_path / "train" / "_Annotations.CSV", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    _table(tmp_path / "train" / "notes.csv", ["note"], [["hello"]])
    assert _boxes(CSVParser(tmp_path, "train"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_two_unnamed_tables_in_a_folder_are_ambiguous(tmp_path: Path) -> None:
    """Two CSVs, neither with a preferred name: refused naming both (set data.csv_file), never one picked silently."""
    _table(tmp_path / "a.csv", BOX_HEADER, [])
    _table(tmp_path / "b.csv", BOX_HEADER, [])
    with pytest.raises(ValueError, match=r"several CSV files in .*: a\.csv, b\.csv"):
        CSVParser(tmp_path, "all").single_csv()


def test_csv_a_width_column_without_a_height_column_reads_the_image_header(tmp_path: Path) -> None:
    """The record's size comes from the table only where it has BOTH width and height columns; a lone ``width``
    column leaves the size to the image header (40 x 30)."""
    _image(tmp_path / "a.jpg", (40, 30))
    _table(tmp_path / "t.csv", [*BOX_HEADER, "width"], [["a.jpg", "cat", "1", "2", "11", "12", "999"]])
    (rec,) = CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    assert (rec.width, rec.height) == (40, 30)
