"""Rules of the video paths pinned against independent facts (frame counts and colours chosen here, OpenCV's own
reading of the files written): :mod:`yolo9000.data.video`, :meth:`yolo9000.Detector.predict_video` and the video
side of ``detect.py`` (run in-process: its Hydra ``main`` given a composed config)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from conftest import compose_config, load_script
from test_cli_bench_detect_eval import ROOT, make_checkpoint
from yolo9000.data.image_io import read_image
from yolo9000.data.video import VideoError, VideoFrames, VideoWriter, is_video

FPS = 12.5  # not a whole number: an int() on the way would show
REAL_CAPTURE = cv2.VideoCapture


def write_raw(path: Path, bgr: list[tuple[int, int, int]], fps: float = FPS, hw: tuple[int, int] = (32, 48)) -> None:
    """Flat frames of the given BGR colours written with OpenCV directly (Motion JPEG), not through VideoWriter."""
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, hw[::-1])
    assert out.isOpened()
    for c in bgr:
        out.write(np.ascontiguousarray(np.broadcast_to(np.array(c, np.uint8), (*hw, 3))))
    out.release()


def write_photo_clip(path: Path, n: int, hw: tuple[int, int] = (120, 160)) -> None:
    """A clip of ``n`` frames of a BCCD photo shifted right by 8 px a frame, written with OpenCV directly."""
    photo = cv2.resize(cv2.imread(str(ROOT / "data" / "bccd" / "JPEGImages" / "BloodImage_00000.jpg")), hw[::-1])
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, hw[::-1])
    for k in range(n):
        out.write(np.ascontiguousarray(np.roll(photo, 8 * k, axis=1)))
    out.release()


def opencv_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video read with OpenCV directly, as RGB (the reference reading)."""
    cap, frames = REAL_CAPTURE(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


def opencv_stream(path: Path) -> tuple[str, float, int]:
    """The fourcc, frame rate and frame count OpenCV reads from a video file."""
    cap = REAL_CAPTURE(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    stream = (fourcc, float(cap.get(cv2.CAP_PROP_FPS)), len(opencv_frames(path)))
    cap.release()
    return stream


class FakeStream:
    """A capture that reads the real file but reports the given frame rate and frame count (a container that
    gives none, or a wrong one); counts its releases."""

    fps: float = 0.0
    count: float = 0.0
    released: list[str] = []

    def __init__(self, path: str) -> None:
        self._cap = REAL_CAPTURE(path)

    def get(self, prop: int) -> float:
        if prop == cv2.CAP_PROP_FPS:
            return self.fps
        if prop == cv2.CAP_PROP_FRAME_COUNT:
            return self.count
        return self._cap.get(prop)

    def release(self) -> None:
        FakeStream.released.append("release")
        self._cap.release()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cap, name)


@pytest.fixture
def fake_stream(monkeypatch: pytest.MonkeyPatch) -> type[FakeStream]:
    """cv2.VideoCapture replaced by :class:`FakeStream` (a fresh release count) for the test."""
    monkeypatch.setattr(FakeStream, "released", [])
    monkeypatch.setattr(cv2, "VideoCapture", FakeStream)
    return FakeStream


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "bccd.ckpt")


@pytest.fixture(scope="module")
def detector(ckpt: Path) -> Any:
    from yolo9000 import Detector

    return Detector.from_checkpoint(ckpt, conf_thresh=0.01, device="cpu")


@pytest.fixture(scope="module")
def detect() -> ModuleType:
    return load_script("detect")


def run_detect(detect: ModuleType, monkeypatch: pytest.MonkeyPatch, out: Path, *overrides: str) -> dict:
    """``detect.py`` in-process with its output folder at ``out`` (the job-log hook left out); its
    detections.json."""
    monkeypatch.setattr(detect, "log_to_job_log", lambda: None)
    out.mkdir(parents=True, exist_ok=True)  # Hydra makes the run folder
    cfg = compose_config("detect", f"paths.output_dir={out}", "device=cpu", "img_size=64", *overrides)
    detect.main(cfg)
    return json.loads((out / "detections.json").read_text())


# --- yolo9000.data.video ----------------------------------------------------------------------------------------


