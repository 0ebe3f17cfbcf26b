"""Digits data of the YOLO9000 experiment: the digit WordTree, the generated splits (classes, coarse labels, tight
boxes, determinism) and the joint detection + classification stream (ratio, marker rows, workers, resume)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_script
from yolo9000.data.digits import (
    DIGIT_NODES,
    EVEN_NODE,
    ODD_NODE,
    PARITY_NODES,
    TREE_NAMES,
    DigitsConfig,
    DigitsParser,
    build_split,
    digit_tree,
    load_digit_tree,
    load_mnist,
    mnist_pools,
    write_digit_tree,
)
from yolo9000.data.image_io import read_image
from yolo9000.data.joint import CLASSONLY_XY, JointDataModule, JointIndexSampler
from yolo9000.data.records import IssueLog
from yolo9000.loss import CLASSONLY_MARK, RegionLoss

ROOT = Path(__file__).resolve().parents[1]
COUNTS = {"train": 24, "classification": 30, "val": 8, "test": 40}
CFG = DigitsConfig(seed=3, coarse_fraction=0.3)
NODE_DIGIT = {n: d for d, n in enumerate(DIGIT_NODES)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("digits")


@pytest.fixture(scope="module")
def splits(cache: Path) -> dict[str, list]:
    return {s: build_split(s, n, CFG, cache) for s, n in COUNTS.items()}


def _digits(records: list) -> list[np.ndarray]:
    """The true digit of every box, from the split's manifest."""
    import json

    manifest = json.loads((records[0].image_path.parent / "manifest.json").read_text())
    return [np.asarray(e["digits"]) for e in manifest["records"]]


# --------------------------------------------------------------------------------------------------- tree
def test_tree_files_and_paths(tmp_path: Path) -> None:
    tree = load_digit_tree(ROOT / "data" / "mnist5k")
    code = digit_tree()
    assert tree.names == code.names == list(TREE_NAMES)
    assert tree.parent.tolist() == code.parent.tolist()
    t, n = write_digit_tree(tmp_path)  # the vendored files are what the code writes
    assert t.read_text() == (ROOT / "data/mnist5k/digits.tree").read_text()
    assert n.read_text() == (ROOT / "data/mnist5k/digits.names").read_text()
    assert tree.group_offset.tolist() == [0, 1, 3, 8] and tree.group_size.tolist() == [1, 2, 5, 5]
    for d in range(10):
        assert tree.names[DIGIT_NODES[d]] == str(d)
        assert tree.paths[DIGIT_NODES[d]].tolist() == [DIGIT_NODES[d], PARITY_NODES[d], 0]  # leaf -> parity -> digit
        assert tree.names[PARITY_NODES[d]] == ("even" if d % 2 == 0 else "odd")
    assert tree.paths[EVEN_NODE].tolist() == [EVEN_NODE, 0, -1] and tree.parent[0] == -1


# ------------------------------------------------------------------------------------------------- splits
def test_train_split_digits_0_to_4_with_coarse_labels(splits: dict[str, list]) -> None:
    recs = splits["train"]
    assert len(recs) == COUNTS["train"]
    digits = np.concatenate(_digits(recs))
    labels = np.concatenate([r.labels for r in recs])
    assert set(digits.tolist()) == {0, 1, 2, 3, 4}
    coarse = np.isin(labels, [EVEN_NODE, ODD_NODE])
    assert coarse.sum() == round(CFG.coarse_fraction * len(labels))  # exactly the configured fraction
    assert (labels[coarse] == np.asarray(PARITY_NODES)[digits[coarse]]).all()  # the right parity
    assert (labels[~coarse] == np.asarray(DIGIT_NODES)[digits[~coarse]]).all()
    assert all(CFG.min_digits - 1 <= len(r.boxes) <= CFG.max_digits for r in recs)


