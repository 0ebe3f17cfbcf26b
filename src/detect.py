"""Run a trained detector on an image or a folder: `python src/detect.py ckpt_path=<ckpt> source=<path>`.

Writes annotated images into <run>/detections/ and every detection into <run>/detections.json (boxes xyxy in
original image pixels, class name, score).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig
from rich.progress import track

from yolo9000.data.image_io import ImageDecodeError, read_image
from yolo9000.data.transforms import DetectionTransform
from yolo9000.runner import load_module, setup_environment
from yolo9000.viz import draw_detections, save_image

log = logging.getLogger("yolo9000.detect")
setup_environment()

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif"}


def list_images(source: Path) -> list[Path]:
    """An image file, or the images of a folder (sorted, recursive)."""
    if source.is_file():
        return [source]
    if source.is_dir():
        files = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {source}")
        return files
    raise FileNotFoundError(f"source not found: {source}")


@hydra.main(version_base="1.3", config_path="../conf", config_name="detect.yaml")
def main(cfg: DictConfig) -> None:
    out_dir = Path(cfg.paths.output_dir)
    device = torch.device(cfg.device)
    module = load_module(cfg.ckpt_path).to(device)
    module.hparams.conf_thresh, module.hparams.nms_thresh = float(cfg.conf_thresh), float(cfg.nms_thresh)
    size = int(cfg.img_size or module.model_config.get("eval_size", 416))
    if size % 32:
        raise ValueError(f"img_size must be a multiple of 32, got {size}")
    transform = DetectionTransform(train=False, augment={"letterbox": bool(cfg.letterbox)})
    files = list_images(Path(cfg.source))
    names = module.class_names
    results, failed = [], []
    draw_dir = out_dir / "detections"
    for start in track(range(0, len(files), cfg.batch_size), description="detect"):
        chunk, images, params, sizes, originals = files[start : start + cfg.batch_size], [], [], [], []
        for path in chunk:
            try:
                img = read_image(path)
            except ImageDecodeError as e:
                log.warning("skipped %s: %s", path, e)
                failed.append({"file": str(path), "reason": str(e)})
                continue
            empty = np.zeros((0, 4), np.float32)
            t = transform(img, empty, np.zeros(0, np.int64), np.zeros(0, bool), size)
            images.append(torch.from_numpy(t.image).permute(2, 0, 1))
            params.append(torch.from_numpy(t.params))
            sizes.append(img.shape[:2])
            originals.append((path, img))
        if not images:
            continue
        batch = torch.stack(images).to(device).float() / 255
        with torch.no_grad():
            raw = module(batch)
        preds = module.predict_raw(raw, (size, size), torch.stack(params).to(device), torch.tensor(sizes))
        for (path, img), pred in zip(originals, preds, strict=True):
            dets = [
                {"box": [round(float(v), 2) for v in b], "class": names[int(c)], "score": round(float(s), 4)}
                for b, c, s in zip(
                    pred["boxes"].tolist(), pred["labels"].tolist(), pred["scores"].tolist(), strict=True
                )
            ]
            results.append({"file": str(path), "width": img.shape[1], "height": img.shape[0], "detections": dets})
            if cfg.draw:
                drawn = draw_detections(
                    torch.from_numpy(img).permute(2, 0, 1),
                    pred["boxes"].cpu(),
                    pred["labels"].cpu(),
                    pred["scores"].cpu(),
                    names,
                )
                save_image(drawn, draw_dir / f"{path.stem}.jpg")
    (out_dir / "detections.json").write_text(json.dumps({"images": results, "failed": failed}, indent=2))
    n = sum(len(r["detections"]) for r in results)
    log.info("%d detections in %d images (%d unreadable) -> %s", n, len(results), len(failed), out_dir)


if __name__ == "__main__":
    main()
