"""Transforms keep boxes on the drawn pixels, and the eval parameters map boxes back to the original image."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from yolo9000.data import AugmentConfig, DetectionTransform, letterbox_geometry
from yolo9000.data.transforms import DarknetHSV, DarknetJitterResize

NO_COLOUR = {"hue": 0.0, "saturation": 1.0, "exposure": 1.0}


def _canvas(w: int = 200, h: int = 150, box: tuple[int, int, int, int] = (40, 30, 120, 100)) -> np.ndarray:
    """Black image with a white rectangle covering pixels [x0, x1) x [y0, y1) (= the continuous box)."""
    img = np.zeros((h, w, 3), np.uint8)
    x0, y0, x1, y1 = box
    img[y0:y1, x0:x1] = 255
    return img


def _white_extent(img: np.ndarray) -> np.ndarray:
    """Continuous xyxy extent of the pixels brighter than mid-grey."""
    ys, xs = np.nonzero(img.mean(axis=2) > 191)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_train_transform_keeps_box_on_drawn_pixels():
    box = (40, 30, 120, 100)
    img = _canvas(box=box)
    t = DetectionTransform(train=True, augment={**NO_COLOUR, "jitter": 0.3, "flip": 0.5, "fill": 0})
    torch.manual_seed(0)
    flips = 0
    for trial in range(40):
        size = (64, 96, 128)[trial % 3]
        out = t(img, np.array([box], np.float32), np.array([1]), np.array([False]), size)
        assert out.image.shape == (size, size, 3) and out.image.dtype == np.uint8
        if len(out.boxes) == 0:  # cropped away (counted)
            assert out.n_dropped == 1
            continue
        assert out.labels.tolist() == [1]
        b = out.boxes[0]
        assert (b >= 0).all() and (b <= size).all()
        assert _iou(_white_extent(out.image), b) > 0.85
        # the params (jitter crop + resize, before the flip) place the box; with a flip it is mirrored
        sx, sy, px, py = out.params
        mapped = np.array([box[0] * sx + px, box[1] * sy + py, box[2] * sx + px, box[3] * sy + py]).clip(0, size)
        mirrored = np.array([size - mapped[2], mapped[1], size - mapped[0], mapped[3]])
        is_flip = np.allclose(b, mirrored, atol=1e-3) and not np.allclose(b, mapped, atol=1e-3)
        flips += is_flip
        assert np.allclose(b, mapped, atol=1e-3) or is_flip
    assert 5 <= flips <= 35


@pytest.mark.parametrize("warp", [False, True])
def test_jitter_fill_and_geometry(warp: bool):
    img = np.full((100, 200, 3), 10, np.uint8)
    t = DarknetJitterResize(size=50, jitter=0.3, fill=127, warp=warp)
    # window starting 20 px left of / 10 px above the image, 250 x 100 px
    out = t.apply(img, crop=(-20, -10, 250, 100))
    assert out.shape == (50, 50, 3)
    assert (out[:, :3] == 127).all() and (out[:3, :] == 127).all()  # grey fill beyond the image
    assert (out[10:, 10:40] == 10).all()
    rep = DarknetJitterResize(size=50, jitter=0.3, border="replicate", warp=warp).apply(img, crop=(-20, -10, 250, 100))
    assert (rep == 10).all()  # edge pixels instead of grey
    boxes = np.array([[0.1, 0.2, 0.5, 0.6, 7.0]], np.float32)  # normalised xyxy + label column
    got = t.apply_to_bboxes(boxes, crop=(-20, -10, 250, 100), shape=(100, 200, 3))
    # x: (0.1 * 200 + 20) / 250 = 0.16, (0.5 * 200 + 20) / 250 = 0.48; y: (20 + 10) / 100, (60 + 10) / 100
    np.testing.assert_allclose(got, [[0.16, 0.3, 0.48, 0.7, 7.0]], atol=1e-6)


def _window_resized(img: np.ndarray, crop: tuple[int, int, int, int], size: tuple[int, int], border: str) -> np.ndarray:
    """The jitter crop's pixels built independently: the window cut from the image padded by its largest possible
    overhang (fill 127 or the edge pixels, NumPy), then cv2.resize to ``size`` (h, w)."""
    import cv2

    x0, y0, cw, ch = crop
    h, w = img.shape[:2]
    pad = max(-x0, -y0, x0 + cw - w, y0 + ch - h, 0)
    mode = "edge" if border == "replicate" else "constant"
    big = np.pad(
        img,
        ((pad, pad), (pad, pad), (0, 0)),
        mode=mode,
        **({"constant_values": 127} if pad and mode == "constant" else {}),
    )
    window = big[y0 + pad : y0 + pad + ch, x0 + pad : x0 + pad + cw]
    return cv2.resize(window, size[::-1], interpolation=cv2.INTER_LINEAR)


def test_the_warp_check_agrees_with_random_windows_and_catches_a_half_pixel(monkeypatch):
    """warp_matches_resize (the once-per-process check the warp paths wait for) says what 30 random windows of noise
    (sizes, overhangs, borders) say of this OpenCV's warp against the padded window resized; a warp half a pixel off
    fails it."""
    import cv2

    from yolo9000.data import resize

    rng = np.random.default_rng(3)
    worst = 0
    for _ in range(30):
        h, w = (int(v) for v in rng.integers(20, 200, 2))
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        x0, y0 = int(rng.integers(-w // 3, w // 3)), int(rng.integers(-h // 3, h // 3))
        cw, ch = int(rng.integers(w // 2, w + w // 3)), int(rng.integers(h // 2, h + h // 3))
        size = (int(rng.integers(8, ch + 1)), int(rng.integers(8, cw + 1)))  # shrunk: both borders apply
        border = ("constant", "replicate")[int(rng.integers(2))]
        ix0, iy0 = max(x0, 0), max(y0, 0)
        patch = img[iy0 : min(y0 + ch, h), ix0 : min(x0 + cw, w)]
        mode = cv2.BORDER_REPLICATE if border == "replicate" else cv2.BORDER_CONSTANT
        fast = resize.warp_resample(patch, size, cw / size[1], ch / size[0], x0 - ix0, y0 - iy0, mode)
        worst = max(worst, int(np.abs(fast.astype(int) - _window_resized(img, (x0, y0, cw, ch), size, border)).max()))
    assert resize.warp_matches_resize() == (worst <= 1)
    if int(cv2.__version__.split(".")[0]) >= 5:  # its warp samples in float: the warp paths must run there
        assert resize.warp_matches_resize() and worst <= 1
    real = resize.warp_resample
    monkeypatch.setattr(
        resize, "warp_resample", lambda src, hw, sx, sy, ox, oy, *a: real(src, hw, sx, sy, ox + 0.5, oy, *a)
    )
    resize.warp_matches_resize.cache_clear()
    try:
        assert not resize.warp_matches_resize()
    finally:
        monkeypatch.undo()
        resize.warp_matches_resize.cache_clear()


def test_warp_asked_on_an_opencv_that_fails_the_check_gives_the_resize_exactly(monkeypatch):
    """Where warp_matches_resize is False (OpenCV 4.x), warp=True runs the resize: the earlier pixels bit for bit."""
    from yolo9000.data import resize, transforms

    monkeypatch.setattr(resize, "warp_matches_resize", lambda: False)
    img = np.random.default_rng(4).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    crop = (-10, 5, 70, 50)
    for border in ("constant", "replicate"):
        got = DarknetJitterResize(size=(32, 40), border=border, warp=True).apply(img, crop=crop)
        np.testing.assert_array_equal(got, _window_resized(img, crop, (32, 40), border))
    place = transforms.DarknetPlace(size=64, warp=True).apply(img, place=(3.0, 9.0, 60.0, 40.0))
    np.testing.assert_array_equal(place, _placed(img, 3, 9, 60, 40, (64, 64)))


@pytest.mark.parametrize("channels", [0, 1, 4, 5])  # 0: a 2-D grey image
def test_warp_keeps_the_channel_layout_and_leaves_what_it_cannot_take(channels: int):
    """Grey (2-D and one channel) and 4-channel images warp to their own layout within a grey level of the resize
    (both geometries); 5 channels (beyond OpenCV's scalar border value) take the resize, bit for bit, and run."""
    from yolo9000.data.resize import warp_matches_resize
    from yolo9000.data.transforms import DarknetPlace

    shape = (50, 70) if channels == 0 else (50, 70, channels)
    img = np.random.default_rng(5).integers(0, 256, shape, dtype=np.uint8)
    crop, place = (-6, 4, 66, 50), (4.0, 6.0, 56.0, 40.0)
    outs = {}
    for warp in (True, False):
        outs[warp] = (
            # (a grey border for 5 channels is beyond OpenCV's scalar either way: the edge pixels)
            DarknetJitterResize(size=(24, 32), border="replicate" if channels == 5 else "constant", warp=warp).apply(
                img, crop=crop
            ),
            DarknetPlace(size=(48, 64), warp=warp).apply(img, place=place) if channels != 1 else None,
        )
    for fast, slow in zip(outs[True], outs[False], strict=True):
        if slow is None:  # the resize and paste of a (h, w, 1) image fails as it always did (cv2 drops the axis)
            continue
        if channels == 1 and fast.ndim == 3 and slow.ndim == 2:  # the warp keeps the axis cv2.resize dropped
            slow = slow[..., None]
        assert fast.shape == slow.shape
        if channels == 5 or not warp_matches_resize():
            np.testing.assert_array_equal(fast, slow)
        else:
            assert np.abs(fast.astype(int) - slow.astype(int)).max() <= 1


def _needs_close_warp() -> None:
    from yolo9000.data.resize import warp_matches_resize

    if not warp_matches_resize():
        pytest.skip("this OpenCV's warp is not within a grey level of its resize: the resize runs (tested above)")


@pytest.mark.parametrize("border", ["constant", "replicate"])
def test_warp_samples_the_crop_window_as_resize_does(border: str, monkeypatch):
    """The warp path (one cv2.warpAffine) gives the pixels of the window padded and resized, within one grey level,
    on noise (every pixel an edge, the worst case for a sampling offset: half a pixel off moves the values by tens of
    levels) over windows reaching past every side and lying inside the image, shrunk and (replicate) enlarged; it
    builds no window (cv2.copyMakeBorder / cv2.resize are not called)."""
    import cv2

    _needs_close_warp()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    crops = [(-30, -20, 230, 150), (25, 15, 110, 90), (-40, 10, 150, 140), (10, -25, 170, 100)]
    sizes = [(64, 96), (32, 32)] + ([(160, 192)] if border == "replicate" else [])  # (h, w); the last enlarges
    want = {(c, s): _window_resized(img, c, s, border) for c in crops for s in sizes}

    def refuse(*args, **kwargs):
        raise AssertionError("the warp path built the window")

    monkeypatch.setattr(cv2, "copyMakeBorder", refuse)
    monkeypatch.setattr(cv2, "resize", refuse)
    diffs = []
    for (crop, size), expected in want.items():
        got = DarknetJitterResize(size=size, fill=127, border=border, warp=True).apply(img, crop=crop)
        assert got.shape == expected.shape
        diffs.append(np.abs(got.astype(int) - expected.astype(int)))
    every = np.concatenate([d.ravel() for d in diffs])
    assert every.max() <= 1 and every.mean() < 0.3


def test_crop_warp_keeps_resize_where_it_would_read_other_pixels():
    """A constant border and a window enlarged (taps beyond the window's inner edge: cv2.resize repeats the window's
    edge, a warp would read grey): the two steps run, bit for bit the warp=False pixels; other interpolations too."""
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    crop = (10, -5, 50, 40)  # inside the image on three sides, grey above: 50 x 40 -> 96 x 96 enlarges
    fast = DarknetJitterResize(size=96, border="constant", warp=True).apply(img, crop=crop)
    np.testing.assert_array_equal(fast, _window_resized(img, crop, (96, 96), "constant"))
    import cv2

    area = DarknetJitterResize(size=32, interpolation=cv2.INTER_AREA, warp=True).apply(img, crop=(-10, -10, 100, 80))
    np.testing.assert_array_equal(
        area, DarknetJitterResize(size=32, interpolation=cv2.INTER_AREA).apply(img, crop=(-10, -10, 100, 80))
    )


def test_warp_is_the_config_default_and_a_switch_for_both_geometries():
    assert AugmentConfig().warp
    for mode in ("crop", "place"):
        (on, *_), (off, *_) = (
            DetectionTransform(True, {"jitter_mode": mode, "warp": w}).compose(64).transforms for w in (True, False)
        )
        assert on.warp and not off.warp, mode


def _placed(img: np.ndarray, x: int, y: int, iw: int, ih: int, size: tuple[int, int]) -> np.ndarray:
    """darknet HEAD's placement built independently: the image cv2.resize-d to iw x ih pasted at (x, y) on a 127
    canvas of ``size`` (h, w), by pasting it whole on a canvas large enough for any offset and cutting the input's
    rectangle out of that."""
    import cv2

    oy, ox = ih + abs(y), iw + abs(x)
    big = np.full((size[0] + 2 * oy, size[1] + 2 * ox, *img.shape[2:]), 127, np.uint8)
    resized = cv2.resize(img, (iw, ih), interpolation=cv2.INTER_LINEAR).reshape(ih, iw, *img.shape[2:])
    big[oy + y : oy + y + ih, ox + x : ox + x + iw] = resized
    return big[oy : oy + size[0], ox : ox + size[1]]


def test_place_warp_is_the_resize_and_paste_within_a_grey_level(monkeypatch):
    """HEAD's placement with ``warp``: on noise, the pasted image within one grey level of cv2.resize + paste and the
    canvas around it exactly grey, for placements inside the input and hanging over each side, shrunk in both axes;
    no cv2.resize runs. Enlarged in an axis: the resize and paste, bit for bit."""
    import cv2

    from yolo9000.data.transforms import DarknetPlace

    _needs_close_warp()
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (90, 120, 3), dtype=np.uint8)
    cases = [((64, 96), (5, 7, 80, 50)), ((64, 96), (-20, 30, 100, 60)), ((32, 64), (10, -12, 70, 40)),
             ((96, 64), (0, 0, 64, 90)), ((64, 160), (20, 4, 120, 50)), ((64, 96), (100, 70, 60, 40))]  # fmt: skip
    # ((h, w), (x, y, iw, ih)): inside, over the left, over the top, the image's own height (sy = 1), its own width
    # placed right of the edge (sx = 1), entirely off the canvas
    want = {c: _placed(img, *c[1], c[0]) for c in cases}
    enlarged = ((160, 96), (3, 2, 90, 150))  # 90 -> 150 high: enlarged
    want_big = _placed(img, *enlarged[1], enlarged[0])

    def refuse(*args, **kwargs):
        raise AssertionError("the warp path resized the image")

    with monkeypatch.context() as m:
        m.setattr(cv2, "resize", refuse)
        for (size, (x, y, iw, ih)), expected in want.items():
            t = DarknetPlace(size=size, fill=127, warp=True)
            # float geometry, truncated toward zero as darknet's place_image: to (x, y, iw, ih)
            got = t.apply(img, place=(x + 0.25 * np.sign(x), y + 0.5 * np.sign(y), iw + 0.9, ih + 0.1))
            inside = np.zeros(size, bool)
            inside[max(y, 0) : max(0, y + ih), max(x, 0) : max(0, x + iw)] = True
            assert (got[~inside] == 127).all()  # the canvas exactly
            assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    got = DarknetPlace(size=enlarged[0], fill=127, warp=True).apply(img, place=tuple(map(float, enlarged[1])))
    np.testing.assert_array_equal(got, want_big)


