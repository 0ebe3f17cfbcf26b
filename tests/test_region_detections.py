"""darknet's per-box region decode (``region_detections_darknet``) against hand-computed values, a literal
transcription of darknet's C loops (get_region_detections, hierarchy_top_prediction, correct_region_boxes), and
the project's fast path (``postprocess`` / ``flat_candidates`` / ``tree_candidates``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo9000.boxes import split_region
from yolo9000.postprocess import flat_candidates, postprocess, region_detections_darknet, tree_candidates
from yolo9000.region_decode import correct_region_boxes
from yolo9000.wordtree import WordTree

FIX = Path(__file__).parent / "fixtures"
WT = Path(__file__).parents[1] / "data" / "darknet" / "wordtree"
LOG = math.log


@pytest.fixture(scope="module")
def tree() -> WordTree:
    return WordTree.from_file(FIX / "small.tree")  # animal vehicle | dog cat bird | car bicycle | terrier ...


# ---------------------------------------------------------------- hand-computed cases
def test_flat_decode_hand_computed() -> None:
    """2 anchors, 2 x 2 grid, 2 classes; all logits 0 (obj .5, P = .5, .5) except three boxes."""
    raw = torch.zeros(1, 2 * 7, 2, 2)  # channel a * 7 + k: tx ty tw th to c0 c1
    a1, r, c = 7, 0, 1  # box A: anchor 1, row 0, col 1 -> index 1 * 4 + 0 * 2 + 1 = 5
    raw[0, a1 + 1, r, c] = LOG(1 / 3)  # sigmoid(ty) = .25
    raw[0, a1 + 2, r, c] = LOG(2.0)  # exp(tw) = 2
    raw[0, a1 + 4, r, c] = LOG(3.0)  # obj .75
    raw[0, a1 + 6, r, c] = LOG(3.0)  # P = (.25, .75)
    raw[0, 4, 1, 0] = -LOG(3.0)  # box B: anchor 0, row 1, col 0 (index 2): obj .25
    raw[0, 5, 1, 0] = 10.0
    raw[0, 4, 1, 1] = LOG(9.0)  # box C: anchor 0, row 1, col 1 (index 3): obj .9, P = (2/3, 1/3)
    raw[0, 5, 1, 1] = LOG(2.0)
    out = region_detections_darknet(raw, anchors=torch.tensor([[1.0, 1.0], [2.0, 4.0]]), num_classes=2, thresh=0.35)
    assert out["bbox"].shape == (1, 8, 4) and out["prob"].shape == (1, 8, 2) and "node" not in out
    # A: bx = (1 + .5) / 2, by = (0 + .25) / 2, bw = 2 * 2 / 2, bh = 1 * 4 / 2
    torch.testing.assert_close(out["bbox"][0, 5], torch.tensor([0.75, 0.125, 2.0, 2.0]))
    torch.testing.assert_close(out["bbox"][0, 0], torch.tensor([0.25, 0.25, 0.5, 0.5]))  # (0 + .5) / 2, 1 / 2
    torch.testing.assert_close(out["bbox"][0, 7], torch.tensor([0.75, 0.75, 1.0, 2.0]))  # anchor 1, row 1, col 1
    want_obj = torch.tensor([0.5, 0.5, 0.0, 0.9, 0.5, 0.75, 0.5, 0.5])  # B: .25 <= .35 -> 0
    torch.testing.assert_close(out["objectness"][0], want_obj)
    want = torch.zeros(8, 2)
    want[5, 1] = 0.75 * 0.75  # .1875 <= .35 -> 0
    want[3, 0] = 0.9 * 2 / 3  # .3 -> 0; every default box .5 * .5 = .25 -> 0
    torch.testing.assert_close(out["prob"][0], want)


def test_correct_region_boxes_letterbox_hand_computed() -> None:
    box = torch.tensor([[[0.25, 0.25, 0.5, 0.5]]])
    # 640 x 480 (w x h) in 416 x 416: 416 / 640 < 416 / 480 -> new_w 416, new_h 480 * 416 // 640 = 312;
    # y = (.25 - 104 / 2 / 416) / (312 / 416) = 1 / 6, h = .5 * 416 / 312 = 2 / 3
    land = torch.tensor([0.25, 1 / 6, 0.5, 2 / 3])
    torch.testing.assert_close(correct_region_boxes(box, (416, 416), (480, 640))[0, 0], land)
    # portrait 480 x 640: new_h 416, new_w 312
    port = torch.tensor([1 / 6, 0.25, 2 / 3, 0.5])
    torch.testing.assert_close(correct_region_boxes(box, (416, 416), (640, 480))[0, 0], port)
    # 1000 x 333: new_h = 333 * 416 // 1000 = 138 (C integer division, not 138.528); y = (.25 * 416 - 139) / 138
    trunc = torch.tensor([0.25, -35 / 138, 0.5, 208 / 138])
    torch.testing.assert_close(correct_region_boxes(box, (416, 416), (333, 1000))[0, 0], trunc)
    # relative=0: x, w times the image width, y, h times its height
    px = correct_region_boxes(box, (416, 416), (480, 640), relative=False)[0, 0]
    torch.testing.assert_close(px, torch.tensor([160.0, 80.0, 320.0, 320.0]))
    # per-image sizes, and the same image size as the net: no change
    per = correct_region_boxes(
        box.expand(4, 1, 4), (416, 416), torch.tensor([[480, 640], [640, 480], [333, 1000]] + [[416, 416]])
    )
    torch.testing.assert_close(per[:, 0], torch.stack([land, port, trunc, box[0, 0]]))


def _small_tree_head(rows: list[dict[int, float]], obj: float) -> torch.Tensor:
    """(1, 16, 1, len(rows)) head over small.tree, 1 anchor: conditional probabilities given per node
    (logit = log p; nodes left out keep logit 0, i.e. uniform in their group), objectness ``obj``."""
    raw = torch.zeros(1, 16, 1, len(rows))
    for col, probs in enumerate(rows):
        raw[0, 4, 0, col] = LOG(obj / (1 - obj))
        for node, p in probs.items():
            raw[0, 5 + node, 0, col] = LOG(p)
    return raw


# box 0: animal .9, dog .8, terrier .9 | box 1: vehicle .95, car .6 | box 2: animal .9, dog .6, terrier .9
TREE_ROWS = [
    {0: 0.9, 1: 0.1, 2: 0.8, 3: 0.1, 4: 0.1, 7: 0.9, 8: 0.1},
    {0: 0.05, 1: 0.95, 5: 0.6, 6: 0.4},
    {0: 0.9, 1: 0.1, 2: 0.6, 3: 0.3, 4: 0.1, 7: 0.9, 8: 0.1},
]


def test_tree_darknet_and_paper_descents_differ(tree: WordTree) -> None:
    raw = _small_tree_head(TREE_ROWS, obj=0.8)
    kw = {"anchors": [1.0, 1.0], "num_classes": 11, "tree": tree, "thresh": 0.1, "tree_thresh": 0.5}
    dk = region_detections_darknet(raw, **kw)
    pp = region_detections_darknet(raw, **kw, tree_decode="paper")
    # paper (path probability): box 0 .9 -> .72 -> .648 > .5: terrier; box 1 .95 -> .57: car; box 2 .9 -> .54 ->
    # terrier .486 <= .5: dog. darknet (running product of absolute values): box 0 .9 -> .9 * .72 = .648 ->
    # .648 * .648 = .42 <= .5: stops, returns dog; box 1 .95 -> .95 * .57 = .54 > .5: car; box 2 .9 * .54 = .486:
    # animal.
    assert pp["node"][0].tolist() == [7, 5, 2]
    assert dk["node"][0].tolist() == [2, 5, 0]
    want_dk, want_pp = torch.zeros(3, 11), torch.zeros(3, 11)
    want_dk[0, 2], want_dk[1, 5], want_dk[2, 0] = 0.8, 0.8, 0.8  # darknet: the objectness alone
    want_pp[0, 7], want_pp[1, 5], want_pp[2, 2] = 0.8 * 0.648, 0.8 * 0.57, 0.8 * 0.54  # obj * P(node)
    torch.testing.assert_close(dk["prob"][0], want_dk)
    torch.testing.assert_close(pp["prob"][0], want_pp)
    torch.testing.assert_close(dk["objectness"], torch.full((1, 3), 0.8))
    low = region_detections_darknet(raw, **{**kw, "thresh": 0.8})  # obj .8 not above .8: nothing
    assert not low["prob"].any() and not low["objectness"].any()


def test_tree_map_restricts_classes(tree: WordTree, tmp_path: Path) -> None:
    raw = _small_tree_head(TREE_ROWS, obj=0.8)
    kw = {"anchors": torch.tensor([[1.0, 1.0]]), "num_classes": 11, "tree": tree, "thresh": 0.1}
    # map: terrier, cat, car; prob = .8 * absolute P: box 0 .648, .09, .1 * .5; box 1 .05 / 3 * .5, .05 / 3, .57;
    # box 2 .486, .27, .05
    want = 0.8 * torch.tensor([[0.648, 0.09, 0.05], [0.05 / 6, 0.05 / 3, 0.57], [0.486, 0.27, 0.05]])
    want = torch.where(want > 0.1, want, 0.0)
    f = tmp_path / "m.map"
    f.write_text("7\n3\n5\n")
    for mp in ([7, 3, 5], f, str(f)):
        for mode in ("darknet", "paper"):  # a map does not use the descent
            out = region_detections_darknet(raw, **kw, map=mp, tree_decode=mode)
            assert out["prob"].shape == (1, 3, 3) and "node" not in out
            torch.testing.assert_close(out["prob"][0], want)
    with pytest.raises(ValueError, match="out of range"):
        region_detections_darknet(raw, **kw, map=[11])


def test_argument_errors(tree: WordTree) -> None:
    raw = torch.zeros(1, 16, 2, 2)
    with pytest.raises(ValueError, match="map needs a tree"):
        region_detections_darknet(raw, anchors=[1, 1], num_classes=11, thresh=0.1, map=[0])
    with pytest.raises(ValueError, match="not 1 anchors x"):
        region_detections_darknet(raw, anchors=[1, 1], num_classes=10, thresh=0.1)
    with pytest.raises(ValueError, match="11 nodes but num_classes is 12"):
        region_detections_darknet(torch.zeros(1, 17, 2, 2), anchors=[1, 1], num_classes=12, tree=tree, thresh=0.1)
    with pytest.raises(ValueError, match="tree_decode"):
        region_detections_darknet(raw, anchors=[1, 1], num_classes=11, tree=tree, thresh=0.1, tree_decode="x")
    out = region_detections_darknet(raw, anchors=[1, 1], num_classes=11, tree=str(FIX / "small.tree"), thresh=0.1)
    assert out["prob"].shape == (1, 4, 11)


# ---------------------------------------------------------------- darknet's C, transcribed loop for loop
def _top_prediction_c(pred: np.ndarray, tree: WordTree, thresh: float) -> int:
    """tree.c hierarchy_top_prediction, float32 like darknet."""
    off, size = tree.group_offset.tolist(), tree.group_size.tolist()
    child, parent = tree.child_group.tolist(), tree.parent.tolist()
    p, group = np.float32(1.0), 0
    while True:
        mx, max_i = np.float32(0.0), 0
        for i in range(size[group]):
            if pred[off[group] + i] > mx:
                mx, max_i = pred[off[group] + i], off[group] + i
        if p * mx > thresh:
            p = p * mx
            group = child[max_i]
            if child[max_i] < 0:
                return max_i
        elif group == 0:
            return max_i
        else:
            return parent[off[group]]


def _sig(v: float) -> np.float32:
    return np.float32(1 / (1 + np.exp(-np.float64(v))))


def _get_region_detections_c(
    raw: torch.Tensor,
    anchors: list[list[float]],
    classes: int,
    tree: WordTree | None,
    thresh: float,
    tree_thresh: float,
    map_: list[int] | None,
    net_wh: tuple[int, int],
    im_wh: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """region_layer.c get_region_detections + correct_region_boxes (relative=1) for one image, box by box.

    Returns bbox (N, 4), objectness (N,), prob (N, classes or len(map_)) in darknet's box order."""
    (netw, neth), (w, h) = net_wh, im_wh
    num_a, lh, lw = len(anchors), raw.shape[2], raw.shape[3]
    x = raw[0].reshape(num_a, 5 + classes, lh, lw).numpy().astype(np.float32)
    sig = _sig
    if netw / w < neth / h:
        new_w, new_h = netw, (h * netw) // w
    else:
        new_w, new_h = (w * neth) // h, neth
    boxes, objs, probs = [], [], []
    for n in range(num_a):
        for row in range(lh):
            for col in range(lw):
                v = x[n, :, row, col]
                bx, by = (col + sig(v[0])) / lw, (row + sig(v[1])) / lh
                bw, bh = np.exp(v[2]) * anchors[n][0] / lw, np.exp(v[3]) * anchors[n][1] / lh
                bx = (bx - (netw - new_w) / 2.0 / netw) / (new_w / netw)
                by = (by - (neth - new_h) / 2.0 / neth) / (new_h / neth)
                boxes.append([bx, by, bw * netw / new_w, bh * neth / new_h])
                scale = sig(v[4])
                objs.append(scale if scale > thresh else 0.0)
                logits = torch.from_numpy(v[5:].copy())
                prob = np.zeros(len(map_) if map_ is not None else classes, np.float32)
                if tree is None:
                    if scale > thresh:
                        p = scale * logits.softmax(0).numpy()
                        prob = np.where(p > thresh, p, 0)
                else:
                    pred = tree.softmax(logits).numpy().copy()
                    for j, par in enumerate(tree.parent.tolist()):  # hierarchy_predictions(only_leaves=0)
                        if par >= 0:
                            pred[j] *= pred[par]
                    if map_ is not None:
                        p = scale * pred[map_]
                        prob = np.where(p > thresh, p, 0)
                    else:
                        prob[_top_prediction_c(pred, tree, tree_thresh)] = scale if scale > thresh else 0
                probs.append(prob)
    return torch.tensor(boxes), torch.tensor(objs), torch.tensor(np.array(probs))


