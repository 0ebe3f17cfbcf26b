"""Rules of the predict API (:class:`yolo9000.Detector`), its result files (:mod:`yolo9000.submission`) and
``detect.py``, against values worked by hand: a stub network whose head output puts chosen boxes in chosen cells
(the boxes in a non-square image's pixels, at a non-square input, worked out for stretch and letterbox), darknet's
``print_detector_detections`` / ``print_cocos`` rules and its ``coco_ids`` table, and ``detect.py``'s ``main`` run
in this process around a stand-in Detector. Written for the cases a mutation audit found untested."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import compose_config, load_script
from test_darknet import scaled_cfg
from yolo9000.api import Detections, check_input_size
from yolo9000.submission import (
    COCO_IDS,
    coco_category_ids,
    coco_results,
    write_coco_results,
    write_voc_results,
)

NAMES = ["cat", "dog", "bird"]


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """yolov2-tiny-voc.cfg at 1/8 width with 3 classes (its 5 VOC priors), and its names file."""
    tmp = tmp_path_factory.mktemp("tiny")
    names = tmp / "three.names"
    names.write_text("\n".join(NAMES) + "\n")
    return scaled_cfg(tmp, "yolov2-tiny-voc.cfg", 0.125, 3), names


@pytest.fixture(scope="module")
def base(tiny_cfg: tuple[Path, Path]):  # noqa: ANN201 - yolo9000.Detector, imported lazily
    from yolo9000 import Detector

    cfg, names = tiny_cfg
    return Detector.from_darknet(cfg, names=names, device="cpu")


# A box of the stub head: (anchor, row, column, width and height in cells, score, class); tx = ty = 0 puts its
# centre in the middle of the cell (sigmoid(0) = 0.5), tw = log(width / prior width).
Cell = tuple[int, int, int, float, float, float, int]


class StubHead(torch.nn.Module):
    """A network that returns the head output of the given boxes whatever the pixels (every other box has
    objectness 0), and keeps the inputs it was given."""

    def __init__(self, boxes: list[Cell], anchors: torch.Tensor, num_classes: int = 3) -> None:
        super().__init__()
        self.boxes, self.anchors, self.num_classes = boxes, anchors.tolist(), num_classes
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        b, _, h, w = x.shape
        raw = torch.zeros(b, len(self.anchors), 5 + self.num_classes, h // 32, w // 32)
        raw[:, :, 4] = -1e4  # objectness sigmoid(-1e4) = 0: no candidate
        for a, row, col, wc, hc, score, c in self.boxes:
            raw[:, a, 2, row, col] = math.log(wc / self.anchors[a][0])
            raw[:, a, 3, row, col] = math.log(hc / self.anchors[a][1])
            raw[:, a, 4, row, col] = math.log(score / (1 - score))
            raw[:, a, 5:, row, col] = -1e4
            raw[:, a, 5 + c, row, col] = 0.0  # P(class c) = 1
        return raw.flatten(1, 2)


def stubbed(base, boxes: list[Cell], **kw: Any):  # noqa: ANN001, ANN201
    """A Detector around ``base``'s module whose network is a :class:`StubHead` of ``boxes``."""
    from yolo9000 import Detector

    det = Detector(base.module, device="cpu", fold_bn=False, **kw)
    det.network = StubHead(boxes, base.module.model.anchors)
    return det


# At a 64 x 96 (height x width) input the grid is 2 x 3 cells of 32 x 32 px:
#   box A, cell (row 1, column 2), 0.5 x 0.5 cells: centre (80, 48), network xyxy (72, 40, 88, 56), bird, 0.9;
#   box B, cell (row 0, column 0), 2 x 2 cells: centre (16, 16), network xyxy (-16, -16, 48, 48), cat, 0.6.
BOXES: list[Cell] = [(0, 1, 2, 0.5, 0.5, 0.9, 2), (1, 0, 0, 2.0, 2.0, 0.6, 0)]
# A 200 x 100 (width x height) image.
# Stretched: x / (96 / 200) = x / 0.48, y / (64 / 100) = y / 0.64, then clipped to [0, 200] x [0, 100].
STRETCHED = [[150.0, 62.5, 550 / 3, 87.5], [0.0, 0.0, 100.0, 75.0]]
# Letterboxed (darknet): the width limits the scale, 0.48; 200 x 100 -> 96 x 48, 8 rows of padding above:
#   x / 0.48, (y - 8) / 0.48, clipped.
LETTERBOXED = [[150.0, 200 / 3, 550 / 3, 100.0], [0.0, 0.0, 100.0, 250 / 3]]


