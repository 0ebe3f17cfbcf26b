"""Rules of the pictures, the prediction images, the epoch line and the object crops, checked against values worked
out by hand on tiny made-up inputs (non-square images so a height/width mix-up shows, two classes so a class mix-up
shows): where a box edge lands, which colour and caption a class gets, what a plot holds, which window of an image a
crop copies, the numbers an epoch line prints."""

from __future__ import annotations

import json
import logging
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from torchvision.io import ImageReadMode, decode_image

import yolo9000.viz as viz
from conftest import load_script
from test_run_rules import Clock, _line_trainer
from yolo9000.callbacks import predictions, progress
from yolo9000.data.crops import build_crops, crop_windows, crops_complete, format_counts

# matplotlib's published palettes (https://matplotlib.org/stable/users/explain/colors/colormaps.html)
TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]
TAB20_1 = (174, 199, 232)  # tab20's second colour (the light blue after tab10's blue)


def _rgb(img: torch.Tensor, y: int, x: int) -> tuple[int, ...]:
    return tuple(img[:, y, x].tolist())


# ------------------------------------------------------------------------------------------- draw_detections
def test_boxes_outside_a_wide_image_are_drawn_on_its_last_row_and_column() -> None:
    """A 50 x 40 image: a box from x=-5 to 80 is drawn from column 0 to column 49 (the last), one from y=-7 to 45
    from row 0 to row 39 (the last); a width clip to 50 or a height/width mix-up leaves an edge off the image."""
    img = torch.zeros(3, 40, 50, dtype=torch.uint8)
    wide = draw_one(img, [-5.0, 5.0, 80.0, 35.0])
    changed = (wide != img).any(dim=0)
    assert changed[25:35, 0].all() and changed[25:35, 49].all()  # left and right edge, below the caption
    assert changed[35, 15:45].all() and not changed[36:, :].any()  # the bottom edge on row 35
    tall = draw_one(img, [10.0, -7.0, 30.0, 45.0])
    changed = (tall != img).any(dim=0)
    assert changed[39, 10:31].all()  # the bottom edge on the last row
    assert changed[25:39, 10].all() and changed[25:39, 30].all() and not changed[:, 31:].any()


def draw_one(img: torch.Tensor, box: list[float], **kw: Any) -> torch.Tensor:
    return viz.draw_detections(img, torch.tensor([box]), torch.tensor([0]), None, ["a", "b"], width=1, **kw)


def test_inverted_boxes_are_drawn_not_refused() -> None:
    """A box with x2 < x1 (or y2 < y1) is drawn as a line at x1 (y1) instead of failing the whole picture."""
    img = torch.zeros(3, 30, 50, dtype=torch.uint8)
    out = draw_one(img, [30.0, 5.0, 20.0, 25.0])
    assert (out != img).any(dim=0)[5:26, 30].all()
    out = draw_one(img, [5.0, 20.0, 40.0, 10.0])
    assert (out != img).any(dim=0)[20, 5:41].all()


def test_float_images_are_rounded_to_the_nearest_byte(tmp_path: Path) -> None:
    """100.8 / 255 is byte 101 (not 100) in a drawing and in a saved PNG."""
    img = torch.full((3, 20, 30), 100.8 / 255)
    out = draw_one(img, [2.0, 2.0, 8.0, 8.0])
    assert _rgb(out, 15, 25) == (101, 101, 101)
    back = decode_image(str(viz.save_image(img, tmp_path / "f.png")), mode=ImageReadMode.RGB)
    assert back.unique().tolist() == [101]


def _edge_width(out: torch.Tensor, img: torch.Tensor, row: int, upto: int) -> int:
    return int((out != img).any(dim=0)[row, :upto].sum())


def test_line_width_rounds_the_image_scale_and_follows_the_width_argument() -> None:
    """A 1000 x 600 photo is 1000 / 640 = 1.56 -> 2 steps of 640 pixels: 4 px lines (not 2); width=5 gives 5 px."""
    img = torch.zeros(3, 600, 1000, dtype=torch.uint8)
    box = torch.tensor([[200.0, 100.0, 800.0, 500.0]])
    out = viz.draw_detections(img, box, torch.tensor([0]), torch.tensor([0.9]), ["a"])
    assert _edge_width(out, img, 400, 500) == 4
    small = torch.zeros(3, 480, 640, dtype=torch.uint8)
    box = torch.tensor([[100.0, 100.0, 500.0, 400.0]])
    out = viz.draw_detections(small, box, torch.tensor([0]), torch.tensor([0.9]), ["a"], width=5)
    assert _edge_width(out, small, 350, 300) == 5


def test_ground_truth_is_one_white_pixel_wide_and_under_the_predictions() -> None:
    img = torch.zeros(3, 40, 60, dtype=torch.uint8)
    gt = torch.tensor([[10.0, 10.0, 30.0, 30.0], [40.0, 5.0, 55.0, 35.0]])
    pred = torch.tensor([[40.0, 5.0, 55.0, 35.0]])  # on the second truth: drawn over it
    out = viz.draw_detections(img, pred, torch.tensor([1]), None, ["a", "b"], gt_boxes=gt, width=1)
    assert _rgb(out, 20, 10) == (255, 255, 255) and _rgb(out, 20, 11) == (0, 0, 0)
    assert _rgb(out, 20, 30) == (255, 255, 255) and _rgb(out, 20, 29) == (0, 0, 0)
    assert _rgb(out, 30, 40) == TAB10[1]  # the prediction's colour on the truth's edge


