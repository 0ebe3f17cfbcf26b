"""Rules of YOLO9000's joint detection + classification stream (yolo9000.data.joint) that the digits tests leave open:
the epoch size's rounding, an empty classification pool, fresh reshuffles per pass and per epoch, DDP padding and
sharding, per-rank source counts, the marker row's whole layout, and the data module's wiring (seed, rank, val,
max_images, unlabelled classification images)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from yolo9000.data.dataset import DetectionDataset
from yolo9000.data.joint import JointCollate, JointDataModule, JointDataset, JointIndexSampler
from yolo9000.data.records import DetectionRecord, IssueLog
from yolo9000.data.transforms import DetectionTransform
from yolo9000.loss import CLASSONLY_MARK

NAMES = ["a", "b", "c", "d", "e", "f", "g", "h"]


# ---------------------------------------------------------------------------------------------- sampler
def test_epoch_takes_round_of_ratio_times_detection_images() -> None:
    # 0.6 * 4 = 2.4 -> 2 (not ceil's 3); 0.7 * 4 = 2.8 -> 3 (not int's 2)
    for ratio, k in ((0.6, 2), (0.7, 3)):
        s = JointIndexSampler(4, 10, ratio)
        assert s.source_counts() == {"detection": 4, "classification": k}
        assert len(s) == 4 + k and len(s.epoch_indices(0)) == 4 + k
        assert int((s.epoch_indices(0) >= 4).sum()) == k


def test_an_empty_classification_pool_is_a_detection_only_stream() -> None:
    s = JointIndexSampler(5, 0, 4.0)  # a ratio but no classification images: nothing to mix in
    assert len(s) == 5 and s.source_counts() == {"detection": 5, "classification": 0}
    assert sorted(s.epoch_indices(0).tolist()) == [0, 1, 2, 3, 4]
    assert sorted(s) == [0, 1, 2, 3, 4]


def test_every_pass_over_the_classification_pool_is_a_fresh_shuffle() -> None:
    s = JointIndexSampler(10, 6, 0.6)  # 6 a epoch = the whole pool: epoch e is pass e
    passes = [s.classification_indices(e).tolist() for e in range(6)]
    assert all(sorted(p) == list(range(6)) for p in passes)  # each image once per pass
    assert len({tuple(p) for p in passes}) > 1  # reshuffled, not one order repeated


def test_detection_order_is_reshuffled_every_epoch() -> None:
    s = JointIndexSampler(20, 0, 0.0, seed=3)
    orders = [s.epoch_indices(e).tolist() for e in range(3)]
    assert all(sorted(o) == list(range(20)) for o in orders)
    assert orders[0] != orders[1] != orders[2]
    # with classification images too: the detection images' own order changes between epochs
    mixed = JointIndexSampler(20, 5, 0.25, seed=3)
    det = [[i for i in mixed.epoch_indices(e).tolist() if i < 20] for e in range(2)]
    assert det[0] != det[1]


def test_ddp_shards_pad_with_the_first_indices_and_interleave() -> None:
    # 4 detection + round(0.75 * 4) = 3 classification = 7 over 4 ranks: 2 each, padded with the epoch's first index
    shards = [JointIndexSampler(4, 5, 0.75, seed=2, num_replicas=4, rank=r) for r in range(4)]
    e = shards[0].epoch_indices(0).tolist()
    assert len(e) == 7
    padded = e + e[:1]
    for r, sh in enumerate(shards):
        assert len(sh) == 2
        assert list(sh) == [padded[r], padded[r + 4]]  # DistributedSampler's rank::num_replicas


def test_per_rank_source_counts_are_those_of_the_ranks_shard_of_that_epoch() -> None:
    n_det = 7
    shards = [JointIndexSampler(n_det, 9, 0.75, seed=1, num_replicas=3, rank=r) for r in range(3)]
    seen = set()
    for epoch in range(6):
        for sh in shards:
            sh.set_epoch(epoch)
            idx = list(sh)
            want = {"detection": sum(i < n_det for i in idx), "classification": sum(i >= n_det for i in idx)}
            assert sh.source_counts(all_ranks=False) == want  # None: the epoch set last
            assert sh.source_counts(epoch, all_ranks=False) == want
            assert sum(want.values()) == len(sh) == 4  # ceil(12 / 3)
            seen.add((sh.rank, want["classification"]))
    assert len(seen) > 3  # the per-rank mix varies between epochs (else the test would not tell epochs apart)


# ------------------------------------------------------------------------------------ dataset and collate
def _image(path: Path, size: int = 40) -> Path:
    Image.fromarray(np.full((size, size, 3), 128, np.uint8)).save(path)
    return path


def _det(tmp: Path, name: str) -> DetectionRecord:
    return DetectionRecord(
        _image(tmp / f"{name}.png"),
        name,
        40,
        40,
        np.array([[4.0, 4.0, 20.0, 24.0]], np.float32),
        np.array([1], np.int64),
        np.zeros(1, bool),
    )


def _cls(tmp: Path, name: str, labels: list[int]) -> DetectionRecord:
    n = len(labels)
    return DetectionRecord(
        _image(tmp / f"{name}.png"),
        name,
        40,
        40,
        np.tile(np.array([[0.0, 0.0, 40.0, 40.0]], np.float32), (n, 1)),
        np.array(labels, np.int64),
        np.zeros(n, bool),
    )


def test_classification_image_batches_as_the_exact_marker_row_of_its_first_label(tmp_path: Path) -> None:
    transform = DetectionTransform(train=True, augment={"flip": 0.0})
    det = DetectionDataset([_det(tmp_path, "d0"), _det(tmp_path, "d1")], transform, IssueLog())
    ds = JointDataset(det, [_cls(tmp_path, "c0", [5, 2]), _cls(tmp_path, "c1", [3])], transform, default_size=32)
    samples = [ds[(i, 32, 7)] for i in (2, 0, 3)]
    assert [s["source"] for s in samples] == ["classification", "detection", "classification"]
    assert [s["class_label"] for s in (samples[0], samples[2])] == [5, 3]  # labels[0], not the last label
    b = JointCollate(eval_targets=False)(samples)
    assert b["classonly"].tolist() == [True, False, True] and b["source"] == [s["source"] for s in samples]
    mark = CLASSONLY_MARK + 1.0
    assert b["targets"][0, 0].tolist() == [mark, mark, 1.0, 1.0, 5.0]  # (x, y above the mark, w = h = 1, node)
    assert b["targets"][2, 0].tolist() == [mark, mark, 1.0, 1.0, 3.0]
    assert b["target_mask"][0, 0] and not b["target_mask"][0, 1:].any()
    assert b["targets"][1, 0, 4] == 1 and (b["targets"][1, 0, :4] <= 1).all()  # the detection box


# ------------------------------------------------------------------------------------------ data module
class _Parser:
    def __init__(self, records: list[DetectionRecord]) -> None:
        self.records = records

    def parse(self, class_names: object, issues: IssueLog) -> list[DetectionRecord]:
        return list(self.records)

    def discover_class_names(self) -> list[str]:
        return NAMES


def _module(tmp: Path, n_det: int = 4, cls_labels: list[list[int]] | None = None, **kw: object) -> JointDataModule:
    cls_labels = [[2], [3], [4], [5], [6]] if cls_labels is None else cls_labels
    dets = [_det(tmp, f"d{i}") for i in range(n_det)]
    clss = [_cls(tmp, f"c{i}", lab) for i, lab in enumerate(cls_labels)]
    return JointDataModule(
        train=_Parser(dets),
        val=_Parser(dets[:2]),
        classification=_Parser(clss),
        classification_per_detection=0.5,
        batch_size=2,
        num_workers=0,
        pin_memory=False,
        persistent_workers=False,
        img_size=32,
        **kw,
    )


def test_data_module_stream_is_the_sampler_of_its_seed_world_and_rank(tmp_path: Path) -> None:
    for seed in (0, 5):
        dm = _module(tmp_path, seed=seed)
        dm.setup("fit")
        got = dm.index_sampler()
        want = JointIndexSampler(4, 5, 0.5, seed=seed)
        assert (got.seed, got.num_replicas, got.rank) == (seed, 1, 0)
        np.testing.assert_array_equal(got.epoch_indices(1), want.epoch_indices(1))
    dm = _module(tmp_path, seed=5)
    dm.trainer = SimpleNamespace(world_size=3, global_rank=2)  # a DDP rank
    dm.setup("fit")
    got = dm.index_sampler()
    assert (got.num_replicas, got.rank) == (3, 2)
    assert list(got) == list(JointIndexSampler(4, 5, 0.5, seed=5, num_replicas=3, rank=2))


def test_val_split_holds_detection_images_only(tmp_path: Path) -> None:
    dm = _module(tmp_path)
    dm.setup("fit")
    assert isinstance(dm.datasets["train"], JointDataset) and len(dm.datasets["train"]) == 4 + 5
    assert not isinstance(dm.datasets["val"], JointDataset) and len(dm.datasets["val"]) == 2


def test_max_images_limits_the_classification_pool(tmp_path: Path) -> None:
    dm = _module(tmp_path, max_images={"classification": 2})
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert (ds.n_det, ds.n_cls) == (4, 2)
    assert dm.data_report()["sources"]["pool"] == {"detection": 4, "classification": 2}


def test_classification_images_without_a_label_are_skipped_and_reported(tmp_path: Path) -> None:
    dm = _module(tmp_path, cls_labels=[[2], [], [4]])
    dm.setup("fit")
    ds = dm.datasets["train"]
    assert ds.n_cls == 2 and ds[(5, 32, 0)]["class_label"] == 4  # c1 (no label) left out: pool index 1 is c2
    assert dm.issues.count(reason="classification image without a label") == 1


def test_collate_clears_and_masks_a_classification_samples_other_rows(tmp_path: Path) -> None:
    # JointCollate's own contract ("its other rows are masked"): a sample marked classification keeps only the marker
    transform = DetectionTransform(train=False)  # no crop jitter: both boxes stay
    two = _det(tmp_path, "two")
    two.boxes, two.labels, two.difficult = (
        np.array([[4.0, 4.0, 20.0, 24.0], [10.0, 10.0, 30.0, 30.0]], np.float32),
        np.array([1, 2], np.int64),
        np.zeros(2, bool),
    )
    ds = DetectionDataset([two], transform, IssueLog())
    det, marked = ds[(0, 32, 1)], ds[(0, 32, 1)]
    det["source"] = "detection"
    marked |= {"source": "classification", "class_label": 6}
    b = JointCollate(eval_targets=False)([det, marked])
    assert b["target_mask"].tolist() == [[True, True], [True, False]]
    mark = CLASSONLY_MARK + 1.0
    assert b["targets"][1].tolist() == [[mark, mark, 1.0, 1.0, 6.0], [0.0, 0.0, 0.0, 0.0, 0.0]]


def test_max_images_does_not_report_the_classification_images_it_leaves_out(tmp_path: Path) -> None:
    """With ``max_images={"classification": 2}`` the third image (unlabelled) is never part of the run: its
    problem is not the run's (as for the detection splits); without the limit it is reported once."""
    dm = _module(tmp_path, cls_labels=[[2], [3], []], max_images={"classification": 2})
    dm.setup("fit")
    assert dm.datasets["train"].n_cls == 2
    assert dm.issues.count(reason="classification image without a label") == 0
    dm = _module(tmp_path, cls_labels=[[2], [3], []])
    dm.setup("fit")
    assert dm.datasets["train"].n_cls == 2
    assert dm.issues.count(reason="classification image without a label") == 1
