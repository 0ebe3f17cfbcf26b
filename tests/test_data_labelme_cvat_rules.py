"""Rules of the LabelMe and CVAT parsers that the mutation audit found unpinned: shape types, path and name
handling, duplicate images, the hash split's key, test = val (and its log line), class-name discovery and the
LabelMe embedded image's size. Every expectation is computed by hand from the modules' docstrings.

Five of them pinned bugs the audit found (fixed in session 28): ``val+test`` without a test folder read val/ twice,
a union naming test without a test share raised (both parsers), two JSONs embedding one missing image gave two
records, and labels of shapes without a box were discovered as classes."""

from __future__ import annotations

import base64
import io
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from test_data_cvat import _box, _export, _img
from test_data_labelme import _image, _labelme, _rect
from yolo9000.data import DetectionRecord, IssueLog
from yolo9000.data.cvat import CVATParser
from yolo9000.data.labelme import LabelMeParser
from yolo9000.data.splits import hash_split
from yolo9000.data.voc import reset_decision_log

NO_TEST = {"train": 0.8, "val": 0.2}  # split fractions without a test share


@pytest.fixture(autouse=True)
def _fresh_decision_log() -> None:
    """Each test sees its own layout / split decisions logged."""
    reset_decision_log()


def _ids(recs: list[DetectionRecord]) -> list[str]:
    """The records' image ids, sorted."""
    return sorted(r.image_id for r in recs)


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    """The WARNING messages captured that contain ``text``."""
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def _png_b64(size: tuple[int, int]) -> str:
    """A one-colour PNG of ``size`` (width, height), base64: a LabelMe ``imageData``."""
    buf = io.BytesIO()
    Image.new("RGB", size, (9, 99, 199)).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


# ------------------------------------------------------------------------------------------------ LabelMe


def test_labelme_points_shape_has_no_box_and_gives_no_class(tmp_path: Path) -> None:
    """A ``points`` shape (as ``point``) has no box: dropped, reported as such naming the JSON; its label is no
    discovered class."""
    jp = _labelme(
        tmp_path / "a.json", "a.jpg", [_rect("pin", [[3, 4], [6, 7]], "points"), _rect("cat", [[1, 2], [9, 8]])]
    )
    assert LabelMeParser(tmp_path, "all").discover_class_names() == ["cat"]
    issues = IssueLog("skip")
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat", "pin"], issues)
    assert rec.boxes.tolist() == [[1, 2, 9, 8]] and rec.labels.tolist() == [0]
    assert issues.files("drop_box", "a points shape has no box") == [str(jp)]


def test_labelme_mask_and_upper_case_shape_types_give_boxes(tmp_path: Path) -> None:
    """labelme 5's ``mask`` is the rectangle of its points; shape types are read in any case (``Rectangle``,
    ``POLYGON``)."""
    shapes = [
        {**_rect("cat", [[30, 20], [10, 5]], "mask"), "mask": "iVBORw0KGgo="},
        _rect("cat", [[50, 60], [40, 45]], "Rectangle"),
        _rect("cat", [[1, 9], [7, 2], [4, 4]], "POLYGON"),
    ]
    _labelme(tmp_path / "a.json", "a.jpg", shapes)
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    assert rec.boxes.tolist() == [[10, 5, 30, 20], [40, 45, 50, 60], [1, 2, 7, 9]]


def test_labelme_labels_are_stripped(tmp_path: Path) -> None:
    """A label with surrounding spaces is the class of its stripped name (in parsing and in discovery)."""
    _labelme(tmp_path / "a.json", "a.jpg", [_rect(" dog ", [[1, 2], [5, 6]]), _rect("cat\n", [[2, 2], [8, 8]])])
    assert LabelMeParser(tmp_path, "all").discover_class_names() == ["cat", "dog"]
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat", "dog"], IssueLog("error"))
    assert rec.labels.tolist() == [1, 0]


