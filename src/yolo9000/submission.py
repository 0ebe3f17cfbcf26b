"""darknet's ``detector valid`` result files, the formats the evaluation servers take.

* VOC (``validate_detector`` with ``print_detector_detections``): one ``<prefix><class>.txt`` per class (every
  class gets its file, empty when it has no detection), a line ``<image id> <score> <xmin> <ymin> <xmax> <ymax>``
  per detection with ``%f`` numbers; the image id is the file name up to its first dot (darknet's ``basecfg``),
  coordinates 1-based (darknet adds 1 and clips ``xmin, ymin`` to 1 and ``xmax, ymax`` to the image's width and
  height). The VOC devkit's and server's ``comp4`` format (``reval_voc.py`` reads it).
* COCO (``print_cocos``): one JSON list of ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, boxes
  in 0-based pixels clipped to the image; what ``pycocotools``' ``loadRes`` and the COCO server take. darknet's
  image id is the number after the file name's last ``_`` (``COCO_val2014_000000000042.jpg``: 42; a 2017 name
  ``000000000042.jpg``: 42) and its categories are the 80 COCO ids in ``coco.names`` order (:data:`COCO_IDS`);
  an annotations or ``image_info`` JSON gives both by file name and class name instead (:func:`coco_index`).

Detections come in as original-image pixels, xyxy, 0-based (:class:`yolo9000.Detections`). No Lightning, no Hydra.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

import torch

VALID_CONF = 0.005  # darknet's `detector valid` threshold (validate_detector)
# darknet's coco_ids (detector.c): the category id of each class of coco.names, in its order
COCO_IDS = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83), *range(84, 91),
)  # fmt: skip


class ImageDetections(Protocol):
    """What the writers read of one image's detections (:class:`yolo9000.Detections` is one): ``path`` (its file),
    ``boxes`` (N, 4) xyxy 0-based original pixels, ``scores`` (N,), ``labels`` (N,) class indices,
    ``image_size`` (height, width)."""

    path: str | None
    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    image_size: tuple[int, int] | None


def _size(im: ImageDetections) -> tuple[int, int]:
    if im.path is None or im.image_size is None:
        raise ValueError("result files name images by their file: in-memory or unreadable inputs have none")
    return im.image_size


def voc_image_id(path: str | Path) -> str:
    """darknet's ``basecfg``: the file name up to its first dot (``2008_000123.jpg`` -> ``2008_000123``)."""
    return Path(path).name.split(".", 1)[0]


def voc_result_files(out_dir: str | Path, class_names: Sequence[str], prefix: str = "comp4_det_test_") -> list[Path]:
    """``<out_dir>/<prefix><class>.txt`` of every class, in class order; a class name that cannot name a file (empty,
    a ``/``) is refused, naming it, and so is a name several classes share (a WordTree head's 9418 nodes hold 8756
    names): the later class's file was written over the earlier's, its detections silently lost."""
    for name in class_names:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"class name {name!r} cannot name a result file ({prefix}<class>.txt)")
    seen: dict[str, list[int]] = {}
    for i, name in enumerate(class_names):
        seen.setdefault(name, []).append(i)
    shared = {n: ix for n, ix in seen.items() if len(ix) > 1}
    if shared:
        first = ", ".join(f"{n!r} (classes {ix})" for n, ix in list(shared.items())[:3])
        raise ValueError(
            f"{len(shared)} class name{'s' if len(shared) > 1 else ''} shared by several classes ({first}"
            f"{', ...' if len(shared) > 3 else ''}): their result files ({prefix}<class>.txt) would overwrite each "
            "other; VOC result files need one name a class"
        )
    return [Path(out_dir) / f"{prefix}{name}.txt" for name in class_names]


def write_voc_results(
    out_dir: str | Path, images: Iterable[ImageDetections], class_names: Sequence[str], prefix: str = "comp4_det_test_"
) -> list[Path]:
    """Write ``<out_dir>/<prefix><class>.txt`` for every class (darknet's ``detector valid`` on VOC); returns the
    files in class order (:func:`voc_result_files`)."""
    files = voc_result_files(out_dir, class_names, prefix)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    lines: list[list[str]] = [[] for _ in class_names]
    for im in images:
        h, w = _size(im)
        image_id = voc_image_id(str(im.path))
        b = im.boxes.double().reshape(-1, 4) + 1.0  # darknet: 1-based, then clipped
        lo = b[:, :2].clamp_min(1.0)
        hi = torch.minimum(b[:, 2:], torch.tensor([float(w), float(h)], dtype=torch.float64))
        rows = torch.cat([im.scores.double().reshape(-1, 1), lo, hi], 1).tolist()  # (N, 5) score, box
        for c, (score, x0, y0, x1, y1) in zip(im.labels.tolist(), rows, strict=True):
            lines[int(c)].append(f"{image_id} {score:f} {x0:f} {y0:f} {x1:f} {y1:f}\n")
    for f, rows in zip(files, lines, strict=True):
        f.write_text("".join(rows))
    return files


