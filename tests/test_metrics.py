"""Tests for detection evaluation (yolo9000.metrics): VOC devkit AP by hand, COCO mAP against pycocotools."""

from __future__ import annotations

import contextlib
import io
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from yolo9000.metrics import (
    DetectionEvaluator,
    VOCMeanAP,
    ap_from_pr,
    format_ap_table,
    pairwise_iou,
    voc_ap,
)

NAMES = ["RBC", "WBC", "Platelets"]


def _t(x: list) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


def _hand_case() -> tuple[list[dict], list[dict]]:
    """3 GT of class 0; 4 detections whose score order is TP, FP, TP, FP (duplicate), given shuffled."""
    gt = {
        "boxes": _t([[0, 0, 10, 10], [20, 20, 30, 30], [40, 40, 50, 50]]),
        "labels": torch.zeros(3, dtype=torch.long),
    }
    det = {
        # scores .6 (duplicate of A, IoU 90/110), .9 (A exactly), .7 (B exactly), .8 (nothing)
        "boxes": _t([[1, 0, 11, 10], [0, 0, 10, 10], [20, 20, 30, 30], [60, 60, 70, 70]]),
        "scores": _t([0.6, 0.9, 0.7, 0.8]),
        "labels": torch.zeros(4, dtype=torch.long),
    }
    return [det], [gt]


