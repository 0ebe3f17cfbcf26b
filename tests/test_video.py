"""Videos: frames read in order and in RGB (:class:`yolo9000.data.video.VideoFrames`), written back
(:class:`~yolo9000.data.video.VideoWriter`), detected frame by frame (:meth:`yolo9000.Detector.predict_video`, the
same detections as the frames given to ``predict`` as images) and ``detect.py source=<video>`` (darknet's
``detector demo`` on a file): an annotated video and each frame's detections in detections.json."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import compose_config, load_script
from test_cli_bench_detect_eval import ROOT, make_checkpoint, run
from yolo9000.data.image_io import read_image
from yolo9000.data.video import VideoError, VideoFrames, VideoWriter, is_video

FPS = 12.0


def write_clip(path: Path, n: int, hw: tuple[int, int] = (120, 160)) -> list[np.ndarray]:
    """A clip of ``n`` frames: a BCCD photo shifted right by 8 px a frame (Motion JPEG in .avi). Returns the
    frames as written (RGB)."""
    photo = cv2.resize(read_image(ROOT / "data" / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"), hw[::-1])
    frames = [np.ascontiguousarray(np.roll(photo, 8 * k, axis=1)) for k in range(n)]
    with VideoWriter(path, FPS, hw[1], hw[0]) as out:
        for f in frames:
            out.write(f)
    return frames


def read_with_opencv(path: Path) -> list[np.ndarray]:
    """Every frame of a video read with OpenCV directly, converted to RGB (the reference reading)."""
    cap, frames = cv2.VideoCapture(str(path)), []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "bccd.ckpt")


def test_frames_come_in_order_in_batches_and_in_rgb(tmp_path: Path) -> None:
    """7 frames of distinct flat colours, batch 3: batches start at 0, 3, 6 (3, 3, 1 frames); each frame keeps its
    red, green and blue (a BGR / RGB swap on either side would exchange 200 and 10); the stream's rate and size."""
    colours = [(200, 50 + 20 * k, 10) for k in range(7)]
    path = tmp_path / "flat.avi"
    with VideoWriter(path, FPS, 48, 32) as out:
        for c in colours:
            out.write(np.broadcast_to(np.array(c, np.uint8), (32, 48, 3)))
    assert out.frames == 7
    frames = VideoFrames(path, batch_size=3)
    assert (frames.info.fps, frames.info.width, frames.info.height) == (FPS, 48, 32)
    batches = list(frames)
    assert [(first, len(b)) for first, b in batches] == [(0, 3), (3, 3), (6, 1)]
    got = [f.reshape(-1, 3).mean(0) for _, b in batches for f in b]
    for mean, want in zip(got, colours, strict=True):
        assert np.abs(mean - np.array(want)).max() < 4  # Motion JPEG of a flat colour: a few levels at most


def test_unreadable_videos_name_the_file(tmp_path: Path) -> None:
    """A missing file, a text file named .mp4 and an empty video are VideoErrors naming the file; suffixes are
    matched in any case."""
    fake = tmp_path / "fake.mp4"
    fake.write_text("not a video")
    with pytest.raises(VideoError, match=r"nope\.mp4: no such video file"):
        VideoFrames(tmp_path / "nope.mp4")
    with pytest.raises(VideoError, match=r"fake\.mp4: "):
        VideoFrames(fake)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        VideoFrames(fake, batch_size=0)
    assert is_video("a/B.MOV") and is_video("x.avi") and not is_video("x.jpg")
    with pytest.raises(ValueError, match=r"a 10 x 10 frame for a \(48, 32\) video"):
        VideoWriter(tmp_path / "w.avi", FPS, 48, 32).write(np.zeros((10, 10, 3), np.uint8))


