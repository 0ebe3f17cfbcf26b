"""CVAT for images 1.1 XML (:mod:`yolo9000.data.cvat`): tiny exports written here by hand (annotations.xml +
images/), checked against boxes computed by hand from the shapes' attributes."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import compose_config
from yolo9000.data import DataError, IssueLog
from yolo9000.data.cvat import CVATParser
from yolo9000.data.voc import reset_decision_log


@pytest.fixture(autouse=True)
def _fresh_decision_log() -> None:
    """Each test sees its own layout / split decisions logged."""
    reset_decision_log()


def _image(path: Path, size: tuple[int, int] = (100, 80)) -> Path:
    """A (width, height) RGB image with a few pixel values."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (size[1], size[0], 3), np.uint8)).save(path)
    return path


def _meta(labels: list[str]) -> str:
    """A task export's meta holding ``labels`` (CVAT's order)."""
    items = "".join(f"<label><name>{n}</name><color>#ff0000</color><type>any</type></label>" for n in labels)
    return f"<meta><task><id>1</id><name>t</name><mode>annotation</mode><labels>{items}</labels></task></meta>"


def _img(name: str, shapes: str = "", size: tuple[int, int] = (100, 80), subset: str | None = None, k: int = 0) -> str:
    """One ``<image>`` element holding ``shapes`` (XML text)."""
    sub = f' subset="{subset}"' if subset is not None else ""
    return f'<image id="{k}" name="{name}" width="{size[0]}" height="{size[1]}"{sub}>{shapes}</image>'


def _box(label: str, x0: float, y0: float, x1: float, y1: float, extra: str = "") -> str:
    return (
        f'<box label="{label}" source="manual" occluded="0" xtl="{x0}" ytl="{y0}" xbr="{x1}" ybr="{y1}" z_order="0"'
        f'{extra}><attribute name="color">red</attribute></box>'
    )


def _export(
    root: Path,
    images: list[str],
    meta: str = "",
    files: list[str] | None = None,
    folder: str = "images",
    xml_name: str = "annotations.xml",
) -> Path:
    """``root/annotations.xml`` holding ``images`` (``<image>`` texts), and the image files ``files`` (names as in
    the XML, 100x80) under ``root/folder``."""
    root.mkdir(parents=True, exist_ok=True)
    xml = root / xml_name
    xml.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<annotations>\n<version>1.1</version>\n'
        + meta
        + "\n"
        + "\n".join(images)
        + "\n</annotations>\n"
    )
    for f in files or []:
        _image(root / folder / f)
    return xml


def _boxes(parser: CVATParser, names: list[str], issues: IssueLog | None = None) -> dict[str, list[list[float]]]:
    """image id -> its boxes as lists (each box's label appended as a 5th value)."""
    recs = parser.parse(names, issues if issues is not None else IssueLog("skip"))
    return {r.image_id: [[*b.tolist(), int(c)] for b, c in zip(r.boxes, r.labels, strict=True)] for r in recs}