@pytest.mark.parametrize("letterbox", [False, True])
def test_boxes_are_worked_back_to_the_images_pixels(base, letterbox: bool) -> None:  # noqa: ANN001
    """A 200 x 100 image, black on the left half and white on the right, at size (64, 96): the network sees a
    64 x 96 input with black left and white right (letterboxed: 8 grey rows above and below the 48 rows of image)
    and the two boxes come back in the image's pixels (each axis by its own scale, the letterbox's padding taken
    off, clipped to 200 x 100), highest score first, with their classes' names."""
    det = stubbed(base, BOXES)
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, 100:] = 255
    (r,) = det.predict(image, size=(64, 96), conf=0.0, letterbox=letterbox)
    (x,) = det.network.seen
    assert x.shape == (1, 3, 64, 96)
    rows = x[0, :, 8:56] if letterbox else x[0]  # the image's rows
    assert (rows[..., :46] == 0).all() and (rows[..., 50:] == 1).all()  # 96 columns: 48 black, 48 white
    if letterbox:
        grey = torch.full((3, 8, 96), 127 / 255)
        assert torch.allclose(x[0, :, :8], grey) and torch.allclose(x[0, :, 56:], grey)
    want = torch.tensor(LETTERBOXED if letterbox else STRETCHED)
    assert r.image_size == (100, 200) and r.path is None and r.index == 0
    assert torch.allclose(r.boxes, want, atol=1e-3), r.boxes
    assert torch.allclose(r.scores, torch.tensor([0.9, 0.6])) and r.labels.tolist() == [2, 0]
    assert r.names == ["bird", "cat"]
    assert r.boxes.dtype == torch.float32 and r.scores.dtype == torch.float32 and r.labels.dtype == torch.int64


def test_thresholds_from_darknet_and_per_call(base, tiny_cfg: tuple[Path, Path]) -> None:  # noqa: ANN001
    """Scores 0.9, 0.6 and 0.2: a converted cfg detects at darknet detect's 0.25 unless ``conf_thresh`` is given
    (0.1 keeps all three); a call's ``conf`` and ``max_det`` apply to that call (the highest scores kept)."""
    from yolo9000 import Detector

    three = [*BOXES, (2, 1, 0, 1.0, 1.0, 0.2, 1)]
    image = np.zeros((100, 200, 3), np.uint8)

    def scores(det) -> list[float]:  # noqa: ANN001
        det.network = StubHead(three, det.module.model.anchors)
        return [round(float(s), 4) for s in det.predict(image, size=(64, 96))[0].scores]

    cfg, names = tiny_cfg
    assert base.conf == 0.25 and scores(Detector(base.module, device="cpu")) == [0.9, 0.6]
    low = Detector.from_darknet(cfg, names=names, device="cpu", conf_thresh=0.1)
    assert low.conf == 0.1 and scores(low) == [0.9, 0.6, 0.2]
    det = stubbed(base, three)
    assert [round(float(s), 4) for s in det.predict(image, size=(64, 96), conf=0.7)[0].scores] == [0.9]
    assert [round(float(s), 4) for s in det.predict(image, size=(64, 96), conf=0.0, max_det=2)[0].scores] == [0.9, 0.6]


