"""Cameras and live streams (darknet's ``detector demo -c 0``, an IP camera's URL): which sources are streams
(:func:`yolo9000.data.video.stream_source`), a live source read in order or newest-frame-first
(:class:`~yolo9000.data.video.VideoFrames`, against a real MJPEG-over-HTTP server in this process whose every frame
carries its number in its pixels), a video file served over HTTP read as a file, and ``detect.py`` on a stream: each
frame's detections written as they come, and Ctrl-C / SIGTERM ending the run with every output complete."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from conftest import compose_config, load_script
from test_cli_bench_detect_eval import make_checkpoint, run
from test_video import read_with_opencv, write_clip
from yolo9000.api import Detector
from yolo9000.data import video as video_module
from yolo9000.data.video import VideoError, VideoFrames, source_name, stream_source

FRAME_HW = (48, 64)


def frame_image(i: int) -> np.ndarray:
    """Frame ``i`` of the test streams: a flat grey whose level encodes ``i`` (BGR, uint8)."""
    return np.full((*FRAME_HW, 3), 20 + 8 * (i % 28), np.uint8)


def frame_number(rgb: np.ndarray, previous: int = -1) -> int:
    """The number of a decoded frame: the smallest index above ``previous`` whose grey level it shows (levels
    repeat every 28 frames; JPEG moves a flat grey by a level or two, the levels are 8 apart)."""
    level = int(round((float(rgb.mean()) - 20) / 8)) % 28
    return previous + 1 + (level - (previous + 1)) % 28


class _Stream(http.server.BaseHTTPRequestHandler):
    """``/live?fps=F``: an endless MJPEG stream (multipart/x-mixed-replace, as IP cameras send), frame i numbered
    by :func:`frame_image`; any other path: the file of the server's ``files`` folder."""

    def do_GET(self) -> None:
        if not self.path.startswith("/live"):
            return self._file()
        fps = float(self.path.partition("fps=")[2] or 25)
        self.send_response(200)
        self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        self.end_headers()
        i = 0
        try:
            while not self.server.closing.is_set():  # type: ignore[attr-defined]
                jpg = cv2.imencode(".jpg", frame_image(i), [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
                head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpg)
                self.wfile.write(head + jpg + b"\r\n")
                i += 1
                time.sleep(1 / fps)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _file(self) -> None:
        path = Path(self.server.files) / self.path.lstrip("/")  # type: ignore[attr-defined]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder whose files the test server serves."""
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="module")
def server(served: Path) -> Iterator[str]:
    """The base URL of the test stream server (``/live``, and the files of ``served``)."""

    class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
        daemon_threads = True

    srv = Server(("127.0.0.1", 0), _Stream)
    srv.files = served  # type: ignore[attr-defined]
    srv.closing = threading.Event()  # type: ignore[attr-defined]
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}"
    srv.closing.set()  # type: ignore[attr-defined]
    srv.shutdown()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "bccd.ckpt")


# --- which sources are streams ---------------------------------------------------------------------------------
def test_cameras_are_indices_and_streams_are_urls_of_the_stream_schemes(tmp_path: Path, monkeypatch: Any) -> None:
    """An int >= 0 or a digit string naming no file is a camera; a URL of a stream scheme (any case) is itself;
    anything else (a negative index, a bool, a file, a ``file://`` URL, a folder named ``0``) is a path."""
    monkeypatch.chdir(tmp_path)
    assert stream_source(0) == 0 and stream_source(3) == 3 and stream_source("2") == 2
    assert stream_source(-1) is None and stream_source(True) is None
    url = "rtsp://user:pw@cam.local:554/live/ch1"
    assert stream_source(url) == url and stream_source("HTTP://a/b.mjpg") == "HTTP://a/b.mjpg"
    assert stream_source("udp://@:1234") == "udp://@:1234"
    assert stream_source("clip.mp4") is None and stream_source("file:///tmp/a.mp4") is None
    assert stream_source(Path("0")) is None
    (tmp_path / "0").mkdir()  # a folder named 0 is the folder
    assert stream_source("0") is None and stream_source(0) == 0
    assert source_name(0) == "camera 0" and source_name(url) == "rtsp://user:***@cam.local:554/live/ch1"
    assert source_name("a/b.mp4") == "a/b.mp4"


