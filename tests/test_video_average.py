"""darknet's ``detector demo`` averages the region layer's outputs over 3 frames (``mean_arrays`` of the activated
outputs) and draws them on the middle frame: :func:`yolo9000.postprocess.average_outputs` against hand-computed
means, and :meth:`yolo9000.Detector.predict_video` with ``average`` against windows averaged here in numpy."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import compose_config, load_script
from test_cli_bench_detect_eval import make_checkpoint
from test_video import write_clip
from yolo9000.api import Detector, _IndexedImages
from yolo9000.postprocess import average_outputs
from yolo9000.wordtree import WordTree

LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75; softmax(ln 3, 0) = (0.75, 0.25)


def one_box(tx: float, ty: float, tw: float, th: float, to: float, *classes: float) -> torch.Tensor:
    """A (1, 5 + C, 1, 1) head output of one anchor on a 1 x 1 grid."""
    return torch.tensor([tx, ty, tw, th, to, *classes]).view(1, -1, 1, 1)


def test_the_mean_of_activated_outputs_comes_back_as_raw_outputs() -> None:
    """Frames (0, 0, 1, 2, 0 | 0, 0) and (ln3, -ln3, 3, 4, ln3 | ln3, 0): x's logistic mean (0.5 + 0.75) / 2 =
    0.625, y's (0.5 + 0.25) / 2 = 0.375, w and h the raw means 2 and 3, the objectness 0.625, the softmax classes
    ((0.5, 0.5) + (0.75, 0.25)) / 2 = (0.625, 0.375); logistic classes (0.5 + 0.75) / 2 and 0.5 each; with the
    offset location x and y are means of the raw values; one frame is itself."""
    a = one_box(0, 0, 1, 2, 0, 0, 0)
    b = one_box(LN3, -LN3, 3, 4, LN3, LN3, 0)
    out = average_outputs(torch.cat([a, b]), 1).view(-1)
    assert out[:2].sigmoid().tolist() == pytest.approx([0.625, 0.375], abs=1e-6)
    assert out[2:4].tolist() == pytest.approx([2.0, 3.0]) and out[4].sigmoid().item() == pytest.approx(0.625)
    assert out[5:].softmax(0).tolist() == pytest.approx([0.625, 0.375], abs=1e-6)
    logistic = average_outputs(torch.cat([a, b]), 1, class_activation="logistic").view(-1)
    assert logistic[5:].sigmoid().tolist() == pytest.approx([0.625, 0.5], abs=1e-6)
    offset = average_outputs(torch.cat([a, b]), 1, location="offset").view(-1)
    assert offset[:2].tolist() == pytest.approx([LN3 / 2, -LN3 / 2])
    assert torch.equal(average_outputs(a, 1), a)


def test_a_tree_head_averages_each_sibling_groups_softmax(tmp_path: Path) -> None:
    """A 4-node tree (root's children 0 and 1; node 1's children 2 and 3): group softmaxes (0.5, 0.5 | 0.75, 0.25)
    and (0.75, 0.25 | 0.5, 0.5) average to (0.625, 0.375 | 0.625, 0.375) per group."""
    (tmp_path / "t.tree").write_text("a -1\nb -1\nc 1\nd 1\n")
    tree = WordTree.from_file(tmp_path / "t.tree")
    a = one_box(0, 0, 0, 0, 0, 0, 0, LN3, 0)
    b = one_box(0, 0, 0, 0, 0, LN3, 0, 0, 0)
    out = average_outputs(torch.cat([a, b]), 1, tree=tree).view(-1)
    assert tree.softmax(out[5:]).tolist() == pytest.approx([0.625, 0.375, 0.625, 0.375], abs=1e-6)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def numpy_window_mean(raws: list[np.ndarray], anchors: int) -> np.ndarray:
    """darknet's mean_arrays on the activated outputs, done here in numpy, back to raw (logit / log) outputs."""
    act = []
    for r in raws:
        v = r.reshape(anchors, -1, *r.shape[-2:]).astype(np.float64).copy()
        v[:, [0, 1, 4]] = _sigmoid(v[:, [0, 1, 4]])
        e = np.exp(v[:, 5:] - v[:, 5:].max(1, keepdims=True))
        v[:, 5:] = e / e.sum(1, keepdims=True)
        act.append(v)
    m = np.mean(act, axis=0)
    m[:, [0, 1, 4]] = np.log(m[:, [0, 1, 4]] / (1 - m[:, [0, 1, 4]]))
    m[:, 5:] = np.log(m[:, 5:])
    return m.reshape(1, *raws[0].shape).astype(np.float32)


