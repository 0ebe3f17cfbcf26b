"""Run a trained detector on images and videos: `python src/detect.py ckpt_path=<ckpt> source=<path>`.

``source``: an image file, a video file (``.mp4``, ``.avi``, ``.mov``, ... :data:`yolo9000.data.video.VIDEO_SUFFIXES`),
a folder (its images and videos, recursively, hidden files left out), a glob pattern (in quotes:
``"source='photos/*.jpg'"``; images and videos), a ``.txt`` list of image paths (darknet's ``valid`` lists;
relative paths from the list's folder, else from the working directory), a camera index (``source=0``, darknet's
``demo -c 0``), a stream URL (``rtsp://``, ``http://`` ... :data:`yolo9000.data.video.STREAM_SCHEMES`; in quotes
when it holds ``=``), or a list of any of these (``source=[a.jpg,b/,clip.mp4]``; streams run after the rest).

A video runs frame by frame (darknet's ``detector demo``): the annotated video goes to <run>/detections/<name>.mp4
at the video's frame rate, and detections.json's ``videos`` holds each frame's detections with its index and time;
as darknet's demo, a frame's detections come from the network's outputs averaged over it and the frames before and
after it (``video_average=3``; 1: each frame on its own).
A camera or live stream (no frame count) runs on the newest frame each time (``live_latest``; the others dropped and
counted) until it ends, ``max_frames``, Ctrl-C or SIGTERM (each ends the run normally, every output written); its
frames' detections go to <run>/detections/<name>.jsonl as they come, one JSON line a frame (bounded memory; the
file holds every frame detected even if the process is killed).

A thin CLI over the predict API (:class:`yolo9000.Detector`: the eval transform resizes, the module's decode and
NMS run with this config's thresholds, the transform maps the boxes back to each image).

Writes annotated images into <run>/detections/ and every detection into <run>/detections.json (boxes xyxy in
original image pixels, class name and id, score; unreadable inputs under "failed"). Exits with status 1, naming
the inputs, when none could be read; unreadable inputs among readable ones are listed and skipped.

``results=voc|coco`` also writes darknet's ``detector valid`` files into <run>/results/ (:mod:`yolo9000.submission`:
VOC's ``comp4_det_test_<class>.txt``, COCO's ``coco_results.json``), at darknet's valid threshold 0.005 unless
``conf_thresh`` is given.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from yolo9000.api import DETECT_CONF, Detector, check_input_size, dtype_from_name
from yolo9000.data.image_io import IMAGE_SUFFIXES, images_under, read_image
from yolo9000.data.predict import list_images
from yolo9000.data.video import (
    VIDEO_SUFFIXES,
    MjpegServer,
    VideoError,
    VideoFrames,
    VideoSource,
    VideoWriter,
    is_video,
    source_name,
    stream_source,
)
from yolo9000.environment import (
    FILE_ONLY,
    hint_unknown_overrides,
    hydra_flags_first,
    log_to_job_log,
    setup_environment,
    user_message,
)
from yolo9000.models import STRIDE
from yolo9000.speed import dtype_name
from yolo9000.submission import (
    VALID_CONF,
    ImageDetections,
    coco_category_ids,
    coco_index,
    mapped_category_ids,
    voc_result_files,
    write_coco_results,
    write_voc_results,
)
from yolo9000.text_io import read_text, text_lines
from yolo9000.viz import draw_detections, save_image

log = logging.getLogger("yolo9000.detect")
PROGRESS_FRAMES = 100  # a video's progress line every this many frames
setup_environment()


@hydra.main(version_base="1.3", config_path="../conf", config_name="detect.yaml")
def main(cfg: DictConfig) -> None:
    log_to_job_log()
    out_dir = Path(cfg.paths.output_dir)
    try:  # a user's mistake: its reason alone, before the checkpoint is loaded
        rest, streams = split_streams(cfg.source)
        files = source_files(rest) if rest is not None else []
        videos: list[VideoSource] = [f for f in files if is_video(f)]
        videos += streams  # last: a live stream may never end
        files = [f for f in files if not is_video(f)]
        check_settings(cfg, videos)
    except (FileNotFoundError, ValueError, MissingMandatoryValue) as e:  # the last: source=??? left unset
        log.error("%s", user_message(e), extra=FILE_ONLY)  # the job log says why it stopped; the console: the exit
        raise SystemExit(f"Error: {user_message(e)}") from None
    # imported here, after Hydra parsed the arguments and the settings were checked: --help, an argument error and a
    # user's mistake need no Lightning (the checkpoint code, and the module that from_checkpoint builds, import it)
    from yolo9000.checkpoints import module_settings

    conf = cfg.conf_thresh if cfg.conf_thresh is not None else VALID_CONF if cfg.results else DETECT_CONF
    try:  # a checkpoint that is missing or not one, a setting it refuses (conf_thresh=1.5): the reason alone
        detector = Detector.from_checkpoint(
            cfg.ckpt_path,
            device=str(cfg.device),
            dtype=cfg.get("dtype"),  # a name check_settings accepted; null: float32
            compile=cfg.compile,
            warp=cfg.get("eval_warp", True),
            **module_settings(cfg, "nms_thresh", "pre_nms_topk", "tree_decode", "tree_thresh", "eval_map"),
            conf_thresh=float(conf),
        )
    except (FileNotFoundError, ValueError, TypeError) as e:
        log.error("%s", e, extra=FILE_ONLY)
        raise SystemExit(f"Error: {e}") from None
    try:  # the result files' names and ids, before the images are run
        eval_nodes = getattr(getattr(detector, "module", None), "eval_nodes", None)  # a WordTree eval_map
        writer = result_writer(cfg, detector.class_names, out_dir / "results", files, eval_nodes)
    except (FileNotFoundError, ValueError, MissingMandatoryValue) as e:  # the last: source=??? left unset
        log.error("%s", user_message(e), extra=FILE_ONLY)  # the job log says why it stopped; the console: the exit
        raise SystemExit(f"Error: {user_message(e)}") from None
    size = input_size(cfg.img_size)
    letterbox = detector.letterbox if cfg.letterbox is None else cfg.letterbox  # null: as the checkpoint's run
    hw = detector.input_hw if size is None else check_input_size(size)
    log.info(
        "%d image%s%s, input %d x %d (height x width%s), %s, from %s",
        len(files),
        "" if len(files) == 1 else "s",
        f" and {len(videos)} video{'s' * (len(videos) != 1)}" if videos else "",
        *hw,
        ", letterboxed" if letterbox else ", stretched",
        detector,
        cfg.ckpt_path,
    )
    results = detector.predict(
        files,
        size=hw,
        letterbox=letterbox,
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        skip_unreadable=True,
    )
    failed = [{"file": r.path, "reason": r.error} for r in results if r.error is not None]
    video_records: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        mjpeg = None
        if videos and cfg.serve_port is not None:
            try:
                mjpeg = stack.enter_context(MjpegServer(int(cfg.serve_port), str(cfg.serve_host)))
            except VideoError as e:
                log.error("serve_port: %s", e, extra=FILE_ONLY)
                raise SystemExit(f"Error: serve_port: {e}") from None
            log.info("the annotated frames, live: %s (MJPEG: a browser or VLC)", mjpeg.url)
        for k, (name, video) in enumerate(zip(video_names(videos), videos, strict=True)):
            try:
                video_records.append(detect_video(detector, video, hw, cfg, out_dir / "detections" / name, mjpeg))
            except VideoError as e:
                failed.append({"file": source_name(video), "reason": str(e).removeprefix(f"{source_name(video)}: ")})
                continue
            if video_records[-1].get("stopped"):  # Ctrl-C / SIGTERM ended a live stream: the run ends with it
                if videos[k + 1 :]:
                    log.warning("not run (stopped): %s", ", ".join(map(source_name, videos[k + 1 :])))
                break
    single = not isinstance(cfg.source, ListConfig)  # a folder: names below it; else below the inputs' common folder
    out_names = drawing_names([r.path for r in results], str(cfg.source) if single else None)
    records = []
    for det in results:
        if det.error is not None:
            continue
        rec = det.to_dict()
        records.append({k: rec[k] for k in ("file", "width", "height", "detections")})
        if cfg.draw:  # which annotated picture is this input's (names are made unique)
            records[-1]["drawing"] = str(Path("detections") / out_names[det.path])
        log.info("%s: %s", det.path, detection_line(rec["detections"]))
        if cfg.draw:
            img = torch.from_numpy(read_image(det.path)).permute(2, 0, 1)
            drawn = draw_detections(img, det.boxes, det.labels, det.scores, detector.class_names)
            save_image(drawn, out_dir / "detections" / out_names[det.path])
    # dtype: the precision the boxes and scores came from (bf16 rounds its own)
    run = {
        "checkpoint": str(cfg.ckpt_path),
        "input_hw": list(hw),
        "letterbox": letterbox,
        "dtype": dtype_name(detector.dtype),
    }
    found = {"images": records, **({"videos": video_records} if videos else {}), "failed": failed}
    out_dir.mkdir(parents=True, exist_ok=True)  # nothing written yet when no input could be read
    (out_dir / "detections.json").write_text(json.dumps({**run, **found}, indent=2))
    if not records and not video_records:
        given = cfg.source if isinstance(cfg.source, str | int) else list(cfg.source)  # a URL's password: ***
        shown = source_name(given) if isinstance(given, str | int) else [source_name(x) for x in given]
        msg = f"no input could be read: none of the {len(failed)} input(s) of source={shown}:\n"
        msg += unreadable_list(failed)
        log.error(msg)
        sys.exit(f"detect.py: {msg}")  # exit status 1
    if failed:
        total = len(files) + len(videos)
        log.warning("%d of %d inputs unreadable (skipped):\n%s", len(failed), total, unreadable_list(failed))
    if writer is not None:
        writer([r for r in results if r.error is None])
    n = sum(len(r["detections"]) for r in records)
    in_videos = sum(v["detection_count"] for v in video_records)
    frames = f" and {in_videos} in {sum(v['frames'] for v in video_records)} video frames" if videos else ""
    log.info(
        "%d detection%s in %d image%s%s (%d unreadable) -> %s",
        n,
        "" if n == 1 else "s",
        len(records),
        "" if len(records) == 1 else "s",
        frames,
        len(failed),
        out_dir,
    )


def detect_video(
    detector: Detector,
    video: VideoSource,
    hw: tuple[int, int],
    cfg: DictConfig,
    drawing: Path,
    mjpeg: MjpegServer | None = None,
) -> dict[str, Any]:
    """Every frame of ``video`` (a file, camera or stream) through the detector (:meth:`Detector.predict_video`), the
    annotated frames written to ``drawing`` (``cfg.draw``) at the video's frame rate (a frame dropped from a live
    source takes the next detected frame's picture: the video keeps the stream's time) and served by ``mjpeg`` (when
    given); progress logged every ``PROGRESS_FRAMES`` frames. Each frame's detections come from the network's outputs
    averaged over ``cfg.video_average`` frames centred on it (darknet's demo: 3). A live source (camera, stream
    without a frame count) reads ``cfg.live_latest``'s way, writes each frame's detections to ``drawing``'s ``.jsonl``
    as they come, and stops on Ctrl-C or SIGTERM with every output complete (``stopped`` in the record).

    Returns its detections.json record: file (path, URL or ``camera <index>``), fps, width, height, live, frames,
    detection_count (over all frames), drawing, and per frame its index, time (seconds; a live frame's
    arrival) and detections (a live source: ``dropped`` and ``detections_file`` instead, and ``stopped``: SIGINT /
    SIGTERM or null). Raises VideoError naming the source when it cannot be read."""
    bs, latest = int(cfg.batch_size), bool(cfg.live_latest)
    frames = VideoFrames(video, bs, latest=latest, max_frames=cfg.max_frames)
    info, name = frames.info, source_name(video)
    if info.live:
        how = "the newest frame each time, the others dropped" if frames.latest else "every frame in order"
        log.info("%s: live, %d x %d at %.2f fps: %s (Ctrl-C ends it)", name, info.width, info.height, info.fps, how)
    else:
        log.info("%s: %d x %d at %.2f fps, about %d frames", name, info.width, info.height, info.fps, info.frames)
    per_frame: list[dict[str, Any]] = []
    count, found, stopped, start, last = 0, 0, None, time.monotonic(), -1
    with contextlib.ExitStack() as stack:
        stack.enter_context(frames)
        out = stack.enter_context(VideoWriter(drawing, info.fps, info.width, info.height)) if cfg.draw else None
        lines = None
        if info.live:
            drawing.parent.mkdir(parents=True, exist_ok=True)
            lines = stack.enter_context(open(drawing.with_suffix(".jsonl"), "w", encoding="utf-8"))
            stack.enter_context(_sigterm_interrupts())
        try:
            average = int(cfg.video_average)
            for frame, det in detector.predict_video(frames, size=hw, letterbox=cfg.letterbox, average=average):
                entry = {"frame": det.index, "time": round(frames.time_of(det.index), 4)}
                entry["detections"] = det.to_dict()["detections"]
                gap, last = max(1, det.index - last), det.index  # 1 + the frames dropped before this one
                count, found = count + 1, found + len(entry["detections"])
                if lines is not None:
                    lines.write(json.dumps(entry) + "\n")
                    lines.flush()
                else:
                    per_frame.append(entry)
                if out is not None or mjpeg is not None:
                    img = torch.from_numpy(frame).permute(2, 0, 1)
                    drawn = draw_detections(img, det.boxes, det.labels, det.scores, detector.class_names)
                    drawn_hwc = drawn.permute(1, 2, 0).numpy()
                    if out is not None:  # a frame in place of each dropped one too: the video keeps the stream's time
                        for _ in range(gap):
                            out.write(drawn_hwc)
                    if mjpeg is not None:
                        mjpeg.write(drawn_hwc)
                if count % PROGRESS_FRAMES == 0:
                    log.info("%s: %s", name, progress_text(count, info, frames.dropped, time.monotonic() - start))
        except KeyboardInterrupt as e:
            if not info.live:
                raise
            stopped = "SIGTERM" if isinstance(e, _Terminated) else "SIGINT"
            log.warning("%s: stopped by %s after %d frames; its outputs are complete", name, stopped, count)
    dropped = f" ({frames.dropped} dropped)" if info.live else ""
    log.info("%s: %d detections in %d frames%s%s", name, found, count, dropped, f" -> {drawing}" if cfg.draw else "")
    record = {"file": name, "fps": info.fps, "width": info.width, "height": info.height, "live": info.live}
    record |= {"frames": count, "detection_count": found}
    record |= {"drawing": str(Path("detections") / drawing.name)} if cfg.draw else {}
    if info.live:
        jsonl = str(Path("detections") / drawing.with_suffix(".jsonl").name)
        return record | {"dropped": frames.dropped, "stopped": stopped, "detections_file": jsonl}
    return record | {"detections_per_frame": per_frame}


class _Terminated(KeyboardInterrupt):
    """SIGTERM while a live stream runs: stops it as Ctrl-C does (the outputs finished)."""


@contextlib.contextmanager
def _sigterm_interrupts() -> Any:
    """SIGTERM raises :class:`_Terminated` in the main thread while the block runs (the handler before is put back
    after); elsewhere than the main thread, nothing changes (Python handles signals there only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise _Terminated()

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def progress_text(count: int, info: Any, dropped: int, seconds: float) -> str:
    """A video's progress line: ``frame 200 of about 1500`` for a file; ``frame 200 (35 dropped), 6.1 fps`` for a
    live source (frames detected per second since it opened)."""
    if not info.live:
        return f"frame {count} of about {info.frames}"
    return f"frame {count} ({dropped} dropped), {count / max(seconds, 1e-9):.1f} fps"


def video_names(videos: list[VideoSource]) -> list[str]:
    """The annotated video's name under detections/ for each input video: its own name as ``.mp4`` (``a.avi`` ->
    ``a.mp4``; a camera ``camera<index>.mp4``; a stream URL its path's last part, else its host: ``rtsp://cam/live/ch1``
    -> ``ch1.mp4``), numbered when taken (``a_1.mp4``)."""
    used: set[str] = set()
    names = []
    for v in videos:
        stem = _stream_stem(v) if stream_source(v) is not None else Path(v).stem
        name, k = f"{stem}.mp4", 1
        while name in used:
            name, k = f"{stem}_{k}.mp4", k + 1
        used.add(name)
        names.append(name)
    return names


def _stream_stem(source: VideoSource) -> str:
    """A camera's or stream URL's file stem: ``camera0``; the URL path's last part without its suffix (else the
    host), characters other than letters, digits, ``-`` and ``_`` made ``_``."""
    s = stream_source(source)
    if isinstance(s, int):
        return f"camera{s}"
    rest = str(s).split("://", 1)[1].split("?", 1)[0].split("#", 1)[0]
    host, _, path = rest.partition("/")
    last = Path(path.rstrip("/")).stem if path.strip("/") else host.rsplit("@", 1)[-1]
    return re.sub(r"[^A-Za-z0-9_-]", "_", last) or "stream"


def split_streams(source: Any) -> tuple[Any, list[VideoSource]]:
    """``source`` without its cameras and stream URLs (None when nothing else is left), and those, in order."""
    items = list(source) if isinstance(source, ListConfig | list | tuple) else [source]
    streams = [s for s in (stream_source(i) for i in items) if s is not None]
    rest = [i for i in items if stream_source(i) is None]
    if not streams:
        return source, []
    return (rest if isinstance(source, ListConfig | list | tuple) else rest[0]) if rest else None, streams


def source_files(source: str | list[str] | ListConfig) -> list[Path]:
    """The image files of ``source`` (see the module docstring), in order. Raises FileNotFoundError naming what
    was not found, ValueError for an empty list."""
    items = list(source) if isinstance(source, ListConfig | list | tuple) else [source]
    if not items:
        raise ValueError("source=[]: no images given")
    files: list[Path] = []
    for item in map(str, items):
        p = Path(item)
        if p.is_file() and p.suffix.lower() in (".txt", ".list"):  # darknet's list of image paths
            lines = [ln.strip() for ln in text_lines(read_text(p))]
            listed = [_listed_path(ln, p.parent) for ln in lines if ln and ln[0] != "#"]
            if not listed:
                raise ValueError(f"source={item}: the list names no image")
            files += listed  # a missing one is reported as unreadable with the others
        elif not p.exists() and glob.has_magic(item):
            matched = sorted(Path(m) for m in glob.glob(item, recursive=True))
            matched = [m for m in matched if m.is_file() and (m.suffix.lower() in IMAGE_SUFFIXES or is_video(m))]
            if not matched:
                raise FileNotFoundError(f"source={item}: no image or video file matches")
            files += matched
        elif is_video(p) and not p.is_dir():  # a video file (a missing one is reported as unreadable with the others)
            files.append(p)
        elif p.is_dir():  # its images and videos, recursively (a folder named like a video too)
            found = images_under(p, (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))
            if not found:
                raise FileNotFoundError(
                    f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) or videos ({', '.join(VIDEO_SUFFIXES)}) under {p}"
                )
            files += found
        else:
            files += list_images(p)
    return files


