"""The region loss against darknet's own outputs (fixtures) and hand-computed values."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo9000.checkpoints import WORDTREE_DIR
from yolo9000.loss import CLASSONLY_MARK, RegionLoss, assign_truths, region_loss_darknet
from yolo9000.wordtree import WordTree

FIX = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize("name", sorted(p.stem for p in FIX.glob("region_*.npz")))
def test_gradient_matches_darknet(name: str) -> None:
    d = np.load(FIX / f"{name}.npz")
    meta = json.loads(str(d["meta"]))
    x = torch.tensor(d["input"], requires_grad=True)
    tree = _fixture_tree(meta)
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
        bias_match=bool(meta.get("bias_match", 1)),
        softmax=bool(meta.get("softmax", 1)),
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
# yolo-voc.cfg's [region] scales and flags (the transcription's settings unless a test varies them)
DARKNET_SCALES = {
    "object_scale": 5.0,
    "noobject_scale": 1.0,
    "class_scale": 1.0,
    "coord_scale": 1.0,
    "rescore": 1,
    "bias_match": 1,
}


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


def _fixture_tree(meta: dict) -> WordTree | None:
    """A fixture's WordTree: its file beside the fixtures, else darknet's (``9k.tree`` in the vendored wordtree)."""
    if not meta.get("tree"):
        return None
    path = FIX / meta["tree"]
    return WordTree.from_file(path if path.is_file() else WORDTREE_DIR / Path(meta["tree"]).name)


def _fixture_loss(name: str) -> tuple[RegionLoss, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, int]:
    """A darknet fixture as (RegionLoss, raw, targets, mask, anchors, seen)."""
    d = np.load(FIX / f"{name}.npz")
    meta = json.loads(str(d["meta"]))
    tree = _fixture_tree(meta)
    keys = ("thresh", "object_scale", "noobject_scale", "class_scale", "coord_scale")
    crit = RegionLoss(
        meta["classes"],
        rescore=bool(meta["rescore"]),
        tree=tree,
        bias_match=bool(meta.get("bias_match", 1)),
        class_activation="softmax" if meta.get("softmax", 1) else "logistic",
        **{k: meta[k] for k in keys},
    )
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
    if not crit.bias_match:
        pytest.skip("bias_match=0 matches by the predicted shapes: no assignment ahead (refused, tested below)")
    hw = tuple(raw.shape[-2:])
    runs = []
    made = assign_truths(truth, mask, anchors, hw)
    assert len(made.win) >= 1
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


@pytest.mark.slow  # inductor builds C++ for each fixture's loss: ~30 s each on 2 cores
@pytest.mark.parametrize("name", sorted(p.stem for p in FIX.glob("region_*.npz")))
def test_compiled_loss_gives_darknets_gradient(name: str) -> None:
    """``model.fast.compile_loss``: the deltas compiled by inductor (fused C++ kernels, dynamic shapes) give
    darknet's gradient on its fixtures (flat and tree heads, before and after the prior term), as the eager loss
    does, and the same loss terms as the eager loss to float rounding."""
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    crit, raw, truth, mask, anchors, seen = _fixture_loss(name)
    eager = crit(raw.clone().requires_grad_(True), truth, mask, anchors, seen)
    x = raw.clone().requires_grad_(True)
    out = crit.compile_deltas()(x, truth, mask, anchors, seen)
    out.loss.backward()
    assert counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"] >= 1
    np.testing.assert_allclose(x.grad.numpy(), np.load(FIX / f"{name}.npz")["grad_input"], rtol=1e-4, atol=1e-5)
    for k in ("coord", "obj", "noobj", "cls", "avg_iou", "recall", "avg_obj", "avg_anyobj", "avg_cat"):
        assert float(getattr(out, k)) == pytest.approx(float(getattr(eager, k)), rel=1e-5, abs=1e-6), k


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


# ---------------------------------------------------------------- darknet's C, transcribed loop for loop
def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> np.float32:
    """darknet's ``box_iou`` of two (x, y, w, h) centre-size boxes, in float32 as its C."""
    a32, b32 = np.float32(a), np.float32(b)

    def overlap(x1: np.float32, w1: np.float32, x2: np.float32, w2: np.float32) -> np.float32:
        left = max(x1 - w1 / np.float32(2), x2 - w2 / np.float32(2))
        right = min(x1 + w1 / np.float32(2), x2 + w2 / np.float32(2))
        return np.float32(right - left)

    w = overlap(a32[0], a32[2], b32[0], b32[2])
    h = overlap(a32[1], a32[3], b32[1], b32[3])
    inter = np.float32(0) if w < 0 or h < 0 else np.float32(w * h)
    union = np.float32(a32[2] * a32[3] + b32[2] * b32[3] - inter)
    return np.float32(inter / union)