def test_stream_names_under_detections_and_the_split_of_a_source() -> None:
    """A camera's annotated video is camera<i>.mp4, a URL's its path's last part without suffix (its host when the
    path is empty), numbered when taken; ``split_streams`` takes the streams out of a source, in order."""
    detect = load_script("detect")
    names = detect.video_names(
        [
            Path("a/clip.avi"),
            0,
            "rtsp://u:p@cam.local:554/live/ch1?tcp=1",
            "http://10.0.0.2:8080/",
            "http://h/clip.mjpg",
        ]
    )
    assert names == ["clip.mp4", "camera0.mp4", "ch1.mp4", "10_0_0_2_8080.mp4", "clip_1.mp4"]
    assert detect.split_streams("rtsp://cam/x") == (None, ["rtsp://cam/x"])
    assert detect.split_streams(0) == (None, [0])
    assert detect.split_streams("photos/") == ("photos/", [])
    assert detect.split_streams(["a.jpg", 1, "http://h/s", "b/"]) == (["a.jpg", "b/"], [1, "http://h/s"])


# --- reading a live stream -----------------------------------------------------------------------------------
def test_a_live_stream_read_in_order_gives_every_frame_in_batches(server: str) -> None:
    """``latest=False``: frames 0, 1, 2, ... as the server numbered them, ``batch_size`` at a time; a live source has
    no frame count (0) and stops at ``max_frames``; nothing is dropped."""
    frames = VideoFrames(f"{server}/live?fps=200", 4, latest=False, max_frames=6)
    assert frames.info.live and frames.info.frames == 0 and frames.info.path == f"{server}/live?fps=200"
    assert (frames.info.width, frames.info.height) == (FRAME_HW[1], FRAME_HW[0])
    with frames:
        got = [(first, batch) for first, batch in frames]
    assert [(first, len(batch)) for first, batch in got] == [(0, 4), (4, 2)]
    numbers: list[int] = []
    for f in [f for _, batch in got for f in batch]:
        numbers.append(frame_number(f, numbers[-1] if numbers else -1))
    assert numbers == list(range(numbers[0], numbers[0] + 6))  # consecutive: none skipped
    assert frames.dropped == 0


def test_a_live_stream_read_newest_first_drops_what_arrived_meanwhile(server: str) -> None:
    """``latest=True`` with a consumer slower than the stream (100 fps sent, one frame taken every 60 ms): one frame
    at a time, indices rising with gaps, each frame the one its index names (the newest, not a stale one), the gaps
    counted in ``dropped``, the times rising as the frames arrived."""
    frames = VideoFrames(f"{server}/live?fps=100", 8, latest=True, max_frames=6)
    assert frames.latest and frames.batch_size == 1
    got = []
    with frames:
        for first, batch in frames:
            assert len(batch) == 1
            got.append((first, frame_number(batch[0], got[-1][1] if got else -1), frames.time_of(first)))
            time.sleep(0.06)
    indices = [i for i, _, _ in got]
    assert len(got) == 6 and indices == sorted(set(indices)) and indices[0] == 0
    assert max(np.diff(indices)) >= 3  # frames were dropped
    offset = got[0][1]  # the server's count when the reader joined
    assert [n - offset for _, n, _ in got] == indices  # each frame is the one its index names
    assert frames.dropped == indices[-1] + 1 - 6
    times = [t for _, _, t in got]
    assert times[0] == 0.0 and all(b > a for a, b in zip(times, times[1:], strict=False))
    assert times[-1] >= 0.05 * 5  # the consumer's pace, not the stream's