def _listed_path(line: str, folder: Path) -> Path:
    """A list file's path: absolute as it is; relative from the list's folder, else (darknet's lists, read from
    darknet's folder) from the working directory where only it exists there; a VOC image id (a line of
    ``ImageSets/Main/test.txt``, ``<id>`` or ``<id> <flag>``) as its image in the devkit's ``JPEGImages``."""
    p = Path(line)
    if p.is_absolute():
        return p
    if (folder / p).exists() or p.exists():
        return folder / p if (folder / p).exists() else p
    voc = folder.parent.parent / "JPEGImages" if folder.parent.name == "ImageSets" else None
    if voc is not None and not p.suffix and line.split():
        image_id = line.split()[0]
        exts = (*IMAGE_SUFFIXES, *(e.upper() for e in IMAGE_SUFFIXES))  # .jpg, ..., .JPG, ...
        found = [voc / f"{image_id}{ext}" for ext in exts if (voc / f"{image_id}{ext}").is_file()]
        if found:
            return found[0]
    return folder / p


def input_size(size: Any) -> int | tuple[int, int] | None:
    """``img_size``: one side, ``[height, width]``, or None (the checkpoint's); a value that is none of these is a
    ValueError naming the key."""
    if size is None:
        return None
    sides = list(size) if OmegaConf.is_list(size) or isinstance(size, list | tuple) else size
    try:
        h, w = check_input_size(sides)
    except (TypeError, ValueError):
        raise ValueError(
            f"img_size must be a positive multiple of {STRIDE}, [height, width] of them, or null (the checkpoint's), "
            f"got {size!r}"
        ) from None
    return (h, w) if isinstance(sides, list) else h