def test_each_shape_gives_its_bounding_box(tmp_path: Path) -> None:
    """box, polygon, polyline, ellipse, rotated box, rotated ellipse, mask (RLE decoded) and cuboid: their boxes in
    continuous pixels (no 1-based shift); the record's size is the XML's."""
    r2 = 10 * math.sqrt(2)  # a 20x20 square turned by 45 degrees: half side 10 * (cos 45 + sin 45)
    shapes = [
        _box("dog", 10.5, 20, 50, 60),
        '<polygon label="cat" occluded="0" points="5.0,6.0;30.0,2.0;20.0,25.0" z_order="0"/>',
        '<polyline label="dog" occluded="0" points="60,10;70,15;65,30"/>',
        '<ellipse label="cat" occluded="0" cx="40" cy="40" rx="5" ry="3"/>',
        _box("dog", 20, 30, 60, 50, ' rotation="90.0"'),  # centre 40,40; 40x20 -> 20x40
        _box("cat", 30, 30, 50, 50, ' rotation="45"'),
        '<ellipse label="dog" cx="50" cy="50" rx="10" ry="4" rotation="90"/>',  # half sides 4, 10
        # half sides sqrt(100 * .75 + 16 * .25), sqrt(100 * .25 + 16 * .75)
        '<ellipse label="dog" cx="50" cy="50" rx="10" ry="4" rotation="30"/>',
        # 4x3 patch at (10, 20): rows 0000 / 0110 / 0010 -> runs 5 zeros, 2 ones, 3 zeros, 1 one, 1 zero
        '<mask label="cat" source="manual" occluded="0" rle="5, 2, 3, 1, 1" left="10" top="20" width="4" height="3"/>',
        '<cuboid label="dog" xtl1="1" ytl1="2" xbl1="1" ybl1="10" xtr1="8" ytr1="2" xbr1="8" ybr1="10" '
        'xtl2="3" ytl2="0" xbl2="3" ybl2="8" xtr2="11" ytr2="0" xbr2="11" ybr2="8"/>',
    ]
    _export(tmp_path, [_img("a.jpg", "".join(shapes))], files=["a.jpg"])
    (rec,) = CVATParser(tmp_path, "all").parse(["cat", "dog"], IssueLog("error"))
    assert (rec.width, rec.height, rec.image_path, rec.image_id) == (100, 80, tmp_path / "images" / "a.jpg", "a")
    expected = [
        [10.5, 20, 50, 60],
        [5, 2, 30, 25],
        [60, 10, 70, 30],
        [35, 37, 45, 43],
        [30, 20, 50, 60],
        [40 - r2, 40 - r2, 40 + r2, 40 + r2],
        [46, 40, 54, 60],
        [50 - math.sqrt(79), 50 - math.sqrt(37), 50 + math.sqrt(79), 50 + math.sqrt(37)],
        [11, 21, 13, 23],
        [1, 0, 11, 10],
    ]
    np.testing.assert_allclose(rec.boxes, expected, atol=1e-4)
    assert rec.labels.tolist() == [1, 0, 1, 0, 1, 0, 1, 1, 0, 1]


def test_shapes_without_a_box_and_unknown_labels_are_reported(tmp_path: Path) -> None:
    """points and skeleton drop their shape (reported), a tag is noted, a label not in the class list and a malformed
    polygon drop their box (reported): each names the image file; other boxes kept. Under the error policy the first
    raises, naming the image."""
    shapes = [
        '<points label="cat" occluded="0" points="3,4"/>',
        '<skeleton label="body"><points label="1" points="1,1"/><points label="2" points="5,5"/></skeleton>',
        '<tag label="daylight" source="manual"/>',
        _box("bird", 1, 1, 5, 5),
        '<polygon label="cat" points="1,2;oops"/>',
        _box("cat", 2, 3, 12, 13),
    ]
    _export(tmp_path, [_img("a.jpg", "".join(shapes))], files=["a.jpg"])
    img = str(tmp_path / "images" / "a.jpg")
    issues = IssueLog("skip")
    assert _boxes(CVATParser(tmp_path, "all"), ["cat"], issues) == {"a": [[2, 3, 12, 13, 0]]}
    assert issues.count("drop_box") == 4
    assert issues.files("drop_box", "a <points> shape has no box") == [img]
    assert issues.files("drop_box", "a <skeleton> shape has no box") == [img]
    assert issues.files("drop_box", "unknown class 'bird'") == [img]
    assert issues.files("drop_box", "<polygon> without a box") == [img]
    assert issues.files("note", "<tag>") == [img]
    with pytest.raises(DataError, match=r"a\.jpg: a <points> shape has no box"):
        CVATParser(tmp_path, "all").parse(["cat"], IssueLog("error"))