def test_classification_and_test_splits_have_all_ten(splits: dict[str, list]) -> None:
    cls = splits["classification"]
    assert all(len(r.labels) == 1 for r in cls)
    per_digit = Counter(NODE_DIGIT[int(r.labels[0])] for r in cls)
    assert sorted(per_digit) == list(range(10)) and max(per_digit.values()) - min(per_digit.values()) <= 1
    for split in ("test", "val"):
        labels = np.concatenate([r.labels for r in splits[split]])
        assert set(labels.tolist()) <= set(DIGIT_NODES)  # leaves only
    assert {NODE_DIGIT[int(x)] for r in splits["test"] for x in r.labels} == set(range(10))
    _, mnist_labels = load_mnist()
    pools = mnist_pools(len(mnist_labels), CFG.seed, CFG.heldout_fraction)
    assert not set(pools["train"]) & set(pools["test"]) and not set(pools["train"]) & set(pools["val"])
    assert not set(pools["val"]) & set(pools["test"])
    assert len(pools["train"]) + len(pools["val"]) + len(pools["test"]) == len(mnist_labels)


@pytest.mark.parametrize("split", ["train", "test", "classification"])
def test_boxes_tight_around_the_ink(splits: dict[str, list], split: str) -> None:
    for r in splits[split][:12]:
        img = read_image(r.image_path)
        assert img.shape == (CFG.canvas_size, CFG.canvas_size, 3) and (r.width, r.height) == img.shape[1::-1]
        ink = img[..., 0] > 0
        covered = np.zeros_like(ink)
        for x0, y0, x1, y1 in r.boxes.astype(int).tolist():
            assert (r.boxes.astype(int) == r.boxes).all()
            crop = ink[y0:y1, x0:x1]
            assert crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any()  # tight
            assert CFG.digit_min - 2 <= max(x1 - x0, y1 - y0) <= CFG.digit_max
            assert not covered[y0:y1, x0:x1].any()  # boxes do not overlap
            covered[y0:y1, x0:x1] = True
        assert not (ink & ~covered).any()  # every ink pixel is inside a box: nothing unboxed


def test_generation_is_deterministic(splits: dict[str, list], tmp_path: Path) -> None:
    again = build_split("train", COUNTS["train"], CFG, tmp_path / "a")
    for a, b in zip(splits["train"], again, strict=True):
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, b.labels)
        np.testing.assert_array_equal(read_image(a.image_path), read_image(b.image_path))
    assert again[0].image_path.parent.name == splits["train"][0].image_path.parent.name  # same params hash
    other = build_split("train", COUNTS["train"], DigitsConfig(seed=4), tmp_path / "a")
    assert other[0].image_path.parent != again[0].image_path.parent
    assert any(not np.array_equal(a.boxes, b.boxes) for a, b in zip(again, other, strict=True))


def test_parser_protocol(cache: Path) -> None:
    p = DigitsParser("val", num_images=COUNTS["val"], cache_dir=cache, seed=CFG.seed)
    assert p.discover_class_names() == list(TREE_NAMES)
    recs = p.parse(None, IssueLog())
    assert len(recs) == COUNTS["val"]
    names = list(reversed(TREE_NAMES))  # matched by name
    remapped = p.parse(names, IssueLog())
    assert [names[int(x)] for x in remapped[0].labels] == [TREE_NAMES[int(x)] for x in recs[0].labels]
    with pytest.raises(ValueError, match="lack"):
        p.parse(["digit", "even"], IssueLog())


