"""Rules of live sources and of darknet's ``seen`` that the stream / seen tests leave open (a mutation audit's
survivors): the end of a live stream (in order and newest-first), the reader thread stopped before the capture is
released, the waiting reader woken by each frame, ``max_frames`` and the stream timeout checked, the JSONL lines on
disk as they come with arrival times, the record's dropped count, progress lines, a stopped stream ending the run,
names of URLs with credentials; the schedule's fraction steps at 1.0, ``[net] batch=0``, and the build's log of the
start (seen without an iteration, the max_batches warning, a burn-in factor). Cameras here are fakes of OpenCV's
capture (no device, no network); every expected value is worked out by hand in the test."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from conftest import compose_config, load_script
from test_video_streams import frame_image
from yolo9000.data import video as video_module
from yolo9000.data.video import VideoError, VideoFrames

detect = load_script("detect")


class FakeCapture:
    """OpenCV's capture of a camera or stream: ``frames`` frames (None: endless) numbered as
    :func:`test_video_streams.frame_image`, each read taking ``delay`` seconds; reports ``fps`` and ``count`` as its
    frame count (-1: none, as a camera)."""

    def __init__(
        self, source: Any, *args: Any, frames: int | None = None, delay: float = 0.0, fps: float = 30.0, count=-1.0
    ) -> None:
        self.source, self.args, self.frames, self.delay, self.fps, self.count = source, args, frames, delay, fps, count
        self.k, self.released, self.readers = 0, 0, set()
        self.reader_alive_at_release = False

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        self.readers.add(threading.current_thread())
        if self.released or (self.frames is not None and self.k >= self.frames):
            return False, None
        time.sleep(self.delay)
        self.k += 1
        return True, frame_image(self.k - 1)

    def get(self, prop: int) -> float:
        return {cv2.CAP_PROP_FPS: self.fps, cv2.CAP_PROP_FRAME_COUNT: float(self.count)}.get(prop, 0.0)

    def release(self) -> None:
        me = threading.current_thread()
        self.reader_alive_at_release |= any(t.is_alive() for t in self.readers if t is not me)
        self.released += 1


@pytest.fixture
def cameras(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[FakeCapture]]:
    """``cameras(frames=..., delay=..., fps=...)``: OpenCV's capture replaced by :class:`FakeCapture` with these
    settings; returns the list the opened captures are appended to."""

    def install(**settings: Any) -> list[FakeCapture]:
        opened: list[FakeCapture] = []

        def make(source: Any, *args: Any) -> FakeCapture:
            opened.append(FakeCapture(source, *args, **settings))
            return opened[-1]

        monkeypatch.setattr(video_module.cv2, "VideoCapture", make)
        return opened

    return install


def run_bounded(fn: Callable[[], Any], seconds: float = 10.0) -> Any:
    """``fn()`` in a daemon thread; fails the test when it has not returned within ``seconds`` (a hang)."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 (handed to the test)
            box["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not return within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# --- VideoFrames on a live source -------------------------------------------------------------------------------
def test_max_frames_must_be_a_positive_int_not_a_bool() -> None:
    """``max_frames=True`` (a bool, not a count) and ``0`` are refused as ValueErrors naming the key, before any
    source is opened."""
    for bad in (True, 0, -2):
        with pytest.raises(ValueError, match=r"^max_frames must be >= 1 or None"):
            VideoFrames(0, max_frames=bad)


def test_a_stream_urls_timeout_goes_to_opencv_in_milliseconds_and_into_the_message(monkeypatch: Any) -> None:
    """``timeout_s=2.5`` opens a URL with FFmpeg and open / read timeouts of 2,500 ms; a URL that does not open is
    named with that timeout in the message (not the 10 s default)."""
    calls: list[tuple[Any, ...]] = []

    class Closed:
        def __init__(self, *args: Any) -> None:
            calls.append(args)

        def isOpened(self) -> bool:  # noqa: N802
            return False

        def release(self) -> None:
            pass

    monkeypatch.setattr(video_module.cv2, "VideoCapture", Closed)
    with pytest.raises(VideoError, match=r"^rtsp://cam/x: cannot be opened .*nothing within 2\.5 s\)$"):
        VideoFrames("rtsp://cam/x", timeout_s=2.5)
    timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, 2500, cv2.CAP_PROP_READ_TIMEOUT_MSEC, 2500]
    assert calls == [("rtsp://cam/x", cv2.CAP_FFMPEG, timeouts)]


