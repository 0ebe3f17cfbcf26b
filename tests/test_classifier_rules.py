"""What a mutation audit of the classification data and metrics found untested (the predict API's cases are in
``test_api.py``):
darknet's classifier augmentation draws (crop side range, window offset, rotation sign, which axis the aspect
stretches, the flip probability, the HSV step), the eval centre crop of a tall image and ``eval_resize``, a numeric
class name in a labels file, file-name order in a class folder, the sorted classes of a flat labels file, RGB
samples, top-k accuracy over images (not averaged per class), the mean class accuracy, the softmax of
``predict_step``, and ``train/top1`` (flat and WordTree)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from yolo9000.data.classify_transforms import (
    ClassificationTransform,
    DarknetRandomAugment,
    darknet_augment_matrix,
    resize_center_crop,
)
from yolo9000.data.imagefolder import ClassificationDataModule, ImageFolderParser
from yolo9000.data.records import IssueLog
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.modules.classifier import ClassifierModule
from yolo9000.wordtree import WordTree

# augmentation off but for what a test turns on: scale 1 on a square image of the output size is the identity warp
OFF = {"angle": 0.0, "aspect": 1.0, "hue": 0.0, "saturation": 1.0, "exposure": 1.0, "flip": 0.0}
OFF_SCALE = {**OFF, "min_ratio": 1.0, "max_ratio": 1.0}


def _png(path: Path, rgb: tuple[int, int, int] = (128, 128, 128), size: tuple[int, int] = (20, 16)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), rgb, np.uint8)).save(path)


# ------------------------------------------------------------------------------ classifier augmentation
def _draws(aug: DarknetRandomAugment, h: int, w: int, n: int) -> list[np.ndarray]:
    aug.set_random_seed(0)
    return [aug.get_params_dependent_on_data({"shape": (h, w, 3)}, {})["matrix"] for _ in range(n)]


def test_darknet_aspect_stretches_x_only() -> None:
    """darknet: ``u = (x - size/2 + dx) * aspect / scale``, ``v = (y - size/2 + dy) / scale``: aspect 2 on a 4 x 4
    window at scale 1 maps (x, y) to (2 (x - 2) + 2, y): x stretched, y as it is."""
    m = darknet_augment_matrix(4, 4, 4, scale=1.0, aspect=2.0, rad=0.0, dx=0.0, dy=0.0)
    for x, y in [(0, 0), (1, 3), (3, 1)]:
        assert m @ np.array([x, y, 1.0]) == pytest.approx([2 * x - 2, y])
    # the window offset moves the sampled point by dx * aspect / scale, dy / scale
    m = darknet_augment_matrix(4, 4, 4, scale=2.0, aspect=2.0, rad=0.0, dx=1.0, dy=1.0)
    assert m @ np.array([2.0, 2.0, 1.0]) == pytest.approx([2 + 1.0, 2 + 0.5])


def test_crop_side_offset_and_rotation_span_their_ranges() -> None:
    """``randint(min_size, max_size)`` (both ends reached), a window offset anywhere in
    ``+-(w * scale / aspect - size) / 2`` (both signs) and a rotation in ``+-angle`` degrees (both signs), read back
    from the warp matrices of 400 draws (aspect 1: m = R(rad) / scale, then the offset)."""
    h, w, size = 60, 80, 32
    aug = DarknetRandomAugment(size, 40, 44, angle=0.0, aspect=1.0)
    sides, offs_x, offs_y = set(), [], []
    for m in _draws(aug, h, w, 400):
        scale = 1.0 / m[1, 1]
        sides.add(round(scale * min(h, w)))
        dx = (m[0, 2] - w / 2) / m[0, 0] + size / 2  # m[0, 2] = (dx - size / 2) / scale + w / 2
        dy = (m[1, 2] - h / 2) / m[1, 1] + size / 2
        lim_x, lim_y = (w * scale - size) / 2, (h * scale - size) / 2
        assert abs(dx) <= lim_x + 1e-6 and abs(dy) <= lim_y + 1e-6
        offs_x.append(dx / lim_x)
        offs_y.append(dy / lim_y)
    assert sides == {40, 41, 42, 43, 44}
    assert min(offs_x) < -0.8 and max(offs_x) > 0.8 and min(offs_y) < -0.8 and max(offs_y) > 0.8
    rot = DarknetRandomAugment(size, 40, 40, angle=7.0, aspect=1.0)
    degrees = [math.degrees(math.atan2(m[1, 0], m[0, 0])) for m in _draws(rot, h, w, 400)]
    assert all(abs(d) <= 7 + 1e-9 for d in degrees) and min(degrees) < -6 and max(degrees) > 6


def test_min_and_max_ratio_are_fractions_of_the_size() -> None:
    """``min_ratio`` / ``max_ratio`` times the output side are the crop's shorter-side range (darknet19.cfg: 128 and
    448 at 256)."""
    aug = ClassificationTransform(True, 256).compose().transforms[0]
    assert (aug.min_size, aug.max_size) == (128, 448)
    aug = ClassificationTransform(True, 32, {"min_ratio": 0.75, "max_ratio": 1.25}).compose().transforms[0]
    assert (aug.min_size, aug.max_size) == (24, 40)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_flip_is_the_probability_of_mirroring(flip: float) -> None:
    """With the identity warp, ``flip=1`` mirrors every sample and ``flip=0`` none."""
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t = ClassificationTransform(True, 32, {**OFF_SCALE, "flip": flip})
    for seed in range(8):
        out = t(img, seed=seed)
        assert np.array_equal(out, img[:, ::-1] if flip else img)


def test_any_one_hsv_setting_turns_the_distortion_on() -> None:
    """The HSV step runs when any of hue, saturation, exposure is on: exposure alone changes the pixels."""
    img = np.random.default_rng(0).integers(30, 200, (32, 32, 3), dtype=np.uint8)
    t = ClassificationTransform(True, 32, {**OFF_SCALE, "exposure": 0.5})
    assert any(not np.array_equal(t(img, seed=s), img) for s in range(4))
    assert np.array_equal(ClassificationTransform(True, 32, OFF_SCALE)(img, seed=0), img)  # all off: the identity


def test_eval_crop_of_a_tall_image_is_centred_vertically() -> None:
    """Rows encode y (value 2y); 50 x 100 (w x h) -> 32 x 64, the centre crop starts at row 16, whose centre
    samples source y = (16 + 0.5) * 100 / 64 - 0.5 = 25.28 (value 50.6)."""
    img = np.broadcast_to((np.arange(100) * 2).astype(np.uint8)[:, None, None], (100, 50, 3)).copy()
    out = resize_center_crop(img, 32)
    assert out.shape == (32, 32, 3) and abs(float(out[0].mean()) - 50.6) < 1.0


def test_eval_resize_enlarges_the_shorter_side_first() -> None:
    """``eval_resize=1.5`` at 32: the shorter side becomes 48, 100 x 50 -> 96 x 48, crop at (32, 8); column 0
    samples source x = (32 + 0.5) * 100 / 96 - 0.5 = 33.35 (value 66.7; 50.6 without the enlargement)."""
    img = np.broadcast_to((np.arange(100) * 2).astype(np.uint8)[None, :, None], (50, 100, 3)).copy()
    out = ClassificationTransform(False, 32, {"eval_resize": 1.5})(img)
    assert out.shape == (32, 32, 3) and abs(float(out[:, 0].mean()) - 66.7) < 1.0


# ------------------------------------------------------------------------------------------- image folders
def test_a_labels_file_class_that_is_a_class_name_wins_over_an_index(tmp_path: Path) -> None:
    """Classes named by numbers (sorted as text: 0, 1, 10, 11, 2, ...): a label ``2`` is the class named "2"
    (index 4), not index 2 (class "10"); a number naming no class is an index."""
    names = sorted(str(i) for i in range(12))
    assert names.index("2") == 4
    for i in range(2):
        _png(tmp_path / "images" / f"img{i}.png")
    parser = ImageFolderParser(tmp_path, "images")
    recs = parser.parse_labels([("img0.png", "2"), ("img1.png", "1")], names)
    assert [r.label for r in recs] == [4, 1]
    recs = parser.parse_labels([("img0.png", "1")], ["cat", "dog"])
    assert [r.label for r in recs] == [1]


def test_labels_with_spaces_and_images_listed_twice(tmp_path: Path) -> None:
    """A class label is the whole cell / the rest of the line ("golden retriever" and "golden eagle" were both cut
    to "golden": two classes merged); only ImageNet's PredictionString is cut to its first word, the wnid. An image
    listed twice with its class is used once (noted); with two classes it is left out, reported."""
    from yolo9000.data.imagefolder import read_labels_file

    (tmp_path / "l.csv").write_text(
        "filename,label\na.png,golden retriever\nb.png,  golden   eagle \n"
        "c.png,golden eagle\nc.png,golden eagle\nd.png,golden eagle\nd.png,golden retriever\n"
    )
    (tmp_path / "l.txt").write_text("a.png golden retriever\nb.png golden eagle  # a comment\n")
    (tmp_path / "loc.csv").write_text("ImageId,PredictionString\na,n01 10 20 30 40 n01 1 2 3 4\n")
    # Tiny ImageNet's val_annotations.txt (tabs, the box after the class) and a space-separated one with a score
    (tmp_path / "tiny.txt").write_text("val_0.JPEG\tn03444034\t0\t32\t44\t62\nval_1.JPEG n04067472 0.9\n")
    assert read_labels_file(tmp_path / "tiny.txt") == [("val_0.JPEG", "n03444034"), ("val_1.JPEG", "n04067472")]
    rows = read_labels_file(tmp_path / "l.csv")
    assert rows[:2] == [("a.png", "golden retriever"), ("b.png", "golden eagle")]
    assert read_labels_file(tmp_path / "l.txt") == rows[:2]
    assert read_labels_file(tmp_path / "loc.csv") == [("a", "n01")]
    for name in "abcd":
        _png(tmp_path / "images" / f"{name}.png")
    issues = IssueLog("skip")
    recs = ImageFolderParser(tmp_path, "images").parse_labels(rows, ["golden eagle", "golden retriever"], issues)
    assert [(r.path.name, r.label) for r in recs] == [("a.png", 1), ("b.png", 0), ("c.png", 0)]
    assert issues.count("note", "listed twice") == 1
    assert issues.files("skip_image", "two classes") == [str(tmp_path / "images" / "d.png")]


def test_a_class_folders_images_in_file_name_order(tmp_path: Path) -> None:
    """Records are in (folder, file name) order whatever order the file system lists them in."""
    stems = [f"{c}{i}" for i in range(4) for c in "qzamx"]  # created out of order
    for s in stems:
        _png(tmp_path / "train" / "b" / f"{s}.png")
        _png(tmp_path / "train" / "a" / f"{s}.png")
    recs = ImageFolderParser(tmp_path, "train").parse(["b", "a"], IssueLog("error"))
    want = [("a", f"{s}.png") for s in sorted(stems)] + [("b", f"{s}.png") for s in sorted(stems)]
    assert [(r.path.parent.name, r.path.name) for r in recs] == want
    assert [r.label for r in recs] == [1] * len(stems) + [0] * len(stems)


def test_the_classes_of_a_flat_training_labels_file_are_sorted(tmp_path: Path) -> None:
    """A flat training folder's classes are its labels file's class names sorted (as folder names are), not in
    the order the file first names them."""
    for i in range(4):
        _png(tmp_path / "images" / f"img{i}.png", (40 * i, 0, 0))
    (tmp_path / "train.csv").write_text("filename,label\nimg0.png,zebra\nimg1.png,cat\nimg2.png,zebra\nimg3.png,dog\n")
    dm = ClassificationDataModule(
        str(tmp_path),
        train_split="images",
        val_split="images",
        img_size=32,
        num_workers=0,
        labels_files={"train": "train.csv", "val": "train.csv"},
    )
    assert dm.class_names == ["cat", "dog", "zebra"]
    dm.setup("fit")
    assert [r.label for r in dm.datasets["train"].records] == [2, 0, 2, 1]


def test_a_val_split_whose_folders_are_no_training_class_says_so(tmp_path: Path) -> None:
    """val/ named its classes otherwise than train/ (wnids against names): "no images in the class folders" though
    they are full of images; it now names the folders and the classes they are not."""
    for name in ("RBC", "WBC"):
        _png(tmp_path / "train" / name / "a.png")
    for name in ("n09000001", "n09000002"):
        _png(tmp_path / "val" / name / "a.png")
    dm = ClassificationDataModule(str(tmp_path), img_size=32, num_workers=0)
    with pytest.raises(
        ValueError, match=r"none of its folders \['n09000001', 'n09000002'\] is a class of the class list \['RBC'"
    ):
        dm.setup("fit")


def test_samples_are_rgb(tmp_path: Path) -> None:
    """A pure red image is (255, 0, 0) in channel order in the sample and in the batch (not BGR)."""
    _png(tmp_path / "train" / "red" / "r.png", (255, 0, 0), (40, 40))
    _png(tmp_path / "train" / "blue" / "b.png", (0, 0, 255), (40, 40))
    dm = ClassificationDataModule(str(tmp_path), val_split="train", img_size=32, num_workers=0)
    dm.setup("fit")
    ds = dm.datasets["val"]
    samples = {Path(s["path"]).parent.name: s for s in (ds[i] for i in range(len(ds)))}
    for name, rgb in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        img = samples[name]["image"]
        assert img.shape == (3, 32, 32) and [int(img[c].float().mean()) for c in range(3)] == list(rgb)
    batch = dm.collate_fn()([samples["red"]])
    assert batch["images"][0, 0].min() == 255 and batch["images"][0, 2].max() == 0


# --------------------------------------------------------------------------------------------- the module
class _Fixed(nn.Module):
    """A stand-in network returning fixed logits (the head is kept: ``num_classes`` reads it)."""

    def __init__(self, logits: torch.Tensor, head: nn.Module) -> None:
        super().__init__()
        self.logits, self.head = logits, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits.clone().requires_grad_(True)


def _module(classes: int, top_k: int = 5, tree: WordTree | None = None) -> ClassifierModule:
    net = Darknet19Classifier(Darknet19(width=0.125, bn_momentum=0.1), classes)
    module = ClassifierModule(net, top_k=top_k, class_names=None if tree else list("abcd")[:classes], tree=tree)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer attached
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    return module


def test_topk_accuracy_counts_images_not_classes() -> None:
    """Top-2 over 4 images of unequal classes: right for the three images of class a, wrong for the one of b:
    3/4 (an average per class would say 1/2); top-1: rows 0 and 1 only, 2/4."""
    module = _module(4, top_k=2)
    logits = torch.tensor([[4.0, 3, 2, 1], [4, 3, 2, 1], [3, 4, 2, 1], [1, 2, 3, 4]])
    labels = torch.tensor([0, 0, 0, 1])
    module.update_metrics("test", logits, labels)
    module.on_test_epoch_end()
    res = module.test_results
    assert res["top5"] == pytest.approx(0.75) and res["top1"] == pytest.approx(0.5)


def test_mean_class_accuracy_is_over_the_classes_with_images() -> None:
    """Per class: a 1/2, b 0/2, c and d without images: the mean is (0.5 + 0) / 2, not over all four classes."""
    module = _module(4, top_k=2)
    logits = torch.tensor([[4.0, 3, 2, 1], [4, 3, 2, 1], [1, 2, 3, 4], [1, 2, 3, 4]])
    module.update_metrics("test", logits, torch.tensor([0, 1, 0, 1]))
    module.on_test_epoch_end()
    assert module.test_results["mean_class_accuracy"] == pytest.approx(0.25)


def test_predict_step_gives_each_images_class_probabilities() -> None:
    """Flat ``probs``: the softmax of each row over the classes (rows sum to 1), not over the batch."""
    module = _module(3)
    logits = torch.tensor([[0.0, 0.0, math.log(2.0)], [math.log(3.0), 0.0, 0.0]])
    module.model = _Fixed(logits, module.model.head)
    out = module.predict_step({"images": torch.zeros(2, 3, 32, 32), "paths": ["x", "y"]}, 0)
    assert torch.allclose(out["probs"], torch.tensor([[0.25, 0.25, 0.5], [0.6, 0.2, 0.2]]), atol=1e-6)
    assert out["paths"] == ["x", "y"]


def test_train_top1_flat_and_tree_by_hand() -> None:
    """``train/top1``: flat, the argmax is right for 2 of 3 images; WordTree (roots A, B; A's children a1, a2),
    the best leaf by absolute probability (a node id, not a position among the leaves) is right for 1 of the 2
    leaf labels (the internal label A does not count)."""
    flat = _module(3)
    flat.model = _Fixed(torch.tensor([[3.0, 1, 0], [0, 2, 1], [0, 1, 2]]), flat.model.head)
    out = flat.training_step({"images": torch.zeros(3, 3, 32, 32), "labels": torch.tensor([0, 1, 0])}, 0)
    assert float(out["terms"]["train/top1"]) == pytest.approx(2 / 3)
    a, a1, a2 = 0, 2, 3  # B is node 1
    tree = WordTree([-1, -1, a, a], ["A", "B", "a1", "a2"])
    module = _module(4, tree=tree)
    # row 0: P(A) .95, P(a2 | A) .73 -> best leaf a2 (id 3; position 2 among the leaves B, a1, a2); row 1: B
    logits = torch.tensor([[3.0, 0, 0, 1], [0, 3.0, 0, 0], [3.0, 0, 1, 0]])
    module.model = _Fixed(logits, module.model.head)
    out = module.training_step({"images": torch.zeros(3, 3, 32, 32), "labels": torch.tensor([a2, a1, a])}, 0)
    assert float(out["terms"]["train/top1"]) == pytest.approx(0.5)