def coco_image_id(path: str | Path) -> int:
    """darknet's ``get_coco_image_id``: the number after the file name's last ``_`` (else the whole name's leading
    number). Raises ValueError, naming the file, when there is none."""
    name = Path(path).name
    m = re.match(r"\d+", name.rsplit("_", 1)[-1])
    if m is None:
        raise ValueError(f"{path}: no COCO image id in the file name (give the annotations: coco_json=...)")
    return int(m.group())


def coco_index(json_path: str | Path) -> tuple[dict[str, int], dict[str, int]]:
    """A COCO annotations or ``image_info`` JSON's image ids by file name (its base name) and category ids by
    name."""
    data = json.loads(Path(json_path).read_text())
    images = {Path(str(im["file_name"])).name: int(im["id"]) for im in data.get("images", [])}
    categories = {str(c["name"]): int(c["id"]) for c in data.get("categories", [])}
    return images, categories


def coco_category_ids(class_names: Sequence[str], categories: Mapping[str, int] | None = None) -> list[int]:
    """The category id of each class: by name from ``categories`` (a JSON's, :func:`coco_index`), else darknet's
    :data:`COCO_IDS` for a head of COCO's 80 classes. Raises ValueError naming the classes it cannot place."""
    if categories:
        missing = [n for n in class_names if n not in categories]
        if missing:
            raise ValueError(f"classes not among the JSON's categories: {missing[:10]}")
        return [int(categories[n]) for n in class_names]
    if len(class_names) != len(COCO_IDS):
        raise ValueError(
            f"{len(class_names)} classes: darknet's COCO category ids are for coco.names' 80; give the annotations "
            "(coco_json=...) to take the ids by class name"
        )
    return list(COCO_IDS)


def mapped_category_ids(
    num_classes: int, eval_nodes: Sequence[int], categories: Mapping[str, int] | None = None
) -> list[int]:
    """The category id of each class of a WordTree head whose boxes are named through an ``eval_map`` (darknet's
    ``validate_detector`` with a map, YOLO9000 on COCO through ``coco9k.map``): the map's j-th node is coco.names'
    j-th class, so its id is ``COCO_IDS[j]``, or with a JSON's ``categories`` its j-th in category-id order;
    -1 for the nodes the map leaves out (never a box's label). Raises ValueError when the map and the categories
    differ in length."""
    ids = sorted(set(categories.values())) if categories else list(COCO_IDS)
    if len(ids) != len(eval_nodes):
        source = "the JSON's categories" if categories else "darknet's COCO category ids (coco.names' 80)"
        raise ValueError(
            f"eval_map has {len(eval_nodes)} nodes and {source} are {len(ids)}: results=coco names a WordTree box by "
            "its position in the map (coco9k.map's order is coco.names'): eval_map=data/darknet/wordtree/coco9k.map"
        )
    out = [-1] * num_classes
    for j, node in enumerate(eval_nodes):
        out[int(node)] = int(ids[j])
    return out


def coco_results(
    images: Iterable[ImageDetections],
    category_ids: Sequence[int],
    image_ids: Mapping[str, int] | None = None,
) -> list[dict[str, object]]:
    """The COCO results list (darknet's ``print_cocos``): image ids from ``image_ids`` by file name, else
    :func:`coco_image_id`; boxes ``[x, y, w, h]`` clipped to the image."""
    out: list[dict[str, object]] = []
    for im in images:
        h, w = _size(im)
        name = Path(str(im.path)).name
        if image_ids:
            if name not in image_ids:
                raise ValueError(f"{im.path}: not among the JSON's images")
            image_id = image_ids[name]
        else:
            image_id = coco_image_id(str(im.path))
        limit = torch.tensor([float(w), float(h)] * 2, dtype=torch.float64)
        b = torch.minimum(im.boxes.double().reshape(-1, 4).clamp_min(0.0), limit)
        xywh = torch.cat([b[:, :2], b[:, 2:] - b[:, :2]], 1).tolist()
        for c, box, score in zip(im.labels.tolist(), xywh, im.scores.tolist(), strict=True):
            out.append({"image_id": image_id, "category_id": int(category_ids[int(c)]), "bbox": box, "score": score})
    return out


def write_coco_results(
    path: str | Path,
    images: Iterable[ImageDetections],
    category_ids: Sequence[int],
    image_ids: Mapping[str, int] | None = None,
) -> int:
    """Write :func:`coco_results` as JSON at ``path``; returns the number of detections written."""
    rows = coco_results(images, category_ids, image_ids)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(rows))
    return len(rows)
