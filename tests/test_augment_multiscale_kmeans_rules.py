"""Gaps found by mutation testing of the training augmentation, the multi-scale sampler and the k-means priors.

Each test checks an independent fact (darknet's ``load_data_detection`` / ``rand_scale`` / ``fill_truth_detection``,
detector.c's resize every 10 batches over 320..608 step 32, the paper's k-means with d = 1 - IoU), hand-computed
on a tiny image, a few boxes or a few shapes.
"""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import SequentialSampler

from yolo9000.anchors import _init_centroids, avg_iou, kmeans_anchors, resolve_priors, shape_iou
from yolo9000.data import DetectionTransform, MultiScaleBatchSampler, size_for_batch
from yolo9000.data.datamodule import MultiScaleConfig
from yolo9000.data.transforms import DarknetHSV, DarknetJitterResize, DarknetPlace

NO_COLOUR = {"hue": 0.0, "saturation": 1.0, "exposure": 1.0}
DARKNET_SIZES = list(range(320, 609, 32))  # detector.c: (rand() % 10 + 10) * 32


class _Fractions:
    """A stand-in for the step's ``py_random``: ``uniform(a, b)`` returns ``a + f * (b - a)`` for the next f."""

    def __init__(self, fractions: list[float]) -> None:
        self.fractions = list(fractions)

    def uniform(self, a: float, b: float) -> float:
        return a + self.fractions.pop(0) * (b - a)


# --------------------------------------------------------------------------------------------- jitter crop


def test_jitter_crop_is_darknets_window() -> None:
    """darknet: dw = (int)(w * jitter), dh = (int)(h * jitter); pleft, pright in U(-dw, dw), ptop, pbot in U(-dh, dh),
    each truncated toward zero (C's float -> int); the window is [pleft, w - pright) x [ptop, h - pbot)."""
    t = DarknetJitterResize(size=50, jitter=0.3)
    # 200 x 100 image: dw = 60, dh = 30
    t.py_random = _Fractions([0.75, 0.3125, 0.9, 0.125])  # type: ignore[assignment]
    crop = t.get_params_dependent_on_data({"shape": (100, 200, 3)}, {})["crop"]
    # pleft = -60 + 90 = 30; pright = -60 + 37.5 = -22.5 -> -22 (not floor's -23);
    # ptop = -30 + 54 = 24; pbot = -30 + 7.5 = -22.5 -> -22
    # window: x from 30, width 200 - 30 + 22 = 192; y from 24, height 100 - 24 + 22 = 98
    assert crop == (30, 24, 192, 98)


# --------------------------------------------------------------------------------------------- HEAD's placement


def test_place_is_darknet_heads_geometry() -> None:
    """darknet HEAD's load_data_detection, on a 40 x 20 image at 32 with jitter 0.25: dw = 10, dh = 5 (floats);
    new_ar = (40 + U(-10, 10)) / (20 + U(-5, 5)) = 45 / 20 = 2.25 >= 1, so nw = 32, nh = 32 / 2.25 = 14.22;
    dx = U(0, 0) = 0, dy = U(0, 17.78) = 4.44. The image is resized to int(32) x int(14.22) = 32 x 14 and pasted
    at (0, int(4.44) = 4) on grey; a box moves by the float geometry: x * 32 / 40, y * 14.22 / 20 + 4.44."""
    t = DarknetPlace(size=32, jitter=0.25, fill=127)
    t.py_random = _Fractions([0.75, 0.5, 0.3, 0.25])  # type: ignore[assignment]
    place = t.get_params_dependent_on_data({"shape": (20, 40, 3)}, {})["place"]
    np.testing.assert_allclose(place, (0.0, 0.25 * (32 - 32 / 2.25), 32.0, 32 / 2.25))
    img = np.random.default_rng(0).integers(0, 256, (20, 40, 3), dtype=np.uint8)
    out = t.apply(img, place=place)
    assert out.shape == (32, 32, 3)
    np.testing.assert_array_equal(out[4:18], cv2.resize(img, (32, 14), interpolation=cv2.INTER_LINEAR))
    assert (out[:4] == 127).all() and (out[18:] == 127).all()  # the canvas above and below the image
    box = np.array([[10 / 40, 5 / 20, 30 / 40, 15 / 20, 7.0]], np.float32)  # normalised xyxy and a carried column
    moved = t.apply_to_bboxes(box, place=place)
    dy, nh = place[1], place[3]
    np.testing.assert_allclose(
        moved[0] * [32, 32, 32, 32, 1], [8, 5 * nh / 20 + dy, 24, 15 * nh / 20 + dy, 7], rtol=1e-6
    )


