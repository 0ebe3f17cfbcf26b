"""Cases the WordTree tests left open (found by mutation testing), each against a hand-computed fact: darknet's
``hierarchy_top_prediction`` (the first maximum of a group wins, only the group's own nodes compete), the order of a
label's lookup (WordNet id before name, the first node of a duplicated id, the same node for detection and
classification data), the paper's path rule on hand-made WordNet graphs (greedy by the current cost, a node keeps
the parent of the first path that added it, every leaf is a label, a label is never collapsed), the 9k label sets
of ``src/wordtree.py build-9k`` against ``9k.tree`` itself, and the class names a tree-labelled parser accepts.

No WordNet here: :func:`yolo9000.wordnet_tree.build_tree` reads a hand-drawn graph through a stand-in for
``hypernym_paths``."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import load_script
from yolo9000 import wordnet_tree as wt
from yolo9000.data.records import IssueLog
from yolo9000.data.tree_labels import ImageListParser, map_by_name
from yolo9000.wordtree import WordTree

FIX = Path(__file__).parent / "fixtures"
WT = Path(__file__).resolve().parents[1] / "data" / "darknet" / "wordtree"


def _row(**kw: float) -> torch.Tensor:
    """An (11,) value row of small.tree (animal vehicle | dog cat bird | car bicycle | terrier retriever | ...)."""
    p = torch.zeros(11)
    for k, v in kw.items():
        p[int(k[1:])] = v
    return p


# ---------------------------------------------------------------- darknet's hierarchy_top_prediction
def test_top_down_ties_take_the_first_node_of_the_group() -> None:
    """darknet keeps ``val > max`` (strict): on a tie the first node of the group wins. Row 0: animal = vehicle = .5,
    .5 < .6, the root group's first node (animal) is the answer. Row 1: dog = cat = .4 under animal .9 (.36 > .3):
    dog, an internal node, is taken; its children are 0, so the descent stops at dog (cat, a leaf, if the last
    of the tie won)."""
    tree = WordTree.from_file(FIX / "small.tree")
    assert tree.top_down(_row(n0=0.5, n1=0.5).unsqueeze(0), 0.6).tolist() == [0]
    assert tree.top_down(_row(n0=0.9, n1=0.1, n2=0.4, n3=0.4, n4=0.2).unsqueeze(0), 0.3).tolist() == [2]


def test_top_down_compares_only_the_nodes_of_the_group() -> None:
    """darknet scans ``i < group_size[group]``. The root group {animal .4, vehicle .3} is narrower than the widest
    group (3): node 2 (dog, .9) sits in the next column but is no root. .4 < .5: the answer is animal, not a
    descent through dog."""
    tree = WordTree.from_file(FIX / "small.tree")
    assert tree.top_down(_row(n0=0.4, n1=0.3, n2=0.9).unsqueeze(0), 0.5).tolist() == [0]


# ---------------------------------------------------------------- labels into the tree
def test_map_labels_takes_the_wordnet_id_before_a_name() -> None:
    """``map_labels``: "each label is looked up by WordNet id, then by name". The label n00000002 is node 1's id
    and node 0's name: node 1."""
    tree = WordTree([-1, -1], names=["n00000002", "b"], wnids=["n00000001", "n00000002"])
    assert tree.map_labels(["n00000002", "b"]).tolist() == [1, 1]


def test_a_duplicated_wnid_is_its_first_node_everywhere(tmp_path: Path) -> None:
    """A wnid on two nodes (2 under n1, 3 under n2): detection labels (``map_labels``) and classification images
    (``ImageListParser``) must train the same node, the first; ``compare_trees`` takes the first node's parent."""
    ids = ["n00000001", "n00000002", "n00000003", "n00000003"]
    tree = WordTree([-1, -1, 0, 1], names=["a", "b", "c", "c2"], wnids=ids)
    assert tree.map_labels(["n00000003"]).tolist() == [2]
    lst = tmp_path / "train.list"
    lst.write_text("n00000003/n00000003_1.JPEG\n")
    (rec,) = ImageListParser(lst, tree).parse(None, IssueLog("error"))
    assert rec.labels.tolist() == [2]
    ref = WordTree([-1, 0], wnids=["n00000001", "n00000003"])
    cmp = wt.compare_trees(tree, ref)
    assert cmp["duplicates_a"] == 1 and cmp["shared"] == 2 and cmp["same_parent"] == 2  # n3 under n1 in both