def test_hand_computed_ap() -> None:
    preds, targets = _hand_case()
    # Score order: TP, FP, TP, FP with 3 positives.
    # precision = 1/1, 1/2, 2/3, 2/4; recall = 1/3, 1/3, 2/3, 2/3.
    # Area under the monotone envelope: 1/3 * 1 + 1/3 * 2/3 + 1/3 * 0 = 5/9.
    # 11-point: t in {0, .1, .2, .3} -> 1; t in {.4, .5, .6} -> 2/3; t in {.7, ..., 1} -> 0 => (4 + 2) / 11.
    res = voc_ap(preds, targets, num_classes=1)
    np.testing.assert_allclose(res.precision[0], [1, 1 / 2, 2 / 3, 1 / 2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.recall[0], [1 / 3, 1 / 3, 2 / 3, 2 / 3], rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.scores[0], [0.9, 0.8, 0.7, 0.6], rtol=1e-6)
    assert res.npos.tolist() == [3]
    assert res.ap[0] == pytest.approx(5 / 9, abs=1e-12)
    assert res.map == pytest.approx(5 / 9, abs=1e-12)
    res07 = voc_ap(preds, targets, num_classes=1, use_07_metric=True)
    assert res07.ap[0] == pytest.approx(6 / 11, abs=1e-12)
    assert ap_from_pr(res.precision[0], res.recall[0], use_07_metric=True) == pytest.approx(6 / 11, abs=1e-12)
    assert ap_from_pr(res.precision[0], res.recall[0]) == pytest.approx(5 / 9, abs=1e-12)

    ev = DetectionEvaluator(["a"], voc07=True)
    ev.update(preds, targets)
    out = ev.compute()
    assert out["voc07_map_50"] == pytest.approx(6 / 11, abs=1e-12)
    assert out["voc_map_50"] == pytest.approx(5 / 9, abs=1e-12)
    assert out["per_class"]["a"]["voc07_ap50"] == pytest.approx(6 / 11, abs=1e-12)
    assert out["per_class"]["a"]["num_gt"] == 3


def _detections_recall_3_of_5() -> tuple[list[dict], list[dict]]:
    """Five truths of one class, three detected exactly (precision 1 at recall 1/5, 2/5, 3/5)."""
    boxes = torch.tensor([[10.0 * k, 0.0, 10.0 * k + 8, 8.0] for k in range(5)])
    preds = [{"boxes": boxes[:3], "scores": torch.tensor([0.9, 0.8, 0.7]), "labels": torch.zeros(3, dtype=torch.long)}]
    return preds, [{"boxes": boxes, "labels": torch.zeros(5, dtype=torch.long)}]


@pytest.mark.parametrize(("levels", "ap"), [("darknet", 6 / 11), ("devkit", 7 / 11)])
def test_voc07_levels_at_a_recall_of_exactly_three_fifths(levels: str, ap: float) -> None:
    """Recall 3/5 with precision 1: darknet's reval_voc.py (np.arange(0., 1.1, 0.1): 0.6000000000000001) counts
    the levels 0 .. 0.5 (6/11); the MATLAB devkit (t=0:0.1:1, whose 0.6 is exact) counts 0.6 too (7/11)."""
    preds, targets = _detections_recall_3_of_5()
    assert voc_ap(preds, targets, 1, use_07_metric=True, voc07_levels=levels).ap[0] == pytest.approx(ap, abs=1e-12)
    ev = DetectionEvaluator(["a"], voc07=True, voc07_levels=levels)
    ev.update(preds, targets)
    assert ev.compute()["voc07_map_50"] == pytest.approx(ap, abs=1e-12)
    with pytest.raises(ValueError, match="voc07_levels must be one of"):
        voc_ap(preds, targets, 1, use_07_metric=True, voc07_levels="matlab")


def test_voc07_mean_leaves_out_classes_without_ground_truth() -> None:
    """voc07_map_50 averaged every class, those without any truth at 0: five classes, truths in one, a perfect
    detection gave 0.2 (and 5.8e-05 over a 9418-node tree); it leaves them out, as voc_map_50 and COCO's mAP do."""
    box = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    ev = DetectionEvaluator(list("abcde"), voc07=True)
    ev.update(
        [{"boxes": box, "scores": torch.tensor([0.9]), "labels": torch.tensor([0])}],
        [{"boxes": box, "labels": torch.tensor([0])}],
    )
    out = ev.compute()
    assert out["voc07_map_50"] == pytest.approx(1.0) and out["voc_map_50"] == pytest.approx(1.0)
    assert out["map_50"] == pytest.approx(1.0) and np.isnan(out["per_class"]["b"]["voc07_ap50"])


def test_ap_from_pr_edge_cases() -> None:
    assert ap_from_pr(np.array([]), np.array([])) == 0.0
    assert ap_from_pr(np.array([]), np.array([]), use_07_metric=True) == 0.0
    assert ap_from_pr(np.array([1.0]), np.array([1.0])) == 1.0
    assert ap_from_pr(np.array([1.0]), np.array([1.0]), use_07_metric=True) == pytest.approx(1.0)
    # recall 0.5 at precision 1: area 0.5; 11-point: t = 0..0.5 (6 levels) -> 6/11
    assert ap_from_pr(np.array([1.0]), np.array([0.5])) == pytest.approx(0.5)
    assert ap_from_pr(np.array([1.0]), np.array([0.5]), use_07_metric=True) == pytest.approx(6 / 11)
    assert math.isnan(ap_from_pr(np.array([0.0]), np.array([np.nan])))


def test_difficult_neither_tp_nor_fp() -> None:
    gt = {
        "boxes": _t([[0, 0, 10, 10], [20, 20, 30, 30]]),
        "labels": torch.tensor([0, 0]),
        "difficult": torch.tensor([False, True]),
    }
    det = {
        "boxes": _t([[20, 20, 30, 30], [0, 0, 10, 10], [21, 20, 31, 30], [60, 60, 70, 70]]),
        "scores": _t([0.9, 0.8, 0.7, 0.5]),
        "labels": torch.zeros(4, dtype=torch.long),
    }
    res = voc_ap([det], [gt], num_classes=1)
    assert res.npos.tolist() == [1]  # the difficult object is not a positive
    # both detections on the difficult object vanish: counted are TP (.8) then FP (.5)
    np.testing.assert_allclose(res.precision[0], [1.0, 0.5])
    np.testing.assert_allclose(res.recall[0], [1.0, 1.0])
    np.testing.assert_allclose(res.scores[0], [0.8, 0.5])
    assert res.ap[0] == pytest.approx(1.0)
    # without the difficult flag, the .9 detection is a TP on a second positive and .8 another TP
    gt_plain = {k: v for k, v in gt.items() if k != "difficult"}
    res_plain = voc_ap([det], [gt_plain], num_classes=1)
    assert res_plain.npos.tolist() == [2]
    np.testing.assert_allclose(res_plain.precision[0], [1.0, 1.0, 2 / 3, 0.5])

    ev = DetectionEvaluator(["a"])
    ev.update([det], [gt])
    out = ev.compute()
    assert out["per_class"]["a"]["num_gt"] == 1
    assert out["map_50"] == pytest.approx(1.0, abs=1e-6)  # COCO iscrowd: ignored as well
    assert out["voc_map_50"] == pytest.approx(1.0)


def test_devkit_matches_best_gt_even_if_taken() -> None:
    # A second detection whose best-IoU object is already taken is a FP in the devkit, even though another
    # unmatched object overlaps it with IoU >= 0.5.
    gt = {"boxes": _t([[0, 0, 10, 10], [0, 2, 10, 12]]), "labels": torch.tensor([0, 0])}
    det = {
        "boxes": _t([[0, 0, 10, 10], [0, 0.5, 10, 10.5]]),
        "scores": _t([0.9, 0.8]),
        "labels": torch.tensor([0, 0]),
    }
    iou = pairwise_iou(det["boxes"][1:], gt["boxes"])
    np.testing.assert_allclose(iou.numpy(), [[95 / 105, 85 / 115]], rtol=1e-6)
    res = voc_ap([det], [gt], num_classes=1)
    np.testing.assert_allclose(res.precision[0], [1.0, 0.5])
    np.testing.assert_allclose(res.recall[0], [0.5, 0.5])
    assert res.ap[0] == pytest.approx(0.5)


def test_other_class_gt_is_not_matched() -> None:
    gt = {"boxes": _t([[0, 0, 10, 10]]), "labels": torch.tensor([1])}
    det = {"boxes": _t([[0, 0, 10, 10]]), "scores": _t([0.9]), "labels": torch.tensor([0])}
    res = voc_ap([det], [gt], num_classes=2)
    assert math.isnan(res.ap[0])  # class 0 has no positives: undefined
    assert res.ap[1] == 0.0  # class 1 was missed
    assert res.map == 0.0


def test_pixel_plus_one_convention() -> None:
    a, b = _t([[0, 0, 1, 1]]), _t([[1, 1, 2, 2]])
    assert pairwise_iou(a, b).item() == 0.0
    # devkit: iw = ih = 1 - 1 + 1 = 1; areas (1+1)^2 = 4 -> 1 / (4 + 4 - 1)
    assert pairwise_iou(a, b, pixel_plus_one=True).item() == pytest.approx(1 / 7)
    # (0,0,9,9) vs (0,0,4,9): continuous 36/81 < 0.5, devkit 50/100 = 0.5 -> a TP only with +1
    gt = {"boxes": _t([[0, 0, 9, 9]]), "labels": torch.tensor([0])}
    det = {"boxes": _t([[0, 0, 4, 9]]), "scores": _t([0.9]), "labels": torch.tensor([0])}
    assert voc_ap([det], [gt], 1).ap[0] == 0.0
    assert voc_ap([det], [gt], 1, pixel_plus_one=True).ap[0] == 1.0


def _q(x: torch.Tensor) -> torch.Tensor:
    """Quantise to multiples of 1/4: float32 sums/differences are then exact (same IoU in every code path)."""
    return torch.round(x * 4) / 4


def _synthetic(seed: int = 0, n_images: int = 24) -> tuple[list[dict], list[dict]]:
    g = torch.Generator().manual_seed(seed)
    preds, targets = [], []
    for _ in range(n_images):
        m = int(torch.randint(0, 9, (1,), generator=g))
        xy = torch.rand(m, 2, generator=g) * 300
        wh = torch.rand(m, 2, generator=g) * 80 + 8
        gt_boxes = _q(torch.cat([xy, xy + wh], 1))
        gt_labels = torch.randint(0, 3, (m,), generator=g)
        difficult = torch.rand(m, generator=g) < 0.15
        keep = torch.rand(m, generator=g) < 0.8  # some objects are missed
        jitter = _q(torch.randn(m, 4, generator=g) * 6)
        n_fp = int(torch.randint(0, 5, (1,), generator=g))
        fxy = torch.rand(n_fp, 2, generator=g) * 300
        fp_boxes = _q(torch.cat([fxy, fxy + torch.rand(n_fp, 2, generator=g) * 60 + 5], 1))
        det_boxes = torch.cat([(gt_boxes + jitter)[keep], fp_boxes])
        det_boxes[:, 2:] = torch.maximum(det_boxes[:, 2:], det_boxes[:, :2] + 1)
        flip = torch.rand(m, generator=g) < 0.1  # a few wrong classes
        det_labels = torch.cat(
            [
                torch.where(flip, (gt_labels + 1) % 3, gt_labels)[keep],
                torch.randint(0, 3, (n_fp,), generator=g),
            ]
        )
        n_tp = int(keep.sum())  # matched detections tend to score higher than the false positives
        scores = torch.cat([0.4 + 0.6 * torch.rand(n_tp, generator=g), 0.7 * torch.rand(n_fp, generator=g)])
        preds.append({"boxes": det_boxes, "scores": scores, "labels": det_labels})
        targets.append({"boxes": gt_boxes, "labels": gt_labels, "difficult": difficult})
    return preds, targets


def _cocoeval_direct(preds: list[dict], targets: list[dict], cat_ids: list[int] | None = None) -> np.ndarray:
    """pycocotools on the same data, built here independently (category id = label + 1, crowd = difficult)."""
    images, anns, dets = [], [], []
    for i, (p, t) in enumerate(zip(preds, targets, strict=True)):
        images.append({"id": i + 1})
        for box, lab, diff in zip(t["boxes"].tolist(), t["labels"].tolist(), t["difficult"].tolist(), strict=True):
            w, h = box[2] - box[0], box[3] - box[1]
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i + 1,
                    "category_id": lab + 1,
                    "bbox": [box[0], box[1], w, h],
                    "area": w * h,
                    "iscrowd": int(diff),
                }
            )
        for box, s, lab in zip(p["boxes"].tolist(), p["scores"].tolist(), p["labels"].tolist(), strict=True):
            dets.append(
                {
                    "image_id": i + 1,
                    "category_id": lab + 1,
                    "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                    "score": s,
                }
            )
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(3)]}
        gt.createIndex()
        dt = gt.loadRes(dets)
        ev = COCOeval(gt, dt, iouType="bbox")
        if cat_ids is not None:
            ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_coco_map_matches_pycocotools() -> None:
    preds, targets = _synthetic()
    ev = DetectionEvaluator(NAMES)
    ev.update(preds[:10], targets[:10])  # several batches
    ev.update(preds[10:], targets[10:])
    out = ev.compute()
    stats = _cocoeval_direct(preds, targets)
    assert 0.2 < stats[1] < 0.95  # a non-trivial case
    assert out["map_50"] == pytest.approx(stats[1], abs=1e-6)
    assert out["map"] == pytest.approx(stats[0], abs=1e-6)
    assert out["map_75"] == pytest.approx(stats[2], abs=1e-6)
    assert out["mar_100"] == pytest.approx(stats[8], abs=1e-6)
    for c, name in enumerate(NAMES):
        cs = _cocoeval_direct(preds, targets, cat_ids=[c + 1])
        assert out["per_class"][name]["ap50"] == pytest.approx(cs[1], abs=1e-6)
        assert out["per_class"][name]["ap"] == pytest.approx(cs[0], abs=1e-6)
        n_gt = sum(int(((t["labels"] == c) & ~t["difficult"]).sum()) for t in targets)
        assert out["per_class"][name]["num_gt"] == n_gt
    # the VOC numbers are a different (but close) estimate of AP@0.5
    assert abs(out["voc_map_50"] - out["map_50"]) < 0.05
    assert set(out["pr"]) == set(NAMES)