def test_video_suffixes_are_the_ffmpeg_containers_in_any_case() -> None:
    """The eleven containers of the module's list, in lower and upper case, are videos; images, audio, a suffix
    without its dot and a video name that ends as an image are not."""
    containers = ["mp4", "avi", "mov", "mkv", "webm", "m4v", "mpg", "mpeg", "wmv", "flv", "ts"]
    for ext in containers:
        assert is_video(f"d/clip.{ext}") and is_video(Path(f"CLIP.{ext.upper()}")), ext
    for name in ["a.jpg", "a.png", "a.mp3", "a.txt", "mp4", "clip.mp4.jpg", "a.mp4v", "a.tsx"]:
        assert not is_video(name), name


def test_an_unreadable_file_and_an_empty_video_say_which_failure(tmp_path: Path) -> None:
    """A text file named .mp4 cannot be opened (its own message, naming the file); a video of no frame (OpenCV
    writes its container) opens but gives no frame."""
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(VideoError, match=r"fake\.mp4: not a video OpenCV's reader can open"):
        VideoFrames(fake)
    write_raw(tmp_path / "empty.avi", [])
    with pytest.raises(VideoError, match=r"empty\.avi: the video gives no frame"):
        VideoFrames(tmp_path / "empty.avi")


def test_reader_gives_rgb_of_a_file_written_in_bgr(tmp_path: Path) -> None:
    """OpenCV writes BGR: a frame written as (B, G, R) = (20, 90, 230) is read as R 230, G 90, B 20."""
    path = tmp_path / "red.avi"
    write_raw(path, [(20, 90, 230)] * 2)
    frames = [f for _, batch in VideoFrames(path) for f in batch]
    assert len(frames) == 2 and frames[0].dtype == np.uint8 and frames[0].shape == (32, 48, 3)
    assert np.abs(frames[0].reshape(-1, 3).mean(0) - np.array([230, 90, 20])).max() < 4


def test_writer_writes_rgb_as_opencv_reads_it(tmp_path: Path) -> None:
    """An RGB (230, 90, 20) frame written by VideoWriter is (B, G, R) = (20, 90, 230) to OpenCV's own reader."""
    path = tmp_path / "w.avi"
    with VideoWriter(path, FPS, 48, 32) as out:
        out.write(np.broadcast_to(np.array([230, 90, 20], np.uint8), (32, 48, 3)))
    cap = REAL_CAPTURE(str(path))
    ok, bgr = cap.read()
    cap.release()
    assert ok and np.abs(bgr.reshape(-1, 3).mean(0) - np.array([20, 90, 230])).max() < 4


@pytest.mark.parametrize(
    ("name", "fourccs"),
    [
        ("a.mp4", {"FMP4", "mp4v"}),
        ("a.mov", {"FMP4", "mp4v"}),
        ("a.M4V", {"FMP4", "mp4v"}),
        ("a.avi", {"MJPG"}),
        ("a.mkv", {"MJPG"}),
    ],
)
def test_writer_codec_rate_and_count(tmp_path: Path, name: str, fourccs: set[str]) -> None:
    """MPEG-4 Part 2 in .mp4 / .mov / .m4v (any case), Motion JPEG otherwise, as OpenCV reads the files back; at the
    frame rate given (12.5, not rounded) with the 3 frames written; a missing parent folder is made."""
    path = tmp_path / "sub" / "dir" / name
    with VideoWriter(path, FPS, 48, 32) as out:
        for k in range(3):
            out.write(np.full((32, 48, 3), 60 * k, np.uint8))
    fourcc, fps, count = opencv_stream(path)
    assert fourcc in fourccs and fps == pytest.approx(FPS) and count == 3
    assert out.frames == 3


@pytest.mark.parametrize("name", ["odd.mp4", "odd.avi"])
def test_writer_keeps_every_pixel_of_an_odd_frame_size(tmp_path: Path, name: str) -> None:
    """Frames of 47 x 33 (the codecs take even sides: OpenCV cropped them to 46 x 32, losing a column and a row) are
    written 48 x 34, the frame in the top-left corner and its last column / row repeated, all 3 of them."""
    rng = np.random.default_rng(0)
    base = cv2.resize(rng.integers(0, 255, (5, 7, 3), np.uint8), (47, 33), interpolation=cv2.INTER_LINEAR)
    base[:, -1] = (250, 20, 20)  # a red last column and a blue last row, repeated into the padding
    base[-1, :] = (20, 20, 250)
    with VideoWriter(tmp_path / name, FPS, 47, 33) as out:
        assert out.encoded_size == (48, 34)
        for _ in range(3):
            out.write(base)
    frames = opencv_frames(tmp_path / name)  # RGB
    assert len(frames) == 3 and frames[0].shape == (34, 48, 3)
    f = frames[0].astype(int)
    assert np.abs(f[:33, :47] - base).mean() < 12  # lossy codecs: close, not equal
    assert np.abs(f[:32, 47] - (250, 20, 20)).mean() < 40 and np.abs(f[33, :46] - (20, 20, 250)).mean() < 40