@pytest.mark.parametrize(("n_classes", "second"), [(2, TAB10[1]), (10, TAB10[1]), (11, TAB20_1)])
def test_box_colours_are_the_class_colours_of_tab10_up_to_ten_classes(n_classes: int, second: tuple) -> None:
    """Class k's box is palette colour k (tab10 up to 10 classes, tab20 beyond), in RGB order."""
    img = torch.zeros(3, 40, 60, dtype=torch.uint8)
    boxes = torch.tensor([[5.0, 5.0, 25.0, 35.0], [30.0, 5.0, 55.0, 35.0]])
    names = [f"c{i}" for i in range(n_classes)]
    out = viz.draw_detections(img, boxes, torch.tensor([0, 1]), None, names, width=1)
    assert _rgb(out, 30, 5) == TAB10[0]
    assert _rgb(out, 30, 30) == second
    assert viz.class_colors(3) == TAB10[:3]


@pytest.fixture
def drawn_calls(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """What draw_detections hands torchvision's draw_bounding_boxes (the call is still made)."""
    calls: list[dict[str, Any]] = []
    real = viz.draw_bounding_boxes

    def record(image: torch.Tensor, boxes: torch.Tensor, **kw: Any) -> torch.Tensor:
        calls.append({"boxes": boxes.clone(), **kw})
        return real(image, boxes, **kw)

    monkeypatch.setattr(viz, "draw_bounding_boxes", record)
    return calls


def test_captions_name_the_class_and_its_score_in_two_decimals(drawn_calls: list[dict[str, Any]]) -> None:
    img = torch.zeros(3, 480, 1280, dtype=torch.uint8)  # 1280 / 640: 2 steps: 24 pt captions
    boxes = torch.tensor([[10.0, 10.0, 100.0, 100.0], [200.0, 10.0, 300.0, 100.0], [400.0, 10.0, 500.0, 100.0]])
    viz.draw_detections(img, boxes, torch.tensor([1, 0, 7]), torch.tensor([0.874, 0.5, 0.126]), ["RBC", "WBC"])
    (call,) = drawn_calls
    assert call["labels"] == ["WBC 0.87", "RBC 0.50", "7 0.13"]  # an unknown label shows its number
    assert call["font_size"] == 24 and call["width"] == 4
    assert call["colors"][:2] == [TAB10[1], TAB10[0]]
    drawn_calls.clear()
    viz.draw_detections(img, boxes[:1], torch.tensor([0]), None, ["RBC", "WBC"], font_size=9)
    assert drawn_calls[0]["labels"] == ["RBC"] and drawn_calls[0]["font_size"] == 9


def test_captions_are_black_text_on_the_class_colour() -> None:
    """The caption sits inside the box's top-left corner on a patch of the class colour, its letters black."""
    img = torch.full((3, 100, 160), 128, dtype=torch.uint8)
    out = viz.draw_detections(img, torch.tensor([[10.0, 10.0, 150.0, 90.0]]), torch.tensor([1]), None, ["WWW", "MMM"])
    patch = out[:, 12:30, 12:60].reshape(3, -1).T.tolist()
    assert sum(tuple(p) == TAB10[1] for p in patch) > 100  # the filled patch
    assert sum(max(p) < 60 for p in patch) > 20  # dark letters on it


# -------------------------------------------------------------------------------------------------- save_image
def test_saved_format_follows_the_suffix_in_any_case_and_the_jpeg_quality(tmp_path: Path) -> None:
    img = torch.randint(0, 256, (3, 32, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    assert viz.save_image(img, tmp_path / "a.PNG").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert viz.save_image(img, tmp_path / "b.jpeg").read_bytes()[:3] == b"\xff\xd8\xff"
    fine = viz.save_image(img, tmp_path / "q100.jpg", jpeg_quality=100).stat().st_size
    coarse = viz.save_image(img, tmp_path / "q10.jpg", jpeg_quality=10).stat().st_size
    assert fine > 2 * coarse


# ------------------------------------------------------------------------------------------------------- plots
@pytest.fixture
def figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The matplotlib figures the plot functions save (still saved)."""
    figs: list[Any] = []
    real = viz._save_figure

    def keep(fig: Any, path: Any) -> Path:
        figs.append(fig)
        return real(fig, path)

    monkeypatch.setattr(viz, "_save_figure", keep)
    return figs


def test_anchor_cluster_plot_puts_width_on_x_and_colours_boxes_by_their_anchor(
    figures: list[Any], tmp_path: Path
) -> None:
    """Boxes (w, h) = (0.1, 0.4), (0.5, 0.2), (0.12, 0.38) against anchors (0.1, 0.4) and (0.5, 0.2): by shape IoU
    boxes 0 and 2 belong to anchor 0 (tab10 blue), box 1 to anchor 1 (orange); the anchors are drawn as w x h
    rectangles around (0, 0) in a panel of +-0.55 x the largest anchor side."""
    wh = np.array([[0.1, 0.4], [0.5, 0.2], [0.12, 0.38]])
    anchors = np.array([[0.1, 0.4], [0.5, 0.2]])
    viz.plot_anchor_clusters(wh, anchors, tmp_path / "c.png", title="BCCD anchors", dpi=40)
    (fig,) = figures
    ax1, ax2 = fig.axes
    scatter = ax1.collections[0]
    np.testing.assert_allclose(scatter.get_offsets(), wh)
    blue, orange = (np.array(c) / 255 for c in TAB10[:2])
    np.testing.assert_allclose(scatter.get_facecolors()[:, :3], [blue, orange, blue], atol=1e-6)
    rects = [(p.get_x(), p.get_y(), p.get_width(), p.get_height()) for p in ax2.patches]
    np.testing.assert_allclose(rects, [(-0.05, -0.2, 0.1, 0.4), (-0.25, -0.1, 0.5, 0.2)])
    np.testing.assert_allclose(ax2.get_xlim(), (-0.275, 0.275))
    assert fig._suptitle is not None and fig._suptitle.get_text() == "BCCD anchors"


def test_kmeans_curve_plots_avg_iou_against_k_per_metric(figures: list[Any], tmp_path: Path) -> None:
    runs = [SimpleNamespace(k=1, avg_iou=0.4), SimpleNamespace(k=3, avg_iou=0.6)]  # KMeansResult-like
    viz.plot_kmeans_curve({"IoU": runs, "SSE": [(1, 0.35), (3, 0.5)]}, tmp_path / "k.png", dpi=40)
    (ax,) = figures[0].axes
    assert [(list(ln.get_xdata()), list(ln.get_ydata())) for ln in ax.lines] == [
        ([1, 3], [0.4, 0.6]),
        ([1, 3], [0.35, 0.5]),
    ]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["IoU", "SSE"]


def test_pr_plot_is_titled_with_what_was_evaluated_and_its_legend_leaves_the_curves_free(
    figures: list[Any], tmp_path: Path
) -> None:
    """pr_curves.png had no title (which split, input size, IoU, checkpoint?) and its legend sat in the lower
    left, over the curves of a weak model (all three of an epoch-1 BCCD run's ran along the bottom)."""
    from yolo9000.results import write_metrics

    results = {
        "map_50": 0.0257,
        "pr": {"RBC": (np.array([0.1, 0.05]), np.array([0.3, 0.6])), "WBC": (np.array([0.01]), np.array([0.9]))},
        "per_class": {"RBC": {"ap50": 0.075}, "WBC": {"ap50": 0.001}},
    }
    ckpt = "/x/outputs/train/2026-12-06_22-59-15_2842/checkpoints/epoch_000.ckpt"
    write_metrics(tmp_path, results, ["RBC", "WBC"], {"checkpoint": ckpt, "split": "val", "img_size": [352, 608]})
    (fig,) = figures
    (ax,) = fig.axes
    assert ax.get_title() == (
        "val split, 352x608 px input: precision-recall at IoU 0.5, mAP@0.5 0.026\n"
        "2026-12-06_22-59-15_2842/epoch_000.ckpt"
    )
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")
    fig.canvas.draw()
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 > ax.get_window_extent().x1  # beside the axes, covering no curve
    assert legend.x1 <= fig.bbox.x1  # and not clipped
    # a metrics.json without split or img_size (written before train.py recorded them): the test split, at the
    # model-statistics input size
    from yolo9000.results import pr_title

    assert pr_title({"map_50": 0.5, "gflops_input_size": 256, "checkpoint": "run/checkpoints/last.ckpt"}) == (
        "test split, 256 px input: precision-recall at IoU 0.5, mAP@0.5 0.500\nrun/last.ckpt"
    )
    assert pr_title({}) == "test split: precision-recall at IoU 0.5"
    assert pr_title({"precision": "bf16-mixed"}) == "test split, bf16-mixed: precision-recall at IoU 0.5"
    assert pr_title({"precision": "32-true"}) == "test split: precision-recall at IoU 0.5"  # float32 unsaid


def test_a_training_runs_test_records_its_split_and_input_size_as_evals(figures: list[Any], tmp_path: Path) -> None:
    """train.py's metrics.json had no ``split`` / ``img_size`` (eval.py's has): pr_curves.png's title said "test
    split" by default and took the model statistics' input size. Both now come from the datamodule trainer.test
    read, for train.py (its test split) as for eval.py (split=val: the val split)."""
    from yolo9000.results import evaluated_on, write_metrics

    train_dm = SimpleNamespace(test_split="test", img_size=(352, 608))  # as DetectionDataModule after setup
    assert evaluated_on(train_dm) == {"split": "test", "img_size": [352, 608]}
    assert evaluated_on(SimpleNamespace(test_split="val", img_size=416)) == {"split": "val", "img_size": 416}
    bf16 = evaluated_on(SimpleNamespace(test_split="val", img_size=416), "bf16-mixed")
    assert bf16 == {"split": "val", "img_size": 416, "precision": "bf16-mixed"}  # the trainer's, when given
    results = {"map_50": 0.25, "pr": {"RBC": (np.array([0.5]), np.array([0.5]))}, "per_class": {"RBC": {"ap50": 0.25}}}
    # train.py's extra: checkpoint, model statistics at another size than the evaluation's, then the evaluation's
    extra = {"checkpoint": "/x/run7/checkpoints/epoch_003.ckpt", "gflops_input_size": 416} | evaluated_on(train_dm)
    write_metrics(tmp_path, results, ["RBC"], extra)
    (ax,) = figures[0].axes
    assert ax.get_title() == (
        "test split, 352x608 px input: precision-recall at IoU 0.5, mAP@0.5 0.250\nrun7/epoch_003.ckpt"
    )
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert (got["split"], got["img_size"]) == ("test", [352, 608])  # train.py's own: tests/test_entrypoints.py


def test_anchor_plots_name_their_units_and_the_boxes_they_show(figures: list[Any], tmp_path: Path) -> None:
    """The cluster scatter's axes said "box width" / "box height" with no unit (they are fractions of the image)
    and the k-means curve had no title: which data and split, how many boxes."""
    wh = np.array([[0.1, 0.4], [0.5, 0.2]])
    viz.plot_anchor_clusters(wh, wh, tmp_path / "c.png", unit="image", dpi=40)
    viz.plot_kmeans_curve({"IoU": [(1, 0.4)]}, tmp_path / "k.png", title="bccd, train split: 2 boxes", dpi=40)
    ax1 = figures[0].axes[0]
    assert (ax1.get_xlabel(), ax1.get_ylabel()) == (
        "box width (fraction of image width)",
        "box height (fraction of image height)",
    )
    (ax,) = figures[1].axes
    assert ax.get_title() == "bccd, train split: 2 boxes"
    assert ax.get_xlabel() == "# clusters (k)" and "IoU" in ax.get_ylabel()
    anchors_script = load_script("anchors")
    from omegaconf import OmegaConf

    assert anchors_script.data_name(OmegaConf.create({"data": {"root": "/repo/data/bccd"}})) == "bccd"
    assert anchors_script.data_name(OmegaConf.create({"data": {}})) == "data"


def test_pr_classes_shown_keeps_all_up_to_the_cap_and_ranks_missing_ap_last() -> None:
    three = {"a": True, "b": False, "c": True}
    assert viz.pr_classes_shown(three, {"a": 0.1, "c": 0.9}, 3) == ["a", "b", "c"]  # exactly the cap: all, as given
    four = {"a": True, "b": True, "c": True, "d": False}
    assert viz.pr_classes_shown(four, {"a": 0.2, "b": 0.9}, 2) == ["b", "a"]  # c (no AP) counts as 0


def test_pr_plot_of_a_capped_head_titles_the_counts_and_keeps_each_class_colour(
    figures: list[Any], tmp_path: Path
) -> None:
    """5 classes, 3 with data, max_curves=2: b (AP 0.9) and a (0.5) are drawn, c is the 1 more with data, d and e
    the 2 without; b keeps colour 1 (its place among all five), a colour 0. A curve starts at recall 0 with its
    first precision, recall on x."""
    pr = {
        "a": (np.array([1.0, 0.5]), np.array([0.25, 0.5])),
        "b": (np.array([0.8, 0.6]), np.array([0.5, 1.0])),
        "c": (np.array([1.0]), np.array([0.1])),
        "d": (np.zeros(0), np.zeros(0)),
        "e": (np.zeros(0), np.zeros(0)),
    }
    viz.plot_pr_curves(pr, tmp_path / "pr.png", ap={"a": 0.5, "b": 0.9, "c": 0.1}, max_curves=2, dpi=40)
    (ax,) = figures[0].axes
    assert ax.get_title() == "2 of 5 classes (1 more with data); 2 without test boxes or detections not drawn"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["b (AP 0.900)", "a (AP 0.500)"]
    b, a = ax.lines
    assert list(b.get_xdata()) == [0.0, 0.5, 1.0] and list(b.get_ydata()) == [0.8, 0.8, 0.6]
    assert list(a.get_xdata()) == [0.0, 0.25, 0.5] and list(a.get_ydata()) == [1.0, 1.0, 0.5]
    np.testing.assert_allclose(b.get_color(), np.array(TAB10[1]) / 255)
    np.testing.assert_allclose(a.get_color(), np.array(TAB10[0]) / 255)
    assert ax.get_ylim() == (0.0, 1.02)  # a precision-1 curve stays above the frame


def test_pr_plot_marks_a_class_whose_recall_is_nan_as_without_data(figures: list[Any], tmp_path: Path) -> None:
    pr = {"a": (np.array([1.0]), np.array([0.5])), "z": (np.array([np.nan]), np.array([np.nan]))}
    viz.plot_pr_curves(pr, tmp_path / "pr.png", ap={"a": 0.5}, dpi=40)
    (ax,) = figures[0].axes
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a (AP 0.500)", "z (no data)"]
    assert len(ax.lines[1].get_xdata()) == 0


# ------------------------------------------------------------------------------------------ PredictionImages
class _WandbStandIn(pl.loggers.WandbLogger):
    """A W&B logger that only records log_image (no run started)."""

    def __init__(self) -> None:
        self.images: list[tuple[str, list[str]]] = []

    def log_image(self, key: str, images: list[Any], **_: Any) -> None:  # type: ignore[override]
        self.images.append((key, images))


def _pred(boxes: list[list[float]], labels: list[int], scores: list[float]) -> dict[str, torch.Tensor]:
    return {"boxes": torch.tensor(boxes), "labels": torch.tensor(labels), "scores": torch.tensor(scores)}


@pytest.fixture
def picture_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SimpleNamespace:
    """Three 40 x 24 test images (the second unreadable), a rank-0 trainer, a module with class names, and the
    draw_detections calls the callback makes (still drawn)."""
    paths = []
    for i, name in enumerate(["p0.png", "broken.png", "p2.png"]):
        p = tmp_path / "images" / name
        p.parent.mkdir(exist_ok=True)
        if name == "broken.png":
            p.write_bytes(b"not an image")
        else:
            Image.fromarray(np.full((24, 40, 3), 30 * i, np.uint8)).save(p)
        paths.append(str(p))
    calls: list[dict[str, Any]] = []
    real = predictions.draw_detections

    def record(image: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor, scores: Any, names: Any, **kw: Any):
        calls.append(
            {"shape": tuple(image.shape), "boxes": boxes, "labels": labels, "scores": scores, "names": names, **kw}
        )
        return real(image, boxes, labels, scores, names, **kw)

    monkeypatch.setattr(predictions, "draw_detections", record)
    wandb = _WandbStandIn()
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path / "run"), loggers=[wandb])
    module = SimpleNamespace(class_names=["RBC", "WBC"], test_prefix="val")
    gt = [
        torch.tensor([[1.0, 2.0, 10.0, 12.0]]),
        torch.tensor([[3.0, 3.0, 9.0, 9.0]]),
        torch.tensor([[20.0, 4.0, 38.0, 22.0]]),
    ]
    gt_labels = [torch.tensor([0]), torch.tensor([1]), torch.tensor([1])]
    batch = {"image_paths": paths, "gt_boxes": gt, "gt_labels": gt_labels}
    outputs = [
        _pred([[2.0, 2.0, 12.0, 12.0], [5.0, 5.0, 30.0, 20.0], [0.0, 0.0, 4.0, 4.0]], [1, 0, 1], [0.5, 0.49, 0.9]),
        _pred([[1.0, 1.0, 5.0, 5.0]], [0], [0.9]),
        _pred([[21.0, 5.0, 37.0, 21.0]], [0], [0.7]),
    ]
    return SimpleNamespace(trainer=trainer, module=module, batch=batch, outputs=outputs, calls=calls, wandb=wandb)


def test_prediction_pictures_draw_the_boxes_at_or_over_the_threshold_with_their_image_truth(
    picture_run: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    """score_thresh=0.5: a box scored 0.5 is drawn, 0.49 is not; each picture gets its own image's truth and the
    module's class names; an unreadable image is skipped with a warning and the next one still drawn; the pictures
    are <run>/<dirname>/<image stem>.jpg at the image's size, logged to W&B under the module's test prefix."""
    r = picture_run
    cb = predictions.PredictionImages(num_images=5, score_thresh=0.5, dirname="preds")
    cb.on_test_epoch_start(r.trainer, r.module)  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING):
        cb.on_test_batch_end(r.trainer, r.module, r.outputs, r.batch, 0)  # type: ignore[arg-type]
    assert "broken.png" in caplog.text
    first, third = r.calls
    assert first["shape"] == (3, 24, 40) and first["names"] == ["RBC", "WBC"]
    assert first["boxes"].tolist() == [[2.0, 2.0, 12.0, 12.0], [0.0, 0.0, 4.0, 4.0]]
    assert first["labels"].tolist() == [1, 1] and first["scores"].tolist() == pytest.approx([0.5, 0.9])
    assert first["gt_boxes"].tolist() == [[1.0, 2.0, 10.0, 12.0]]
    assert first["gt_labels"].tolist() == [0] and third["gt_labels"].tolist() == [1]  # the truth's classes drawn
    assert third["gt_boxes"].tolist() == [[20.0, 4.0, 38.0, 22.0]] and third["boxes"].tolist() == [
        [21.0, 5.0, 37.0, 21.0]
    ]
    out = Path(r.trainer.default_root_dir) / "preds"
    assert cb.saved == [out / "p0.jpg", out / "p2.jpg"]
    assert sorted(p.name for p in out.iterdir()) == ["p0.jpg", "p2.jpg"]
    assert Image.open(out / "p2.jpg").size == (40, 24)
    with caplog.at_level(logging.INFO, logger="yolo9000.callbacks.predictions"):
        cb.on_test_epoch_end(r.trainer, r.module)  # type: ignore[arg-type]
    assert r.wandb.images == [("val/predictions", [str(out / "p0.jpg"), str(out / "p2.jpg")])]
    # the log says what the pictures show: an epoch-1 run's have only ground truth (nothing scored 0.3)
    assert (
        "prediction pictures (predictions scored >= 0.5: solid, captioned name and score; ground truth: dashed, its "
        f"class name at the bottom left; one colour per class): {out}"
    ) in caplog.text


def test_prediction_pictures_stop_at_num_images_restart_each_test_and_only_on_rank_zero(
    picture_run: SimpleNamespace,
) -> None:
    r = picture_run
    cb = predictions.PredictionImages(num_images=1)
    cb.on_test_epoch_start(r.trainer, r.module)  # type: ignore[arg-type]
    cb.on_test_batch_end(r.trainer, r.module, r.outputs, r.batch, 0)  # type: ignore[arg-type]
    assert [p.name for p in cb.saved] == ["p0.jpg"] and len(r.calls) == 1
    cb.on_test_epoch_start(r.trainer, r.module)  # type: ignore[arg-type]  # a second test (another size)
    cb.on_test_batch_end(r.trainer, r.module, r.outputs[2:], {k: v[2:] for k, v in r.batch.items()}, 0)  # type: ignore[arg-type]
    assert [p.name for p in cb.saved] == ["p2.jpg"]
    none = predictions.PredictionImages(num_images=0, dirname="none")
    none.on_test_batch_end(r.trainer, r.module, r.outputs, r.batch, 0)  # type: ignore[arg-type]
    assert not (Path(r.trainer.default_root_dir) / "none").exists()
    other = predictions.PredictionImages(dirname="rank1")
    r.trainer.is_global_zero = False
    other.on_test_batch_end(r.trainer, r.module, r.outputs, r.batch, 0)  # type: ignore[arg-type]
    assert other.saved == [] and not (Path(r.trainer.default_root_dir) / "rank1").exists()


def test_prediction_pictures_of_images_of_one_name_do_not_overwrite_each_other(picture_run: SimpleNamespace) -> None:
    """Test images ``a.png``, ``a.jpg`` and ``sub/a.png`` (one stem): three pictures, not one written three times."""
    r = picture_run
    folder = Path(r.batch["image_paths"][0]).parent
    paths = [folder / "a.png", folder / "a.jpg", folder / "sub" / "a.png"]
    (folder / "sub").mkdir()
    for k, p in enumerate(paths):
        Image.fromarray(np.full((24, 40, 3), 60 * k, np.uint8)).save(p)
    batch = {**r.batch, "image_paths": [str(p) for p in paths]}
    outputs = [r.outputs[0], r.outputs[2], r.outputs[2]]
    batch["gt_boxes"], batch["gt_labels"] = [r.batch["gt_boxes"][0]] * 3, [r.batch["gt_labels"][0]] * 3
    cb = predictions.PredictionImages(num_images=5)
    cb.on_test_epoch_start(r.trainer, r.module)  # type: ignore[arg-type]
    cb.on_test_batch_end(r.trainer, r.module, outputs, batch, 0)  # type: ignore[arg-type]
    assert [p.name for p in cb.saved] == ["a.jpg", "a_jpg.jpg", "a_png.jpg"]
    assert len({Image.open(p).getpixel((39, 23)) for p in cb.saved}) == 3  # three images' own pixels


# ------------------------------------------------------------------------------------------------- EpochLog
def _trainer(**kw: Any) -> SimpleNamespace:
    """One process, 10 epochs, no optimizer: :func:`test_run_rules._line_trainer` with these defaults."""
    return _line_trainer(**({"world_size": 1, "max_epochs": 10, "optimizers": []} | kw))


def _steps(cb: progress.EpochLog, trainer: SimpleNamespace, outputs: list[Any]) -> None:
    for out in outputs:
        cb.on_train_batch_start(trainer, None)  # type: ignore[arg-type]
        cb.on_train_batch_end(trainer, None, out, {"images": torch.zeros(2, 3, 8, 8)})  # type: ignore[arg-type]


def test_epoch_line_shows_the_terms_in_part_key_order_with_their_short_names() -> None:
    """Loss 4 significant digits, terms 3, named without their ``train/`` prefix (the joint terms: per image of
    their kind, the total being per image of the batch), in the order of part_keys (the step's own order and keys
    outside part_keys do not count), the seventh part key as well as the first."""
    cb, trainer = progress.EpochLog(), _trainer()
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    terms = {
        "train/cls": torch.tensor(2.0),
        "train/other": torch.tensor(5.0),
        "train/classification/loss": torch.tensor(1.23456),
        "train/coord": torch.tensor(0.61234),
    }
    _steps(cb, trainer, [{"loss": torch.tensor(3.14159), "terms": terms}])
    assert cb.line(trainer).startswith(  # type: ignore[arg-type]
        "epoch 1/10 | loss 3.142 (coord 0.612 cls 2 per classification image 1.23) |"
    )


def test_epoch_line_reads_the_configured_loss_and_validation_keys_in_their_order() -> None:
    cb = progress.EpochLog(loss_key="train/total", part_keys=(), val_keys=("val/top1", "val/map_50"))
    trainer = _trainer(callback_metrics={"val/map_50": torch.tensor(0.25), "val/loss": torch.tensor(1.5)})
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    _steps(cb, trainer, [{"loss": torch.tensor(2.0)}, {"loss": torch.tensor(4.0)}])
    trainer.callback_metrics["val/top1"] = torch.tensor(0.5)
    cb.on_validation_end(trainer, None)  # type: ignore[arg-type]
    line = cb.line(trainer)  # type: ignore[arg-type]
    assert " | loss 3 | " in line and line.endswith(" | val/top1 0.5000 | val/map_50 0.2500") and "val/loss" not in line


def test_eta_of_a_run_that_starts_at_a_later_epoch_paces_its_own_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run started at epoch 6 of 10 without an earlier run's timing (a checkpoint without it): its first epoch
    took 10 s, 4 epochs are left: ETA 40 s (not 40 / 6 s)."""
    clock = Clock(100.0)
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    cb, trainer = progress.EpochLog(), _trainer(current_epoch=5, global_step=500)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    clock.now = 110.0
    assert cb.line(trainer) == "epoch 6/10 | 10s elapsed, ETA 40s"  # type: ignore[arg-type]


def test_eta_before_any_step_of_a_step_capped_run_goes_by_epochs(monkeypatch: pytest.MonkeyPatch) -> None:
    """max_steps set and no step done yet (an epoch of no training batches): the epochs' pace, not a division by
    zero."""
    clock = Clock(0.0)
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    cb, trainer = progress.EpochLog(), _trainer(max_epochs=4, max_steps=100)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    clock.now = 5.0
    assert cb.line(trainer) == "epoch 1/4 (step 0/100) | 5s elapsed, ETA 15s"  # type: ignore[arg-type]


def test_progress_bar_description_is_padded_to_the_validation_bars() -> None:
    bar = progress.EpochProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=4)  # type: ignore[assignment]
    text = bar._get_train_description(0)
    assert text == "Epoch 1/4 " and len(text) == len(bar.validation_description) == len("Validation")


# ---------------------------------------------------------------------------------------------------- crops
def test_crop_windows_by_hand_on_a_wide_image() -> None:
    """A 60 x 40 image, margin 0.25: a 12 x 20 box [44, 10, 56, 30] (centre 50, 20) gets side 20 * 1.5 = 30, its
    window [35, 5, 65, 35] moved left inside: [30, 5, 60, 35]; a 20 x 8 box at the top [20, 0, 40, 8] (centre
    30, 4) side 30, window [15, -11, 45, 19] moved down: [15, 0, 45, 30]; a 30 x 4 box at the bottom right
    [30, 36, 60, 40] side 45 capped at the shorter image side 40: [20, 0, 60, 40]."""
    boxes = np.array([[44, 10, 56, 30], [20, 0, 40, 8], [30, 36, 60, 40]], np.float32)
    got = crop_windows(boxes, 60, 40, 0.25)
    assert got.dtype == np.float64
    assert got.tolist() == [[30, 5, 60, 35], [15, 0, 45, 30], [20, 0, 60, 40]]
    # inside a 100 x 80 image: a 20 x 10 box [40, 40, 60, 50] is centred at (50, 45): [35, 30, 65, 60]
    assert crop_windows(np.array([[40, 40, 60, 50]]), 100, 80, 0.25).tolist() == [[35, 30, 65, 60]]


W, H = 60, 40


def _gradient() -> np.ndarray:
    """R = 4 x, G = 5 y, B = 100: a pixel's colour says where it is."""
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([4 * x, 5 * y, np.full_like(x, 100)], axis=-1).astype(np.uint8)


def _voc(root: Path, images: dict[str, tuple[tuple[int, int], list[tuple[str, int, tuple[int, ...]]]]], splits) -> Path:
    """A VOC tree of PNG gradients: {image id: ((annotated width, height), [(class, difficult, 1-based xyxy)])}."""
    for d in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / d).mkdir(parents=True, exist_ok=True)
    for image_id, ((aw, ah), objects) in images.items():
        Image.fromarray(_gradient()).save(root / "JPEGImages" / f"{image_id}.png")
        ann = ET.Element("annotation")
        ET.SubElement(ann, "filename").text = f"{image_id}.png"
        size = ET.SubElement(ann, "size")
        ET.SubElement(size, "width").text, ET.SubElement(size, "height").text = str(aw), str(ah)
        for name, difficult, box in objects:
            obj = ET.SubElement(ann, "object")
            ET.SubElement(obj, "name").text = name
            ET.SubElement(obj, "difficult").text = str(difficult)
            bb = ET.SubElement(obj, "bndbox")
            for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True):
                ET.SubElement(bb, k).text = str(v)
        ET.ElementTree(ann).write(root / "Annotations" / f"{image_id}.xml")
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return root