def test_a_stream_with_a_frame_count_of_0_is_live(cameras: Any) -> None:
    """A stream URL whose reader says 0 frames (no count) is live (frames 0); one that says 7 is a file of 7."""
    cameras(frames=2, count=0.0)
    info = VideoFrames("http://h/live", latest=False).info
    assert (info.live, info.frames) == (True, 0)
    cameras(frames=2, count=7.0)
    info = VideoFrames("http://h/clip.avi", latest=False).info
    assert (info.live, info.frames) == (False, 7)


def test_a_live_source_read_in_order_to_its_end(cameras: Any) -> None:
    """A camera that sends 6 frames (20 ms a read) and stops, read in order 4 at a time: batches (0, 4) and (4, 2);
    the last batch's times are there (frame 5 arrived after five more reads: >= 0.08 s, and well under 5 s from the
    first), times rise; the capture is released once the iteration ends (no ``with``)."""
    opened = cameras(frames=6, delay=0.02)
    frames = VideoFrames(0, 4, latest=False)
    got = []
    for first, batch in frames:
        got.append((first, len(batch), [frames.time_of(first + i) for i in range(len(batch))]))
    assert [(first, n) for first, n, _ in got] == [(0, 4), (4, 2)]
    times = [t for *_, ts in got for t in ts]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:], strict=False))
    assert 0.08 <= times[5] < 5.0
    assert opened[0].released == 1


def test_a_live_source_read_newest_first_ends_with_its_stream(cameras: Any) -> None:
    """``latest=True`` on a camera that sends 5 frames and stops: the iteration ends (no wait for a sixth), the
    indices rise, the last is frame 4 (the newest is always given before the end), and dropped is the gaps:
    5 - the frames given."""
    cameras(frames=5, delay=0.01)
    frames = VideoFrames(0, latest=True)

    def read_all() -> list[int]:
        return [first for first, _ in frames]

    got = run_bounded(read_all, 10.0)
    assert got == sorted(set(got)) and got[0] == 0 and got[-1] == 4
    assert frames.dropped == 5 - len(got)


def test_the_reader_thread_is_stopped_before_the_capture_is_released(cameras: Any) -> None:
    """An endless camera read newest-first with ``max_frames=3``: when the iteration ends the capture is released
    once, and no thread is still reading it at that moment (releasing under a read crashes real captures)."""
    opened = cameras(delay=0.005)
    frames = VideoFrames(0, latest=True, max_frames=3)
    assert len([first for first, _ in frames]) == 3
    (cap,) = opened
    assert cap.released >= 1 and len(cap.readers) == 2  # the constructor's read (here) and the reader thread's
    assert not cap.reader_alive_at_release


def test_a_waiting_consumer_is_woken_by_each_new_frame(cameras: Any) -> None:
    """A consumer faster than the camera (a frame every 5 ms) takes 20 frames newest-first in about 0.1 s: each new
    frame wakes it (a 0.1 s poll instead would take about 2 s)."""
    cameras(delay=0.005)
    start = time.monotonic()
    with VideoFrames(0, latest=True, max_frames=20) as frames:
        n = sum(len(batch) for _, batch in frames)
    assert n == 20 and time.monotonic() - start < 1.2  # a loaded machine has 10x headroom; the poll takes ~2 s


# --- detect.py on a live source ---------------------------------------------------------------------------------
class FakeDet:
    def __init__(self, index: int) -> None:
        self.index = index

    def to_dict(self) -> dict[str, Any]:
        return {"detections": [{"label": "a", "score": 0.5, "box": [0, 0, 1, self.index]}]}


class FakeDetector:
    """The predict API's video part: each frame of the VideoFrames given, ``delay`` seconds each, ``on_frame(i)``
    called before frame i is handed over (it may raise)."""

    class_names = ["a"]
    input_hw = (64, 64)
    letterbox = False
    dtype = torch.float32

    def __init__(self, delay: float = 0.0, on_frame: Callable[[int], None] | None = None) -> None:
        self.delay, self.on_frame = delay, on_frame

    def predict_video(self, frames: VideoFrames, **kw: Any) -> Iterator[tuple[np.ndarray, FakeDet]]:
        with frames:
            for first, batch in frames:
                for i, frame in enumerate(batch):
                    if self.on_frame is not None:
                        self.on_frame(first + i)
                    time.sleep(self.delay)
                    yield frame, FakeDet(first + i)

    def predict(self, files: list[Any], **kw: Any) -> list[Any]:
        assert not files
        return []


def detect_cfg(*more: str) -> Any:
    return compose_config("detect", "ckpt_path=none.ckpt", "source=0", "img_size=64", "draw=false", *more)