def test_writer_refuses_a_container_it_cannot_write(tmp_path: Path) -> None:
    """A suffix OpenCV's writer has no muxer for is a VideoError naming the file and the codec tried."""
    with pytest.raises(VideoError, match=r"clip\.xyz: cannot be written as a MJPG video"):
        VideoWriter(tmp_path / "clip.xyz", FPS, 48, 32)


def test_stream_info_is_the_files_and_batches_cover_every_frame(tmp_path: Path) -> None:
    """7 frames written at 12.5 fps: info gives 12.5 fps, 7 frames; batch 1 numbers them 0..6; a batch larger than
    the video gives one batch of all 7; batch 7 gives exactly one (no empty trailing batch)."""
    path = tmp_path / "seven.avi"
    write_raw(path, [(10 * k, 0, 0) for k in range(7)])
    info = VideoFrames(path).info
    assert (info.fps, info.frames, info.width, info.height, info.path) == (FPS, 7, 48, 32, str(path))
    assert [(i, len(b)) for i, b in VideoFrames(path, 1)] == [(k, 1) for k in range(7)]
    assert [(i, len(b)) for i, b in VideoFrames(path, 10)] == [(0, 7)]
    assert [(i, len(b)) for i, b in VideoFrames(path, 7)] == [(0, 7)]
    assert [(i, len(b)) for i, b in VideoFrames(path, 4)] == [(0, 4), (4, 3)]


@pytest.mark.parametrize("fps", [0.0, -1.0, float("nan"), float("inf")])
def test_a_stream_without_a_rate_is_25_fps(tmp_path: Path, fake_stream: type[FakeStream], fps: float) -> None:
    """A container giving no usable frame rate (0, negative, NaN, infinite) is read at 25 fps; a frame count of 0
    is reported as at least 1."""
    write_raw(tmp_path / "c.avi", [(0, 0, 0)] * 2)
    fake_stream.fps, fake_stream.count = fps, 0.0
    info = VideoFrames(tmp_path / "c.avi").info
    assert info.fps == 25.0 and info.frames == 1


def test_the_reader_is_released_at_the_end_and_on_exit(tmp_path: Path, fake_stream: type[FakeStream]) -> None:
    """Iterating to the end releases OpenCV's reader; so does leaving a ``with`` block early."""
    write_raw(tmp_path / "c.avi", [(0, 0, 0)] * 3)
    fake_stream.fps, fake_stream.count = FPS, 3.0
    assert sum(len(b) for _, b in VideoFrames(tmp_path / "c.avi", 2)) == 3
    assert fake_stream.released == ["release"]
    with VideoFrames(tmp_path / "c.avi", 2) as frames:
        next(iter(frames))
    assert fake_stream.released == ["release", "release"]


# --- Detector.predict_video -------------------------------------------------------------------------------------


def test_predict_video_passes_every_setting_to_predict(detector: Any, tmp_path: Path) -> None:
    """size, conf, nms, letterbox and max_det reach each frame's detections: each frame's equal ``predict`` on the
    frame as OpenCV reads it with the same settings, and differ from the defaults' (so a dropped one shows)."""
    path = tmp_path / "clip.avi"
    write_photo_clip(path, 3)
    ref_frames = opencv_frames(path)
    base = {"size": 64, "conf": 0.01, "nms": 0.45, "letterbox": False, "max_det": None}
    baseline = [d.to_dict()["detections"] for d in detector.predict(ref_frames, **base)]
    scores = [x["score"] for dets in baseline for x in dets]
    assert min(scores) < max(scores)  # a threshold between them drops some (random weights: scores vary by build)
    changes = [{"size": 96}, {"conf": (min(scores) + max(scores)) / 2}, {"nms": 0.05}, {"letterbox": True}]
    changes.append({"max_det": 1})
    for change in changes:
        settings = base | change
        got = list(detector.predict_video(path, batch_size=2, **settings))
        want = detector.predict(ref_frames, batch_size=2, **settings)  # the same batches: the same arithmetic
        assert len(got) == 3
        for (_, d), r in zip(got, want, strict=True):
            assert torch.equal(d.boxes, r.boxes) and torch.equal(d.scores, r.scores), change
        assert [d.to_dict()["detections"] for d in want] != baseline, change