@pytest.fixture(scope="module")
def gradient_voc(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """img1 (train, test): a difficult dog [2, 1, 10, 8] then a cat [44, 10, 56, 30] (0-based); img2 (val): the same cat
    annotated on a 120 x 40 image (x doubled: XML 89..112 -> [88, 10, 112, 30] -> [44, 10, 56, 30] on the 60 x 40
    pixels)."""
    images = {
        "img1": ((W, H), [("dog", 1, (3, 2, 10, 8)), ("cat", 0, (45, 11, 56, 30))]),
        "img2": ((2 * W, H), [("cat", 0, (89, 11, 112, 30))]),
    }
    splits = {"train": ["img1"], "val": ["img2"], "test": ["img1"]}
    return _voc(tmp_path_factory.mktemp("gradient_voc"), images, splits)


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), np.float64)


def test_crops_copy_the_window_of_the_image_into_class_and_split_folders(gradient_voc: Path, tmp_path: Path) -> None:
    """margin 0.25, side 30: the cat's window is [30, 5, 60, 35] (30 px: copied pixel for pixel, R = 4 (30 + j),
    G = 5 (5 + i)) in train/cat/img1_1.jpg and, from the rescaled annotation, val/cat/img2_0.jpg; the dog's
    window [0, 0, 12, 12] is stretched to 30 px (sample j at x = 0.4 (j + 0.5) - 0.5, clamped at 0: R = 4 x);
    every class has a folder in every split."""
    out = tmp_path / "crops"
    counts = build_crops(gradient_voc, out, ["cat", "dog"], ("train", "val"), margin=0.25, side=30, quality=100)
    assert counts == {"train": {"cat": 1, "dog": 1}, "val": {"cat": 1, "dog": 0}}
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg"))
    assert files == ["train/cat/img1_1.jpg", "train/dog/img1_0.jpg", "val/cat/img2_0.jpg"]
    assert (out / "val" / "dog").is_dir() and not any((out / "val" / "dog").iterdir())
    i, j = np.mgrid[0:30, 0:30]
    for cat in (out / "train" / "cat" / "img1_1.jpg", out / "val" / "cat" / "img2_0.jpg"):
        crop = _read(cat)
        assert crop.shape == (30, 30, 3)
        assert np.abs(crop[..., 0] - 4 * (30 + j)).mean() < 2 and np.abs(crop[..., 1] - 5 * (5 + i)).mean() < 2
    assert all(set(t) == {1} for t in Image.open(cat).quantization.values())  # quality 100: no quantisation
    dog = _read(out / "train" / "dog" / "img1_0.jpg")
    x = np.clip(0.4 * (np.arange(30) + 0.5) - 0.5, 0, None)
    assert abs((dog[..., 0] - 4 * x).mean()) < 0.25  # rounded to the nearest byte (truncation: -0.44)
    assert np.abs(dog[..., 0].mean(axis=0) - 4 * x).max() < 2.5 and np.abs(dog[..., 1].mean(axis=1) - 5 * x).max() < 2.5
    marker = json.loads((out / "crops.json").read_text())
    assert marker["settings"] == {
        "class_names": ["cat", "dog"],
        "splits": ["train", "val"],
        "margin": 0.25,
        "side": 30,
        "include_difficult": True,
        "quality": 100,
    }