@pytest.mark.parametrize(
    ("rule", "kept"),
    [("side", [0, 1]), ("area", [0])],  # darknet's side rule keeps the small box, the area rule drops it
)
def test_small_boxes_are_dropped_and_counted(rule: str, kept: list[int]) -> None:
    img = _canvas()
    aug = {**NO_COLOUR, "jitter": 0.0, "flip": 0.0, "min_box_pixels": 0.0, "small_box": rule, "min_box_area": 0.01}
    t = DetectionTransform(train=True, augment=aug)
    boxes = np.array([[40, 30, 120, 100], [0, 0, 12, 12], [150, 100, 150.1, 140]], np.float32)
    out = t(img, boxes, np.array([0, 1, 2]), np.zeros(3, bool), 64)
    # at 64 / (200 x 150): box 1 is 3.84 x 5.12 px: both sides >= 0.001 * 64 but 19.7 px^2 < 0.01 * 64^2 = 41;
    # box 2 is 0.032 px wide: < 0.001 * 64 = 0.064 (side rule) and 0.4 px^2 (area rule): dropped by both
    assert out.labels.tolist() == kept and out.n_dropped == 3 - len(kept) and t.dropped_boxes == 3 - len(kept)
    np.testing.assert_allclose(out.boxes[0], [12.8, 12.8, 38.4, 42.6667], atol=1e-3)