def test_predict_video_runs_batches_of_its_batch_size(
    detector: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """7 frames, batch_size=3: ``predict`` sees batches of 3, 3 and 1 frames; a VideoFrames given keeps its own
    batch size (2: 2, 2, 2, 1) whatever batch_size says."""
    path = tmp_path / "seven.avi"
    write_raw(path, [(10 * k, 0, 0) for k in range(7)])
    sizes: list[int] = []
    real = type(detector).predict

    def spy(self: Any, images: list[np.ndarray], **kw: Any) -> Any:
        sizes.append(len(images))
        return real(self, images, **kw)

    monkeypatch.setattr(type(detector), "predict", spy)
    assert [d.index for _, d in detector.predict_video(path, size=64, batch_size=3)] == list(range(7))
    assert sizes == [3, 3, 1]
    sizes.clear()
    assert len(list(detector.predict_video(VideoFrames(path, 2), size=64, batch_size=5))) == 7
    assert sizes == [2, 2, 2, 1]


def test_predict_video_of_a_missing_file_fails_before_any_frame(detector: Any, tmp_path: Path) -> None:
    """A missing video is a VideoError naming it at the first frame asked for."""
    with pytest.raises(VideoError, match=r"gone\.mp4: no such video file"):
        next(iter(detector.predict_video(tmp_path / "gone.mp4")))


# --- detect.py ----------------------------------------------------------------------------------------------------


def test_detect_py_names_videos_and_reports_the_unreadable(
    detect: ModuleType, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two clips named x.avi in two folders, a text file named .mp4 and a missing .mp4: the clips' annotated videos
    are detections/x.mp4 and x_1.mp4 (MPEG-4, at the clips' 12.5 fps, 4 and 2 frames of 48 x 32); with a threshold
    no score reaches, the annotated frames keep the clips' RGB colours; the other two are failed with the reader's
    reason without the file's name."""
    for sub, colours in (("a", [(20, 90, 230)] * 4), ("b", [(230, 90, 20)] * 2)):
        (tmp_path / sub).mkdir()
        write_raw(tmp_path / sub / "x.avi", colours)
    (tmp_path / "fake.mp4").write_text("not a video")
    sources = [tmp_path / "a" / "x.avi", tmp_path / "b" / "x.avi", tmp_path / "fake.mp4", tmp_path / "gone.mp4"]
    out = tmp_path / "out"
    source = "[" + ",".join(map(str, sources)) + "]"
    found = run_detect(detect, monkeypatch, out, f"ckpt_path={ckpt}", f"source={source}", "conf_thresh=1.0")
    assert found["images"] == []
    assert [v["drawing"] for v in found["videos"]] == ["detections/x.mp4", "detections/x_1.mp4"]
    assert [v["file"] for v in found["videos"]] == [str(s) for s in sources[:2]]
    assert found["failed"] == [
        {"file": str(sources[2]), "reason": "not a video OpenCV's reader can open (corrupt, or an unknown format)"},
        {"file": str(sources[3]), "reason": "no such video file"},
    ]
    for v, n, rgb in zip(found["videos"], (4, 2), ((230, 90, 20), (20, 90, 230)), strict=True):
        assert (v["frames"], v["fps"], v["width"], v["height"]) == (n, FPS, 48, 32)
        assert [f["frame"] for f in v["detections_per_frame"]] == list(range(n))
        assert [f["time"] for f in v["detections_per_frame"]] == [k * 0.08 for k in range(n)]  # 1 / 12.5 s apart
        assert all(f["detections"] == [] for f in v["detections_per_frame"])
        fourcc, fps, count = opencv_stream(out / v["drawing"])
        assert fourcc in {"FMP4", "mp4v"} and fps == pytest.approx(FPS) and count == n
        for frame in opencv_frames(out / v["drawing"]):
            assert frame.shape == (32, 48, 3)
            assert np.abs(frame.reshape(-1, 3).mean(0) - np.array(rgb)).max() < 6


def test_detect_py_without_drawing_and_with_letterbox(
    detect: ModuleType, ckpt: Path, detector: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``draw=false``: no drawing key and no annotated file; ``letterbox=true`` reaches the video's frames (frame 0's
    detections are ``predict``'s on the frame as OpenCV reads it, letterboxed, and differ from stretched);
    ``batch_size=2`` runs the 3 frames as batches of 2 and 1."""
    clip = tmp_path / "clip.avi"
    write_photo_clip(clip, 3)
    sizes: list[int] = []
    real = type(detector).predict

    def spy(self: Any, images: list[Any], **kw: Any) -> Any:
        sizes.append(len(images))
        return real(self, images, **kw)

    monkeypatch.setattr(type(detector), "predict", spy)
    out = tmp_path / "out"
    over = (f"ckpt_path={ckpt}", f"source={clip}", "conf_thresh=0.01", "draw=false", "letterbox=true")
    found = run_detect(detect, monkeypatch, out, *over, "batch_size=2", "video_average=1")
    assert [n for n in sizes if n] == [2, 1]  # (the images' call has none)
    monkeypatch.setattr(type(detector), "predict", real)
    (video,) = found["videos"]
    assert "drawing" not in video and not (out / "detections" / "clip.mp4").exists()
    first = opencv_frames(clip)[0]
    boxed = detector.predict(first, size=64, letterbox=True)[0].to_dict()["detections"]
    stretched = detector.predict(first, size=64)[0].to_dict()["detections"]
    assert boxed != stretched
    assert video["detections_per_frame"][0]["detections"] == boxed


def test_detect_py_times_frames_at_25_fps_when_the_container_gives_no_rate(
    detect: ModuleType,
    ckpt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fake_stream: type[FakeStream],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A container with no frame rate and a wrong frame count (99): the record has 25 fps, times k / 25 s and the 5
    frames actually read; the annotated video is written at 25 fps; with PROGRESS_FRAMES=2 progress is logged at
    frames 2 and 4."""
    clip = tmp_path / "clip.avi"
    write_raw(clip, [(0, 0, 0)] * 5)
    fake_stream.fps, fake_stream.count = 0.0, 99.0
    monkeypatch.setattr(detect, "PROGRESS_FRAMES", 2)
    out = tmp_path / "out"
    with caplog.at_level(logging.INFO, logger="yolo9000.detect"):
        found = run_detect(detect, monkeypatch, out, f"ckpt_path={ckpt}", f"source={clip}", "conf_thresh=1.0")
    (video,) = found["videos"]
    assert (video["fps"], video["frames"]) == (25.0, 5)
    assert [f["time"] for f in video["detections_per_frame"]] == [0.0, 0.04, 0.08, 0.12, 0.16]
    monkeypatch.setattr(cv2, "VideoCapture", REAL_CAPTURE)
    assert opencv_stream(out / video["drawing"])[1:] == (pytest.approx(25.0), 5)
    progress = [r.getMessage() for r in caplog.records if "of about" in r.getMessage()]
    assert progress == [f"{clip}: frame 2 of about 99", f"{clip}: frame 4 of about 99"]


def test_detect_py_refuses_results_with_videos_before_the_checkpoint(
    detect: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``results=voc`` or ``coco`` with a video in source (a glob matching it among images) stops main before the
    missing checkpoint is read, naming the first three videos only; images alone pass the check."""
    for k in range(4):
        write_raw(tmp_path / f"v{k}.avi", [(0, 0, 0)])
    cv2.imwrite(str(tmp_path / "p.png"), np.zeros((32, 48, 3), np.uint8))
    videos = [tmp_path / f"v{k}.avi" for k in range(4)]
    assert detect.source_files(f"{tmp_path}/*") == [tmp_path / "p.png", *videos]
    assert detect.source_files(f"{tmp_path}/*.avi") == videos
    for results in ("voc", "coco"):
        with pytest.raises(SystemExit, match=f"Error: results={results} writes darknet's image result files") as e:
            run_detect(detect, monkeypatch, tmp_path / "o", "ckpt_path=missing.ckpt", f"source={tmp_path}/*.avi",
                       f"results={results}")  # fmt: skip
        assert f"({videos[0]}, {videos[1]}, {videos[2]}) have none" in str(e.value)
    cfg = compose_config("detect", "ckpt_path=missing.ckpt", f"source={tmp_path}/p.png", "results=coco")
    detect.check_settings(cfg, [])


def test_detect_py_on_images_alone_has_no_videos_key(
    detect: ModuleType, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An image source: detections.json has no ``videos`` entry and the image is not taken for a video."""
    img = tmp_path / "p.png"
    cv2.imwrite(str(img), cv2.cvtColor(read_image(ROOT / "data" / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"),
                                       cv2.COLOR_RGB2BGR))  # fmt: skip
    found = run_detect(detect, monkeypatch, tmp_path / "out", f"ckpt_path={ckpt}", f"source={img}", "conf_thresh=1.0")
    assert "videos" not in found and [r["file"] for r in found["images"]] == [str(img)]