def test_predict_video_gives_each_frame_the_detections_of_the_frame_as_an_image(
    tiny_ckpt: Path, tmp_path: Path
) -> None:
    """Frame k's detections (batches of 2, the last one short) equal ``predict`` on frame k as read by OpenCV
    directly; indices count frames from 0 and the path is the video's."""
    from yolo9000 import Detector

    path = tmp_path / "clip.avi"
    write_clip(path, 5)
    det = Detector.from_checkpoint(tiny_ckpt, conf_thresh=0.01)
    got = list(det.predict_video(path, size=64, batch_size=2))
    ref = det.predict(read_with_opencv(path), size=64)
    assert [d.index for _, d in got] == [0, 1, 2, 3, 4] and {d.path for _, d in got} == {str(path)}
    assert sum(len(d) for _, d in got) > 0
    for (frame, d), r, want in zip(got, ref, read_with_opencv(path), strict=True):
        assert np.array_equal(frame, want)
        assert torch.equal(d.boxes, r.boxes) and torch.equal(d.scores, r.scores) and d.names == r.names


@pytest.mark.slow  # ~10 s, a subprocess; detect.py's video path runs in-process in test_video_rules.py (default suite)
def test_detect_py_writes_the_annotated_video_and_each_frames_detections(tiny_ckpt: Path, tmp_path: Path) -> None:
    """``source=<video>``: exit 0; detections.json's video record has the clip's 6 frames at their times (k / 12 s),
    frame 0's detections those of the frame as an image; the annotated .mp4 has 6 frames of the clip's size. With
    ``results=voc`` the video is refused (darknet's result files are per image) by the settings' check, which runs
    before the checkpoint is read."""
    from yolo9000 import Detector

    clip = tmp_path / "clip.avi"
    write_clip(clip, 6)
    out = tmp_path / "out"
    given = [f"ckpt_path={tiny_ckpt}", f"source={clip}", "img_size=64", "conf_thresh=0.01", "video_average=1"]
    res = run("detect.py", out, *given)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "detections.json").read_text())
    assert record["images"] == [] and record["failed"] == []
    (video,) = record["videos"]
    assert (video["frames"], video["fps"], video["width"], video["height"]) == (6, FPS, 160, 120)
    assert [f["frame"] for f in video["detections_per_frame"]] == list(range(6))
    assert [f["time"] for f in video["detections_per_frame"]] == [round(k / FPS, 4) for k in range(6)]
    first = Detector.from_checkpoint(tiny_ckpt, conf_thresh=0.01).predict(read_with_opencv(clip)[0], size=64)[0]
    assert video["detections_per_frame"][0]["detections"] == first.to_dict()["detections"]
    drawn = read_with_opencv(out / video["drawing"])
    assert video["drawing"] == "detections/clip.mp4" and len(drawn) == 6 and drawn[0].shape == (120, 160, 3)
    detect = load_script("detect")
    cfg = compose_config("detect", "ckpt_path=missing.ckpt", f"source={clip}", "results=voc")
    with pytest.raises(ValueError, match=r"results=voc writes darknet's image result files: the videos of source="):
        detect.check_settings(cfg, [clip])
    detect.check_settings(compose_config("detect", "ckpt_path=missing.ckpt", f"source={clip}"), [clip])


def test_a_folder_source_gives_its_images_and_videos(tmp_path: Path) -> None:
    """detect.py source=<folder>: its images and videos, recursively and sorted by path, hidden files and other
    files left out; a folder with neither names both kinds."""
    detect = load_script("detect")
    src = tmp_path / "media"
    for rel in ("a.jpg", "clip.AVI", "sub/b.png", "sub/run.mp4", ".hidden/c.mp4", "notes.txt", "sub/labels.txt"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    want = [src / "a.jpg", src / "clip.AVI", src / "sub" / "b.png", src / "sub" / "run.mp4"]
    assert detect.source_files(str(src)) == want
    (tmp_path / "trip.mov").mkdir()  # a folder named like a video is a folder
    (tmp_path / "trip.mov" / "x.jpg").write_bytes(b"x")
    assert detect.source_files(str(tmp_path / "trip.mov")) == [tmp_path / "trip.mov" / "x.jpg"]
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("x")
    with pytest.raises(FileNotFoundError, match=r"no images \(.*\) or videos \(.*\.mp4.*\) under"):
        detect.source_files(str(tmp_path / "text"))