# ------------------------------------------------------------------------------------------------- joint
def test_joint_sampler_ratio_and_purity() -> None:
    s = JointIndexSampler(40, 30, 0.5, seed=1)
    assert len(s) == 60 and s.source_counts() == {"detection": 40, "classification": 20}
    e0 = s.epoch_indices(0)
    assert sorted(e0[e0 < 40].tolist()) == list(range(40))  # every detection image once
    assert (e0 >= 40).sum() == 20 and len(set(e0[e0 >= 40].tolist())) == 20
    np.testing.assert_array_equal(e0, JointIndexSampler(40, 30, 0.5, seed=1).epoch_indices(0))  # pure
    assert not np.array_equal(e0, s.epoch_indices(1))
    # epochs 0..2 take 60 = two passes over the pool: every classification image twice
    picks = np.concatenate([s.classification_indices(e) for e in range(3)])
    assert np.bincount(picks, minlength=30).tolist() == [2] * 30
    # paper's 4:1 cap with a small pool: repeats inside an epoch, evenly
    big = JointIndexSampler(10, 7, 4.0)
    assert np.bincount(big.classification_indices(0), minlength=7).max() <= 6
    # DDP shards: the union is the (padded) epoch, the same on every rank
    shards = [JointIndexSampler(40, 30, 0.5, seed=1, num_replicas=3, rank=r) for r in range(3)]
    for sh in shards:
        sh.set_epoch(2)
    union = sorted(i for sh in shards for i in sh)
    assert len(union) == 60 and union == sorted(s.epoch_indices(2).tolist())
    assert sum(sh.source_counts(all_ranks=False)["classification"] for sh in shards) == 20


def _module(cache: Path, workers: int = 0) -> JointDataModule:
    def parser(split: str) -> DigitsParser:
        return DigitsParser(split, num_images=COUNTS[split], cache_dir=cache, seed=CFG.seed)

    return JointDataModule(
        train=parser("train"),
        classification=parser("classification"),
        val=parser("val"),
        test=parser("test"),
        classification_per_detection=0.5,
        batch_size=4,
        num_workers=workers,
        pin_memory=False,
        persistent_workers=False,
        img_size=64,
        multiscale={"sizes": [64, 96], "period": 2},
        augment={"flip": 0.0},
        seed=5,
    )


def _epoch(dm: JointDataModule, epoch: int = 0) -> list[dict]:
    loader = dm.train_dataloader()
    loader.batch_sampler.set_epoch(epoch)
    return list(loader)