@pytest.mark.parametrize("case", ["flat", "tree", "tree_map"])
def test_equals_darknet_c_transcription(case: str, tree: WordTree) -> None:
    g = torch.Generator().manual_seed(1)
    classes = 5 if case == "flat" else 11
    anchors = [[1.3, 1.7], [3.2, 4.0], [5.1, 8.1]]
    raw = torch.randn(1, 3 * (5 + classes), 3, 4, generator=g) * 2
    t, mp = (None, None) if case == "flat" else (tree, [7, 3, 5, 10] if case == "tree_map" else None)
    kw = {"num_classes": classes, "tree": t, "thresh": 0.2, "tree_thresh": 0.4, "map": mp}
    out = region_detections_darknet(raw, anchors=anchors, **kw, net_size=(96, 128), image_size=(333, 1000))
    boxes, objs, probs = _get_region_detections_c(raw, anchors, classes, t, 0.2, 0.4, mp, (128, 96), (1000, 333))
    torch.testing.assert_close(out["bbox"][0], boxes.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out["objectness"][0], objs.float())
    torch.testing.assert_close(out["prob"][0], probs.float())
    assert 0 < int((out["prob"] > 0).sum()) < out["prob"].shape[1]  # some boxes pass, not all
    if case == "tree":
        paper = region_detections_darknet(raw, anchors=anchors, **kw, tree_decode="paper")
        assert bool((paper["node"] != out["node"]).any())  # the two descents disagree somewhere


