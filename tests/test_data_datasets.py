"""Parsers (VOC on the real BCCD data, COCO, YOLO txt), dataset samples and the batch dict."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import data_config
from yolo9000.data import (
    COCOParser,
    DataError,
    DetectionCollate,
    DetectionDataset,
    DetectionTransform,
    IssueLog,
    VOCParser,
    YOLOTxtParser,
)
from yolo9000.data.dataset import TensorList

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT / "data" / "bccd"
BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def _xml_objects(path: Path) -> list[tuple[str, list[int]]]:
    """Independent regex reading of a VOC XML (not the parser under test)."""
    text = path.read_text()
    out = []
    for obj in re.findall(r"<object>(.*?)</object>", text, re.S):
        name = re.search(r"<name>\s*(.*?)\s*</name>", obj).group(1)
        coords = [int(re.search(rf"<{k}>\s*(-?\d+)\s*</{k}>", obj).group(1)) for k in ("xmin", "ymin", "xmax", "ymax")]
        out.append((name, coords))
    return out


# ------------------------------------------------------------------------------------------------ BCCD
@pytest.fixture(scope="module")
def bccd_splits() -> tuple[dict[str, list], IssueLog]:
    issues = IssueLog("skip")
    splits = {s: VOCParser(BCCD, s).parse(BCCD_CLASSES, issues) for s in ("train", "val", "test")}
    return splits, issues


def test_bccd_counts(bccd_splits):
    splits, issues = bccd_splits
    assert {s: len(r) for s, r in splits.items()} == {"train": 205, "val": 87, "test": 72}
    ids = [r.image_id for recs in splits.values() for r in recs]
    assert len(set(ids)) == 364
    n_xml = sum(len(_xml_objects(p)) for p in (BCCD / "Annotations").glob("*.xml"))
    assert n_xml == 4888
    kept = sum(len(r.boxes) for recs in splits.values() for r in recs)
    assert kept == 4888 - 2
    # exactly the two known zero-area boxes were dropped and reported, nothing else
    assert issues.count("drop_box") == 2 and len(issues) == 2
    assert sorted(Path(i.file).name for i in issues.issues) == [
        "BloodImage_00338.xml",
        "BloodImage_00343.xml",
    ]
    assert "2 dropped boxes" in issues.summary() and "zero-area" in issues.summary()


def test_bccd_boxes_match_xml(bccd_splits):
    splits, _ = bccd_splits
    rec = next(r for r in splits["train"] + splits["val"] + splits["test"] if r.image_id == "BloodImage_00000")
    objs = _xml_objects(BCCD / "Annotations" / "BloodImage_00000.xml")
    expected = np.array([[x0 - 1, y0 - 1, x1, y1] for _, (x0, y0, x1, y1) in objs], np.float32)
    np.testing.assert_array_equal(rec.boxes, expected)
    assert rec.labels.tolist() == [BCCD_CLASSES.index(n) for n, _ in objs]
    assert (rec.width, rec.height) == (640, 480)
    all_boxes = np.concatenate([r.boxes for recs in splits.values() for r in recs])
    assert all_boxes[:, 2].max() == 640 and all_boxes[:, 3].max() == 480  # border-touching boxes kept
    assert (all_boxes[:, :2] >= 0).all() and (all_boxes[:, 2:] > all_boxes[:, :2]).all()
    counts = np.bincount(np.concatenate([r.labels for recs in splits.values() for r in recs]), minlength=3)
    assert counts.tolist() == [4155 - 2, 372, 361]  # SOURCE.md class counts minus the two bad RBC boxes


def test_bccd_error_policy_names_file():
    with pytest.raises(DataError, match=r"BloodImage_003(38|43)\.xml: zero-area"):
        VOCParser(BCCD, "all").parse(BCCD_CLASSES, IssueLog("error"))


def test_bccd_sample_and_gt(bccd_splits):
    splits, _ = bccd_splits
    ds = DetectionDataset(splits["val"][:3], DetectionTransform(train=False), default_size=256)
    s = ds[0]
    rec = splits["val"][0]
    assert s["image"].shape == (3, 256, 256) and s["image"].dtype == torch.uint8
    assert s["orig_size"] == (480, 640)
    np.testing.assert_array_equal(s["gt_boxes"].numpy(), rec.boxes)
    sx, sy, px, py = s["transform"].tolist()
    assert (sx, sy, px, py) == pytest.approx((256 / 640, 256 / 480, 0, 0))
    mapped = rec.boxes * np.array([sx, sy, sx, sy], np.float32) + np.array([px, py, px, py], np.float32)
    np.testing.assert_allclose(s["boxes"].numpy(), mapped, atol=1e-3)
    s2 = ds[(1, 320)]
    assert s2["image"].shape == (3, 320, 320)


def test_box_sizes():
    from yolo9000.data import DetectionRecord

    recs = [
        DetectionRecord(Path("a.jpg"), "a", 100, 50, [[0, 0, 10, 5], [10, 10, 60, 30]], [0, 1], [False, False]),
        DetectionRecord(Path("b.jpg"), "b", 200, 200, np.zeros((0, 4)), [], []),
        DetectionRecord(Path("c.jpg"), "c", 200, 100, [[0, 0, 200, 100]], [0], [True]),
    ]
    ds = DetectionDataset(recs, DetectionTransform(train=False))
    # the difficult box of c is not trained on, nor clustered (darknet's labels leave it out)
    np.testing.assert_allclose(ds.box_sizes(), [[0.1, 0.1], [0.5, 0.4]])
    ds = DetectionDataset(recs, DetectionTransform(train=False), include_difficult=True)
    np.testing.assert_allclose(ds.box_sizes(), [[0.1, 0.1], [0.5, 0.4], [1.0, 1.0]])


# --------------------------------------------------------------------------------- data module, batch
@pytest.fixture(scope="module")
def bccd_module():
    from hydra.utils import instantiate

    cfg = data_config("bccd")
    cfg.data.num_workers = 0
    cfg.data.batch_size = 4
    cfg.data.max_images = 8
    dm = instantiate(cfg.data)
    dm.setup("fit")
    return dm


def test_datamodule_batch_contract(bccd_module):
    dm = bccd_module
    assert dm.class_names == BCCD_CLASSES and dm.num_classes == 3
    assert len(dm.datasets["train"]) == 8 and len(dm.datasets["val"]) == 8
    batch = next(iter(dm.train_dataloader()))
    b, _, s, s2 = batch["images"].shape
    assert b == 4 and s == s2 and s in range(192, 321, 32)
    assert batch["images"].dtype == torch.uint8  # the LightningModule scales to [0, 1] on the device
    t, m = batch["targets"], batch["target_mask"]
    assert t.shape[:2] == m.shape and t.shape[2] == 5 and m.dtype == torch.bool and m.any()
    assert (t[~m] == 0).all()
    real = t[m]
    assert (real[:, :4] >= 0).all() and (real[:, :4] <= 1).all() and (real[:, 2:4] > 0).all()
    assert set(real[:, 4].tolist()) <= {0.0, 1.0, 2.0}
    assert batch["orig_sizes"].dtype == torch.long and batch["orig_sizes"].tolist()[0] == [480, 640]
    assert batch["transforms"].shape == (4, 4)
    assert all(isinstance(i, str) for i in batch["image_ids"]) and all(Path(p).is_file() for p in batch["image_paths"])
    val = next(iter(dm.val_dataloader()))  # the per-image ground truth the evaluation reads (not in training batches)
    assert len(val["gt_boxes"]) == len(val["gt_labels"]) == len(val["gt_difficult"]) == 4


def test_datamodule_eval_batch_maps_back(bccd_module):
    batch = next(iter(bccd_module.val_dataloader()))
    s = batch["images"].shape[-1]
    assert s == 256
    for i in range(len(batch["image_ids"])):
        m = batch["target_mask"][i]
        cxcywh = batch["targets"][i, m, :4] * s
        xyxy = torch.cat([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], 1)
        sx, sy, px, py = batch["transforms"][i]
        back = (xyxy - torch.stack([px, py, px, py])) / torch.stack([sx, sy, sx, sy])
        torch.testing.assert_close(back, batch["gt_boxes"][i], atol=1e-3, rtol=0)


def test_datamodule_state_and_summary(bccd_module):
    dm = bccd_module
    dm.train_dataloader()
    dm.load_state_dict({"epoch": 3})
    assert dm.state_dict()["epoch"] == 3
    assert dm._train_batch_sampler.epoch == 3
    assert "problems" in dm.issue_summary()


def test_voc_config_train_is_a_list_of_roots(tmp_path):
    from hydra.utils import instantiate

    from yolo9000.multirun import register_resolvers

    register_resolvers()  # ${cpus:8} (num_workers)
    cfg = data_config("voc", ".")
    cfg.data.root = str(tmp_path)
    dm = instantiate(cfg.data)
    ps = dm.parsers("train")
    assert [(p.root, p.split) for p in ps] == [
        (tmp_path / "VOC2007", "trainval"),
        (tmp_path / "VOC2012", "trainval"),
    ]
    assert dm.num_classes == 20 and dm.class_names[0] == "aeroplane" and dm.class_names[-1] == "tvmonitor"
    assert dm.sizes == list(range(320, 609, 32)) and dm.img_size == 416
    # every parser reads the data-level layout keys
    assert {
        (p.image_dir_name, p.ann_dir_name, p.split_files) for s in ("train", "val", "test") for p in dm.parsers(s)
    } == {("JPEGImages", "Annotations", "ImageSets/Main")}


# ------------------------------------------------------------------------- deterministic split (VOC)
def _write_voc(root: Path, n: int) -> None:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for k in range(n):
        Image.new("RGB", (32, 24), (k, k, k)).save(root / "JPEGImages" / f"img{k:03d}.jpg")
        (root / "Annotations" / f"img{k:03d}.xml").write_text(
            "<annotation><size><width>32</width><height>24</height></size>"
            "<object><name>a</name><difficult>0</difficult>"
            "<bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object></annotation>"
        )


def test_split_without_imagesets_is_deterministic(tmp_path):
    _write_voc(tmp_path, 60)
    splits = {s: [r.image_id for r in VOCParser(tmp_path, s).parse(["a"])] for s in ("train", "val", "test")}
    again = {s: [r.image_id for r in VOCParser(tmp_path, s).parse(["a"])] for s in ("train", "val", "test")}
    assert splits == again
    allids = sorted(i for v in splits.values() for i in v)
    assert allids == [f"img{k:03d}" for k in range(60)]  # disjoint and complete
    assert 30 <= len(splits["train"]) <= 54 and splits["val"] and splits["test"]
    trainval = [r.image_id for r in VOCParser(tmp_path, "trainval").parse(["a"])]
    assert sorted(trainval) == sorted(splits["train"] + splits["val"])
    # removing images does not move the others; another seed gives another split
    for k in range(0, 60, 3):
        (tmp_path / "Annotations" / f"img{k:03d}.xml").unlink()
    fewer = [r.image_id for r in VOCParser(tmp_path, "train").parse(["a"])]
    assert fewer == [i for i in splits["train"] if int(i[3:]) % 3]
    other = [r.image_id for r in VOCParser(tmp_path, "train", split_seed=1).parse(["a"])]
    assert other != fewer
    rec = VOCParser(tmp_path, "all").parse(["a"])[0]
    np.testing.assert_array_equal(rec.boxes, [[1, 2, 20, 15]])


# ---------------------------------------------------------------------------------------------- COCO
def test_coco_parser(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (100, 80)).save(tmp_path / "imgs" / "000001.jpg")
    Image.new("RGB", (60, 40)).save(tmp_path / "imgs" / "000002.png")
    Image.new("RGB", (50, 50)).save(tmp_path / "imgs" / "000003.jpg")
    data = {
        "images": [
            {"id": 1, "file_name": "000001.jpg", "width": 100, "height": 80},
            {"id": 2, "file_name": "000002.png", "width": 60, "height": 40},
            {"id": 3, "file_name": "000003.jpg"},  # no size: read from the header
        ],
        "categories": [{"id": 18, "name": "dog"}, {"id": 3, "name": "car"}, {"id": 1, "name": "person"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 18,
                "bbox": [10.5, 20, 30, 40],
                "iscrowd": 0,
                "segmentation": [[10.5, 20, 40.5, 20, 40.5, 60]],
                "area": 600.0,
            },  # a polygon, as COCO's
            {
                "id": 11,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 100, 80],
                "iscrowd": 1,
                "segmentation": {"counts": [0, 8000], "size": [80, 100]},
            },  # a crowd's RLE
            {"id": 12, "image_id": 2, "category_id": 3, "bbox": [50, 30, 20, 20], "iscrowd": 0},  # sticks out
        ],
    }
    (tmp_path / "ann.json").write_text(json.dumps(data))
    parser = COCOParser("ann.json", "imgs", root=tmp_path)
    assert parser.discover_class_names() == ["person", "car", "dog"]  # category-id order
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in parser.parse(None, issues)}
    assert set(recs) == {"000001", "000002", "000003"}
    r1 = recs["000001"]
    np.testing.assert_allclose(r1.boxes, [[10.5, 20, 40.5, 60], [0, 0, 100, 80]])
    assert r1.labels.tolist() == [2, 0] and r1.difficult.tolist() == [False, True]
    np.testing.assert_allclose(recs["000002"].boxes, [[50, 30, 60, 40]])  # clipped to 60x40
    assert (recs["000003"].width, recs["000003"].height) == (50, 50) and len(recs["000003"].boxes) == 0
    assert issues.count("fixed", "clipped") == 1 and issues.count("fixed", "size") == 1
    from yolo9000.data import coco as coco_module  # the masks are dropped as the file is read (most of COCO's JSON)

    held = coco_module._read_json(tmp_path / "ann.json")
    assert all("segmentation" not in a for a in held["annotations"]) and held["annotations"][0]["area"] == 600.0
    # cross-check with pycocotools' own reading of the file
    pycoco = pytest.importorskip("pycocotools.coco")
    coco = pycoco.COCO(str(tmp_path / "ann.json"))
    for img_id, stem in [(1, "000001"), (2, "000002")]:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        xyxy = np.array(
            [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]] for a in anns]
        )
        info = coco.loadImgs([img_id])[0]
        xyxy = xyxy.clip(0, [info["width"], info["height"]] * 2)
        np.testing.assert_allclose(recs[stem].boxes, xyxy)
    # given class names: categories outside the list are unknown classes
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in parser.parse(["dog", "person"], issues)}
    assert recs["000001"].labels.tolist() == [0, 1] and len(recs["000002"].boxes) == 0
    assert issues.count("drop_box", "unknown class 'car'") == 1
    with pytest.raises(DataError, match=r"ann\.json\[000002\.png\]: unknown class 'car'"):
        parser.parse(["dog", "person"], IssueLog("error"))


# ------------------------------------------------------------------------------------------ YOLO txt
def test_yolo_txt_parser_split_dirs(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
    (tmp_path / "classes.names").write_text("cat\ndog\n")
    Image.new("RGB", (100, 50)).save(tmp_path / "images" / "train" / "a.jpg")
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.2 0.1 0.2\n\n")
    Image.new("RGB", (40, 40)).save(tmp_path / "images" / "train" / "b.png")  # no label file: negative
    Image.new("RGB", (64, 32)).save(tmp_path / "images" / "val" / "c.jpg")
    (tmp_path / "labels" / "val" / "c.txt").write_text("0 0.95 0.5 0.2 0.5\n")  # sticks out by 3.2 px
    parser = YOLOTxtParser(tmp_path, "train", names_file="classes.names")
    assert parser.discover_class_names() == ["cat", "dog"]
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in parser.parse(None, issues)}
    # cx=50, cy=25, w=20, h=20 -> (40, 15, 60, 35); cx=10, cy=10, w=10, h=10 -> (5, 5, 15, 15)
    np.testing.assert_allclose(recs["a"].boxes, [[40, 15, 60, 35], [5, 5, 15, 15]], atol=1e-4)
    assert recs["a"].labels.tolist() == [1, 0] and (recs["a"].width, recs["a"].height) == (100, 50)
    assert len(recs["b"].boxes) == 0 and issues.files("note", "no label file, kept as a negative") == [
        str(tmp_path / "images" / "train" / "b.png")
    ]
    val = YOLOTxtParser(tmp_path, "val", names_file="classes.names").parse(None, issues)
    np.testing.assert_allclose(val[0].boxes, [[54.4, 8, 64, 24]], atol=1e-4)  # 67.2 clipped to 64
    # a blank line inside the names file is a class (darknet's get_labels): "dog" stays class 2 of label files
    (tmp_path / "gap.names").write_text("cat\n\ndog\n\n")
    assert YOLOTxtParser(tmp_path, "train", names_file="gap.names").discover_class_names() == ["cat", "", "dog"]


def test_yolo_class_names_take_the_datasets_classes_by_name(tmp_path):
    """data.class_names listing the dataset's own names in another order takes each box's class by name, as COCO's
    categories (it renamed every box: Platelets boxes became RBC, mAP 0.0006 with no warning); a class left out
    drops its boxes, reported; a list with no name in common renames the ids (numbers-only names)."""
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    (tmp_path / "data.yaml").write_text("names: [Platelets, RBC, WBC]\ntrain: images\n")
    Image.new("RGB", (100, 100)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n1 0.3 0.3 0.2 0.2\n2 0.7 0.7 0.2 0.2\n")

    def labels(names, issues=None):
        (rec,) = YOLOTxtParser(tmp_path, "train").parse(names, IssueLog("skip") if issues is None else issues)
        return rec.labels.tolist()

    assert labels(None) == [0, 1, 2]  # the dataset's own names
    assert labels(["RBC", "WBC", "Platelets"]) == [2, 0, 1]  # Platelets, RBC, WBC by name
    issues = IssueLog("skip")
    assert labels(["RBC", "WBC"], issues) == [0, 1]
    assert issues.count("drop_box", "unknown class 'Platelets'") == 1
    assert labels(["a", "b", "c"]) == [0, 1, 2]  # no name in common: the ids, renamed


def test_yolo_txt_parser_list_file_and_errors(tmp_path):
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "labels").mkdir(parents=True)
    for name in ("x", "y"):
        Image.new("RGB", (200, 100)).save(tmp_path / "data" / "images" / f"{name}.jpg")
    (tmp_path / "data" / "labels" / "x.txt").write_text("0 0.5 0.5 0.5 0.5\n7 0.5 0.5 0.1 0.1\nfoo bar\n")
    (tmp_path / "data" / "labels" / "y.txt").write_text("1 0.25 0.5 0.5 1.0\n")
    (tmp_path / "train.txt").write_text("data/images/x.jpg\ndata/images/y.jpg\ndata/images/missing.jpg\n")
    parser = YOLOTxtParser(tmp_path, list_file="train.txt")
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in parser.parse(["a", "b"], issues)}
    assert set(recs) == {"x", "y"}
    np.testing.assert_allclose(recs["x"].boxes, [[50, 25, 150, 75]])
    np.testing.assert_allclose(recs["y"].boxes, [[0, 0, 100, 100]])
    assert issues.count("drop_box", "unknown class '7'") == 1
    assert issues.count("drop_box", "malformed label line") == 1
    assert issues.count("skip_image", "missing image file") == 1
    with pytest.raises(DataError, match=r"x\.txt: unknown class '7'"):
        parser.parse(["a", "b"], IssueLog("error"))


def test_collate_drops_none_and_pads():
    def sample(n: int, size: int = 64) -> dict:
        boxes = torch.tensor([[0.0, 0, 32, 16]] * n)
        return {
            "image": torch.full((3, size, size), 255, dtype=torch.uint8),
            "boxes": boxes,
            "labels": torch.arange(n),
            "difficult": torch.zeros(n, dtype=torch.bool),
            "image_id": f"i{n}",
            "path": f"i{n}.jpg",
            "orig_size": (10, 20),
            "transform": torch.tensor([1.0, 2, 3, 4]),
            "gt_boxes": boxes,
            "gt_labels": torch.arange(n),
            "gt_difficult": torch.zeros(n, dtype=torch.bool),
        }

    batch = DetectionCollate()([sample(2), None, sample(0)])
    assert batch["images"].shape == (2, 3, 64, 64) and batch["images"].max() == 255
    assert batch["targets"].shape == (2, 2, 5) and batch["target_mask"].tolist() == [
        [True, True],
        [False, False],
    ]
    torch.testing.assert_close(batch["targets"][0, 1], torch.tensor([0.25, 0.125, 0.5, 0.25, 1.0]))
    assert batch["image_ids"] == ["i2", "i0"] and batch["orig_sizes"].tolist() == [[10, 20], [10, 20]]
    assert DetectionCollate(max_boxes=5)([sample(0)])["targets"].shape == (1, 5, 5)
    assert DetectionCollate()([sample(0)])["targets"].shape == (1, 1, 5)
    # each image's truths in its own rows, in order; max_boxes truncates
    other = sample(3)
    other["boxes"] = torch.tensor([[0.0, 0, 16, 16], [16, 16, 48, 32], [0, 32, 64, 64]])
    other["labels"] = torch.tensor([2, 0, 1])
    batch = DetectionCollate()([sample(1), other])
    want = torch.tensor([[0.125, 0.125, 0.25, 0.25, 2], [0.5, 0.375, 0.5, 0.25, 0], [0.5, 0.75, 1.0, 0.5, 1]])
    torch.testing.assert_close(batch["targets"][1], want)
    assert batch["target_mask"].tolist() == [[True, False, False], [True, True, True]]
    torch.testing.assert_close(batch["targets"][0, 0], torch.tensor([0.25, 0.125, 0.5, 0.25, 0.0]))
    cut = DetectionCollate(max_boxes=2)([other, sample(1)])
    torch.testing.assert_close(cut["targets"][0], want[:2])
    assert cut["target_mask"].tolist() == [[True, True], [True, False]]


def test_voc_class_names_discovered_when_not_given(tmp_path):
    from yolo9000.data.voc import VOCParser

    ann = tmp_path / "Annotations"
    ann.mkdir()
    for i, names in enumerate([["zebra", "cat"], ["cat", "ant"]]):
        objs = "".join(f"<object><name>{n}</name></object>" for n in names)
        (ann / f"{i}.xml").write_text(f"<annotation>{objs}</annotation>")
    (ann / "broken.xml").write_text("<annotation><object>")
    assert VOCParser(tmp_path).discover_class_names() == ["ant", "cat", "zebra"]
    assert VOCParser(tmp_path, class_names=["cat"]).discover_class_names() == ["cat"]


# --------------------------------------------------------------------------------- truth order and cap (darknet)
def _many_boxes_dataset(tmp_path: Path, shuffle: bool, max_boxes: int | None, train: bool = True):
    """One 100x100 image with 40 boxes of distinct sizes and classes 0..39 (annotation order = class order)."""
    from yolo9000.data import DetectionRecord

    p = tmp_path / "many.png"
    Image.new("RGB", (100, 100), (90, 90, 90)).save(p)
    boxes = [[k % 10 * 10, k // 10 * 10, k % 10 * 10 + 8, k // 10 * 10 + 5 + k % 4] for k in range(40)]
    rec = DetectionRecord(p, "many", 100, 100, boxes, list(range(40)), [False] * 40)
    aug = {"jitter": 0.0, "flip": 0.0, "hue": 0.0, "saturation": 1.0, "exposure": 1.0}
    tf = DetectionTransform(train=train, augment=aug)
    return DetectionDataset([rec], tf, default_size=64, max_boxes=max_boxes, shuffle_boxes=shuffle)


def test_training_boxes_shuffled_per_load_and_capped_as_darknet(tmp_path):
    ds = _many_boxes_dataset(tmp_path, shuffle=True, max_boxes=30)
    a, b, a2 = ds[(0, 64, 1)]["labels"], ds[(0, 64, 2)]["labels"], ds[(0, 64, 1)]["labels"]
    assert len(a) == len(b) == 30  # darknet keeps at most 30 of an image's boxes
    assert a.tolist() == a2.tolist()  # the order is a function of the sample's seed
    assert a.tolist() != b.tolist()  # and changes between loads
    assert set(a.tolist()) != set(range(30))  # the cap keeps a random 30, not the first 30 of the annotation
    assert ds.stats()["truncated_boxes"] == 30  # 10 dropped on each of the 3 loads
    # a box keeps its own label through the shuffle: its height encodes its index (5 + k % 4 pixels at 100 px)
    s = ds[(0, 64, 3)]
    h = (s["boxes"][:, 3] - s["boxes"][:, 1]) * 100 / 64
    np.testing.assert_allclose(h.numpy(), (5 + s["labels"] % 4).numpy(), atol=0.05)


def test_counters_of_a_pickled_dataset_reach_its_stats(tmp_path):
    """The load counters are written through a NumPy view made at the first count; a pickled copy (a spawned loader
    worker's) counts into its own shared tensor, which its stats() read, not into a stale private array."""
    import pickle

    ds = _many_boxes_dataset(tmp_path, shuffle=True, max_boxes=30)
    ds[(0, 64, 1)]
    copy = pickle.loads(pickle.dumps(ds))
    copy[(0, 64, 2)]
    assert copy.stats()["loaded"] == 2 and copy.stats()["truncated_boxes"] == 20
    assert ds.stats()["loaded"] == 1


def test_annotation_order_kept_without_shuffle_and_in_eval(tmp_path):
    plain = _many_boxes_dataset(tmp_path, shuffle=False, max_boxes=30)
    assert plain[(0, 64, 1)]["labels"].tolist() == list(range(30))
    ev = _many_boxes_dataset(tmp_path, shuffle=True, max_boxes=None, train=False)
    assert ev[0]["labels"].tolist() == list(range(40))


def test_worker_batches_equal_main_process_batches_nhwc_and_packed_lists(bccd_module):
    """A batch made in a loader worker crosses to the main process unchanged: the same pixels (uint8, NHWC memory,
    as the collate stacks them), targets and per-image ground truth (each list sent as one tensor)."""
    from torch.utils.data import DataLoader

    ds, collate = bccd_module.datasets["val"], bccd_module.collate_fn()
    main = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate)))
    worker = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate, num_workers=1)))
    assert main["images"].stride() == worker["images"].stride() == (256 * 256 * 3, 1, 256 * 3, 3)  # NHWC
    assert main["images"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(main["images"], worker["images"]) and torch.equal(main["targets"], worker["targets"])
    for key in ("gt_boxes", "gt_labels", "gt_difficult"):
        assert isinstance(worker[key], TensorList) and len(worker[key]) == 4
        for a, b in zip(main[key], worker[key], strict=True):
            assert a.dtype == b.dtype and torch.equal(a, b)
    assert len({t.untyped_storage().data_ptr() for t in worker["gt_boxes"]}) == 1  # views of one transfer


def test_training_batches_carry_no_evaluation_lists(bccd_module):
    """The training loader's batches leave out gt_boxes / gt_labels / gt_difficult (no step reads them; on a GPU
    each was a pin and a copy per image); evaluation batches keep them, with the same targets."""
    train = next(iter(bccd_module.train_dataloader()))
    val = next(iter(bccd_module.val_dataloader()))
    gt = {"gt_boxes", "gt_labels", "gt_difficult"}
    assert not gt & set(train) and gt <= set(val)
    assert {"images", "targets", "target_mask", "transforms", "orig_sizes"} <= set(train)
    assert train["targets"].shape[0] == 4 and train["target_mask"].any()


def test_tensor_list_pickles_as_one_tensor_and_falls_back():
    import pickle

    items = [torch.arange(8.0).view(2, 4), torch.zeros(0, 4), torch.ones(3, 4)]
    fn, (flat, lengths) = TensorList(items).__reduce__()
    assert flat.shape == (5, 4) and lengths == [2, 0, 3]
    back = pickle.loads(pickle.dumps(TensorList(items)))
    assert isinstance(back, TensorList) and [t.shape for t in back] == [(2, 4), (0, 4), (3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(items, back, strict=True))
    mixed = [torch.zeros(2, 4), torch.zeros(2, 5)]  # not concatenable: pickled item by item
    again = pickle.loads(pickle.dumps(TensorList(mixed)))
    assert isinstance(again, TensorList) and [t.shape for t in again] == [(2, 4), (2, 5)]
    assert pickle.loads(pickle.dumps(TensorList())) == []


def test_packed_records_give_back_every_record_exactly_with_no_object_per_image(tmp_path: Path) -> None:
    """A dataset's records live in a few flat arrays (forked loader workers then share them: a Python list of
    records, ~1 KB of objects an image, was copied into every worker as it read them): every record comes back
    as given (non-UTF-8 and non-ASCII file names, unknown sizes, images without boxes), as a copy, and holding
    10,000 records adds a handful of Python objects, not ~10 an image."""
    import gc
    import os

    from yolo9000.data.records import DetectionRecord, PackedRecords

    odd = Path(os.fsdecode(b"caf\xe9 \xff.jpg"))  # a Latin-1 name on a UTF-8 system: surrogate-escaped
    given = [
        DetectionRecord(tmp_path / "é" / "a.jpg", "a", 640, 480, [[1, 2, 30.5, 40]], [2], [True]),
        DetectionRecord(tmp_path / odd, "café", None, None),
        DetectionRecord("rel/b.png", "b", 7, 9, [[0, 0, 1, 1], [2, 2, 3, 3]], [0, 1], [False, False]),
    ]
    packed = PackedRecords(given)
    assert len(packed) == 3
    for a, b in zip(packed, given, strict=True):
        assert (a.image_path, a.image_id, a.width, a.height) == (b.image_path, b.image_id, b.width, b.height)
        assert np.array_equal(a.boxes, b.boxes) and a.boxes.dtype == np.float32
        assert np.array_equal(a.labels, b.labels) and np.array_equal(a.difficult, b.difficult)
    assert packed[-1].image_id == "b" and [r.image_id for r in packed[1:]] == ["café", "b"]
    with pytest.raises(IndexError):
        packed[3]
    packed[0].boxes[:] = 0  # a copy: the store is unchanged
    assert packed[0].boxes[0, 2] == 30.5
    assert np.array_equal(packed.labels, [2, 0, 1]) and packed.box_offsets.tolist() == [0, 1, 1, 3]
    # a joint dataset's two packed parts read as one, nothing copied (its records view built every record before)
    from yolo9000.data.records import ChainedRecords, box_labels, image_paths

    more = PackedRecords([DetectionRecord("x/c.jpg", "c", 5, 5, [[0, 0, 2, 2]], [1], [False])])
    chained = ChainedRecords([packed, more])
    assert len(chained) == 4 and chained[2].image_id == "b" and chained[3].image_id == "c" and chained[-4].width == 640
    assert box_labels(chained).tolist() == [2, 0, 1, 1] and image_paths(chained)[3] == Path("x/c.jpg")
    assert [r.image_id for r in chained[1:]] == ["café", "b", "c"]

    many = [DetectionRecord(f"img/{i}.jpg", str(i), 64, 48, [[1, 1, 5, 5]], [i % 3], [False]) for i in range(10000)]
    gc.collect()
    before = len(gc.get_objects())
    store = PackedRecords(many)
    del many
    gc.collect()
    assert len(gc.get_objects()) - before < 50 - 10000 * 3  # the list's records (and their paths) are gone
    assert store[9999].image_path == Path("img/9999.jpg") and store[9999].labels.tolist() == [0]