def test_eval_stretch_maps_back():
    box = (40, 30, 120, 100)
    img = _canvas(box=box)
    t = DetectionTransform(train=False)
    out = t(img, np.array([box], np.float32), np.array([0]), np.array([False]), 96)
    sx, sy, px, py = out.params
    assert (sx, sy, px, py) == pytest.approx((96 / 200, 96 / 150, 0, 0))
    np.testing.assert_allclose(out.boxes[0], [19.2, 19.2, 57.6, 64.0], atol=1e-4)
    assert _iou(_white_extent(out.image), out.boxes[0]) > 0.9
    back = (out.boxes[0] - [px, py, px, py]) / [sx, sy, sx, sy]
    np.testing.assert_allclose(back, box, atol=1e-3)


def test_eval_letterbox_maps_back():
    box = (20, 10, 60, 50)
    img = _canvas(200, 100, box)
    t = DetectionTransform(train=False, augment={"letterbox": True, "fill": 127})
    out = t(img, np.array([box], np.float32), np.array([0]), np.array([False]), 64)
    assert letterbox_geometry(200, 100, 64) == (64, 32, 0, 16)
    sx, sy, px, py = out.params
    assert (sx, sy, px, py) == pytest.approx((0.32, 0.32, 0, 16))
    # hand-computed: (20 * 0.32, 10 * 0.32 + 16, 60 * 0.32, 50 * 0.32 + 16)
    np.testing.assert_allclose(out.boxes[0], [6.4, 19.2, 19.2, 32.0], atol=1e-4)
    assert (out.image[:16] == 127).all() and (out.image[48:] == 127).all()
    assert _iou(_white_extent(out.image), out.boxes[0]) > 0.85
    back = (out.boxes[0] - [px, py, px, py]) / [sx, sy, sx, sy]
    np.testing.assert_allclose(back, box, atol=1e-3)
    # a portrait image: padding left / right
    nw, nh, px, py = letterbox_geometry(30, 60, 64)
    assert (nw, nh, px, py) == (32, 64, 16, 0)
    # darknet's integer arithmetic (letterbox_image): 333 * 416 / 517 = 267.9 -> 267 rows, pad (416 - 267) / 2 = 74;
    # 375 * 320 / 1242 = 96.6 -> 96, pad 112
    assert letterbox_geometry(517, 333, 416) == (416, 267, 0, 74)
    assert letterbox_geometry(1242, 375, 320) == (320, 96, 0, 112)
    assert letterbox_geometry(333, 517, 416) == (267, 416, 74, 0)