def test_perfect_predictions_give_one() -> None:
    _, targets = _synthetic(seed=3)
    preds = [
        {
            "boxes": t["boxes"].clone(),
            "scores": torch.rand(t["labels"].shape[0]),
            "labels": t["labels"].clone(),
        }
        for t in targets
    ]
    ev = DetectionEvaluator(NAMES, voc07=True)
    ev.update(preds, targets)
    out = ev.compute()
    for key in ("map_50", "map", "map_75", "voc_map_50", "voc07_map_50"):
        assert out[key] == pytest.approx(1.0, abs=1e-6), key
    for name in NAMES:
        assert out["per_class"][name]["ap50"] == pytest.approx(1.0, abs=1e-6)
        assert out["per_class"][name]["voc_ap50"] == pytest.approx(1.0)
    res = voc_ap(preds, targets, 3, use_07_metric=True)
    np.testing.assert_allclose(res.ap, 1.0)


def test_evaluator_reset_and_class_without_gt() -> None:
    ev = DetectionEvaluator(NAMES)
    preds, targets = _synthetic(seed=1, n_images=4)
    ev.update(preds, targets)
    ev.compute()
    ev.reset()
    gt = {"boxes": _t([[0, 0, 10, 10]]), "labels": torch.tensor([0])}
    det = {
        "boxes": _t([[0, 0, 10, 10], [50, 50, 60, 60]]),
        "scores": _t([0.9, 0.8]),
        "labels": torch.tensor([0, 2]),
    }
    ev.update([det], [gt])
    out = ev.compute()
    assert out["map_50"] == pytest.approx(1.0)  # only classes with ground truth are averaged
    assert out["per_class"]["RBC"]["num_gt"] == 1
    for name in ("WBC", "Platelets"):
        assert math.isnan(out["per_class"][name]["ap50"])
        assert math.isnan(out["per_class"][name]["voc_ap50"])
        assert out["per_class"][name]["num_gt"] == 0


