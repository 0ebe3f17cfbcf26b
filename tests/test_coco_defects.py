"""Defects of a user's COCO JSON found by a user test: an image id given to two images (the later image took the
earlier one's boxes), entries without ``id`` / ``file_name`` or that are no object, a top level that is no COCO
object (raw KeyError / AttributeError tracebacks), and ids written as text (``"1"``: every box dropped as an
unknown class). Each test writes a tiny JSON and images in ``tmp_path`` and checks the parser's contract: the
problem reported naming the JSON and what is wrong, nothing lost silently, DataError under ``on_error: error``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from yolo9000.data import COCOParser, DataError, IssueLog

CATS = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]


def _img(path: Path, size: tuple[int, int] = (40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


def _write(tmp_path: Path, data: Any, name: str = "ann.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def _coco(tmp_path: Path, images: list[Any], annotations: list[Any], categories: list[Any] = CATS) -> Path:
    for im in images:
        if isinstance(im, dict) and im.get("file_name"):
            _img(tmp_path / "imgs" / str(im["file_name"]))
    return _write(tmp_path, {"images": images, "annotations": annotations, "categories": categories})


def _parse(tmp_path: Path, policy: str = "skip", issues: IssueLog | None = None) -> dict[str, Any]:
    issues = issues if issues is not None else IssueLog(policy)  # type: ignore[arg-type]
    return {r.image_path.name: r for r in COCOParser("ann.json", "imgs", root=tmp_path).parse(None, issues)}


def _details(issues: IssueLog, reason: str) -> list[str]:
    return [f"{i.file}: {i.reason} ({i.detail})" for i in issues.issues if reason in i.reason]


# --------------------------------------------------------------------------------------------- duplicate ids
def _two_images_one_id(tmp_path: Path) -> Path:
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": 1, "file_name": "b.jpg", "width": 40, "height": 30},  # the same id: whose boxes are id 1's?
        {"id": 2, "file_name": "c.jpg", "width": 40, "height": 30},
    ]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]},
        {"id": 11, "image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]},
        {"id": 12, "image_id": 2, "category_id": 2, "bbox": [3, 3, 20, 20]},
    ]
    return _coco(tmp_path, images, anns)


def test_duplicate_image_id_drops_both_images_and_names_the_file_the_id_and_both_names(tmp_path: Path) -> None:
    ann = _two_images_one_id(tmp_path)
    issues = IssueLog("skip")
    recs = _parse(tmp_path, issues=issues)
    # neither image gets the ambiguous boxes (b.jpg took a.jpg's two boxes); the other image is untouched
    assert set(recs) == {"c.jpg"}
    np.testing.assert_array_equal(recs["c.jpg"].boxes, [[3, 3, 23, 23]])
    assert recs["c.jpg"].labels.tolist() == [1]
    # counted as two skipped images, each naming the JSON, the id and both file names (and the boxes left out)
    assert issues.count("skip_image", "image id shared by several images") == 2
    assert issues.files("skip_image", "image id shared") == [str(ann)]
    for text in _details(issues, "image id shared"):
        assert "id 1" in text and "'a.jpg'" in text and "'b.jpg'" in text and "2 annotations" in text
    assert not issues.count("drop_box", "unknown image id")  # the boxes go with their skipped images
    with pytest.raises(
        DataError, match=r"ann\.json: an image id shared by several images \(id 1 of 'a\.jpg'.*'b\.jpg'"
    ):
        _parse(tmp_path, "error")


def test_duplicate_image_id_in_derived_splits_is_in_no_split_and_reported_once(tmp_path: Path) -> None:
    """With only a train JSON, each hash share parses it: the two images are in no split and counted once each in
    the data module's one issue log (the same issue from every split is recorded once)."""
    _two_images_one_id(tmp_path)
    issues = IssueLog("skip")
    names = set()
    for split in ("train", "val", "test"):
        parser = COCOParser(root=tmp_path, image_dir="imgs", ann_files={"train": "ann.json"}, split=split)
        names |= {r.image_path.name for r in parser.parse(None, issues)}
    assert names == {"c.jpg"}
    assert issues.count("skip_image", "image id shared") == 2


def test_duplicate_annotation_id_is_noted_and_both_boxes_kept(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}]
    anns = [
        {"id": 7, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]},
        {"id": 7, "image_id": 1, "category_id": 2, "bbox": [5, 5, 10, 10]},
    ]
    _coco(tmp_path, images, anns)
    issues = IssueLog("error")  # a note: never raises
    recs = _parse(tmp_path, issues=issues)
    assert recs["a.jpg"].labels.tolist() == [0, 1]
    (text,) = _details(issues, "annotation id given to several annotations")
    assert "ann.json" in text and "ids 7" in text