def test_to_dict_rounds_boxes_to_a_hundredth_and_scores_to_four_decimals() -> None:
    d = Detections(
        torch.tensor([[1.23456, 7.891, 100.005, 50.5]]),
        torch.tensor([0.123456]),
        torch.tensor([1]),
        ["dog"],
        3,
        "a.jpg",
        (60, 120),
    ).to_dict()
    assert d == {
        "index": 3,
        "file": "a.jpg",
        "width": 120,
        "height": 60,
        "detections": [{"box": [1.23, 7.89, 100.0, 50.5], "class": "dog", "label": 1, "score": 0.1235}],
    }


def test_input_sizes_are_positive_multiples_of_32(base) -> None:  # noqa: ANN001
    """One side (square) or (height, width), each a positive multiple of 32: 0, 48 (a multiple of 16), -32 or a
    1-element list are refused, by predict too (before any image is read)."""
    assert check_input_size(32) == (32, 32) and check_input_size((64, 96)) == (64, 96)
    assert check_input_size([96, 64]) == (96, 64)
    for bad in (0, 48, -32, (64, 48), (0, 64)):
        with pytest.raises(ValueError, match="positive multiple of 32"):
            check_input_size(bad)
    for bad in ([64], (64, 64, 64)):
        with pytest.raises(TypeError, match=r"one side or \(height, width\)"):
            check_input_size(bad)
    with pytest.raises(ValueError, match="positive multiple of 32"):
        base.predict(np.zeros((10, 10, 3), np.uint8), size=0)


def test_a_path_string_is_one_image(base, tmp_path: Path) -> None:  # noqa: ANN001
    """A str is one file's path (not a sequence of one-letter paths): one result, named as given, with the boxes
    in its 200 x 100 pixels."""
    from PIL import Image

    path = tmp_path / "wide.png"
    Image.fromarray(np.full((100, 200, 3), 40, np.uint8)).save(path)
    res = stubbed(base, BOXES).predict(str(path), size=(64, 96), conf=0.0)
    assert len(res) == 1 and res[0].path == str(path) and res[0].image_size == (100, 200)
    assert torch.allclose(res[0].boxes, torch.tensor(STRETCHED), atol=1e-3)


def test_precision_names_and_the_module_kind(base) -> None:  # noqa: ANN001
    """dtype by any of its names (``bf16``, ``torch.bfloat16``) or as a torch dtype; float16 needs CUDA; a module
    that is no DetectorModule is refused by type."""
    from yolo9000 import Detector

    for name in ("bf16", "bfloat16", "torch.bfloat16", torch.bfloat16, "BF16", " BFloat16"):
        assert Detector(base.module, device="cpu", dtype=name).dtype == torch.bfloat16, name
    for name in ("fp32", "float", "torch.float32", None):
        assert Detector(base.module, device="cpu", dtype=name).dtype == torch.float32, name
    for name in ("half", "fp16", "torch.float16"):
        with pytest.raises(ValueError, match="float16 autocast needs CUDA"):
            Detector(base.module, device="cpu", dtype=name)
    with pytest.raises(ValueError, match="dtype='int8': one of"):
        Detector(base.module, device="cpu", dtype="int8")
    if not torch.cuda.is_available():  # a ValueError, as every other setting (detect.py prints it as one line)
        with pytest.raises(ValueError, match="device='cuda': CUDA is not available here"):
            Detector(base.module, device="cuda")
    with pytest.raises(TypeError, match="Detector needs a DetectorModule .*got Linear"):
        Detector(torch.nn.Linear(2, 2), device="cpu")