def test_rectangular_network_input() -> None:
    """A (height, width) input: darknet's letterbox_image picks the side that limits the scale by net_w / w <
    net_h / h and truncates the other in integers; the stretch maps each axis on its own. Hand-computed."""
    # 640 x 480 into 352 x 608 (h x w): 608 / 640 = .95 > 352 / 480 = .73: the height limits; 640 * 352 / 480 = 469.3
    assert letterbox_geometry(640, 480, (352, 608)) == (469, 352, 69, 0)
    assert letterbox_geometry(480, 640, (352, 608)) == (264, 352, 172, 0)  # portrait: 480 * 352 / 640 = 264
    assert letterbox_geometry(1000, 200, (352, 608)) == (608, 121, 0, 115)  # wide: 200 * 608 / 1000 = 121.6
    assert letterbox_geometry(640, 480, (416, 416)) == letterbox_geometry(640, 480, 416) == (416, 312, 0, 52)
    img = _canvas(200, 100, (20, 10, 60, 50))
    for letterbox in (False, True):
        t = DetectionTransform(train=False, augment={"letterbox": letterbox, "fill": 127})
        out, params = t.resize(img, (64, 96))
        assert out.shape == (64, 96, 3)
        if letterbox:  # 96 / 200 = .48 < 64 / 100: the width limits, 48 rows at 8
            assert tuple(params) == pytest.approx((0.48, 0.48, 0, 8))
            assert (out[:8] == 127).all() and (out[56:] == 127).all() and (out[8:56] != 127).any()
        else:
            assert tuple(params) == pytest.approx((0.48, 0.64, 0, 0))
        sx, sy, px, py = params
        white = _white_extent(out)  # the white box lands where the params put it
        np.testing.assert_allclose(white, [20 * sx + px, 10 * sy + py, 60 * sx + px, 50 * sy + py], atol=1.5)


