"""Gaps a mutation audit of the annotation parsers found (VOC XML, COCO JSON, YOLO / darknet txt, split lists, the
hash split, image headers): each test writes a tiny hand-made file in ``tmp_path`` and checks a hand-computed fact
of the format (darknet's label-path rule, VOC's ImageSets lines, COCO's image ids, EXIF orientations) or of the
parser's documented contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from yolo9000.data import COCOParser, DataError, IssueLog, VOCParser, YOLOTxtParser, hash_split
from yolo9000.data.image_io import image_size, read_image, rgb_uint8
from yolo9000.data.splits import canonical_split, read_list_file
from yolo9000.data.yolo_labels import label_path_for, read_label_rows


def _img(path: Path, size: tuple[int, int] = (32, 24), fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, format=fmt)
    return path


def _voc_xml(path: Path, objects: str, filename: str = "x.jpg", size: tuple[str, str] | None = ("32", "24")) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    s = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    path.write_text(f"<annotation><filename>{filename}</filename>{s}{objects}</annotation>")


def _obj(name: str, box: tuple[int, int, int, int], difficult: str | None = "0") -> str:
    d = "" if difficult is None else f"<difficult>{difficult}</difficult>"
    x0, y0, x1, y1 = box
    return (
        f"<object><name>{name}</name>{d}<bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin><xmax>{x1}</xmax>"
        f"<ymax>{y1}</ymax></bndbox></object>"
    )


# ------------------------------------------------------------------------------------------------------ VOC
def test_voc_image_named_after_the_id_wins_over_the_xml_filename(tmp_path: Path) -> None:
    """``image_ext`` is tried first for ``<id>``, the XML ``<filename>`` next: a stale ``<filename>`` (the image was
    renamed after labelling) naming another existing image does not take its place."""
    _img(tmp_path / "JPEGImages" / "a.jpg")
    _img(tmp_path / "JPEGImages" / "old.jpg", (16, 16))
    _voc_xml(tmp_path / "Annotations" / "a.xml", _obj("cat", (2, 3, 20, 15)), filename="old.jpg")
    (rec,) = VOCParser(tmp_path, "all").parse(["cat"])
    assert rec.image_path == tmp_path / "JPEGImages" / "a.jpg"


def test_voc_xml_filename_with_folders_is_looked_up_by_its_name(tmp_path: Path) -> None:
    """An XML whose ``<filename>`` holds a folder and another stem than the XML (``photos/b.png`` for ``a.xml``)
    finds ``JPEGImages/b.png``."""
    _img(tmp_path / "JPEGImages" / "b.png", fmt="PNG")
    _voc_xml(tmp_path / "Annotations" / "a.xml", _obj("cat", (2, 3, 20, 15)), filename="photos/b.png")
    (rec,) = VOCParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    assert rec.image_path == tmp_path / "JPEGImages" / "b.png" and rec.image_id == "a"


def test_voc_size_from_the_xml_even_written_as_floats(tmp_path: Path) -> None:
    """``<width>64.0</width>`` (some exporters write floats) is the XML's size: taken as it is, not replaced by the
    image header's (a 32 x 24 file here), nothing reported; ``<difficult>1</difficult>`` is difficult, a missing
    ``<difficult>`` is not; 1-based corners (2, 3, 20, 15) become (1, 2, 20, 15)."""
    _img(tmp_path / "JPEGImages" / "a.jpg", (32, 24))
    objs = _obj("cat", (2, 3, 20, 15), "1") + _obj("cat", (5, 6, 30, 40), None)
    _voc_xml(tmp_path / "Annotations" / "a.xml", objs, size=("64.0", "48.0"))
    issues = IssueLog("error")
    (rec,) = VOCParser(tmp_path, "all").parse(["cat"], issues)
    assert (rec.width, rec.height) == (64, 48) and len(issues) == 0
    np.testing.assert_array_equal(rec.boxes, [[1, 2, 20, 15], [4, 5, 30, 40]])
    assert rec.difficult.tolist() == [True, False]


def test_voc_discovered_class_names_are_stripped_as_parse_strips_them(tmp_path: Path) -> None:
    """A pretty-printed ``<name>`` (``\\n    cat\\n  ``) is the class ``cat`` both when the class list is read from
    the XML files and when the boxes are parsed."""
    _img(tmp_path / "JPEGImages" / "a.jpg")
    objs = _obj("\n    cat\n  ", (2, 3, 20, 15)) + _obj("dog", (4, 4, 10, 10))
    _voc_xml(tmp_path / "Annotations" / "a.xml", objs)
    parser = VOCParser(tmp_path, "all")
    names = parser.discover_class_names()
    assert names == ["cat", "dog"]
    (rec,) = parser.parse(names, IssueLog("error"))
    assert rec.labels.tolist() == [0, 1]


def test_voc_split_list_may_name_the_annotation_files(tmp_path: Path) -> None:
    """A split list naming XML files (``Annotations/a.xml``, ``b.xml``) gives the ids ``a`` and ``b``."""
    for stem in ("a", "b", "c"):
        _img(tmp_path / "JPEGImages" / f"{stem}.jpg")
        _voc_xml(tmp_path / "Annotations" / f"{stem}.xml", _obj("cat", (2, 3, 20, 15)))
    (tmp_path / "train.txt").write_text("Annotations/a.xml\nb.xml\n")
    recs = VOCParser(tmp_path, "train", split_files={"train": "train.txt"}).parse(["cat"], IssueLog("error"))
    assert [r.image_id for r in recs] == ["a", "b"]


# ----------------------------------------------------------------------------------------------------- COCO
def _coco(tmp_path: Path, images: list[dict], annotations: list[dict], name: str = "ann.json") -> None:
    cats = [{"id": 1, "name": "cat"}]
    (tmp_path / name).write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))


def test_coco_annotation_of_an_unknown_image_id_is_reported(tmp_path: Path) -> None:
    """An annotation whose ``image_id`` is no image of the JSON is a dropped box, reported (raised under error)."""
    _img(tmp_path / "imgs" / "1.jpg", (100, 80))
    anns = [
        {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 20, 30, 40]},
        {"id": 2, "image_id": 99, "category_id": 1, "bbox": [1, 2, 3, 4]},
    ]
    _coco(tmp_path, [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 80}], anns)
    issues = IssueLog("skip")
    (rec,) = COCOParser("ann.json", "imgs", root=tmp_path).parse(None, issues)
    np.testing.assert_array_equal(rec.boxes, [[10, 20, 40, 60]])
    assert issues.count("drop_box", "annotation for an unknown image id") == 1
    with pytest.raises(DataError, match="unknown image id"):
        COCOParser("ann.json", "imgs", root=tmp_path).parse(None, IssueLog("error"))


def test_coco_zero_width_bbox_is_a_zero_area_box(tmp_path: Path) -> None:
    """``bbox`` [10, 10, 0, 5] (w = 0) inside the image is dropped as a zero-area box, not as one outside it."""
    _img(tmp_path / "imgs" / "1.jpg", (100, 80))
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 0, 5]}]
    _coco(tmp_path, [{"id": 1, "file_name": "1.jpg", "width": 100, "height": 80}], anns)
    issues = IssueLog("skip")
    (rec,) = COCOParser("ann.json", "imgs", root=tmp_path).parse(None, issues)
    assert len(rec.boxes) == 0
    assert issues.count("drop_box", "zero-area or inverted box") == 1 and issues.count("drop_box", "outside") == 0


def _coco_many(tmp_path: Path, n: int, name: str) -> list[str]:
    files = [f"{k:03d}.jpg" for k in range(n)]
    for f in files:
        _img(tmp_path / "imgs" / f, (8, 8))
    _coco(tmp_path, [{"id": k, "file_name": f, "width": 8, "height": 8} for k, f in enumerate(files)], [], name)
    return files


def _coco_split(tmp_path: Path, ann_files: dict, split: str, seed: int) -> set[str]:
    parser = COCOParser(root=tmp_path, image_dir="imgs", ann_files=ann_files, split=split, split_seed=seed)
    return {r.image_path.name for r in parser.parse(["cat"], IssueLog("skip"))}


def test_coco_derived_splits_follow_the_split_seed(tmp_path: Path) -> None:
    """With only a train JSON, val and test are hash shares of it: another ``split_seed`` gives another val share;
    each seed's train / val / test are disjoint and cover the JSON's images."""
    files = set(_coco_many(tmp_path, 40, "train.json"))
    shares = {
        seed: {s: _coco_split(tmp_path, {"train": "train.json"}, s, seed) for s in ("train", "val", "test")}
        for seed in (0, 1)
    }
    for seed in (0, 1):
        tr, va, te = shares[seed]["train"], shares[seed]["val"], shares[seed]["test"]
        assert tr | va | te == files and len(tr) + len(va) + len(te) == 40
    assert shares[0]["val"] != shares[1]["val"]


def test_coco_missing_val_json_beside_a_test_json_splits_train_into_train_and_val_only(tmp_path: Path) -> None:
    """A val JSON missing while the test JSON is there: val is a hash share of the train JSON and train keeps the
    rest; no share of the train JSON is set aside for a test split that has its own JSON."""
    files = set(_coco_many(tmp_path, 40, "train.json"))
    _coco(tmp_path, [], [], "test.json")
    ann_files = {"train": "train.json", "val": "missing.json", "test": "test.json"}
    tr, va = (_coco_split(tmp_path, ann_files, s, 0) for s in ("train", "val"))
    assert tr | va == files and not tr & va and va


# ------------------------------------------------------------------------------------------------------ YOLO
def test_label_path_rules() -> None:
    """darknet's VOC layout (voc_label.py writes ``VOC2007/labels/<id>.txt`` beside ``JPEGImages/``): the
    ``JPEGImages`` folder becomes ``labels``; with two ``images`` folders the last one is replaced (ultralytics'
    ``img2label_paths``: ``rsplit('/images/', 1)``), the extension swapped for ``.txt``."""
    voc = Path("/d/VOCdevkit/VOC2007/JPEGImages/000001.jpg")
    assert label_path_for(voc) == Path("/d/VOCdevkit/VOC2007/labels/000001.txt")
    nested = Path("/d/images/coco/images/train2017/x.png")
    assert label_path_for(nested) == Path("/d/images/coco/labels/train2017/x.txt")


def test_yolo_class_ids_must_be_integers_below_the_class_count(tmp_path: Path) -> None:
    """With 2 classes, class id 2 is unknown and ``1.5`` is no class id (malformed): both dropped, reported;
    ``1 0.5 0.5 0.2 0.2`` is kept."""
    label = tmp_path / "a.txt"
    label.write_text("2 0.5 0.5 0.2 0.2\n1.5 0.5 0.5 0.2 0.2\n1 0.5 0.5 0.2 0.2\n")
    issues = IssueLog("skip")
    rows = read_label_rows(label, tmp_path / "a.jpg", 2, issues)
    assert rows == [[1.0, 0.5, 0.5, 0.2, 0.2]]
    assert issues.count("drop_box", "unknown class '2'") == 1 and issues.count("drop_box", "malformed") == 1


def test_yolo_boxes_are_never_difficult(tmp_path: Path) -> None:
    """YOLO labels have no difficult flag: every box is a training target (cx .5 cy .5 w .2 h .4 of a 100 x 50
    image: (40, 15, 60, 35))."""
    _img(tmp_path / "images" / "a.jpg", (100, 50))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.4\n1 0.1 0.2 0.1 0.2\n")
    (rec,) = YOLOTxtParser(tmp_path, None).parse(["a", "b"], IssueLog("error"))
    np.testing.assert_allclose(rec.boxes, [[40, 15, 60, 35], [5, 5, 15, 15]], atol=1e-4)
    assert rec.difficult.tolist() == [False, False]


def test_yolo_val_share_of_the_train_folder_follows_the_split_seed(tmp_path: Path) -> None:
    """``images/train/`` without a val folder: val is a hash share of train; another ``split_seed`` gives another."""
    for k in range(40):
        _img(tmp_path / "images" / "train" / f"{k:03d}.jpg", (4, 4))

    def names(split: str, seed: int) -> set[str]:
        return {p.name for p in YOLOTxtParser(tmp_path, split, split_seed=seed).image_paths()}

    for seed in (0, 1):
        assert not names("train", seed) & names("val", seed) and len(names("train", seed) | names("val", seed)) == 40
    assert names("val", 0) != names("val", 1)


def test_yolo_split_folders_with_a_year_after_a_separator(tmp_path: Path) -> None:
    """``images/train_2017/`` and ``images/val-2012/`` are the train and val folders (``val_2012`` -> val)."""
    _img(tmp_path / "images" / "train_2017" / "t.jpg", (4, 4))
    _img(tmp_path / "images" / "val-2012" / "v.jpg", (4, 4))
    assert [p.name for p in YOLOTxtParser(tmp_path, "val").image_paths()] == ["v.jpg"]
    assert [p.name for p in YOLOTxtParser(tmp_path, "train").image_paths()] == ["t.jpg"]


# ---------------------------------------------------------------------------------------------------- splits
def test_hash_split_normalises_the_fractions() -> None:
    """Fractions are normalised to sum 1: {train .35, val .075} splits as {train .7, val .15}, {1, 1} in halves."""
    ids = [f"img{k:04d}" for k in range(400)]
    assert hash_split(ids, "val", {"train": 0.35, "val": 0.075}) == hash_split(ids, "val", {"train": 0.7, "val": 0.15})
    assert 150 <= len(hash_split(ids, "val", {"train": 1.0, "val": 1.0})) <= 250


def test_voc_imagesets_lines_with_a_flag_give_the_id(tmp_path: Path) -> None:
    """VOC's per-class lists (``aeroplane_train.txt``) hold ``<id> <flag>`` lines, flag -1 / 0 / 1: the id."""
    p = tmp_path / "aeroplane_train.txt"
    p.write_text("000005 -1\n000007  1\n000009 0\n# a comment\n\n000012\n")
    assert read_list_file(p) == (["000005", "000007", "000009", "000012"], False)