def test_labelme_image_path_wins_over_a_file_of_that_name_beside_the_json(tmp_path: Path) -> None:
    """``imagePath`` relative to the JSON is the image; a file of the same name beside the JSON is only the fallback."""
    _image(tmp_path / "images" / "p.jpg")
    _image(tmp_path / "ann" / "p.jpg", (30, 20))
    _labelme(tmp_path / "ann" / "p.json", "../images/p.jpg", [], with_image=False)
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("skip"))
    assert (rec.image_path, rec.image_id) == (tmp_path / "images" / "p.jpg", "images/p")


def test_labelme_two_jsons_naming_one_image_keep_it_once(tmp_path: Path) -> None:
    """Two LabelMe files naming the same image: the first (path order) gives the record, the second is skipped,
    reported naming the second JSON."""
    _labelme(tmp_path / "a.json", "img.jpg", [_rect("cat", [[1, 2], [5, 6]])])
    second = _labelme(tmp_path / "b.json", "img.jpg", [_rect("cat", [[10, 20], [30, 40]])], with_image=False)
    issues = IssueLog("skip")
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat"], issues)
    assert (rec.image_id, rec.boxes.tolist()) == ("img", [[1, 2, 5, 6]])
    assert issues.files("skip_file", "another LabelMe file names the same image") == [str(second)]


def test_labelme_hash_split_key_is_the_image_path(tmp_path: Path) -> None:
    """Layout 2 hashes each image's path relative to the root (not the JSON's name): JSONs named otherwise than
    their images split as ``hash_split`` of the image paths, and renaming the JSONs moves no image."""
    for k in range(30):
        _labelme(tmp_path / "r1" / f"ann{k}.json", f"pics/x{k}.png", [], size=(8, 8))
        _labelme(tmp_path / "r2" / f"other_{k}.json", f"pics/x{k}.png", [], size=(8, 8))
    keys = [f"pics/x{k}.png" for k in range(30)]
    for split in ("train", "val", "test"):
        want = sorted(
            k.removesuffix(".png") for k in hash_split(keys, split, {"train": 0.7, "val": 0.15, "test": 0.15})
        )
        assert _ids(LabelMeParser(tmp_path / "r1", split).parse(["cat"], IssueLog("skip"))) == want
        assert _ids(LabelMeParser(tmp_path / "r2", split).parse(["cat"], IssueLog("skip"))) == want