@pytest.mark.parametrize(("letterbox", "params"), [(False, [0.48, 0.64, 0.0, 0.0]), (True, [0.48, 0.48, 0.0, 8.0])])
def test_image_files_dataset_samples(tmp_path: Path, letterbox: bool, params: list[float]) -> None:
    """``ImageFilesDataset`` at (64, 96): a missing file is a sample with its reason; an in-memory 200 x 100
    array is named by its place, keeps its (height, width) and carries the transform (scale x, scale y, pad x,
    pad y) worked by hand; the collate puts the readable one in the batch and the missing one under "failed"."""
    from yolo9000.data.predict import ImageFilesDataset, PredictCollate

    missing = tmp_path / "missing.jpg"
    ds = ImageFilesDataset([missing, np.zeros((100, 200, 3), np.uint8)], (64, 96), letterbox=letterbox)
    bad, good = ds[0], ds[1]
    assert bad["path"] == str(missing) and "missing image file" in bad["error"]
    assert good["path"] == "<image 1>" and good["orig_size"] == (100, 200) and good["image"].shape == (3, 64, 96)
    assert torch.allclose(good["transform"], torch.tensor(params))
    batch = PredictCollate()([bad, good])
    assert batch["failed"] == [{"file": str(missing), "reason": bad["error"]}] and batch["image_paths"] == ["<image 1>"]
    assert batch["images"].shape == (1, 3, 64, 96) and batch["orig_sizes"].tolist() == [[100, 200]]


# ---------------------------------------------------------------------------------------------- result files
def _image(path: str | None, boxes: list[list[float]], scores: list[float], labels: list[int], hw) -> Detections:  # noqa: ANN001
    """One image's detections as the writers take them (xyxy 0-based pixels, its (height, width))."""
    boxes_t = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    return Detections(boxes_t, torch.tensor(scores), torch.tensor(labels), [], 0, path, hw)


# darknet's detector.c: static int coco_ids[] = {...}
DARKNET_COCO_IDS = [
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 27, 28, 31, 32, 33, 34, 35,
    36, 37, 38, 39, 40, 41, 42, 43, 44, 46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65,
    67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88, 89, 90,
]  # fmt: skip


def test_voc_lines_clip_the_left_and_top_to_pixel_one(tmp_path: Path) -> None:
    """darknet adds 1 and clips ``xmin, ymin`` below 1 to 1: a box reaching past the left and top edges (-3.5 and
    -0.25, 1-based -2.5 and 0.75) starts at 1 1; past the right and bottom (a 60 x 40 image): 60 40."""
    im = _image("imgs/a.b.jpg", [[-3.5, -0.25, 70.0, 50.0], [2.0, 3.0, 9.5, 9.0]], [0.5, 0.125], [1, 1], (40, 60))
    (_, dog) = write_voc_results(tmp_path, [im], ["cat", "dog"])
    assert dog.read_text() == (
        "a 0.500000 1.000000 1.000000 60.000000 40.000000\na 0.125000 3.000000 4.000000 10.500000 10.000000\n"
    )
    # another prefix (darknet valid's -out)
    files = write_voc_results(tmp_path / "val", [im], ["cat", "dog"], prefix="comp3_det_val_")
    assert files == [tmp_path / "val" / "comp3_det_val_cat.txt", tmp_path / "val" / "comp3_det_val_dog.txt"]
    assert files[1].read_text() == dog.read_text() and files[0].read_text() == ""


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_voc_refuses_class_names_that_name_no_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(ValueError, match="cannot name a result file"):
        write_voc_results(tmp_path, [], ["cat", name])


def test_result_files_need_a_file_and_a_size(tmp_path: Path) -> None:
    """An in-memory image (no path) or an unreadable one (no size) cannot be written: darknet's files name images
    by their file, and clip to their size."""
    memory = _image(None, [[1, 2, 3, 4]], [0.5], [0], (10, 10))
    unreadable = Detections.empty(0, "x_000000000001.jpg", "corrupt")
    for im in (memory, unreadable):
        with pytest.raises(ValueError, match="result files name images by their file"):
            write_voc_results(tmp_path, [im], ["cat"])
        with pytest.raises(ValueError, match="result files name images by their file"):
            coco_results([im], [1])


