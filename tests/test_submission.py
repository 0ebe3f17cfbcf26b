"""darknet's `detector valid` result files (:mod:`yolo9000.submission`): VOC's comp4 lines and COCO's results JSON,
checked against darknet's print_detector_detections / print_cocos rules worked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from yolo9000.api import Detections
from yolo9000.submission import (
    COCO_IDS,
    coco_category_ids,
    coco_image_id,
    coco_index,
    coco_results,
    voc_image_id,
    write_voc_results,
)


def _image(
    path: str, boxes: list[list[float]], scores: list[float], labels: list[int], hw: tuple[int, int]
) -> Detections:
    labels_t = torch.tensor(labels, dtype=torch.long)
    return Detections(torch.tensor(boxes).reshape(-1, 4), torch.tensor(scores), labels_t, [], 0, path, hw)


def test_voc_lines_are_one_based_clipped_and_one_file_per_class(tmp_path: Path) -> None:
    """A 500 x 375 image: box (10.5, 20, 499.5, 374.8) of class 1 becomes 11.5 21 500 375 (1-based; the right and
    bottom edges clipped to the width and height, as darknet does after adding 1); (0, 0, 3, 4) of class 0 becomes
    1 1 4 5. Every class has its file, empty without detections; the id is the name up to its first dot."""
    images = [
        _image("voc/2007_000027.jpg", [[10.5, 20, 499.5, 374.8], [0, 0, 3, 4]], [0.9, 0.25], [1, 0], (375, 500)),
        _image("voc/x.y.png", [], [], [], (10, 10)),
    ]
    files = write_voc_results(tmp_path / "results", images, ["aeroplane", "bicycle", "bird"])
    assert [f.name for f in files] == [f"comp4_det_test_{n}.txt" for n in ("aeroplane", "bicycle", "bird")]
    assert files[1].read_text() == "2007_000027 0.900000 11.500000 21.000000 500.000000 375.000000\n"
    assert files[0].read_text() == "2007_000027 0.250000 1.000000 1.000000 4.000000 5.000000\n"
    assert files[2].read_text() == ""
    assert voc_image_id("a/b/x.y.png") == "x"  # darknet's basecfg: up to the first dot
    with pytest.raises(ValueError, match="class name 'a/b' cannot name a result file"):
        write_voc_results(tmp_path, [], ["a/b"])


def test_coco_results_ids_boxes_and_categories(tmp_path: Path) -> None:
    """darknet's image ids (the number after the last '_', or a 2017 name's number), boxes as [x, y, w, h] clipped
    to the image, categories from coco.names' order (class 11, 'stop sign', is id 13; class 79 is 90); with a JSON
    both come from it by file name and class name."""
    assert coco_image_id("val2014/COCO_val2014_000000000042.jpg") == 42
    assert coco_image_id("/data/val2017/000000000139.jpg") == 139
    with pytest.raises(ValueError, match="no COCO image id in the file name"):
        coco_image_id("photo.jpg")
    assert len(COCO_IDS) == 80 and COCO_IDS[11] == 13 and COCO_IDS[79] == 90 and COCO_IDS[24] == 27  # backpack
    ids = coco_category_ids([f"c{i}" for i in range(80)])
    im = _image("COCO_val2014_000000000042.jpg", [[-2.0, 5.0, 30.0, 700.0]], [0.5], [11], (480, 640))
    (row,) = coco_results([im], ids)
    assert row == {"image_id": 42, "category_id": 13, "bbox": [0.0, 5.0, 30.0, 475.0], "score": 0.5}
    ann = tmp_path / "image_info.json"
    ann.write_text(
        json.dumps({"images": [{"id": 7, "file_name": "val/a.jpg"}], "categories": [{"id": 3, "name": "car"}]})
    )
    image_ids, categories = coco_index(ann)
    assert image_ids == {"a.jpg": 7} and categories == {"car": 3}
    (row,) = coco_results([_image("x/a.jpg", [[1, 2, 3, 4]], [0.75], [0], (10, 10))], [3], image_ids)
    assert row == {"image_id": 7, "category_id": 3, "bbox": [1.0, 2.0, 2.0, 2.0], "score": 0.75}
    with pytest.raises(ValueError, match="not among the JSON's images"):
        coco_results([_image("b.jpg", [[1, 2, 3, 4]], [0.75], [0], (10, 10))], [3], image_ids)
    with pytest.raises(ValueError, match=r"classes not among the JSON's categories: \['bus'\]"):
        coco_category_ids(["car", "bus"], categories)
    with pytest.raises(ValueError, match="3 classes: darknet's COCO category ids are for coco.names' 80"):
        coco_category_ids(["a", "b", "c"])


def test_voc_result_files_refuse_a_name_several_classes_share(tmp_path: Path) -> None:
    """Two classes of one name (a WordTree head: 9418 nodes, 8756 names; two 'sheep') wrote one file twice, the
    second class's lines over the first's: its detections were lost without a word. Refused, naming them."""
    images = [_image("voc/000001.jpg", [[0, 0, 3, 4], [1, 1, 5, 5]], [0.9, 0.8], [0, 2], (10, 10))]
    with pytest.raises(ValueError, match=r"1 class name shared by several classes \('sheep' \(classes \[0, 2\]\)\)"):
        write_voc_results(tmp_path / "results", images, ["sheep", "dog", "sheep"])
    assert not (tmp_path / "results").exists()