def test_labelme_hash_layout_without_a_test_share_test_is_val(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Layout 2 with split fractions lacking ``test``: the test split is the val split, logged once as a warning."""
    for k in range(20):
        _labelme(tmp_path / f"x{k}.json", f"x{k}.png", [], size=(8, 8))
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        ids = {
            s: _ids(LabelMeParser(tmp_path, s, split_fractions=NO_TEST).parse(["cat"], IssueLog("skip")))
            for s in ("val", "test")
        }
        LabelMeParser(tmp_path, "test", split_fractions=NO_TEST).parse(["cat"], IssueLog("skip"))
    assert ids["test"] == ids["val"] and ids["val"]
    assert len(_warnings(caplog, "test = val")) == 1


def test_labelme_missing_test_folder_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """train/ and val/ folders, no test/: the test split is val/, said once in a warning however often it is read."""
    _labelme(tmp_path / "train" / "a.json", "a.jpg", [], size=(8, 8))
    _labelme(tmp_path / "val" / "b.json", "b.jpg", [], size=(8, 8))
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        first = _ids(LabelMeParser(tmp_path, "test").parse(["cat"], IssueLog("skip")))
        second = _ids(LabelMeParser(tmp_path, "test").parse(["cat"], IssueLog("skip")))
    assert first == second == ["val/b"]
    assert _warnings(caplog, "test = val") == [f"{tmp_path}: no test folder: test = val"]


def test_labelme_a_folder_without_jsons_is_no_split_folder(tmp_path: Path) -> None:
    """A ``test/`` folder holding images but no JSON is not a split folder: the test split is val/."""
    _labelme(tmp_path / "train" / "a.json", "a.jpg", [], size=(8, 8))
    _labelme(tmp_path / "val" / "b.json", "b.jpg", [], size=(8, 8))
    _image(tmp_path / "test" / "c.jpg", (8, 8))
    assert _ids(LabelMeParser(tmp_path, "test").parse(["cat"], IssueLog("skip"))) == ["val/b"]


def test_labelme_upper_case_extension_and_utf8_bom_are_read(tmp_path: Path) -> None:
    """``*.JSON`` files are LabelMe files too, and a JSON starting with a UTF-8 byte order mark (Windows editors)
    parses."""
    _labelme(tmp_path / "UP.JSON", "up.jpg", [_rect("cat", [[1, 1], [4, 4]])], size=(8, 8))
    bom = _labelme(tmp_path / "bom.json", "bom.jpg", [_rect("cat", [[2, 2], [6, 6]])], size=(8, 8))
    bom.write_bytes(b"\xef\xbb\xbf" + bom.read_bytes())
    recs = {r.image_id: r.boxes.tolist() for r in LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("error"))}
    assert recs == {"up": [[1, 1, 4, 4]], "bom": [[2, 2, 6, 6]]}


def test_labelme_image_id_drops_only_the_extension(tmp_path: Path) -> None:
    """An image named ``a.b.jpg`` has id ``a.b`` (only its last suffix dropped)."""
    _labelme(tmp_path / "a.b.json", "a.b.jpg", [], size=(8, 8))
    assert _ids(LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("skip"))) == ["a.b"]


def test_labelme_embedded_image_without_size_gives_its_header_size(tmp_path: Path) -> None:
    """A missing image file, its JSON without imageWidth / imageHeight: the size is the embedded image's header
    (12x7), reported as fixed naming the JSON."""
    jp = _labelme(tmp_path / "a.json", "a.png", [_rect("cat", [[1, 1], [5, 5]])], None, _png_b64((12, 7)), False)
    issues = IssueLog("skip")
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat"], issues)
    assert (rec.image_path, rec.width, rec.height) == (jp, 12, 7)
    assert issues.files("fixed", "size read from the image header") == [str(jp)]
    assert issues.count("skip_image") == 0


def test_labelme_val_plus_test_without_test_folder_uses_each_image_once(tmp_path: Path) -> None:
    """``val+test`` with no test/ folder is val/ once (test = val), without any issue (CVAT's parser dedups)."""
    _labelme(tmp_path / "train" / "a.json", "a.jpg", [], size=(8, 8))
    _labelme(tmp_path / "val" / "b.json", "b.jpg", [_rect("cat", [[1, 1], [5, 5]])], size=(8, 8))
    assert _ids(LabelMeParser(tmp_path, "val+test").parse(["cat"], IssueLog("error"))) == ["val/b"]


def test_labelme_hash_union_with_test_and_no_test_share(tmp_path: Path) -> None:
    """Layout 2, fractions without ``test``: ``val+test`` is the val split (test = val)."""
    for k in range(10):
        _labelme(tmp_path / f"x{k}.json", f"x{k}.png", [], size=(8, 8))
    val = _ids(LabelMeParser(tmp_path, "val", split_fractions=NO_TEST).parse(["cat"], IssueLog("skip")))
    assert _ids(LabelMeParser(tmp_path, "val+test", split_fractions=NO_TEST).parse(["cat"], IssueLog("skip"))) == val


def test_labelme_two_jsons_naming_one_missing_image_keep_it_once(tmp_path: Path) -> None:
    """Two LabelMe files naming the same image, missing and embedded in both: one record (as when the file exists),
    the second JSON skipped."""
    data = _png_b64((8, 8))
    _labelme(tmp_path / "a.json", "img.png", [], (8, 8), data, with_image=False)
    _labelme(tmp_path / "b.json", "img.png", [], (8, 8), data, with_image=False)
    assert _ids(LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("skip"))) == ["img"]


def test_labelme_val_share_of_a_train_folder_hashes_image_paths_with_the_seed(tmp_path: Path) -> None:
    """train/ alone: val is ``hash_split`` of train's image paths relative to the root (not the JSON names) over
    the train and val fractions, with ``split_seed``; train the rest."""
    for k in range(30):
        _labelme(tmp_path / "train" / f"ann{k}.json", f"x{k}.png", [], size=(8, 8))
    keys = [f"train/x{k}.png" for k in range(30)]
    val = sorted(k.removesuffix(".png") for k in hash_split(keys, "val", {"train": 0.7, "val": 0.15}, 3))
    ids = {s: _ids(LabelMeParser(tmp_path, s, split_seed=3).parse(["cat"], IssueLog("skip"))) for s in ("train", "val")}
    assert ids["val"] == val and val
    assert ids["train"] == sorted(set(k.removesuffix(".png") for k in keys) - set(val))


def test_labelme_embedded_images_are_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Images read from their JSONs' imageData: one log line for the dataset, not one per file."""
    for n in ("a", "b", "c"):
        _labelme(tmp_path / f"{n}.json", f"{n}.png", [], (8, 8), _png_b64((8, 8)), with_image=False)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        assert _ids(LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("skip"))) == ["a", "b", "c"]
    assert sum("imageData" in r.getMessage() for r in caplog.records) == 1