def test_map_by_name_ignores_hyphens_case_and_spaces() -> None:
    """:func:`map_by_name` compares names "without case, spaces, underscores or hyphens"."""
    nodes = np.array([5, 7, 9])
    out = map_by_name(["Potted-Plant", "tv", "dining_table"], ["pottedplant", "tvmonitor", "dining table"], nodes, "x")
    assert out.tolist() == [5, 7, 9]


def test_class_names_other_than_the_tree_nodes_are_refused(tmp_path: Path) -> None:
    """A tree-labelled parser's class i is node i: other class names (another count, or the nodes in another
    order) are refused, not silently used."""
    (tmp_path / "t.tree").write_text("n00000001 -1\nn00000002 -1\nn00000003 0\n")
    lst = tmp_path / "train.list"
    lst.write_text("n00000003_1.JPEG\n")
    parser = ImageListParser(lst, tmp_path / "t.tree")
    assert parser.parse(parser.tree.names, IssueLog("error"))[0].labels.tolist() == [2]
    with pytest.raises(ValueError, match="class_names has 2 entries, the WordTree 3 nodes"):
        parser.parse(["n00000001", "n00000002"], IssueLog("error"))
    with pytest.raises(ValueError, match="class_names must be the WordTree's node names in tree order"):
        parser.parse(["n00000002", "n00000001", "n00000003"], IssueLog("error"))


# ---------------------------------------------------------------- the paper's path rule on hand-made graphs
def test_greedy_orders_labels_by_their_current_cost() -> None:
    """Greedy ("add the paths that grow the tree by as little as possible", repeatedly): initial costs A 6, B 5,
    C 6. B goes first (5 new); that drops C to 2 (s4, c) and A to 5 either way, so C goes next; then A's second
    path costs 4 (t1 t2 t3 a) against 5: A takes it. Ranked by the costs before B was added, A (6, listed first)
    would come before C and take its first path (a 5-5 tie). In list order A takes its first path (6 < 9)."""
    s = ["R", "s1", "s2", "s3"]
    p1, p2 = ["R", "a1", "a2", "a3", "a4", "a"], [*s, "s4", "t1", "t2", "t3", "a"]
    paths = {
        "A": [p1, p2],
        "B": [[*s, "b"], ["R", "k1", "k2", "k3", "k4", "k5", "b"]],
        "C": [[*s, "s4", "c"], ["R", "j1", "j2", "j3", "j4", "j5", "j6", "c"]],
    }
    assert wt._choose_paths(paths, ["A", "B", "C"], greedy=True) == [[*s, "b"], [*s, "s4", "c"], p2]
    assert wt._choose_paths(paths, ["A", "B", "C"], greedy=False) == [p1, [*s, "b"], [*s, "s4", "c"]]


def _fake_wordnet(monkeypatch: pytest.MonkeyPatch, graph: dict[str, list[list[str]]]) -> None:
    """``build_tree`` on a hand-drawn graph: each label's paths from the root as given, names = ids."""
    monkeypatch.setattr(wt, "hypernym_paths", lambda label, root, wordnet: graph[label])
    monkeypatch.setattr(wt, "synset_name", lambda w, wordnet: w)


def test_a_node_keeps_the_parent_of_the_first_path_that_added_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """N has two parents (P1, P2). x (one path, via P1) adds N under P1; z adds P2; y's two paths each add only y
    and the first (via P2) wins the tie. N stays under P1: had y's path moved it under P2, P1 would be a leaf that
    no label names (every leaf of the paper's tree ends a label's path)."""
    graph = {
        "x": [["R", "P1", "N", "x"]],
        "z": [["R", "P2", "z"]],
        "y": [["R", "P2", "N", "y"], ["R", "P1", "N", "y"]],
    }
    _fake_wordnet(monkeypatch, graph)
    parents, wnids, names = wt.build_tree(["x", "z", "y"], "R", wordnet=object())
    tree = WordTree(parents, names, wnids)
    parent = {w: (wnids[p] if p >= 0 else None) for w, p in zip(wnids, parents, strict=True)}
    assert parent == {"R": None, "P1": "R", "P2": "R", "N": "P1", "x": "N", "y": "N", "z": "P2"}
    assert {w for w, c in zip(wnids, tree.child_group.tolist(), strict=True) if c < 0} == {"x", "y", "z"}