def result_writer(
    cfg: DictConfig,
    class_names: list[str],
    out_dir: Path,
    files: Sequence[str | Path] = (),
    eval_nodes: Sequence[int] | torch.Tensor | None = None,
) -> Callable[[list[ImageDetections]], None] | None:
    """The writer of ``results=`` (None without), its class names and category ids checked now, and with a
    ``coco_json`` every image of ``files`` found among its images (by file name: their COCO ids). ``eval_nodes``:
    a WordTree head's ``eval_map`` nodes, whose position in the map gives a box's COCO category (darknet's
    ``validate_detector`` with ``coco9k.map``)."""
    if not cfg.results:
        return None
    key = (lambda f: Path(str(f)).stem) if cfg.results == "voc" else (lambda f: Path(str(f)).name)
    seen = Counter(key(f) for f in files)
    shared = sorted(k for k, n in seen.items() if n > 1)
    if shared:  # darknet's result files name an image by its file name alone: folders are not told apart
        log.warning(
            "results=%s: %d image id%s shared by images of several folders (%s): their detections share the id",
            cfg.results,
            len(shared),
            "" if len(shared) == 1 else "s",
            ", ".join(shared[:5]) + (", ..." if len(shared) > 5 else ""),
        )
    if cfg.results == "voc":
        files = voc_result_files(out_dir, class_names)

        def voc(images: list[ImageDetections]) -> None:
            write_voc_results(out_dir, images, class_names)
            log.info("darknet's VOC result files (comp4): %s/%s ...", out_dir, files[0].name)

        return voc
    image_ids, categories = coco_index(cfg.coco_json) if cfg.coco_json else (None, None)
    if eval_nodes is not None and len(eval_nodes) != len(class_names):  # YOLO9000: the 80 nodes of coco9k.map
        category_ids = mapped_category_ids(len(class_names), [int(n) for n in eval_nodes], categories)
    else:
        category_ids = coco_category_ids(class_names, categories)
    unknown = [str(f) for f in files if image_ids and Path(str(f)).name not in image_ids]
    if unknown:  # it was found when the results were written, after every image was run, and lost the run
        raise ValueError(
            f"coco_json={cfg.coco_json}: {len(unknown)} of the {len(files)} images are not among its images (by file "
            f"name: {', '.join(unknown[:3])}{', ...' if len(unknown) > 3 else ''}): their COCO image ids are unknown"
        )

    def coco(images: list[ImageDetections]) -> None:
        n = write_coco_results(out_dir / "coco_results.json", images, category_ids, image_ids)
        log.info("darknet's COCO results (%d detections): %s", n, out_dir / "coco_results.json")

    return coco


