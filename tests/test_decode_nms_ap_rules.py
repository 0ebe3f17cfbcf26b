"""Cases the decode / NMS / evaluation tests left open (found by mutation testing), each against a hand-computed
fact: darknet's strict thresholds (``prob > thresh``, ``box_iou > thresh``), its float letterbox offset in
``correct_region_boxes``, the VOC devkit's precision envelope, stable score order and first-maximum matching, and
the per-axis scales of a truncated letterbox."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import yolo9000.postprocess as postprocess_module
from yolo9000.data.resize import boxes_to_original, letterbox_geometry
from yolo9000.data.transforms import DetectionTransform
from yolo9000.metrics import ap_from_pr, voc_ap
from yolo9000.postprocess import NmsMethod, class_nms, postprocess, region_detections_darknet, tree_candidates
from yolo9000.region_decode import correct_region_boxes
from yolo9000.wordtree import WordTree

FIX = Path(__file__).parent / "fixtures"


# ---------------------------------------------------------------- strict thresholds (darknet: prob > thresh)
def test_a_score_equal_to_the_threshold_is_not_a_candidate() -> None:
    """All-zero logits: objectness sigmoid(0) = .5 and two classes at .5 each, so every (box, class) pair scores
    .25 exactly. darknet keeps ``prob > thresh``: at thresh .25 nothing passes (the objectness .5 still does), just
    below it every pair passes."""
    raw = torch.zeros(1, 2 * 7, 2, 3)  # 2 anchors, 2 classes, 2 x 3 grid: 12 boxes, 24 pairs
    anchors = torch.tensor([[1.0, 1.0], [2.0, 2.0]])
    at = region_detections_darknet(raw, anchors=anchors, num_classes=2, thresh=0.25)
    assert not at["prob"].any() and bool((at["objectness"] == 0.5).all())
    below = region_detections_darknet(raw, anchors=anchors, num_classes=2, thresh=0.2499)
    assert bool((below["prob"] == 0.25).all())
    none = postprocess(raw, anchors, (64, 96), conf_thresh=0.25, nms_thresh=1.0, max_det=None, pre_nms_topk=None)
    assert len(none[0]["scores"]) == 0
    every = postprocess(raw, anchors, (64, 96), conf_thresh=0.2499, nms_thresh=1.0, max_det=None, pre_nms_topk=None)
    assert len(every[0]["scores"]) == 24 and bool((every[0]["scores"] == 0.25).all())


def test_a_mapped_tree_score_equal_to_the_threshold_is_not_a_candidate() -> None:
    """small.tree with all-zero logits: P(animal) = .5 (two roots), objectness .5, so the mapped node scores .25
    exactly: not above a threshold of .25, in darknet's decode and in the fast path."""
    tree = WordTree.from_file(FIX / "small.tree")
    raw = torch.zeros(1, 5 + tree.n, 1, 2)  # 1 anchor, 2 boxes
    kw = {"anchors": [1.0, 1.0], "num_classes": tree.n, "tree": tree, "map": [0]}
    assert not region_detections_darknet(raw, **kw, thresh=0.25)["prob"].any()
    assert bool((region_detections_darknet(raw, **kw, thresh=0.2499)["prob"] == 0.25).all())
    obj, logits = torch.full((1, 1, 1, 2), 0.5), torch.zeros(1, 1, 1, 2, tree.n)
    assert len(tree_candidates(obj, logits, tree, 0.25, 0.5, None, tree_map=torch.tensor([0])).score) == 0
    assert len(tree_candidates(obj, logits, tree, 0.2499, 0.5, None, tree_map=torch.tensor([0])).score) == 2


# ---------------------------------------------------------------- pre_nms_topk on the threshold-and-sort path
def test_pre_nms_topk_caps_the_sorted_candidates() -> None:
    """Few entries per row (not more than 4 x pre_nms_topk), so the candidates are thresholded and sorted, not
    top-k'ed: row 0 has 40 above the threshold and keeps its 30 best; row 1 has 10 and keeps them all."""
    scores = torch.zeros(2, 60)
    scores[0, :40] = torch.arange(1, 41) / 100  # .01 .. .40, the best 30 are .11 .. .40
    scores[1, 20:30] = torch.arange(1, 11) / 10
    assert scores.numel() <= postprocess_module._SORTED * 30 * 2  # the sorted path
    image, index, s = postprocess_module.select_candidates(scores, 0.0, 30)
    assert image.tolist() == [0] * 30 + [1] * 10
    assert index[:30].tolist() == list(range(39, 9, -1)) and index[30:].tolist() == list(range(29, 19, -1))
    torch.testing.assert_close(s, scores[image, index])