def test_hsv_jitter():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    t = DarknetHSV(hue=0.1, saturation=1.5, exposure=1.5)
    assert np.array_equal(t.apply(img, dhue=0.0, dsat=1.0, dexp=1.0), img)
    darker = t.apply(img, dhue=0.0, dsat=1.0, dexp=0.5)
    assert abs(darker.max(axis=2).astype(float).mean() / img.max(axis=2).mean() - 0.5) < 0.02  # V = max(RGB)
    grey = np.full((4, 4, 3), 100, np.uint8)
    assert np.abs(t.apply(grey, dhue=0.1, dsat=1.5, dexp=1.0).astype(int) - 100).max() <= 1  # no hue/sat in grey
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 200
    shifted = t.apply(red, dhue=1 / 3, dsat=1.0, dexp=1.0)  # +120 degrees: red -> green
    assert shifted[0, 0, 1] > 190 and shifted[0, 0, 0] < 10
    for _ in range(50):
        p = t.get_params()
        assert -0.1 <= p["dhue"] <= 0.1 and 1 / 1.5 <= p["dsat"] <= 1.5 and 1 / 1.5 <= p["dexp"] <= 1.5


def test_worker_seeds_give_different_augmentations():
    img = _canvas()
    box = np.array([[40, 30, 120, 100]], np.float32)

    def run(seed: int) -> list:
        t = DetectionTransform(train=True)
        torch.manual_seed(seed)  # a DataLoader worker has its own torch seed
        return [tuple(t(img, box, [0], [False], 64).params) for _ in range(4)]

    assert run(1) == run(1) and run(1) != run(2)
    t = DetectionTransform(train=True)
    t(img, box, [0], [False], 64)
    assert t._cache
    import pickle

    t2 = pickle.loads(pickle.dumps(t))  # what a spawned worker gets: no cached pipelines
    assert t2._cache == {}