def test_excluded_difficult_boxes_keep_the_annotation_index_of_the_others(gradient_voc: Path, tmp_path: Path) -> None:
    out = tmp_path / "easy"
    counts = build_crops(gradient_voc, out, ["cat", "dog"], ("train",), margin=0.25, side=30, include_difficult=False)
    assert counts == {"train": {"cat": 1, "dog": 0}}
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*.jpg")) == ["train/cat/img1_1.jpg"]
    crop = _read(out / "train" / "cat" / "img1_1.jpg")
    assert abs(crop[:, 0, 0].mean() - 120) < 3  # the window's first column is x = 30


@pytest.mark.parametrize(
    ("change", "rebuilt"),
    [
        ({}, False),
        ({"splits": ("train",)}, False),  # a build with more splits will do
        ({"splits": ("train", "val", "test")}, True),
        ({"margin": 0.3}, True),
        ({"side": 24}, True),
        ({"include_difficult": False}, True),
        ({"quality": 80}, True),
        ({"force": True}, True),
    ],
)
def test_a_complete_build_is_kept_unless_a_setting_changes(
    gradient_voc: Path, tmp_path: Path, change: dict[str, Any], rebuilt: bool
) -> None:
    out = tmp_path / "crops"
    base = {"splits": ("train", "val"), "margin": 0.25, "side": 30, "include_difficult": True, "quality": 90}
    build_crops(gradient_voc, out, ["cat", "dog"], **base)
    stamp = out / "train" / "cat" / "img1_1.jpg"
    stamp.write_bytes(b"left alone")
    counts = build_crops(gradient_voc, out, ["cat", "dog"], **(base | change))
    assert (stamp.read_bytes() != b"left alone") == rebuilt
    assert list(counts) == list((base | change)["splits"])  # the counts of the splits asked for


