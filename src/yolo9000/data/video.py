"""Videos and live streams for detection: frames read in order (OpenCV's FFmpeg reader, as RGB arrays) and annotated
frames written back (darknet's ``detector demo``; here with the same eval transform, decode and NMS as images).

A source is a video file, a camera (its index: ``0``, darknet's ``demo -c 0``) or a stream URL (``rtsp://``,
``http://`` an IP camera's MJPEG, ``rtmp://``, ``udp://`` ...: :data:`STREAM_SCHEMES`). A camera, and a stream that
gives no frame count, is *live*: it has no end of its own, and by default the detector takes the newest frame each
time it is free, the frames that arrived meanwhile dropped (darknet's demo: a fetch thread beside the detection);
``latest=False`` reads every frame in order (falling behind a camera faster than the detector). A stream URL with a
frame count (a video file served over HTTP) reads as a file.

OpenCV applies a rotation tag of the container (phone videos) as it reads, as video players show the frames.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import cv2
import numpy as np

# the containers OpenCV's FFmpeg backend reads, by suffix (a source's videos are told from its images by this)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
DEFAULT_FPS = 25.0  # a container that gives no frame rate (its frames' times are then index / 25)
# URL schemes of the streams OpenCV's FFmpeg backend opens (an IP camera's RTSP or HTTP MJPEG, RTMP, UDP ...)
STREAM_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp", "mms", "mmsh")
TIMES_KEPT = 1024  # frames whose times :meth:`VideoFrames.time_of` keeps (a consumer may lag a window behind)
STREAM_TIMEOUT_S = 10.0  # a stream that does not open, or gives no frame, within this is an error (not a hang)
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/@:]*):[^/@]*@")  # scheme://user:password@ (password replaced)

VideoSource = str | Path | int


class VideoError(ValueError):
    """A video file that cannot be opened or gives no frame; the message starts with the file."""


@dataclass(frozen=True)
class VideoInfo:
    """A video's stream as the reader opened it.

    Attributes:
        path: the file, the stream's URL, or ``camera <index>``.
        fps: frames per second (the container's or camera's, else :data:`DEFAULT_FPS`).
        width, height: frame size in pixels (after the container's rotation).
        frames: the container's frame count (an estimate for some containers; the frames read are what count);
            0 for a live source (no count).
        live: a camera, or a stream without a frame count: no end of its own.
    """

    path: str
    fps: float
    width: int
    height: int
    frames: int
    live: bool = False


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video file by its suffix (:data:`VIDEO_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def stream_source(source: object) -> int | str | None:
    """The camera index or stream URL ``source`` names, else None (a file or folder path).

    A camera: a non-negative int, or a string of digits that names no existing file or folder (``0``). A stream: a
    URL whose scheme is one of :data:`STREAM_SCHEMES` (any case), returned as given.
    """
    if isinstance(source, bool):
        return None
    if isinstance(source, int):
        return source if source >= 0 else None
    if isinstance(source, Path):
        return None
    text = str(source)
    if text.isdigit() and not Path(text).exists():
        return int(text)
    m = _SCHEME.match(text)
    return text if m and m.group(1).lower() in STREAM_SCHEMES else None


def source_name(source: VideoSource) -> str:
    """How a source is named in messages and results: the file's path, the URL (a password in it shown as ``***``:
    ``rtsp://admin:***@cam/live``), or ``camera <index>``."""
    s = stream_source(source)
    if isinstance(s, int):
        return f"camera {s}"
    return _PASSWORD.sub(r"\1:***@", str(source)) if s is not None else str(source)


class VideoFrames:
    """The frames of a video file, camera or stream, in order, ``batch_size`` at a time: ``for first, frames in
    VideoFrames(path, 8)`` gives the index of the batch's first frame and its frames, each a uint8 (H, W, 3) RGB
    array. A live source (:attr:`VideoInfo.live`) read with ``latest`` gives one frame at a time, the newest read:
    its index is the stream's, so the dropped frames show as gaps (:attr:`dropped` counts them).

    Args:
        source: a video file, a camera index, or a stream URL (:func:`stream_source`).
        batch_size: frames per batch (1 for a live source read with ``latest``).
        latest: a live source: give the newest frame whenever asked, dropping the frames read meanwhile (darknet's
            demo); False: every frame in order. A file is always read frame by frame.
        max_frames: stop after this many frames (None: the end of the file or stream).
        timeout_s: a stream URL that does not open, or sends no frame, within this many seconds is an error.

    Raises :class:`VideoError` naming the source when it cannot be opened or gives no frame at all; a stream
    that breaks off later ends there (the frames before it are given). Iterated once (a reader, not a list).
    :meth:`time_of` gives a frame's time (seconds from the first frame).
    """

    def __init__(
        self,
        source: VideoSource,
        batch_size: int = 1,
        *,
        latest: bool = True,
        max_frames: int | None = None,
        timeout_s: float = STREAM_TIMEOUT_S,
    ) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        if max_frames is not None and (isinstance(max_frames, bool) or int(max_frames) < 1):
            raise ValueError(f"max_frames must be >= 1 or None (every frame), got {max_frames!r}")
        stream = stream_source(source)
        self.path: Path | str = Path(source) if stream is None else source_name(source)
        self.batch_size, self.max_frames = int(batch_size), None if max_frames is None else int(max_frames)
        if stream is None:
            if not Path(self.path).is_file():
                raise VideoError(f"{self.path}: no such video file")
            cap = cv2.VideoCapture(str(self.path))
        elif isinstance(stream, int):
            cap = cv2.VideoCapture(stream)
        else:
            ms = int(float(timeout_s) * 1000)
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(stream, cv2.CAP_FFMPEG, timeouts)
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{self.path}: {_not_opened(stream, timeout_s)}")
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise VideoError(f"{self.path}: the {'camera' if isinstance(stream, int) else 'video'} gives no frame")
        self._t0 = time.monotonic()
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        live = isinstance(stream, int) or (stream is not None and not (np.isfinite(count) and count > 0))
        self._cap, self._first = cap, first
        self.latest = bool(latest) and live
        if self.latest:
            self.batch_size = 1  # the newest frame each time: a batch would be older frames
        self.dropped = 0
        self._times: dict[int, float] = {}
        self.info = VideoInfo(
            str(self.path),
            fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
            int(first.shape[1]),
            int(first.shape[0]),
            0 if live else max(int(count), 1),
            live,
        )
        self._reader: _LatestFrame | None = None

    def time_of(self, index: int) -> float:
        """Seconds from the first frame to frame ``index``, one of the last :data:`TIMES_KEPT` given: a live
        source's arrival time (the reader's clock), a file's ``index / fps``."""
        return self._times[index] if self.info.live else index / self.info.fps

    def __iter__(self) -> Iterator[tuple[int, list[np.ndarray]]]:
        frames = self._newest() if self.latest else self._in_order()
        given = 0
        index, batch = 0, []
        for k, t, frame in frames:
            if not batch:
                index = k
            batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            self._times[k] = t
            if len(self._times) > TIMES_KEPT:  # the oldest (dicts keep their insertion order)
                del self._times[next(iter(self._times))]
            given += 1
            if len(batch) == self.batch_size or given == self.max_frames:
                yield index, batch
                batch = []
            if given == self.max_frames:
                break
        if batch:
            yield index, batch
        self.close()

    def _in_order(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time, BGR frame) of every frame, read here (the time: when its read returned)."""
        k, t, frame = 0, 0.0, self._first
        self._first = None
        while frame is not None:
            yield k, t, frame
            ok, frame = self._cap.read()
            frame, k, t = (frame if ok else None), k + 1, time.monotonic() - self._t0

    def _newest(self) -> Iterator[tuple[int, float, np.ndarray]]:
        """(index, time, BGR frame) of the newest frame each time one is asked for, read by a background thread."""
        first, self._first = self._first, None
        self._reader = _LatestFrame(self._cap, first, self._t0)
        taken = 0
        while (got := self._reader.frames.next_after(taken)) is not None:
            self.dropped += got[0] - taken - 1  # frame k is the slot's (k + 1)-th value
            taken, item = got
            yield item

    def close(self) -> None:
        """Stop the reader thread of a live source and release the reader (iteration to the end does it)."""
        if self._reader is not None:
            self._reader.stop()
        self._cap.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def _not_opened(stream: int | str | None, timeout_s: float = STREAM_TIMEOUT_S) -> str:
    if stream is None:
        return "not a video OpenCV's reader can open (corrupt, or an unknown format)"
    if isinstance(stream, int):
        return "cannot be opened (no camera at this index, it is in use, or this OpenCV has no camera support)"
    return f"cannot be opened (unreachable, no stream at this address, or nothing within {float(timeout_s):g} s)"


class _Newest:
    """The newest of a sequence of values handed from one thread to others: :meth:`put` replaces it, and a reader
    waiting in :meth:`next_after` wakes for each new one; a reader slower than the writer skips values."""

    def __init__(self) -> None:
        self._value: Any = None
        self._count = 0  # values put so far: the newest is the count-th
        self._closed = False
        self._cond = threading.Condition()

    def put(self, value: Any) -> None:
        with self._cond:
            self._value, self._count = value, self._count + 1
            self._cond.notify_all()

    def close(self) -> None:
        """No more values: readers waiting for a newer one get None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def next_after(self, count: int) -> tuple[int, Any] | None:
        """(its count, the newest value) once it is newer than the ``count``-th, waiting for it (in short waits, so
        Ctrl-C reaches a main thread waiting here); None when closed with none newer."""
        with self._cond:
            while self._count <= count and not self._closed:
                self._cond.wait(0.1)
            return (self._count, self._value) if self._count > count else None


class _LatestFrame:
    """A thread reading a live source as fast as it sends, keeping only the newest frame (darknet demo's fetch
    thread) in :attr:`frames`, a :class:`_Newest` of (index, time, BGR frame), the first frame put already."""

    def __init__(self, cap: cv2.VideoCapture, first: np.ndarray, t0: float) -> None:
        self._cap, self._t0 = cap, t0
        self.frames = _Newest()
        self.frames.put((0, 0.0, first))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="yolo9000-stream", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            ok, frame = self._cap.read()
            if not ok:
                break
            k += 1
            self.frames.put((k, time.monotonic() - self._t0, frame))
        self.frames.close()

    def stop(self) -> None:
        """Ask the thread to stop and wait for its read to return (the reader is released after)."""
        self._stop.set()
        self._thread.join(timeout=STREAM_TIMEOUT_S + 1)


class VideoWriter:
    """Frames written to a video file (MPEG-4 Part 2 in ``.mp4`` / ``.mov`` / ``.m4v``, Motion JPEG otherwise: the
    codecs OpenCV's FFmpeg writer has without extra libraries), at ``fps``, each a uint8 (H, W, 3) RGB array of the
    size given. Both codecs store colour at half resolution and so take even sides only (OpenCV would crop an odd
    side, losing the last column or row): an odd side is written one pixel longer, the frame's last column / row
    repeated (``encoded_size``). Raises :class:`VideoError` naming the file when it cannot be opened for writing."""

    def __init__(self, path: str | Path, fps: float, width: int, height: int) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        codec = "mp4v" if self.path.suffix.lower() in (".mp4", ".mov", ".m4v") else "MJPG"
        self.size = (int(width), int(height))
        self.encoded_size = (self.size[0] + self.size[0] % 2, self.size[1] + self.size[1] % 2)  # (width, height)
        self._out = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), float(fps), self.encoded_size)
        if not self._out.isOpened():
            raise VideoError(f"{self.path}: cannot be written as a {codec} video")
        self.frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) RGB frame of the writer's size."""
        if (frame.shape[1], frame.shape[0]) != self.size:
            raise ValueError(f"{self.path}: a {frame.shape[1]} x {frame.shape[0]} frame for a {self.size} video")
        bgr = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        pad_w, pad_h = self.encoded_size[0] - self.size[0], self.encoded_size[1] - self.size[1]
        if pad_w or pad_h:  # an odd side: its last column / row repeated (the codecs take even sides only)
            bgr = cv2.copyMakeBorder(bgr, 0, pad_h, 0, pad_w, cv2.BORDER_REPLICATE)
        self._out.write(bgr)
        self.frames += 1

    def close(self) -> None:
        self._out.release()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