def test_augment_config_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown augment keys"):
        AugmentConfig.from_mapping({"jiter": 0.2})
    assert AugmentConfig.from_mapping(None) == AugmentConfig()


def test_transform_equals_albumentations_compose():
    """A call runs the pipeline's steps without albumentations' Compose machinery: the images, kept boxes and
    labels equal what the Compose itself returns for the same seed (exactly when it filters boxes once, after the
    last step, as the pipeline is built; to float32 rounding with albumentations' default of filtering after every
    step, whose re-normalisation through float64 moves about half the BCCD samples by one float32 step), including
    boxes the jitter crop cuts or drops."""
    import albumentations as A

    from yolo9000.data.transforms import seed_pipeline

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    x0, y0 = rng.uniform(0, 155, 40), rng.uniform(0, 115, 40)  # valid boxes, many near the edges
    x1, y1 = np.minimum(x0 + rng.uniform(0.5, 40, 40), 160), np.minimum(y0 + rng.uniform(0.5, 30, 40), 120)
    boxes = np.stack([x0, y0, x1, y1], 1).astype(np.float32)
    boxes[0] = [-5, 10, 30, 200]  # beyond the image: clipped on the way in, as by the Compose
    labels, difficult = np.arange(40) % 3, np.zeros(40, bool)
    aug = {"jitter": 0.4, "min_box_pixels": 0.0}
    fast = DetectionTransform(train=True, augment=aug)
    once = fast._build(64)  # the Compose as the transform builds it (check_each_transform=False)
    assert once.processors["bboxes"].params.check_each_transform is False
    each = A.Compose(fast._build(64).transforms, bbox_params=A.BboxParams("pascal_voc", ["idx"], clip=True))
    dropped = 0
    for seed in range(200):
        a = fast(image, boxes, labels, difficult, 64, seed=seed)
        for ref, atol in ((once, 0.0), (each, 1e-4)):
            seed_pipeline(ref, seed)  # force_apply: the Compose's own probability draw is not made
            b = ref(image=image, bboxes=boxes, idx=np.arange(40), force_apply=True)
            ref_boxes, ref_idx = np.asarray(b["bboxes"], np.float32).reshape(-1, 4), np.asarray(b["idx"], np.int64)
            side = np.minimum(ref_boxes[:, 2] - ref_boxes[:, 0], ref_boxes[:, 3] - ref_boxes[:, 1])
            small = side < 0.001 * 64  # then darknet's small-box rule (the transform's own, not the Compose's)
            assert np.array_equal(a.image, b["image"])
            assert np.array_equal(a.labels, labels[ref_idx[~small]])
            np.testing.assert_allclose(a.boxes, ref_boxes[~small], rtol=0, atol=atol)
        dropped += a.n_dropped
    assert dropped > 0  # the crops did cut boxes away


