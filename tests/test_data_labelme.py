"""LabelMe JSON (:mod:`yolo9000.data.labelme`): tiny datasets written here, one JSON per image, checked against boxes
computed by hand from the shapes' points."""

from __future__ import annotations

import base64
import io
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from conftest import compose_config
from yolo9000.data import DataError, IssueLog
from yolo9000.data.labelme import LabelMeParser
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


def _rect(label: str, pts: list[list[float]], kind: str = "rectangle") -> dict[str, Any]:
    return {"label": label, "points": pts, "group_id": None, "shape_type": kind, "flags": {}}


def _labelme(
    json_path: Path,
    image_path: str,
    shapes: list[dict[str, Any]],
    size: tuple[int, int] | None = (100, 80),
    image_data: str | None = None,
    with_image: bool = True,
) -> Path:
    """A LabelMe JSON (labelme 5's keys) naming ``image_path`` (as written in it) and, by default, that image."""
    json_path.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": image_path}
    data["imageData"] = image_data
    if size is not None:
        data["imageWidth"], data["imageHeight"] = size
    json_path.write_text(json.dumps(data))
    if with_image:
        _image(json_path.parent / image_path.replace("\\", "/"), size or (100, 80))
    return json_path


def _boxes(parser: LabelMeParser, names: list[str], issues: IssueLog | None = None) -> dict[str, list[list[float]]]:
    """image id -> its boxes as lists (each box's label appended as a 5th value)."""
    recs = parser.parse(names, issues if issues is not None else IssueLog("skip"))
    return {r.image_id: [[*b.tolist(), int(c)] for b, c in zip(r.boxes, r.labels, strict=True)] for r in recs}


def test_each_shape_type_gives_its_bounding_box(tmp_path: Path) -> None:
    """rectangle (corners reversed), polygon, circle, linestrip and line: their boxes, no 1-based shift; the record's
    size is the JSON's."""
    shapes = [
        _rect("dog", [[50, 40], [10, 20]]),  # corners given bottom-right first
        _rect("cat", [[5, 6], [30, 2], [20, 25]], "polygon"),
        _rect("cat", [[40, 40], [43, 44]], "circle"),  # radius 5
        _rect("dog", [[60, 10], [70, 15], [65, 30]], "linestrip"),
        _rect("cat", [[90, 70], [80, 60]], "line"),
        {"label": "dog", "points": [[1, 2], [9, 8], [5, 5]]},  # no shape_type: a polygon (old labelme files)
    ]
    _labelme(tmp_path / "a.json", "a.jpg", shapes)
    (rec,) = LabelMeParser(tmp_path, "all").parse(["cat", "dog"], IssueLog("error"))
    assert (rec.width, rec.height, rec.image_path, rec.image_id) == (100, 80, tmp_path / "a.jpg", "a")
    assert rec.boxes.tolist() == [
        [10, 20, 50, 40],
        [5, 2, 30, 25],
        [35, 35, 45, 45],
        [60, 10, 70, 30],
        [80, 60, 90, 70],
        [1, 2, 9, 8],
    ]
    assert rec.labels.tolist() == [1, 0, 0, 1, 0, 1]


def test_a_point_and_an_unknown_label_drop_their_box_reported(tmp_path: Path) -> None:
    """A point has no box, a label not in the class list is not a class: each box dropped, reported naming the JSON;
    the other boxes kept. Under the error policy the first raises, naming the file."""
    jp = _labelme(
        tmp_path / "a.json",
        "a.jpg",
        [_rect("cat", [[3, 4]], "point"), _rect("bird", [[1, 1], [5, 5]]), _rect("cat", [[2, 3], [12, 13]])],
    )
    issues = IssueLog("skip")
    assert _boxes(LabelMeParser(tmp_path, "all"), ["cat"], issues) == {"a": [[2, 3, 12, 13, 0]]}
    assert issues.count("drop_box") == 2
    assert issues.files("drop_box", "point") == [str(jp)]
    assert issues.files("drop_box", "unknown class 'bird'") == [str(jp)]
    with pytest.raises(DataError, match=r"a\.json: a point shape has no box"):
        LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("error"))