# ---------------------------------------------------------------- the fast path agrees (both descents, map, flat)
def _tree_case(which: str, tree: WordTree) -> tuple[WordTree, torch.Tensor, torch.Tensor]:
    t = tree if which == "small" else WordTree.from_file(WT / "9k.tree")
    g = torch.Generator().manual_seed(2)
    bsz, num_a, h, w = (2, 3, 4, 5) if which == "small" else (1, 2, 3, 3)
    raw = torch.randn(bsz, num_a * (5 + t.n), h, w, generator=g) * 2
    if which == "9k":  # sharp conditionals so that descents go deep in the 9418-node tree
        raw *= 4
    return t, raw, torch.rand(num_a, 2, generator=g) + 0.5


@pytest.mark.parametrize("decode", ["paper", "darknet"])
@pytest.mark.parametrize("which", ["small", "9k"])
def test_tree_decode_equals_tree_candidates(which: str, decode: str, tree: WordTree) -> None:
    """postprocess's candidates (one node per box) = region_detections_darknet's, for either descent."""
    t, raw, anchors = _tree_case(which, tree)
    bsz, num_a = raw.shape[0], anchors.shape[0]
    out = region_detections_darknet(
        raw, anchors=anchors, num_classes=t.n, tree=t, thresh=0.05, tree_thresh=0.3, tree_decode=decode
    )
    reg = split_region(raw, num_a)
    b_idx, box_idx, node, scores = tree_candidates(reg.obj.sigmoid(), reg.cls, t, 0.05, 0.3, None, tree_decode=decode)
    dense = torch.zeros(bsz, out["prob"].shape[1])
    dense[b_idx, box_idx] = scores
    torch.testing.assert_close(out["prob"].amax(-1), dense)  # same candidates, same scores
    assert out["node"][b_idx, box_idx].tolist() == node.tolist()  # same nodes
    assert len(scores) > 3 and len(node.unique()) > 2
    if decode == "darknet":  # scored by objectness alone
        torch.testing.assert_close(scores, reg.obj.sigmoid().flatten(1)[b_idx, box_idx])