def test_augmentation_draws_are_independent():
    """Every augmentation parameter comes from one random stream, drawn in turn (darknet's one ``rand()``
    sequence). albumentations' own seeding gives every step a generator seeded alike, under which the flip coin,
    the crop's left offset and the hue shift are all the first number of one sequence: flipped iff the offset is
    negative, the hue a linear function of it. Here they are independent: the flip happens as often with either
    sign of the offset, and the hue is uncorrelated with it."""
    from yolo9000.data.classify_transforms import ClassificationTransform

    img = np.random.default_rng(1).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = np.array([[10, 10, 60, 60]], np.float32)
    t = DetectionTransform(train=True)
    rows = []
    for seed in range(600):
        t(img, box, [0], [False], 64, seed=seed)
        jit, flip, hsv = t.compose(64).transforms
        rows.append((jit.params["crop"][0], bool(flip.params), hsv.params["dhue"]))
    left, flipped, hue = (np.array(c, float) for c in zip(*rows, strict=True))
    assert abs(np.corrcoef(left, hue)[0, 1]) < 0.15, "hue follows the crop offset"
    assert abs(flipped[left < 0].mean() - flipped[left >= 0].mean()) < 0.15
    assert 0.4 < flipped.mean() < 0.6
    c = ClassificationTransform(train=True, size=32)
    rows = []
    for seed in range(600):
        c(img, seed=seed)
        _, flip, hsv = c.compose().transforms
        rows.append((bool(flip.params), hsv.params["dhue"]))
    flipped, hue = (np.array(v, float) for v in zip(*rows, strict=True))
    assert abs(flipped[hue < 0].mean() - flipped[hue >= 0].mean()) < 0.15