def _darknet_region_delta(raw: np.ndarray, truth: np.ndarray, meta: dict) -> np.ndarray:
    """``l.delta`` of darknet's ``forward_region_layer`` (flat head, coords = 4, no background, no map; ``softmax``
    from the meta, 1 unless it says 0: logistic classes), transcribed from its C: the activations, the
    per-predictor no-object and prior terms, then every truth in order (``delta_region_box``, the objectness,
    ``delta_region_class`` with its ``tag = !softmax``). Returns (B, A, 5 + C, H, W)."""
    a_n, classes = meta["num_anchors"], meta["classes"]
    bsz, _, h, w = raw.shape
    bias = np.asarray(meta["anchors"], np.float32)
    x = raw.reshape(bsz, a_n, 5 + classes, h, w).astype(np.float32)
    out = x.copy()
    out[:, :, [0, 1, 4]] = 1 / (1 + np.exp(-x[:, :, [0, 1, 4]].astype(np.float64)))
    logits = x[:, :, 5:].astype(np.float64)
    softmax = bool(meta.get("softmax", 1))
    if softmax:
        e = np.exp(logits - logits.max(2, keepdims=True))
        out[:, :, 5:] = e / e.sum(2, keepdims=True)
    else:  # activate_array(..., LOGISTIC) on the classes
        out[:, :, 5:] = 1 / (1 + np.exp(-logits))
    delta = np.zeros_like(out)

    def region_box(b: int, n: int, i: int, j: int) -> tuple[float, ...]:  # get_region_box
        o = out[b, n, :, j, i]
        return (
            (i + o[0]) / np.float32(w),
            (j + o[1]) / np.float32(h),
            np.float32(math.exp(o[2]) * bias[2 * n] / w),
            np.float32(math.exp(o[3]) * bias[2 * n + 1] / h),
        )

    def delta_box(tb: tuple[float, ...], b: int, n: int, i: int, j: int, scale: float) -> np.float32:
        iou = _box_iou(region_box(b, n, i, j), tb)
        o = out[b, n, :, j, i]
        targets = (
            tb[0] * w - i,
            tb[1] * h - j,
            math.log(tb[2] * w / bias[2 * n]),
            math.log(tb[3] * h / bias[2 * n + 1]),
        )
        for k in range(4):
            delta[b, n, k, j, i] = scale * (targets[k] - o[k])
        return iou

    for b in range(bsz):
        rows = [tuple(np.float32(v) for v in r) for r in truth[b]]
        rows = rows[: next((t for t, r in enumerate(rows) if not r[0]), len(rows))]  # the list ends at x == 0
        for j in range(h):
            for i in range(w):
                for n in range(a_n):
                    pred = region_box(b, n, i, j)
                    best = max([_box_iou(pred, r[:4]) for r in rows], default=np.float32(0))
                    delta[b, n, 4, j, i] = meta["noobject_scale"] * (0 - out[b, n, 4, j, i])
                    if best > meta["thresh"]:
                        delta[b, n, 4, j, i] = 0
                    if meta["seen"] < 12800:
                        prior = ((i + 0.5) / w, (j + 0.5) / h, bias[2 * n] / w, bias[2 * n + 1] / h)
                        delta_box(tuple(np.float32(v) for v in prior), b, n, i, j, 0.01)
        for r in rows:
            i, j = int(np.float32(r[0] * np.float32(w))), int(np.float32(r[1] * np.float32(h)))
            best_iou, best_n = np.float32(0), 0
            for n in range(a_n):
                pred = region_box(b, n, i, j)
                if meta["bias_match"]:
                    pred = (pred[0], pred[1], bias[2 * n] / np.float32(w), bias[2 * n + 1] / np.float32(h))
                iou = _box_iou((0.0, 0.0, pred[2], pred[3]), (0.0, 0.0, r[2], r[3]))
                if iou > best_iou:
                    best_iou, best_n = iou, n
            n = best_n
            iou = delta_box(r[:4], b, n, i, j, meta["coord_scale"] * (2 - r[2] * r[3]))
            o = out[b, n, 4, j, i]
            target = iou if meta["rescore"] else 1.0
            delta[b, n, 4, j, i] = meta["object_scale"] * (target - o)
            cls = int(r[4])
            if not softmax and delta[b, n, 5, j, i]:  # delta_region_class: `if (delta[index] && tag)`
                delta[b, n, 5 + cls, j, i] = meta["class_scale"] * (1 - out[b, n, 5 + cls, j, i])
                continue
            for c in range(classes):
                delta[b, n, 5 + c, j, i] = meta["class_scale"] * ((c == cls) - out[b, n, 5 + c, j, i])
    return delta


