"""Region-loss behaviours found untested by a mutation audit, each against hand-computed values (darknet's
``forward_region_layer`` rules) or the darknet C transcription in ``test_region_loss``."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from test_region_loss import _darknet_grad, _port_grad
from yolo9000.loss import CLASSONLY_MARK, RegionLoss
from yolo9000.wordtree import WordTree

FIX = Path(__file__).parent / "fixtures"
LN8 = math.log(0.8)
SIG = 1 / (1 + math.exp(-2.0))  # softmax of logits (2, 0): P(class 0)
MARK = 2 * CLASSONLY_MARK


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def _one_cell_raw(batch: int = 1) -> torch.Tensor:
    """2x2 grid, 1 anchor (1 x 1 cell), 2 classes: 0.4 x 0.4 boxes everywhere; class logits (2, 0) at the
    predictor (row 0, column 1) that the truth ``_ONE_TRUTH`` trains (IoU 0.64 with it; the 3 others miss it)."""
    raw = torch.zeros(batch, 7, 2, 2)
    raw[:, 2:4] = LN8
    raw[:, 5, 0, 1] = 2.0
    return raw


_ONE_TRUTH = [0.75, 0.25, 0.5, 0.5, 1.0]


@pytest.mark.parametrize("coord_size_weight", [True, False])
def test_each_term_and_each_scale_by_hand(coord_size_weight: bool) -> None:
    """The four named terms apart (not only their sum), with every scale away from 1: coord_scale also without
    the 2 - w*h weight, class_scale on the reported cls value, noobject_scale on noobj only, object_scale on obj
    only (a responsible predictor's objectness is ``obj``, never ``noobj``)."""
    scales = {"object_scale": 3.0, "noobject_scale": 0.5, "class_scale": 2.0, "coord_scale": 1.5}
    loss = RegionLoss(2, coord_size_weight=coord_size_weight, **scales)
    out = loss(
        _one_cell_raw(), torch.tensor([[_ONE_TRUTH]]), torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 2), 20000
    )
    coord = 1.5 * (1.75 if coord_size_weight else 1.0) * 0.5 * 2 * LN8**2
    assert out.coord.item() == pytest.approx(coord, rel=1e-6)
    assert out.obj.item() == pytest.approx(3.0 * 0.5 * (0.64 - 0.5) ** 2, rel=1e-5)
    assert out.noobj.item() == pytest.approx(0.5 * 3 * 0.5 * 0.5**2, rel=1e-6)
    assert out.cls.item() == pytest.approx(2.0 * math.log(1 + math.exp(2.0)), rel=1e-6)


def test_per_image_terms_go_to_their_image() -> None:
    """``per_image`` (the joint-training per-source losses): image 0 has no truth (noobject on its 4 predictors
    only), image 1 the one-cell truth; each term lands on its own image."""
    targets = torch.tensor([[[0.0] * 5], [_ONE_TRUTH]])
    mask = torch.tensor([[False], [True]])
    out = RegionLoss(2)(_one_cell_raw(2), targets, mask, torch.ones(1, 2), 20000)
    want = {
        "coord": [0.0, 1.75 * 0.5 * 2 * LN8**2],
        "obj": [0.0, 5 * 0.5 * (0.64 - 0.5) ** 2],
        "noobj": [4 * 0.5 * 0.25, 3 * 0.5 * 0.25],
        "cls": [0.0, math.log(1 + math.exp(2.0))],
    }
    for k, v in want.items():
        assert out.per_image[k].tolist() == pytest.approx(v, rel=1e-5, abs=1e-7), k