class MjpegServer:
    """Frames served live over HTTP as Motion JPEG (``multipart/x-mixed-replace``, what IP cameras send): a browser,
    VLC or ``cv2.VideoCapture`` opened on ``http://<host>:<port>/`` shows each frame as it is written (AlexeyAB
    darknet's ``-mjpeg_port``). A client gets the newest frame when it connects, then every frame written after;
    a slow client skips frames rather than falling behind. Serves from a thread until :meth:`close`.

    Args:
        port: the TCP port (0: any free one, see :attr:`port`).
        host: the address to listen on (``0.0.0.0``: every interface; ``127.0.0.1``: this machine only).
        quality: JPEG quality of the served frames (1-100).
    Raises:
        VideoError: the port cannot be listened on (taken, or privileged), naming it.
    """

    def __init__(self, port: int = 8090, host: str = "0.0.0.0", quality: int = 80) -> None:
        import http.server
        import socketserver

        self.quality = int(quality)
        jpegs = self._jpegs = _Newest()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                sent = 0
                try:
                    while (item := jpegs.next_after(sent)) is not None:
                        sent, jpeg = item
                        head = b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
                        self.wfile.write(head + jpeg + b"\r\n")
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the viewer went away

            def log_message(self, *args: object) -> None:  # no line per request on stderr
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True

        try:
            self._server = Server((host, int(port)), Handler)
        except OSError as e:
            raise VideoError(f"{host}:{port}: cannot serve the annotated frames there ({e.strerror or e})") from None
        self.host, self.port = host, int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="yolo9000-mjpeg", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Where to look: ``http://<host>:<port>/`` (``localhost`` for an all-interfaces server)."""
        return f"http://{'localhost' if self.host in ('0.0.0.0', '') else self.host}:{self.port}/"

    def write(self, frame: np.ndarray) -> None:
        """Serve one uint8 (H, W, 3) RGB frame (encoded once, whatever the number of viewers)."""
        bgr = cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise ValueError(f"a {frame.shape} frame cannot be encoded as JPEG")
        self._jpegs.put(jpeg.tobytes())

    def close(self) -> None:
        """Stop serving (the viewers' streams end)."""
        self._jpegs.close()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> MjpegServer:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()