def test_each_frames_line_is_on_disk_before_the_next_frame(cameras: Any, tmp_path: Path) -> None:
    """A live camera's JSONL: when frame k is being detected, the file on disk already holds k lines (each line
    flushed as written: a killed process leaves every frame detected)."""
    cameras(delay=0.002)
    jsonl = tmp_path / "detections" / "camera0.jsonl"
    seen_lines: list[int] = []

    def on_frame(i: int) -> None:
        seen_lines.append(len(jsonl.read_text().splitlines()) if jsonl.exists() else 0)

    cfg = detect_cfg("max_frames=4", "live_latest=false")
    record = detect.detect_video(FakeDetector(on_frame=on_frame), 0, (64, 64), cfg, jsonl.with_suffix(".mp4"))
    assert record["frames"] == 4 and seen_lines == [0, 1, 2, 3]


def test_live_lines_carry_arrival_times_not_index_over_fps(cameras: Any, tmp_path: Path) -> None:
    """A camera that says 1 fps but sends a frame every 10 ms: frame 3's time is its arrival (about 0.03 s, far
    below 1 s), not 3 / 1 fps = 3 s; times rise from 0."""
    cameras(delay=0.01, fps=1.0)
    drawing = tmp_path / "detections" / "camera0.mp4"
    detect.detect_video(FakeDetector(), 0, (64, 64), detect_cfg("max_frames=4", "live_latest=false"), drawing)
    lines = [json.loads(x) for x in drawing.with_suffix(".jsonl").read_text().splitlines()]
    times = [x["time"] for x in lines]
    assert [x["frame"] for x in lines] == [0, 1, 2, 3]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:], strict=False)) and times[3] < 1.0


def test_the_record_counts_the_frames_dropped_newest_first(cameras: Any, tmp_path: Path) -> None:
    """A detector (20 ms a frame) slower than the camera (2 ms a frame), newest-first, 5 frames: the record's
    dropped is the stream frames not detected up to the last one: last index + 1 - 5, above 0."""
    cameras(delay=0.002)
    drawing = tmp_path / "detections" / "camera0.mp4"
    record = detect.detect_video(FakeDetector(delay=0.02), 0, (64, 64), detect_cfg("max_frames=5"), drawing)
    last = json.loads(drawing.with_suffix(".jsonl").read_text().splitlines()[-1])["frame"]
    assert record["frames"] == 5 and record["dropped"] == last + 1 - 5 > 0