def test_place_tall_aspect_and_an_image_larger_than_a_wide_input() -> None:
    """new_ar < 1: the height fills the input (nh = net height, nw = nh * new_ar). On a 32 x 64 (height x width)
    input a square image at new_ar 1 gets nw = 64, nh = 64 > 32: dy = U(0, -32) draws from [-32, 0] (darknet's
    rand_uniform swaps its bounds) and the image is placed partly above and below the input."""
    t = DarknetPlace(size=32, jitter=0.3)
    t.py_random = _Fractions([0.5, 1.0, 0.5, 0.5])  # type: ignore[assignment]
    # 50 x 50: new_ar = 50 / (50 + 15) < 1 -> nh = 32, nw = 32 * 50 / 65; dx = U(0, 32 - nw) halfway
    dx, dy, nw, nh = t.get_params_dependent_on_data({"shape": (50, 50, 3)}, {})["place"]
    assert (nh, dy) == (32.0, 0.0) and nw == pytest.approx(32 * 50 / 65) and dx == pytest.approx((32 - nw) / 2)
    wide = DarknetPlace(size=(32, 64), jitter=0.0)
    wide.py_random = _Fractions([0.5, 0.5, 0.5, 0.5])  # type: ignore[assignment]
    place = wide.get_params_dependent_on_data({"shape": (20, 20, 3)}, {})["place"]
    assert place == (0.0, -16.0, 64.0, 64.0)
    img = np.random.default_rng(1).integers(0, 256, (20, 20, 3), dtype=np.uint8)
    out = wide.apply(img, place=place)
    np.testing.assert_array_equal(out, cv2.resize(img, (64, 64), interpolation=cv2.INTER_LINEAR)[16:48])
    box = np.array([[0.0, 0.0, 0.5, 0.25]], np.float32)  # the top-left quarter-height strip: above the input
    np.testing.assert_allclose(wide.apply_to_bboxes(box, place=place)[0], [0, 0, 0.5, 0])  # clipped to the top


def test_place_mode_through_the_transform_maps_boxes_by_its_parameters() -> None:
    """``jitter_mode="place"``: the training transform's parameters are the placement's (scale nw / W, nh / H;
    pad dx, dy) and its boxes are the input boxes mapped by them; the image outside the placement is the fill."""
    img = np.full((120, 200, 3), 30, np.uint8)
    boxes = np.array([[20, 10, 120, 90], [150, 40, 190, 110]], np.float32)
    t = DetectionTransform(train=True, augment={**NO_COLOUR, "jitter": 0.3, "flip": 0.0, "jitter_mode": "place"})
    for seed in range(6):
        out = t(img, boxes, np.array([0, 1]), np.zeros(2, bool), 96, seed=seed)
        sx, sy, px, py = out.params
        np.testing.assert_allclose(out.boxes, boxes * [sx, sy, sx, sy] + [px, py, px, py], atol=1e-3)
        x, y, w, h = int(px), int(py), int(200 * sx + 1e-4), int(120 * sy + 1e-4)
        assert (out.image[y : y + h, x : x + w] == 30).all() and (out.image == 127).sum() == 3 * (96 * 96 - w * h)
    with pytest.raises(ValueError, match="jitter_mode must be crop or place"):
        DetectionTransform(train=True, augment={"jitter_mode": "letterbox"})
    with pytest.raises(ValueError, match=r"jitter must be in \[0, 0.5\) with jitter_mode=crop"):
        DetectionTransform(train=True, augment={"jitter": 0.6})
    DetectionTransform(train=True, augment={"jitter": 0.6, "jitter_mode": "place"})  # a side stays positive below 1