def test_split_csv_names_in_any_case_trainval_and_one_row_per_box(tmp_path: Path) -> None:
    """A CSV with a split column: split names in any case (``Train``, ``Valid``, ``TEST``, ``training``),
    ``trainval`` = train + val rows, a file on several rows (one per box) listed once."""
    p = tmp_path / "boxes.csv"
    p.write_text("filename,split\na.jpg,Train\na.jpg,Train\nb.jpg,Valid\nc.jpg,TEST\nd.jpg,training\n")
    assert read_list_file(p, "train") == (["a.jpg", "d.jpg"], True)
    assert read_list_file(p, "val") == (["b.jpg"], True)
    assert read_list_file(p, "trainval") == (["a.jpg", "b.jpg", "d.jpg"], True)
    assert [canonical_split(s) for s in ("Validation", "TESTING", "Training")] == ["val", "test", "train"]


# -------------------------------------------------------------------------------------------------- images
def _oriented_jpeg(path: Path, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, exif=exif, quality=95)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_header_size_is_the_upright_size_for_every_exif_orientation(tmp_path: Path, orientation: int) -> None:
    """EXIF orientations 5 to 8 (transpose, rotate 90, transverse, rotate 270) swap width and height, 2 to 4
    (mirror, rotate 180, flip) do not: a stored 40 x 30 JPEG is 30 x 40 upright for 5..8, as it is decoded."""
    path = tmp_path / f"o{orientation}.jpg"
    _oriented_jpeg(path, orientation)
    upright = (30, 40) if orientation >= 5 else (40, 30)
    assert image_size(path) == upright
    assert read_image(path).shape == (upright[1], upright[0], 3)


