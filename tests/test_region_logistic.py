"""darknet's region layer with logistic classes (``[region] softmax=0``, darknet's default when a cfg says nothing):
independent sigmoids, a binary target per class, and ``delta_region_class``'s multi-label rule (a later truth on a
predictor adds its class unless the class-0 delta it reads is exactly 0). Checked by hand on small cases and
against a line-by-line Python transcription of darknet's loop on random ones, saturated sigmoids included."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from yolo9000.loss import CLASSONLY_MARK, RegionLoss, region_loss_darknet
from yolo9000.wordtree import WordTree

SEEN = 20000  # past the prior-matching term: the class channels are all that differ between the cases


def _sig(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def _raw(logits: dict[tuple[int, int], list[float]], classes: int = 3, grid: int = 2) -> torch.Tensor:
    """(1, 5 + C, grid, grid) head output of one anchor: zeros, the class logits of the given cells."""
    raw = torch.zeros(1, 5 + classes, grid, grid)
    for (row, col), values in logits.items():
        raw[0, 5:, row, col] = torch.tensor(values)
    return raw


def _run(raw: torch.Tensor, truths: list[list[float]], classes: int = 3, **kw: float) -> tuple:
    loss = RegionLoss(classes, class_activation="logistic", **kw)
    x = raw.clone().requires_grad_(True)
    targets = torch.tensor([truths], dtype=torch.float32)
    out = loss(x, targets, torch.ones(1, len(truths), dtype=torch.bool), torch.tensor([[1.0, 1.0]]), SEEN)
    out.loss.backward()
    return out, x.grad[0, 5:]


def test_two_truths_on_one_predictor_train_both_classes() -> None:
    """Cell (0, 0) holds truths of class 2 then class 1, cell (1, 1) one of class 0: the first predictor's targets
    are (0, 1, 1), the second's (1, 0, 0); the gradient on a class logit is sigmoid - target (the class channels
    of the other predictors get none) and the class loss is the binary cross-entropy of those targets."""
    a, b = [0.5, -1.0, 2.0], [0.3, 0.0, -0.7]
    raw = _raw({(0, 0): a, (1, 1): b})
    truths = [[0.2, 0.2, 0.3, 0.3, 2], [0.3, 0.1, 0.3, 0.3, 1], [0.7, 0.8, 0.3, 0.3, 0]]
    out, grad = _run(raw, truths)
    want_a = [_sig(a[0]) - 0, _sig(a[1]) - 1, _sig(a[2]) - 1]
    want_b = [_sig(b[0]) - 1, _sig(b[1]) - 0, _sig(b[2]) - 0]
    assert grad[:, 0, 0].tolist() == pytest.approx(want_a, abs=1e-6)
    assert grad[:, 1, 1].tolist() == pytest.approx(want_b, abs=1e-6)
    assert grad[:, 0, 1].abs().max() == 0 and grad[:, 1, 0].abs().max() == 0

    def bce(x: float, t: int) -> float:
        return -math.log(_sig(x)) if t else -math.log(1 - _sig(x))

    want = sum(bce(x, t) for x, t in zip(a, [0, 1, 1], strict=True)) + sum(
        bce(x, t) for x, t in zip(b, [1, 0, 0], strict=True)
    )
    assert out.cls.item() == pytest.approx(want, rel=1e-5)
    # darknet's "Class": the class output at the writes that set every class (truths 1 and 3), over 3 truths
    assert out.avg_cat.item() == pytest.approx((_sig(a[2]) + _sig(b[0])) / 3, rel=1e-5)


def test_softmax_head_keeps_only_the_last_truth_of_a_predictor() -> None:
    """The same truths with darknet's softmax=1: the last truth of the first predictor (class 1) alone is its
    target: the logistic and softmax heads differ exactly where several truths share a predictor."""
    a = [0.5, -1.0, 2.0]
    truths = [[0.2, 0.2, 0.3, 0.3, 2], [0.3, 0.1, 0.3, 0.3, 1]]
    loss = RegionLoss(3)
    x = _raw({(0, 0): a}).requires_grad_(True)
    loss(
        x, torch.tensor([truths]), torch.ones(1, 2, dtype=torch.bool), torch.tensor([[1.0, 1.0]]), SEEN
    ).loss.backward()
    soft = torch.tensor(a).softmax(0) - torch.tensor([0.0, 1.0, 0.0])
    assert x.grad[0, 5:, 0, 0].tolist() == pytest.approx(soft.tolist(), abs=1e-6)


def test_saturated_class_zero_output_starts_the_set_over_as_darknet() -> None:
    """sigmoid(200) is 1.0 in float32: after a class-0 truth darknet reads a zero class-0 delta and the next truth
    starts over, so truths (0, 2, 1) on one predictor train (0, 1, 1), not (1, 1, 1); with a class-0 logit of 0
    (sigmoid 0.5) the same truths train all three classes."""
    truths = [[0.2, 0.2, 0.3, 0.3, 0], [0.3, 0.1, 0.3, 0.3, 2], [0.1, 0.3, 0.3, 0.3, 1]]
    _, grad = _run(_raw({(0, 0): [200.0, 0.0, 0.0]}), truths)
    assert grad[:, 0, 0].tolist() == pytest.approx([1.0, -0.5, -0.5], abs=1e-6)
    _, grad = _run(_raw({(0, 0): [0.0, 0.0, 0.0]}), truths)
    assert grad[:, 0, 0].tolist() == pytest.approx([-0.5, -0.5, -0.5], abs=1e-6)


def _darknet_class_deltas(output: list[list[float]], truths: list[tuple[int, int]], scale: float) -> tuple:
    """darknet's ``delta_region_class`` (no tree, ``tag = !softmax = 1``) called for each truth in order, transcribed
    line by line: ``output`` per predictor the class outputs; ``truths`` (predictor, class). Returns the deltas per
    predictor (None: never written) and avg_cat."""
    delta: list[list[float] | None] = [None] * len(output)
    avg_cat = 0.0
    for pred, cls in truths:
        d = delta[pred] if delta[pred] is not None else [0.0] * len(output[pred])
        if d[0] != 0.0:  # delta[index] && tag
            d[cls] = scale * (1 - output[pred][cls])
        else:
            for n in range(len(d)):
                d[n] = scale * ((1.0 if n == cls else 0.0) - output[pred][n])
            avg_cat += output[pred][cls]
        delta[pred] = d
    return delta, avg_cat


@pytest.mark.parametrize("seed", range(6))
def test_matches_darknets_loop_on_random_truths(seed: int) -> None:
    """Random truths piled on a 3 x 3 grid of one anchor (several per cell), random class logits with some class-0
    logits saturated (+-200): the gradient on the class channels is -delta of darknet's loop, avg_cat its sum over
    the truths."""
    g = torch.Generator().manual_seed(seed)
    classes, grid, n = 4, 3, 12
    raw = torch.randn(1, 5 + classes, grid, grid, generator=g)
    sat = torch.rand(grid, grid, generator=g)
    raw[0, 5][sat < 0.25] = 200.0
    raw[0, 5][sat > 0.75] = -200.0
    cells = torch.randint(0, grid, (n, 2), generator=g)
    labels = torch.randint(0, classes, (n,), generator=g)
    truths = [
        [(c + 0.5) / grid, (r + 0.5) / grid, 0.3, 0.3, int(k)]
        for (r, c), k in zip(cells.tolist(), labels.tolist(), strict=True)
    ]
    out, grad = _run(raw, truths, classes=classes, class_scale=1.0)
    output = raw[0, 5:].sigmoid().permute(1, 2, 0).reshape(grid * grid, classes).tolist()
    order = [(r * grid + c, int(k)) for (r, c), k in zip(cells.tolist(), labels.tolist(), strict=True)]
    delta, avg_cat = _darknet_class_deltas(output, order, 1.0)
    got = grad.permute(1, 2, 0).reshape(grid * grid, classes)
    for pred, d in enumerate(delta):
        want = [0.0] * classes if d is None else [-v for v in d]
        assert got[pred].tolist() == pytest.approx(want, abs=1e-6), (pred, d)
    assert out.avg_cat.item() == pytest.approx(avg_cat / n, rel=1e-5)


def test_darknet_terms_entry_and_the_refusals() -> None:
    """``region_loss_darknet(softmax=False)`` is the logistic head; a WordTree keeps its hierarchical softmax
    whatever the flag (darknet); a classification-only image needs a tree; an unknown activation is refused."""
    raw = _raw({(0, 0): [0.5, -1.0, 2.0]})
    truth = torch.tensor([[[0.2, 0.2, 0.3, 0.3, 2], [0.3, 0.1, 0.3, 0.3, 1]]])
    logistic = region_loss_darknet(raw, truth, anchors=[1.0, 1.0], num_classes=3, seen=SEEN, softmax=False)
    soft = region_loss_darknet(raw, truth, anchors=[1.0, 1.0], num_classes=3, seen=SEEN)
    logits = torch.tensor([0.5, -1.0, 2.0])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.tensor([0.0, 1.0, 1.0]), reduction="sum")
    ce = torch.nn.functional.cross_entropy(logits.unsqueeze(0), torch.tensor([1]))
    assert (logistic - soft).item() == pytest.approx((bce - ce).item(), rel=1e-5)
    tree = WordTree([-1, -1, 0])
    assert RegionLoss(3, tree=tree, class_activation="logistic").class_activation == "softmax"
    classonly = torch.tensor([[[2 * CLASSONLY_MARK, 2 * CLASSONLY_MARK, 0.0, 0.0, 1]]])
    with pytest.raises(ValueError, match="classification-only images .* class_activation=logistic"):
        RegionLoss(3, class_activation="logistic")(
            raw, classonly, torch.ones(1, 1, dtype=torch.bool), torch.tensor([[1.0, 1.0]]), SEEN
        )
    with pytest.raises(ValueError, match="class_activation must be one of"):
        RegionLoss(3, class_activation="sigmoid")  # type: ignore[arg-type]


def test_decode_scores_logistic_classes_and_a_cfg_without_softmax_converts_to_them(tmp_path: Path) -> None:
    """One box of objectness logit 2 and class logits (0, 1, -1): logistic scores sigmoid(2) * (0.5, 0.731, 0.269)
    = (0.440, 0.644, 0.237), two above 0.3 (both kept: NMS is per class); a softmax head scores (0.216, 0.586,
    0.079), one above. A cfg whose [region] says nothing of softmax (darknet's default 0) converts to the logistic
    head, loss and decode alike; darknet's own decode of the same output agrees."""
    from yolo9000.checkpoints import darknet_to_checkpoint, load_module
    from yolo9000.postprocess import postprocess, region_detections_darknet

    raw = torch.full((1, 8, 2, 2), -9.0)
    raw[0, :4] = 0.0
    raw[0, 4, 1, 0] = 2.0
    raw[0, 5:, 1, 0] = torch.tensor([0.0, 1.0, -1.0])
    anchors = torch.tensor([[1.0, 1.0]])
    obj = _sig(2.0)
    logistic = postprocess(raw, anchors, (64, 64), conf_thresh=0.3, class_activation="logistic")[0]
    assert sorted(logistic["labels"].tolist()) == [0, 1]
    assert sorted(logistic["scores"].tolist()) == pytest.approx([obj * 0.5, obj * _sig(1.0)], rel=1e-5)
    soft = postprocess(raw, anchors, (64, 64), conf_thresh=0.3)[0]
    assert soft["labels"].tolist() == [1] and soft["scores"].item() == pytest.approx(
        obj * torch.tensor([0.0, 1.0, -1.0]).softmax(0)[1].item(), rel=1e-5
    )
    dk = region_detections_darknet(raw, anchors=anchors, num_classes=3, thresh=0.3, softmax=False)
    assert dk["prob"][0, 2].tolist() == pytest.approx([obj * 0.5, obj * _sig(1.0), 0.0], rel=1e-5)  # box 2: row 1

    cfg = tmp_path / "logistic.cfg"
    cfg.write_text(
        "[net]\nheight=64\nwidth=64\nchannels=3\n[convolutional]\nfilters=8\nsize=1\nactivation=linear\n"
        "[region]\nanchors=1,1\nclasses=3\nnum=1\n"
    )
    path = tmp_path / "logistic.ckpt"
    torch.save(darknet_to_checkpoint(cfg), path)
    module = load_module(path)
    assert module.criterion.class_activation == "logistic"
    got = module.predict_raw(raw, (64, 64), None, None, conf_thresh=0.3)[0]
    assert sorted(got["labels"].tolist()) == [0, 1]
    (tmp_path / "soft.cfg").write_text(cfg.read_text() + "softmax=1\n")
    torch.save(darknet_to_checkpoint(tmp_path / "soft.cfg"), path)
    assert load_module(path).criterion.class_activation == "softmax"
