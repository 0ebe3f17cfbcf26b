"""Run a trained detector on images and videos: `python src/detect.py ckpt_path=<ckpt> source=<path>`.

``source``: an image file, a video file (``.mp4``, ``.avi``, ``.mov``, ... :data:`yolo9000.data.video.VIDEO_SUFFIXES`),
a folder (its images and videos, recursively, hidden files left out), a glob pattern (in quotes:
``"source='photos/*.jpg'"``; images and videos), a ``.txt`` list of image paths (darknet's ``valid`` lists;
relative paths from the list's folder, else from the working directory), or a list of any of these
(``source=[a.jpg,b/,clip.mp4]``).

A video runs frame by frame (darknet's ``detector demo`` on a file): the annotated video goes to
<run>/detections/<name>.mp4 at the video's frame rate, and detections.json's ``videos`` holds each frame's
detections with its index and time.

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
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

from yolo9000.api import DETECT_CONF, Detector, check_input_size
from yolo9000.checkpoints import module_settings
from yolo9000.data.image_io import IMAGE_SUFFIXES, images_under, read_image
from yolo9000.data.predict import list_images
from yolo9000.data.video import VIDEO_SUFFIXES, VideoError, VideoFrames, VideoWriter, is_video
from yolo9000.environment import hydra_flags_first, log_to_job_log, setup_environment
from yolo9000.models import STRIDE
from yolo9000.submission import (
    VALID_CONF,
    ImageDetections,
    coco_category_ids,
    coco_index,
    voc_result_files,
    write_coco_results,
    write_voc_results,
)
from yolo9000.viz import draw_detections, save_image

log = logging.getLogger("yolo9000.detect")
PROGRESS_FRAMES = 100  # a video's progress line every this many frames
setup_environment()


@hydra.main(version_base="1.3", config_path="../conf", config_name="detect.yaml")
def main(cfg: DictConfig) -> None:
    log_to_job_log()
    out_dir = Path(cfg.paths.output_dir)
    try:  # a user's mistake: its reason alone, before the checkpoint is loaded
        files = source_files(cfg.source)
        videos = [f for f in files if is_video(f)]
        files = [f for f in files if not is_video(f)]
        check_settings(cfg, videos)
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        raise SystemExit(f"Error: {e}") from None
    conf = cfg.conf_thresh if cfg.conf_thresh is not None else VALID_CONF if cfg.results else DETECT_CONF
    detector = Detector.from_checkpoint(
        cfg.ckpt_path,
        device=str(cfg.device),
        **module_settings(cfg, "nms_thresh", "pre_nms_topk", "tree_decode", "tree_thresh", "eval_map"),
        conf_thresh=float(conf),
    )
    try:  # the result files' names and ids, before the images are run
        writer = result_writer(cfg, detector.class_names, out_dir / "results")
    except (FileNotFoundError, ValueError) as e:
        log.error("%s", e)
        raise SystemExit(f"Error: {e}") from None
    size = input_size(cfg.img_size)
    hw = detector.input_hw if size is None else check_input_size(size)
    log.info(
        "%d images%s, input %d x %d (height x width%s), %s, from %s",
        len(files),
        f" and {len(videos)} videos" if videos else "",
        *hw,
        ", letterboxed" if cfg.letterbox else ", stretched",
        detector,
        cfg.ckpt_path,
    )
    results = detector.predict(
        files,
        size=hw,
        letterbox=bool(cfg.letterbox),
        batch_size=int(cfg.batch_size),
        num_workers=int(cfg.num_workers),
        skip_unreadable=True,
    )
    failed = [{"file": r.path, "reason": r.error} for r in results if r.error is not None]
    video_records = []
    for name, video in zip(video_names(videos), videos, strict=True):
        try:
            video_records.append(detect_video(detector, video, hw, cfg, out_dir / "detections" / name))
        except VideoError as e:
            failed.append({"file": str(video), "reason": str(e).removeprefix(f"{video}: ")})
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
    run = {"checkpoint": str(cfg.ckpt_path), "input_hw": list(hw), "letterbox": bool(cfg.letterbox)}
    found = {"images": records, **({"videos": video_records} if videos else {}), "failed": failed}
    (out_dir / "detections.json").write_text(json.dumps({**run, **found}, indent=2))
    if not records and not video_records:
        msg = f"no input could be read: none of the {len(failed)} file(s) of {cfg.source}:\n"
        msg += unreadable_list(failed)
        log.error(msg)
        sys.exit(f"detect.py: {msg}")  # exit status 1
    if failed:
        total = len(files) + len(videos)
        log.warning("%d of %d inputs unreadable (skipped):\n%s", len(failed), total, unreadable_list(failed))
    if writer is not None:
        writer([r for r in results if r.error is None])
    n = sum(len(r["detections"]) for r in records)
    frames = f" and {sum(v['frames'] for v in video_records)} video frames" if videos else ""
    log.info("%d detections in %d images%s (%d unreadable) -> %s", n, len(records), frames, len(failed), out_dir)


def detect_video(detector: Detector, video: Path, hw: tuple[int, int], cfg: DictConfig, drawing: Path) -> dict:
    """Every frame of ``video`` through the detector (:meth:`Detector.predict_video`), the annotated frames written
    to ``drawing`` (``cfg.draw``) at the video's frame rate; progress logged every ``PROGRESS_FRAMES`` frames.
    Returns its detections.json record: file, fps, width, height, frames, drawing, and per frame its index, time
    (seconds) and detections. Raises VideoError naming the file when it cannot be read."""
    frames = VideoFrames(video, int(cfg.batch_size))
    info = frames.info
    log.info("%s: %d x %d at %.2f fps, about %d frames", video, info.width, info.height, info.fps, info.frames)
    per_frame = []
    with contextlib.ExitStack() as stack:
        out = stack.enter_context(VideoWriter(drawing, info.fps, info.width, info.height)) if cfg.draw else None
        for frame, det in detector.predict_video(frames, size=hw, letterbox=bool(cfg.letterbox)):
            per_frame.append(
                {"frame": det.index, "time": round(det.index / info.fps, 4), "detections": det.to_dict()["detections"]}
            )
            if out is not None:
                img = torch.from_numpy(frame).permute(2, 0, 1)
                drawn = draw_detections(img, det.boxes, det.labels, det.scores, detector.class_names)
                out.write(drawn.permute(1, 2, 0).numpy())
            if (det.index + 1) % PROGRESS_FRAMES == 0:
                log.info("%s: frame %d of about %d", video, det.index + 1, info.frames)
    n = sum(len(f["detections"]) for f in per_frame)
    log.info("%s: %d detections in %d frames%s", video, n, len(per_frame), f" -> {drawing}" if cfg.draw else "")
    record = {"file": str(video), "fps": info.fps, "width": info.width, "height": info.height}
    record |= {"frames": len(per_frame), **({"drawing": str(Path("detections") / drawing.name)} if cfg.draw else {})}
    return record | {"detections_per_frame": per_frame}


def video_names(videos: list[Path]) -> list[str]:
    """The annotated video's name under detections/ for each input video: its own name as ``.mp4`` (``a.avi`` ->
    ``a.mp4``), numbered when taken (``a_1.mp4``)."""
    used: set[str] = set()
    names = []
    for v in videos:
        name, k = f"{v.stem}.mp4", 1
        while name in used:
            name, k = f"{v.stem}_{k}.mp4", k + 1
        used.add(name)
        names.append(name)
    return names


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
            lines = [ln.strip() for ln in p.read_text(encoding="utf-8-sig").splitlines()]
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
    darknet's folder) from the working directory where only it exists there."""
    p = Path(line)
    if p.is_absolute():
        return p
    return folder / p if (folder / p).exists() or not p.exists() else p


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
    cfg: DictConfig, class_names: list[str], out_dir: Path
) -> Callable[[list[ImageDetections]], None] | None:
    """The writer of ``results=`` (None without), its class names and category ids checked now."""
    if not cfg.results:
        return None
    if cfg.results == "voc":
        files = voc_result_files(out_dir, class_names)

        def voc(images: list[ImageDetections]) -> None:
            write_voc_results(out_dir, images, class_names)
            log.info("darknet's VOC result files (comp4): %s/%s ...", out_dir, files[0].name)

        return voc
    image_ids, categories = coco_index(cfg.coco_json) if cfg.coco_json else (None, None)
    category_ids = coco_category_ids(class_names, categories)

    def coco(images: list[ImageDetections]) -> None:
        n = write_coco_results(out_dir / "coco_results.json", images, category_ids, image_ids)
        log.info("darknet's COCO results (%d detections): %s", n, out_dir / "coco_results.json")

    return coco


def check_settings(cfg: DictConfig, videos: list[Path] | None = None) -> None:
    """Refuse settings that would fail after the checkpoint is loaded, naming the key (``videos``: the source's
    video files, which ``results=`` cannot score)."""
    input_size(cfg.img_size)
    if videos and cfg.results:
        raise ValueError(
            f"results={cfg.results} writes darknet's image result files: the videos of source= "
            f"({', '.join(map(str, videos[:3]))}) have none; run them without results="
        )
    if cfg.results not in (None, "voc", "coco"):
        raise ValueError(f"results must be voc, coco or null, got {cfg.results!r}")
    if cfg.coco_json is not None and not Path(str(cfg.coco_json)).is_file():
        raise FileNotFoundError(f"coco_json not found: {cfg.coco_json}")
    for key, low in (("batch_size", 1), ("num_workers", 0)):
        v = cfg.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise ValueError(f"{key} must be an integer >= {low}, got {v!r}")


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
    main()
