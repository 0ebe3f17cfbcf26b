"""The region loss against darknet's own outputs (fixtures) and hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo9000.loss import RegionLoss, assign_truths, region_loss_darknet
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


LN8 = math.log(0.8)


def _one_cell_case(rescore: bool, seen: int, coord_size_weight: bool = True) -> tuple[torch.Tensor, float]:
    """1 image, 1 anchor (1x1 cell), 2x2 grid, 2 classes, one 0.5 x 0.5 truth of class 1 in cell (1, 0).

    Every predictor has tw = th = log 0.8 (a 0.4 x 0.4 box), so the responsible box has IoU 0.64 with the truth
    (rescore's target differs from 1), the 3 others have tw, th off their prior (the prior term is not zero) and
    the coordinate term is not zero (the 2 - w*h weight shows)."""
    raw = torch.zeros(1, 7, 2, 2)
    raw[0, 2:4] = LN8
    raw[0, 5:7, 0, 1] = torch.tensor([2.0, 0.0])  # class logits of the responsible predictor (row 0, column 1)
    truth = torch.tensor([[[0.75, 0.25, 0.5, 0.5, 1.0]]])
    loss = RegionLoss(2, rescore=rescore, coord_size_weight=coord_size_weight)(
        raw, truth, torch.ones(1, 1, dtype=torch.bool), torch.ones(1, 2), seen
    )
    # Predicted boxes: cell (i, j) -> centre ((i + .5) / 2, (j + .5) / 2), size .4: the responsible one (1, 0)
    # covers .4^2 / .5^2 = 0.64 of the truth; the others do not touch it -> noobject on 3 cells.
    noobj = 3 * 0.5 * 0.5**2
    obj = 5 * 0.5 * ((0.64 if rescore else 1.0) - 0.5) ** 2
    # x, y targets 0.5 = sigmoid(0); tw, th targets log(.5 * 2 / 1) = 0 against log .8
    coord = (1.75 if coord_size_weight else 1.0) * 0.5 * 2 * LN8**2
    cls = math.log(1 + math.exp(2.0))  # class 1 against logits (2, 0)
    prior = 3 * 0.01 * 0.5 * 2 * LN8**2 if seen < 12800 else 0.0  # tw, th -> 0 on the 3 others
    return loss.loss, noobj + obj + coord + cls + prior


@pytest.mark.parametrize("rescore", [True, False])
@pytest.mark.parametrize("seen", [12799, 12800])
@pytest.mark.parametrize("coord_size_weight", [True, False])
def test_hand_computed_single_truth(rescore: bool, seen: int, coord_size_weight: bool) -> None:
    """Each switch changes the expected value (rescore: 0.049 vs 0.625 objectness; seen: the prior term 0.0015;
    the 2 - w*h weight: 0.087 vs 0.050), so a case that ignored one would fail."""
    got, want = _one_cell_case(rescore, seen, coord_size_weight)
    assert got.item() == pytest.approx(want, rel=1e-6)
    others = [
        _one_cell_case(not rescore, seen, coord_size_weight)[1],
        _one_cell_case(rescore, seen, not coord_size_weight)[1],
    ]
    others.append(_one_cell_case(rescore, 12800 if seen < 12800 else 0, coord_size_weight)[1])
    assert all(abs(o - want) > 1e-3 for o in others)


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


@pytest.mark.parametrize("order", ["small_first", "large_first"])
def test_later_truth_on_same_cell_and_anchor_wins(order: str) -> None:
    """Two truths of different classes and shapes on the one predictor: the later one's class, box and IoU are
    the targets (darknet overwrites the delta), whichever comes later."""
    raw = torch.zeros(1, 7, 1, 1)
    raw[0, 5] = 2.0  # class logits (2, 0): CE 0.127 for class 0, 2.127 for class 1
    small = [0.5, 0.5, 0.5, 0.5, 0.0]  # class 0, IoU .25 with the 1 x 1 predicted box
    large = [0.5, 0.5, 0.8, 0.6, 1.0]  # class 1, IoU .48
    rows = [small, large] if order == "small_first" else [large, small]
    out = RegionLoss(2)(raw, torch.tensor([rows]), torch.ones(1, 2, dtype=torch.bool), torch.ones(1, 2), seen=20000)
    w, h, iou, cls = (0.8, 0.6, 0.48, 1) if order == "small_first" else (0.5, 0.5, 0.25, 0)
    assert out.coord.item() == pytest.approx((2 - w * h) * 0.5 * (math.log(w) ** 2 + math.log(h) ** 2), rel=1e-5)
    assert out.obj.item() == pytest.approx(5 * 0.5 * (iou - 0.5) ** 2, rel=1e-5)
    ce = math.log(1 + math.exp(2.0)) if cls == 1 else math.log(1 + math.exp(-2.0))
    assert out.cls.item() == pytest.approx(ce, rel=1e-5)
    assert out.num_truths == 2


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


def test_statistics_are_optional_and_change_nothing_else() -> None:
    """``stats=False`` (a training step that is not logged) skips darknet's printed statistics only: the same
    loss terms and the same gradient; ``stats=True`` gives hand-checkable values (one truth, its responsible
    predictor's box equal to the truth: avg IoU 1, recall 1)."""
    torch.manual_seed(0)
    raw = torch.randn(2, 2 * 8, 4, 4)
    raw[0, 0:4, 1, 2] = 0.0  # anchor 0 at cell (x 2, y 1): sigmoid 0.5 -> centre (2.5 / 4, 1.5 / 4), size = prior
    truths = torch.tensor([[[2.5 / 4, 1.5 / 4, 0.25, 0.25, 1.0]], [[0.3, 0.7, 0.4, 0.2, 2.0]]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    anchors = torch.tensor([[1.0, 1.0], [3.0, 2.0]])
    grads = []
    outs = []
    for stats in (True, False):
        x = raw.clone().requires_grad_(True)
        out = RegionLoss(3)(x, truths, mask, anchors, seen=20000, stats=stats)
        out.loss.backward()
        grads.append(x.grad)
        outs.append(out)
    full, lean = outs
    assert torch.equal(grads[0], grads[1]) and grads[0].abs().sum() > 0
    for k in ("loss", "coord", "obj", "noobj", "cls"):
        assert torch.equal(getattr(full, k), getattr(lean, k))
    assert lean.avg_iou is None and lean.recall is None and lean.avg_cat is None and lean.num_truths == 2
    one = RegionLoss(3)(raw[:1], truths[:1], mask[:1], anchors, seen=20000)
    assert one.avg_iou.item() == pytest.approx(1.0, abs=1e-6) and one.recall.item() == 1.0


def _fixture_loss(name: str) -> tuple[RegionLoss, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """A darknet fixture as (RegionLoss, raw, targets, mask, anchors, seen)."""
    d = np.load(FIX / f"{name}.npz")
    meta = json.loads(str(d["meta"]))
    tree = WordTree.from_file(FIX / meta["tree"]) if meta["tree"] else None
    keys = ("thresh", "object_scale", "noobject_scale", "class_scale", "coord_scale")
    crit = RegionLoss(meta["classes"], rescore=bool(meta["rescore"]), tree=tree, **{k: meta[k] for k in keys})
    truth = torch.tensor(d["truth"])
    mask = torch.cumprod((truth[..., 0] != 0).long(), dim=1).bool()
    anchors = torch.tensor(meta["anchors"], dtype=torch.float32).reshape(-1, 2)
    return crit, torch.tensor(d["input"]), truth, mask, anchors, meta["seen"]


@pytest.mark.parametrize("name", sorted(p.stem for p in FIX.glob("region_*.npz")))
def test_assignment_made_ahead_gives_the_same_loss(name: str) -> None:
    """The truths' assignment made before the loss (the host's, in training: ``assign_truths``) gives the loss and
    gradient of the loss that makes it itself, on darknet's fixtures; a different assignment (the last winning
    truth dropped) gives another loss: the one passed is the one used."""
    crit, raw, truth, mask, anchors, seen = _fixture_loss(name)
    hw = tuple(raw.shape[-2:])
    runs = []
    made = assign_truths(truth, mask, anchors, hw)
    assert len(made.win) > 1
    for assignment in (None, made, made._replace(win=made.win[:-1])):
        x = raw.clone().requires_grad_(True)
        out = crit(x, truth, mask, anchors, seen, assignment=assignment)
        out.loss.backward()
        runs.append((out, x.grad))
    (inside, g_in), (ahead, g_ahead), (other, g_other) = runs
    for k in ("loss", "coord", "obj", "noobj", "cls", "avg_iou", "recall"):
        assert torch.equal(getattr(inside, k), getattr(ahead, k)), k
    assert torch.equal(g_in, g_ahead)
    assert not torch.equal(g_in, g_other) and other.loss.item() != inside.loss.item()


def test_assign_truths_by_hand() -> None:
    """Hand-checked assignment: image 0 has two truths on one predictor (the later one wins) and one elsewhere,
    and a padding row; image 1 is classification-only (its first classification row, row 1, labels it)."""
    anchors = torch.tensor([[1.0, 1.0], [3.0, 3.0]])  # 4 x 4 grid: priors .25 and .75 of the image
    mark = 2e5
    targets = torch.tensor(
        [
            [[0.30, 0.60, 0.20, 0.20, 0.0], [0.40, 0.70, 0.25, 0.30, 1.0], [0.9, 0.1, 0.7, 0.8, 2.0], [0, 0, 0, 0, 0]],
            [[0.5, 0.5, 0.1, 0.1, 1.0], [mark, mark, 1.0, 1.0, 2.0], [mark, mark, 1.0, 1.0, 0.0], [0, 0, 0, 0, 0]],
        ]
    )
    mask = torch.tensor([[True, True, True, False], [False, True, True, False]])
    a = assign_truths(targets, mask, anchors, (4, 4))
    assert a.b_idx.tolist() == [0, 0, 0] and a.t_idx.tolist() == [0, 1, 2]
    assert a.cell.tolist() == [[1, 2], [1, 2], [3, 0]]  # (int(x * 4), int(y * 4))
    assert a.best_n.tolist() == [0, 0, 1]  # .2 x .2 and .25 x .3 fit the small prior, .7 x .8 the large one
    assert a.win.tolist() == [1, 2]  # truth 0 shares (image 0, prior 0, cell (1, 2)) with the later truth 1
    assert a.co_b.tolist() == [1] and a.co_row.tolist() == [1]


def test_assignment_ahead_refused_without_bias_match() -> None:
    """``bias_match=False`` matches by the predicted shapes: an assignment made from the truths alone is refused."""
    truth = torch.tensor([[[0.5, 0.5, 0.5, 0.5, 0.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    anchors = torch.ones(2, 2)
    made = assign_truths(truth, mask, anchors, (1, 1))
    with pytest.raises(ValueError, match="bias_match=False"):
        RegionLoss(1, bias_match=False)(torch.zeros(1, 12, 1, 1), truth, mask, anchors, 0, assignment=made)


def test_gradient_comes_back_in_the_head_outputs_memory_layout() -> None:
    """An NHWC head output (a channels_last network) gets its gradient in NHWC, an NCHW one in NCHW, with the same
    values and loss: the network's backward pass then runs in its own layout (no NCHW gradient into NHWC convs)."""
    crit, raw, truth, mask, anchors, seen = _fixture_loss("region_voc13_seen0")
    out = {}
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = raw.clone().contiguous(memory_format=fmt).requires_grad_(True)
        loss = crit(x, truth, mask, anchors, seen).loss
        loss.backward()
        out[fmt] = (loss, x.grad)
    (l_nchw, g_nchw), (l_nhwc, g_nhwc) = out[torch.contiguous_format], out[torch.channels_last]
    assert g_nchw.is_contiguous() and not g_nhwc.is_contiguous()
    assert g_nhwc.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(l_nchw, l_nhwc) and torch.equal(g_nchw, g_nhwc)
