"""The region loss against darknet's own outputs (fixtures) and hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo9000.loss import RegionLoss, region_loss_darknet
from yolo9000.wordtree import WordTree

FIX = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(p.stem for p in FIX.glob("region_*.npz")))
def test_gradient_matches_darknet(name: str) -> None:
    d = np.load(FIX / f"{name}.npz")
    meta = json.loads(str(d["meta"]))
    x = torch.tensor(d["input"], requires_grad=True)
    tree = WordTree.from_file(FIX / meta["tree"]) if meta["tree"] else None
    loss = region_loss_darknet(
        x,
        torch.tensor(d["truth"]),
        anchors=meta["anchors"],
        num_classes=meta["classes"],
        seen=meta["seen"],
        thresh=meta["thresh"],
        object_scale=meta["object_scale"],
        noobject_scale=meta["noobject_scale"],
        class_scale=meta["class_scale"],
        coord_scale=meta["coord_scale"],
        rescore=bool(meta["rescore"]),
        tree=tree,
    )
    loss.backward()
    np.testing.assert_allclose(x.grad.numpy(), d["grad_input"], rtol=1e-4, atol=1e-5)
    # darknet's printed cost is sum(delta^2); rebuild delta from our gradient and compare
    sig_d = d["output"] * (1 - d["output"])
    delta = -x.grad.numpy().copy()
    blk = 5 + meta["classes"]
    for a in range(meta["num_anchors"]):
        for c in (0, 1, 4):
            ch = a * blk + c
            delta[:, ch] /= np.where(sig_d[:, ch] == 0, 1, sig_d[:, ch])
    np.testing.assert_allclose((delta**2).sum(), float(d["cost"]), rtol=1e-3)


def _one_cell_case(rescore: bool, seen: int) -> tuple[torch.Tensor, float]:
    """1 image, 1 anchor (1x1 cell), 2x2 grid, 2 classes, one truth in cell (1, 0); all logits zero."""
    raw = torch.zeros(1, 7, 2, 2, requires_grad=True)
    truth = torch.tensor([[[0.75, 0.25, 0.5, 0.5, 1.0]]])
    loss = RegionLoss(2, rescore=rescore)(raw, truth, torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 2), seen)
    # Hand computation. Every predictor: sigmoid(0) = 0.5 centre, exp(0) * 1 cell = 0.5 x 0.5 box.
    # Predicted boxes: cell (i, j) -> centre ((i + .5) / 2, (j + .5) / 2), size .5: IoU with the truth is 1 for
    # cell (1, 0) (identical), 0 elsewhere -> noobject on the 3 other cells: 3 * 0.5 * 0.5^2.
    noobj = 3 * 0.5 * 0.25
    # responsible: x target 0.75*2 - 1 = 0.5 = sigmoid(0): 0; w target log(.5*2/1) = 0: coord loss 0.
    obj_t = 1.0  # IoU 1 (rescore) or 1
    obj = 5 * 0.5 * (obj_t - 0.5) ** 2
    cls = math.log(2)  # softmax of zeros over 2 classes
    prior = 0.0
    if seen < 12800:  # 3 non-responsible predictors: targets (.5, .5, 0, 0) = outputs -> 0
        prior = 0.0
    return loss.loss, noobj + obj + cls + prior


@pytest.mark.parametrize("rescore", [True, False])
@pytest.mark.parametrize("seen", [0, 12800])
def test_hand_computed_single_truth(rescore: bool, seen: int) -> None:
    got, want = _one_cell_case(rescore, seen)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_rescore_uses_iou_target() -> None:
    """Truth half the size of the prior: IoU(pred, truth) = 0.25 is the objectness target with rescore."""
    raw = torch.zeros(1, 6, 1, 1)
    truth = torch.tensor([[[0.5, 0.5, 0.5, 0.5, 0.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    anchors = torch.ones(1, 2)  # 1 cell = the whole 1x1 grid
    for rescore, target in [(True, 0.25), (False, 1.0)]:
        out = RegionLoss(1, rescore=rescore)(raw, truth, mask, anchors, seen=20000)
        assert out.obj.item() == pytest.approx(5 * 0.5 * (target - 0.5) ** 2)
        # coords: x, y exact; w, h targets log(0.5), scale 2 - 0.25
        assert out.coord.item() == pytest.approx(1.75 * 0.5 * 2 * math.log(0.5) ** 2, rel=1e-6)
        assert out.cls.item() == pytest.approx(0.0, abs=1e-7)  # a single class: softmax is 1


def test_prior_term_only_before_12800() -> None:
    raw = torch.zeros(1, 6, 2, 2)
    raw[0, 2] = 1.0  # tw = 1 everywhere
    empty = torch.zeros(1, 1, 5)
    mask = torch.zeros(1, 1, dtype=torch.bool)
    anchors = torch.ones(1, 2)
    before = RegionLoss(1)(raw, empty, mask, anchors, seen=12799)
    after = RegionLoss(1)(raw, empty, mask, anchors, seen=12800)
    assert before.coord.item() == pytest.approx(4 * 0.01 * 0.5 * 1.0)
    assert after.coord.item() == 0.0


def test_later_truth_on_same_cell_and_anchor_wins() -> None:
    raw = torch.zeros(1, 7, 1, 1)
    mask = torch.ones(1, 2, dtype=torch.bool)
    a = torch.tensor([[[0.5, 0.5, 1.0, 1.0, 0.0], [0.5, 0.5, 1.0, 1.0, 1.0]]])
    b = torch.tensor([[[0.5, 0.5, 1.0, 1.0, 1.0]]])
    la = RegionLoss(2)(raw, a, mask, torch.ones(1, 2), seen=20000)
    lb = RegionLoss(2)(raw, b, mask[:, :1], torch.ones(1, 2), seen=20000)
    assert la.loss.item() == pytest.approx(lb.loss.item())
    assert la.num_truths == 2


def test_bias_match_off_picks_predictor_by_predicted_shape() -> None:
    """Two identical priors; predictor 1 predicts the truth's shape (tw = log 0.5): darknet's bias_match=0 makes it
    responsible, bias_match=1 keeps the first prior (first maximum)."""
    raw = torch.zeros(1, 2 * 6, 1, 1)
    raw[0, 6 + 2] = raw[0, 6 + 3] = math.log(0.5)
    truth = torch.tensor([[[0.5, 0.5, 0.5, 0.5, 0.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    anchors = torch.ones(2, 2)
    by_pred = RegionLoss(1, bias_match=False)(raw, truth, mask, anchors, seen=20000)
    by_prior = RegionLoss(1, bias_match=True)(raw, truth, mask, anchors, seen=20000)
    # responsible predictor 1: tw target log(.5) equals its output -> no coordinate loss
    assert by_pred.coord.item() == pytest.approx(0.0, abs=1e-7)
    assert by_pred.avg_iou.item() == pytest.approx(1.0)
    # predictor 0 (prior shape 1x1 vs truth .5x.5): coord loss (2 - .25) * .5 * 2 * log(.5)^2, IoU .25
    assert by_prior.coord.item() == pytest.approx(1.75 * 0.5 * 2 * math.log(0.5) ** 2, rel=1e-6)
    assert by_prior.avg_iou.item() == pytest.approx(0.25)