def test_a_progress_line_every_100_frames(cameras: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """100 frames of a live camera read in order: one progress line, at frame 100 (``frame 100 (0 dropped), ...
    fps``), none at frame 1."""
    cameras(frames=100)
    with caplog.at_level(logging.INFO, "yolo9000"):
        record = detect.detect_video(FakeDetector(), 0, (64, 64), detect_cfg("live_latest=false"), tmp_path / "c.mp4")
    assert record["frames"] == 100
    assert "camera 0: frame 100 (0 dropped), " in caplog.text and "frame 1 (" not in caplog.text


def test_progress_text_of_a_file_and_of_a_live_source() -> None:
    """A file: ``frame 200 of about 1500``; a live source: 200 frames in 0.5 s is 400.0 fps, with its dropped."""
    assert detect.progress_text(200, SimpleNamespace(live=False, frames=1500), 0, 9.0) == "frame 200 of about 1500"
    assert (
        detect.progress_text(200, SimpleNamespace(live=True, frames=0), 35, 0.5) == "frame 200 (35 dropped), 400.0 fps"
    )


def test_a_live_source_is_released_when_its_drawing_cannot_be_written(cameras: Any, tmp_path: Path) -> None:
    """The annotated video's folder is a file: the error goes up and the camera opened for it is released."""
    opened = cameras(delay=0.002)
    (tmp_path / "taken").write_text("a file")
    with pytest.raises(OSError):
        detect.detect_video(FakeDetector(), 0, (64, 64), detect_cfg("draw=true"), tmp_path / "taken" / "c.mp4")
    assert opened[0].released >= 1


def test_a_stopped_stream_ends_the_run(cameras: Any, tmp_path: Path, monkeypatch: Any) -> None:
    """``source=[0,1]`` and Ctrl-C at camera 0's third frame: the run ends there (exit without error), camera 1 is
    never opened, detections.json has camera 0's record (2 frames, stopped SIGINT) only."""
    opened = cameras(delay=0.002)

    def ctrl_c(i: int) -> None:
        if i == 2:
            raise KeyboardInterrupt

    monkeypatch.setattr(detect, "log_to_job_log", lambda: None)
    monkeypatch.setattr(
        detect, "Detector", SimpleNamespace(from_checkpoint=lambda *a, **k: FakeDetector(on_frame=ctrl_c))
    )
    cfg = detect_cfg("source=[0,1]", "live_latest=false", f"paths.output_dir={tmp_path}")
    detect.main(cfg)
    assert [c.source for c in opened] == [0]
    videos = json.loads((tmp_path / "detections.json").read_text())["videos"]
    assert [(v["file"], v["frames"], v["stopped"]) for v in videos] == [("camera 0", 2, "SIGINT")]


def test_check_settings_takes_max_frames_null_and_refuses_a_bool() -> None:
    """detect.yaml's own ``max_frames: null`` (every frame) passes; ``max_frames=true`` is refused naming the key."""
    detect.check_settings(detect_cfg())
    with pytest.raises(ValueError, match=r"max_frames must be an integer >= 1 or null, got True"):
        detect.check_settings(detect_cfg("max_frames=true"))


def test_the_split_of_an_empty_list_and_names_of_urls_with_credentials() -> None:
    """An empty list stays itself (source_files then refuses it: ValueError), a list without streams is returned
    as given; a URL with ``user:password@`` and no path is named by its host and port only."""
    assert detect.split_streams([]) == ([], [])
    with pytest.raises(ValueError):
        detect.source_files(detect.split_streams([])[0])
    given = ["a.jpg", "b/"]
    assert detect.split_streams(given)[0] is given
    assert detect.video_names(["rtsp://admin:pw@192.168.1.5:554", "http://u@h"]) == ["192_168_1_5_554.mp4", "h.mp4"]


# --- darknet's seen and the schedule's start ---------------------------------------------------------------------
def test_fraction_steps_up_to_1_shift_by_the_start() -> None:
    """Steps 0.5 and 1.0 (both fractions: <= 1) of a 100-step run from iteration 1,000 fall at 1,050 and 1,100."""
    from yolo9000.modules.schedules import darknet_optimization

    hp = SimpleNamespace(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0, lr_policy="steps", power=4.0)
    hp.__dict__.update(burn_in=0, steps=[0.5, 1.0], scales=[0.1, 0.1], start_iteration=1000)
    sched = darknet_optimization(torch.nn.Conv2d(1, 1, 1), hp, 100)["lr_scheduler"]["scheduler"]
    assert sched.lr_lambdas[0].steps == [1050, 1100]


def test_net_batch_is_at_least_1() -> None:
    """``[net] batch``: 64 as written, 1 when absent or 0 (darknet's iteration count divides by it)."""
    from yolo9000.darknet import net_training_options, parse_cfg_text

    assert net_training_options(parse_cfg_text("[net]\nbatch=64\n"))["batch"] == 64
    assert net_training_options(parse_cfg_text("[net]\nwidth=32\n"))["batch"] == 1
    assert net_training_options(parse_cfg_text("[net]\nbatch=0\n"))["batch"] == 1


def log_start(caplog: pytest.LogCaptureFixture, net: str, **m: Any) -> str:
    from yolo9000.build import _log_net_options

    caplog.clear()
    with caplog.at_level(logging.INFO, "yolo9000"):
        _log_net_options({"net": {"cfg": "t.cfg", "cfg_text": "[net]\n" + net}, "loss": {}, **m})
    return caplog.text


def test_the_builds_log_of_the_start(caplog: pytest.LogCaptureFixture) -> None:
    """seen 10 with batch 64 (iteration 0) is still logged; iteration 499 of burn_in=1000 power=2 is lr x
    (500 / 1000)^2 = 0.25; iteration 100 with max_batches=100 is past it (darknet stops at once), iteration 50 with
    no max_batches is not."""
    net = "batch=64\nburn_in=1000\npower=2\npolicy=steps\nsteps=2000\nscales=.1\n"
    keys = {"lr_policy": "steps", "steps": [2000], "scales": [0.1], "burn_in": 1000, "power": 2.0}
    assert "seen 10 in its header" in log_start(caplog, net, start_seen=10, start_iteration=0, **keys)
    text = log_start(caplog, net, start_seen=64 * 499, start_iteration=499, **keys)
    assert "from iteration 499" in text and "lr x 0.25 now" in text and "past the cfg's max_batches" not in text
    text = log_start(caplog, net + "max_batches=100\n", start_seen=6400, start_iteration=100, **keys)
    assert "iteration 100 is past the cfg's max_batches=100" in text