def test_joint_batches_carry_marker_rows(splits: dict[str, list], cache: Path) -> None:
    dm = _module(cache)
    dm.setup("fit")
    assert dm.images_per_source() == {"detection": 24, "classification": 12}
    by_id = {r.image_id: r for r in splits["train"] + splits["classification"]}
    batches = _epoch(dm)
    sources = Counter(s for b in batches for s in b["source"])
    assert sources == Counter(dm.images_per_source())  # the ratio holds over the epoch
    tree = digit_tree()
    loss = RegionLoss(tree.n, tree=tree)
    for b in batches:
        t, m, co = b["targets"], b["target_mask"], b["classonly"]
        assert co.tolist() == [s == "classification" for s in b["source"]]
        for i, image_id in enumerate(b["image_ids"]):
            rec = by_id[image_id]
            if co[i]:
                assert t[i, 0, :2].tolist() == [CLASSONLY_XY, CLASSONLY_XY] and t[i, 0, 0] > CLASSONLY_MARK
                assert int(t[i, 0, 4]) == int(rec.labels[0]) and m[i].tolist() == [True] + [False] * (m.shape[1] - 1)
            else:
                assert (t[i, m[i], :4] <= 1).all() and set(t[i, m[i], 4].long().tolist()) <= set(rec.labels.tolist())
        size = b["images"].shape[-1]
        raw = torch.zeros(len(t), 5 * (5 + tree.n), size // 32, size // 32)
        out = loss(raw, t, m, torch.ones(5, 2), seen=0)  # the loss takes the batch: only detection rows are truths
        assert out.num_truths == int(m[~co].sum()) and torch.isfinite(out.loss)
    val = next(iter(dm.val_dataloader()))
    assert set(val["source"]) == {"detection"} and not val["classonly"].any()  # detection only
    assert not (val["targets"][..., 0] > CLASSONLY_MARK).any()


def test_joint_stream_same_with_workers_and_resumes(splits: dict[str, list], cache: Path) -> None:
    single = _epoch(_module(cache, 0), epoch=1)
    multi = _epoch(_module(cache, 2), epoch=1)
    assert len(single) == len(multi) == 9
    for a, b in zip(single, multi, strict=True):
        assert a["image_ids"] == b["image_ids"] and a["source"] == b["source"]
        torch.testing.assert_close(a["targets"], b["targets"])
        assert torch.equal(a["images"], b["images"])
    dm = _module(cache, 0)
    dm.load_state_dict({"epoch": 1, "batch": 4})  # an interrupted run resumes at batch 4 of epoch 1
    resumed = list(dm.train_dataloader())
    assert [b["image_ids"] for b in resumed] == [b["image_ids"] for b in single[4:]]
    assert all(torch.equal(a["images"], b["images"]) for a, b in zip(resumed, single[4:], strict=True))


@pytest.mark.slow  # ~19 s; the digits experiment trains in the default suite under DDP (test_ddp.py)
def test_tiny_yolo9000_digits_run_writes_seen_unseen_table(tmp_path: Path) -> None:
    """A few batches of ``experiment=yolo9000_digits``: metrics.json holds ap50_seen / ap50_unseen (the means of
    the per-digit APs over 0-4 and 5-9), groups.md the table, and the joint stream logged its per-source counts."""
    import csv
    import json

    out = tmp_path / "run"
    cache = tmp_path / "cache"
    counts = {"train": 12, "classification": 24, "val": 6, "test": 6}
    run_script(
        "train.py",
        out,
        "experiment=yolo9000_digits",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
        "data.batch_size=6",
        "data.num_workers=0",
        "model.net.backbone.width=0.125",
        "callbacks.prediction_images.num_images=1",
        "model.burn_in=1",
        *(f"data.{s}.num_images={n}" for s, n in counts.items()),
        *(f"+data.{s}.cache_dir={cache}" for s in counts),
    )
    metrics = json.loads((out / "metrics.json").read_text())
    per_class = metrics["per_class"]
    for group, digits in (("seen", "01234"), ("unseen", "56789")):
        aps = [per_class[d]["ap50"] for d in digits]  # null: no test boxes of that digit (left out of the mean)
        defined = [a for a in aps if a is not None and np.isfinite(a) and a >= 0]
        assert metrics[f"ap50_{group}"] == (pytest.approx(np.mean(defined)) if defined else None)
    table = (out / "groups.md").read_text()
    assert "| seen |" in table and "| unseen |" in table
    # eval.py reports the training run's groups too (its config.yaml), on the same test images
    ev = tmp_path / "eval"
    run_script("eval.py", ev, f"ckpt_path={metrics['checkpoint']}")
    again = json.loads((ev / "metrics.json").read_text())
    assert (again["ap50_seen"], again["ap50_unseen"]) == (metrics["ap50_seen"], metrics["ap50_unseen"])
    assert (ev / "groups.md").read_text() == table
    rows = list(csv.DictReader((out / "csv" / "metrics.csv").open()))
    n_det = sum(float(r["train/images_detection"]) for r in rows if r.get("train/images_detection"))
    n_cls = sum(float(r["train/images_classification"]) for r in rows if r.get("train/images_classification"))
    assert (n_det, n_cls) == (12, 24)  # the experiment's classification_per_detection 2.0


def test_joint_data_with_a_flat_head_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Joint data without model.loss.tree trained a flat softmax over the tree's node names, silently (an audit's own
    joint setup forgot the key): the build warns, naming the key; the experiment as configured does not."""
    import logging

    from conftest import compose_config
    from yolo9000.build import build

    counts = {"train": 6, "classification": 6, "val": 3, "test": 3}
    base = [
        "experiment=yolo9000_digits",
        "data.num_workers=0",
        "model.net.backbone.width=0.125",
        *(f"data.{s}.num_images={n}" for s, n in counts.items()),
        *(f"+data.{s}.cache_dir={tmp_path}" for s in counts),
    ]
    for extra, warned in (([], False), (["model.loss.tree=null", "model.eval_map=null"], True)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="yolo9000"):
            build(compose_config("train", *base, *extra))
        assert ("joint data (classification images) with a flat head" in caplog.text) == warned