# --------------------------------------------------------------------------------------------- small boxes


def _one_image_transform(**aug: float) -> DetectionTransform:
    return DetectionTransform(train=True, augment={**NO_COLOUR, "jitter": 0.0, "flip": 0.0, **aug})


def test_box_of_exactly_the_minimum_side_is_kept() -> None:
    """darknet drops a box when ``w < .001 || h < .001``: a side equal to the threshold is kept. On a 64 x 64 image
    at 64 with no jitter the boxes are unchanged; with min_box_side = 1/64 the threshold is exactly 1 px."""
    img = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array([[8, 8, 9, 20], [8, 8, 8.5, 20], [20, 30, 40, 31]], np.float32)  # 1 px, 0.5 px, 1 px tall
    t = _one_image_transform(min_box_side=1 / 64, min_box_pixels=0.0)
    out = t(img, boxes, np.array([0, 1, 2]), np.zeros(3, bool), 64)
    assert out.labels.tolist() == [0, 2] and out.n_dropped == 1
    np.testing.assert_array_equal(out.boxes, boxes[[0, 2]])


def test_min_box_pixels_drops_a_box_with_either_side_too_short() -> None:
    """``min_box_pixels``: width or height under it drops the box (1.0 px exactly is kept); the default side rule
    (.001 * 64 = 0.064 px) keeps all of them, so only the pixel rule decides here."""
    img = np.zeros((64, 64, 3), np.uint8)
    boxes = np.array(
        [[8, 8, 9, 20], [8, 8, 8.5, 20], [20, 30, 40, 30.5], [20, 30, 40, 31]], np.float32
    )  # 1 x 12, 0.5 x 12, 20 x 0.5, 20 x 1
    out = _one_image_transform(min_box_pixels=1.0)(img, boxes, np.arange(4), np.zeros(4, bool), 64)
    assert out.labels.tolist() == [0, 3] and out.n_dropped == 2


# --------------------------------------------------------------------------------------------- flip


def test_flip_probability_one_always_mirrors() -> None:
    """``flip`` is the probability of the horizontal flip: at 1 every sample is mirrored, x -> size - x."""
    img = np.zeros((150, 200, 3), np.uint8)
    img[30:100, 40:120] = 255
    box = np.array([[40, 30, 120, 100]], np.float32)
    t = _one_image_transform(flip=1.0, fill=0)
    for seed in range(5):
        out = t(img, box, np.array([0]), np.array([False]), 100, seed=seed)
        # stretch 200 x 150 -> 100: (20, 20, 60, 66.67), mirrored: (100 - 60, 20, 100 - 20, 66.67)
        np.testing.assert_allclose(out.boxes[0], [40, 20, 80, 200 / 3], atol=1e-3)
        cols = np.nonzero(out.image.mean(axis=2).max(axis=0) > 191)[0]
        assert cols.min() == 40 and cols.max() == 79  # the drawn pixels are mirrored too


# --------------------------------------------------------------------------------------------- HSV


def test_saturation_scales_s_up_or_down_not_inverted() -> None:
    """S *= dsat: (200, 100, 100) has V = 200, S = 100 / 200 (OpenCV 128); dsat = 0.5 -> S = 64 / 255, so
    min = 200 * (1 - 64 / 255) = 149.8: (200, 150, 150). Inverting the factor would saturate it to (200, 0, 0)."""
    px = np.zeros((2, 2, 3), np.uint8)
    px[...] = (200, 100, 100)
    out = DarknetHSV().apply(px, dhue=0.0, dsat=0.5, dexp=1.0)
    assert np.abs(out[0, 0].astype(int) - [200, 150, 150]).max() <= 1