# ---------------------------------------------------------------------------------------- malformed entries
def test_image_entries_without_id_or_file_name_or_no_object_are_skipped_and_named(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
        {"file_name": "b.jpg", "width": 40, "height": 30},  # images[1]: no id
        {"id": 3, "width": 40, "height": 30},  # images[2]: no file_name
        "c.jpg",  # images[3]: no object
        {"id": [4], "file_name": "d.jpg"},  # images[4]: an id that is no id
    ]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]},
        {"id": 11, "image_id": 3, "category_id": 1, "bbox": [1, 2, 10, 10]},  # of the image without a file name
    ]
    ann = _coco(tmp_path, images, anns)
    issues = IssueLog("skip")
    recs = _parse(tmp_path, issues=issues)
    assert set(recs) == {"a.jpg"} and recs["a.jpg"].labels.tolist() == [0]
    assert issues.count("skip_image") == 4 and issues.files("skip_image") == [str(ann)]
    (no_id,) = _details(issues, "an image without an 'id'")
    assert "images[1]" in no_id and "b.jpg" in no_id
    (no_name,) = _details(issues, "an image without a 'file_name'")
    assert "images[2]" in no_name and "id 3" in no_name
    assert "images[3]" in _details(issues, "an image entry that is not an object")[0]
    assert "images[4]" in _details(issues, "an image 'id' that is no number or text")[0]
    assert not issues.count(reason="missing image file")  # not "imgs/None": the entry's defect is named
    assert not issues.count(reason="unknown image id")  # image 3's box goes with its skipped image
    with pytest.raises(DataError, match=r"ann\.json: an image without an 'id' \(images\[1\]"):
        _parse(tmp_path, "error")


def test_annotation_that_is_no_object_or_has_a_malformed_bbox_is_a_dropped_box(tmp_path: Path) -> None:
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}]
    anns = [
        {"id": 10, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]},
        7,  # annotations[1]
        None,  # annotations[2]
        {"id": 12, "image_id": 1, "category_id": 1, "bbox": [1, "x", 10, 10]},  # no number
    ]
    _coco(tmp_path, images, anns)
    issues = IssueLog("skip")
    recs = _parse(tmp_path, issues=issues)
    np.testing.assert_array_equal(recs["a.jpg"].boxes, [[1, 2, 11, 12]])
    texts = _details(issues, "an annotation that is not an object")
    assert len(texts) == 2 and "annotations[1]" in texts[0] and "annotations[2]" in texts[1]
    assert all("ann.json" in t for t in texts)
    assert issues.count("drop_box", "missing or malformed bbox") == 1
    with pytest.raises(DataError, match=r"ann\.json: an annotation that is not an object \(annotations\[1\]"):
        _parse(tmp_path, "error")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (None, r"not a COCO JSON: its top level is null"),
        ([{"image_id": 1, "bbox": [0, 0, 1, 1]}], r"its top level is a list \(a COCO results file\?\)"),
        ({"images": {"id": 1}, "annotations": [], "categories": CATS}, r"'images' is an object, not a list"),
        ({"images": [], "annotations": None, "categories": CATS}, r"'annotations' is null, not a list"),
        ({"images": [], "annotations": [], "categories": "cat"}, r"'categories' is text, not a list"),
        ({"images": [], "annotations": [], "categories": [{"id": 1}]}, r"categories\[0\] has no 'name'"),
        ({"images": [], "annotations": [], "categories": [CATS[0], {"name": "x"}]}, r"categories\[1\] has no 'id'"),
        ({"images": [], "annotations": [], "categories": ["cat"]}, r"categories\[0\] is text, not an object"),
    ],
)
def test_a_file_whose_structure_is_no_coco_json_is_refused_naming_it(tmp_path: Path, data: Any, message: str) -> None:
    ann = _write(tmp_path, data)
    (tmp_path / "imgs").mkdir()
    parser = COCOParser("ann.json", "imgs", root=tmp_path)
    for call in (parser.discover_class_names, lambda: parser.parse(["cat"], IssueLog("skip"))):
        with pytest.raises(ValueError, match=message) as e:
            call()
        assert str(e.value).startswith(f"{ann}: ")