def _region_case(
    seed: int, h: int, w: int, classes: int, truths: int, **settings: float
) -> tuple[np.ndarray, np.ndarray, dict]:
    """A random head output and truths (some pairs in one cell, one of them also of one shape), and a meta."""
    g = np.random.default_rng(seed)
    anchors = [0.57, 0.68, 1.87, 2.06, 3.34, 5.47, 7.88, 3.53, 9.77, 9.17][: 2 * 4]
    a_n = len(anchors) // 2
    raw = g.normal(0, 1.2, (2, a_n * (5 + classes), h, w)).astype(np.float32)
    truth = np.zeros((2, 30, 5), np.float32)
    for b in range(2):
        xy = g.uniform(0.02, 0.98, (truths, 2))
        wh = g.uniform(0.04, 0.9, (truths, 2))
        xy[1] = xy[0] + 0.3 / max(h, w)  # often the same cell as truth 0
        wh[2], xy[2] = wh[0], xy[0]  # one exact duplicate position and shape, another class
        truth[b, :truths] = np.column_stack([xy, wh, g.integers(0, classes, truths)])
    meta = {
        "num_anchors": a_n,
        "classes": classes,
        "anchors": anchors,
        "seen": 0,
        "thresh": 0.6,
        **DARKNET_SCALES,
    }
    return raw, truth, meta | settings


def _darknet_grad(raw: np.ndarray, truth: np.ndarray, meta: dict) -> np.ndarray:
    """d(batch-summed loss)/d(raw) of darknet's training path: -delta, times the sigmoid's derivative on x, y and
    the objectness (as ``backward_region_layer_gpu`` applies it)."""
    delta = _darknet_region_delta(raw, truth, meta)
    bsz, _, h, w = raw.shape
    x = raw.reshape(delta.shape).astype(np.float64)
    grad = -delta.astype(np.float64)
    s = 1 / (1 + np.exp(-x[:, :, [0, 1, 4]]))
    grad[:, :, [0, 1, 4]] *= s * (1 - s)
    return grad.reshape(raw.shape)


def _port_grad(raw: np.ndarray, truth: np.ndarray, meta: dict) -> np.ndarray:
    x = torch.tensor(raw, requires_grad=True)
    keys = ("seen", "thresh", "object_scale", "noobject_scale", "class_scale", "coord_scale")
    region_loss_darknet(
        x,
        torch.tensor(truth),
        anchors=meta["anchors"],
        num_classes=meta["classes"],
        rescore=bool(meta["rescore"]),
        bias_match=bool(meta["bias_match"]),
        softmax=bool(meta.get("softmax", 1)),
        **{k: meta[k] for k in keys},
    ).backward()
    return x.grad.numpy()


@pytest.mark.parametrize("name", ["region_voc13_seen12800", "region_voc13_seen0"])
def test_transcription_reproduces_darknets_fixtures(name: str) -> None:
    """The transcription above is darknet's: it reproduces darknet's own files (so it can judge other settings)."""
    d = np.load(FIX / f"{name}.npz")
    meta = json.loads(str(d["meta"]))
    delta = _darknet_region_delta(d["input"], d["truth"], meta)
    np.testing.assert_allclose(delta.reshape(d["delta"].shape), d["delta"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_darknet_grad(d["input"], d["truth"], meta), d["grad_input"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("case", "grid", "classes", "settings"),
    [
        ("rectangular grid, 80 classes", (5, 9), 80, {}),
        ("no rescore, after 12800", (7, 7), 3, {"rescore": 0, "seen": 12800}),
        ("bias_match off", (6, 4), 5, {"bias_match": 0}),
        ("bias_match off, no rescore, seen", (4, 6), 5, {"bias_match": 0, "rescore": 0, "seen": 40000}),
        (
            "other scales and threshold",
            (8, 8),
            20,
            {"thresh": 0.3, "object_scale": 3.0, "noobject_scale": 0.5, "class_scale": 2.0, "coord_scale": 1.5},
        ),
        ("logistic classes (softmax=0)", (7, 5), 6, {"softmax": 0}),
        ("logistic classes, class_scale 2, after 12800", (6, 6), 4, {"softmax": 0, "class_scale": 2.0, "seen": 13000}),
    ],
)
def test_gradient_equals_darknet_c_transcription(
    case: str, grid: tuple[int, int], classes: int, settings: dict
) -> None:
    """Settings darknet's fixtures do not cover (grids of other shapes, many classes, rescore and bias_match off,
    other scales, many truths sharing cells), against darknet's C transcribed; the settings matter: the same
    output scored with each switch flipped gives another gradient."""
    raw, truth, meta = _region_case(sum(map(ord, case)), *grid, classes, truths=12, **settings)
    want = _darknet_grad(raw, truth, meta)
    np.testing.assert_allclose(_port_grad(raw, truth, meta), want, rtol=1e-4, atol=1e-5)
    for key in ("rescore", "bias_match", "softmax"):
        flipped = meta | {key: 1 - meta.get(key, 1)}
        assert not np.allclose(_darknet_grad(raw, truth, flipped), want, rtol=1e-4, atol=1e-5), key


# ---- rules pinned by hand-computed cases (each found untested by a mutation audit) -----------------------------
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
        **DARKNET_SCALES,
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