def test_a_video_file_served_over_http_reads_as_a_file(server: str, served: Path) -> None:
    """A URL whose stream has a frame count is a file: not live, every frame in order even with ``latest``, the
    frames those of the file, times index / fps."""
    from test_video import FPS

    clip = served / "clip.avi"
    write_clip(clip, 7)
    frames = VideoFrames(f"{server}/clip.avi", 3, latest=True)
    assert not frames.info.live and frames.info.frames == 7 and frames.batch_size == 3
    with frames:
        got = [(first, batch) for first, batch in frames]
        assert frames.time_of(6) == pytest.approx(6 / FPS)
    assert [(first, len(b)) for first, b in got] == [(0, 3), (3, 3), (6, 1)]
    expected = read_with_opencv(clip)
    assert all(np.array_equal(a, b) for a, b in zip([f for _, b in got for f in b], expected, strict=True))


def test_sources_that_cannot_be_opened_name_themselves(server: str, monkeypatch: Any) -> None:
    """A URL nothing answers and a 404 are VideoErrors naming the URL; a camera that does not open names
    ``camera <i>``; an open camera is live, read through OpenCV with its index."""
    with pytest.raises(VideoError, match=r"^http://127\.0\.0\.1:\d+/missing\.mp4: cannot be opened"):
        VideoFrames(f"{server}/missing.mp4")
    opened: list[Any] = []

    class FakeCamera:
        def __init__(self, source: Any, *args: Any) -> None:
            opened.append(source)
            self.ok, self.k = source == 2, 0

        def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
            return self.ok

        def read(self) -> tuple[bool, np.ndarray]:
            self.k += 1
            return True, frame_image(self.k - 1)

        def get(self, prop: int) -> float:
            return {cv2.CAP_PROP_FPS: 30.0, cv2.CAP_PROP_FRAME_COUNT: -1.0}.get(prop, 0.0)

        def release(self) -> None:
            pass

    monkeypatch.setattr(video_module.cv2, "VideoCapture", FakeCamera)
    with pytest.raises(VideoError, match=r"^camera 1: cannot be opened \(no camera at this index"):
        VideoFrames(1)
    frames = VideoFrames("2", latest=False, max_frames=3)
    assert opened == [1, 2] and frames.info.live and frames.info.path == "camera 2" and frames.info.fps == 30.0
    with frames:
        assert [frame_number(b[0]) for _, b in frames] == [0, 1, 2]


# --- detect.py on a stream ------------------------------------------------------------------------------------------
def detect_cfg(tiny_ckpt: Path, source: str, *more: str) -> Any:
    return compose_config("detect", f"ckpt_path={tiny_ckpt}", f"source='{source}'", "img_size=64", *more)


def test_detect_video_writes_a_live_streams_frames_as_they_come(server: str, tiny_ckpt: Path, tmp_path: Path) -> None:
    """A live stream with ``max_frames=5``: the record says live, 5 frames, none dropped when read in order, the
    lines file and the annotated video hold those 5 frames, numbered 0..4, each line's detections those of the
    predict API on the same stream's frame."""
    detect = load_script("detect")
    cfg = detect_cfg(tiny_ckpt, f"{server}/live?fps=100", "max_frames=5", "live_latest=false", "conf_thresh=0.01")
    cfg.video_average = 1  # each frame on its own: its detections those of the API on that frame
    det = Detector.from_checkpoint(tiny_ckpt, conf_thresh=0.01)
    record = detect.detect_video(det, cfg.source, (64, 64), cfg, tmp_path / "detections" / "live.mp4")
    assert record["live"] and record["frames"] == 5 and record["dropped"] == 0 and record["stopped"] is None
    assert record["detections_file"] == "detections/live.jsonl" and "detections_per_frame" not in record
    lines = [json.loads(x) for x in (tmp_path / "detections" / "live.jsonl").read_text().splitlines()]
    assert [x["frame"] for x in lines] == list(range(5)) and lines[0]["time"] == 0.0
    assert len(read_with_opencv(tmp_path / "detections" / "live.mp4")) == 5
    # the same frames through the API (a flat grey: JPEG decodes it the same whoever decodes it)
    frame0 = next(iter(det.predict_video(VideoFrames(cfg.source, latest=False, max_frames=1), size=64)))
    assert frame0[1].path == cfg.source
    assert lines[0]["detections"] == frame0[1].to_dict()["detections"]