def test_empty_predictions() -> None:
    gt = {"boxes": _t([[0, 0, 10, 10]]), "labels": torch.tensor([1]), "difficult": torch.tensor([False])}
    det = {"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0, dtype=torch.long)}
    ev = DetectionEvaluator(NAMES)
    ev.update([det], [gt])
    out = ev.compute()
    assert out["map_50"] == 0.0
    assert out["voc_map_50"] == 0.0


def test_voc_metric_state_matches_function() -> None:
    preds, targets = _synthetic(seed=2)
    m = VOCMeanAP(num_classes=3, use_07_metric=True)
    for i in range(0, len(preds), 5):
        m.update(preds[i : i + 5], targets[i : i + 5])
    got = m.compute()
    ref = voc_ap(preds, targets, 3, use_07_metric=True)
    np.testing.assert_allclose(got.ap, ref.ap, rtol=0, atol=1e-12)
    assert got.npos.tolist() == ref.npos.tolist()


def test_format_ap_table() -> None:
    per_class = {
        "RBC": {"ap50": 0.8, "ap": 0.5, "num_gt": 10},
        "WBC": {"ap50": 0.9, "ap": 0.7, "num_gt": 2},
        "Platelets": {"ap50": float("nan"), "ap": float("nan"), "num_gt": 0},
    }
    table = format_ap_table(per_class, NAMES)
    lines = table.splitlines()
    assert lines[0] == "| class | AP@0.5 | AP@[.5:.95] | #GT |"
    assert lines[2] == "| RBC | 0.8000 | 0.5000 | 10 |"
    assert lines[4] == "| Platelets | – | – | 0 |"
    assert lines[5] == "| mean | 0.8500 | 0.6000 | 12 |"


# ----------------------------------------------------------------------------------------------------
# DDP: two CPU processes (gloo) each see half the images; the synced result must equal the single-process one.
# ----------------------------------------------------------------------------------------------------


def _ddp_worker(rank: int, world: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        preds, targets = _synthetic(seed=5)
        ev = DetectionEvaluator(NAMES, voc07=True)
        ev.update(preds[rank::world], targets[rank::world])
        out = ev.compute()
        summary = {k: v for k, v in out.items() if k not in ("per_class", "pr")}
        summary["per_class"] = out["per_class"]
        torch.save(summary, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def test_ddp_sync_matches_single_process(tmp_path: Path) -> None:
    world = 2
    mp.spawn(_ddp_worker, args=(world, str(tmp_path / "init"), str(tmp_path)), nprocs=world, join=True)
    preds, targets = _synthetic(seed=5)
    ev = DetectionEvaluator(NAMES, voc07=True)
    ev.update(preds, targets)
    ref = ev.compute()
    for rank in range(world):
        got = torch.load(tmp_path / f"rank{rank}.pt", weights_only=False)
        for key in ("map_50", "map", "map_75", "mar_100", "voc_map_50", "voc07_map_50"):
            assert got[key] == pytest.approx(ref[key], abs=1e-6), key
        for name in NAMES:
            assert got["per_class"][name]["num_gt"] == ref["per_class"][name]["num_gt"]
            assert got["per_class"][name]["voc_ap50"] == pytest.approx(ref["per_class"][name]["voc_ap50"])


def test_group_means_of_per_class_ap() -> None:
    """metrics.json's ap50_<group> (YOLO9000 digits: seen vs unseen): the mean over the group's classes as the
    per-class table's mean, a class without test boxes (nan) left out (a class never detected has AP 0 and counts);
    numbers from the command line name the classes "5", "6"; any entry that is no class of the run is an error."""
    from yolo9000.results import check_metric_groups, group_means

    per_class = {"0": {"ap50": 0.8}, "1": {"ap50": 0.4}, "5": {"ap50": float("nan")}, "6": {"ap50": 0.3}}
    per_class["7"] = {"ap50": 0.0}  # boxes, never detected
    got = group_means(per_class, {"seen": ["0", "1"], "unseen": [5, 6, 7]})
    assert got == {"ap50_seen": pytest.approx(0.6), "ap50_unseen": pytest.approx(0.15)}  # (0.3 + 0) / 2
    assert group_means(per_class, {"none": ["5"]})["ap50_none"] != group_means(per_class, {"none": ["5"]})["ap50_none"]
    with pytest.raises(ValueError, match=r"metric_groups.unseen: \['nine'\] is no class of this run"):
        group_means(per_class, {"unseen": ["5", "6", "nine"]})  # one typo among good names
    with pytest.raises(ValueError, match="metric_groups.x"):
        check_metric_groups({"x": ["cat"]}, list(per_class))


def test_metrics_json_is_strict_json_with_null_for_undefined_ap(tmp_path: Path) -> None:
    """A class without ground truth has no AP (nan): metrics.json says null, which strict parsers accept."""
    import json

    from yolo9000.results import write_metrics

    per_class = {"a": {"ap50": 0.5, "ap": 0.25, "n_gt": 3}, "b": {"ap50": math.nan, "ap": math.nan, "n_gt": 0}}
    out = write_metrics(tmp_path, {"map_50": 0.5, "map": 0.25, "per_class": per_class}, ["a", "b"])
    assert math.isnan(out["per_class"]["b"]["ap50"])  # the returned values are the computed ones

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    got = json.loads((tmp_path / "metrics.json").read_text(), parse_constant=refuse)
    assert got["per_class"]["b"]["ap50"] is None and got["per_class"]["a"]["ap50"] == 0.5


def test_metrics_json_is_written_last(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """metrics.json marks a finished run (a resume does not run it again): it comes after the table and the plot,
    so a kill between them leaves no finished run without its plot (it came 70 ms before pr_curves.png)."""
    import yolo9000.viz

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # stands in for SIGKILL while the plot is drawn

    from yolo9000.results import write_metrics

    monkeypatch.setattr(yolo9000.viz, "plot_pr_curves", killed)
    per_class = {"a": {"ap50": 0.5, "ap": 0.25, "n_gt": 3}}
    pr = {"a": {"precision": [1.0], "recall": [0.5]}}
    with pytest.raises(KeyboardInterrupt):
        write_metrics(tmp_path, {"map_50": 0.5, "map": 0.25, "per_class": per_class, "pr": pr}, ["a"])
    assert (tmp_path / "per_class.md").is_file() and not (tmp_path / "metrics.json").exists()


def test_many_classes_stay_readable_in_the_pr_plot_and_the_log(tmp_path: Path) -> None:
    """A 9418-node head: the PR plot draws the (at most 20) best classes that have data, not 9418 legend entries;
    the log gets the per-class table's first rows, its mean row and the file's path."""
    from yolo9000.results import table_for_log
    from yolo9000.viz import plot_pr_curves, pr_classes_shown

    has_data = {f"n{i}": i in (3, 7, 11) for i in range(9418)}
    ap = {"n3": 0.2, "n7": 0.9, "n11": float("nan")}
    assert pr_classes_shown(has_data, ap, 20) == ["n7", "n3", "n11"]
    assert pr_classes_shown({"a": False, "b": True}, None, 20) == ["a", "b"]  # few classes: all, as given
    pr = {
        n: ((np.array([1.0, 0.5]), np.array([0.2, 0.4])) if ok else (np.zeros(0), np.zeros(0)))
        for n, ok in has_data.items()
    }
    assert plot_pr_curves(pr, tmp_path / "pr.png", ap=ap).stat().st_size > 1000
    table = tmp_path / "per_class.md"
    table.write_text(
        "| class | AP |\n|---|---|\n" + "".join(f"| n{i} | – |\n" for i in range(9418)) + "| **mean** | 0.5 |\n"
    )
    text = table_for_log(table).splitlines()
    assert len(text) == 44 and text[-1] == "| **mean** | 0.5 |" and f"9378 more rows: {table}" in text[-2]
    small = tmp_path / "small.md"
    small.write_text("| class | AP |\n|---|---|\n| a | 1 |\n| **mean** | 1 |\n")
    assert table_for_log(small) == small.read_text().rstrip("\n")


def test_the_log_table_of_many_named_classes_shows_those_with_ground_truth(tmp_path: Path) -> None:
    """A dataset yaml naming 150 classes, three of them labelled (ids 0, 7, 149): the log's cut table shows the
    three (the last one beyond the first 40 rows), not 40 rows of classes without ground truth."""
    from yolo9000.metrics import format_ap_table
    from yolo9000.results import table_for_log

    names = [f"cls{i}" for i in range(150)]
    per_class = {n: {"ap50": float("nan"), "ap": float("nan"), "num_gt": 0} for n in names}
    for i, gt in ((0, 136), (7, 9), (149, 15)):
        per_class[names[i]] = {"ap50": 0.25, "ap": 0.1, "num_gt": gt}
    table = tmp_path / "per_class.md"
    table.write_text(format_ap_table(per_class, names) + "\n")
    text = table_for_log(table).splitlines()
    assert len(text) == 44 and text[-1].startswith("| mean |") and f"110 more rows: {table}" in text[-2]
    shown = [r.split("|")[1].strip() for r in text[2:-2]]
    assert shown == [f"cls{i}" for i in range(39)] + ["cls149"]  # the labelled three, then empty rows, in order
    assert "left out first" in text[-2]