def check_settings(cfg: DictConfig, videos: list[Path] | None = None) -> None:
    """Refuse settings that would fail after the checkpoint is loaded, naming the key (``videos``: the source's
    video files, which ``results=`` cannot score)."""
    input_size(cfg.img_size)
    dtype_from_name(cfg.get("dtype"))  # a name that is no dtype; float16 off CUDA is the Detector's to refuse
    if videos and cfg.results:
        raise ValueError(
            f"results={cfg.results} writes darknet's image result files: the videos of source= "
            f"({', '.join(map(str, videos[:3]))}) have none; run them without results="
        )
    if cfg.results not in (None, "voc", "coco"):
        raise ValueError(f"results must be voc, coco or null, got {cfg.results!r}")
    if cfg.coco_json is not None and not Path(str(cfg.coco_json)).is_file():
        raise FileNotFoundError(f"coco_json not found: {cfg.coco_json}")
    for key, low in (("batch_size", 1), ("num_workers", 0), ("max_frames", 1), ("video_average", 1)):
        v = cfg.get(key)
        if key == "max_frames" and v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key} must be an integer >= {low}{' or null' * (key == 'max_frames')}, got {v!r}")
    port = cfg.get("serve_port")
    if port is not None and (isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535):
        raise ValueError(f"serve_port must be a TCP port (0-65535; 0: any free one) or null, got {port!r}")
    for key, given in (("live_latest", cfg.get("live_latest")), ("eval_warp", cfg.get("eval_warp", True))):
        if not isinstance(given, bool):
            raise ValueError(f"{key} must be true or false, got {given!r}")
    if cfg.get("letterbox") is not None and not isinstance(cfg.get("letterbox"), bool):
        raise ValueError(f"letterbox must be true, false or null (the checkpoint's), got {cfg.get('letterbox')!r}")