def endless(frames: int, then: BaseException | int) -> Any:
    """A ``predict_video`` stand-in: ``frames`` frames of the real one, then ``then`` (an exception raised, or a
    signal number sent to this process)."""

    def predict_video(self: Any, video: Any, **kw: Any) -> Iterator[Any]:
        for k, item in enumerate(real_predict_video(self, video, **kw)):
            if k == frames:
                if isinstance(then, BaseException):
                    raise then
                os.kill(os.getpid(), then)
            yield item

    return predict_video


real_predict_video = Detector.predict_video


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_ctrl_c_or_sigterm_ends_a_live_stream_with_its_outputs_complete(
    how: str, server: str, tiny_ckpt: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """Ctrl-C (KeyboardInterrupt) or a real SIGTERM after 4 frames of an endless stream: detect_video returns (no
    exception), ``stopped`` names it, the lines file holds the 4 frames and the annotated video plays; the SIGTERM
    handler before the stream is back after it."""
    detect = load_script("detect")
    then = KeyboardInterrupt() if how == "SIGINT" else signal.SIGTERM
    monkeypatch.setattr(Detector, "predict_video", endless(4, then))
    before = signal.getsignal(signal.SIGTERM)
    cfg = detect_cfg(tiny_ckpt, f"{server}/live?fps=100")
    det = Detector.from_checkpoint(tiny_ckpt)
    record = detect.detect_video(det, cfg.source, (64, 64), cfg, tmp_path / "detections" / "live.mp4")
    assert record["stopped"] == how and record["frames"] == 4
    lines = [json.loads(x) for x in (tmp_path / "detections" / "live.jsonl").read_text().splitlines()]
    assert len(lines) == 4  # and the video is playable, a frame for each stream frame up to the last detected
    assert len(read_with_opencv(tmp_path / "detections" / "live.mp4")) == lines[-1]["frame"] + 1
    assert signal.getsignal(signal.SIGTERM) == before


def test_ctrl_c_in_a_video_file_still_stops_the_run(tiny_ckpt: Path, tmp_path: Path, monkeypatch: Any) -> None:
    """A file has an end of its own: Ctrl-C there is not its normal end and goes on up (the run stops as before)."""
    detect = load_script("detect")
    clip = tmp_path / "clip.avi"
    write_clip(clip, 6)
    monkeypatch.setattr(Detector, "predict_video", endless(2, KeyboardInterrupt()))
    cfg = detect_cfg(tiny_ckpt, str(clip))
    with pytest.raises(KeyboardInterrupt):
        detect.detect_video(Detector.from_checkpoint(tiny_ckpt), clip, (64, 64), cfg, tmp_path / "d" / "clip.mp4")


@pytest.mark.slow  # ~9 s, a subprocess; detect_video on a live stream runs in-process above (default suite)
def test_detect_py_on_a_stream_and_a_missing_camera(server: str, tiny_ckpt: Path, tmp_path: Path) -> None:
    """``source=[<stream>,99]`` with max_frames=3, as a user runs it: exit 0; detections.json has the stream's record
    (3 frames, its lines file) and camera 99 under failed; ``max_frames=0`` and a non-bool ``live_latest`` are refused
    naming the key."""
    out = tmp_path / "out"
    url = f"{server}/live?fps=100"
    res = run("detect.py", out, f"ckpt_path={tiny_ckpt}", f"source=['{url}',99]", "img_size=64", "max_frames=3")
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "detections.json").read_text())
    (video,) = record["videos"]
    assert (video["file"], video["frames"], video["live"]) == (url, 3, True)
    assert len((out / video["detections_file"]).read_text().splitlines()) == 3
    assert [f["file"] for f in record["failed"]] == ["camera 99"]
    detect = load_script("detect")
    with pytest.raises(ValueError, match=r"max_frames must be an integer >= 1 or null, got 0"):
        detect.check_settings(detect_cfg(tiny_ckpt, url, "max_frames=0"))
    with pytest.raises(ValueError, match=r"live_latest must be true or false, got 'yes'"):
        detect.check_settings(detect_cfg(tiny_ckpt, url, "live_latest=yes"))


