"""Files saved with a UTF-8 byte-order mark (Windows Notepad, Excel's "CSV UTF-8") read as without one: a split list's
first entry and a CSV split file's header keep their names (a BOM silently dropped the first image of every VOC split
and swapped a CSV's split column for a hash split), and a COCO JSON and a WordTree file parse (PyYAML strips one
itself: a data.yaml needs nothing)."""

from __future__ import annotations

import json
from pathlib import Path

from yolo9000.data import coco
from yolo9000.data.splits import read_list_file
from yolo9000.wordtree import WordTree

BOM = "\ufeff"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(BOM + text, encoding="utf-8")
    return path


def test_a_voc_list_with_a_bom_keeps_its_first_id(tmp_path: Path) -> None:
    p = write(tmp_path / "train.txt", "BloodImage_00001\r\nBloodImage_00002\r\n")
    assert read_list_file(p) == (["BloodImage_00001", "BloodImage_00002"], False)


def test_a_csv_split_file_with_a_bom_keeps_its_header_and_split_column(tmp_path: Path) -> None:
    p = write(tmp_path / "splits.csv", "filename,split\na.jpg,train\nb.jpg,val\nc.jpg,train\n")
    assert read_list_file(p, "train") == (["a.jpg", "c.jpg"], True)
    assert read_list_file(p, "val") == (["b.jpg"], True)


def test_a_coco_json_with_a_bom_parses(tmp_path: Path) -> None:
    from PIL import Image

    Image.new("RGB", (32, 24)).save(tmp_path / "a.jpg")
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 32, "height": 24}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 7, "bbox": [2, 3, 10, 8], "iscrowd": 0}],
        "categories": [{"id": 7, "name": "cell"}],
    }
    ann = write(tmp_path / "annotations.json", json.dumps(data))
    coco.release_cache()
    parsed = coco._read_json(ann)
    assert [c["name"] for c in parsed["categories"]] == ["cell"]


def test_a_wordtree_file_with_a_bom_keeps_its_first_node(tmp_path: Path) -> None:
    tree = write(tmp_path / "t.tree", "animal -1\ndog 0\ncat 0\n")
    t = WordTree.from_file(tree)
    assert t.names[0] == "animal" and t.parent.tolist() == [-1, 0, 0]