def drawing_names(paths: list[str], source: str | None = None) -> dict[str, Path]:
    """The annotated image's path under detections/ for each input: its path relative to the source folder (sub
    folders kept; without one, to the inputs' common folder), as .jpg; a link keeps its own name (not its
    target's: DVC / git-annex targets are hashes); an input whose name would collide with another's (a.jpg and
    a.png) keeps its extension in the name (a_png.jpg); a name still taken is numbered, an input named as its
    drawing keeping it. detections.json records each input's drawing."""
    full = {p: Path(os.path.abspath(p)) for p in paths}  # absolute, links not followed
    if source is not None and Path(source).is_dir():
        src = Path(os.path.abspath(source))
    else:
        src = Path(os.path.commonpath([str(f.parent) for f in full.values()])) if full else Path.cwd()

    def relative(p: str) -> Path:
        return full[p].relative_to(src) if full[p].is_relative_to(src) else Path(full[p].name)

    rel = {p: relative(p) for p in paths}
    taken: dict[Path, int] = {}
    for r in rel.values():
        taken[r.with_suffix(".jpg")] = taken.get(r.with_suffix(".jpg"), 0) + 1
    wanted = {
        p: r.with_suffix(".jpg") if taken[r.with_suffix(".jpg")] == 1 else r.with_name(f"{r.stem}_{r.suffix[1:]}.jpg")
        for p, r in rel.items()
    }
    out: dict[str, Path] = {}
    used: set[Path] = set()
    own_first = sorted(paths, key=lambda p: wanted[p] != rel[p])  # an input named as its drawing keeps the name
    for p in own_first:  # still taken (a_png.jpg is an input too): numbered
        name, k = wanted[p], 1
        while name in used:
            name, k = wanted[p].with_name(f"{wanted[p].stem}_{k}.jpg"), k + 1
        used.add(name)
        out[p] = name
    return out


def detection_line(dets: list[dict[str, object]], limit: int = 10) -> str:
    """``dog 0.82, bicycle 0.64, ...`` (the first ``limit`` detections, highest score first), as darknet prints
    ``dog: 82%`` per box; ``nothing above the threshold`` when empty."""
    if not dets:
        return "nothing above the threshold"
    text = ", ".join(f"{d['class']} {float(d['score']):.2f}" for d in dets[:limit])  # type: ignore[arg-type]
    return text + (f" (+{len(dets) - limit} more)" if len(dets) > limit else "")


def unreadable_list(failed: list[dict[str, str]], limit: int = 20) -> str:
    """One ``  <file>: <reason>`` line per unreadable input (the first ``limit``, then how many more)."""
    lines = [f"  {f['file']}: {f['reason']}" for f in failed[:limit]]
    if len(failed) > limit:
        lines.append(f"  ... and {len(failed) - limit} more (all in detections.json)")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.argv = hydra_flags_first(sys.argv)  # overrides may follow -m
    with hint_unknown_overrides("detect.yaml"):  # a typo'd key: "did you mean ...?" under Hydra's message
        main()
