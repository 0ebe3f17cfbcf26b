"""Rectangular inputs: ``data.img_size=[height, width]`` and a darknet cfg's rectangular ``[net]`` evaluated at
its height x width, as darknet's ``detector valid`` runs the network, and trained at it with multi-scale off (darknet's
``random=0``). Expected values are worked out by hand on
tiny images (each axis scaled on its own), so a height / width swap or a square normalisation shows."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from conftest import compose_config
from test_darknet import scaled_cfg
from yolo9000.anchors import handpicked_anchors, resolve_priors
from yolo9000.build import build, check_config
from yolo9000.checkpoints import checkpoint_to_darknet, darknet_to_checkpoint
from yolo9000.data.dataset import DetectionCollate
from yolo9000.data.resize import check_input_size, normal_size, size_text
from yolo9000.data.transforms import DetectionTransform

ROOT = Path(__file__).resolve().parents[1]
BCCD = ["RBC", "WBC", "Platelets"]


def _image(w: int, h: int) -> np.ndarray:
    return np.full((h, w, 3), 60, np.uint8)


def _sample(h: int, w: int, boxes: list[list[float]]) -> dict:
    return {
        "image": torch.zeros(3, h, w, dtype=torch.uint8),
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.arange(len(boxes)),
        "image_id": "x",
        "path": "x.jpg",
        "orig_size": (h, w),
        "transform": torch.tensor([1.0, 1.0, 0.0, 0.0]),
        "gt_boxes": torch.zeros(0, 4),
        "gt_labels": torch.zeros(0, dtype=torch.long),
        "gt_difficult": torch.zeros(0, dtype=torch.bool),
    }


def test_sizes_as_configs_give_them() -> None:
    assert check_input_size(416) == (416, 416) and check_input_size([352, 608]) == (352, 608)
    assert normal_size((64, 64)) == 64 and normal_size([64, 96]) == (64, 96) and normal_size(96) == 96
    assert size_text((352, 608)) == "352x608" and size_text(416) == "416"
    for bad in ([64, 100], [64, 96, 128], 0, True):
        with pytest.raises((TypeError, ValueError)):
            check_input_size(bad)


def test_collate_normalises_each_axis_by_its_own_side() -> None:
    """A 64 x 128 (h x w) input: a box (0, 0, 64, 32) is cx 32 / 128, cy 16 / 64, w 64 / 128, h 32 / 64."""
    batch = DetectionCollate()([_sample(64, 128, [[0, 0, 64, 32], [64, 32, 128, 64]])])
    assert batch["images"].shape == (1, 3, 64, 128)
    want = torch.tensor([[0.25, 0.25, 0.5, 0.5, 0.0], [0.75, 0.75, 0.5, 0.5, 1.0]])
    torch.testing.assert_close(batch["targets"][0], want)
    with pytest.raises(ValueError, match="different input sizes"):  # the same sides, other way round
        DetectionCollate()([_sample(64, 128, [[0, 0, 8, 8]]), _sample(128, 64, [[0, 0, 8, 8]])])


@pytest.mark.parametrize("letterbox", [False, True])
def test_eval_transform_at_height_by_width(letterbox: bool) -> None:
    """A 256 x 32 (w x h) image into 64 x 128 (h x w). Stretch: x by 128 / 256 = 0.5, y by 64 / 32 = 2. Letterbox
    (darknet: net_w / w = 0.5 < net_h / h = 2, the width limits): 128 x 16 at y 24, both axes by 0.5."""
    t = DetectionTransform(train=False, augment={"letterbox": letterbox})
    box = np.array([[10, 4, 50, 12]], np.float32)
    out = t(_image(256, 32), box, np.array([1]), np.array([False]), (64, 128))
    assert out.image.shape == (64, 128, 3)
    want_box, want_params = ([5, 26, 25, 30], [0.5, 0.5, 0, 24]) if letterbox else ([5, 8, 25, 24], [0.5, 2, 0, 0])
    np.testing.assert_allclose(out.boxes, [want_box], atol=1e-4)
    np.testing.assert_allclose(out.params, want_params, atol=1e-6)


def test_train_transform_rules_per_axis() -> None:
    """The training transform at 64 x 128 (h x w), no jitter or colour: each axis scaled by its side, and darknet's
    small-box side rule (normalised width or height < min_box_side) judges the width by 128 and the height by 64."""
    aug = {"jitter": 0.0, "flip": 0.0, "hue": 0.0, "saturation": 1.0, "exposure": 1.0, "min_box_side": 0.1}
    t = DetectionTransform(train=True, augment=aug)
    # a 128 x 64 image: the input's own size. Box 0: 10 x 10 px (10 / 128 < 0.1: dropped); box 1: 20 x 7 px
    # (20 / 128 >= 0.1, 7 / 64 >= 0.1: kept; judged by the other axis' side, 7 / 128 would drop it)
    boxes = np.array([[0, 0, 10, 10], [40, 20, 60, 27]], np.float32)
    out = t(_image(128, 64), boxes, np.array([0, 1]), np.zeros(2, bool), (64, 128), seed=3)
    assert out.image.shape == (64, 128, 3)
    np.testing.assert_allclose(out.params, [1, 1, 0, 0], atol=1e-6)
    assert out.labels.tolist() == [1] and out.n_dropped == 1
    np.testing.assert_allclose(out.boxes, [[40, 20, 60, 27]], atol=1e-4)
    out = t(_image(256, 32), np.array([[10, 4, 50, 12]], np.float32), np.array([0]), np.zeros(1, bool), (64, 128))
    np.testing.assert_allclose(out.params, [0.5, 2, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out.boxes, [[5, 8, 25, 24]], atol=1e-4)


def _datamodule(**kw):  # noqa: ANN202
    from hydra import compose, initialize_config_dir

    from yolo9000.environment import setup_environment

    setup_environment()
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train.yaml", overrides=["data.max_images=4", "data.num_workers=0", "data.batch_size=2"])
    import hydra

    data = OmegaConf.to_container(cfg.data, resolve=True)
    data.update(kw)
    return hydra.utils.instantiate(data), cfg


def test_datamodule_evaluates_and_trains_at_height_by_width() -> None:
    """A [height, width] img_size: evaluation batches at 64 x 96 with the photo's own scales; with multi-scale off
    the training batches too (darknet's random=0 trains at its [net] width x height), with it on they are square
    (darknet's random=1 resizes to dim x dim)."""
    dm, cfg = _datamodule(img_size=[64, 96])
    assert dm.img_size == (64, 96)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["images"].shape[1:] == (3, 64, 96)
    # the boxes scaled back: a BCCD photo is 640 x 480, so x by 96 / 640 and y by 64 / 480
    torch.testing.assert_close(batch["transforms"][0], torch.tensor([96 / 640, 64 / 480, 0.0, 0.0]))
    fixed, _ = _datamodule(img_size=[64, 96], multiscale={"enabled": False})
    fixed.setup("fit")
    train = next(iter(fixed.train_dataloader()))
    assert train["images"].shape == (2, 3, 64, 96)
    assert fixed.multiscale_kwargs()["fixed_size"] == (64, 96)
    multi, _ = _datamodule(img_size=[64, 96], multiscale={"enabled": True, "sizes": [64, 128], "period": 1})
    assert [s for _, s, _ in next(iter(multi.train_batch_sampler()))][0] in (64, 128)  # a side: square
    assert _datamodule(img_size=[64, 64])[0].img_size == 64
    with pytest.raises(InstantiationException, match="img_size must be a multiple of 32, got"):
        _datamodule(img_size=[64, 100])
    with pytest.raises(InstantiationException, match=r"multiscale.fixed_size must be a multiple of 32"):
        _datamodule(multiscale={"enabled": False, "fixed_size": [64, 100]})
    check_config(OmegaConf.merge(cfg, {"data": {"img_size": [64, 96]}}))  # trains
    with pytest.raises(ValueError, match=r"data.img_size must be a multiple of 32, got \[64, 100\]"):
        check_config(OmegaConf.merge(cfg, {"data": {"img_size": [64, 100]}}))


def test_anchors_of_a_rectangular_grid_are_in_each_sides_cells() -> None:
    """darknet's anchors are grid cells: on a 2-row x 4-column grid a box of 0.5 x 0.25 of the image is 2 cells wide
    and 0.5 cell high; its average IoU with that anchor is 1, with a 1 x 1-cell anchor (0.25 x 0.5 of the image) 1/3
    (sides swapped: 1)."""
    wh = torch.tensor([[0.5, 0.25]] * 6, dtype=torch.float64)
    priors = resolve_priors("kmeans", wh, (4, 2), k=1)
    assert priors.anchors == [[2.0, 0.5]] and priors.avg_iou == pytest.approx(1.0)
    assert resolve_priors([[2.0, 0.5]], wh, (4, 2)).avg_iou == pytest.approx(1.0)
    # 0.25 x 0.5 against 0.5 x 0.25: 0.0625 / (0.125 + 0.125 - 0.0625)
    assert resolve_priors([[1.0, 1.0]], wh, (4, 2)).avg_iou == pytest.approx(1 / 3, abs=1e-6)
    wide, high = handpicked_anchors(4), handpicked_anchors(2)
    assert handpicked_anchors((4, 2)) == [[a[0], b[1]] for a, b in zip(wide, high, strict=True)]


def test_a_rectangular_img_size_builds_and_trains_at_height_by_width(tmp_path: Path) -> None:
    """``data.img_size=[64, 128]`` with multi-scale off: k-means anchors in cells of each side (their widths those
    of a square 128 input, their heights those of a square 64), the checkpoint's default input 64 x 128 (also the
    [net] of its darknet cfg), and a training step on a 2 x 4 grid."""
    from yolo9000 import Detector

    tiny = ["data.max_images=8", "data.batch_size=2", "data.num_workers=0", "model.net.backbone.width=0.125"]
    tiny += ["data.multiscale.enabled=false", "model.priors.anchors=kmeans"]
    rect = build(compose_config("train", *tiny, "data.img_size=[64,128]"))
    wide = build(compose_config("train", *tiny, "data.img_size=128")).info.anchors
    high = build(compose_config("train", *tiny, "data.img_size=64")).info.anchors
    assert rect.info.anchors == [[w[0], h[1]] for w, h in zip(wide, high, strict=True)]
    assert rect.info.predict_hw == [64, 128] and rect.info.eval_size == 64
    module = rect.module
    assert module.input_hw == (64, 128) and module.model_config["predict_hw"] == [64, 128]
    batch = module.on_before_batch_transfer(next(iter(rect.datamodule.train_dataloader())), 0)
    assert batch["images"].shape[-2:] == (64, 128)
    # each truth's cell: (int(cx * 4), int(cy * 2)), the normalised centre in cells of each side (darknet's)
    a, t = batch["assignment"], batch["targets"]
    centres = t[a.b_idx, a.t_idx, :2]
    expected = torch.stack([(centres[:, 0] * 4).long(), (centres[:, 1] * 2).long()], 1)
    assert len(expected) and torch.equal(a.cell, expected) and int(a.cell[:, 0].max()) >= 2
    batch = module.on_after_batch_transfer(batch, 0)
    module.train()
    assert module(batch["images"]).shape[-2:] == (2, 4)
    loss = module.training_step(batch, 0)
    loss = loss["loss"] if isinstance(loss, dict) else loss
    assert torch.isfinite(loss) and loss > 0
    ckpt = tmp_path / "rect.ckpt"
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}, ckpt)
    assert Detector.from_checkpoint(ckpt).input_hw == (64, 128)
    checkpoint_to_darknet(ckpt, tmp_path / "rect.weights", tmp_path / "rect.cfg")
    net = (tmp_path / "rect.cfg").read_text().split("[", 2)[1]
    assert "height=64\n" in net and "width=128\n" in net


