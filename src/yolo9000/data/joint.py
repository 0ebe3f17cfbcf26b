"""YOLO9000 joint training data (paper Section 4): detection and classification images in one multi-scale stream.

Both label spaces are WordTree node indices. A detection image reaches the batch with its boxes; a
classification image with a single target row ``(CLASSONLY_MARK + 1, CLASSONLY_MARK + 1, 1, 1, node)``, the
marker :class:`~yolo9000.loss.RegionLoss` reads as "classification-only image labelled ``node``" (darknet: truth
x, y above 1e5).

Mixing (:class:`JointIndexSampler`): the training stream runs over one index space, ``i < n_det`` detection image
``i``, ``i >= n_det`` classification image ``i - n_det``. Every epoch holds every detection image once and
``round(classification_per_detection * n_det)`` classification images, taken in turn from an endless stream of
reshuffles of the classification pool (each image once per pass over the pool; repeats inside one epoch only when
an epoch asks for more than the pool holds); the two are shuffled together. The paper caps ImageNet:COCO at 4:1,
i.e. ``classification_per_detection: 4``. Which images an epoch holds and their order are a pure function of
``(seed, epoch)``, identical on every rank; the :class:`~yolo9000.data.multiscale.MultiScaleBatchSampler` on top
gives sizes and augmentation seeds as for plain detection, and the position is resumable the same way.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from yolo9000.loss import CLASSONLY_MARK

from .datamodule import DetectionDataModule
from .dataset import DetectionCollate, DetectionDataset
from .multiscale import MultiScaleBatchSampler
from .records import ChainedRecords, DetectionRecord, Issue, IssueLog
from .resize import Size
from .transforms import DetectionTransform

logger = logging.getLogger("yolo9000.data")

__all__ = ["CLASSONLY_XY", "SOURCES", "JointCollate", "JointDataModule", "JointDataset", "JointIndexSampler"]

SOURCES = ("detection", "classification")
CLASSONLY_XY = CLASSONLY_MARK + 1.0  # cx = cy of a classification image's target row


class JointDataset(Dataset):
    """Detection images then classification images in one index space.

    ``dataset[(i, size, seed)]`` is ``detection[(i, size, seed)]`` for ``i < n_det``, else
    ``classification[(i - n_det, size, seed)]`` without boxes and with ``class_label`` (the record's first label).
    Every sample dict gets ``source`` (``"detection"`` | ``"classification"``).

    Args:
        detection: the detection training dataset.
        classification: records of classification images (label = ``labels[0]``; their boxes are not used).
        transform: transform of the classification images (the training transform).
        default_size: as :class:`DetectionDataset` (the classification part shares the detection part's issues).
    """

    def __init__(
        self,
        detection: DetectionDataset,
        classification: Sequence[DetectionRecord],
        transform: DetectionTransform,
        default_size: Size = 416,
    ) -> None:
        self.detection = detection
        self.class_labels = np.array([int(r.labels[0]) for r in classification], np.int64)
        bare = [DetectionRecord(r.image_path, r.image_id, r.width, r.height) for r in classification]
        self.classification = DetectionDataset(bare, transform, detection.issues, default_size=default_size)
        self.n_det, self.n_cls = len(detection), len(bare)

    @property
    def records(self) -> ChainedRecords:
        """Detection records, then the classification records (without boxes): one view of both packed sets."""
        return ChainedRecords([self.detection.records, self.classification.records])

    def __len__(self) -> int:
        return self.n_det + self.n_cls

    def source(self, index: int) -> str:
        return SOURCES[int(index >= self.n_det)]

    def __getitem__(self, item: int | tuple[int, ...]) -> dict[str, Any] | None:
        """A sample dict of :class:`DetectionDataset` plus ``source``; classification samples have no boxes and
        ``class_label`` (int, tree node). None: an unreadable image skipped."""
        index, *rest = item if isinstance(item, tuple) else (item,)
        index = int(index)
        if index < self.n_det:
            sample = self.detection[(index, *rest)]
        else:
            sample = self.classification[(index - self.n_det, *rest)]
            if sample is not None:
                sample["class_label"] = int(self.class_labels[index - self.n_det])
        if sample is not None:
            sample["source"] = self.source(index)
        return sample

    def stats(self) -> dict[str, int]:
        """:meth:`DetectionDataset.stats` of both parts, summed."""
        a, b = self.detection.stats(), self.classification.stats()
        return {k: a[k] + b[k] for k in a}

    def load_issues(self) -> list[Issue]:
        return self.detection.load_issues() + self.classification.load_issues()

    def box_sizes(self) -> np.ndarray:
        """float32 (N, 2): normalised (w, h) of the detection boxes (the anchors' k-means input)."""
        return self.detection.box_sizes()


class JointCollate(DetectionCollate):
    """:class:`DetectionCollate` plus the classification images' marker rows.

    Returns the detection batch dict, where a classification image's ``targets[i, 0]`` is
    ``(CLASSONLY_XY, CLASSONLY_XY, 1, 1, class_label)`` with ``target_mask[i, 0]`` True (its other rows are masked),
    plus ``source`` (list of B str) and ``classonly`` bool (B,).
    """

    def __call__(self, samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        batch = super().__call__(samples)
        kept = [s for s in samples if s is not None]  # none: the empty batch (every image unreadable)
        classonly = torch.tensor([s.get("source") == "classification" for s in kept], dtype=torch.bool)
        for i in torch.nonzero(classonly).flatten().tolist():
            batch["targets"][i] = 0.0
            batch["targets"][i, 0] = torch.tensor([CLASSONLY_XY, CLASSONLY_XY, 1.0, 1.0, kept[i]["class_label"]])
            batch["target_mask"][i] = False
            batch["target_mask"][i, 0] = True
        batch["source"] = [s.get("source", "detection") for s in kept]
        batch["classonly"] = classonly
        return batch


class JointIndexSampler(Sampler[int]):
    """The indices of one epoch's joint stream (module docstring), DDP-sharded like ``DistributedSampler`` (padded
    by repeating the first indices, then ``rank::num_replicas``).

    Args:
        n_detection, n_classification: sizes of the two pools (index space ``[0, n_det + n_cls)``).
        classification_per_detection: classification images per detection image in an epoch (>= 0).
        seed: seed of the selection and the shuffle.
        num_replicas, rank: DDP world size and rank.
    """

    def __init__(
        self,
        n_detection: int,
        n_classification: int,
        classification_per_detection: float,
        seed: int = 0,
        num_replicas: int = 1,
        rank: int = 0,
    ) -> None:
        if classification_per_detection < 0:
            raise ValueError(f"classification_per_detection must be >= 0, got {classification_per_detection}")
        self.n_det, self.n_cls = int(n_detection), int(n_classification)
        self.n_cls_epoch = round(classification_per_detection * self.n_det) if self.n_cls else 0
        self.seed, self.num_replicas, self.rank = int(seed), int(num_replicas), int(rank)
        self.total = self.n_det + self.n_cls_epoch
        if self.total == 0:
            raise ValueError("empty joint training stream")
        self.num_samples = math.ceil(self.total / self.num_replicas)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def classification_indices(self, epoch: int) -> np.ndarray:
        """int64 (n_cls_epoch,): classification pool indices of ``epoch`` (positions ``epoch * k ...`` of the
        stream of pool reshuffles, ``k = n_cls_epoch``)."""
        k = self.n_cls_epoch
        if not k:
            return np.zeros(0, np.int64)
        start, stop = int(epoch) * k, (int(epoch) + 1) * k
        passes = range(start // self.n_cls, (stop - 1) // self.n_cls + 1)
        stream = np.concatenate([np.random.default_rng([self.seed, 0x9000, p]).permutation(self.n_cls) for p in passes])
        offset = start - passes[0] * self.n_cls
        return stream[offset : offset + k].astype(np.int64)

    def epoch_indices(self, epoch: int) -> np.ndarray:
        """int64 (total,): the whole epoch (all ranks), shuffled; ``>= n_det`` are classification images."""
        idx = np.concatenate([np.arange(self.n_det), self.n_det + self.classification_indices(epoch)])
        return idx[np.random.default_rng([self.seed, int(epoch)]).permutation(len(idx))]

    def _shard(self, epoch: int) -> np.ndarray:
        idx = self.epoch_indices(epoch)
        padded = self.num_samples * self.num_replicas
        if padded > len(idx):
            idx = np.concatenate([idx, np.resize(idx, padded - len(idx))])
        return idx[self.rank : padded : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self._shard(self.epoch).tolist())

    def __len__(self) -> int:
        return self.num_samples

    def source_counts(self, epoch: int | None = None, all_ranks: bool = True) -> dict[str, int]:
        """Images per source in ``epoch`` (None: the current one): of the whole epoch, or of this rank's shard."""
        epoch = self.epoch if epoch is None else int(epoch)
        if all_ranks:
            return {"detection": self.n_det, "classification": self.n_cls_epoch}
        n_cls = int((self._shard(epoch) >= self.n_det).sum())
        return {"detection": self.num_samples - n_cls, "classification": n_cls}


class JointDataModule(DetectionDataModule):
    """:class:`~yolo9000.data.datamodule.DetectionDataModule` whose training stream mixes in classification images.

    Args:
        classification: classification dataset spec (a parser with ``_target_``, or a list of them; labels = tree
            nodes, the first label of a record is its class). None: detection only.
        classification_per_detection: classification images per detection image in each training epoch (paper's
            ImageNet:COCO cap: 4); every detection image is used once per epoch.
        **kwargs: :class:`DetectionDataModule` keys (``train`` = the detection set; ``val`` / ``test``: detection
            only; ``max_images`` may also limit ``classification``).

    The batch carries ``source`` / ``classonly`` (:class:`JointCollate`); :meth:`images_per_source` is the per-epoch
    mix, also under ``sources`` in :meth:`data_report`.
    """

    def __init__(self, classification: Any = None, classification_per_detection: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.specs["classification"] = classification
        if float(classification_per_detection) < 0:
            raise ValueError(f"classification_per_detection must be >= 0, got {classification_per_detection}")
        self.classification_per_detection = float(classification_per_detection)

    def _build(self, split: str) -> Any:
        ds = super()._build(split)
        if split != "train" or ds is None:
            return ds
        # with data.max_images, the problems of the images it leaves out are not the run's (as the splits')
        limit = self._limit("classification")
        found = self.issues if limit is None else IssueLog(self.issues.policy, max_warnings_per_reason=0)
        records: list[DetectionRecord] = []
        for p in self.parsers("classification"):
            records.extend(p.parse(self.class_names, found))
        for r in records:
            if not len(r.labels):
                found.report(r.image_path, "classification image without a label", action="skip_image")
        if limit is not None:
            records = self._keep_first("classification", records, limit, found)
        kept = [r for r in records if len(r.labels)]
        if self.parsers("classification") and not kept:
            raise ValueError("data.classification: no images")
        transform = DetectionTransform(train=True, augment=self.augment)
        return JointDataset(ds, kept, transform, default_size=self.img_size)

    def collate_fn(self, train: bool = False) -> JointCollate:
        # rows = the most boxes in the batch (at most max_boxes: the dataset caps); training batches carry no
        # evaluation lists
        return JointCollate(eval_targets=not train)

    def index_sampler(self) -> JointIndexSampler:
        """The joint index sampler of this process (rank)."""
        ds: JointDataset = self._dataset("train")
        world, rank = self._dist()
        return JointIndexSampler(ds.n_det, ds.n_cls, self.classification_per_detection, self.seed, world, rank)

    def train_batch_sampler(self) -> MultiScaleBatchSampler:
        """The multi-scale batch sampler over :meth:`index_sampler`, starting at the restored position."""
        base = self.index_sampler()
        sampler = self.with_final_phase(
            self._train_batch_sampler_for(
                self._dataset("train"), self.sizes, index_sampler=base, **self.multiscale_kwargs()
            )
        )
        if self._rank_zero():
            counts = base.source_counts()
            logger.info(
                "joint training stream: %d detection + %d classification images per epoch (pools %d / %d)",
                counts["detection"],
                counts["classification"],
                base.n_det,
                base.n_cls,
            )
        return sampler

    def images_per_source(self) -> dict[str, int]:
        """Training images per source in one epoch (all ranks): ``{"detection": n, "classification": k}``."""
        return self.index_sampler().source_counts()

    def data_report(self) -> dict[str, Any]:
        """:meth:`DetectionDataModule.data_report` plus ``sources``: per-epoch images per source and pool sizes."""
        out = super().data_report()
        if "train" in self.datasets:
            ds: JointDataset = self.datasets["train"]
            out["sources"] = {
                "per_epoch": self.images_per_source(),
                "pool": {"detection": ds.n_det, "classification": ds.n_cls},
                "classification_per_detection": self.classification_per_detection,
            }
        return out