def test_broken_json_is_reported_and_other_json_left_out(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An unparsable JSON and a LabelMe file without imagePath skip their image, reported naming the file; a COCO
    JSON in the same root is no LabelMe file: left out, named in one log line, no issue; parsing goes on."""
    _labelme(tmp_path / "good.json", "good.jpg", [_rect("cat", [[1, 1], [5, 5]])])
    bad = tmp_path / "bad.json"
    bad.write_text('{"shapes": [')
    no_path = tmp_path / "sub" / "nopath.json"
    no_path.parent.mkdir()
    no_path.write_text(json.dumps({"shapes": [], "imageHeight": 8, "imageWidth": 8}))
    (tmp_path / "instances_default.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    issues = IssueLog("skip")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        assert _boxes(LabelMeParser(tmp_path, "all"), ["cat"], issues) == {"good": [[1, 1, 5, 5, 0]]}
    assert issues.files("skip_image") == [str(bad), str(no_path)]
    assert issues.count(reason="unreadable JSON") == 1 and issues.count(reason="without imagePath") == 1
    assert "instances_default" not in "".join(i.file for i in issues.issues)
    assert [r.getMessage() for r in caplog.records if "instances_default.json" in r.getMessage()] == [
        f"{tmp_path}: 1 JSON file without LabelMe's shapes / imagePath (not LabelMe), left out: instances_default.json"
    ]
    with pytest.raises(DataError, match=r"bad\.json: unreadable JSON"):
        LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("error"))


def test_split_folders_are_read_per_folder(tmp_path: Path) -> None:
    """train/ valid/ test/ each holding JSONs and images: each split its folder (subfolders too)."""
    for folder, names in {"train": ["a", "sub/b"], "valid": ["c"], "test": ["d"]}.items():
        for n in names:
            _labelme(tmp_path / folder / f"{n}.json", f"{Path(n).name}.jpg", [_rect("cat", [[1, 1], [5, 5]])])
    ids = {s: sorted(_boxes(LabelMeParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    assert ids == {"train": ["train/a", "train/sub/b"], "val": ["valid/c"], "test": ["test/d"]}
    assert sorted(_boxes(LabelMeParser(tmp_path, "trainval"), ["cat"])) == ["train/a", "train/sub/b", "valid/c"]


def test_without_a_val_folder_val_is_a_share_of_train_and_test_is_val(tmp_path: Path) -> None:
    """train/ alone: val a hash share of train's files, train the rest (never both); test = val."""
    for k in range(20):
        _labelme(tmp_path / "train" / f"i{k}.json", f"i{k}.jpg", [], size=(8, 8))
    ids = {s: set(_boxes(LabelMeParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"]
    assert ids["train"] | ids["val"] == {f"train/i{k}" for k in range(20)}
    assert ids["test"] == ids["val"]


def test_hash_split_uses_every_image_once(tmp_path: Path) -> None:
    """No split folders: every JSON under the root (subfolders too, hidden ones left out), split by a hash of the
    image path: train, val and test share no image and together hold them all; deterministic."""
    expected = set()
    for k in range(40):
        sub = "" if k % 2 else "more/"
        _labelme(tmp_path / f"{sub}x{k}.json", f"x{k}.png", [_rect("cat", [[1, 1], [5, 5]])], size=(8, 8))
        expected.add(f"{sub}x{k}")
    _labelme(tmp_path / ".ipynb_checkpoints" / "x0.json", "x0.png", [], size=(8, 8))  # hidden: left out
    ids = {s: list(_boxes(LabelMeParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    sets = {s: set(v) for s, v in ids.items()}
    assert all(len(v) == len(sets[s]) > 0 for s, v in ids.items())
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    assert sets["train"] | sets["val"] | sets["test"] == expected
    assert set(_boxes(LabelMeParser(tmp_path, "all"), ["cat"])) == expected
    assert set(_boxes(LabelMeParser(tmp_path, "val"), ["cat"])) == sets["val"]
    other_seed = {s: set(_boxes(LabelMeParser(tmp_path, s, split_seed=1), ["cat"])) for s in ("train", "val")}
    assert other_seed["train"] != sets["train"]


def test_class_names_are_every_box_label_of_all_splits_sorted(tmp_path: Path) -> None:
    """Without class_names: every label of every split folder's box shapes, sorted (a label only on points gives no
    box, so no class); names_file and class_names win."""
    _labelme(
        tmp_path / "train" / "a.json", "a.jpg", [_rect("zebra", [[1, 1], [5, 5]]), _rect("pin", [[2, 2]], "point")]
    )
    _labelme(tmp_path / "val" / "b.json", "b.jpg", [_rect("ant", [[1, 1], [5, 5]], "polygon")])
    _labelme(tmp_path / "test" / "c.json", "c.jpg", [_rect("Moth", [[1, 1], [5, 5]], "circle")])
    assert LabelMeParser(tmp_path, "train").discover_class_names() == ["Moth", "ant", "zebra"]
    (tmp_path / "names.txt").write_text("zebra\nant\nMoth\n")
    assert LabelMeParser(tmp_path, "val", names_file="names.txt").discover_class_names() == ["zebra", "ant", "Moth"]
    assert LabelMeParser(tmp_path, "val", class_names=["x"]).discover_class_names() == ["x"]


def test_windows_image_paths_resolve(tmp_path: Path) -> None:
    """imagePath with backslashes and ``..`` (labelme on Windows, JSONs in their own folder), and an absolute
    Windows path whose image lies beside the JSON, find their images."""
    _image(tmp_path / "images" / "p.jpg")
    _labelme(tmp_path / "ann" / "p.json", "..\\images\\p.jpg", [_rect("cat", [[1, 1], [5, 5]])], with_image=False)
    _labelme(tmp_path / "ann" / "q.json", "C:\\Users\\me\\pics\\q.jpg", [], with_image=False)
    _image(tmp_path / "ann" / "q.jpg")
    recs = {r.image_id: r for r in LabelMeParser(tmp_path, "all").parse(["cat"], IssueLog("error"))}
    assert {k: r.image_path for k, r in recs.items()} == {
        "images/p": tmp_path / "images" / "p.jpg",
        "ann/q": tmp_path / "ann" / "q.jpg",
    }
    assert recs["images/p"].boxes.tolist() == [[1, 1, 5, 5]]


def test_sizes_negatives_and_missing_images(tmp_path: Path) -> None:
    """The record's size is the JSON's (a differing image is the dataset's size-mismatch rescale), else the header's
    (fixed, reported); no shapes: a negative (noted); a missing image file is read from the JSON's imageData (its
    pixels loaded), and reported without one; a broken embedded image is reported when it is loaded."""
    _labelme(tmp_path / "big.json", "big.jpg", [_rect("cat", [[10, 10], [20, 20]])], size=(200, 160))
    Image.new("RGB", (100, 80)).save(tmp_path / "big.jpg")  # the image is half the JSON's size
    _labelme(tmp_path / "nosize.json", "nosize.jpg", [], size=None)
    Image.new("RGB", (30, 20)).save(tmp_path / "nosize.jpg")
    gone = _labelme(tmp_path / "gone.json", "gone.jpg", [], with_image=False)
    png = io.BytesIO()
    Image.new("RGB", (40, 30), (200, 10, 60)).save(png, format="PNG")
    shapes = [_rect("cat", [[1, 2], [30, 20]])]
    inside = _labelme(
        tmp_path / "inside.json",
        "inside.png",
        shapes,
        (40, 30),
        base64.b64encode(png.getvalue()).decode(),
        with_image=False,
    )
    _labelme(
        tmp_path / "broken.json", "broken.png", shapes, (40, 30), image_data="aGVsbG8=", with_image=False
    )  # "hello"
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in LabelMeParser(tmp_path, "all").parse(["cat"], issues)}
    assert sorted(recs) == ["big", "broken", "inside", "nosize"]
    assert recs["inside"].image_path == inside and recs["inside"].boxes.tolist() == [[1, 2, 30, 20]]
    assert (recs["big"].width, recs["big"].height) == (200, 160)
    assert (recs["nosize"].width, recs["nosize"].height, len(recs["nosize"].boxes)) == (30, 20, 0)
    assert issues.files("fixed", "size read from the image header") == [str(tmp_path / "nosize.json")]
    assert issues.files("note", "negative") == [str(tmp_path / "nosize.json")]
    (missing,) = [i for i in issues.issues if i.action == "skip_image"]
    assert (missing.file, missing.reason) == (str(gone), "missing image file")

    from yolo9000.data import DetectionDataset, DetectionTransform

    ds = DetectionDataset([recs["big"]], DetectionTransform(train=False), IssueLog("skip"), default_size=64)
    assert ds[0]["gt_boxes"].tolist() == [[5, 5, 10, 10]]  # rescaled to the image's 100x80
    load = IssueLog("skip")
    ds = DetectionDataset([recs["inside"], recs["broken"]], DetectionTransform(train=False), load, default_size=32)
    pixels = ds[0]["image"].float().mean((1, 2)).tolist()  # the embedded PNG's one colour, resized
    assert pixels == pytest.approx([200, 10, 60], abs=1) and ds[1] is None
    assert [(i.file, i.action) for i in load.issues] == [(str(tmp_path / "broken.json"), "skip_image")]


def test_data_labelme_config_feeds_the_data_module(tmp_path: Path) -> None:
    """`data=labelme` composes and its DataModule reads split folders: class names from the JSONs, a training
    batch with the boxes."""
    from hydra.utils import instantiate

    for folder, n in (("train", 4), ("val", 2)):
        for k in range(n):
            shapes = [_rect("dog" if k % 2 else "cat", [[10 + k, 10], [40, 30 + k]])]
            _labelme(tmp_path / folder / f"{folder}{k}.json", f"{folder}{k}.jpg", shapes, size=(64, 48))
    cfg = compose_config(
        "train",
        "data=labelme",
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
        k = int(rec.image_id.removeprefix("train/train"))
        assert (rec.boxes.tolist(), rec.labels.tolist()) == ([[10 + k, 10, 40, 30 + k]], [k % 2])
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["images"].shape) == (2, 3, 64, 64)
    assert all(Path(p).parent == tmp_path / "train" for p in batch["image_paths"])
    assert 1 <= int(batch["target_mask"].sum()) <= 2  # one box an image (an augmentation may crop one away)


def test_bccd_written_as_labelme_reads_as_its_voc_records(tmp_path: Path) -> None:
    """Twelve BCCD images written as LabelMe files here (VOC's 1-based inclusive corners as the continuous pixels
    ``xmin - 1 .. xmax``, the corners in reverse order) read back as VOCParser reads their XML: the same boxes,
    labels and sizes (the whole test split so converted evaluates to data=bccd's metrics to the last digit)."""
    import xml.etree.ElementTree as ET

    from yolo9000.data.voc import VOCParser

    root = Path(__file__).resolve().parents[1] / "data" / "bccd"
    ids = (root / "ImageSets" / "Main" / "test.txt").read_text().split()[:12]
    for i in ids:
        xml = ET.parse(root / "Annotations" / f"{i}.xml").getroot()
        shapes = []
        for o in xml.iter("object"):
            x0, y0, x1, y1 = (float(o.find("bndbox").find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))  # type: ignore[union-attr]
            shapes.append(_rect(o.find("name").text, [[x1, y1], [x0 - 1, y0 - 1]]))  # type: ignore[union-attr]
        shutil.copy(root / "JPEGImages" / f"{i}.jpg", tmp_path / f"{i}.jpg")  # beside its JSON, as labelme keeps it
        size = xml.find("size")
        assert size is not None
        w, h = (int(size.find(k).text) for k in ("width", "height"))  # type: ignore[union-attr]
        (tmp_path / f"{i}.json").write_text(
            json.dumps(
                {
                    "shapes": shapes,
                    "imagePath": f"{i}.jpg",
                    "imageWidth": w,
                    "imageHeight": h,
                }
            )
        )
    names = ["RBC", "WBC", "Platelets"]
    ours = {r.image_id: r for r in LabelMeParser(tmp_path, split=None).parse(names, IssueLog("error"))}
    voc = {r.image_id: r for r in VOCParser(root, split="test").parse(names, IssueLog("error")) if r.image_id in ids}
    assert sorted(ours) == sorted(voc) == sorted(ids)
    for i in ids:
        a, b = ours[i], voc[i]
        assert (a.width, a.height) == (b.width, b.height) and a.labels.tolist() == b.labels.tolist()
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