def test_backward_scales_by_upstream_weights() -> None:
    """The gradient is the gradient of what is backpropagated: a uniformly scaled loss (the module's loss / batch)
    scales it, and a weighted sum of terms weights each term's channels (obj on the responsible predictor's
    objectness, noobj on the others'). Values by hand from the one-cell case."""
    truth, mask, anchors = torch.tensor([[_ONE_TRUTH]]), torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 2)

    def grad(fn) -> torch.Tensor:  # noqa: ANN001
        x = _one_cell_raw().requires_grad_(True)
        fn(RegionLoss(2)(x, truth, mask, anchors, 20000)).backward()
        return x.grad[0]

    full = grad(lambda o: o.loss)
    torch.testing.assert_close(grad(lambda o: o.loss * 0.25), full * 0.25)
    g = grad(lambda o: 2 * o.coord + 3 * o.obj + 7 * o.noobj + 11 * o.cls)
    # objectness (channel 4): responsible (row 0, column 1) 3 * 5 * (0.5 - 0.64) * 0.25, others 7 * 0.5 * 0.25
    want_obj = torch.full((2, 2), 7 * 0.5 * 0.25)
    want_obj[0, 1] = 3 * 5 * (0.5 - 0.64) * 0.25
    torch.testing.assert_close(g[4], want_obj, rtol=1e-5, atol=1e-7)
    # tw (channel 2) of the responsible predictor: 2 * 1.75 * (log .8 - 0); class channels 11 * (softmax - onehot)
    assert g[2, 0, 1].item() == pytest.approx(2 * 1.75 * LN8, rel=1e-6)
    assert g[5:7, 0, 1].tolist() == pytest.approx([11 * SIG, -11 * SIG], rel=1e-6)