def test_labelme_circle_of_three_points_and_shapes_not_a_list_are_reported(tmp_path: Path) -> None:
    """A circle is its centre and one point on it: three points drop the shape (reported); a ``shapes`` value that
    is not a list skips the image, reported naming its JSON."""
    circle = _labelme(tmp_path / "a.json", "a.jpg", [_rect("cat", [[40, 40], [43, 44], [50, 50]], "circle")])
    bad = tmp_path / "b.json"
    bad.write_text(json.dumps({"shapes": {"label": "cat"}, "imagePath": "a.jpg", "imageWidth": 100, "imageHeight": 80}))
    issues = IssueLog("skip")
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat"], issues)
    assert (rec.image_id, len(rec.boxes)) == ("a", 0)
    assert issues.files("drop_box", "circle shape without a box") == [str(circle)]
    assert issues.files("skip_image") == [str(bad)]


def test_labelme_labels_of_unboxable_shape_types_are_no_classes(tmp_path: Path) -> None:
    """Discovered classes are the labels of box shapes only: a ``rotation`` shape (dropped at parse) gives none."""
    shapes = [_rect("cat", [[1, 1], [5, 5]]), _rect("ship", [[1, 1], [9, 1], [9, 5], [1, 5]], "rotation")]
    _labelme(tmp_path / "a.json", "a.jpg", shapes)
    assert LabelMeParser(tmp_path, "all").discover_class_names() == ["cat"]


# ------------------------------------------------------------------------------------------------ CVAT


def test_cvat_box_rotated_past_90_degrees_either_way(tmp_path: Path) -> None:
    """A 40x20 box about (40, 40) turned by 120 or -60 degrees: half sides 20 * 0.5 + 10 * sqrt(3) / 2 and
    20 * sqrt(3) / 2 + 10 * 0.5 (the cosine negative or the sine negative gives the same box)."""
    ex, ey = 10 + 5 * math.sqrt(3), 10 * math.sqrt(3) + 5
    shapes = _box("cat", 20, 30, 60, 50, ' rotation="120"') + _box("cat", 20, 30, 60, 50, ' rotation="-60"')
    _export(tmp_path, [_img("a.jpg", shapes)], files=["a.jpg"])
    (rec,) = CVATParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    np.testing.assert_allclose(rec.boxes, [[40 - ex, 40 - ey, 40 + ex, 40 + ey]] * 2, atol=1e-4)


def test_cvat_images_take_the_subset_of_their_task(tmp_path: Path) -> None:
    """A project of two tasks (Train, Validation), its images carrying ``task_id`` but no subset: each image is in
    its task's subset."""
    meta = (
        "<meta><project><id>1</id><tasks>"
        "<task><id>1</id><name>a</name><subset>Train</subset></task>"
        "<task><id>2</id><name>b</name><subset>Validation</subset></task>"
        "</tasks></project></meta>"
    )
    images = [
        f'<image id="{k}" name="i{k}.jpg" width="100" height="80" task_id="{1 if k < 3 else 2}"></image>'
        for k in range(5)
    ]
    _export(tmp_path, images, meta=meta, files=[f"i{k}.jpg" for k in range(5)])
    ids = {s: _ids(CVATParser(tmp_path, s).parse(["cat"], IssueLog("skip"))) for s in ("train", "val")}
    assert ids == {"train": ["i0", "i1", "i2"], "val": ["i3", "i4"]}