def test_coco_category_ids_are_darknets_table() -> None:
    """An 80-class head takes darknet's coco_ids in coco.names order; an annotations file without categories
    (none to place the classes by name) keeps them; another number of classes needs the file."""
    assert list(COCO_IDS) == DARKNET_COCO_IDS
    names = [f"c{i}" for i in range(80)]
    assert coco_category_ids(names) == DARKNET_COCO_IDS
    assert coco_category_ids(names, {}) == DARKNET_COCO_IDS
    assert coco_category_ids(["cat", "dog", "bird"], {"bird": 16, "cat": 17, "dog": 18, "horse": 19}) == [17, 18, 16]
    for n in (79, 81):
        with pytest.raises(ValueError, match=f"{n} classes: darknet's COCO category ids"):
            coco_category_ids(names[:n] if n < 80 else [*names, "x"])


def test_coco_rows_clip_to_the_image_and_are_written_with_their_count(tmp_path: Path) -> None:
    """print_cocos: xyxy clipped to [0, w] x [0, h] of a 300 x 100 image, then [x, y, w, h]; every detection a row
    in its image's and class's place; the file's folder is made and the count returned."""
    boxes = [[-5, 10, 320, 40], [250, -1, 290, 120]]
    a = _image("v/COCO_val2014_000000000007.jpg", boxes, [0.75, 0.5], [79, 0], (100, 300))
    b = _image("v/000000000139.jpg", [[1, 2, 3, 4]], [0.25], [11], (50, 50))
    out = tmp_path / "new" / "coco_results.json"
    assert write_coco_results(out, [a, b], DARKNET_COCO_IDS) == 3
    assert json.loads(out.read_text()) == [
        {"image_id": 7, "category_id": 90, "bbox": [0.0, 10.0, 300.0, 30.0], "score": 0.75},
        {"image_id": 7, "category_id": 1, "bbox": [250.0, 0.0, 40.0, 100.0], "score": 0.5},
        {"image_id": 139, "category_id": 13, "bbox": [1.0, 2.0, 2.0, 2.0], "score": 0.25},
    ]


# ---------------------------------------------------------------------------------------------- detect.py
class StandIn:
    """Stands in for :class:`yolo9000.Detector` in ``detect.py``'s ``main``: records how it was built and called;
    ``predict`` gives a 200 x 100 image's two detections for the first file and the second file unreadable."""

    class_names = NAMES
    input_hw = (320, 352)
    letterbox = False  # the checkpoint's resize (trained stretched)
    dtype = torch.float32  # as built without dtype=
    built: list[dict[str, Any]] = []
    called: list[dict[str, Any]] = []

    @classmethod
    def from_checkpoint(cls, path: str, **kw: Any) -> StandIn:
        cls.built.append({"path": path, **kw})
        return cls()

    def predict(self, files: list[Path], **kw: Any) -> list[Detections]:
        self.called.append({"files": list(files), **kw})
        first = Detections(
            torch.tensor([[10.5, 20.0, 199.5, 99.75], [0.0, 0.0, 3.0, 4.0]]),
            torch.tensor([0.875, 0.25]),
            torch.tensor([2, 0]),
            ["bird", "cat"],
            0,
            str(files[0]),
            (100, 200),
        )
        return [first, Detections.empty(1, str(files[1]), "corrupt file")]