def test_hue_shift_wraps_around_the_circle() -> None:
    """darknet's distort_image: ``h += dhue; if (h < 0) h += 1``. Red (hue 0) shifted by -1/6 of the circle is at
    300 degrees, magenta: (200, 0, 200), not stuck at red."""
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 200
    out = DarknetHSV().apply(red, dhue=-1 / 6, dsat=1.0, dexp=1.0)
    assert np.abs(out[0, 0].astype(int) - [200, 0, 200]).max() <= 1


def test_rand_scale_inverts_half_the_time_and_hue_is_symmetric() -> None:
    """darknet ``rand_scale(s)``: U(1, s), returned as is or inverted with probability 1/2 each; dhue in
    U(-hue, hue). Over 2000 draws each side gets about half (sd 0.011)."""
    t = DarknetHSV(hue=0.1, saturation=1.5, exposure=1.5)
    t.set_random_state(np.random.default_rng(0), random.Random(0))
    draws = [t.get_params() for _ in range(2000)]
    sat, exp_, hue = (np.array([d[key] for d in draws]) for key in ("dsat", "dexp", "dhue"))
    for v in (sat, exp_):
        assert 0.45 < (v < 1).mean() < 0.55
        assert v.max() > 1.45 and v.min() < 1 / 1.45 and v.max() <= 1.5 and v.min() >= 1 / 1.5
    assert 0.45 < (hue < 0).mean() < 0.55


def test_a_scale_limit_below_1_draws_as_darknets_rand_uniform() -> None:
    """yolo9000.cfg's ``saturation=.75 exposure=.75``: darknet's ``rand_uniform(1, .75)`` swaps the bounds, so the
    factor is U(.75, 1) or its inverse: every draw in [.75, 1 / .75], about half below 1, about half of those
    under .875 (uniform on [.75, 1], not on its inverses). The detection pipeline takes the limit (it refused it
    before) and builds the HSV step with it; 1 is off, 0 refused."""
    t = DarknetHSV(hue=0.0, saturation=0.75, exposure=0.75)
    t.set_random_state(np.random.default_rng(0), random.Random(0))
    sat = np.array([t.get_params()["dsat"] for _ in range(4000)])
    assert sat.min() >= 0.75 and sat.max() <= 1 / 0.75 and sat.min() < 0.76 and sat.max() > 1 / 0.76
    below = sat[sat < 1]
    assert 0.45 < len(below) / len(sat) < 0.55 and 0.45 < (below < 0.875).mean() < 0.55
    steps = DetectionTransform(train=True, augment={"saturation": 0.75, "exposure": 0.75}).compose(64).transforms
    (hsv,) = [s for s in steps if isinstance(s, DarknetHSV)]
    assert (hsv.saturation, hsv.exposure) == (0.75, 0.75)
    off = DetectionTransform(train=True, augment=NO_COLOUR).compose(64).transforms
    assert not any(isinstance(s, DarknetHSV) for s in off)
    with pytest.raises(ValueError, match="scale limits > 0"):
        DetectionTransform(train=True, augment={"saturation": 0.0})


# --------------------------------------------------------------------------------------------- multi-scale


def test_default_period_and_sizes_are_darknets() -> None:
    """detector.c: a new size every 10 batches, (rand() % 10 + 10) * 32 = 320..608 step 32; the defaults of
    ``size_for_batch``, the sampler and the ``multiscale`` config section are those."""
    assert [size_for_batch(4, k, DARKNET_SIZES) for k in range(300)] == [
        size_for_batch(4, k, DARKNET_SIZES, 10) for k in range(300)
    ]
    assert MultiScaleBatchSampler(SequentialSampler(range(8)), 2, False, DARKNET_SIZES).period == 10
    cfg = MultiScaleConfig.from_mapping({})
    assert cfg.period == 10 and cfg.resolved_sizes() == DARKNET_SIZES


