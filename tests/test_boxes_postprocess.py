"""Box decode / IoU / mapping back, and the decode + NMS pipeline, against hand-computed values and a plain
reference implementation (per image, per class loops); its work stays bounded in the worst case."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torchvision.ops import batched_nms, box_convert, box_iou, nms

import yolo9000.postprocess as postprocess_module
from yolo9000.boxes import (
    activate_xy,
    box_iou_cxcywh,
    box_iou_paired,
    cell_grid,
    cxcywh_to_xyxy_pixels,
    decode_boxes,
    decode_boxes_at,
    split_region,
    wh_iou,
    whwh,
)
from yolo9000.data.resize import boxes_to_original
from yolo9000.data.transforms import DetectionTransform
from yolo9000.postprocess import class_nms, postprocess
from yolo9000.wordtree import WordTree


def test_decode_direct_hand_computed() -> None:
    xy = torch.full((1, 1, 2, 2, 2), 0.25)
    wh = torch.zeros(1, 1, 2, 2, 2)
    wh[..., 0] = math.log(2.0)
    boxes = decode_boxes(xy, wh, torch.tensor([[1.0, 0.5]]), "direct")
    # cell (i=1, j=0): bx = (1 + .25) / 2, by = (0 + .25) / 2, bw = 2 * 1 / 2, bh = 1 * .5 / 2
    torch.testing.assert_close(boxes[0, 0, 0, 1], torch.tensor([0.625, 0.125, 1.0, 0.25]))
    off = decode_boxes(
        torch.full((1, 1, 2, 2, 2), 0.5), torch.zeros(1, 1, 2, 2, 2), torch.tensor([[2.0, 2.0]]), "offset"
    )
    # offset: bx = (i + .5 + tx * prior) / W = (1 + .5 + 1) / 2
    assert off[0, 0, 0, 1, 0].item() == pytest.approx(1.25)


def test_iou_matches_torchvision() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.rand(7, 4, generator=g) * 0.5 + 0.1
    b = torch.rand(5, 4, generator=g) * 0.5 + 0.1
    ours = box_iou_cxcywh(a, b)
    ref = box_iou(box_convert(a, "cxcywh", "xyxy"), box_convert(b, "cxcywh", "xyxy"))
    torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-6)
    assert wh_iou(torch.tensor([[2.0, 2.0]]), torch.tensor([[1.0, 4.0]])).item() == pytest.approx(1 / 3)


def test_iou_broadcasts_batches_and_planes_decode_matches_channel_last() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 1, 3, 4, generator=g) * 0.5 + 0.1  # (B, 1, M, 4) truths
    b = torch.rand(2, 4, 6, 4, generator=g) * 0.5 + 0.1  # (B, A, N, 4) predictions
    a[0, 0, 0] = torch.tensor([0.1, 0.1, 0.05, 0.05])  # far from every prediction below: IoU exactly 0
    b[0, :, :, :2] = 0.8
    ours = box_iou_cxcywh(a, b)  # (B, A, M, N)
    assert ours.shape == (2, 4, 3, 6) and (ours[0, :, 0] == 0).all()
    for i in range(2):
        for k in range(4):
            ref = box_iou(box_convert(a[i, 0], "cxcywh", "xyxy"), box_convert(b[i, k], "cxcywh", "xyxy"))
            torch.testing.assert_close(ours[i, k], ref, rtol=1e-5, atol=1e-6)
    anchors = torch.tensor([[1.0, 2.0], [3.0, 0.5]])
    xy, wh = torch.rand(2, 2, 3, 5, 2, generator=g), torch.randn(2, 2, 3, 5, 2, generator=g)
    for loc in ("direct", "offset"):
        last = decode_boxes(xy, wh, anchors, loc)  # (B, A, H, W, 4)
        planes = decode_boxes(xy.movedim(-1, 2), wh.movedim(-1, 2), anchors, loc, coord_dim=2)
        assert torch.equal(planes.movedim(2, -1), last)


def test_decoding_chosen_boxes_gives_the_dense_decodes_floats() -> None:
    """postprocess decodes only the candidates: each chosen box (image, anchor-major box index over a non-square
    grid) is exactly that box of the dense decode, for both location parametrisations."""
    g = torch.Generator().manual_seed(3)
    anchors = torch.tensor([[1.0, 2.0], [3.0, 0.5], [0.7, 0.9]])
    reg = split_region(torch.randn(2, 3 * 7, 4, 5, generator=g) * 2, 3)  # 2 classes, H=4, W=5
    image = torch.tensor([0, 1, 1, 0, 1])
    box = torch.tensor([0, 59, 23, 41, 7])  # (a, y, x) = (0,0,0), (2,3,4), (1,0,3), (2,0,1), (0,1,2)
    for loc in ("direct", "offset"):
        dense = decode_boxes(activate_xy(reg.xy, loc), reg.wh, anchors, loc).reshape(2, -1, 4)
        chosen = decode_boxes_at(reg, image, box, anchors, loc)
        assert torch.equal(chosen, dense[image, box])
    # hand check of one: image 1, anchor 2, row 3, column 4 (direct): bx = (4 + sigmoid(tx)) / 5
    tx = reg.xy[1, 2, 3, 4, 0]
    assert decode_boxes_at(reg, image[1:2], box[1:2], anchors)[0, 0].item() == pytest.approx(
        (4 + torch.sigmoid(tx).item()) / 5
    )


def test_paired_iou_is_the_pairwise_diagonal_and_cached_sizes_outlive_inference_mode() -> None:
    """``box_iou_paired`` is the diagonal of ``box_iou_cxcywh`` to the bit (one arithmetic); the cached grid and size
    tensors, first made under inference mode (Lightning's validation), are ordinary tensors: autograd may save them
    later (an inference tensor cannot be saved for backward)."""
    g = torch.Generator().manual_seed(5)
    a, b = torch.rand(9, 4, generator=g) * 0.5 + 0.1, torch.rand(9, 4, generator=g) * 0.5 + 0.1
    b[0] = a[0]  # identical: IoU 1; far apart: 0
    b[1, :2] = a[1, :2] + 0.9
    paired = box_iou_paired(a, b)
    assert torch.equal(paired, box_iou_cxcywh(a, b).diagonal())
    assert paired[0].item() == pytest.approx(1.0) and paired[1].item() == 0.0
    with torch.inference_mode():
        size, grid = whwh(37, 41, torch.float32, torch.device("cpu")), cell_grid(41, 37)  # sizes no test uses
    assert not size.is_inference() and not grid.is_inference()
    x = torch.ones(4, requires_grad=True)
    (x * whwh(37, 41, torch.float32, torch.device("cpu"))).sum().backward()  # saved for backward: no error
    assert x.grad.tolist() == [37.0, 41.0, 37.0, 41.0] and grid[40, 36].tolist() == [36.0, 40.0]


@pytest.mark.parametrize("num_classes", [3, 20])  # the softmax over the class planes (< 16), along the classes (>= 16)
def test_candidate_scores_are_objectness_times_softmax(num_classes: int) -> None:
    g = torch.Generator().manual_seed(num_classes)
    reg = split_region(torch.randn(2, 3 * (5 + num_classes), 4, 5, generator=g) * 2, 3)
    obj = reg.obj.sigmoid()
    image, box, label, score = postprocess_module.flat_candidates(obj, reg.cls, 0.01, None)
    ref = (obj.unsqueeze(-1) * torch.softmax(reg.cls.double(), -1)).reshape(2, -1, num_classes)  # (B, N, C)
    assert len(score) == int((ref > 0.01).sum()) > 20  # the pairs above the threshold (none within rounding of it)
    torch.testing.assert_close(score.double(), ref[image, box, label], rtol=1e-6, atol=1e-7)
    assert all((score[image == i][:-1] >= score[image == i][1:]).all() for i in range(2))  # by decreasing score


def test_map_back_to_original_pixels() -> None:
    # letterbox a 200x100 (w x h) image into 64x64: scale .32, pad_y = (64 - 32) / 2 = 16
    t = torch.tensor([[0.32, 0.32, 0.0, 16.0]])
    box = torch.tensor([[[0.5, 0.5, 0.5, 0.25]]])  # net pixels: centre (32, 32), 32 x 16 -> xyxy 16,24,48,40
    out = boxes_to_original(cxcywh_to_xyxy_pixels(box, (64, 64)), t)
    torch.testing.assert_close(out[0, 0], torch.tensor([50.0, 25.0, 150.0, 75.0]))
    clipped = boxes_to_original(torch.tensor([[[-8.0, 0.0, 70.0, 60.0]]]), t, torch.tensor([[100, 200]]))
    torch.testing.assert_close(clipped[0, 0], torch.tensor([0.0, 0.0, 200.0, 100.0]))  # clipped to the image


def test_transform_resize_and_its_inverse_are_one_geometry() -> None:
    """The eval transform resizes an image alone and maps boxes of its output back: a box drawn at known original
    pixels comes back where it was, stretched or letterboxed."""
    import numpy as np

    image = np.random.default_rng(0).integers(0, 256, (100, 200, 3), dtype=np.uint8)
    box = torch.tensor([[20.0, 10.0, 120.0, 60.0]])
    for letterbox in (False, True):
        t = DetectionTransform(train=False, augment={"letterbox": letterbox})
        out, params = t.resize(image, 64)
        assert out.shape == (64, 64, 3)
        # the image alone gets exactly the pixels and geometry of the eval pipeline (the one evaluation runs)
        full = t(image, box.numpy(), np.zeros(1, np.int64), np.zeros(1, bool), 64)
        assert np.array_equal(out, full.image) and np.array_equal(params, full.params)
        sx, sy, px, py = params.tolist()
        net = box * torch.tensor([sx, sy, sx, sy]) + torch.tensor([px, py, px, py])  # where the box lands
        back = t.to_original(net[None], torch.from_numpy(params)[None], torch.tensor([[100, 200]]))
        torch.testing.assert_close(back[0], box, atol=1e-4, rtol=0)
    assert params.tolist() == pytest.approx([0.32, 0.32, 0.0, 16.0])  # letterbox: scale .32, pad_y 16


def _raw_with_box(num_classes: int = 2) -> torch.Tensor:
    raw = torch.full((1, 2 * (5 + num_classes), 2, 2), -10.0)  # 2 anchors, everything unlikely
    raw[0, 0:4, 0, 0] = 0.0  # anchor 0, cell (0, 0): centre (.25, .25), size prior
    raw[0, 4, 0, 0] = 10.0  # confident
    raw[0, 5, 0, 0] = 10.0  # class 0
    raw[0, 7:11, 0, 0] = 0.0  # anchor 1 same cell: same centre, prior 2 -> different size
    raw[0, 11, 0, 0] = 10.0
    raw[0, 12, 0, 0] = 10.0
    return raw


def test_postprocess_decodes_and_suppresses() -> None:
    anchors = torch.tensor([[1.0, 1.0], [1.1, 1.1]])
    dets = postprocess(_raw_with_box(), anchors, (64, 64), conf_thresh=0.3, nms_thresh=0.45)[0]
    # the two boxes (32 px and 35.2 px squares on the same centre, IoU .826) are one detection after NMS
    assert len(dets["boxes"]) == 1
    torch.testing.assert_close(dets["boxes"][0], torch.tensor([0.0, 0.0, 32.0, 32.0]), atol=1e-3, rtol=0)
    assert dets["labels"].tolist() == [0]
    # different classes are not suppressed against each other (class-aware NMS)
    raw = _raw_with_box()
    raw[0, 12, 0, 0], raw[0, 13, 0, 0] = -10.0, 10.0
    dets = postprocess(raw, anchors, (64, 64), conf_thresh=0.3)[0]
    assert sorted(dets["labels"].tolist()) == [0, 1]


# ---------------------------------------------------------------- bounded decode + NMS against a reference
def _reference(
    raw: torch.Tensor,
    anchors: torch.Tensor,
    input_hw: tuple[int, int],
    transforms: torch.Tensor,
    orig_sizes: torch.Tensor | None,
    conf_thresh: float,
    nms_thresh: float,
    max_det: int,
    tree: WordTree | None = None,
    tree_thresh: float = 0.5,
) -> list[dict[str, torch.Tensor]]:
    """darknet's decode written the plain way: per image, every (box, class) score, per-class NMS in a loop."""
    num_anchors = anchors.shape[0]
    bsz, _, h, w = raw.shape
    v = raw.view(bsz, num_anchors, -1, h, w).permute(0, 1, 3, 4, 2).reshape(bsz, num_anchors * h * w, -1)
    out = []
    for b in range(bsz):
        cells = torch.stack(torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij"), -1).reshape(-1, 2)
        cells = cells.repeat(num_anchors, 1).float()  # (N, 2) (row, col), anchor-major
        prior = anchors.repeat_interleave(h * w, 0)
        t = v[b]
        cx = (cells[:, 1] + t[:, 0].sigmoid()) / w * input_hw[1]
        cy = (cells[:, 0] + t[:, 1].sigmoid()) / h * input_hw[0]
        bw = t[:, 2].exp() * prior[:, 0] / w * input_hw[1]
        bh = t[:, 3].exp() * prior[:, 1] / h * input_hw[0]
        sx, sy, px, py = transforms[b].tolist()
        box = torch.stack(
            [(cx - bw / 2 - px) / sx, (cy - bh / 2 - py) / sy, (cx + bw / 2 - px) / sx, (cy + bh / 2 - py) / sy], -1
        )
        obj = t[:, 4].sigmoid()
        if tree is None:
            probs = obj[:, None] * t[:, 5:].softmax(-1)  # (N, C)
            labels = torch.arange(probs.shape[1]).expand_as(probs)
            ok = probs > conf_thresh
            cand_box, cand_s, cand_l = box[ok.nonzero()[:, 0]], probs[ok], labels[ok]
        else:
            rows, s, lab = [], [], []
            for n in range(len(obj)):
                if obj[n] <= conf_thresh:
                    continue
                cond = tree.softmax(t[n, 5:])
                node = int(tree.top_down(cond[None], tree_thresh)[0])
                p = obj[n] * tree.absolute(cond)[node]
                if p > conf_thresh:
                    rows.append(n), s.append(p), lab.append(node)
            cand_box = box[rows]
            cand_s = torch.stack(s) if s else torch.zeros(0)
            cand_l = torch.tensor(lab, dtype=torch.long)
        kept = []
        for c in cand_l.unique().tolist():
            idx = (cand_l == c).nonzero().flatten()
            kept.append(idx[nms(cand_box[idx], cand_s[idx], nms_thresh)])
        k = torch.cat(kept) if kept else torch.zeros(0, dtype=torch.long)
        k = k[cand_s[k].argsort(descending=True)][:max_det]
        # darknet clips only the kept boxes (draw_detections / print_detector_detections), after do_nms_sort
        kb = cand_box[k]
        if orig_sizes is not None:
            oh, ow = orig_sizes[b].tolist()
            kb = torch.stack(
                [kb[:, 0].clamp(0, ow), kb[:, 1].clamp(0, oh), kb[:, 2].clamp(0, ow), kb[:, 3].clamp(0, oh)], -1
            )
        out.append({"boxes": kb, "scores": cand_s[k], "labels": cand_l[k]})
    return out


def _random_case(seed: int, num_classes: int, big_boxes: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    bsz, num_anchors, h, w = 3, 3, 4, 5  # non-square grid: catches H / W swaps
    raw = torch.randn(bsz, num_anchors * (5 + num_classes), h, w, generator=g)
    if big_boxes:  # boxes covering most of the image: heavier suppression (NMS widening: test_decode_nms_ap_rules)
        raw.view(bsz, num_anchors, 5 + num_classes, h, w)[:, :, 2:4] += 1.5
    anchors = torch.rand(num_anchors, 2, generator=g) * 2 + 0.5
    transforms = torch.tensor([[1.0, 1.0, 0.0, 0.0], [0.5, 0.5, 0.0, 16.0], [2.0, 1.5, 3.0, 0.0]])
    orig_sizes = torch.tensor([[128, 160], [160, 320], [80, 60]])
    return {"raw": raw, "anchors": anchors, "input_hw": (128, 160), "transforms": transforms, "orig_sizes": orig_sizes}


def _assert_same(got: list[dict[str, torch.Tensor]], want: list[dict[str, torch.Tensor]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert g["labels"].tolist() == w["labels"].tolist()
        torch.testing.assert_close(g["scores"], w["scores"])
        torch.testing.assert_close(g["boxes"], w["boxes"], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("num_classes", [1, 7, 30])
@pytest.mark.parametrize("big_boxes", [False, True])
@pytest.mark.parametrize("max_det", [4, 1000])
def test_postprocess_equals_reference(num_classes: int, big_boxes: bool, max_det: int) -> None:
    case = _random_case(num_classes + 10 * big_boxes, num_classes, big_boxes)
    want = _reference(**case, conf_thresh=0.02, nms_thresh=0.45, max_det=max_det)
    assert sum(len(w["scores"]) for w in want) > 0
    for cap in (None, 100_000):  # no cap, and a cap that does not bind
        got = postprocess(**case, conf_thresh=0.02, nms_thresh=0.45, max_det=max_det, pre_nms_topk=cap)
        _assert_same(got, want)


def test_postprocess_wordtree_equals_reference() -> None:
    tree = WordTree.from_file(Path(__file__).parent / "fixtures" / "small.tree")
    case = _random_case(3, tree.n, big_boxes=False)
    case["raw"] = case["raw"] * 2  # sharper conditionals: decodes stop at leaves and at inner nodes
    want = _reference(**case, conf_thresh=0.05, nms_thresh=0.45, max_det=50, tree=tree, tree_thresh=0.3)
    got = postprocess(
        **case, conf_thresh=0.05, nms_thresh=0.45, max_det=50, tree=tree, tree_thresh=0.3, tree_decode="paper"
    )
    labels = torch.cat([w["labels"] for w in want])
    assert len(labels.unique()) > 2 and bool((tree.child_group[labels] >= 0).any())  # inner nodes too
    _assert_same(got, want)


def test_pre_nms_topk_keeps_the_highest_scores() -> None:
    case = _random_case(5, 2, big_boxes=True)
    case["orig_sizes"] = None  # unclipped boxes: the NMS below runs on the reference's boxes as postprocess does
    raw = case["raw"]
    # every (box, class) pair above the threshold: 3 * 4 * 5 * 2 = 120 candidates per image
    want = _reference(**case, conf_thresh=0.0, nms_thresh=1.0, max_det=10_000)  # no suppression at IoU > 1
    assert all(len(w["scores"]) == 120 for w in want)
    got = postprocess(**case, conf_thresh=0.0, nms_thresh=1.0, max_det=10_000, pre_nms_topk=25)
    _assert_same(got, [{k: v[:25] for k, v in w.items()} for w in want])
    # with NMS: the reference applied to the 25 best candidates of each image
    got = postprocess(**case, conf_thresh=0.0, nms_thresh=0.3, max_det=10_000, pre_nms_topk=25)
    for g, w in zip(got, want, strict=True):
        top = {k: v[:25] for k, v in w.items()}
        keep = batched_nms(top["boxes"], top["scores"], top["labels"], 0.3)
        assert 0 < len(keep) < 25
        _assert_same([g], [{k: v[keep] for k, v in top.items()}])
    assert raw.shape[0] == len(got)


def test_max_det_none_keeps_every_detection() -> None:
    """darknet has no per-image cap: ``max_det=None`` keeps all 120 candidates, an int keeps the best ones."""
    case = _random_case(5, 2, big_boxes=True)
    want = _reference(**case, conf_thresh=0.0, nms_thresh=1.0, max_det=10_000)
    got = postprocess(**case, conf_thresh=0.0, nms_thresh=1.0, max_det=None, pre_nms_topk=None)
    assert [len(g["scores"]) for g in got] == [120] * len(want)
    _assert_same(got, want)
    capped = postprocess(**case, conf_thresh=0.0, nms_thresh=1.0, max_det=100, pre_nms_topk=None)
    _assert_same(capped, [{k: v[:100] for k, v in w.items()} for w in want])


@pytest.mark.parametrize("method", ["per_image", "per_image_runs", "rounds", "matrix", "matrix_chunked"])
def test_class_nms_every_method_equals_batched_nms(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if method == "matrix_chunked":  # one image per chunk of the IoU matrices
        monkeypatch.setattr(postprocess_module, "_MATRIX_PAIRS", 1)
        method = "matrix"
    if method == "per_image_runs":  # every image in one call (boxes of different images overlap)
        monkeypatch.setattr(postprocess_module, "_NMS_RUN", 10**6)
        method = "per_image"
    g = torch.Generator().manual_seed(0)
    num = 600
    image = torch.randint(0, 4, (num,), generator=g).sort().values
    scores = torch.rand(num, generator=g)
    order = torch.argsort(image * 2 - scores)  # by image, then by decreasing score
    image, scores = image[order], scores[order]
    xy = torch.rand(num, 2, generator=g) * 100
    boxes = torch.cat([xy, xy + torch.rand(num, 2, generator=g) * 60 + 1], 1)
    label = torch.randint(0, 5, (num,), generator=g)
    for max_det in (3, 20, 100, 1000):
        got = class_nms(boxes, scores, image, label, 0.5, 5, max_det, method=method)  # type: ignore[arg-type]
        assert len(got) == 5 and len(got[4]) == 0  # image 4 has no candidates
        for b in range(4):
            idx = (image == b).nonzero().flatten()
            ref = idx[batched_nms(boxes[idx], scores[idx], label[idx], 0.5)][:max_det]
            assert got[b].tolist() == ref.tolist()


@pytest.mark.parametrize("method", ["per_image", "rounds", "matrix"])
def test_class_nms_suppressed_boxes_suppress_nothing(method: str) -> None:
    """A chain of boxes, each overlapping the next by IoU 0.6 and the one after by 1/3 (threshold 0.5): greedy NMS
    keeps every other box (a suppressed box suppresses nothing); one pass of the IoU matrix would keep the first
    alone, two of another class beside the chain stay."""
    x = torch.arange(9, dtype=torch.float64) * 2.5  # 10-wide boxes shifted by 2.5: IoU 7.5 / 12.5 = 0.6 ...
    boxes = torch.cat([torch.stack([x, x * 0, x + 10, x * 0 + 10], 1), torch.tensor([[0.0, 0, 10, 10]] * 2)]).float()
    scores = torch.linspace(1.0, 0.1, 11)
    label = torch.tensor([0] * 9 + [1, 2])
    image = torch.zeros(11, dtype=torch.long)
    got = class_nms(boxes, scores, image, label, 0.5, 1, 100, method=method)  # type: ignore[arg-type]
    assert got[0].tolist() == [0, 2, 4, 6, 8, 9, 10]
    assert class_nms(boxes, scores, image, label, 0.5, 1, 3, method=method)[0].tolist() == [0, 2, 4]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("num_classes", "conf_thresh"),
    [(20, 0.005), (80, 0.005), ("small.tree", 0.005), (9418, 0.0)],  # 9418 x obj / 9418 < .005: threshold 0
)
def test_worst_case_every_score_above_threshold(
    num_classes: int | str, conf_thresh: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrained head: every (box, class) pair passes, e.g. 13 x 13 x 5 x 80 = 67,600 per image at darknet's
    0.005 (8 M with 9418 classes).

    The work stays bounded: a few NMS calls per image (none per class), each on at most pre_nms_topk boxes. The
    9418-class head takes the wide-row top-k, whose result equals the plain top-k's."""
    calls: list[int] = []

    def counting_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float) -> torch.Tensor:
        calls.append(len(boxes))
        return nms(boxes, scores, iou)

    monkeypatch.setattr(postprocess_module, "nms", counting_nms)
    g = torch.Generator().manual_seed(0)
    tree = (
        WordTree.from_file(Path(__file__).parent / "fixtures" / num_classes) if isinstance(num_classes, str) else None
    )
    c = tree.n if tree else int(num_classes)
    raw = torch.randn(2, 5 * (5 + c), 13, 13, generator=g) * 0.1  # P(class) ~ 1 / C
    raw.view(2, 5, 5 + c, 13, 13)[:, :, 4] += 2.0  # obj ~ .88
    anchors = torch.tensor([[1.3, 1.7], [3.2, 4.0], [5.1, 8.1], [9.5, 4.8], [11.2, 10.0]])
    obj = raw.view(2, 5, 5 + c, 13, 13)[:, :, 4].sigmoid()
    if tree is None:
        probs = raw.view(2, 5, 5 + c, 13, 13)[:, :, 5:].softmax(2)
        assert bool((obj.unsqueeze(2) * probs > conf_thresh).all())
    kw = {"conf_thresh": conf_thresh, "max_det": 100, "pre_nms_topk": 1000, "tree": tree}
    dets = postprocess(raw, anchors, (416, 416), **kw)
    assert len(dets) == 2
    for d in dets:
        assert len(d["scores"]) == 100 and bool((d["scores"] > conf_thresh).all())
        assert bool((d["scores"][:-1] >= d["scores"][1:]).all())
    assert 2 <= len(calls) <= 2 * 3 and max(calls) <= 1000, calls
    if c == 9418:
        assert 5 * 13 * 13 * c >= postprocess_module._WIDE * 1000  # the wide-row path ran
        monkeypatch.setattr(postprocess_module, "_WIDE", 10**9)
        _assert_same(dets, postprocess(raw, anchors, (416, 416), **kw))


def test_wide_row_top_k_equals_plain_top_k() -> None:
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(3, 40_000, generator=g)
    scores[1] *= 0.01  # a row with fewer than k candidates above the threshold
    scores[2, :100] = 0.5  # ties inside the top-k
    top, idx = postprocess_module._top_candidates_wide(scores, 0.00999, 300)
    ref_top, ref_idx = scores.topk(300, dim=1)
    ref_top = ref_top.masked_fill(ref_top <= 0.00999, float("-inf"))
    torch.testing.assert_close(top, ref_top)
    assert 0 < int(torch.isfinite(top[1]).sum()) < 300
    finite = torch.isfinite(top)
    assert bool((scores.gather(1, idx)[finite] == top[finite]).all())
    assert idx[0].tolist() == ref_idx[0].tolist()
    # a constant row: everything ties at the bound, too many to rank: None (the caller's plain top-k)
    assert postprocess_module._top_candidates_wide(torch.full((1, 40_000), 0.3), 0.0, 300) is None


def test_no_candidate_gives_empty_detections_of_the_usual_shapes() -> None:
    case = _random_case(5, 7, False)
    for tree_case in (False, True):
        kw = {"tree": WordTree([-1, -1, 0, 0, 1, 1, 1], [f"n{i}" for i in range(7)])} if tree_case else {}
        got = postprocess(**case, conf_thresh=1.0, **kw)  # a score is never above 1
        assert len(got) == 3
        for d in got:
            assert d["boxes"].shape == (0, 4) and d["boxes"].dtype == torch.float32
            assert d["scores"].shape == (0,) and d["labels"].dtype == torch.int64


@pytest.mark.parametrize("bsz", [1, 3])
def test_select_candidates_sorting_equals_top_k(bsz: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Few candidates are thresholded and sorted, many go through a top-k of each row first: the same entries in
    the same order (by row, decreasing score), capped at pre_nms_topk a row, nothing at or below the threshold."""
    g = torch.Generator().manual_seed(bsz)
    scores = torch.rand(bsz, 5000, generator=g) ** 4  # ~20% above 0.3 in each row, distinct values
    scores[-1, 7] = float("nan")  # never a candidate
    for k in (50, 2000, None):
        got = postprocess_module.select_candidates(scores, 0.3, k)
        monkeypatch.setattr(postprocess_module, "_SORTED", 0)  # always the top-k of each row
        ref = postprocess_module.select_candidates(scores, 0.3, k) if k else got
        monkeypatch.undo()
        for a, b in zip(got, ref, strict=True):
            assert a.tolist() == b.tolist()
        image, index, s = got
        assert bool((s > 0.3).all()) and torch.equal(s, scores[image, index])
        for r in range(bsz):
            row = s[image == r]
            want = int((scores[r] > 0.3).sum())
            assert len(row) == (min(want, k) if k else want) and bool((row[:-1] > row[1:]).all())
        assert image.tolist() == sorted(image.tolist())