def test_header_size_of_a_tiff_with_an_exif_orientation_is_its_decoded_size(tmp_path: Path) -> None:
    """A stored 40 x 30 TIFF with orientation 6 is decoded 30 wide, 40 high: its header size must say so."""
    path = tmp_path / "o6.tif"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (40, 30), (200, 10, 10)).save(path, exif=exif)
    assert read_image(path).shape == (40, 30, 3)
    assert image_size(path) == (30, 40)


def test_float_pixels_are_rounded_not_truncated() -> None:
    """Floats in [0, 1] are scaled by 255 and rounded: .999 -> 254.7 -> 255, .0021 -> .54 -> 1, .2 -> 51."""
    got = rgb_uint8(np.array([[0.999, 0.0021, 0.2]], np.float32))
    assert got.shape == (1, 3, 3) and got[0, :, 0].tolist() == [255, 1, 51]


def test_yolo_yaml_names_with_gaps_name_the_ids_they_miss(tmp_path: Path) -> None:
    """``names: {0: RBC, 7: WBC, 149: Platelets}`` (a 150-class dataset trimmed to its labelled classes): the error
    names the ids 0..149 the labels may hold and the first missing ones with their count, not "0..2"."""
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: {0: RBC, 7: WBC, 149: Platelets}\n")
    with pytest.raises(ValueError) as err:
        YOLOTxtParser(root=tmp_path, split="train").discover_class_names()
    msg = str(err.value)
    assert str(tmp_path / "data.yaml") in msg and "0..149" in msg and "0..2" not in msg
    assert "missing 1, 2, 3, 4, 5, 6, 8, 9, 10, 11, ... (147 in all)" in msg
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: {-1: bg, 0: cat}\n")
    with pytest.raises(ValueError, match="negative ids"):
        YOLOTxtParser(root=tmp_path, split="train").discover_class_names()
