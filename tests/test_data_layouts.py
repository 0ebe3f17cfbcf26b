"""A researcher's own data: VOC with other folder names and split lists, the ultralytics YOLO layout, COCO with only
a training JSON, every conversion named in the data summary, data problems apart from augmentation statistics,
and ``num_workers`` from the CPUs available."""

from __future__ import annotations

import csv
import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from hydra.utils import instantiate
from omegaconf import OmegaConf
from PIL import Image

from conftest import compose_config, data_config
from yolo9000.data import COCOParser, IssueLog, VOCParser, YOLOTxtParser
from yolo9000.multirun import register_resolvers

ROOT = Path(__file__).resolve().parents[1]


def _datamodule(name: str, root: Path, **overrides):  # noqa: ANN202
    """conf/data/<name>.yaml instantiated on ``root`` (num_workers 0 unless overridden)."""
    register_resolvers()
    cfg = data_config(name)
    cfg.data.root = str(root)
    cfg.data.num_workers = 0
    for key, value in overrides.items():
        OmegaConf.update(cfg, f"data.{key}", value, force_add=True)
    return instantiate(cfg.data)


def _jpg(path: Path, size: tuple[int, int] = (32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


def _xml(path: Path, names: list[str], size: tuple[int, int] = (32, 24)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(
        f"<object><name>{n}</name><bndbox><xmin>2</xmin><ymin>3</ymin><xmax>20</xmax><ymax>15</ymax></bndbox></object>"
        for n in names
    )
    path.write_text(f"<annotation><size><width>{size[0]}</width><height>{size[1]}</height></size>{objs}</annotation>")


def _voc_lowercase(root: Path, n: int = 12) -> list[str]:
    """``annotations/`` + ``images/`` (not VOC's folder names), no ImageSets."""
    ids = [f"img{k:02d}" for k in range(n)]
    for k, i in enumerate(ids):
        _jpg(root / "images" / f"{i}.jpg")
        _xml(root / "annotations" / f"{i}.xml", ["wbc" if k % 2 else "rbc"])
    return ids


def _ids(dm, split: str) -> list[str]:  # noqa: ANN001
    return [r.image_id for r in dm.datasets[split].records]


# --------------------------------------------------------------------------------------------------- VOC
def test_voc_lowercase_folders_found_and_logged(tmp_path, caplog):
    ids = _voc_lowercase(tmp_path)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("bccd", tmp_path, class_names=None)
        dm.setup()
    assert dm.class_names == ["rbc", "wbc"]
    splits = {s: _ids(dm, s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == ids  # disjoint and complete (hash split, no ImageSets)
    text = caplog.text
    assert f"using {tmp_path / 'annotations'}" in text and f"using {tmp_path / 'images'}" in text
    assert "data.image_dir" in text and "split 'train'" in text and "hash split" in text


def test_voc_images_without_annotation_file_are_named_once(tmp_path, caplog):
    """Splits made of the XML files (no ImageSets): images that no XML describes (not labelled yet) are not used,
    and one warning says how many and which."""
    ids = _voc_lowercase(tmp_path, n=6)
    for name in ("unlabelled1.jpg", "unlabelled2.png"):
        _jpg(tmp_path / "images" / name)
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        dm = _datamodule("bccd", tmp_path, class_names=None)
        dm.setup()
    assert sorted(set(sum((_ids(dm, s) for s in ("train", "val", "test")), []))) == ids
    warned = [r.getMessage() for r in caplog.records if "no annotation file" in r.getMessage()]
    assert warned == [
        f"{tmp_path / 'images'}: 2 of its 8 images have no annotation file in {tmp_path / 'annotations'} and are "
        "not used (unlabelled1.jpg, unlabelled2.png)"
    ]


def test_hash_split_without_test_share_tests_on_val(tmp_path):
    ids = _voc_lowercase(tmp_path)
    dm = _datamodule("bccd", tmp_path, class_names=None, split_fractions={"train": 0.7, "val": 0.3, "test": 0})
    dm.setup()
    assert _ids(dm, "test") == _ids(dm, "val") and sorted(_ids(dm, "train") + _ids(dm, "val")) == ids
    coco = tmp_path / "coco"
    files = _coco_train_only(coco, "images")
    fr = {"train": 0.7, "val": 0.3, "test": 0}
    got = {
        s: [
            r.image_id
            for r in COCOParser(
                root=coco, split=s, ann_files={"train": "annotations/instances_train2017.json"}, split_fractions=fr
            ).parse()
        ]
        for s in ("train", "val", "test")
    }
    assert got["test"] == got["val"] and sorted(got["train"] + got["val"]) == files


def test_voc_folder_keys_and_errors_name_the_folder(tmp_path):
    _voc_lowercase(tmp_path)
    (tmp_path / "images").rename(tmp_path / "pics")
    (tmp_path / "annotations").rename(tmp_path / "xml_files")
    # the default names and their fallbacks are missing: the error names every folder looked for and the key
    with pytest.raises(FileNotFoundError) as e:
        _datamodule("bccd", tmp_path, class_names=None).class_names  # noqa: B018
    msg = str(e.value)
    assert str(tmp_path / "Annotations") in msg and str(tmp_path / "annotations") in msg and "data.ann_dir" in msg
    # an explicit folder that does not exist is named as such
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path / 'imgs'}.*data\.image_dir"):
        _datamodule("bccd", tmp_path, class_names=None, ann_dir="xml_files", image_dir="imgs").setup("fit")
    dm = _datamodule("bccd", tmp_path, class_names=None, ann_dir="xml_files", image_dir="pics")
    dm.setup("fit")
    assert all(r.image_path.parent == tmp_path / "pics" for r in dm.datasets["train"].records)


def test_voc_split_files_txt_forms_and_test_falls_back_to_val(tmp_path, caplog):
    ids = _voc_lowercase(tmp_path)
    (tmp_path / "splits").mkdir()
    # one entry a line: an id, a file name with extension, a path relative to the root, an absolute path
    (tmp_path / "splits" / "train.txt").write_text(
        f"img00\nimg01.jpg\nimages/img02.jpg\n{tmp_path / 'images' / 'img03.jpg'}\n# a comment\n\nimg04\n"
    )
    (tmp_path / "splits" / "valid.txt").write_text("img05.jpg\nimg06\n")  # valid = val
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        dm = _datamodule("bccd", tmp_path, class_names=None, split_files="splits")
        dm.setup()
    assert _ids(dm, "train") == ids[:5] and _ids(dm, "val") == ["img05", "img06"]
    assert _ids(dm, "test") == ["img05", "img06"] and "test split uses the val list" in caplog.text
    assert len(dm.issues) == 0
    # a mapping of lists; a split missing from a folder of lists is an error naming the file
    dm = _datamodule(
        "bccd", tmp_path, class_names=None, split_files={"train": "splits/valid.txt", "val": "splits/train.txt"}
    )
    dm.setup("fit")
    assert _ids(dm, "train") == ["img05", "img06"] and _ids(dm, "val") == ids[:5]
    (tmp_path / "splits" / "valid.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"splits/val\.txt.*data\.split_files"):
        _datamodule("bccd", tmp_path, class_names=None, split_files="splits").setup("validate")


def test_voc_trainval_list_alone_is_split_into_train_and_val(tmp_path, caplog):
    """ImageSets/Main with trainval.txt only (no train / val lists): train and val are disjoint hash shares of it
    that cover it (logged), test = val; ids outside the list are never used."""
    ids = _voc_lowercase(tmp_path, n=20)
    (tmp_path / "ImageSets" / "Main").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("".join(f"{i}\n" for i in ids[:16]))
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        dm = _datamodule("bccd", tmp_path, class_names=None)
        dm.setup()
    train, val = _ids(dm, "train"), _ids(dm, "val")
    assert sorted(train + val) == ids[:16] and train and val and not set(train) & set(val)
    assert _ids(dm, "test") == val
    assert "the train hash share of" in caplog.text and "trainval.txt (no train / val lists" in caplog.text


def test_unknown_class_boxes_are_counted_per_box_not_per_file(tmp_path):
    """Three boxes of a class outside the list in one XML (and two in one COCO image) are 3 (2) dropped boxes, not
    one per file (identical issues are recorded once: each box is told apart by its place in the file)."""
    _jpg(tmp_path / "JPEGImages" / "a.jpg")
    _xml(tmp_path / "Annotations" / "a.xml", ["zebra", "cat", "zebra", "zebra"])
    issues = IssueLog("skip")
    (rec,) = VOCParser(tmp_path, None, class_names=["cat"]).parse(issues=issues)
    assert rec.labels.tolist() == [0] and issues.count("drop_box", "unknown class 'zebra'") == 3
    assert "unknown class 'zebra' [dropped boxes]: 3" in issues.summary()
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    _coco_split(tmp_path, "train", "coco_images", cats, n=1)  # one image, one box of class a
    ann = tmp_path / "annotations" / "instances_train.json"
    data = json.loads(ann.read_text())
    data["annotations"] += [{**data["annotations"][0], "id": k, "category_id": 2} for k in (7, 8)]
    ann.write_text(json.dumps(data))
    issues = IssueLog("skip")
    COCOParser(ann, image_dir=tmp_path / "coco_images", class_names=["a"]).parse(issues=issues)
    assert issues.count("drop_box", "unknown class 'b'") == 2


def test_voc_roboflow_split_folders_with_images_beside_the_xml(tmp_path, caplog):
    """Roboflow's Pascal VOC export: train/, valid/, test/, each with its images beside their XML files; every
    split is its folder (no hash split of one folder, no folder left out); without test/, test = valid."""
    want = {"train": ["t0", "t1", "t2"], "valid": ["v0", "v1"], "test": ["x0"]}
    for folder, stems in want.items():
        for n in stems:
            _jpg(tmp_path / folder / f"{n}.jpg")
            _xml(tmp_path / folder / f"{n}.xml", ["rbc", "wbc"])
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("bccd", tmp_path, class_names=None)
        dm.setup()
    got = {s: [r.image_path.relative_to(tmp_path).as_posix() for r in dm.datasets[s].records] for s in dm.datasets}
    assert got == {
        "train": [f"train/{n}.jpg" for n in want["train"]],
        "val": ["valid/v0.jpg", "valid/v1.jpg"],
        "test": ["test/x0.jpg"],
    }
    assert dm.class_names == ["rbc", "wbc"] and "Roboflow's Pascal VOC export" in caplog.text
    assert dm.datasets["train"].records[0].labels.tolist() == [0, 1]
    for n in want["test"]:
        (tmp_path / "test" / f"{n}.xml").unlink()
        (tmp_path / "test" / f"{n}.jpg").unlink()
    (tmp_path / "test").rmdir()
    dm = _datamodule("bccd", tmp_path, class_names=None)
    dm.setup()
    assert _ids(dm, "test") == _ids(dm, "val") == ["valid/v0", "valid/v1"]


def test_voc_split_folders_without_a_valid_folder_never_train_on_val(tmp_path):
    """Roboflow's VOC export with train/ and test/ only: val is a hash share of train/ and train the rest of it
    (disjoint, together every image of train/); test stays its folder; split=all reads every image once."""
    stems = {"train": [f"t{k}" for k in range(12)], "test": ["x0", "x1"]}
    for folder, names in stems.items():
        for n in names:
            _jpg(tmp_path / folder / f"{n}.jpg")
            _xml(tmp_path / folder / f"{n}.xml", ["rbc"])
    parse = {s: [r.image_id for r in VOCParser(tmp_path, s).parse(["rbc"], IssueLog("skip"))] for s in
             ("train", "val", "test", "all")}  # fmt: skip
    assert parse["train"] and parse["val"] and not set(parse["train"]) & set(parse["val"])
    assert sorted(parse["train"] + parse["val"]) == sorted(f"train/{n}" for n in stems["train"])
    assert parse["test"] == ["test/x0", "test/x1"]
    assert sorted(parse["all"]) == sorted(f"{f}/{n}" for f, names in stems.items() for n in names)


def test_voc_cvat_list_names_default_list_and_capitals(tmp_path, caplog):
    """CVAT's Pascal VOC export: a task without subsets writes ImageSets/Main/default.txt (train and val are hash
    shares of it, test = val); subsets write Train.txt, Validation.txt, Test.txt (found whatever the case)."""
    ids = _voc_lowercase(tmp_path, n=12)
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (main / "default.txt").write_text("".join(f"{i}\n" for i in ids))
    (main / "rbc_default.txt").write_text("".join(f"{i} 1\n" for i in ids))  # CVAT's per-label lists: not splits
    (tmp_path / "labelmap.txt").write_text(
        "# label:color_rgb:parts:actions\nbackground:0,0,0::\nwbc:1,2,3::\nrbc:4,5,6::\n"
    )
    dm = _datamodule("bccd", tmp_path, class_names=None)
    dm.setup()
    train, val = _ids(dm, "train"), _ids(dm, "val")
    assert sorted(train + val) == ids and train and val and _ids(dm, "test") == val
    assert dm.class_names == ["wbc", "rbc"]  # labelmap.txt's order, its unused background left out (sorted: rbc, wbc)
    (main / "default.txt").unlink()
    for name, part in (("Train.txt", ids[:6]), ("Validation.txt", ids[6:9]), ("Test.txt", ids[9:])):
        (main / name).write_text("".join(f"{i}\n" for i in part))
    dm = _datamodule("bccd", tmp_path, class_names=None)
    dm.setup()
    assert [_ids(dm, s) for s in ("train", "val", "test")] == [ids[:6], ids[6:9], ids[9:]]


def test_voc_split_csv_with_and_without_split_column(tmp_path):
    ids = _voc_lowercase(tmp_path)
    with open(tmp_path / "boxes.csv", "w", newline="") as f:  # one row per box, as many exports do
        w = csv.writer(f)
        w.writerow(["filename", "xmin", "label", "subset"])
        for k, i in enumerate(ids):
            split = ["train", "train", "valid", "test"][k % 4]
            w.writerows([[f"{i}.jpg", 1, "rbc", split], [f"{i}.jpg", 5, "wbc", split]])
    dm = _datamodule("bccd", tmp_path, class_names=None, split_files="boxes.csv")
    dm.setup()
    assert _ids(dm, "train") == [i for k, i in enumerate(ids) if k % 4 < 2]
    assert _ids(dm, "val") == ids[2::4] and _ids(dm, "test") == ids[3::4]
    # a CSV without a split column lists the images to use: hash split of those only
    (tmp_path / "use.csv").write_text("image\n" + "".join(f"{i}.jpg\n" for i in ids[:8]))
    parsers = {
        s: VOCParser(tmp_path, s, image_dir="images", ann_dir="annotations", split_files="use.csv")
        for s in ("train", "val", "test")
    }
    got = {s: [r.image_id for r in p.parse(["rbc", "wbc"])] for s, p in parsers.items()}
    assert sorted(sum(got.values(), [])) == ids[:8] and "hash split" in parsers["train"].source


# ---------------------------------------------------------------------------------------------- YOLO txt
def _yolo_ultralytics(root: Path) -> dict[str, list[str]]:
    stems = {"train2017": ["a", "b", "c", "d"], "val2017": ["e", "f"]}
    for folder, names in stems.items():
        for k, n in enumerate(names):
            _jpg(root / "images" / folder / f"{n}.jpg", (40, 20))
            (root / "labels" / folder).mkdir(parents=True, exist_ok=True)
            (root / "labels" / folder / f"{n}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.5\n" if n != "d" else "")
    (root / "labels" / "train2017" / "ghost.txt").write_text("0 0.5 0.5 0.1 0.1\n")  # a label without an image
    (root / "labels" / "train2017" / "c.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.6 0.1 0.6\n")  # a polygon (segment)
    return stems


def test_yolo_ultralytics_yaml_respects_the_split_folders(tmp_path, caplog):
    stems = _yolo_ultralytics(tmp_path)
    (tmp_path / "coco8.yaml").write_text(
        yaml.safe_dump(
            {"path": ".", "train": "images/train2017", "val": "images/val2017", "names": {0: "cat", 1: "dog"}}
        )
    )
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("yolo", tmp_path)
        dm.setup()
    assert dm.class_names == ["cat", "dog"]
    assert _ids(dm, "train") == stems["train2017"]  # exactly the train folder: no val image in train
    assert _ids(dm, "val") == stems["val2017"] and _ids(dm, "test") == stems["val2017"]
    assert "no test split: test uses the val images" in caplog.text
    assert f"split 'train': 4 images from folder {tmp_path / 'images' / 'train2017'}" in caplog.text
    d = next(r for r in dm.datasets["train"].records if r.image_id == "d")
    np.testing.assert_array_equal(d.boxes.shape, (0, 4))
    assert dm.issues.files("skip_file", "label file without an image") == [str(tmp_path / "labels/train2017/ghost.txt")]
    assert dm.issues.files("note", "empty label file") == [str(tmp_path / "images/train2017/d.jpg")]
    c = next(r for r in dm.datasets["train"].records if r.image_id == "c")
    np.testing.assert_allclose(c.boxes, [[4, 2, 20, 12]], atol=1e-4)  # the polygon's bounding box on 40x20
    assert dm.issues.files("fixed", "polygon label converted") == [str(tmp_path / "labels/train2017/c.txt")]
    assert "ghost.txt" in dm.issue_summary()


def test_val_split_of_training_images_is_warned_and_classes_logged(tmp_path, caplog):
    """coco128.yaml's ``val: images/train``: allowed, but the val metrics are not held out (a warning naming the
    files); the class names are logged with their indices and training boxes."""
    _yolo_ultralytics(tmp_path)
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train2017", "val": "images/train2017", "names": ["cat", "dog"]})
    )
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        _datamodule("yolo", tmp_path).setup()
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "held out" in r.getMessage()]
    assert len(warned) == 2 and warned[0].startswith("data: 4 of the 4 val images are training images too")
    assert str(tmp_path / "images" / "train2017" / "a.jpg") in warned[0]
    assert "classes (index name: training boxes): 0 cat: 1, 1 dog: 2" in caplog.text  # a cat, b dog, c dog, d none


def test_yolo_yaml_lists_roboflow_paths_and_names_list(tmp_path):
    stems = _yolo_ultralytics(tmp_path)
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "train.txt").write_text(
        "".join(f"./images/train2017/{n}.jpg\n" for n in stems["train2017"][:2])
    )
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump(
            {"train": "lists/train.txt", "val": "../images/val2017", "test": "images/val2017", "names": ["x", "y"]}
        )
    )
    # the list's ./ entries are relative to the root (the yaml's folder); ../images (Roboflow) taken from the root
    p = YOLOTxtParser(tmp_path, "train")
    assert [r.image_id for r in p.parse()] == ["a", "b"] and p.discover_class_names() == ["x", "y"]
    assert [x.stem for x in YOLOTxtParser(tmp_path / "data.yaml", "val").image_paths()] == stems["val2017"]


def test_yolo_yaml_test_entry_without_its_folder_tests_on_val(tmp_path, caplog):
    """Roboflow's data.yaml names ``test: ../test/images`` even when no test split was exported: test = val (both
    logged); a missing train or val entry stays an error naming the yaml."""
    stems = _yolo_ultralytics(tmp_path)
    entries = {"train": "images/train2017", "val": "images/val2017", "test": "../test/images", "names": ["x", "y"]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(entries))
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        got = [x.stem for x in YOLOTxtParser(tmp_path, "test").image_paths()]
    assert got == stems["val2017"]
    assert "test: ../test/images not found" in caplog.text and "no test split: test uses the val images" in caplog.text
    (tmp_path / "data.yaml").write_text(yaml.safe_dump({**entries, "val": "../valid/images"}))
    with pytest.raises(FileNotFoundError, match=r"data.yaml: val: ../valid/images not found"):
        YOLOTxtParser(tmp_path, "val").image_paths()


def test_yolo_split_folders_without_yaml_never_mix(tmp_path, caplog):
    for split, names in {"train": ["a", "b", "c", "d", "e", "f", "g", "h"], "valid": ["v1", "v2"]}.items():
        for n in names:
            _jpg(tmp_path / split / "images" / f"{n}.jpg")  # Roboflow layout: <split>/images, <split>/labels
    (tmp_path / "classes.txt").write_text("thing\n")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        got = {s: [p.stem for p in YOLOTxtParser(tmp_path, s).image_paths()] for s in ("train", "val", "test")}
    assert got == {"train": list("abcdefgh"), "val": ["v1", "v2"], "test": ["v1", "v2"]}
    assert "test uses the val images" in caplog.text
    assert YOLOTxtParser(tmp_path).discover_class_names() == ["thing"]
    # no val folder: val is a hash share of train (logged), disjoint from the train split
    (tmp_path / "valid").rename(tmp_path / "other")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        train = [p.stem for p in YOLOTxtParser(tmp_path, "train").image_paths()]
        val = [p.stem for p in YOLOTxtParser(tmp_path, "val").image_paths()]
    assert sorted(train + val) == list("abcdefgh") and not set(train) & set(val)
    assert "hash share" in caplog.text and "no val split" in caplog.text


def _darknet_layout(root: Path) -> dict[str, list[str]]:
    """AlexeyAB darknet's: data/obj.data names data/train.txt, data/valid.txt and data/obj.names, paths relative to
    the darknet folder; every label file beside its image in data/obj/."""
    stems = {"train": ["a", "b", "c"], "valid": ["v"]}
    for split, names in stems.items():
        for k, n in enumerate(names):
            _jpg(root / "data" / "obj" / f"{n}.jpg", (40, 20))
            (root / "data" / "obj" / f"{n}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.5\n")
        (root / "data" / f"{split}.txt").write_text("".join(f"data/obj/{n}.jpg\n" for n in names))
    (root / "data" / "obj.names").write_text("cat\ndog\n")
    (root / "data" / "obj.data").write_text(
        "classes = 2\ntrain  = data/train.txt\nvalid  = data/valid.txt\nnames = data/obj.names\nbackup = backup/\n"
    )
    return stems


def test_darknet_obj_data_lists_names_and_labels_beside_the_images(tmp_path, caplog):
    stems = _darknet_layout(tmp_path)
    data = tmp_path / "data"
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("yolo", data)  # the folder holding obj.data (found); its paths start at the darknet folder
        dm.setup()
    assert dm.class_names == ["cat", "dog"]
    assert _ids(dm, "train") == stems["train"] and _ids(dm, "val") == stems["valid"] == _ids(dm, "test")
    assert f"split 'train': 3 images from list {tmp_path / 'data' / 'train.txt'} (obj.data train =)" in caplog.text
    assert "no test split: test uses the val images" in caplog.text
    b = next(r for r in dm.datasets["train"].records if r.image_id == "b")
    np.testing.assert_array_equal(b.labels, [1])  # the label beside the image: class 1, box (15, 5, 25, 15) on 40x20
    np.testing.assert_allclose(b.boxes, [[15, 5, 25, 15]], atol=1e-4)
    # data.root may be the file itself; classes = 3 against two names is warned, the names kept
    (data / "obj.data").write_text((data / "obj.data").read_text().replace("classes = 2", "classes = 3"))
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        p = YOLOTxtParser(data / "obj.data", "val")
        assert p.discover_class_names() == ["cat", "dog"] and [x.stem for x in p.image_paths()] == ["v"]
    assert "classes=3 but 2 names" in caplog.text
    (data / "train.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"obj.data: train = data/train.txt not found \(looked in "):
        YOLOTxtParser(data, "train").image_paths()


def test_darknet_data_file_of_a_moved_export_and_a_flat_labelimg_folder(tmp_path, caplog):
    """CVAT's "YOLO 1.1" export is darknet's data/ folder unzipped anywhere (obj.data says train = data/train.txt,
    the list data/obj_train_data/x.jpg): its paths lose their first folder. LabelImg's YOLO layout (each image with
    its .txt in one folder, classes.txt) is the root's own images, split by hash."""
    cvat = tmp_path / "cvat_export"
    for n, k in (("a", 0), ("b", 1), ("c", 0)):
        _jpg(cvat / "obj_train_data" / f"{n}.jpg", (40, 20))
        (cvat / "obj_train_data" / f"{n}.txt").write_text(f"{k} 0.5 0.5 0.25 0.5\n")
    (cvat / "train.txt").write_text("".join(f"data/obj_train_data/{n}.jpg\n" for n in "abc"))
    (cvat / "obj.names").write_text("cat\ndog\n")
    (cvat / "obj.data").write_text("classes = 2\ntrain = data/train.txt\nnames = data/obj.names\nbackup = backup/\n")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        p = YOLOTxtParser(cvat, "train+val")  # no valid list: val is a hash share of train
        assert p.discover_class_names() == ["cat", "dog"]
        recs = {r.image_id: r for r in p.parse()}
    assert sorted(recs) == ["a", "b", "c"] and recs["b"].labels.tolist() == [1]
    assert "name darknet's data/ folder, which is the file's own folder here" in caplog.text
    flat = tmp_path / "labelimg"
    stems = [f"img{k}" for k in range(10)]
    for k, n in enumerate(stems):
        _jpg(flat / f"{n}.jpg", (40, 20))
        (flat / f"{n}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.5\n")
    (flat / "classes.txt").write_text("cat\ndog\n")
    dm = _datamodule("yolo", flat)
    dm.setup()
    splits = {s: _ids(dm, s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == stems and dm.class_names == ["cat", "dog"]
    assert not dm.issues.count("note", "no label file")  # every label found beside its image


# -------------------------------------------------------------------------------------------------- COCO
def _coco_train_only(root: Path, image_folder: str, n: int = 20) -> list[str]:
    files = [f"{k:06d}.jpg" for k in range(n)]
    for f in files:
        _jpg(root / image_folder / f)
    data = {
        "images": [{"id": k, "file_name": f, "width": 32, "height": 24} for k, f in enumerate(files)],
        "categories": [{"id": 7, "name": "cell"}],
        "annotations": [
            {"id": k, "image_id": k, "category_id": 7, "bbox": [2, 2, 10, 10], "iscrowd": 0} for k in range(n - 1)
        ],
    }
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train2017.json").write_text(json.dumps(data))
    return [Path(f).stem for f in files]


@pytest.mark.parametrize("image_folder", ["train2017", "images"])
def test_coco_only_train_json_derives_val_and_test(tmp_path, image_folder, caplog):
    ids = _coco_train_only(tmp_path, image_folder)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("coco", tmp_path)
        dm.setup()
    splits = {s: _ids(dm, s) for s in ("train", "val", "test")}
    assert sorted(sum(splits.values(), [])) == ids and all(splits.values())  # disjoint, complete, none empty
    assert dm.class_names == ["cell"]
    from yolo9000.data import coco

    assert not coco._cache  # the train JSON that served three splits is let go once they are parsed
    assert "val and test taken from" in caplog.text and "hash split of the image file names" in caplog.text
    assert all(r.image_path.parent == tmp_path / image_folder for d in dm.datasets.values() for r in d.records)
    again = COCOParser(root=tmp_path, split="val", ann_files={"train": "annotations/instances_train2017.json"})
    assert [r.image_id for r in again.parse()] == splits["val"]  # deterministic
    assert dm.issues.files("note", "no objects") == [str(tmp_path / image_folder / f"{ids[-1]}.jpg")]


def test_coco_test_json_alone_evaluates_without_a_train_json(tmp_path, image_folder="images"):
    """A split with its own JSON reads it even when the train JSON is missing (an evaluation on a test JSON
    failed with "COCO train JSON not found"); the train split still needs its JSON, named in the error."""
    ids = _coco_train_only(tmp_path, image_folder)
    (tmp_path / "annotations" / "instances_train2017.json").rename(tmp_path / "annotations" / "test.json")
    files = {"train": "annotations/instances_train2017.json", "test": "annotations/test.json"}
    test = COCOParser(root=tmp_path, split="test", ann_files=files)
    assert [r.image_id for r in test.parse()] == ids
    with pytest.raises(FileNotFoundError, match="COCO train JSON not found"):
        COCOParser(root=tmp_path, split="train", ann_files=files).parse()
    dm = _datamodule("coco", tmp_path, **{"ann_files.test": "annotations/test.json"})  # as eval.py composes it
    assert dm.class_names == ["cell"]  # named by the test JSON (the train parser's missing file skipped)
    dm.setup("test")
    assert _ids(dm, "test") == ids


def test_coco_missing_image_folder_names_every_folder_tried(tmp_path):
    _coco_train_only(tmp_path, "elsewhere")
    with pytest.raises(FileNotFoundError) as e:
        _datamodule("coco", tmp_path).setup("fit")
    msg = str(e.value)
    for folder in ("train2017", "images/train2017", "images", "annotations"):
        assert str(tmp_path / folder) in msg
    assert "data.image_dir" in msg
    dm = _datamodule("coco", tmp_path, image_dir="elsewhere")
    dm.setup("fit")
    assert len(dm.datasets["train"]) > 0


def _coco_split(root: Path, split: str, folder: str, categories: list[dict], n: int = 3) -> None:
    files = [f"{split}{k}.jpg" for k in range(n)]
    for f in files:
        _jpg(root / folder / f)
    used = [c["id"] for c in categories if c["name"] != "cells"]
    data = {
        "images": [{"id": k, "file_name": f, "width": 32, "height": 24} for k, f in enumerate(files)],
        "categories": categories,
        "annotations": [
            {"id": k, "image_id": k, "category_id": used[k % len(used)], "bbox": [2, 2, 10, 10], "iscrowd": 0}
            for k in range(n)
        ],
    }
    (root / "annotations").mkdir(exist_ok=True)
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


def test_coco_image_dir_mapping_serves_the_split_that_reads_another_json(tmp_path):
    """``data.image_dir={train: ..., val: ...}`` with test on the val JSON (the default): test reads val's folder."""
    cats = [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]
    _coco_split(tmp_path, "train", "pics_train", cats)
    _coco_split(tmp_path, "val", "pics_val", cats)
    ann = {"train": "annotations/instances_train.json", "val": "annotations/instances_val.json", "test": None}
    dm = _datamodule("coco", tmp_path, ann_files=ann, image_dir={"train": "pics_train", "val": "pics_val"})
    dm.setup()
    assert {r.image_path.parent.name for r in dm.datasets["test"].records} == {"pics_val"}
    assert _ids(dm, "test") == _ids(dm, "val") == ["val0", "val1", "val2"]


def test_coco_roboflow_export_layout_is_found(tmp_path, caplog):
    """Roboflow's COCO export (train/_annotations.coco.json, valid/..., images beside each JSON) with the coco data
    config's default JSON paths: the export's JSONs are used (logged), test = valid, no image of one in another."""
    cats = [{"id": 0, "name": "cells", "supercategory": "none"}, {"id": 1, "name": "RBC", "supercategory": "cells"}]
    for split, folder in (("train", "train"), ("valid", "valid")):
        _coco_split(tmp_path, split, folder, cats, n=3 if split == "train" else 2)
        (tmp_path / "annotations" / f"instances_{split}.json").rename(tmp_path / folder / "_annotations.coco.json")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("coco", tmp_path)
        dm.setup()
    (found,) = [r for r in caplog.records if "holds Roboflow's COCO export: train " in r.getMessage()]
    assert found.levelno == logging.INFO  # the layout found, no problem
    assert _ids(dm, "train") == ["train0", "train1", "train2"]
    assert _ids(dm, "val") == ["valid0", "valid1"] == _ids(dm, "test")
    assert dm.class_names == ["RBC"]
    assert {r.image_path.parent for r in dm.datasets["val"].records} == {tmp_path / "valid"}
    # no export either: the configured JSON is named, and the JSON files that are there (CVAT's, Label Studio's)
    (tmp_path / "train" / "_annotations.coco.json").rename(tmp_path / "train" / "instances_default.json")
    (tmp_path / "result.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="COCO train JSON not found: .*instances_train2017.json") as e:
        _datamodule("coco", tmp_path).setup()
    assert str(e.value).endswith(
        f"(set data.ann_files.train); JSON files in {tmp_path}: result.json, train/instances_default.json, "
        "valid/_annotations.coco.json"
    )


def test_coco_roboflow_dataset_name_category_is_no_class(tmp_path, caplog):
    """Roboflow's COCO export lists the dataset's name as category 0, supercategory of the real classes, with no
    annotation: dropped with a warning (it would be an output never trained); an unused real class stays."""
    cats = [
        {"id": 0, "name": "cells", "supercategory": "none"},
        {"id": 1, "name": "RBC", "supercategory": "cells"},
        {"id": 2, "name": "WBC", "supercategory": "cells"},
        {"id": 3, "name": "rare", "supercategory": "cells"},  # no box in this split, but a class
    ]
    _coco_split(tmp_path, "train", "train", cats, n=2)  # boxes of RBC and WBC only
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        names = COCOParser(root=tmp_path, split="train", ann_files={"train": "annotations/instances_train.json"})
        got = names.discover_class_names()
    assert got == ["RBC", "WBC", "rare"]
    assert "'cells' (id 0)" in caplog.text and "supercategory" in caplog.text


# ------------------------------------------------------------------------------------- the data summary
def _odd_images_voc(root: Path) -> None:
    """A VOC folder whose images need every kind of conversion, plus a negative and a corrupt image."""
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    (root / "JPEGImages").mkdir(parents=True)
    Image.fromarray(arr).save(root / "JPEGImages" / "ok.jpg")
    Image.fromarray(arr).save(root / "JPEGImages" / "pngdata.jpg", format="PNG")
    Image.fromarray(np.dstack([arr, arr[..., :1]]), "RGBA").save(root / "JPEGImages" / "rgba.png")
    Image.fromarray(arr).convert("P").save(root / "JPEGImages" / "palette.png")
    Image.fromarray(arr).convert("L").save(root / "JPEGImages" / "grey.jpg")
    Image.fromarray(arr).save(root / "JPEGImages" / "empty.jpg")
    (root / "JPEGImages" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all" * 4)
    for stem in ("ok", "pngdata", "rgba", "palette", "grey", "broken"):
        _xml(root / "Annotations" / f"{stem}.xml", ["a"])
    _xml(root / "Annotations" / "empty.xml", [])


def test_summary_names_every_converted_skipped_and_negative_file_from_workers(tmp_path, caplog):
    _odd_images_voc(tmp_path)
    (tmp_path / "all.txt").write_text("ok\npngdata\nrgba\npalette\ngrey\nempty\nbroken\n")
    dm = _datamodule("bccd", tmp_path, class_names=["a"], split_files={"train": "all.txt", "val": "all.txt"})
    dm.num_workers, dm.persistent_workers, dm.eval_batch_size = 2, False, 16
    dm.report_file = tmp_path / "out" / "data_issues.txt"
    dm.setup("validate")
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        batch = next(iter(dm.val_dataloader()))
    assert len(batch["image_ids"]) == 6  # broken.jpg skipped
    assert dm.issues.count(reason="RGBA") == 0  # found in a worker process: not in this process's log yet
    report = dm.data_report()
    problems = report["data_problems"]

    def files(reason: str) -> list[str]:
        return sorted(Path(f).name for f in problems[reason]["files"])

    assert files("corrupt or unreadable image") == ["broken.jpg"]
    assert problems["corrupt or unreadable image"]["action"] == "skipped images"
    assert files("PNG data in a .jpg file, decoded as PNG") == ["pngdata.jpg"]
    assert files("RGBA image converted to RGB (alpha dropped)") == ["rgba.png"]
    assert files("palette image converted to RGB") == ["palette.png"]
    assert files("greyscale image converted to RGB") == ["grey.jpg"]
    assert (
        files("no objects, kept as a negative") == ["empty.xml"]
        and problems["no objects, kept as a negative"]["action"] == "notes"
    )
    text = report["data_issues"]
    # the PNG named .jpg is a problem of the file (repaired); the colour conversions are notes, as the negative
    assert problems["PNG data in a .jpg file, decoded as PNG"]["action"] == "fixed"
    assert problems["greyscale image converted to RGB"]["action"] == "notes"
    assert text.startswith("2 problems: 1 skipped images, 1 fixed; 4 notes")
    for name in ("broken.jpg", "pngdata.jpg", "rgba.png", "palette.png", "grey.jpg", "empty.xml"):
        assert name in text
    full = dm.report_file.read_text()
    assert all(name in full for name in ("broken.jpg", "rgba.png", "empty.xml"))
    # no doubled text: every message names its file once and says its reason once
    for r in caplog.records:
        msg = r.getMessage()
        for name in ("broken.jpg", "rgba.png"):
            assert msg.count(name) <= 1, msg
        assert msg.count("corrupt or unreadable image") <= 1 and msg.count("RGBA") <= 1, msg


def test_summary_truncates_but_report_keeps_every_file(tmp_path):
    log = IssueLog("skip")
    for k in range(7):
        log.note(tmp_path / "Annotations" / f"n{k}.xml", "no objects, kept as a negative")
    text = log.summary(max_files=3, see=tmp_path / "data_issues.txt")
    assert "n0.xml, Annotations/n1.xml, Annotations/n2.xml ... and 4 more, see" in text
    assert str(tmp_path / "data_issues.txt") in text and "n6.xml" not in text
    assert log.report_dict()["no objects, kept as a negative"]["files"] == [
        str(tmp_path / "Annotations" / f"n{k}.xml") for k in range(7)
    ]
    assert "files_left_out" not in log.report_dict()["no objects, kept as a negative"]
    log.note(tmp_path / "Annotations" / "n0.xml", "no objects, kept as a negative")  # the same again: once
    assert len(log) == 7
    # metrics.json's lists stop at max_files (a full-scale dataset's thousands), counting the rest
    capped = log.report_dict(max_files=5)["no objects, kept as a negative"]
    assert capped["count"] == 7 and len(capped["files"]) == 5 and capped["files_left_out"] == 2
    assert capped["files"][-1] == str(tmp_path / "Annotations" / "n4.xml")


def test_data_report_separates_augmentation_from_data_problems(tmp_path):
    _voc_lowercase(tmp_path, 4)
    (tmp_path / "all.txt").write_text("img00\nimg01\nimg02\nimg03\n")
    dm = _datamodule(
        "bccd",
        tmp_path,
        class_names=None,
        split_files={"train": "all.txt", "val": "all.txt"},
        # every training box is too small after augmentation
        **{"augment.small_box": "area", "augment.min_box_area": 0.99, "batch_size": 4},
    )
    dm.setup("fit")
    next(iter(dm.train_dataloader()))
    report = dm.data_report()
    assert report["augmentation"]["train"]["boxes_dropped"] == 4
    assert report["augmentation"]["train"]["samples_loaded"] == 4
    assert report["data_problems"] == {} and report["data_issues"] == "0 problems"


# ---------------------------------------------------------------------------------------------- workers
def test_cpus_resolver_caps_the_available_cpus():
    register_resolvers()
    available = len(os.sched_getaffinity(0))
    cfg = OmegaConf.create({"a": "${cpus:8}", "b": "${cpus:1}", "c": "${cpus:1000}"})
    assert (cfg.a, cfg.b, cfg.c) == (min(available, 8), 1, available)


def test_loader_workers_none_on_a_cpu_trainer_else_the_cpus():
    """A CPU training step uses every core (workers beside it slow it down): the data configs load in the main
    process under a CPU trainer, with workers (the CPUs, capped) under a GPU one."""
    register_resolvers()
    available = len(os.sched_getaffinity(0))
    cfg = OmegaConf.create(
        {"cpu": "${loader_workers:cpu,8}", "gpu": "${loader_workers:gpu,8}", "one": "${loader_workers:cuda,1}"}
    )
    assert (cfg.cpu, cfg.gpu, cfg.one) == (0, min(available, 8), 1)
    auto = OmegaConf.create({"a": "${loader_workers:auto,8}"}).a
    assert auto == (min(available, 8) if torch.cuda.is_available() else 0)
    caps = {"bccd": 4, "voc": 8, "yolo": 8, "coco": 8, "imagenet": 8, "bccd_crops": 4, "digits": 4}
    for name, cap in caps.items():
        on_cpu = compose_config("train", f"data={name}").data
        assert str(OmegaConf.to_container(on_cpu, resolve=False)["num_workers"]).startswith("${loader_workers:"), name
        assert on_cpu.num_workers == 0, name
        assert compose_config("train", f"data={name}", "trainer=gpu").data.num_workers == min(available, cap), name


def test_the_class_line_of_a_wordtree_lists_the_classes_with_boxes() -> None:
    """The classes line of a 9418-node tree listed its first 30 nodes ("thing, matter, object"), none with a box;
    past 30 classes it lists those with training boxes and how many have them."""
    from types import SimpleNamespace

    from yolo9000.data.datamodule import DetectionDataModule
    from yolo9000.data.records import DetectionRecord, PackedRecords

    def rec(labels: list[int]) -> DetectionRecord:
        return DetectionRecord("a.jpg", "a", 10, 10, np.ones((len(labels), 4)), labels, np.zeros(len(labels), bool))

    train = SimpleNamespace(records=PackedRecords([rec([40, 41, 41]), rec([7])]))
    names = [f"n{i}" for i in range(50)]
    dm = SimpleNamespace(datasets={"train": train}, class_names=names, num_classes=50, include_difficult=False)
    assert (
        DetectionDataModule._class_line(dm) == "7 n7: 1, 40 n40: 1, 41 n41: 2 (3 of the 50 classes have training boxes)"
    )
    few = SimpleNamespace(datasets={"train": train}, class_names=names, num_classes=50, include_difficult=False)
    assert DetectionDataModule._class_line(few, limit=60).startswith("0 n0: 0, 1 n1: 0")


def test_class_names_null_reads_every_dataset_of_a_concatenated_split(tmp_path, caplog):
    """data=voc with data.class_names=null (VOC07+12, a list of train parsers): only the first dataset's XMLs named
    the classes, so the boxes of a class only VOC2012 holds were dropped as an unknown class. The names are every
    dataset's of the split, sorted as each reader sorts them; the added ones are logged."""
    for year, names in (("2007", ["dog", "cat"]), ("2012", ["horse", "dog"])):
        root = tmp_path / "VOCdevkit" / f"VOC{year}"
        _jpg(root / "JPEGImages" / f"{year}_1.jpg")
        _xml(root / "Annotations" / f"{year}_1.xml", names)
        (root / "ImageSets" / "Main").mkdir(parents=True)
        for split in ("trainval", "test"):
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text(f"{year}_1\n")
    dm = _datamodule("voc", tmp_path / "VOCdevkit", class_names=None)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        assert dm.class_names == ["cat", "dog", "horse"]
    assert "adds ['horse']" in caplog.text
    dm.setup("fit")
    labels = sorted(int(c) for r in dm.datasets["train"].records for c in r.labels)
    assert labels == [0, 1, 1, 2]  # VOC2012's horse trained, not dropped
    assert dm.issues.count("drop_box", "unknown class 'horse'") == 0


def test_a_dataset_yaml_with_a_typo_is_named_not_passed_over(tmp_path, caplog):
    """A data.yaml that is not valid YAML (a tab, an unclosed bracket) was passed over in silence and the run
    asked for class names; it is named with the YAML error when found in the root, and refused when given."""
    _yolo_ultralytics(tmp_path)
    bad = tmp_path / "data.yaml"
    bad.write_text("train: images/train2017\nnames: [cat, dog\n")
    with caplog.at_level(logging.WARNING, logger="yolo9000"), pytest.raises(ValueError):
        _datamodule("yolo", tmp_path).setup()
    assert f"{bad}: not read as a dataset yaml" in caplog.text and "line 2" in caplog.text
    with pytest.raises(ValueError, match=r"data.yaml: not valid YAML"):
        YOLOTxtParser(bad, "train").parse()


def test_two_images_of_one_name_sharing_a_label_file_are_noted(tmp_path):
    """``a.jpg`` and ``a.png`` in one folder both take ``labels/a.txt`` (darknet's and Ultralytics' rule): kept, but
    named in the data summary (it said "0 problems" while one of the two surely has the other's boxes)."""
    _yolo_ultralytics(tmp_path)
    _jpg(tmp_path / "images" / "train2017" / "a.png", (40, 20))
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train2017", "val": "images/val2017", "names": ["cat", "dog"]})
    )
    issues = IssueLog("skip")  # the layout's label file without an image is reported too
    recs = YOLOTxtParser(tmp_path, "train").parse(issues=issues)
    a = [r for r in recs if r.image_id == "a"]
    assert len(a) == 2 and np.array_equal(a[0].boxes, a[1].boxes)
    (note,) = [i for i in issues.issues if "shares its label file" in i.reason]
    assert (
        note.action == "note"
        and Path(note.file).name in ("a.jpg", "a.png")
        and "labels/train2017/a.txt" in (note.detail)
    )


# ------------------------------------------------------------------- exports found by session 43's data audit
def test_pose_labels_of_a_kpt_shape_yaml_give_their_boxes_not_a_polygon(tmp_path):
    """Ultralytics pose labels (``cls cx cy w h`` then the keypoints, ``kpt_shape`` in the yaml): the box is the
    first four numbers. ``kpt_shape: [1, 2]`` makes 7 values a line, which without the yaml's word would read as
    the polygon (0.25, 0.5), (0.5, 0.25), (0.3, 0.7) (another box entirely)."""
    _jpg(tmp_path / "images" / "train" / "a.jpg", (40, 20))
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a.txt").write_text("1 0.25 0.5 0.5 0.25 0.3 0.7\n0 0.5 0.5 0.2\n")
    spec = {"train": "images/train", "val": "images/train", "names": ["cat", "dog"], "kpt_shape": [1, 2]}
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    issues = IssueLog("skip")
    (rec,) = YOLOTxtParser(tmp_path, "train").parse(issues=issues)
    assert rec.labels.tolist() == [1]
    np.testing.assert_allclose(rec.boxes, [[0.0, 7.5, 20.0, 12.5]])  # cx 10 +- 10, cy 10 +- 2.5 (40 x 20 px)
    assert issues.count("note", "pose label")
    (bad,) = [i for i in issues.issues if i.reason == "malformed label line"]  # 4 values: neither form
    assert bad.action == "drop_box" and "kpt_shape: 7 values a line" in bad.detail
    spec["kpt_shape"] = [17]
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(ValueError, match=r"data\.yaml: kpt_shape must be \[keypoints, 2 or 3\]"):
        YOLOTxtParser(tmp_path, "train").parse(issues=IssueLog("skip"))


def test_label_files_beside_their_images_are_read_where_labels_has_none(tmp_path):
    """A few labels left beside their images in an Ultralytics layout, and LabelImg's flat folder inside a folder
    named ``images`` (the images -> labels rule renamed that folder, outside the dataset): each image's boxes come
    from the .txt beside it (they were negatives, with an INFO note)."""
    _yolo_ultralytics(tmp_path)
    beside = tmp_path / "images" / "train2017" / "b.txt"
    (tmp_path / "labels" / "train2017" / "b.txt").rename(beside)
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train2017", "val": "images/val2017", "names": ["cat", "dog"]})
    )
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in YOLOTxtParser(tmp_path, "train").parse(issues=issues)}
    assert recs["b"].labels.tolist() == [1] and not issues.count("note", "no label file")
    np.testing.assert_allclose(recs["b"].boxes, [[15.0, 5.0, 25.0, 15.0]])
    flat = tmp_path / "work" / "images" / "flat"
    for k, n in enumerate(["p", "q", "r", "s"]):
        _jpg(flat / f"{n}.jpg", (40, 20))
        (flat / f"{n}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.5\n")
    (flat / "classes.txt").write_text("cat\ndog\n")
    recs = YOLOTxtParser(flat, "all", images_dir=".").parse(issues=IssueLog("error"))
    assert [r.labels.tolist() for r in sorted(recs, key=lambda r: r.image_id)] == [[0], [1], [0], [1]]


def test_roboflow_yolo_darknet_export_split_folders_and_darknet_labels(tmp_path, caplog):
    """Roboflow's "YOLO Darknet" export: train/, valid/, test/, each holding its images, their .txt labels and a
    ``_darknet.labels`` names file (it stopped at "no class_names", then at "YOLO images folder not found")."""
    for split, names in (("train", "abcd"), ("valid", "ef"), ("test", "g")):
        for k, n in enumerate(names):
            _jpg(tmp_path / split / f"{n}.jpg", (40, 20))
            (tmp_path / split / f"{n}.txt").write_text(f"{k % 2} 0.5 0.5 0.25 0.5\n")
        (tmp_path / split / "_darknet.labels").write_text("cat\ndog\n")
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm = _datamodule("yolo", tmp_path)
        dm.setup()
    assert dm.class_names == ["cat", "dog"]
    assert {s: sorted(_ids(dm, s)) for s in ("train", "val", "test")} == {
        "train": list("abcd"),
        "val": list("ef"),
        "test": ["g"],
    }
    assert [r.labels.tolist() for r in sorted(dm.datasets["train"].records, key=lambda r: r.image_id)] == [
        [0],
        [1],
        [0],
        [1],
    ]
    assert "_darknet.labels" in caplog.text


def test_label_file_of_an_image_in_a_format_not_read_names_the_image(tmp_path):
    """``x.jfif`` beside others: the image is not read, and the report of its label file says so (it blamed the
    label: "no image in ...")."""
    _yolo_ultralytics(tmp_path)
    (tmp_path / "images" / "train2017" / "b.jpg").rename(tmp_path / "images" / "train2017" / "b.jfif")
    (tmp_path / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train2017", "val": "images/val2017", "names": ["cat", "dog"]})
    )
    issues = IssueLog("skip")
    YOLOTxtParser(tmp_path, "train").parse(issues=issues)
    orphans = {Path(i.file).name: i.detail for i in issues.issues if i.reason == "label file without an image"}
    assert "b.jfif is there, but .jfif files are not read as images" in orphans["b.txt"]
    assert orphans["ghost.txt"].startswith("no image in")


def test_class_names_differing_only_in_case_are_warned_and_coco_names_shared_by_ids_merge(tmp_path, caplog):
    """VOC objects named ``RBC`` and ``rbc``: two classes, warned. COCO categories 1 and 3 both named ``cat``: one
    class holding both's boxes, warned (it stopped with "duplicated class names" and a hint about class files)."""
    for k in range(6):
        _jpg(tmp_path / "voc" / "images" / f"i{k}.jpg")
        _xml(tmp_path / "voc" / "annotations" / f"i{k}.xml", ["RBC" if k % 2 else "rbc", "WBC"])
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        dm = _datamodule("bccd", tmp_path / "voc", class_names=None)
        assert dm.class_names == ["RBC", "WBC", "rbc"]
    assert "differ only in case or spacing are separate classes: 'RBC' / 'rbc'" in caplog.text
    root = tmp_path / "coco"
    cats = [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cat"}]
    images = [{"id": k, "file_name": f"{k}.jpg", "width": 32, "height": 24} for k in range(3)]
    anns = [
        {"id": k, "image_id": k, "category_id": c, "bbox": [2, 3, 10, 8], "iscrowd": 0, "area": 80}
        for k, c in enumerate([1, 2, 3])
    ]
    for im in images:
        _jpg(root / "images" / im["file_name"])
    (root / "annotations").mkdir(parents=True)
    coco = {"images": images, "annotations": anns, "categories": cats}
    (root / "annotations" / "train.json").write_text(json.dumps(coco))
    p = COCOParser(root / "annotations" / "train.json", root / "images")
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        assert p.discover_class_names() == ["cat", "dog"]
    assert "categories share a name: 'cat' (ids 1, 3)" in caplog.text
    recs = sorted(p.parse(issues=IssueLog("error")), key=lambda r: r.image_id)
    assert [r.labels.tolist() for r in recs] == [[0], [1], [0]]


def test_an_empty_hash_share_names_the_keys_that_move_it(tmp_path):
    """A val split drawn by hash that comes out empty says how to give it images (it said only "no images")."""
    _voc_lowercase(tmp_path, n=4)
    dm = _datamodule("bccd", tmp_path, class_names=None, split_fractions={"train": 1.0, "val": 0.0, "test": 0.0})
    with pytest.raises(
        ValueError, match=r"data\.val: no images .*drawn by hash .*data\.split_fractions / data\.split_seed"
    ):
        dm.setup()


@pytest.mark.parametrize("name", ["yolo", "coco"])
def test_a_data_root_that_does_not_exist_is_said_as_such(tmp_path, name):
    """``data=yolo data.root=/no/such/folder`` said "no class_names in the data config" and ``data=coco`` named the
    train JSON's key: both now say the root is not there, as the other formats do."""
    dm = _datamodule(name, tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=rf"dataset root not found: {tmp_path / 'nope'} \(data\.root\)"):
        dm.class_names  # noqa: B018


def test_a_folder_of_pictures_beside_a_flat_dataset_is_no_split(tmp_path):
    """A flat ``images/`` + ``labels/`` dataset with a ``test/`` folder of pictures beside it (to try detect.py on):
    still the hash split of images/ (the "YOLO Darknet" split-folder reading took test/ for the only split and
    refused: "no 'train' split"); macOS's hidden ``._x.txt`` in labels/ is no orphan label, and its ``._x.jpg`` is
    not named as an image in a format not read."""
    for i in range(20):
        _jpg(tmp_path / "images" / f"im{i}.jpg")
        (tmp_path / "labels").mkdir(exist_ok=True)
        (tmp_path / "labels" / f"im{i}.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    (tmp_path / "classes.txt").write_text("a\n")
    _jpg(tmp_path / "test" / "x.jpg")
    (tmp_path / "images" / "._im1.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    (tmp_path / "labels" / "._im1.txt").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    issues = IssueLog("skip")
    counts = [len(YOLOTxtParser(tmp_path, split=s).parse(None, issues)) for s in ("train", "val", "test")]
    assert sum(counts) == 20 and counts[0] > counts[1] > 0
    assert not [i for i in issues.issues if i.reason == "label file without an image"]