def test_start_at_another_epoch_on_a_fresh_sampler() -> None:
    """Resuming: a new sampler (epoch 0) told to start at batch 3 of epoch 2 yields exactly the rest of epoch 2,
    with that epoch's sizes and sample seeds, then whole epochs."""
    ref = MultiScaleBatchSampler(SequentialSampler(range(30)), 4, False, [64, 96, 128], period=2, seed=5)
    ref.set_epoch(2)
    whole = list(ref)
    bs = MultiScaleBatchSampler(SequentialSampler(range(30)), 4, False, [64, 96, 128], period=2, seed=5)
    bs.start_at(2, 3)
    assert list(bs) == whole[3:]
    assert list(bs) == whole  # the skip applies to one iteration


# --------------------------------------------------------------------------------------------- k-means


def test_kmeans_defaults_are_the_papers() -> None:
    """The paper's distance 1 - IoU is the default of ``kmeans_anchors`` and of ``resolve_priors``."""
    wh = torch.tensor([[0.1, 0.1], [0.12, 0.1], [0.5, 0.3], [0.55, 0.35], [0.2, 0.6]], dtype=torch.float64)
    assert kmeans_anchors(wh, 2).metric == "iou"
    assert resolve_priors("kmeans", wh, 13, k=2) == resolve_priors("kmeans", wh, 13, k=2, metric="iou")
    assert resolve_priors("kmeans", wh, 13, k=2) != resolve_priors("kmeans", wh, 13, k=2, metric="sse")