def test_cvat_subsets_are_the_splits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Train / Validation (any case, ``valid`` too) / Test subsets are the splits; Default images are in none (one
    log line) but in ``all``; ``trainval`` is both."""
    subsets = {"a": "Train", "b": "train", "c": "Validation", "d": "valid", "e": "Test", "f": "Default"}
    images = [_img(f"{n}.jpg", _box("cat", 1, 1, 5, 5), subset=s, k=k) for k, (n, s) in enumerate(subsets.items())]
    _export(tmp_path, images, files=[f"{n}.jpg" for n in subsets])
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        ids = {s: sorted(_boxes(CVATParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test", "trainval", "all")}
    assert ids == {
        "train": ["a", "b"],
        "val": ["c", "d"],
        "test": ["e"],
        "trainval": ["a", "b", "c", "d"],
        "all": ["a", "b", "c", "d", "e", "f"],
    }
    layout = [r.getMessage() for r in caplog.records if "CVAT subsets" in r.getMessage()]
    assert len(layout) == 1 and "train 2, val 2, test 1" in layout[0] and "{'Default': 1}" in layout[0]


def test_a_task_subset_from_the_meta_and_a_train_subset_alone(tmp_path: Path) -> None:
    """Images without a subset attribute take their task's subset (the meta's ``<task><subset>``); a Train subset
    alone: val is a hash share of it, train the rest (never both), test = val."""
    meta = "<meta><task><id>7</id><subset>Train</subset><labels/></task></meta>"
    names = [f"i{k}.png" for k in range(20)]
    _export(tmp_path, [_img(n, k=k) for k, n in enumerate(names)], meta=meta, files=names)
    ids = {s: set(_boxes(CVATParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"]
    assert ids["train"] | ids["val"] == {f"i{k}" for k in range(20)}
    assert ids["test"] == ids["val"]


def test_default_subsets_are_hash_split_every_image_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Every image in Default (or without a subset): a hash split of the image names: train, val and test share no
    image and together hold them all; deterministic; another seed moves images; logged once."""
    names = [f"x{k}.png" for k in range(40)]
    images = [_img(n, _box("cat", 1, 1, 5, 5), subset="Default" if k % 2 else None, k=k) for k, n in enumerate(names)]
    _export(tmp_path, images, files=names)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        ids = {s: list(_boxes(CVATParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    sets = {s: set(v) for s, v in ids.items()}
    assert all(len(v) == len(sets[s]) > 0 for s, v in ids.items())
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == {f"x{k}" for k in range(40)}
    assert set(_boxes(CVATParser(tmp_path, "val"), ["cat"])) == sets["val"]
    assert set(_boxes(CVATParser(tmp_path, "train", split_seed=1), ["cat"])) != sets["train"]
    assert sum("split by a hash of their names" in r.getMessage() for r in caplog.records) == 1


def test_class_names_follow_the_meta_labels(tmp_path: Path) -> None:
    """Without class_names: the meta's labels in CVAT's order (a project export's labels; a skeleton and its points
    left out); no labels in the meta: every label of a box shape, sorted; names_file and class_names win."""
    meta = (
        "<meta><project><id>1</id><labels>"
        "<label><name>zebra</name><type>rectangle</type></label><label><name>ant</name><type>any</type></label>"
        "<label><name>body</name><type>skeleton</type></label>"
        "<label><name>1</name><type>points</type><parent>body</parent></label>"
        "<label><name>Moth</name><type>polygon</type></label>"
        "</labels><tasks><task><id>3</id><name>t</name></task></tasks></project></meta>"
    )
    xml = _export(tmp_path / "p", [_img("a.jpg", _box("ant", 1, 1, 5, 5))], meta=meta, files=["a.jpg"])
    assert CVATParser(tmp_path / "p", "train").discover_class_names() == ["zebra", "ant", "Moth"]
    assert CVATParser(xml, "train").discover_class_names() == ["zebra", "ant", "Moth"]  # root: the XML itself
    (tmp_path / "p" / "names.txt").write_text("ant\nzebra\n")
    assert CVATParser(tmp_path / "p", "val", names_file="names.txt").discover_class_names() == ["ant", "zebra"]
    assert CVATParser(tmp_path / "p", "val", class_names=["x"]).discover_class_names() == ["x"]
    shapes = _box("zebra", 1, 1, 5, 5) + '<polygon label="ant" points="1,1;4,4"/><points label="pin" points="1,1"/>'
    _export(tmp_path / "q", [_img("a.jpg", shapes)], files=["a.jpg"])
    assert CVATParser(tmp_path / "q", "train").discover_class_names() == ["ant", "zebra"]


def test_images_in_images_in_subfolders_and_beside_the_xml(tmp_path: Path) -> None:
    """``images/<name>`` (name with subfolders), ``<name>`` beside the XML, an XML of another name (the only
    ``*.xml``, or ``xml_file``) and a project export's ``images/<subset>/<name>`` find their images."""
    images = [_img("sub/dir/a.jpg", _box("cat", 1, 1, 5, 5)), _img("b.png", k=1)]
    _export(tmp_path / "zip", images, files=["sub/dir/a.jpg", "b.png"])
    recs = {r.image_id: r.image_path for r in CVATParser(tmp_path / "zip", "all").parse(["cat"], IssueLog("error"))}
    assert recs == {"sub/dir/a": tmp_path / "zip" / "images/sub/dir/a.jpg", "b": tmp_path / "zip" / "images/b.png"}
    _export(tmp_path / "flat", images, files=["sub/dir/a.jpg", "b.png"], folder=".", xml_name="task_1.xml")
    recs = {r.image_id: r.image_path for r in CVATParser(tmp_path / "flat", "all").parse(["cat"], IssueLog("error"))}
    assert recs == {"sub/dir/a": tmp_path / "flat" / "sub/dir/a.jpg", "b": tmp_path / "flat" / "b.png"}
    (tmp_path / "flat" / "other.xml").write_text("<annotations/>")
    with pytest.raises(FileNotFoundError, match="several"):
        CVATParser(tmp_path / "flat", "all").parse(["cat"])
    assert len(CVATParser(tmp_path / "flat", "all", xml_file="task_1.xml").parse(["cat"], IssueLog("error"))) == 2
    project = [_img("c.jpg", subset="Train"), _img("d.jpg", k=1)]  # a project export: images/<subset>/<name>
    _export(tmp_path / "proj", project, files=["Train/c.jpg", "default/d.jpg"])
    recs = {r.image_id: r.image_path for r in CVATParser(tmp_path / "proj", "all").parse(["cat"], IssueLog("error"))}
    assert recs == {"c": tmp_path / "proj" / "images/Train/c.jpg", "d": tmp_path / "proj" / "images/default/d.jpg"}


def test_a_broken_xml_names_the_file_and_line(tmp_path: Path) -> None:
    """XML that does not parse: an error naming the file, line and column (1-based: the unquoted 4 is the 34th
    character of line 3); a video export is named as one."""
    xml = tmp_path / "annotations.xml"
    xml.write_text('<annotations>\n<version>1.1</version>\n<image id="0" name="a.jpg" width=4 height="4"/>\n</a>')
    with pytest.raises(ValueError, match=r"annotations\.xml: broken XML at line 3, column 34: not well-formed"):
        CVATParser(tmp_path, "all").parse(["cat"])
    xml.write_text('<annotations><version>1.1</version><track id="0" label="cat"/></annotations>')
    with pytest.raises(ValueError, match=r"annotations\.xml: a 'CVAT for video' export"):
        CVATParser(tmp_path, "all").parse(["cat"])


def test_sizes_negatives_and_missing_images(tmp_path: Path) -> None:
    """The record's size is the XML's (a differing image file is the dataset's size-mismatch rescale); an image
    without shapes is a negative (noted); a missing image file is reported, naming it."""
    images = [
        _img("big.jpg", _box("cat", 10, 10, 20, 20), size=(200, 160)),
        _img("empty.jpg", k=1),
        _img("gone.jpg", _box("cat", 1, 1, 5, 5), k=2),
    ]
    _export(tmp_path, images, files=["big.jpg", "empty.jpg"])  # big.jpg written 100x80: half the XML's size
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in CVATParser(tmp_path, "all").parse(["cat"], issues)}
    assert sorted(recs) == ["big", "empty"]
    assert (recs["big"].width, recs["big"].height) == (200, 160)
    assert len(recs["empty"].boxes) == 0 and issues.files("note", "negative") == [str(tmp_path / "images/empty.jpg")]
    (missing,) = [i for i in issues.issues if i.action == "skip_image"]
    assert (missing.file, missing.reason) == (str(tmp_path / "images/gone.jpg"), "missing image file")
    assert "gone.jpg" in missing.detail

    from yolo9000.data import DetectionDataset, DetectionTransform

    ds = DetectionDataset([recs["big"]], DetectionTransform(train=False), IssueLog("skip"), default_size=64)
    assert ds[0]["gt_boxes"].tolist() == [[5, 5, 10, 10]]  # rescaled to the image's 100x80


def test_data_cvat_config_feeds_the_data_module(tmp_path: Path) -> None:
    """`data=cvat` composes and its DataModule reads the subsets: class names from the meta, a training batch with
    the boxes."""
    from hydra.utils import instantiate

    images, files = [], []
    for subset, n in (("Train", 4), ("Validation", 2)):
        for k in range(n):
            name = f"{subset.lower()}{k}.jpg"
            images.append(_img(name, _box("dog" if k % 2 else "cat", 10 + k, 10, 40, 30 + k), (64, 48), subset, k))
            files.append(name)
    _export(tmp_path, images, meta=_meta(["cat", "dog"]), files=[])
    for f in files:
        _image(tmp_path / "images" / f, (64, 48))
    cfg = compose_config(
        "train",
        "data=cvat",
        f"data.root={tmp_path}",
        "data.num_workers=0",
        "data.batch_size=2",
        "data.multiscale.enabled=false",
        "data.img_size=64",
    )
    dm = instantiate(cfg.data, _convert_="all")
    dm.setup("fit")
    assert dm.class_names == ["cat", "dog"]
    assert (len(dm.datasets["train"]), len(dm.datasets["val"])) == (4, 2)
    for rec in dm.datasets["train"].records:
        k = int(rec.image_id.removeprefix("train"))
        assert (rec.boxes.tolist(), rec.labels.tolist()) == ([[10 + k, 10, 40, 30 + k]], [k % 2])
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["images"].shape) == (2, 3, 64, 64)
    assert all(Path(p).parent == tmp_path / "images" for p in batch["image_paths"])
    assert 1 <= int(batch["target_mask"].sum()) <= 2  # one box an image (an augmentation may crop one away)


def test_bccd_written_as_cvat_reads_as_its_voc_records(tmp_path: Path) -> None:
    """Twelve BCCD test images written as one CVAT XML here (VOC's 1-based inclusive corners as the continuous pixels
    ``xmin - 1 .. xmax``) read back as VOCParser reads their XML: the same boxes, labels and sizes."""
    import xml.etree.ElementTree as ET

    from yolo9000.data.voc import VOCParser

    root = Path(__file__).resolve().parents[1] / "data" / "bccd"
    ids = (root / "ImageSets" / "Main" / "test.txt").read_text().split()[:12]
    images = []
    for k, i in enumerate(ids):
        xml = ET.parse(root / "Annotations" / f"{i}.xml").getroot()
        boxes = ""
        for o in xml.iter("object"):
            x0, y0, x1, y1 = (float(o.find("bndbox").find(c).text) for c in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
            boxes += _box(o.findtext("name") or "", x0 - 1, y0 - 1, x1, y1)
        w, h = (int(xml.findtext(f"size/{c}") or 0) for c in ("width", "height"))
        images.append(_img(f"{i}.jpg", boxes, (w, h), "Test", k))
        (tmp_path / "images").mkdir(exist_ok=True)
        shutil.copy(root / "JPEGImages" / f"{i}.jpg", tmp_path / "images" / f"{i}.jpg")
    names = ["RBC", "WBC", "Platelets"]
    _export(tmp_path, images, meta=_meta(names))
    assert CVATParser(tmp_path, "test").discover_class_names() == names
    ours = {r.image_id: r for r in CVATParser(tmp_path, "test").parse(names, IssueLog("error"))}
    voc = {r.image_id: r for r in VOCParser(root, split="test").parse(names, IssueLog("error")) if r.image_id in ids}
    assert sorted(ours) == sorted(voc) == sorted(ids)
    for i in ids:
        a, b = ours[i], voc[i]
        assert (a.width, a.height) == (b.width, b.height) and a.labels.tolist() == b.labels.tolist()
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