# ----------------------------------------------------------------------------------------------- text ids
def test_ids_written_as_text_or_decimals_compare_as_integers_with_one_note(tmp_path: Path) -> None:
    images = [
        {"id": 1, "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": "2", "file_name": "b.jpg", "width": 40, "height": 30},
    ]
    anns = [
        {"id": 10, "image_id": "1", "category_id": "1", "bbox": [1, 2, 10, 10]},
        {"id": 11, "image_id": 1.0, "category_id": 2.0, "bbox": [5, 5, 10, 10]},
        {"id": 12, "image_id": 2, "category_id": " 2 ", "bbox": [3, 3, 20, 20]},
        {"id": 13, "image_id": "1", "category_id": "one", "bbox": [3, 3, 20, 20]},  # matches nothing
    ]
    ann = _coco(tmp_path, images, anns, [{"id": "1", "name": "cat"}, {"id": 2, "name": "dog"}])
    parser = COCOParser("ann.json", "imgs", root=tmp_path)
    assert parser.discover_class_names() == ["cat", "dog"]
    issues = IssueLog("skip")
    recs = _parse(tmp_path, issues=issues)
    assert recs["a.jpg"].labels.tolist() == [0, 1] and recs["b.jpg"].labels.tolist() == [1]
    np.testing.assert_array_equal(recs["b.jpg"].boxes, [[3, 3, 23, 23]])
    (note,) = [i for i in issues.issues if i.action == "note" and "integers" in i.reason]
    assert note.file == str(ann)
    assert "annotations' image_id: 3" in note.detail and "annotations' category_id: 3" in note.detail
    assert "images' id: 1" in note.detail and "categories' id: 1" in note.detail
    # a non-numeric id that matches no category is still an unknown class, counted
    assert issues.count("drop_box", "unknown class 'id one'") == 1
    assert not issues.count(reason="unknown image id")


def test_text_ids_sort_categories_by_number(tmp_path: Path) -> None:
    """Category ids "10" and "2" order the default class list as 2, 10 (the numbers, as int() compared them)."""
    cats = [{"id": "10", "name": "ten"}, {"id": "2", "name": "two"}, {"id": 1, "name": "one"}]
    _coco(tmp_path, [], [], cats)
    assert COCOParser("ann.json", "imgs", root=tmp_path).discover_class_names() == ["one", "two", "ten"]


def test_iscrowd_written_as_text_and_a_category_id_with_two_names(tmp_path: Path) -> None:
    """``iscrowd: "0"`` (text from a spreadsheet export) is no crowd box (text was true by being text, so every box
    became an ignored crowd region); ``"1"`` / ``"true"`` are. Two categories sharing an id with different names
    are refused naming both (the later silently replaced the earlier, relabelling its boxes); a repeated identical
    category is harmless."""
    images = [{"id": 1, "file_name": "a.jpg", "width": 40, "height": 30}]
    anns = [
        {"id": k, "image_id": 1, "category_id": 1, "bbox": [1 + k, 2, 10, 10], "iscrowd": flag}
        for k, flag in enumerate(["0", "1", "true", 0, "false", None])
    ]
    _coco(tmp_path, images, anns, [*CATS, {"id": 2, "name": "dog"}])
    rec = _parse(tmp_path)["a.jpg"]
    assert rec.difficult.tolist() == [False, True, True, False, False, False]
    _coco(tmp_path, images, anns, [*CATS, {"id": 2, "name": "wolf"}])
    with pytest.raises(ValueError, match=r"categories\[1\] and categories\[2\] share the id 2 .*'dog', 'wolf'"):
        _parse(tmp_path)


def test_text_ids_are_exact_integers_and_padded_text_stays_text(tmp_path: Path) -> None:
    """Ids written as the text of 64-bit integers (kept from JavaScript's rounding) went through float() and two
    neighbours became one id, both images then dropped as sharing it; "001" and "1" merged too. The text of an
    integer is that integer exactly; other text ("001", "1e3") is compared as text."""
    big = ["1234567890123456789", "1234567890123456790"]
    images = [
        {"id": big[0], "file_name": "a.jpg", "width": 40, "height": 30},
        {"id": big[1], "file_name": "b.jpg", "width": 40, "height": 30},
        {"id": "001", "file_name": "c.jpg", "width": 40, "height": 30},
        {"id": 1, "file_name": "d.jpg", "width": 40, "height": 30},
    ]
    anns = [
        {"id": 1, "image_id": int(big[0]), "category_id": 1, "bbox": [1, 2, 10, 10]},
        {"id": 2, "image_id": big[1], "category_id": 2, "bbox": [1, 2, 10, 10]},
        {"id": 3, "image_id": "001", "category_id": 2, "bbox": [1, 2, 10, 10]},
        {"id": 4, "image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10]},
    ]
    _coco(tmp_path, images, anns)
    issues = IssueLog("error")
    recs = _parse(tmp_path, issues=issues)
    assert {k: r.labels.tolist() for k, r in recs.items()} == {"a.jpg": [0], "b.jpg": [1], "c.jpg": [1], "d.jpg": [0]}