def test_cvat_hash_split_key_is_the_image_name(tmp_path: Path) -> None:
    """Without subsets, images split by a hash of their names (``hash_split`` of the names), whatever their ids."""
    names = [f"x{k}.png" for k in range(30)]
    _export(tmp_path / "a", [_img(n, k=k) for k, n in enumerate(names)], files=names)
    _export(tmp_path / "b", [_img(n, k=100 + 7 * k) for k, n in enumerate(names)], files=names)
    for split in ("train", "val", "test"):
        want = sorted(
            n.removesuffix(".png") for n in hash_split(names, split, {"train": 0.7, "val": 0.15, "test": 0.15})
        )
        assert _ids(CVATParser(tmp_path / "a", split).parse(["cat"], IssueLog("skip"))) == want
        assert _ids(CVATParser(tmp_path / "b", split).parse(["cat"], IssueLog("skip"))) == want


def test_cvat_hash_split_without_a_test_share_test_is_val(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """No subsets and split fractions lacking ``test``: the test split is the val split, logged once as a warning."""
    names = [f"x{k}.png" for k in range(20)]
    _export(tmp_path, [_img(n, k=k) for k, n in enumerate(names)], files=names)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        ids = {
            s: _ids(CVATParser(tmp_path, s, split_fractions=NO_TEST).parse(["cat"], IssueLog("skip")))
            for s in ("val", "test")
        }
        CVATParser(tmp_path, "test", split_fractions=NO_TEST).parse(["cat"], IssueLog("skip"))
    assert ids["test"] == ids["val"] and ids["val"]
    assert len(_warnings(caplog, "test = val")) == 1


def test_cvat_no_test_subset_is_val_logged_once_and_val_plus_test_uses_each_image_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Train and Validation subsets only: test is Validation (one warning for every read), and ``val+test`` holds
    each Validation image once, without any issue."""
    subsets = {"a": "Train", "b": "Train", "c": "Validation", "d": "Validation"}
    images = [_img(f"{n}.jpg", _box("cat", 1, 1, 5, 5), subset=s, k=k) for k, (n, s) in enumerate(subsets.items())]
    xml = _export(tmp_path, images, files=[f"{n}.jpg" for n in subsets])
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        test = _ids(CVATParser(tmp_path, "test").parse(["cat"], IssueLog("error")))
        both = _ids(CVATParser(tmp_path, "val+test").parse(["cat"], IssueLog("error")))
    assert test == both == ["c", "d"]
    assert _warnings(caplog, "test = val") == [f"{xml}: no Test subset: test = val"]


def test_cvat_meta_tag_labels_are_no_classes_and_shape_labels_sort_by_code_point(tmp_path: Path) -> None:
    """A meta label of type ``tag`` is no class; without meta labels, the shape labels are sorted as strings
    (upper case first: ``Moth`` before ``ant``)."""
    meta = (
        "<meta><task><id>1</id><labels>"
        "<label><name>cat</name><type>rectangle</type></label><label><name>daylight</name><type>tag</type></label>"
        "<label><name>dog</name><type>any</type></label></labels></task></meta>"
    )
    _export(tmp_path / "p", [_img("a.jpg")], meta=meta, files=["a.jpg"])
    assert CVATParser(tmp_path / "p", "all").discover_class_names() == ["cat", "dog"]
    shapes = _box("zebra", 1, 1, 5, 5) + _box("ant", 1, 1, 5, 5) + _box("Moth", 1, 1, 5, 5)
    _export(tmp_path / "q", [_img("a.jpg", shapes)], files=["a.jpg"])
    assert CVATParser(tmp_path / "q", "all").discover_class_names() == ["Moth", "ant", "zebra"]


def test_cvat_annotations_xml_wins_over_other_xml_files(tmp_path: Path) -> None:
    """``annotations.xml`` is read even beside other ``*.xml`` files (no 'several XML' error)."""
    _export(tmp_path, [_img("a.jpg", _box("cat", 1, 2, 5, 6))], files=["a.jpg"])
    (tmp_path / "backup.xml").write_text("<annotations/>")
    (rec,) = CVATParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    assert rec.boxes.tolist() == [[1, 2, 5, 6]]


def test_cvat_two_images_of_one_name_keep_the_first(tmp_path: Path) -> None:
    """Two ``<image>`` elements of the same name: the first gives the record, the second is skipped, reported
    naming the image file."""
    images = [_img("a.jpg", _box("cat", 1, 1, 5, 5), k=0), _img("a.jpg", _box("cat", 2, 2, 6, 6), k=1)]
    _export(tmp_path, images, files=["a.jpg"])
    issues = IssueLog("skip")
    (rec,) = CVATParser(tmp_path, "all").parse(["cat"], issues)
    assert rec.boxes.tolist() == [[1, 1, 5, 5]]
    assert issues.files("skip_image", "another <image> of the same name") == [str(tmp_path / "images" / "a.jpg")]


def test_cvat_image_names_with_dots_backslashes_and_spaces(tmp_path: Path) -> None:
    """``a.b.jpg`` has id ``a.b``; a Windows name ``sub\\c.jpg`` is ``images/sub/c.jpg``, id ``sub/c``; a name
    with surrounding spaces is the stripped name."""
    images = [_img("a.b.jpg", k=0), _img("sub\\c.jpg", k=1), _img(" d.jpg ", k=2)]
    _export(tmp_path, images, files=["a.b.jpg", "sub/c.jpg", "d.jpg"])
    recs = {r.image_id: r.image_path for r in CVATParser(tmp_path, "all").parse(["cat"], IssueLog("error"))}
    assert recs == {
        "a.b": tmp_path / "images" / "a.b.jpg",
        "sub/c": tmp_path / "images" / "sub" / "c.jpg",
        "d": tmp_path / "images" / "d.jpg",
    }


def test_cvat_hash_union_with_test_and_no_test_share(tmp_path: Path) -> None:
    """No subsets, fractions without ``test``: ``val+test`` is the val split (test = val)."""
    names = [f"x{k}.png" for k in range(10)]
    _export(tmp_path, [_img(n, k=k) for k, n in enumerate(names)], files=names)
    val = _ids(CVATParser(tmp_path, "val", split_fractions=NO_TEST).parse(["cat"], IssueLog("skip")))
    assert _ids(CVATParser(tmp_path, "val+test", split_fractions=NO_TEST).parse(["cat"], IssueLog("skip"))) == val


def test_cvat_val_share_of_a_train_subset_uses_the_seed(tmp_path: Path) -> None:
    """A Train subset alone: val is ``hash_split`` of its image names over the train and val fractions with
    ``split_seed``."""
    names = [f"i{k}.png" for k in range(30)]
    _export(tmp_path, [_img(n, subset="Train", k=k) for k, n in enumerate(names)], files=names)
    want = sorted(n.removesuffix(".png") for n in hash_split(names, "val", {"train": 0.7, "val": 0.15}, 3))
    assert _ids(CVATParser(tmp_path, "val", split_seed=3).parse(["cat"], IssueLog("skip"))) == want and want


def test_cvat_image_without_a_name_is_reported_naming_the_xml(tmp_path: Path) -> None:
    """An ``<image>`` without a name skips, reported naming the XML (there is no image file to name)."""
    xml = _export(tmp_path, ['<image id="5" width="100" height="80"></image>', _img("a.jpg", k=1)], files=["a.jpg"])
    issues = IssueLog("skip")
    assert _ids(CVATParser(tmp_path, "all").parse(["cat"], issues)) == ["a"]
    assert issues.files("skip_image", "without a name") == [str(xml)]