# ---------------------------------------------------------------- NMS: widening past 2 * max_det, IoU == threshold
@pytest.mark.parametrize("method", ["per_image", "rounds", "matrix"])
def test_nms_looks_past_the_first_candidates_when_they_suppress_each_other(method: NmsMethod) -> None:
    """Ten copies of one box score highest, then five disjoint boxes: with max_det 3 the first 2 * max_det
    candidates keep one box, so NMS must look further: kept are the first copy and the next two disjoint boxes."""
    boxes = torch.cat(
        [torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 10), torch.tensor([[20.0 * k, 50, 20 * k + 10, 60] for k in range(5)])]
    )
    scores = torch.linspace(1.0, 0.1, 15)
    label, image = torch.zeros(15, dtype=torch.long), torch.zeros(15, dtype=torch.long)
    got = class_nms(boxes, scores, image, label, 0.45, 1, 3, method=method)
    assert got[0].tolist() == [0, 10, 11]
    # two images (rounds: one NMS call a round over both), the second a copy of the first
    image2 = torch.cat([image, image + 1])
    got2 = class_nms(boxes.repeat(2, 1), scores.repeat(2), image2, label.repeat(2), 0.45, 2, 3, method=method)
    assert [g.tolist() for g in got2] == [[0, 10, 11], [15, 25, 26]]


@pytest.mark.parametrize("method", ["per_image", "rounds", "matrix"])
def test_nms_keeps_a_box_whose_iou_equals_the_threshold(method: NmsMethod) -> None:
    """darknet's do_nms_sort suppresses at ``box_iou > thresh`` (torchvision alike): (0,0,10,10) and (0,0,10,5)
    overlap by 50 / 100 = .5 exactly, so at threshold .5 both stay, at .49 the second goes."""
    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 5.0]])
    scores, zeros = torch.tensor([0.9, 0.8]), torch.zeros(2, dtype=torch.long)
    assert class_nms(boxes, scores, zeros, zeros, 0.5, 1, 10, method=method)[0].tolist() == [0, 1]
    assert class_nms(boxes, scores, zeros, zeros, 0.49, 1, 10, method=method)[0].tolist() == [0]


# ---------------------------------------------------------------- letterbox geometry back to the image
def test_correct_region_boxes_offsets_by_half_an_odd_padding() -> None:
    """darknet's correct_region_boxes offsets by ``(net_h - new_h) / 2. / net_h`` in floats: 1000 x 335 in 416:
    new_h = 335 * 416 // 1000 = 139, padding 277 (odd): offset 138.5 px. The net's centre is then the image's
    centre exactly (y = (208 - 138.5) / 139 = .5); y = .25 gives (104 - 138.5) / 139."""
    box = torch.tensor([[[0.5, 0.5, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]]])
    out = correct_region_boxes(box, (416, 416), (335, 1000))[0]
    torch.testing.assert_close(out[0], torch.tensor([0.5, 0.5, 0.5, 0.5 * 416 / 139]))
    torch.testing.assert_close(out[1, :2], torch.tensor([0.25, -34.5 / 139]))


def test_letterbox_eval_scales_each_axis_by_its_own_truncated_size() -> None:
    """517 x 333 letterboxed in 416: 416 x 267 pixels at (0, 74) (267 = 333 * 416 // 517, truncated), so the scales
    differ: x 416 / 517, y 267 / 333. A box's corners map back through them exactly."""
    assert letterbox_geometry(517, 333, 416) == (416, 267, 0, 74)
    t = DetectionTransform(train=False, augment={"letterbox": True})
    params = t.eval_params(517, 333, 416)
    np.testing.assert_allclose(params, [416 / 517, 267 / 333, 0, 74], rtol=1e-6)
    # the image's bottom-right corner lands at (416, 74 + 267) and comes back at (517, 333)
    back = boxes_to_original(torch.tensor([[[0.0, 74.0, 416.0, 341.0]]]), torch.from_numpy(params)[None])
    torch.testing.assert_close(back[0, 0], torch.tensor([0.0, 0.0, 517.0, 333.0]))