def test_collapse_never_removes_a_label(monkeypatch: pytest.MonkeyPatch) -> None:
    """collapse removes non-label single-child nodes only: R > M > D > F > E with labels D and E collapses R, M and F;
    D (a label with one child) stays: D > E."""
    _fake_wordnet(monkeypatch, {"D": [["R", "M", "D"]], "E": [["R", "M", "D", "F", "E"]]})
    assert wt.build_tree(["D", "E"], "R", collapse=True, wordnet=object())[:2] == ([-1, 0], ["D", "E"])


def test_collapsed_node_gives_its_child_its_place_among_siblings() -> None:
    """:func:`collapse_chains`: "the child takes the removed node's place among its siblings". P (before S under R)
    has the single child a, listed last: a comes before S."""
    parent_of = {"R": None, "P": "R", "S": "R", "b": "S", "c": "S", "a": "P"}
    new_parent, order = wt.collapse_chains(parent_of, ["R", "P", "S", "b", "c", "a"], {"a", "b", "c"})
    assert order == ["R", "a", "S", "b", "c"] and new_parent["a"] == "R"
    assert wt.darknet_order(new_parent, order) == ([-1, 0, 0, 2, 2], ["R", "a", "S", "b", "c"])


# ---------------------------------------------------------------- build-9k's label sets against 9k.tree
def test_build_9k_label_sets_are_9k_trees_nodes_leaves_and_imagenet_synsets() -> None:
    """``nodes``: the 9418 nodes; ``leaves``: the 7573 nodes no line of 9k.tree names as a parent; ``imagenet``:
    the 9149 nodes listed in imagenet.labels.list plus the mapped (coco9k / inet9k) nodes, in 9k.labels order."""
    cli = load_script("wordtree")
    lines = [ln.split() for ln in (WT / "9k.tree").read_text().splitlines() if ln.strip()]
    ids, parents = [ln[0] for ln in lines], {int(ln[1]) for ln in lines}
    assert cli.darknet_9k_labels("nodes", WT) == ids and len(ids) == 9418
    leaves = cli.darknet_9k_labels("leaves", WT)
    assert leaves == [w for i, w in enumerate(ids) if i not in parents] and len(leaves) == 7573
    inet = {ln.split()[0] for ln in (WT / "imagenet.labels.list").read_text().splitlines() if ln.strip()}
    mapped = {int(x) for f in ("coco9k.map", "inet9k.map") for x in (WT / f).read_text().split()}
    extra = [ids[i] for i in sorted(mapped) if ids[i] not in inet]
    labels = cli.darknet_9k_labels("imagenet", WT)
    assert labels == [w for i, w in enumerate(ids) if w in inet or i in mapped]
    assert sum(w in inet for w in ids) == 9149 and len(extra) == 1 and len(labels) == 9150 and extra[0] in labels


def test_a_data_tree_of_the_same_nodes_in_another_hierarchy_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The data's tree (RBC and WBC under 'blood cell') and the head's (RBC under the root) name the same nodes: the
    checks by name passed and the head trained over its own hierarchy without a word. Now a warning names the first
    node whose parent differs; the same tree says nothing."""
    from types import SimpleNamespace

    from yolo9000.build import _warn_other_trees
    from yolo9000.wordtree import WordTree

    names = ["cell", "blood cell", "RBC", "WBC"]
    data = WordTree([-1, 0, 1, 1], names)
    head = WordTree([-1, 0, 0, 1], names)
    parser = SimpleNamespace(tree=data)
    dm = SimpleNamespace(specs={"train": None, "classification": None}, parsers=lambda split: [parser])
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        _warn_other_trees(dm, WordTree([-1, 0, 1, 1], names))
    assert not caplog.records
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        _warn_other_trees(dm, head)
    assert "in another hierarchy: node 2 'RBC' has parent 1 in the data's, parent 0 in the head's" in caplog.text