# --- serving the annotated frames ----------------------------------------------------------------------------------
def view(url: str, frames: int, got: list[np.ndarray]) -> threading.Thread:
    """A viewer reading up to ``frames`` frames of an MJPEG URL into ``got`` (BGR): a plain HTTP client parsing the
    multipart parts and decoding each JPEG, as a browser does (not OpenCV's reader, whose opens wait on one another in
    a process: the detector's own open of its source would wait for this one)."""
    import urllib.request

    def run() -> None:
        with urllib.request.urlopen(url, timeout=10) as response:
            assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
            while len(got) < frames:
                line = response.readline()
                if not line:
                    break  # the stream ended
                if not line.lower().startswith(b"content-length:"):
                    continue
                size = int(line.split(b":")[1])
                response.readline()  # the blank line before the JPEG
                got.append(cv2.imdecode(np.frombuffer(response.read(size), np.uint8), cv2.IMREAD_COLOR))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_mjpeg_server_serves_each_new_frame_to_a_viewer_until_closed() -> None:
    """Frames written while a viewer watches reach it in order (their numbers rising), in their colours (RGB in,
    shown as the same colour); the URL names the port; a second server on a taken port is refused naming it; closing
    ends the viewer's stream."""
    with video_module.MjpegServer(0, "127.0.0.1") as srv:
        assert srv.url == f"http://127.0.0.1:{srv.port}/" and srv.port > 0
        with pytest.raises(VideoError, match=rf"^127\.0\.0\.1:{srv.port}: cannot serve the annotated frames there"):
            video_module.MjpegServer(srv.port, "127.0.0.1")
        got: list[np.ndarray] = []
        viewer = view(srv.url, 6, got)
        k = 0
        while viewer.is_alive() and k < 2000:
            red = frame_image(k)[..., ::-1].copy()
            red[..., 1:] = 0  # RGB: only the red channel lit
            srv.write(red)
            k += 1
            time.sleep(0.005)
        viewer.join(5)
    assert len(got) == 6
    assert all(f[..., 2].mean() > 15 and f[..., :2].mean() < 5 for f in got)  # BGR as read: red stays red
    numbers: list[int] = []
    for f in got:
        grey = np.repeat(f[..., 2:3], 3, axis=2)
        numbers.append(frame_number(grey, numbers[-1] if numbers else -1))
    assert numbers == sorted(numbers) and len(set(numbers)) == 6
    with video_module.MjpegServer(0, "127.0.0.1") as srv:
        got = []
        viewer = view(srv.url, 10**6, got)
        while not got and viewer.is_alive():
            srv.write(frame_image(0)[..., ::-1].copy())
            time.sleep(0.01)
    viewer.join(10)
    assert not viewer.is_alive() and got  # the stream ended with the server


