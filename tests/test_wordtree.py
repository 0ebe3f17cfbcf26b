"""WordTree groups, hierarchical softmax and top-down decode against hand-computed values (small.tree)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from yolo9000.wordtree import WordTree, flat_tree

TREE = Path(__file__).parent / "fixtures" / "small.tree"


@pytest.fixture
def tree() -> WordTree:
    return WordTree.from_file(TREE)


def test_groups(tree: WordTree) -> None:
    # animal vehicle | dog cat bird | car bicycle | terrier retriever | sparrow eagle
    assert tree.group_offset.tolist() == [0, 2, 5, 7, 9]
    assert tree.group_size.tolist() == [2, 3, 2, 2, 2]
    assert tree.child_group.tolist() == [1, 2, 3, -1, 4, -1, -1, -1, -1, -1, -1]
    assert tree.paths[7].tolist() == [7, 2, 0]  # terrier -> dog -> animal


def test_softmax_per_group(tree: WordTree) -> None:
    logits = torch.zeros(11)
    logits[2] = torch.log(torch.tensor(2.0))  # dog twice as likely as cat, bird
    p = tree.softmax(logits)
    assert p[0].item() == pytest.approx(0.5) and p[1].item() == pytest.approx(0.5)
    assert p[2].item() == pytest.approx(0.5) and p[3].item() == pytest.approx(0.25)
    absolute = tree.absolute(p)
    assert absolute[7].item() == pytest.approx(0.5 * 0.5 * 0.5)  # animal * dog * terrier
    assert tree.path_prob(p, 7).item() == pytest.approx(0.125)
    # a flat tree is the ordinary softmax
    x = torch.randn(3, 6)
    torch.testing.assert_close(flat_tree(6).softmax(x), x.softmax(-1))


def test_flat_path_probability_is_the_node_value() -> None:
    """A flat tree's path is the node alone: P(node) is its value, one node for every row or one per row
    (broadcast over leading axes), exactly as the general product over a one-node path gives it."""
    cond = torch.tensor([[[0.1, 0.2, 0.7], [0.5, 0.3, 0.2]], [[0.6, 0.3, 0.1], [0.25, 0.25, 0.5]]])  # (2, 2, 3)
    flat = flat_tree(3)
    assert torch.equal(flat.path_prob(cond, 2), torch.tensor([[0.7, 0.2], [0.1, 0.5]]))
    per_row = torch.tensor([[0, 1], [2, 0]])
    assert torch.equal(flat.path_prob(cond, per_row), torch.tensor([[0.1, 0.3], [0.1, 0.25]]))
    assert torch.equal(flat.path_prob(cond[0, 0], 1), torch.tensor(0.2))  # one row: a scalar


def test_top_down(tree: WordTree) -> None:
    def probs(**kw: float) -> torch.Tensor:
        p = torch.full((11,), 0.0)
        for k, v in kw.items():
            p[int(k[1:])] = v
        return p

    rows = torch.stack(
        [
            probs(n0=0.9, n1=0.1, n2=0.8, n3=0.1, n4=0.1, n7=0.9, n8=0.1),  # -> terrier (0.9*.8*.9 = .648)
            probs(n0=0.9, n1=0.1, n2=0.5, n3=0.3, n4=0.2),  # dog path .45 < .5 -> animal
            probs(n0=0.3, n1=0.4),  # root group never above .5 -> its best node (vehicle)
            probs(n0=0.1, n1=0.9, n5=0.7, n6=0.3),  # -> car (.63), a leaf
        ]
    )
    assert tree.top_down(rows, 0.5).tolist() == [7, 0, 1, 5]


def test_bad_tree_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tree"
    bad.write_text("a -1\nb x\n")
    with pytest.raises(ValueError, match="bad.tree:2"):
        WordTree.from_file(bad)
    with pytest.raises(FileNotFoundError):
        WordTree.from_file(tmp_path / "missing.tree")


# ---------------------------------------------------------------- darknet's files: loading, validation, maps
DARKNET = Path(__file__).parents[1] / "data" / "darknet"
WT = DARKNET / "wordtree"


@pytest.fixture(scope="module")
def tree9k() -> WordTree:
    return WordTree.from_file(WT / "9k.tree", WT / "9k.names", WT / "9k.labels")


def test_vendored_9k_files_load(tree9k: WordTree) -> None:
    assert tree9k.n == 9418 and tree9k.names[:2] == ["thing", "matter"]
    assert tree9k.wnids[:2] == ["n00002452", "n00020827"]  # 9k.labels = 9k.tree's first column
    ids = [line.split()[0] for line in (WT / "9k.tree").read_text().splitlines()]
    assert tree9k.wnids == ids
    assert int(tree9k.group_size.sum()) == 9418 and tree9k.group_offset[0] == 0


def test_coco9k_map_matches_coco_names(tree9k: WordTree) -> None:
    coco = (DARKNET / "coco.names").read_text().splitlines()
    nodes = tree9k.map_labels(coco, WT / "coco9k.map")
    assert nodes.shape == (80,) and nodes.tolist() == tree9k.read_map(WT / "coco9k.map").tolist()
    names = [tree9k.names[i] for i in nodes.tolist()]
    # 50 of the 80 COCO names are node names verbatim; the others are WordNet's words for the class
    assert sum(a == b for a, b in zip(coco, names, strict=True)) == 50
    pairs = dict(zip(coco, names, strict=True))
    assert pairs["person"] == "person" and pairs["dog"] == "dog" and pairs["aeroplane"] == "airplane"
    assert pairs["motorbike"] == "motorcycle" and pairs["tvmonitor"] == "display" and pairs["donut"] == "doughnut"
    assert len(tree9k.read_map(WT / "inet9k.map")) == 200


def test_map_labels_by_wnid_and_name(tree9k: WordTree, tree: WordTree) -> None:
    inet1k = [line.split()[0] for line in (WT / "imagenet.labels.list").read_text().splitlines()[:1000]]
    nodes = tree9k.map_labels(inet1k)  # every ImageNet-1k class is a 9k node, found by wnid
    assert [tree9k.wnids[i] for i in nodes.tolist()] == inet1k
    assert tree.map_labels(["dog", "car", "eagle"]).tolist() == [2, 5, 10]
    with pytest.raises(ValueError, match=r"2 not found: \['wolf', 'boat'\]"):
        tree.map_labels(["dog", "wolf", "boat"])
    dup = WordTree([-1, -1, 0, 1], names=["a", "b", "x", "x"], wnids=["n1", "n2", "n3", "n4"])
    assert dup.map_labels(["n4", "a"]).tolist() == [3, 0]  # a wnid is unique
    with pytest.raises(ValueError, match=r"1 ambiguous names .*\['x'\]"):
        dup.map_labels(["x"])
    with pytest.raises(ValueError, match="coco9k.map: 80 map entries for 2 labels"):
        tree9k.map_labels(["person", "dog"], WT / "coco9k.map")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("a -1\nb x\n", r"bad.tree:2: parent index 'x' is not an integer"),
        ("a -1\nb 0 extra\n", r"bad.tree:2: expected '<id> <parent index>'"),
        ("a -1\nb 5\nc 0\n", r"bad.tree:2: parent index 5 out of range"),
        ("a -1\nb -2\n", r"bad.tree:2: parent index -2 out of range"),
        ("a -1\nb 1\n", r"bad.tree:2: parent index 1 is not before its child"),
        ("a 0\n", r"bad.tree:1: parent index 0 is not before"),
        ("a -1\nb 2\nc 0\n", r"bad.tree:2: parent index 2 is not before"),
        ("a -1\nb -1\nc 0\nd 1\ne 0\n", r"bad.tree:5: siblings not consecutive: the children of node 0"),
        ("a -1\nb 0\nc -1\n", r"bad.tree:3: siblings not consecutive: the roots"),
        ("a -1\n\nb 0\n", r"bad.tree:2: empty line"),
        ("\n\n", r"bad.tree:1: no tree nodes"),
    ],
)
def test_malformed_tree_rejected_with_line(tmp_path: Path, text: str, match: str) -> None:
    bad = tmp_path / "bad.tree"
    bad.write_text(text)
    with pytest.raises(ValueError, match=match):
        WordTree.from_file(bad)


def test_tree_trailing_blank_lines_and_root_without_parent(tmp_path: Path) -> None:
    f = tmp_path / "t.tree"
    f.write_text("a\nb -1\nc 1\n\n\n")  # darknet's sscanf: a line without a parent is a root
    t = WordTree.from_file(f)
    assert t.parent.tolist() == [-1, -1, 1] and t.names == ["a", "b", "c"]
    with pytest.raises(ValueError, match="WordTree node 2: siblings not consecutive: the roots"):
        WordTree([-1, 0, -1])


@pytest.mark.parametrize(
    ("kind", "text", "match"),
    [
        ("names", "x\ny\n", r"bad.txt:3: missing name for node 2 \(3 expected\)"),
        ("names", "x\ny\nz\nw\n", r"bad.txt:4: extra name: the tree has 3 nodes"),
        ("names", "x\n\nz\n", r"bad.txt:2: empty line"),
        ("labels", "n1\nn2 n3\nn4\n", r"bad.txt:2: expected one label"),
        ("labels", "n1\nn2\n", r"bad.txt:3: missing label for node 2"),
    ],
)
def test_malformed_names_and_labels_rejected_with_line(tmp_path: Path, kind: str, text: str, match: str) -> None:
    tf, bad = tmp_path / "t.tree", tmp_path / "bad.txt"
    tf.write_text("a -1\nb -1\nc 0\n")
    bad.write_text(text)
    kw = {"names_file": bad} if kind == "names" else {"labels_file": bad}
    with pytest.raises(ValueError, match=match):
        WordTree.from_file(tf, **kw)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("2\nseven\n", r"bad.map:2: map entry 'seven' is not an integer"),
        ("2\n11\n", r"bad.map:2: map entry 11 out of range \(0..10\)"),
        ("-1\n", r"bad.map:1: map entry -1 out of range"),
        ("2\n\n3\n", r"bad.map:2: empty line"),
    ],
)
def test_malformed_map_rejected_with_line(tmp_path: Path, tree: WordTree, text: str, match: str) -> None:
    bad = tmp_path / "bad.map"
    bad.write_text(text)
    with pytest.raises(ValueError, match=match):
        tree.read_map(bad)


# ---------------------------------------------------------------- vectorised softmax / absolute vs plain loops
def _softmax_loop(tree: WordTree, x: torch.Tensor) -> torch.Tensor:
    """The per-group softmax written group by group."""
    out = torch.empty_like(x)
    for o, s in zip(tree.group_offset.tolist(), tree.group_size.tolist(), strict=True):
        out[..., o : o + s] = x[..., o : o + s].softmax(-1)
    return out


def _hierarchy_predictions_loop(tree: WordTree, p: torch.Tensor) -> torch.Tensor:
    """darknet hierarchy_predictions(only_leaves=0): for j in order, p[j] *= p[parent[j]]."""
    p = p.clone()
    for j, parent in enumerate(tree.parent.tolist()):
        if parent >= 0:
            p[..., j] = p[..., j] * p[..., parent]
    return p


def test_softmax_and_absolute_equal_plain_loops_on_9k(tree9k: WordTree) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 9418, generator=g) * 4
    x[0, 0, :50] += 60.0  # large logits: each group is shifted by its own maximum
    cond = tree9k.softmax(x)
    assert cond.shape == x.shape
    torch.testing.assert_close(cond, _softmax_loop(tree9k, x), rtol=0, atol=1e-6)
    torch.testing.assert_close(tree9k.log_softmax(x).exp(), cond, rtol=0, atol=1e-6)
    sums = torch.zeros(2, 3, tree9k.num_groups).index_add_(-1, tree9k.group, cond)
    torch.testing.assert_close(sums, torch.ones_like(sums))
    assert torch.equal(tree9k.absolute(cond), _hierarchy_predictions_loop(tree9k, cond))  # the same products


def test_softmax_differentiable(tree: WordTree) -> None:
    x = torch.randn(4, 11, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda v: tree.absolute(tree.softmax(v)), (x,))
    assert torch.autograd.gradcheck(tree.log_softmax, (x,))
    w = torch.randn(4, 11, dtype=torch.float64)
    (tree.softmax(x) * w).sum().backward()
    ref_x = x.detach().clone().requires_grad_(True)
    (_softmax_loop(tree, ref_x) * w).sum().backward()
    torch.testing.assert_close(x.grad, ref_x.grad)


def test_a_hierarchical_head_refuses_class_names_that_are_not_its_tree_nodes() -> None:
    """Class i of a WordTree head is tree node i: data classes in another order (or other classes) would train
    other nodes than they name. The tree's names or WordNet ids, in tree order, pass; anything else names the
    first position that differs. The detector module checks it at construction."""
    from yolo9000.loss import RegionLoss
    from yolo9000.models.darknet19 import Darknet19
    from yolo9000.models.yolov2 import YOLOv2
    from yolo9000.modules.detector import DetectorModule
    from yolo9000.wordtree import check_tree_classes

    tree = WordTree([-1, 0, 0], names=["cell", "RBC", "WBC"], wnids=["n1", "n2", "n3"])
    check_tree_classes(tree, ["cell", "RBC", "WBC"])
    check_tree_classes(tree, ["n1", "n2", "n3"])
    with pytest.raises(ValueError, match="class 0 is 'RBC' but tree node 0 is 'cell'"):
        check_tree_classes(tree, ["RBC", "WBC", "Platelets"])
    with pytest.raises(ValueError, match="2 class names for a WordTree of 3 nodes"):
        check_tree_classes(tree, ["cell", "RBC"])
    model = YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0]])
    loss = RegionLoss(num_classes=3, tree=tree)
    DetectorModule(model, loss, class_names=["cell", "RBC", "WBC"], eval_size=64)
    with pytest.raises(ValueError, match="class 0 is 'RBC'"):
        DetectorModule(model, loss, class_names=["RBC", "WBC", "Platelets"], eval_size=64)
    for bad in (1.5, -1.0, float("nan")):  # the descent's threshold is a probability
        with pytest.raises(ValueError, match="tree_thresh must lie in"):
            DetectorModule(model, loss, class_names=["cell", "RBC", "WBC"], eval_size=64, tree_thresh=bad)


def test_a_tree_file_is_named_in_lookups_and_names_lose_stray_end_spaces(tmp_path: Path) -> None:
    """A label missing from a tree read from a file names that file (the message gave only the node count); a names
    file's trailing space ("RBC ") is no part of the name (the lookup of RBC failed beside a file that shows it);
    inner spaces stay."""
    tree_file = tmp_path / "cells.tree"
    tree_file.write_text("cell -1\nRBC 0\nred cell 0\n".replace("red cell", "red_cell"))
    names = tmp_path / "cells.names"
    names.write_text("cell\nRBC \n red cell\t\n")
    tree = WordTree.from_file(tree_file, names)
    assert tree.names == ["cell", "RBC", "red cell"]
    assert tree.map_labels(["RBC", "red cell"]).tolist() == [1, 2]
    with pytest.raises(ValueError, match=rf"labels not in the WordTree {re.escape(str(tree_file))} \(3 nodes\)"):
        tree.map_labels(["WBC"])
