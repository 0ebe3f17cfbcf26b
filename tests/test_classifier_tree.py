"""Classification with a WordTree (the paper's WordTree1k setting): the hierarchical softmax loss, the per-depth and
top-down metrics of ClassifierModule, and a tiny run of experiment=wordtree_digits through the build."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from conftest import ROOT, compose_config, quiet_trainer
from yolo9000.data.digits import DIGIT_NODES, TREE_NAMES
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.modules.classifier import ClassifierModule, ancestors_by_depth, tree_cross_entropy
from yolo9000.wordtree import WordTree

# Two sibling groups: the roots {A, B} and A's children {a1, a2}; B is a leaf at depth 1.
A, B, A1, A2 = 0, 1, 2, 3


def _tree() -> WordTree:
    return WordTree([-1, -1, A, A], ["A", "B", "a1", "a2"])


def _module(tree: WordTree) -> ClassifierModule:
    module = ClassifierModule(Darknet19Classifier(Darknet19(width=0.125, bn_momentum=0.1), tree.n), tree=tree)
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]  # no trainer attached
    return module


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_tree_loss_by_hand() -> None:
    tree = _tree()
    logits = torch.tensor([[1.0, 0.0, 2.0, -1.0]] * 3, requires_grad=True)
    labels = torch.tensor([A1, A, B])
    loss = tree_cross_entropy(logits, labels, tree)
    # -log softmax([1, 0])[0] = log(1 + e^-1); -log softmax([2, -1])[0] = log(1 + e^-3); -log softmax([1, 0])[1]
    root_a, a_a1, root_b = _softplus(-1.0), _softplus(-3.0), _softplus(1.0)
    assert loss.tolist() == pytest.approx([root_a + a_a1, root_a, root_b], abs=1e-6)
    assert loss[0] > loss[1]  # the internal label A trains only the root group
    loss.sum().backward()
    # darknet's delta (truth - output) on the path's groups, nothing elsewhere: grad = output - truth
    p_root, p_a = 1 / (1 + math.exp(-1.0)), 1 / (1 + math.exp(-3.0))
    expected = [
        [p_root - 1, 1 - p_root, p_a - 1, 1 - p_a],  # a1: groups {A, B} and {a1, a2}
        [p_root - 1, 1 - p_root, 0.0, 0.0],  # A: root group only
        [p_root, -p_root, 0.0, 0.0],  # B: root group only
    ]
    assert logits.grad.tolist() == [pytest.approx(r, abs=1e-6) for r in expected]


def test_ancestors_by_depth() -> None:
    anc, depth = ancestors_by_depth(_tree())
    assert depth.tolist() == [1, 1, 2, 2]
    assert anc.tolist() == [[A, -1], [B, -1], [A, A1], [A, A2]]


def test_leaf_wrong_parent_right() -> None:
    module = _module(_tree())
    # P(A) = sigmoid(3) = .95, P(a2 | A) = sigmoid(1) = .73: the best leaf is a2 (.70), the label a1
    module.update_metrics("test", torch.tensor([[3.0, 0.0, 0.0, 1.0]]), torch.tensor([A1]))
    module.on_test_epoch_end()
    res = module.test_results
    assert res["acc_depth_1"] == 1.0 and res["acc_depth_2"] == 0.0 and res["top1"] == 0.0
    assert res["tree_top1"] == 0.0  # the descent reaches a2 (.95 * .73 > .5)
    assert res["per_class"]["a1"] == {"accuracy": 0.0, "num_images": 1}


def test_tree_metrics_by_hand() -> None:
    module = _module(_tree())
    stop = [1.0, 0.0, 0.2, 0.0]  # P(A) = .73, P(a1 | A) = .55: product .40 < .5, the descent stops at A
    logits = torch.tensor([[3.0, 0.0, 0.0, 1.0], stop, stop, [0.0, 2.0, 0.0, 0.0]])
    labels = torch.tensor([A1, A1, A, B])
    out = module.tree_outputs(logits)
    assert out["leaf"].tolist() == [A2, A1, A1, B]
    assert out["top_down"].tolist() == [A2, A, A, B]
    assert out["topk"].shape == (4, 3)  # top-5 clipped to the 3 leaves
    module.update_metrics("test", logits[:2], labels[:2])  # two batches: the metrics accumulate
    module.update_metrics("test", logits[2:], labels[2:])
    module.on_test_epoch_end()
    res = module.test_results
    assert res["top1"] == pytest.approx(2 / 3)  # leaf labels only: rows 0 (a2 for a1), 1, 3
    assert res["tree_top1"] == pytest.approx(0.5)  # row 1: top1 right but the descent stops at A; row 2: A is right
    assert res["acc_depth_1"] == 1.0 and res["acc_depth_2"] == pytest.approx(0.5)  # depth 2: a1 labels only
    assert res["top5"] == 1.0 and res["top5_k"] == 3 and res["num_images"] == 4
    expected_loss = [_softplus(-3) + _softplus(1), _softplus(-1) + _softplus(-0.2), _softplus(-1), _softplus(-2)]
    assert res["loss"] == pytest.approx(sum(expected_loss) / 4, abs=1e-5)
    assert res["per_class"]["a1"]["accuracy"] == 0.5 and res["per_class"]["A"]["accuracy"] == 1.0
    assert math.isnan(res["per_class"]["a2"]["accuracy"]) and "confusion_matrix" not in res
    pred = module.predict_step({"images": torch.zeros(2, 3, 32, 32), "paths": ["x", "y"]}, 0)
    assert pred["probs"].shape == (2, 4) and len(pred["names"]) == 2 and set(pred["leaf_names"]) <= {"B", "a1", "a2"}


def test_tree_head_must_match() -> None:
    net = Darknet19Classifier(Darknet19(width=0.125), 3)
    with pytest.raises(ValueError, match=r"WordTree has 4 nodes but the head predicts 3 classes"):
        ClassifierModule(net, tree=_tree())
    with pytest.raises(ValueError, match="label_smoothing"):
        ClassifierModule(Darknet19Classifier(Darknet19(width=0.125), 4), tree=_tree(), label_smoothing=0.1)


def test_wordtree_digits_tiny_run(tmp_path: Path) -> None:
    """experiment=wordtree_digits through the build (the head's size from the data's classes = the tree's nodes), a
    few Lightning steps, the tree metrics logged and in test_results."""
    from yolo9000.build import build

    cfg = compose_config(
        "train",
        "experiment=wordtree_digits",
        f"paths.root_dir={ROOT}",
        f"data.cache_dir={tmp_path / 'digits'}",
        "data.max_images=48",
        "data.batch_size=16",
        "data.eval_batch_size=24",
        "model.net.backbone.width=0.125",
    )
    built = build(cfg)
    dm, module = built.datamodule, built.module
    assert dm.class_names == list(TREE_NAMES) and module.num_classes == 13 and module.tree.depth == 3
    manifest = json.loads((dm.root / "manifest.json").read_text())
    assert manifest["images"]["train"]["even"] > 0 and "even" not in manifest["images"]["test"]  # coarse: train
    assert {int(r.label) for r in dm.datasets["val"].records} <= set(DIGIT_NODES)
    trainer = quiet_trainer(max_epochs=1, limit_train_batches=3, num_sanity_val_steps=0)
    trainer.fit(module, datamodule=dm)
    keys = ["top1", "top5", "loss", "acc_depth_1", "acc_depth_2", "acc_depth_3", "tree_top1"]
    assert all(f"val/{k}" in trainer.callback_metrics for k in keys)
    assert int(module.seen) == 48
    trainer.test(module, datamodule=dm)
    res = module.test_results
    assert res["num_images"] == 48 and res["acc_depth_1"] == 1.0  # one root
    assert all(0.0 <= res[k] <= 1.0 for k in keys if k != "loss") and res["acc_depth_3"] == res["top1"]
    assert all(f"test/{k}" in trainer.callback_metrics for k in keys)