@pytest.mark.parametrize("interpolation", ["nearest", "linear", "area", "cubic"])
def test_eval_resize_into_a_buffer_equals_opencv_and_albumentations(interpolation: str) -> None:
    """The eval resize alone (inference) gives the pixels of OpenCV's resize, albumentations' ``Resize`` (the step
    it replaced) and darknet's letterbox layout (cv2's border fill), also when written into a slot of a batch
    buffer, for 3 and 1 channels and an image already at the size."""
    import albumentations as A
    import cv2

    from yolo9000.data.resize import _INTERPOLATIONS, letterbox_image, stretch_image

    interp = _INTERPOLATIONS[interpolation]
    rng = np.random.default_rng(3)
    for image in (rng.integers(0, 256, (75, 130, 3), np.uint8), rng.integers(0, 256, (90, 40, 1), np.uint8)):
        c = image.shape[2]
        ref = A.Resize(64, 64, interpolation=interp)(image=image)["image"]
        assert ref.shape == (64, 64, c)
        assert np.array_equal(ref, cv2.resize(image, (64, 64), interpolation=interp).reshape(64, 64, c))
        buffer = np.zeros((3, 64, 64, c), np.uint8)
        assert np.shares_memory(stretch_image(image, 64, interp, out=buffer[1]), buffer)
        assert np.array_equal(buffer[1], ref) and not buffer[0].any() and not buffer[2].any()
        strided = np.zeros((64, 64, c + 1), np.uint8)[..., :c]  # not contiguous: written through a copy
        assert np.array_equal(stretch_image(image, 64, interp, out=strided), ref) and np.array_equal(strided, ref)
        # letterbox: 130 x 75 -> 64 x 36 (36 = 75 * 64 // 130) at rows 14..50 on grey 127 (cv2's constant border)
        h, w = image.shape[:2]
        nw, nh = (64, h * 64 // w) if w > h else (w * 64 // h, 64)
        px, py = (64 - nw) // 2, (64 - nh) // 2
        small = cv2.resize(image, (nw, nh), interpolation=interp).reshape(nh, nw, c)
        want = cv2.copyMakeBorder(small, py, 64 - nh - py, px, 64 - nw - px, cv2.BORDER_CONSTANT, value=(127,) * c)
        assert np.array_equal(letterbox_image(image, 64, 127, interp, out=buffer[2]), want.reshape(64, 64, c))
        assert np.array_equal(buffer[2], want.reshape(64, 64, c))
    same = rng.integers(0, 256, (64, 64, 3), np.uint8)
    assert stretch_image(same, 64, interp) is same  # as albumentations: an image at the size is not resampled
    out = np.zeros_like(same)
    assert stretch_image(same, 64, interp, out=out) is out and np.array_equal(out, same)
    t = DetectionTransform(train=False, augment={"interpolation": interpolation})
    image = rng.integers(0, 256, (75, 130, 3), np.uint8)
    full = t(image, np.array([[10.0, 10.0, 50.0, 40.0]]), np.zeros(1, np.int64), np.zeros(1, bool), 64)
    assert np.array_equal(t.resize(image, 64)[0], full.image)  # the validation pipeline's step is the same function


def test_eval_warp_is_the_resize_within_a_grey_level_and_a_switch(monkeypatch) -> None:
    """The eval resize with ``warp`` (the default of the config, EvalResize and the Detector): on noise, the stretch
    (shrunk and enlarged, into a batch slot and a strided view) and the shrinking letterbox within one grey level of
    cv2.resize, the letterbox's border exactly grey, without cv2.resize; an enlarging letterbox and ``warp=False``
    give cv2.resize's pixels bit for bit, and so does the warp where this OpenCV fails the check."""
    import cv2

    from yolo9000.data import resize
    from yolo9000.data.resize import EvalResize

    assert AugmentConfig().eval_warp and EvalResize().warp
    rng = np.random.default_rng(6)
    images = [rng.integers(0, 256, (75, 130, 3), np.uint8), rng.integers(0, 256, (40, 30, 3), np.uint8)]
    slow = {(i, lb): EvalResize(lb, warp=False).resize(im, (64, 96))[0] for i, im in enumerate(images) for lb in (0, 1)}
    for (i, lb), want in slow.items():  # warp=False: cv2.resize, the letterbox on cv2's constant border
        h, w = images[i].shape[:2]
        if not lb:
            np.testing.assert_array_equal(want, cv2.resize(images[i], (96, 64), interpolation=cv2.INTER_LINEAR))
            continue
        nw, nh, px, py = resize.letterbox_geometry(w, h, (64, 96))
        small = cv2.resize(images[i], (nw, nh), interpolation=cv2.INTER_LINEAR)
        border = cv2.copyMakeBorder(small, py, 64 - nh - py, px, 96 - nw - px, cv2.BORDER_CONSTANT, value=(127,) * 3)
        np.testing.assert_array_equal(want, border)

    with monkeypatch.context() as m:  # where this OpenCV's warp is not that close: cv2.resize, bit for bit
        m.setattr(resize, "warp_matches_resize", lambda: False)
        np.testing.assert_array_equal(EvalResize(warp=True).resize(images[0], (64, 96))[0], slow[0, 0])
    _needs_close_warp()

    def refuse(*args, **kwargs):
        raise AssertionError("the warp path resized the image")

    buffer = np.zeros((2, 64, 96, 3), np.uint8)
    with monkeypatch.context() as m:
        m.setattr(cv2, "resize", refuse)
        for i in (0, 1):  # shrunk and enlarged
            got, params = EvalResize(warp=True).resize(images[i], (64, 96), out=buffer[i])
            assert np.shares_memory(got, buffer) and not np.array_equal(got, slow[i, 0])  # another path
            assert np.abs(got.astype(int) - slow[i, 0].astype(int)).max() <= 1
            np.testing.assert_array_equal(params, EvalResize(warp=False).eval_params(*images[i].shape[1::-1], (64, 96)))
            strided = np.zeros((64, 96, 4), np.uint8)[..., :3]  # not contiguous: written through a copy
            assert EvalResize(warp=True).resize(images[i], (64, 96), out=strided)[0] is strided
            np.testing.assert_array_equal(strided, got)
        got = EvalResize(True, warp=True).resize(images[0], (64, 96))[0]  # 130 x 75 -> 96 x 55 at rows 4..59
        nw, nh, px, py = resize.letterbox_geometry(130, 75, (64, 96))
        inside = np.zeros((64, 96), bool)
        inside[py : py + nh, px : px + nw] = True
        assert (got[~inside] == 127).all() and np.abs(got.astype(int) - slow[0, 1].astype(int)).max() <= 1
    np.testing.assert_array_equal(EvalResize(True, warp=True).resize(images[1], (64, 96))[0], slow[1, 1])  # enlarged


def test_eval_warp_config_key_reaches_the_validation_pipeline_and_the_eval_resize() -> None:
    """``augment.eval_warp`` switches the validation pipeline's step and the resize of an image alone together: with
    it, both give the warp's pixels; without, cv2.resize's (the two differ on noise)."""
    import cv2

    image = np.random.default_rng(7).integers(0, 256, (75, 130, 3), np.uint8)
    box, lab, diff = np.array([[10.0, 10.0, 50.0, 40.0]]), np.zeros(1, np.int64), np.zeros(1, bool)
    pixels = {}
    for warp in (True, False):
        t = DetectionTransform(train=False, augment={"eval_warp": warp})
        assert t.eval_resize.warp is warp
        pixels[warp] = t(image, box, lab, diff, 64).image
        np.testing.assert_array_equal(t.resize(image, 64)[0], pixels[warp])
    np.testing.assert_array_equal(pixels[False], cv2.resize(image, (64, 64), interpolation=cv2.INTER_LINEAR))
    _needs_close_warp()
    assert not np.array_equal(pixels[True], pixels[False])
    assert np.abs(pixels[True].astype(int) - pixels[False].astype(int)).max() <= 1