def test_objective_is_mean_one_minus_iou_or_sse() -> None:
    """``objective``: mean (1 - IoU) of the nearest anchor (= 1 - avg_iou) for "iou"; the sum of squared
    distances to the nearest anchor for "sse"."""
    wh = torch.rand(200, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.9 + 0.02
    iou = kmeans_anchors(wh, 3, metric="iou")
    assert iou.objective == pytest.approx(1 - avg_iou(wh, iou.anchors), abs=1e-12)
    sse = kmeans_anchors(wh, 3, metric="sse")
    d2 = ((wh[:, None, :] - sse.anchors[None]) ** 2).sum(-1)
    assert sse.objective == pytest.approx(float(d2.min(1).values.sum()), rel=1e-9)


def test_assignments_are_nearest_under_the_runs_metric() -> None:
    """Each box is assigned to its nearest anchor under the run's own distance: squared Euclidean for "sse",
    1 - IoU for "iou" (the two disagree on some boxes here)."""
    wh = torch.rand(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.9 + 0.02
    sse = kmeans_anchors(wh, 5, metric="sse")
    by_sse = ((wh[:, None, :] - sse.anchors[None]) ** 2).sum(-1).argmin(1)
    by_iou = (1 - shape_iou(wh, sse.anchors)).argmin(1)
    assert (by_sse != by_iou).any()
    assert torch.equal(sse.assignments, by_sse)
    iou = kmeans_anchors(wh, 5, metric="iou")
    assert torch.equal(iou.assignments, (1 - shape_iou(wh, iou.anchors)).argmin(1))


def test_best_iterate_is_kept() -> None:
    """Boxes 1 x 1 and 10 x 10, one cluster started at 10 x 10: average IoU (1/100 + 1) / 2 = .505. The mean
    update moves it to 5.5 x 5.5 (IoU 1/30.25 and 30.25/100: .168), worse under 1 - IoU: the start is kept."""
    wh = torch.tensor([[1.0, 1.0], [10.0, 10.0]], dtype=torch.float64)
    res = kmeans_anchors(wh, 1, init=torch.tensor([[10.0, 10.0]]))
    torch.testing.assert_close(res.anchors, torch.tensor([[10.0, 10.0]], dtype=torch.float64))
    assert res.avg_iou == pytest.approx(0.505, abs=1e-12) and res.objective == pytest.approx(0.495, abs=1e-12)


def test_restarts_keep_the_best_run() -> None:
    """The first restart draws what a single run draws (same seed), so more restarts never end worse than one,
    and here some end better."""
    wh = torch.rand(300, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 0.9 + 0.02
    better = 0
    for seed in range(4):
        one = kmeans_anchors(wh, 5, seed=seed, restarts=1).objective
        many = kmeans_anchors(wh, 5, seed=seed, restarts=4).objective
        assert many <= one
        better += many < one
    assert better >= 1


def test_empty_cluster_is_reseeded() -> None:
    """A start centroid no box is nearest to (50 x 50 among boxes under 1) is moved onto a box, so the two
    clusters are found: the anchors are the two groups' means."""
    g = torch.Generator().manual_seed(1)
    a = torch.tensor([0.05, 0.08], dtype=torch.float64) + 0.005 * torch.rand(40, 2, generator=g, dtype=torch.float64)
    b = torch.tensor([0.60, 0.30], dtype=torch.float64) + 0.02 * torch.rand(60, 2, generator=g, dtype=torch.float64)
    res = kmeans_anchors(torch.cat([a, b]), 2, init=torch.tensor([[0.3, 0.2], [50.0, 50.0]]))
    torch.testing.assert_close(res.anchors, torch.stack([a.mean(0), b.mean(0)]), rtol=0, atol=1e-12)


def test_kmeanspp_samples_by_squared_distance() -> None:
    """kmeans++ (D^2 sampling under 1 - IoU) on shapes 1x1, 1x2, 2x2: from 1x1 the distances are .5 (1x2) and
    .75 (2x2), so 1x2 comes second with probability .25 / (.25 + .5625) = .308 (by distance, not squared: .4);
    the same from 2x2. About 2000 of 3000 draws start at 1x1 or 2x2 (sd of the fraction ~.01)."""
    uniq = torch.tensor([[1.0, 1.0], [1.0, 2.0], [2.0, 2.0]], dtype=torch.float64)
    gen = torch.Generator().manual_seed(0)
    near = n = 0
    for _ in range(3000):
        c = _init_centroids(uniq, 2, "iou", "kmeans++", gen)
        if c[0, 0] == c[0, 1]:  # started at 1x1 or 2x2
            n += 1
            near += bool(c[1, 0] == 1 and c[1, 1] == 2)
    assert abs(near / n - 0.25 / 0.8125) < 0.04


def test_multiscale_step_and_period_below_one_are_refused_naming_the_key() -> None:
    """``data.multiscale.step=0`` raised Python's "range() arg 3 must not be zero" and ``period=0`` was taken
    (the log said "every 0 batches") until the first batch: both are refused at the config, naming the key."""
    with pytest.raises(ValueError, match=r"multiscale\.step must be a positive integer .*got 0"):
        MultiScaleConfig.from_mapping({"step": 0})
    with pytest.raises(ValueError, match=r"multiscale\.step must be a positive integer .*got -32"):
        MultiScaleConfig.from_mapping({"step": -32, "min_size": 320, "max_size": 192})
    with pytest.raises(ValueError, match=r"multiscale\.period must be a positive integer .*got 0"):
        MultiScaleConfig.from_mapping({"period": 0, "sizes": [320]})
    # explicit sizes take no step: a step the sizes do not use stays harmless
    assert MultiScaleConfig.from_mapping({"step": 0, "sizes": [160, 224]}).resolved_sizes() == [160, 224]


def test_kmeans_priors_with_k_beyond_the_box_shapes_name_the_key() -> None:
    """model.priors.k=9 on a small training split of 3 box shapes: the error names model.priors.k and the counts."""
    wh = np.array([[0.1, 0.2], [0.3, 0.3], [0.3, 0.3], [0.5, 0.4]])
    with pytest.raises(ValueError, match=r"model\.priors\.k=9: .*the 3 distinct box shapes .*\(4 boxes\)"):
        resolve_priors("kmeans", wh, 13, k=9)
    assert len(resolve_priors("kmeans", wh, 13, k=3).anchors) == 3
