"""Darknet-19 classification pretraining: ImageFolder data, BCCD crops, the classifier module, the backbone hand-off."""

from __future__ import annotations

import logging
import math
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image

from conftest import compose_config, load_script, quiet_trainer
from yolo9000 import run_folder
from yolo9000.data.classify_transforms import (
    ClassificationTransform,
    DarknetRandomAugment,
    darknet_augment_matrix,
    resize_center_crop,
)
from yolo9000.data.crops import build_crops, crop_windows
from yolo9000.data.imagefolder import (
    ClassificationDataModule,
    ClassificationRecord,
    ImageFolderParser,
    read_class_file,
    read_devkit_classes,
    read_labels_file,
    stratified_subset,
)
from yolo9000.data.records import DataError, IssueLog
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules.classifier import ClassifierModule, format_accuracy_table
from yolo9000.modules.pretrained import load_pretrained

BCCD = Path(__file__).resolve().parents[1] / "data" / "bccd"
CLASSES = ["RBC", "WBC", "Platelets"]
MINI_SPLITS = {
    "train": ["BloodImage_00000", "BloodImage_00338"],
    "val": ["BloodImage_00001"],
    "test": ["BloodImage_00343"],
}


def _png(path: Path, value: int = 128, size: tuple[int, int] = (20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def _folder(root: Path) -> Path:
    """train/{cat: 3, dog: 2, zebra: 2}, a loose image, a text file; val/{cat: 1, dog: 1}."""
    for i in range(3):
        _png(root / "train" / "cat" / f"c{i}.png", 10 * i)
    for i in range(2):
        _png(root / "train" / "dog" / f"d{i}.jpg", 100 + i)
        _png(root / "train" / "zebra" / f"z{i}.png")
    _png(root / "train" / "loose.png")
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    _png(root / "val" / "cat" / "v0.png")
    _png(root / "val" / "dog" / "v1.png")
    return root


# ------------------------------------------------------------------------------------------------ image folders
LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:0123\nsize 12345\n"


def test_a_batch_of_unreadable_images_is_skipped_not_fatal(tmp_path: Path) -> None:
    """data.on_error=skip with a whole batch unreadable (a folder of Git LFS pointers, as a clone without git-lfs
    leaves them; validation is not shuffled): the run goes on. The empty training batch makes no optimizer step
    (the weights stay as they were), the empty validation batches add nothing, the metrics count the readable
    images only, and the reason names LFS. It raised DataError after the whole first epoch."""
    root = tmp_path / "ds"
    for i in range(4):
        _png(root / "train" / "cat" / f"c{i}.png", 20 + 10 * i)
        _png(root / "train" / "dog" / f"d{i}.png", 200 - 10 * i)
        (root / "val" / "cat" / f"lfs{i}.jpg").parent.mkdir(parents=True, exist_ok=True)
        (root / "val" / "cat" / f"lfs{i}.jpg").write_bytes(LFS_POINTER)
    _png(root / "val" / "dog" / "v0.png", 190)
    dm = ClassificationDataModule(str(root), img_size=32, batch_size=4, num_workers=0, on_error="skip")
    dm.setup("fit")
    module = ClassifierModule(_tiny(classes=2), lr=0.01, burn_in=0, class_names=dm.class_names)
    empty = dm.collate_fn()([None, None])
    before = {k: v.clone() for k, v in module.state_dict().items()}
    trainer = quiet_trainer(max_epochs=1)
    # one training step on the empty batch: no optimizer step, nothing changed (seen too)
    module.trainer = trainer
    assert module.training_step(empty, 0) is None
    assert all(torch.equal(v, before[k]) for k, v in module.state_dict().items())
    trainer.fit(module, datamodule=dm)  # val: batch 1 = four pointers (empty), batch 2 = the one readable image
    assert int(module.seen) == 8
    trainer.test(module, datamodule=dm)
    assert module.test_results["num_images"] == 1  # the readable image alone
    assert dm.issues.count("skip_image", "a Git LFS pointer, not an image") == 4
    assert "lfs0.jpg (the repository was cloned without its LFS files: `git lfs pull`)" in dm.issues.full_text()


def test_imagefolder_classes_and_unknown_folders(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    parser = ImageFolderParser(root, "train")
    assert parser.folder_names() == ["cat", "dog", "zebra"]
    skip = IssueLog("skip")
    recs = parser.parse(["dog", "cat"], skip)
    assert sorted((r.path.name, r.label) for r in recs) == [
        ("c0.png", 1),
        ("c1.png", 1),
        ("c2.png", 1),
        ("d0.jpg", 0),
        ("d1.jpg", 0),
    ]
    assert skip.count("skip_image", "class folder not in the class list") == 2  # zebra's images
    assert skip.count("skip_image", "outside a class folder") == 1  # loose.png; notes.txt is ignored
    with pytest.raises(DataError, match="loose.png: image outside a class folder"):
        parser.parse(["dog", "cat"], IssueLog("error"))
    (root / "train" / "loose.png").rename(tmp_path / "loose.png")
    with pytest.raises(DataError, match=r"zebra/z0.png: class folder not in the class list \(folder 'zebra'\)"):
        parser.parse(["dog", "cat"], IssueLog("error"))
    (tmp_path / "loose.png").rename(root / "train" / "loose.png")
    # images in a sub-folder are counted one by one; a link to a file that is gone is a missing image
    for i in range(3):
        _png(root / "train" / "dog" / "more" / "deeper" / f"m{i}.png")
    (root / "train" / "cat" / "gone.jpg").symlink_to(tmp_path / "nowhere.jpg")
    nested = IssueLog("skip")
    parser.parse(["dog", "cat"], nested)
    assert nested.count("skip_image", "image in a sub-folder of a class folder") == 3
    assert nested.count("skip_image", "missing image (a broken link)") == 1
    shutil.rmtree(root / "train" / "dog" / "more")
    (root / "train" / "cat" / "gone.jpg").unlink()
    (tmp_path / "classes.txt").write_text("# darknet order\ndog\n\ncat\n")
    assert read_class_file(tmp_path / "classes.txt") == ["dog", "cat"]
    dm = ClassificationDataModule(str(root), class_file=str(tmp_path / "classes.txt"), img_size=32, on_error="skip")
    dm.setup("fit")
    assert dm.class_names == ["dog", "cat"] and len(dm.datasets["train"]) == 5 and len(dm.datasets["val"]) == 2
    assert "3 skipped images" in dm.issue_summary()
    # a batch: the samples' pixels, NHWC-strided (no per-sample transposing copy), labels in order
    ds = dm.datasets["val"]
    samples = [ds[i] for i in range(len(ds))]
    batch = dm.collate_fn()(samples)
    assert batch["images"].shape == (2, 3, 32, 32) and batch["images"].stride(1) == 1
    assert torch.equal(batch["images"], torch.stack([s["image"].contiguous() for s in samples]))
    assert batch["labels"].tolist() == [s["label"] for s in samples]


def test_class_folders_as_people_have_them(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """An audit's own datasets: a class folder written decomposed in val (a macOS archive) and composed in train is
    one class (val lost it); an empty class folder is no class (it became a trained class with no image); .jfif /
    .jpe photos are read and other files are named in the log (they were dropped silently); a test/ folder of
    class folders is the test split when data.test_split is null (it tested on val); the classes are logged with
    their training images; a validation split that is the training folder is a warning."""
    composed, decomposed = "Pl\u00e4ttchen", "Pla\u0308ttchen"
    root = tmp_path / "ds"
    for split, name in (("train", composed), ("val", decomposed), ("test", composed)):
        _png(root / split / name / "a.png", 30)
        _png(root / split / "cat" / "b.png", 200)
    _png(root / "train" / "cat" / "c.jfif", 90)
    _png(root / "train" / "cat" / "d.jpe", 95)
    (root / "train" / "cat" / "e.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    (root / "train" / "Empty").mkdir()
    dm = ClassificationDataModule(str(root), img_size=32, batch_size=2, num_workers=0)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        assert dm.class_names == [composed, "cat"]
        dm.setup("fit")
        dm.setup("test")
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "class folders without an image left out of the classes: ['Empty']" in log
    assert [r.label for r in dm.datasets["val"].records] == [0, 1]  # the decomposed folder is class 0
    assert sorted(r.path.name for r in dm.datasets["train"].records) == ["a.png", "b.png", "c.jfif", "d.jpe"]
    assert "1 files without an image extension (.heic) left out, e.g. ['cat/e.heic']" in log
    assert f"0 {composed}: 1, 1 cat: 3" in log and "from the sorted folder names of" in log
    assert dm.splits["test"] == "test" and "data.test_split=null:" in log
    assert all(r.path.parts[-3] == "test" for r in dm.datasets["test"].records)
    caplog.clear()
    same = ClassificationDataModule(str(root), val_split="train", img_size=32, num_workers=0)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        same.setup("fit")
    assert any("data.val_split=train is the training folder" in r.getMessage() for r in caplog.records)


def test_the_class_order_does_not_depend_on_how_the_folder_names_are_encoded(tmp_path: Path) -> None:
    """'Pläte' and 'Plb': composed, 'ä' sorts after 'b' (['Plb', 'Pläte']); decomposed, as a macOS archive writes
    it ('a' + a combining mark), it sorted before ('Pla' < 'Plb'): a checkpoint of one copy was refused on the
    other. Both give the composed names' order."""
    composed, decomposed = "Pl\u00e4te", "Pla\u0308te"
    orders = []
    for form, name in (("c", composed), ("d", decomposed)):
        root = tmp_path / form
        for split in ("train", "val"):
            _png(root / split / name / "a.png", 30)
            _png(root / split / "Plb" / "b.png", 200)
        orders.append(ClassificationDataModule(str(root), img_size=32, num_workers=0).class_names)
    assert orders == [["Plb", composed], ["Plb", composed]]


def test_class_files_as_people_have_them(tmp_path: Path) -> None:
    """A class file saved with a byte-order mark (Windows) read its first class as '\\ufeffcat'; ImageNet's
    LOC_synset_mapping.txt (``<wnid> <description>``) names the folders by its first words; a file naming other
    classes than the folders says to fix the file or drop data.class_file (it pointed at data=imagenet, set)."""
    root = _folder(tmp_path / "ds")
    (tmp_path / "bom.txt").write_bytes("cat\ndog\nzebra\n".encode("utf-8-sig"))
    assert read_class_file(tmp_path / "bom.txt") == ["cat", "dog", "zebra"]
    (tmp_path / "synsets.txt").write_text("dog domestic dog, Canis familiaris\ncat house cat\nzebra zebra\n")
    dm = ClassificationDataModule(str(root), class_file=str(tmp_path / "synsets.txt"), img_size=32, num_workers=0)
    assert dm.class_names == ["dog", "cat", "zebra"]
    (tmp_path / "other.txt").write_text("n01\nn02\nn03\n")
    other = ClassificationDataModule(str(root), class_file=str(tmp_path / "other.txt"), img_size=32, num_workers=0)
    with pytest.raises(ValueError, match=r"lists other names than the class folders: fix the file, or "):
        other.setup("fit")


def test_flat_splits_with_labels_files(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Layouts without class folders: Kaggle's ImageNet (ILSVRC/Data/CLS-LOC/{train/<wnid>, val/ flat},
    LOC_val_solution.csv three folders up: ImageId without extension, PredictionString whose first word is the
    wnid) reads val's classes from the CSV it finds; a Kaggle `filename,label` CSV over one folder of images shared
    by train and val; a text list of class indices (Caffe's val.txt). They failed with 'sort them into one folder
    per class' (and a CSV listing with 'no class folders')."""
    top = tmp_path / "kaggle"
    root = top / "ILSVRC" / "Data" / "CLS-LOC"
    for wnid, value in (("n01", 20), ("n02", 220)):
        for i in range(2):
            _png(root / "train" / wnid / f"{wnid}_{i}.JPEG", value)
    for i, value in enumerate((25, 215, 30)):
        _png(root / "val" / f"ILSVRC2012_val_{i:08d}.JPEG", value)
    (top / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n02 10 20 30 40 n02 1 2 3 4\n"
        "ILSVRC2012_val_00000000,n01 5 6 7 8\n"
        "ILSVRC2012_val_00000003,n01 1 1 2 2\n"  # no such image
    )
    dm = ClassificationDataModule(str(root), img_size=32, batch_size=2, num_workers=0)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm.setup("fit")
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert dm.class_names == ["n01", "n02"] and "their classes from" in log
    val = dm.datasets["val"].records
    assert [(r.path.name, r.label) for r in val] == [
        ("ILSVRC2012_val_00000001.JPEG", 1),
        ("ILSVRC2012_val_00000000.JPEG", 0),
    ]
    assert dm.issues.count("skip_image", "missing image file (named in the labels file)") == 1
    assert "1 images not named in the labels file, not used: ['ILSVRC2012_val_00000002.JPEG']" in log
    assert int(next(iter(dm.val_dataloader()))["labels"][0]) == 1

    flat = tmp_path / "csv"
    for i in range(6):
        _png(flat / "images" / f"img{i}.png", 40 * i)
    (flat / "train.csv").write_text("filename,label\n" + "".join(f"img{i}.png,{'ab'[i % 2]}\n" for i in range(4)))
    (flat / "val.txt").write_text("img4.png 0\nimg5 1\n")  # class indices, a name without its extension
    dm = ClassificationDataModule(
        str(flat),
        train_split="images",
        val_split="images",
        img_size=32,
        num_workers=0,
        labels_files={"train": "train.csv", "val": "val.txt"},
    )
    dm.setup("fit")
    assert dm.class_names == ["a", "b"]
    assert [r.label for r in dm.datasets["train"].records] == [0, 1, 0, 1]
    assert [(r.path.name, r.label) for r in dm.datasets["val"].records] == [("img4.png", 0), ("img5.png", 1)]
    assert read_labels_file(flat / "train.csv")[1] == ("img1.png", "b")


def _devkit_meta(path: Path, rows: list[tuple[int, str, int]]) -> None:
    """An ImageNet devkit ``meta.mat``: a ``synsets`` struct array of (ILSVRC2012_ID, WNID, num_children) rows
    (the devkit's other fields too; inner WordNet nodes have ids above 1000 and children)."""
    from scipy.io import savemat

    fields = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("gloss", "O"), ("num_children", "O")]
    table = np.array([(i, w, f"words {w}", "", c) for i, w, c in rows], dtype=fields)
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"synsets": table})


def test_imagenet_devkit_ground_truth(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """image-net.org's layout: class folders for train, a flat val/ and the devkit unpacked beside it. The devkit's
    ground truth holds its own class ids, one a line for ILSVRC2012_val_<line>; its meta.mat maps them to wnids in
    an order that is not the sorted wnids' (id 1 is n03 here, the last folder): read as indices of the sorted
    folders, every label would be wrong. Before: 'sort them into one folder per class'."""
    root = tmp_path / "imagenet"
    for wnid, value in (("n01", 20), ("n02", 120), ("n03", 220)):
        _png(root / "train" / wnid / f"{wnid}_0.JPEG", value)
    for n in (1, 2, 3, 4):
        _png(root / "val" / f"ILSVRC2012_val_{n:08d}.JPEG", 60 * n)
    data = root / "ILSVRC2012_devkit_t12" / "data"
    _devkit_meta(data / "meta.mat", [(1, "n03", 0), (2, "n01", 0), (3, "n02", 0), (1001, "n99", 3)])
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n3\n2\n1\n\n")
    assert read_devkit_classes(data / "meta.mat") == {1: "n03", 2: "n01", 3: "n02", 1001: "n99"}
    dm = ClassificationDataModule(str(root), img_size=32, batch_size=4, num_workers=0)
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        dm.setup("fit")
    assert dm.class_names == ["n01", "n02", "n03"]
    assert [(r.path.name, r.label) for r in dm.datasets["val"].records] == [
        ("ILSVRC2012_val_00000001.JPEG", 2),
        ("ILSVRC2012_val_00000002.JPEG", 1),
        ("ILSVRC2012_val_00000003.JPEG", 0),
        ("ILSVRC2012_val_00000004.JPEG", 2),
    ]
    log = "\n".join(r.getMessage() for r in caplog.records)
    assert "ImageNet's devkit ground truth, 4 images" in log and "their classes from" in log
    (data / "meta.mat").unlink()  # the ids alone cannot be mapped: said, with the file it needs
    with pytest.raises(FileNotFoundError, match=r"only the devkit's meta.mat maps to wnids: none beside it"):
        read_labels_file(data / "ILSVRC2012_validation_ground_truth.txt")
    _devkit_meta(data / "meta.mat", [(1, "n03", 0)])
    with pytest.raises(ValueError, match=r"class ids \[2, 3\] are not in"):
        read_labels_file(data / "ILSVRC2012_validation_ground_truth.txt")
    # a line left blank would shift every label after it (line n labels image n): refused, naming the line
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("1\n3\n\n2\n1\n")
    with pytest.raises(ValueError, match=r"lines \[3\] hold no class id"):
        read_labels_file(data / "ILSVRC2012_validation_ground_truth.txt")
    (data / "meta.mat").write_bytes(b"MATLAB 5.0 truncated")  # a damaged download: SciPy's own error, named
    with pytest.raises(ValueError, match=r"meta.mat: not the ImageNet devkit's class table"):
        read_devkit_classes(data / "meta.mat")


def test_corrupt_and_missing_images(tmp_path: Path) -> None:
    root = _folder(tmp_path)
    (root / "train" / "cat" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    shutil.rmtree(root / "train" / "zebra")
    (root / "train" / "loose.png").unlink()
    dm = ClassificationDataModule(str(root), img_size=32, batch_size=8, num_workers=0, on_error="skip")
    assert dm.class_names == ["cat", "dog"]
    dm.setup("fit")
    (root / "train" / "dog" / "d1.jpg").unlink()  # vanishes after the scan
    batch = next(iter(dm.val_dataloader()))
    assert batch["images"].dtype == torch.uint8 and batch["images"].shape == (2, 3, 32, 32)
    ds = dm.datasets["train"]
    samples = [ds[i] for i in range(len(ds))]
    assert sum(s is None for s in samples) == 2  # bad.jpg and d1.jpg
    batch = dm.train_dataloader().collate_fn(samples)
    assert batch["labels"].tolist() == [0, 0, 0, 1] and len(batch["paths"]) == 4
    assert "train: 2 unreadable images (2 skipped loads)" in dm.issue_summary()
    assert sum(ds[i] is None for i in range(len(ds))) == 2  # a second epoch: the same two images, two more loads
    assert "train: 2 unreadable images (4 skipped loads)" in dm.issue_summary()
    strict = ClassificationDataModule(str(root), img_size=32, on_error="error")
    strict.setup("fit")
    bad = next(i for i, r in enumerate(strict.datasets["train"].records) if r.path.name == "bad.jpg")
    with pytest.raises(DataError, match="bad.jpg"):
        strict.datasets["train"][bad]


def test_stratified_subset_keeps_every_class() -> None:
    recs = [ClassificationRecord(Path(f"{i}"), lab) for i, lab in enumerate([0, 0, 0, 1, 1, 2])]
    assert [r.label for r in stratified_subset(recs, 3)] == [0, 1, 2]
    assert [str(r.path) for r in stratified_subset(recs, 5)] == ["0", "1", "3", "4", "5"]


# -------------------------------------------------------------------------------------------------- transforms
def test_darknet_augment_geometry() -> None:
    # 90 degrees, scale 1, no offset, 4 x 4: u = x - 2, v = y - 2 -> (rx, ry) = (-v + 2, u + 2) = (4 - y, x)
    m = darknet_augment_matrix(4, 4, 4, scale=1.0, aspect=1.0, rad=math.pi / 2, dx=0.0, dy=0.0)
    for x, y in [(0, 0), (1, 3), (3, 2)]:
        assert m @ np.array([x, y, 1.0]) == pytest.approx([4 - y, x])
    # no rotation, aspect 1, shorter side kept: the identity
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    aug = DarknetRandomAugment(32, 32, 32, angle=0.0, aspect=1.0)
    aug.set_random_seed(0)
    assert np.array_equal(aug(image=img)["image"], img)
    out = ClassificationTransform(True, 32)(np.zeros((50, 70, 3), np.uint8))
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8


def test_eval_resize_center_crop() -> None:
    # columns encode x (value 2x); 100 x 50 -> shorter side 32 -> 64 x 32, centre crop starts at column 16,
    # whose centre samples source x = (16 + 0.5) * 100 / 64 - 0.5 = 25.28 (value 50.6)
    img = np.broadcast_to((np.arange(100) * 2).astype(np.uint8)[None, :, None], (50, 100, 3)).copy()
    out = resize_center_crop(img, 32)
    assert out.shape == (32, 32, 3)
    assert abs(float(out[:, 0].mean()) - 50.6) < 1.0


# ------------------------------------------------------------------------------------------------------- crops
def test_crop_windows() -> None:
    boxes = np.array([[10, 20, 30, 60], [90, 0, 100, 10], [0, 0, 100, 50]], np.float32)
    assert crop_windows(boxes[:1], 100, 100, 0.25).tolist() == [[0, 10, 60, 70]]  # side 60, moved inside
    assert crop_windows(boxes[1:2], 100, 50, 0.0).tolist() == [[90, 0, 100, 10]]
    assert crop_windows(boxes[2:], 100, 50, 0.15).tolist() == [[25, 0, 75, 50]]  # side capped at 50


@pytest.fixture(scope="module")
def mini_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four BCCD images (00338: one zero-area box) in a VOC tree with train / val / test splits."""
    root = tmp_path_factory.mktemp("voc")
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True)
    for split, ids in MINI_SPLITS.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            shutil.copy(BCCD / "Annotations" / f"{i}.xml", root / "Annotations")
            shutil.copy(BCCD / "JPEGImages" / f"{i}.jpg", root / "JPEGImages")
    return root


def _expected_counts(voc: Path) -> dict[str, dict[str, int]]:
    """Per split and class: the XML objects with a positive extent (read independently of the parser)."""
    out = {}
    for split, ids in MINI_SPLITS.items():
        counts = dict.fromkeys(CLASSES, 0)
        for i in ids:
            for obj in ET.parse(voc / "Annotations" / f"{i}.xml").getroot().iter("object"):
                b = [float(obj.findtext(f"bndbox/{k}")) for k in ("xmin", "ymin", "xmax", "ymax")]
                if b[2] > b[0] and b[3] > b[1]:
                    counts[obj.findtext("name").strip()] += 1
        out[split] = counts
    return out


def test_make_crops(mini_voc: Path, tmp_path: Path) -> None:
    make_crops_main = load_script("make_crops").main
    expected = _expected_counts(mini_voc)
    assert expected["train"]["RBC"] == 19 + 12  # 00338's zero-area RBC dropped
    out_a = tmp_path / "a"
    counts = make_crops_main(["--source", str(mini_voc), "--out", str(out_a), "--side", "48"])
    assert counts == expected
    for split, per in expected.items():
        for c, n in per.items():
            files = sorted((out_a / split / c).glob("*.jpg"))
            assert len(files) == n
    sample = next((out_a / "train" / "WBC").glob("*.jpg"))
    assert Image.open(sample).size == (48, 48) and sample.stem.startswith("BloodImage_")
    # deterministic: a second build is byte-identical; idempotent: a complete folder is left alone
    out_b = tmp_path / "b"
    build_crops(mini_voc, out_b, CLASSES, side=48)
    files_a = sorted(p.relative_to(out_a) for p in out_a.rglob("*.jpg"))
    assert files_a == sorted(p.relative_to(out_b) for p in out_b.rglob("*.jpg"))
    assert all((out_a / f).read_bytes() == (out_b / f).read_bytes() for f in files_a)
    mtime = sample.stat().st_mtime_ns
    assert build_crops(mini_voc, out_a, CLASSES, side=48) == expected
    assert sample.stat().st_mtime_ns == mtime
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        build_crops(mini_voc, tmp_path / "foreign", CLASSES)


# --------------------------------------------------------------------------------------------------- the module
def _tiny(width: float = 0.125, classes: int = 3) -> Darknet19Classifier:
    return Darknet19Classifier(Darknet19(width=width, bn_momentum=0.1), classes)


def test_topk_metrics_and_table() -> None:
    module = ClassifierModule(_tiny(classes=4), top_k=2, class_names=list("abcd"))
    assert module.k == 2
    logits = torch.tensor([[4.0, 3, 2, 1], [4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]])
    labels = torch.tensor([0, 1, 0, 1])  # top-1 right: row 0; top-2 right: rows 0, 1
    module.test_top1.update(logits, labels)
    module.test_topk.update(logits, labels)
    module.test_loss.update(torch.ones(4))
    module.test_confusion.update(logits, labels)
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    module.on_test_epoch_end()
    res = module.test_results
    assert res["top1"] == pytest.approx(0.25) and res["top5"] == pytest.approx(0.5) and res["top5_k"] == 2
    assert res["per_class"]["a"] == {"accuracy": 0.5, "num_images": 2} and math.isnan(res["per_class"]["d"]["accuracy"])
    assert "| a | 0.5000 | 2 |" in format_accuracy_table(res["per_class"], list("abcd"))
    three = ClassifierModule(_tiny(classes=3))  # top-5 with 3 classes: k clipped, no crash
    assert three.k == 3 and three.monitor == "val/top1"


@pytest.fixture(scope="module")
def fitted(mini_voc: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ClassifierModule, Path]:
    """A few Lightning steps on crops that the data module cuts itself (prepare_data); the best checkpoint."""
    out = tmp_path_factory.mktemp("fit")
    dm = ClassificationDataModule(
        str(out / "crops"),
        test_split="test",
        class_names=CLASSES,
        img_size=32,
        batch_size=4,
        num_workers=0,
        build_from=str(mini_voc),
        crops={"side": 48},
    )
    assert dm.num_classes == 3 and not (out / "crops").exists()  # explicit classes: nothing built yet
    module = ClassifierModule(_tiny(), lr=0.01, burn_in=2, class_names=dm.class_names)
    ckpt_cb = pl.callbacks.ModelCheckpoint(
        dirpath=out / "ckpt", filename="best", monitor=ClassifierModule.monitor, mode="max"
    )
    trainer = pl.Trainer(
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        limit_test_batches=2,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[ckpt_cb],
        use_distributed_sampler=False,
    )
    trainer.fit(module, datamodule=dm)
    assert (out / "crops" / "crops.json").is_file()  # cut by prepare_data
    trainer.test(module, datamodule=dm, ckpt_path=ckpt_cb.best_model_path)
    return module, Path(ckpt_cb.best_model_path)


def test_fit_and_test(fitted: tuple[ClassifierModule, Path]) -> None:
    module, ckpt = fitted
    assert ckpt.is_file() and int(module.seen) == 12  # 3 batches of 4
    res = module.test_results
    assert 0.0 <= res["top1"] <= 1.0 and res["top5"] == 1.0  # top-3 of 3 classes is always right
    assert set(res["per_class"]) == set(CLASSES) and res["num_images"] == 8
    assert torch.load(ckpt, weights_only=False)["yolo9000_model_config"] is None  # set by the build


def test_backbone_handoff_to_detector(fitted: tuple[ClassifierModule, Path]) -> None:
    module, ckpt = fitted
    det = YOLOv2(Darknet19(width=0.125, bn_momentum=0.1), 3, [[1.0, 1.0], [2.0, 2.0]])
    load_pretrained(det.backbone, str(ckpt), part="backbone")
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    for k, v in det.backbone.state_dict().items():
        assert torch.equal(v, saved[f"model.backbone.{k}"]), k
    wide = YOLOv2(Darknet19(width=0.25), 3, [[1.0, 1.0]])
    with pytest.raises(ValueError, match=r"checkpoint \(\d+, \d+, 3, 3\) vs model \(\d+, \d+, 3, 3\)") as err:
        load_pretrained(wide.backbone, str(ckpt), part="backbone")
    # the checkpoint's own width and the key that builds the model at it; the mismatches listed, not all ~40
    said = str(err.value)
    assert "this model is width 0.25, the checkpoint's network width 0.125" in said
    assert "build it with model.net.backbone.width=0.125" in said and "more" in said and said.count(" vs model ") == 6


def test_bn_checkpoint_folds_into_a_network_without_bn(tmp_path: Path) -> None:
    """Table 2's YOLO column (no BN) starts from the batch-norm classifier: each BN is folded into its conv, so the
    BN-free backbone computes what the checkpoint computes in eval mode; loading it unfolded is impossible."""
    torch.manual_seed(0)
    src = Darknet19(width=0.125)
    for m in src.modules():  # non-trivial statistics, as a trained network's
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    ckpt = tmp_path / "cls.ckpt"
    torch.save({"state_dict": {f"model.backbone.{k}": v for k, v in src.state_dict().items()}}, ckpt)
    plain = Darknet19(batch_norm=False, width=0.125)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        before = plain(x)["c5"]
        load_pretrained(plain, str(ckpt), part="backbone")
        want, got = src.eval()(x)["c5"], plain.eval()(x)["c5"]
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(before, want, atol=1e-3)  # the load changed the network
    conv_bn = [m for m in src.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    first = next(m for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
    bn = conv_bn[0]
    scale = bn.weight / torch.sqrt(bn.running_var + 1e-5)  # hand-computed fold of the first layer
    torch.testing.assert_close(first.bias.detach(), (bn.bias - bn.running_mean * scale).detach())


def test_darknet_bn_checkpoint_folds_with_darknets_formula(tmp_path: Path) -> None:
    """A converted darknet network (``bn_style: darknet``: ``(x - mean) / (sqrt(var) + 1e-6)``) folds with its own
    formula: with small variances PyTorch's ``sqrt(var + 1e-5)`` would change the features by percents."""
    torch.manual_seed(1)
    src = Darknet19(width=0.125, bn_style="darknet")
    bns = [m for m in src.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for i, m in enumerate(bns):
        m.running_mean.uniform_(-0.5, 0.5)
        m.running_var.uniform_(1e-4, 1e-3) if i == 0 else m.running_var.uniform_(0.5, 2.0)  # the first: where the
        m.weight.data.uniform_(0.5, 1.5)  # two formulas differ (by up to 5 %)
    state = {f"model.backbone.{k}": v for k, v in src.state_dict().items()}
    x = torch.rand(2, 3, 64, 64)
    bn, conv = bns[0], next(m for m in src.modules() if isinstance(m, torch.nn.Conv2d))
    by_hand = {  # the first layer's folded weights, each formula computed here
        True: conv.weight * (bn.weight / (bn.running_var.sqrt() + 1e-6)).view(-1, 1, 1, 1),
        False: conv.weight * (bn.weight / (bn.running_var + 1e-5).sqrt()).view(-1, 1, 1, 1),
    }
    assert not torch.allclose(by_hand[True], by_hand[False], rtol=5e-3)
    with torch.no_grad():
        want = src.eval()(x)["c5"]
        for marked in (True, False):
            config = {"net": {"backbone": {"bn_style": "darknet"}}} if marked else {}  # as convert.py saves it
            torch.save({"state_dict": state, "yolo9000_model_config": config}, tmp_path / "dk.ckpt")
            plain = Darknet19(batch_norm=False, width=0.125)
            load_pretrained(plain, str(tmp_path / "dk.ckpt"), part="backbone")
            first = next(m for m in plain.modules() if isinstance(m, torch.nn.Conv2d))
            torch.testing.assert_close(first.weight, by_hand[marked].detach(), rtol=1e-5, atol=1e-7)
            if marked:
                torch.testing.assert_close(plain.eval()(x)["c5"], want, rtol=1e-4, atol=1e-5)


def test_a_detector_checkpoint_is_no_classifier_start(tmp_path: Path) -> None:
    target = "yolo9000.modules.detector.DetectorModule"
    torch.save({"yolo9000_model_config": {"_target_": target}, "state_dict": {}}, tmp_path / "det.ckpt")
    with pytest.raises(ValueError, match="det.ckpt: a detector checkpoint; a classifier starts from"):
        load_pretrained(_tiny(), str(tmp_path / "det.ckpt"), class_names=["a", "b", "c"])


def test_init_ckpt(fitted: tuple[ClassifierModule, Path]) -> None:
    module, ckpt = fitted
    again = ClassifierModule(_tiny(), init_ckpt=str(ckpt))
    saved = torch.load(ckpt, weights_only=False)["state_dict"]
    assert all(torch.equal(v, saved[f"model.{k}"]) for k, v in again.model.state_dict().items())
    with pytest.raises(ValueError, match=r"head\.conv\.weight: checkpoint \(\d+, \d+, 1, 1\) vs model"):
        load_pretrained(_tiny(classes=5), str(ckpt))
    with pytest.raises(ValueError, match=r"backbone\.stage1\.\d+\.\S+: checkpoint \("):
        ClassifierModule(_tiny(width=0.25), init_ckpt=str(ckpt))


def test_a_fine_tune_below_its_starts_size_is_a_warning(
    fitted: tuple[ClassifierModule, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The README's pretrain -> finetune_448 pair on data=imagenet ran the "448" fine-tune at 128 px after a 224
    pretraining (the experiment fixes the CPU crops' 128), silently: a start trained at a larger size is a warning
    naming both sizes and data.img_size to set; a fine-tune at twice the size (or any larger) is not."""
    _, ckpt = fitted
    saved = torch.load(ckpt, weights_only=False)
    saved["hyper_parameters"]["build_info"] = {"class_names": CLASSES, "eval_size": 224}
    torch.save(saved, tmp_path / "at224.ckpt")
    for size, warned in ((128, True), (448, False), (224, False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="yolo9000"):
            ClassifierModule(_tiny(), init_ckpt=str(tmp_path / "at224.ckpt"), build_info={"eval_size": size})
        msgs = [r.getMessage() for r in caplog.records if "was trained at" in r.getMessage()]
        assert bool(msgs) == warned, (size, msgs)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        ClassifierModule(_tiny(), init_ckpt=str(tmp_path / "at224.ckpt"), build_info={"eval_size": 128})
    msg = next(r.getMessage() for r in caplog.records if "was trained at" in r.getMessage())
    assert "trained at 224 px and this run trains at 128" in msg and "data.img_size=448" in msg


# ----------------------------------------------------------------------------------------------------- configs
def _compose(*overrides: str):  # noqa: ANN202
    return compose_config("train", *overrides)


def test_experiment_configs(fitted: tuple[ClassifierModule, Path]) -> None:
    from omegaconf import OmegaConf

    from yolo9000.build import instantiate_module

    cfg = _compose("experiment=pretrain_darknet19")
    assert cfg.data.img_size == 64 and cfg.data.build_from == "./data/bccd" and cfg.task_name == "pretrain"
    assert cfg.callbacks.model_checkpoint.monitor == "val/top1" and cfg.callbacks.prediction_images is None
    assert cfg.data.augment.angle == 7.0 and cfg.data.augment.saturation == 0.75
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    model_cfg["net"]["num_classes"], model_cfg["class_names"] = 3, CLASSES
    module = instantiate_module(model_cfg)
    assert isinstance(module, ClassifierModule) and module.model.backbone.width == 0.25
    assert module.hparams.optimizer == "adam" and module.hparams.lr_policy == "poly" and module.model_config

    fine = _compose("experiment=finetune_448", "model.net.backbone.width=0.125", f"model.init_ckpt='{fitted[1]}'")
    assert fine.data.img_size == 128 and fine.model.optimizer == "sgd" and fine.model.lr == 0.001
    fine_cfg = OmegaConf.to_container(fine.model, resolve=True)
    fine_cfg["net"]["num_classes"] = 3
    tuned = instantiate_module(fine_cfg)
    saved = torch.load(fitted[1], weights_only=False)["state_dict"]
    assert torch.equal(tuned.model.head.conv.weight, saved["model.head.conv.weight"])
    imagenet = _compose("experiment=pretrain_darknet19", "data=imagenet", "model=darknet19_cls")
    if "IMAGENET_ROOT" not in os.environ:
        assert imagenet.data.root == "./data/imagenet"
    assert imagenet.data.img_size == 224 and imagenet.model.net.backbone.width == 1.0
    assert imagenet.model.optimizer == "sgd" and imagenet.model.lr == 0.1 and imagenet.model.burn_in == 1000


def test_checkpoint_classes_are_checked_or_reordered(fitted: tuple[ClassifierModule, Path]) -> None:
    """A classifier checkpoint meets data with other classes: init_ckpt with the same classes in another order gets
    its head rows reordered; other classes, a resumed / tested checkpoint on other data: an error naming both."""
    import copy

    module, ckpt = fitted
    saved = list(torch.load(ckpt, weights_only=False)["hyper_parameters"]["class_names"])
    head = torch.load(ckpt, weights_only=False)["state_dict"]["model.head.conv.weight"]
    order = saved[::-1]
    model = copy.deepcopy(module.model)
    load_pretrained(model, str(ckpt), class_names=order)
    assert torch.equal(model.state_dict()["head.conv.weight"], head.flip(0))  # row i = class order[i]
    with pytest.raises(ValueError, match="trained on the classes"):
        load_pretrained(copy.deepcopy(module.model), str(ckpt), class_names=["a", "b", "c"])
    run_folder.check_checkpoint_classes(ckpt, saved)
    with pytest.raises(ValueError, match="was trained on the classes"):
        run_folder.check_checkpoint_classes(ckpt, order)
    with pytest.raises(ValueError, match=r"model.init_ckpt is required by this experiment: add model.init_ckpt="):
        run_folder.check_required(compose_config("train", "experiment=finetune_448"))
    hires = compose_config("train", "experiment=ablation_hires_classifier", "classifier=448px")
    with pytest.raises(ValueError, match=r"ckpt_448 is required by this experiment: add \+ckpt_448=<path>"):
        run_folder.check_required(hires)  # a key no config defines: with +, before the data and priors are built
    run_folder.check_required(
        compose_config("train", "experiment=ablation_hires_classifier", "classifier=448px", "+ckpt_448=x")
    )


def test_imagefolder_layout_errors_say_what_is_wrong(tmp_path: Path) -> None:
    """Class folders that are not the configured classes, loose images without class folders, and a missing test
    split are named at setup (not after training)."""
    root = _folder(tmp_path / "ds")
    dm = ClassificationDataModule(str(root), class_names=["RBC", "WBC", "Platelets"], img_size=32, on_error="skip")
    with pytest.raises(ValueError, match=r"class folders \['cat', 'dog', 'zebra'\].*data.class_names=null"):
        dm.setup("fit")
    flat = tmp_path / "flat"
    _png(flat / "train" / "cat" / "a.png")
    for i in range(3):
        _png(flat / "val" / f"v{i}.png")
    dm = ClassificationDataModule(str(flat), img_size=32, on_error="skip")
    with pytest.raises(ValueError, match="3 images lie directly in it"):
        dm.setup("fit")


def test_train_only_folder_and_crop_config_on_own_folder_say_which_key(tmp_path: Path) -> None:
    """A dataset with only a train folder: the missing val folder names data.val_split, the folders there and the
    setting that works; val_split=null stops at setup (the module validates every epoch), not inside fit. The crop
    config pointed at class folders of one's own refuses to cut crops into them and names data=imagenet."""
    root = tmp_path / "only_train"
    _png(root / "train" / "cat" / "a.png")
    _png(root / "train" / "dog" / "b.png")
    dm = ClassificationDataModule(str(root), img_size=32, on_error="skip")
    with pytest.raises(FileNotFoundError, match=r"data.val_split=val: no folder .*holds \['train'\].*val_split=train"):
        dm.setup("fit")
    gone = ClassificationDataModule(str(tmp_path / "nowhere"), img_size=32, on_error="skip")
    with pytest.raises(FileNotFoundError, match=r"nowhere does not exist\); set data.root to the dataset's folder$"):
        gone.setup("fit")  # no folders to choose a split from: the root is what to set
    dm = ClassificationDataModule(str(root), img_size=32, val_split=None, on_error="skip")
    with pytest.raises(ValueError, match="data.val_split is null"):
        dm.setup("fit")
    dm = ClassificationDataModule(str(root), img_size=32, val_split="train", test_split="train", on_error="skip")
    dm.setup("fit")  # the documented way out
    assert len(dm.datasets["val"]) == 2
    crops = ClassificationDataModule(str(root), img_size=32, build_from=str(BCCD))
    with pytest.raises(FileExistsError, match="holds other files than object crops.*data=imagenet data.root"):
        crops.prepare_data()


def test_classification_records_are_packed() -> None:
    """A classification dataset's records are one byte array of paths and an array of labels (shared by forked
    loader workers; a list was ~680 bytes of objects an image, copied into each worker), given back exactly."""
    import gc

    from yolo9000.data.imagefolder import PackedClassificationRecords

    given = [ClassificationRecord(Path(f"train/n{i % 7:08d}/ü_{i}.JPEG"), i % 7) for i in range(5000)]
    gc.collect()
    before = len(gc.get_objects())
    packed = PackedClassificationRecords(given)
    assert list(packed) == given and packed[-1] == given[-1] and packed[10:12] == given[10:12]
    del given
    gc.collect()
    assert len(gc.get_objects()) - before < 50 - 5000  # the records' objects are gone, the packed store remains
    assert packed.labels.tolist()[:8] == [0, 1, 2, 3, 4, 5, 6, 0] and packed[12].path.name == "ü_12.JPEG"


def test_a_full_width_darknet_file_into_a_narrow_backbone_is_refused(tmp_path: Path) -> None:
    """``model.backbone_ckpt=darknet19.weights`` (darknet's width 1) on the CPU detector (width 0.25) read the first
    floats of the file as the narrow network's layers, out of step (negative variances: nan outputs), with only a
    warning; the same for any file that leaves floats over and gives unusable layers. Refused, naming the file,
    and for a full-width file the key that builds the network at darknet's width."""
    from yolo9000.darknet import save_weights

    narrow = tmp_path / "narrow.weights"
    save_weights(Darknet19(width=0.25), narrow)
    with pytest.raises(ValueError, match=r"narrow\.weights: darknet weights that do not fit.*read out of step"):
        load_pretrained(Darknet19(width=0.125), narrow, part="backbone")
    full = tmp_path / "darknet19.weights"
    save_weights(Darknet19Classifier(Darknet19(width=1.0), num_classes=10), full)
    with pytest.raises(ValueError, match=r"darknet19\.weights: .*width 0\.25: .*model=yolov2"):
        load_pretrained(Darknet19(width=0.25), full, part="backbone")
    with pytest.raises(ValueError, match=r"darknet19\.weights: .*model=darknet19_cls"):  # a classifier's init_ckpt
        load_pretrained(Darknet19Classifier(Darknet19(width=0.25), num_classes=10), full)
    assert load_pretrained(Darknet19(width=1.0), full, part="backbone") == 18  # its own width: the classifier skipped