def test_ignore_threshold_is_strictly_greater() -> None:
    """darknet: ``if (best_iou > l.thresh) delta = 0``. Predictor 1 (a 1 x 1 box) has IoU exactly 0.5 with the
    0.5 x 1 truth (predictor 0 is responsible): at thresh 0.5 it keeps its noobject term, below it loses it."""
    raw = torch.zeros(1, 2 * 6, 1, 1)
    truth = torch.tensor([[[0.5, 0.5, 0.5, 1.0, 0.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    anchors = torch.tensor([[0.5, 1.0], [1.0, 1.0]])
    at = RegionLoss(1, thresh=0.5)(raw, truth, mask, anchors, 20000)
    below = RegionLoss(1, thresh=0.49)(raw, truth, mask, anchors, 20000)
    assert at.noobj.item() == pytest.approx(0.5 * 0.5**2)
    assert below.noobj.item() == 0.0
    # and the transcribed C agrees at the tie
    meta = {
        "num_anchors": 2,
        "classes": 1,
        "anchors": [0.5, 1.0, 1.0, 1.0],
        "seen": 20000,
        "thresh": 0.5,
        "object_scale": 5.0,
        "noobject_scale": 1.0,
        "class_scale": 1.0,
        "coord_scale": 1.0,
        "rescore": 1,
        "bias_match": 1,
    }
    np.testing.assert_allclose(
        _port_grad(raw.numpy(), truth.numpy(), meta), _darknet_grad(raw.numpy(), truth.numpy(), meta), atol=1e-6
    )


_TINY_TREE = [-1, 0, 0]  # a root with two children: groups {0}, {1, 2}


@pytest.mark.parametrize("rows", ["mark only", "detection row before the mark"])
def test_classification_only_image_by_hand(rows: str) -> None:
    """darknet's classification-only image (``onlyclass``: ``continue`` before the per-predictor loop): no prior
    term even with seen < 12800, no detection truth even when a box row precedes the marker row, noobject on
    every predictor but the chosen one (the first of equal scores), whose objectness has no term, and the class
    loss of its label along the tree path (log 2 in group {1, 2}, 0 in the single-node root group)."""
    raw = torch.zeros(1, 5 + 3, 2, 2)
    raw[0, 2] = 1.0  # tw = 1: a prior term of 0.01 * 0.5 on each predictor if there were one
    mark = [MARK, MARK, 1.0, 1.0, 1.0]
    targets = torch.tensor([[mark]]) if rows == "mark only" else torch.tensor([[[0.5, 0.5, 0.5, 0.5, 2.0], mark]])
    mask = torch.ones(targets.shape[:2], dtype=torch.bool)
    x = raw.requires_grad_(True)
    out = RegionLoss(3, tree=WordTree(_TINY_TREE))(x, targets, mask, torch.ones(1, 2), seen=0)
    out.loss.backward()
    assert out.num_truths == 0
    assert out.coord.item() == 0.0 and out.obj.item() == 0.0
    assert out.noobj.item() == pytest.approx(3 * 0.5 * 0.25)
    assert out.cls.item() == pytest.approx(math.log(2), rel=1e-6)
    assert not x.grad[0, :4].any()
    assert x.grad[0, 4, 0, 0].item() == 0.0  # the chosen predictor (anchor 0, row 0, column 0)


@pytest.mark.parametrize(("to", "target"), [(-2.0, 0.3), (1.0, None)])
def test_classification_only_paper_objectness(to: float, target: float | None) -> None:
    """``classonly_objectness="paper"`` (darknet d2dece3d): ``if (output < .3) delta = object_scale * (.3 -
    output); else delta = 0`` on the chosen predictor (the only one of a 1 x 1 grid, 1 anchor)."""
    raw = torch.zeros(1, 5 + 3, 1, 1)
    raw[0, 4] = to
    x = raw.requires_grad_(True)
    targets, mask = torch.tensor([[[MARK, MARK, 1.0, 1.0, 1.0]]]), torch.ones(1, 1, dtype=torch.bool)
    out = RegionLoss(3, tree=WordTree(_TINY_TREE), classonly_objectness="paper")(x, targets, mask, torch.ones(1, 2), 0)
    out.loss.backward()
    so = _sig(to)
    obj = 0.0 if target is None else 5 * 0.5 * (target - so) ** 2
    assert out.loss.item() == pytest.approx(obj + math.log(2), rel=1e-6)
    d_obj = 0.0 if target is None else 5 * (so - target) * so * (1 - so)
    assert x.grad[0, 4, 0, 0].item() == pytest.approx(d_obj, rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("order", ["terrier_then_car", "car_then_terrier"])
def test_tree_truths_sharing_a_predictor_overwrite_per_sibling_group(order: str) -> None:
    """darknet's ``delta_region_class`` with a tree writes, for each node of the label's path, its whole sibling
    group (0 - p) and the node (1 - p); two truths on one predictor: the later one's writes replace the earlier
    one's in the groups they share (the root group here) and the earlier one's other groups stay. small.tree:
    terrier = 7 (path 7, 2, 0), car = 5 (path 5, 1). Image 0 has no truth (per-image cls 0)."""
    tree = WordTree.from_file(FIX / "small.tree")
    raw = torch.zeros(2, 5 + tree.n, 1, 1)
    raw[1, 5 + 0] = 2.0  # root group logits (animal 2, vehicle 0)
    terrier, car = [0.5, 0.5, 0.5, 0.5, 7.0], [0.5, 0.5, 0.5, 0.5, 5.0]
    rows = [terrier, car] if order == "terrier_then_car" else [car, terrier]
    targets = torch.tensor([[[0.0] * 5] * 2, rows])
    mask = torch.tensor([[False, False], [True, True]])
    x = raw.requires_grad_(True)
    out = RegionLoss(tree.n, tree=tree)(x, targets, mask, torch.ones(1, 2), seen=20000)
    out.loss.backward()
    root = [SIG, -SIG] if order == "terrier_then_car" else [SIG - 1, 1 - SIG]  # target vehicle / animal
    want = root + [1 / 3 - 1, 1 / 3, 1 / 3] + [-0.5, 0.5] + [-0.5, 0.5] + [0.0, 0.0]  # groups 0-1 2-4 5-6 7-8 9-10
    assert x.grad[1, 5:, 0, 0].tolist() == pytest.approx(want, rel=1e-5, abs=1e-7)
    ce_root = math.log(1 + math.exp(2.0)) if order == "terrier_then_car" else math.log(1 + math.exp(-2.0))
    cls = ce_root + math.log(3) + 2 * math.log(2)
    assert out.cls.item() == pytest.approx(cls, rel=1e-6)
    assert out.per_image["cls"].tolist() == pytest.approx([0.0, cls], rel=1e-6)


def test_statistics_by_hand() -> None:
    """darknet's printed statistics over every truth (overwritten ones too): avg IoU, recall (IoU > .5), Obj
    (objectness of each truth's predictor), No Obj (all predictors), Class (P(label) at each truth's predictor).
    2x2 grid, 0.4 x 0.4 boxes: truth A (IoU .64) and the later C (IoU .5625) share predictor (row 0, column 1),
    B (IoU .390625) is at (row 1, column 0)."""
    raw = _one_cell_raw()
    raw[0, 4, 0, 1], raw[0, 4, 1, 0] = 1.0, -1.0
    raw[0, 5, 1, 0] = 1.0  # B's class logits (1, 0)
    a, b, c = _ONE_TRUTH, [0.25, 0.75, 0.25, 0.25, 0.0], [0.8, 0.2, 0.3, 0.3, 0.0]
    out = RegionLoss(2)(raw, torch.tensor([[a, b, c]]), torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 2), 20000)
    assert out.num_truths == 3
    assert out.avg_iou.item() == pytest.approx((0.64 + 0.390625 + 0.5625) / 3, rel=1e-5)
    assert out.recall.item() == pytest.approx(2 / 3)
    assert out.avg_obj.item() == pytest.approx((2 * _sig(1.0) + _sig(-1.0)) / 3, rel=1e-6)
    assert out.avg_anyobj.item() == pytest.approx((_sig(1.0) + _sig(-1.0) + 1.0) / 4, rel=1e-6)
    assert out.avg_cat.item() == pytest.approx((1 - SIG + _sig(1.0) + SIG) / 3, rel=1e-6)


def test_offset_location_targets_and_gradient_by_hand() -> None:
    """``location="offset"`` (RPN-style, the Table 2 ablation): bx = (i + 0.5 + tx * anchor_w) / W, so the prior
    term pulls tx, ty to 0 (the cell centre) and a truth's target is (offset in cell - 0.5) / anchor; no sigmoid,
    so no sigmoid derivative on the x, y gradient."""
    loss = RegionLoss(1, location="offset")
    raw = torch.zeros(1, 6, 2, 2)
    raw[0, 0] = 0.3  # tx everywhere
    none, no_mask = torch.zeros(1, 1, 5), torch.zeros(1, 1, dtype=torch.bool)
    x = raw.clone().requires_grad_(True)
    out = loss(x, none, no_mask, torch.ones(1, 2), seen=0)
    out.loss.backward()
    assert out.coord.item() == pytest.approx(4 * 0.01 * 0.5 * 0.3**2, rel=1e-6)
    torch.testing.assert_close(x.grad[0, 0], torch.full((2, 2), 0.01 * 0.3))
    # a truth at (0.6, 0.4), 0.5 x 0.5 on the 2 x 2 grid: cell (1, 0), offset (0.2, 0.8) -> targets (-0.3, 0.3)
    truth, mask = torch.tensor([[[0.6, 0.4, 0.5, 0.5, 0.0]]]), torch.ones(1, 1, dtype=torch.bool)
    x = raw.clone().requires_grad_(True)
    out = loss(x, truth, mask, torch.ones(1, 2), seen=20000)
    out.loss.backward()
    assert out.coord.item() == pytest.approx(1.75 * 0.5 * (0.6**2 + 0.3**2), rel=1e-5)
    assert x.grad[0, 0:2, 0, 1].tolist() == pytest.approx([1.75 * 0.6, 1.75 * -0.3], rel=1e-5)


def test_statistics_count_classification_only_images_as_darknet() -> None:
    """darknet's "Class" adds each classification-only image's P(label path) at its chosen predictor
    (``delta_region_class``'s ``avg_cat``, ``++class_count``); its "No Obj" sums the detection images'
    objectness (the ``onlyclass`` image ``continue``s first) over every predictor of the batch. 1 x 1 grid,
    1 anchor, tree {0}, {1, 2}: image 0 classification-only, label 2 (group logits (0, 1): P = sig(1)), image 1
    a truth of label 1 (group logits (2, 0): P = SIG)."""
    raw = torch.zeros(2, 5 + 3, 1, 1)
    raw[0, 4], raw[1, 4] = 0.5, -1.0  # objectness: image 0 sig(.5) (left out of No Obj), image 1 sig(-1)
    raw[0, 5 + 2] = 1.0
    raw[1, 5 + 1] = 2.0
    targets = torch.tensor([[[MARK, MARK, 1.0, 1.0, 2.0]], [[0.5, 0.5, 0.5, 0.5, 1.0]]])
    out = RegionLoss(3, tree=WordTree(_TINY_TREE))(
        raw, targets, torch.ones(2, 1, dtype=torch.bool), torch.ones(1, 2), seen=20000
    )
    assert out.num_truths == 1
    assert out.avg_obj.item() == pytest.approx(_sig(-1.0), rel=1e-6)
    assert out.avg_anyobj.item() == pytest.approx(_sig(-1.0) / 2, rel=1e-6)
    assert out.avg_cat.item() == pytest.approx((_sig(1.0) + SIG) / 2, rel=1e-6)