@pytest.fixture
def detect_main(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    """``detect.py``'s ``main`` on a folder of a.jpg and b.jpg around :class:`StandIn`: a function of overrides
    returning the run folder."""
    detect = load_script("detect")
    monkeypatch.setattr(detect, "Detector", StandIn)
    monkeypatch.setattr(StandIn, "built", [])
    monkeypatch.setattr(StandIn, "called", [])
    src = tmp_path / "src"
    src.mkdir()
    for name in ("a.jpg", "b.jpg"):
        (src / name).write_bytes(b"x")

    def main(*overrides: str) -> Path:
        out = tmp_path / f"run{len(StandIn.built)}"
        out.mkdir()  # Hydra's run folder
        cfg = compose_config(
            "detect", f"ckpt_path={tmp_path / 'm.ckpt'}", f"source={src}", f"paths.output_dir={out}", "draw=false",
            *overrides,
        )  # fmt: skip
        detect.main(cfg)
        return out

    main.src = src  # type: ignore[attr-defined]
    return main


@pytest.mark.parametrize(
    ("overrides", "conf"),
    [
        ((), 0.25),  # darknet detect's threshold
        (("results=voc",), 0.005),  # darknet detector valid's
        (("results=voc", "conf_thresh=0.3"), 0.3),  # given: kept
        (("results=voc", "conf_thresh=0.0"), 0.0),  # 0 is a threshold, not "null"
        (("conf_thresh=0.0",), 0.0),
    ],
)
def test_detect_threshold_rules(detect_main, overrides: tuple[str, ...], conf: float) -> None:  # noqa: ANN001
    detect_main(*overrides)
    (built,) = StandIn.built
    assert built["conf_thresh"] == conf and built["nms_thresh"] == 0.45


def test_detect_runs_the_detector_as_configured_and_writes_voc_lines(detect_main) -> None:  # noqa: ANN001
    """img_size [64, 96] is height x width; letterbox, batch size and the NMS threshold are passed on; the
    unreadable input goes to "failed" and not to the result files; VOC's lines are darknet's (1-based, clipped to
    the 200 x 100 image), one file per class."""
    out = detect_main("img_size=[64,96]", "letterbox=true", "batch_size=3", "nms_thresh=0.3", "results=voc")
    (built,), (called,) = StandIn.built, StandIn.called
    assert built["nms_thresh"] == 0.3 and built["device"] == "auto"
    assert called["size"] == (64, 96) and called["letterbox"] is True and called["batch_size"] == 3
    assert called["skip_unreadable"] is True and called["files"] == [detect_main.src / n for n in ("a.jpg", "b.jpg")]
    got = json.loads((out / "detections.json").read_text())
    assert got["input_hw"] == [64, 96] and got["letterbox"] is True
    assert got["failed"] == [{"file": str(detect_main.src / "b.jpg"), "reason": "corrupt file"}]
    (rec,) = got["images"]
    assert (rec["file"], rec["width"], rec["height"]) == (str(detect_main.src / "a.jpg"), 200, 100)
    assert [d["box"] for d in rec["detections"]] == [[10.5, 20.0, 199.5, 99.75], [0.0, 0.0, 3.0, 4.0]]
    results = out / "results"
    assert (results / "comp4_det_test_bird.txt").read_text() == "a 0.875000 11.500000 21.000000 200.000000 100.000000\n"
    assert (results / "comp4_det_test_cat.txt").read_text() == "a 0.250000 1.000000 1.000000 4.000000 5.000000\n"
    assert (results / "comp4_det_test_dog.txt").read_text() == ""
    detect_main()  # no img_size: the detector's default input (height, width)
    assert StandIn.called[-1]["size"] == (320, 352) and StandIn.called[-1]["letterbox"] is False


def test_detect_coco_results_take_the_jsons_ids(detect_main, tmp_path: Path) -> None:  # noqa: ANN001
    """results=coco with coco_json: the image id by file name, the category id by class name, [x, y, w, h]."""
    ann = tmp_path / "image_info.json"
    cats = [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}, {"id": 16, "name": "bird"}]
    images = [{"id": 5, "file_name": "val/a.jpg"}, {"id": 6, "file_name": "val/b.jpg"}]
    ann.write_text(json.dumps({"images": images, "categories": cats}))
    out = detect_main("results=coco", f"coco_json={ann}")
    assert json.loads((out / "results" / "coco_results.json").read_text()) == [
        {"image_id": 5, "category_id": 16, "bbox": [10.5, 20.0, 189.0, 79.75], "score": 0.875},
        {"image_id": 5, "category_id": 17, "bbox": [0.0, 0.0, 3.0, 4.0], "score": 0.25},
    ]
    # an image the JSON does not list: refused before any image runs (it was found after all of them, losing the
    # run's outputs)
    ann.write_text(json.dumps({"images": images[:1], "categories": cats}))
    StandIn.called.clear()
    with pytest.raises(SystemExit, match=r"1 of the 2 images are not among its images \(by file name: .*b\.jpg\)"):
        detect_main("results=coco", f"coco_json={ann}")
    assert StandIn.called == []


