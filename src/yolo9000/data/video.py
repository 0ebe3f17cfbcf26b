"""Video files for detection: frames read in order (OpenCV's FFmpeg reader, as RGB arrays) and annotated frames
written back (darknet's ``detector demo`` on a file; here with the same eval transform, decode and NMS as images).

OpenCV applies a rotation tag of the container (phone videos) as it reads, as video players show the frames.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

# the containers OpenCV's FFmpeg backend reads, by suffix (a source's videos are told from its images by this)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts")
DEFAULT_FPS = 25.0  # a container that gives no frame rate (its frames' times are then index / 25)


class VideoError(ValueError):
    """A video file that cannot be opened or gives no frame; the message starts with the file."""


@dataclass(frozen=True)
class VideoInfo:
    """A video's stream as the reader opened it.

    Attributes:
        path: the file.
        fps: frames per second (the container's, else :data:`DEFAULT_FPS`).
        width, height: frame size in pixels (after the container's rotation).
        frames: the container's frame count (an estimate for some containers; the frames read are what count).
    """

    path: str
    fps: float
    width: int
    height: int
    frames: int


def is_video(path: str | Path) -> bool:
    """Whether ``path`` names a video file by its suffix (:data:`VIDEO_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


class VideoFrames:
    """The frames of a video file, in order, ``batch_size`` at a time: ``for first, frames in VideoFrames(path,
    8)`` gives the index of the batch's first frame and its frames, each a uint8 (H, W, 3) RGB array.

    Raises :class:`VideoError` naming the file when it cannot be opened or gives no frame at all; a stream
    that breaks off later ends there (the frames before it are given). Iterated once (a reader, not a list).
    """

    def __init__(self, path: str | Path, batch_size: int = 1) -> None:
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.path, self.batch_size = Path(path), int(batch_size)
        if not self.path.is_file():
            raise VideoError(f"{self.path}: no such video file")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            cap.release()
            raise VideoError(f"{self.path}: not a video OpenCV's reader can open (corrupt, or an unknown format)")
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise VideoError(f"{self.path}: the video gives no frame")
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        self._cap, self._first = cap, first
        self.info = VideoInfo(
            str(self.path),
            fps if np.isfinite(fps) and fps > 0 else DEFAULT_FPS,
            int(first.shape[1]),
            int(first.shape[0]),
            max(int(cap.get(cv2.CAP_PROP_FRAME_COUNT)), 1),
        )

    def __iter__(self) -> Iterator[tuple[int, list[np.ndarray]]]:
        index, batch = 0, []
        frame: np.ndarray | None = self._first
        self._first = None
        while frame is not None:
            batch.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            if len(batch) == self.batch_size:
                yield index, batch
                index, batch = index + len(batch), []
            ok, frame = self._cap.read()
            frame = frame if ok else None
        if batch:
            yield index, batch
        self.close()

    def close(self) -> None:
        """Release the reader (iteration to the end does it)."""
        self._cap.release()

    def __enter__(self) -> VideoFrames:
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


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