def test_model_stats_of_a_rectangle_count_its_area() -> None:
    """A fully convolutional network's FLOPs grow with the input's area: 64 x 128 costs twice 64 x 64."""
    from yolo9000.results import model_stats

    net = build(compose_config("train", "data.max_images=4", "model.net.backbone.width=0.125")).module.model
    square, rect = model_stats(net, 64), model_stats(net, (64, 128))
    assert rect["gflops"] == pytest.approx(2 * square["gflops"], rel=1e-9)
    assert rect["gflops_input_size"] == [64, 128] and square["gflops_input_size"] == 64


@pytest.mark.slow  # ~16 s, two eval.py launches; the rectangular evaluation's parts are the tests above
def test_eval_runs_a_rectangular_darknet_net_at_its_height_by_width(tmp_path: Path) -> None:
    """A converted cfg with [net] height=64 width=96 is evaluated at 64 x 96 by default (darknet's ``detector
    valid``), logged and written to metrics.json; ``data.img_size=64`` still evaluates it square."""
    names = tmp_path / "bccd.names"
    names.write_text("\n".join(BCCD) + "\n")
    cfg = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    rect = tmp_path / "rect.cfg"
    rect.write_text(re.sub(r"width=\d+", "width=96", re.sub(r"height=\d+", "height=64", cfg.read_text()), count=1))
    ckpt = tmp_path / "rect.ckpt"
    torch.save(darknet_to_checkpoint(rect, None, names), ckpt)
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    small = ["data.max_images=2", "data.num_workers=0", "draw=0", "data.eval_batch_size=2"]
    for out, extra, want in ((tmp_path / "rect", [], [64, 96]), (tmp_path / "square", ["data.img_size=64"], 64)):
        cmd = [sys.executable, str(ROOT / "src" / "eval.py"), f"hydra.run.dir={out}", f"ckpt_path={ckpt}", *small]
        res = subprocess.run([*cmd, *extra], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-3000:]
        assert json.loads((out / "metrics.json").read_text())["img_size"] == want
        assert f"input size: {size_text(normal_size(check_input_size(want)))} " in res.stdout + res.stderr