def test_detect_result_ids_shared_by_images_of_several_folders_are_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """darknet's result files name an image by its file name: a/x.jpg and b/x.jpg wrote their detections under one
    id without a word; it is warned, naming the id."""
    from omegaconf import OmegaConf

    detect = load_script("detect")
    cfg = OmegaConf.create({"results": "voc", "coco_json": None})
    with caplog.at_level("WARNING"):
        detect.result_writer(cfg, ["cat"], tmp_path / "r", [tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.jpg"])
    assert "results=voc: 1 image id shared by images of several folders (x)" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        detect.result_writer(cfg, ["cat"], tmp_path / "r", [tmp_path / "a" / "x.jpg", tmp_path / "b" / "y.jpg"])
    assert "shared" not in caplog.text


def test_detect_log_lines_show_the_first_ones_and_count_the_rest() -> None:
    """The log line of an image names its first 10 detections and how many more there are; the unreadable list
    its first 20 files and how many more (all are in detections.json)."""
    detect = load_script("detect")
    dets = [{"class": f"c{i}", "score": 1 - i / 100} for i in range(13)]
    assert detect.detection_line(dets[:2]) == "c0 1.00, c1 0.99"
    line = detect.detection_line(dets)
    assert line.startswith("c0 1.00, c1 0.99, ") and line.endswith("c9 0.91 (+3 more)") and "c10" not in line
    assert detect.detection_line([]) == "nothing above the threshold"
    failed = [{"file": f"f{i}.jpg", "reason": "corrupt"} for i in range(23)]
    lines = detect.unreadable_list(failed).splitlines()
    assert len(lines) == 21 and lines[0] == "  f0.jpg: corrupt" and lines[19] == "  f19.jpg: corrupt"
    assert lines[20] == "  ... and 3 more (all in detections.json)"
    assert detect.unreadable_list(failed[:20]).splitlines()[-1] == "  f19.jpg: corrupt"


def test_detect_settings_refused_before_the_checkpoint_is_read(tmp_path: Path) -> None:
    """A missing coco_json, batch_size 0 or a boolean, num_workers -1: refused naming the key (before the
    checkpoint, which is never read here)."""
    detect = load_script("detect")
    base_cfg = [f"ckpt_path={tmp_path / 'none.ckpt'}", f"source={tmp_path}", f"paths.output_dir={tmp_path}"]
    for override, error, said in [
        (f"coco_json={tmp_path / 'missing.json'}", FileNotFoundError, "coco_json not found"),
        ("batch_size=0", ValueError, "batch_size must be an integer >= 1, got 0"),
        ("batch_size=true", ValueError, "batch_size must be an integer >= 1, got True"),
        ("num_workers=-1", ValueError, "num_workers must be an integer >= 0, got -1"),
    ]:
        with pytest.raises(error, match=said):
            detect.check_settings(compose_config("detect", *base_cfg, "results=coco", override))
    detect.check_settings(compose_config("detect", *base_cfg, "batch_size=1", "num_workers=0"))


def test_detect_sources(tmp_path: Path) -> None:
    """A glob keeps the image files it matches (not a list or a note beside them); a ``.list`` file is a list like
    ``.txt``, its absolute paths kept as they are; an empty source list is refused."""
    detect = load_script("detect")
    (tmp_path / "imgs").mkdir()
    for name in ("a.jpg", "b.png", "notes.txt", "c.list"):
        (tmp_path / "imgs" / name).write_bytes(b"x")
    elsewhere = tmp_path / "far" / "d.jpg"
    elsewhere.parent.mkdir()
    elsewhere.write_bytes(b"x")
    assert detect.source_files(f"{tmp_path}/imgs/*") == [tmp_path / "imgs" / "a.jpg", tmp_path / "imgs" / "b.png"]
    (tmp_path / "imgs" / "c.list").write_text(f"b.png\n{elsewhere}\n")
    assert detect.source_files(str(tmp_path / "imgs" / "c.list")) == [tmp_path / "imgs" / "b.png", elsewhere]
    with pytest.raises(ValueError, match=r"source=\[\]: no images given"):
        detect.source_files([])


def test_detect_result_names_and_ids_are_checked_before_the_images(
    detect_main,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A class name that cannot name a VOC file, or COCO results of a 3-class head without coco_json (darknet's
    ids are for COCO's 80 classes): the run stops with the reason before any image is run."""
    with pytest.raises(SystemExit, match="Error: 3 classes: darknet's COCO category ids are for coco.names' 80"):
        detect_main("results=coco")
    monkeypatch.setattr(StandIn, "class_names", ["cat", "a/b"])
    with pytest.raises(SystemExit, match="Error: class name 'a/b' cannot name a result file"):
        detect_main("results=voc")
    assert StandIn.called == []


def test_detect_coco_results_of_a_yolo9000_checkpoint_take_the_maps_order(tmp_path: Path) -> None:
    """``detect.py results=coco`` on a YOLO9000 checkpoint (9418 WordTree classes, eval_map coco9k.map: its boxes
    are labelled with the map's 80 nodes) stopped with "9418 classes: darknet's COCO category ids are for
    coco.names' 80", and with ``coco_json`` with "classes not among the JSON's categories: ['thing', ...]". As
    darknet's validate_detector with a map, the map's j-th node gets COCO_IDS[j] (by a JSON: its j-th category
    in id order)."""
    from omegaconf import OmegaConf

    from yolo9000.modules.detector import resolve_map
    from yolo9000.wordtree import WordTree

    tree_dir = Path(__file__).resolve().parents[1] / "data" / "darknet" / "wordtree"
    tree = WordTree.from_file(tree_dir / "9k.tree", tree_dir / "9k.names", tree_dir / "9k.labels")
    nodes = resolve_map(tree, str(tree_dir / "coco9k.map"))
    assert nodes is not None and len(nodes) == 80
    names = list(tree.names)
    detect = load_script("detect")
    image = Detections(
        torch.tensor([[1.0, 2.0, 11.0, 22.0], [0.0, 0.0, 5.0, 5.0]]),
        torch.tensor([0.9, 0.5]),
        torch.tensor([int(nodes[4]), int(nodes[79])]),  # coco.names' 5th (airplane: 5) and last (toothbrush: 90)
        [],
        0,
        str(tmp_path / "000000000139.jpg"),
        (100, 100),
    )
    cfg = OmegaConf.create({"results": "coco", "coco_json": None})
    writer = detect.result_writer(cfg, names, tmp_path / "r", [image.path], nodes)
    writer([image])
    got = json.loads((tmp_path / "r" / "coco_results.json").read_text())
    assert [(r["image_id"], r["category_id"]) for r in got] == [(139, 5), (139, 90)]
    # by a JSON's categories (COCO's 80 ids, listed in another order): the j-th in id order
    ids = list(COCO_IDS)
    ann = tmp_path / "instances_val2017.json"
    cats = [{"id": i, "name": f"c{i}"} for i in reversed(ids)]
    ann.write_text(json.dumps({"images": [{"id": 7, "file_name": "000000000139.jpg"}], "categories": cats}))
    cfg = OmegaConf.create({"results": "coco", "coco_json": str(ann)})
    detect.result_writer(cfg, names, tmp_path / "j", [image.path], nodes)([image])
    got = json.loads((tmp_path / "j" / "coco_results.json").read_text())
    assert [(r["image_id"], r["category_id"]) for r in got] == [(7, 5), (7, 90)]
    # a map of another length than the categories: refused naming the map
    with pytest.raises(ValueError, match="eval_map has 2 nodes"):
        detect.result_writer(OmegaConf.create({"results": "coco", "coco_json": None}), names, tmp_path, [], nodes[:2])