def test_crops_complete_reads_a_broken_marker_as_incomplete(tmp_path: Path) -> None:
    (tmp_path / "crops.json").write_text("{not json")
    assert not crops_complete(tmp_path)
    (tmp_path / "crops.json").write_text(json.dumps({"settings": {"side": 96}}))
    assert crops_complete(tmp_path) and not crops_complete(tmp_path, {"side": 64})


def test_format_counts_by_hand() -> None:
    table = format_counts({"train": {"RBC": 12, "Platelets": 3}, "val": {"RBC": 5, "Platelets": 0}})
    assert table.splitlines() == [
        "split           RBC  Platelets      total",
        "train            12          3         15",
        "val               5          0          5",
    ]
    assert format_counts({"train": {"a": 1, "b": 2}}).splitlines() == [  # short names: as wide as "total"
        "split         a      b  total",
        "train         1      2      3",
    ]


def test_make_crops_hands_every_option_on(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    mod = load_script("make_crops")
    seen: dict[str, Any] = {}

    def build(source: Path, out: Path, **kw: Any) -> dict[str, dict[str, int]]:
        seen.update(source=source, out=out, **kw)
        return {"train": {"a": 1}}

    monkeypatch.setattr(mod, "build_crops", build)
    argv = ["--source", str(tmp_path / "voc"), "--out", str(tmp_path / "o"), "--classes", "a", "b", "--splits", "val"]
    argv += ["--margin", "0.3", "--side", "64", "--quality", "80", "--exclude-difficult", "--on-error", "error"]
    assert mod.main([*argv, "--force"]) == {"train": {"a": 1}}
    assert seen == {
        "source": tmp_path / "voc",
        "out": tmp_path / "o",
        "class_names": ["a", "b"],
        "splits": ["val"],
        "margin": 0.3,
        "side": 64,
        "include_difficult": False,
        "quality": 80,
        "on_error": "error",
        "force": True,
    }


def test_a_failed_build_leaves_neither_the_folder_nor_its_temporary_one(gradient_voc: Path, tmp_path: Path) -> None:
    """on_error=error and an unreadable image in the second split: DataError, and no crops/ nor .crops.tmp-* left;
    on_error=skip cuts the rest."""
    from yolo9000.data.records import DataError

    voc = tmp_path / "voc"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (voc / sub).mkdir(parents=True)
        for f in (gradient_voc / sub).iterdir():
            (voc / sub / f.name).write_bytes(f.read_bytes())
    (voc / "JPEGImages" / "img2.png").write_bytes(b"not a png")
    out = tmp_path / "out" / "crops"
    with pytest.raises(DataError, match="img2"):
        build_crops(voc, out, ["cat", "dog"], ("train", "val"), on_error="error")
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").iterdir()) == []
    counts = build_crops(voc, out, ["cat", "dog"], ("train", "val"), on_error="skip")
    assert counts == {"train": {"cat": 1, "dog": 1}, "val": {"cat": 0, "dog": 0}}


def test_prediction_pictures_read_the_image_as_the_data_did(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The boxes are in the frame the dataset read: a phone photo stored 40 x 24 with EXIF orientation 6 (rotate
    90 degrees clockwise) is 24 x 40 upright, and its picture must be too (the stored pixels put every box in the
    wrong place); when the dataset kept the stored pixels (its original size says 24 x 40 high x wide) so does the
    picture; a BMP, which the dataset reads, is drawn too."""
    stored = np.zeros((24, 40, 3), np.uint8)
    stored[:, :20] = 255  # left half white: upright (rotated clockwise) it is the top half
    exif = Image.Exif()
    exif[0x0112] = 6
    photo = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(photo, exif=exif, quality=100)
    kept = tmp_path / "kept.jpg"  # the same photo, which the dataset read as stored
    kept.write_bytes(photo.read_bytes())
    bmp = tmp_path / "scan.bmp"
    Image.fromarray(stored).save(bmp)
    shapes: list[tuple[int, ...]] = []
    real = predictions.draw_detections
    monkeypatch.setattr(
        predictions, "draw_detections", lambda img, *a, **k: shapes.append(tuple(img.shape)) or real(img, *a, **k)
    )
    trainer = SimpleNamespace(is_global_zero=True, default_root_dir=str(tmp_path / "run"), loggers=[])
    none = _pred([[1.0, 1.0, 5.0, 5.0]], [0], [0.1])  # under the threshold: the bare image
    batch = {
        "image_paths": [str(photo), str(kept), str(bmp)],
        "gt_boxes": [torch.zeros(0, 4)] * 3,
        "gt_labels": [torch.zeros(0, dtype=torch.long)] * 3,
        "orig_sizes": torch.tensor([[40, 24], [24, 40], [24, 40]]),  # (h, w) as the dataset read each
    }
    cb = predictions.PredictionImages()
    cb.on_test_batch_end(trainer, SimpleNamespace(class_names=["a"]), [none] * 3, batch, 0)  # type: ignore[arg-type]
    assert [p.name for p in cb.saved] == ["phone.jpg", "kept.jpg", "scan.jpg"]
    assert shapes == [(3, 40, 24), (3, 24, 40), (3, 24, 40)]
    upright = _read(Path(trainer.default_root_dir) / "predictions" / "phone.jpg")
    assert upright[:18].min() > 200 and upright[22:].max() < 50  # white on top, black below