def rows(scores: torch.Tensor, boxes: torch.Tensor) -> list[float]:
    """The detections as one sorted list of (score, box) rows, flattened (equal scores come in either order)."""
    table = sorted(zip(scores.round(decimals=4).tolist(), boxes.round(decimals=2).tolist(), strict=True))
    return [v for s, b in table for v in (s, *b)]


@pytest.mark.parametrize(("average", "window", "letterbox"), [(3, (1, 1), False), (2, (0, 1), True)])
def test_predict_video_averages_each_frames_window(
    tmp_path: Path, average: int, window: tuple[int, int], letterbox: bool
) -> None:
    """5 frames in batches of 2, ``average=3``: frame k's detections decode the mean over frames k-1..k+1 (k = 0:
    0..1; k = 4: 3..4); ``average=2`` (letterboxed): over k..k+1 (the last frame alone); every frame once, in
    order."""
    det = Detector.from_checkpoint(make_checkpoint(tmp_path / "m.ckpt"), conf_thresh=0.01)
    clip = tmp_path / "clip.avi"
    write_clip(clip, 5)
    got = list(det.predict_video(clip, size=64, batch_size=2, average=average, letterbox=letterbox))
    assert [d.index for _, d in got] == list(range(5))
    frames = [f for f, _ in got]
    transform = det._transforms[letterbox]
    reads = [det._read(_IndexedImages([f], (64, 64), transform=transform), range(1)) for f in frames]
    raws = [det._forward(r["images"]).numpy()[0] for r in reads]
    anchors = int(det.module.model.anchors.shape[0])
    before, after = window
    for k, (_, d) in enumerate(got):
        mean = numpy_window_mean(raws[max(0, k - before) : k + after + 1], anchors)
        with torch.no_grad():
            (want,) = det.module.predict_raw(
                torch.from_numpy(mean), (64, 64), reads[k]["transforms"], reads[k]["orig_sizes"], 0.01, None, None
            )
        assert len(d.scores) == len(want["scores"]) > 0
        assert rows(d.scores, d.boxes) == pytest.approx(rows(want["scores"], want["boxes"]), abs=1e-3)
    single = list(det.predict_video(clip, size=64, batch_size=2, letterbox=letterbox))
    assert any(not torch.equal(a.scores, b.scores) for (_, a), (_, b) in zip(got, single, strict=True))
    with pytest.raises(ValueError, match=r"average must be an integer >= 1 \(frames whose outputs are averaged\)"):
        next(iter(det.predict_video(clip, average=0)))


def test_detect_py_averages_three_frames_by_default_as_darknets_demo(tmp_path: Path) -> None:
    """detect.py's ``video_average`` is 3 unless given: its per-frame detections are predict_video's with
    ``average=3`` (and differ from each frame on its own); ``video_average=0`` is refused naming the key."""
    ckpt = make_checkpoint(tmp_path / "m.ckpt")
    clip = tmp_path / "clip.avi"
    write_clip(clip, 4)
    detect = load_script("detect")
    cfg = compose_config("detect", f"ckpt_path={ckpt}", f"source={clip}", "img_size=64", "conf_thresh=0.01")
    assert cfg.video_average == 3
    det = Detector.from_checkpoint(ckpt, conf_thresh=0.01)
    record = detect.detect_video(det, clip, (64, 64), cfg, tmp_path / "d" / "clip.mp4")
    per_frame = [f["detections"] for f in record["detections_per_frame"]]
    averaged = [d.to_dict()["detections"] for _, d in det.predict_video(clip, size=64, average=3)]
    alone = [d.to_dict()["detections"] for _, d in det.predict_video(clip, size=64)]
    assert per_frame == averaged and per_frame != alone
    with pytest.raises(ValueError, match=r"video_average must be an integer >= 1, got 0"):
        detect.check_settings(compose_config("detect", f"ckpt_path={ckpt}", f"source={clip}", "video_average=0"))