# ---------------------------------------------------------------- VOC devkit AP
def test_voc_area_ap_takes_the_precision_envelope() -> None:
    """TP, FP, TP, TP with 4 positives: precision 1, 1/2, 2/3, 3/4 at recall 1/4, 1/4, 1/2, 3/4. The devkit's
    envelope (highest precision at any recall >= r) is 1, .75, .75 at the three recall steps: AP = (1 + .75 + .75)
    / 4 = .625 (the raw precision at each step would give (1 + 2/3 + 3/4) / 4)."""
    prec, rec = np.array([1, 1 / 2, 2 / 3, 3 / 4]), np.array([1, 1, 2, 3]) / 4
    assert ap_from_pr(prec, rec) == pytest.approx(0.625, abs=1e-12)
    gt = torch.tensor([[20.0 * k, 0, 20 * k + 10, 10] for k in range(4)])
    det = {
        "boxes": torch.stack([gt[0], gt[0] + 100, gt[1], gt[2]]),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.6]),
        "labels": torch.zeros(4, dtype=torch.long),
    }
    res = voc_ap([det], [{"boxes": gt, "labels": torch.zeros(4, dtype=torch.long)}], num_classes=1)
    np.testing.assert_allclose(res.precision[0], prec)
    assert res.ap[0] == pytest.approx(0.625, abs=1e-12)


def test_voc_equal_scores_keep_their_input_order() -> None:
    """The devkit sorts with MATLAB's stable sort: detections of equal score stay in input order. 10 TPs at .9,
    then 30 at .5 in the order 15 FPs, 15 TPs (25 positives): precision at the last 15 TPs k / (15 + k) rises to
    25 / 40, so AP = 10 / 25 * 1 + 15 / 25 * 25 / 40 = .775. The high scores are interleaved with the tied ones
    in the input (every fourth), so that an unstable sort does reorder the tie."""
    gt = torch.tensor([[20.0 * k, 0, 20 * k + 10, 10] for k in range(25)])
    fp = torch.tensor([[20.0 * k, 100, 20 * k + 10, 110] for k in range(15)])
    ties = iter(list(fp) + list(gt[10:]))  # the tied detections in input order: FPs first
    boxes, scores, hi = [], [], iter(gt[:10])
    for i in range(40):
        boxes.append(next(hi) if i % 4 == 0 else next(ties))
        scores.append(0.9 if i % 4 == 0 else 0.5)
    det = {"boxes": torch.stack(boxes), "scores": torch.tensor(scores), "labels": torch.zeros(40, dtype=torch.long)}
    res = voc_ap([det], [{"boxes": gt, "labels": torch.zeros(25, dtype=torch.long)}], num_classes=1)
    tp = np.array([1] * 10 + [0] * 15 + [1] * 15)
    np.testing.assert_allclose(res.precision[0], np.cumsum(tp) / np.arange(1, 41))
    assert res.ap[0] == pytest.approx(0.775, abs=1e-12)


def test_voc_a_detection_equally_close_to_two_objects_takes_the_first() -> None:
    """The devkit keeps the first object of highest overlap (``if ov > ovmax``): a detection overlapping objects
    A and B by IoU .6 each takes A; a lower-scored exact copy of A is then a duplicate (FP): AP = .5, not 1."""
    gt = {"boxes": torch.tensor([[0.0, 0, 10, 10], [5.0, 0, 15, 10]]), "labels": torch.zeros(2, dtype=torch.long)}
    det = {
        "boxes": torch.tensor([[2.5, 0, 12.5, 10], [0.0, 0, 10, 10]]),  # IoU 75 / 125 = .6 with either
        "scores": torch.tensor([0.9, 0.8]),
        "labels": torch.zeros(2, dtype=torch.long),
    }
    res = voc_ap([det], [gt], num_classes=1)
    np.testing.assert_allclose(res.precision[0], [1.0, 0.5])
    np.testing.assert_allclose(res.recall[0], [0.5, 0.5])
    assert res.ap[0] == pytest.approx(0.5)


def test_tree_descent_stops_when_the_running_product_equals_the_threshold() -> None:
    """darknet's hierarchy_top_prediction descends while ``p * max > thresh`` (strict). small.tree: animal .5 (first
    of the tied roots), then dog .5 in animal's group: .5 * .5 = .25 is not above .25, so the descent stops in that
    group and answers its parent, animal (0); at .2499 it enters dog, whose children (.5: .125) stop it: dog (2)."""
    tree = WordTree.from_file(FIX / "small.tree")
    cond = torch.tensor([[0.5, 0.5, 0.5, 0.25, 0.25, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5]])
    assert tree.top_down(cond, 0.25).tolist() == [0]
    assert tree.top_down(cond, 0.2499).tolist() == [2]