def test_detect_video_serves_the_annotated_frames_without_drawing_files(
    server: str, tiny_ckpt: Path, tmp_path: Path
) -> None:
    """``draw=false`` with a server: no video file, but the viewer gets annotated frames (the test stream's frames
    are flat grey: the served ones carry the boxes drawn on them)."""
    detect = load_script("detect")
    cfg = detect_cfg(tiny_ckpt, f"{server}/live?fps=50", "max_frames=60", "draw=false", "conf_thresh=0.01")
    det = Detector.from_checkpoint(tiny_ckpt, conf_thresh=0.01)
    got: list[np.ndarray] = []
    with video_module.MjpegServer(0, "127.0.0.1") as srv:
        viewer = view(srv.url, 3, got)
        record = detect.detect_video(det, cfg.source, (64, 64), cfg, tmp_path / "detections" / "live.mp4", srv)
    viewer.join(10)  # closing the server ended its stream
    assert not (tmp_path / "detections" / "live.mp4").exists() and record["frames"] == 60
    lines = [json.loads(x) for x in (tmp_path / "detections" / "live.jsonl").read_text().splitlines()]
    assert all(x["detections"] for x in lines)  # every frame has boxes to draw
    assert got and all(f.shape == (*FRAME_HW, 3) and f.std() > 10 for f in got)
    with pytest.raises(ValueError, match=r"serve_port must be a TCP port \(0-65535; 0: any free one\) or null, got"):
        detect.check_settings(detect_cfg(tiny_ckpt, cfg.source, "serve_port=70000"))
    with pytest.raises(ValueError, match=r"eval_warp must be true or false, got 'maybe'"):
        detect.check_settings(detect_cfg(tiny_ckpt, cfg.source, "eval_warp=maybe"))


def test_a_streams_password_is_not_written_and_counts_reach_the_record(
    server: str, tiny_ckpt: Path, tmp_path: Path
) -> None:
    """A URL's password shows as *** wherever the source is named (a user name stays); a video record counts its
    detections over all frames (the sum of its lines), and detect.py's last line names them."""
    assert source_name("rtsp://admin:s3cr:t@cam.local:554/live") == "rtsp://admin:***@cam.local:554/live"
    assert source_name("rtsp://admin@cam/live") == "rtsp://admin@cam/live" and source_name("a:b@c.mp4") == "a:b@c.mp4"
    with pytest.raises(VideoError, match=r"^http://u:\*\*\*@127\.0\.0\.1:\d+/missing\.mp4: cannot be opened"):
        VideoFrames(f"{server.replace('http://', 'http://u:pw@')}/missing.mp4")
    detect = load_script("detect")
    cfg = detect_cfg(tiny_ckpt, f"{server}/live?fps=100", "max_frames=4", "conf_thresh=0.01")
    det = Detector.from_checkpoint(tiny_ckpt, conf_thresh=0.01)
    record = detect.detect_video(det, cfg.source, (64, 64), cfg, tmp_path / "detections" / "live.mp4")
    lines = [json.loads(x) for x in (tmp_path / "detections" / "live.jsonl").read_text().splitlines()]
    assert record["detection_count"] == sum(len(x["detections"]) for x in lines) > 0


def test_a_live_streams_video_keeps_the_streams_time(
    server: str, tiny_ckpt: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """A detector slower than the stream (100 fps sent, 40 ms a frame), newest first: the annotated video has a
    frame for every stream frame up to the last detected (the last index + 1: a dropped frame takes the next
    detected one's picture), not one per detected frame, so it plays in the stream's time."""
    detect = load_script("detect")
    real = Detector.predict_video

    def slow(self: Any, video: Any, **kw: Any) -> Iterator[Any]:
        for item in real(self, video, **kw):
            time.sleep(0.04)
            yield item

    monkeypatch.setattr(Detector, "predict_video", slow)
    cfg = detect_cfg(tiny_ckpt, f"{server}/live?fps=100", "max_frames=6", "video_average=1")
    det = Detector.from_checkpoint(tiny_ckpt)
    record = detect.detect_video(det, cfg.source, (64, 64), cfg, tmp_path / "detections" / "live.mp4")
    lines = [json.loads(x) for x in (tmp_path / "detections" / "live.jsonl").read_text().splitlines()]
    assert record["frames"] == 6 and record["dropped"] > 0
    assert len(read_with_opencv(tmp_path / "detections" / "live.mp4")) == lines[-1]["frame"] + 1 > 6