@pytest.mark.parametrize("which", ["small", "9k"])
def test_tree_map_equals_tree_candidates(which: str, tree: WordTree) -> None:
    """With a map every (box, mapped node) pair scores obj * P_abs(node), in both; labels are the nodes."""
    t, raw, anchors = _tree_case(which, tree)
    nodes = torch.tensor([1, 4, 6, 2] if which == "small" else t.read_map(WT / "coco9k.map").tolist())
    thresh = 0.01 if which == "small" else 1e-4  # 80 of 9418 nodes: small absolute probabilities
    raw = raw if which == "small" else raw / 4
    out = region_detections_darknet(raw, anchors=anchors, num_classes=t.n, tree=t, thresh=thresh, map=nodes)
    reg = split_region(raw, anchors.shape[0])
    b_idx, box_idx, node, scores = tree_candidates(reg.obj.sigmoid(), reg.cls, t, thresh, 0.5, None, tree_map=nodes)
    assert len(scores) > 3
    col = (node.unsqueeze(1) == nodes).float().argmax(1)  # the map column of each candidate's node
    torch.testing.assert_close(scores, out["prob"][b_idx, box_idx, col])
    assert len(scores) == int((out["prob"] > 0).sum())  # the same pairs pass the threshold


def test_flat_decode_equals_postprocess_candidates() -> None:
    """The same (box, class, score) candidates as the fast path, and the same boxes in image pixels: a 640 x 480
    image letterboxed into 416 x 416 (scale .65, pad_y 52) is one geometry for both (NMS off: IoU > 1)."""
    g = torch.Generator().manual_seed(3)
    bsz, num_a, h, w, c = 2, 3, 4, 5, 7
    raw = torch.randn(bsz, num_a * (5 + c), h, w, generator=g)
    anchors = torch.rand(num_a, 2, generator=g) * 2 + 0.5
    out = region_detections_darknet(
        raw, anchors=anchors, num_classes=c, thresh=0.02, net_size=(416, 416), image_size=(480, 640), relative=False
    )
    reg = split_region(raw, num_a)
    b_idx, box_idx, label, scores = flat_candidates(reg.obj.sigmoid(), reg.cls, 0.02, None)
    dense = torch.zeros(bsz, num_a * h * w, c)
    dense[b_idx, box_idx, label] = scores
    torch.testing.assert_close(out["prob"], dense)
    dets = postprocess(
        raw, anchors, (416, 416), torch.tensor([[0.65, 0.65, 0.0, 52.0]] * bsz), torch.tensor([[480, 640]] * bsz),
        conf_thresh=0.02, nms_thresh=1.0, max_det=10_000, pre_nms_topk=None,
    )  # fmt: skip
    for b, d in enumerate(dets):
        nz = torch.nonzero(out["prob"][b])  # (M, 2) box, class
        s = out["prob"][b][nz[:, 0], nz[:, 1]]
        order = torch.argsort(s, descending=True)
        cx, cy, bw, bh = out["bbox"][b][nz[order, 0]].unbind(-1)
        xyxy = torch.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1)
        xyxy = torch.minimum(xyxy.clamp_min(0), torch.tensor([640.0, 480.0, 640.0, 480.0]))  # postprocess clips
        assert d["labels"].tolist() == nz[order, 1].tolist() and len(order) > 10
        torch.testing.assert_close(d["scores"], s[order])
        torch.testing.assert_close(d["boxes"], xyxy, rtol=1e-5, atol=1e-3)
