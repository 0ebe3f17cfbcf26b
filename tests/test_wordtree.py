"""WordTree groups, hierarchical softmax and top-down decode against hand-computed values (small.tree)."""

from __future__ import annotations

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
