"""LightningDataModule: parsers -> datasets -> multi-scale train loader and eval loaders."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from torch.utils.data import DataLoader

from yolo9000.models import STRIDE

from .coco import release_cache
from .dataset import DetectionCollate, DetectionDataset
from .multiscale import MultiScaleBatchSampler, resolve_sizes
from .records import (
    DataError,
    DetectionRecord,
    Issue,
    IssueLog,
    box_labels,
    image_paths,
    write_issue_report,
)
from .resize import Size, check_input_size, normal_size, size_text
from .sharded import ShardedDataModule, default_report_path
from .sharded import plain as _plain
from .transforms import AugmentConfig, DetectionTransform
from .voc import reset_decision_log

logger = logging.getLogger("yolo9000.data")

__all__ = ["AnnotationParser", "DetectionDataModule", "MultiScaleConfig"]

SPLITS = ("train", "val", "test")
_STAGE_SPLITS = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": ("test",),
    None: SPLITS,
}


@runtime_checkable
class AnnotationParser(Protocol):
    """What the data module needs of a parser (VOCParser, COCOParser, YOLOTxtParser, CSVParser,
    LabelMeParser, CVATParser)."""

    def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]: ...

    def discover_class_names(self) -> list[str] | None: ...


@dataclass
class MultiScaleConfig:
    """``multiscale`` keys of the data config (see conf/data/*.yaml for their meaning)."""

    enabled: bool = True
    sizes: list[int] | None = None
    min_size: int = 320
    max_size: int = 608
    step: int = STRIDE
    period: int = 10
    seed: int = 0
    fixed_size: Size | None = None
    final_size_after: int | None = None
    final_size: int | None = None
    final_batches: int | None = None

    @classmethod
    def from_mapping(cls, m: Mapping[str, Any] | MultiScaleConfig | None) -> MultiScaleConfig:
        if isinstance(m, MultiScaleConfig):
            return m
        m = dict(m or {})
        unknown = set(m) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"unknown multiscale keys {sorted(unknown)}")
        if m.get("final_batches") is not None and m.get("final_size_after") is not None:
            raise ValueError("multiscale: set final_batches or final_size_after, not both")
        if m.get("seed") is None:
            m["seed"] = 0
        if m.get("sizes") is not None:
            m["sizes"] = [int(s) for s in m["sizes"]]
        what = {"period": "batches per size", "step": "the size step of min_size..max_size"}
        for key in ("period", "step") if not m.get("sizes") else ("period",):  # explicit sizes take no step
            if m.get(key) is not None and int(m[key]) < 1:
                raise ValueError(f"multiscale.{key} must be a positive integer ({what[key]}), got {m[key]}")
        if m.get("fixed_size") is not None:
            try:
                m["fixed_size"] = normal_size(check_input_size(m["fixed_size"]))
            except (TypeError, ValueError):
                raise ValueError(
                    f"multiscale.fixed_size must be a multiple of {STRIDE} (a side, or [height, width] of them), got "
                    f"{m['fixed_size']!r}"
                ) from None
        return cls(**m)

    def resolved_sizes(self) -> list[int]:
        return resolve_sizes(self.sizes, self.min_size, self.max_size, self.step)


def _as_parsers(spec: Any, split: str) -> list[AnnotationParser]:
    """A parser, a ``_target_`` mapping, or a list of those -> list of parsers."""
    if spec is None:
        return []
    if isinstance(spec, Mapping) or type(spec).__name__ == "DictConfig":
        from hydra.utils import instantiate

        spec = instantiate(spec)
    if isinstance(spec, AnnotationParser):
        return [spec]
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)) or type(spec).__name__ == "ListConfig":
        out: list[AnnotationParser] = []
        for s in spec:
            out.extend(_as_parsers(s, split))
        return out
    raise TypeError(f"data.{split}: expected a parser (with _target_) or a list of parsers, got {type(spec)}")


def _merge_class_lists(found: Sequence[tuple[str, list[str]]]) -> list[str]:
    """The class names of a split whose parsers (a list: VOC07+12) each name classes: the first parser's, then
    the names only the others hold, in their order; sorted when every parser's list is (the XML / label readers
    sort what they find). Only the first parser's were used: the boxes of a class only a later dataset holds were
    dropped as an unknown class. The added names are logged."""
    names = list(found[0][1])
    added: list[tuple[str, list[str]]] = []
    for parser, more in found[1:]:
        new = [n for n in more if n not in names]
        if new:
            names += new
            added.append((parser, new))
    if added:
        if all(lst == sorted(lst) for _, lst in found):
            names = sorted(names)
        logger.info(
            "class names of several datasets: %s; from %s: %s",
            found[0][0],
            "; ".join(f"{p} adds {n}" for p, n in added),
            names,
        )
    return names


def _warn_case_twins(names: Sequence[str], found: Sequence[tuple[str, list[str]]]) -> None:
    """Warn about class names the dataset spells two ways that differ only in case (``RBC`` and ``rbc``): two
    classes, each with a share of the boxes, neither learning from the other's."""
    by_fold: dict[str, list[str]] = {}
    for n in names:
        by_fold.setdefault(" ".join(n.split()).casefold(), []).append(n)
    twins = [group for group in by_fold.values() if len(group) > 1]
    if twins:
        logger.warning(
            "class names that differ only in case or spacing are separate classes: %s (found by %s); if they are "
            "one class, give them one spelling in the annotations, or set data.class_names to the spellings to train "
            "(boxes of the others are then dropped and reported)",
            "; ".join(" / ".join(repr(n) for n in g) for g in twins),
            ", ".join(p for p, _ in found),
        )


class DetectionDataModule(ShardedDataModule):
    """Detection data for YOLOv2 training and evaluation (keys documented in conf/data/bccd.yaml).

    Args:
        train, val, test: dataset spec per split: a parser (``VOCParser``, ``COCOParser``,
            ``YOLOTxtParser``, ``CSVParser``; Hydra ``_target_``) or a list of them (concatenated, e.g. VOC07+12).
        class_names: class list (index = position); None: from the train parser (COCO categories, names file).
        batch_size: training batch size per process; eval_batch_size: eval batch size (None: batch_size).
        num_workers, pin_memory, persistent_workers: DataLoader settings.
        img_size: eval input size: a side, or (height, width) (a darknet cfg's rectangular ``[net]``); also the
            training size with multi-scale disabled and no fixed_size (multi-scale sizes are square, as darknet's
            ``random=1``; without it darknet trains at its ``[net]`` width x height, as here).
        multiscale: :class:`MultiScaleConfig` keys.
        augment: :class:`~yolo9000.data.transforms.AugmentConfig` keys.
        on_error: ``"error"`` (raise DataError on bad input) or ``"skip"`` (log, count, skip / drop).
        max_boxes: keep at most this many boxes per image (None: all); extra boxes are counted. In training the
            cap keeps the first boxes after the shuffle (darknet: 30). Batches pad to the most boxes they hold.
        shuffle_boxes: shuffle each training image's boxes on every load (darknet's ``randomize_boxes``).
        cache_images: decode the train and val images once into memory at setup (shared by forked DataLoader
            workers; :meth:`DetectionDataset.cache_images`): the same pixels without a decode per load.
        max_images: keep only the first N images of each split (int) or per split ({train: N, ...}).
        include_difficult: keep difficult / crowd boxes in the training targets (darknet: no).
        headline_metric: the metric this data's benchmark reports (VOC: ``voc07_map_50``, the VOC2007 11-point
            AP of the paper's tables; COCO: ``map``, AP@[.5:.95]; else ``map_50``); read by the detector (its
            best checkpoint, progress bar and metrics.json headline), not by the data pipeline.
        drop_last: drop the last incomplete training batch.
        seed: seed of the training shuffle (epoch-dependent, identical on all ranks).
        root: dataset root, for interpolation in the split specs only.
        image_dir, ann_dir, split_files, yaml_file, names_file, data_file, images_dir, ann_files, split_fractions,
            split_seed, csv_file, csv_files, normalized, xml_file: dataset layout keys (see conf/data/voc.yaml,
            yolo.yaml, coco.yaml, csv.yaml, cvat.yaml), for interpolation in the split specs only.

    Data problems of all splits go to one :class:`IssueLog` (``issues``); :meth:`issue_summary` is the readable
    text, :meth:`data_report` what ``metrics.json`` gets (problems per reason with every file, augmentation
    statistics apart). Inside a Hydra job the full list is also written to ``<run dir>/data_issues.txt``
    (``report_file``).
    """

    def __init__(
        self,
        train: Any = None,
        val: Any = None,
        test: Any = None,
        class_names: Sequence[str] | None = None,
        batch_size: int = 16,
        eval_batch_size: int | None = None,
        num_workers: int = 2,
        pin_memory: bool = True,
        persistent_workers: bool = True,
        img_size: int | Sequence[int] = 416,
        multiscale: Mapping[str, Any] | MultiScaleConfig | None = None,
        augment: Mapping[str, Any] | AugmentConfig | None = None,
        on_error: str = "skip",
        max_boxes: int | None = None,
        shuffle_boxes: bool = True,
        cache_images: bool = False,
        max_images: int | Mapping[str, int] | None = None,
        include_difficult: bool = False,
        headline_metric: str = "map_50",
        drop_last: bool = False,
        seed: int = 0,
        root: str | None = None,
        image_dir: Any = None,
        ann_dir: Any = None,
        split_files: Any = None,
        yaml_file: Any = None,
        names_file: Any = None,
        data_file: Any = None,
        images_dir: Any = None,
        ann_files: Any = None,
        split_fractions: Any = None,
        split_seed: Any = None,
        csv_file: Any = None,
        csv_files: Any = None,
        normalized: Any = None,
        xml_file: Any = None,
    ) -> None:
        super().__init__()
        self.specs = {"train": train, "val": val, "test": test}
        self.layout = {  # only used through the ${..key} interpolations of the split specs; kept for reference
            k: _plain(v)
            for k, v in dict(
                image_dir=image_dir,
                ann_dir=ann_dir,
                split_files=split_files,
                yaml_file=yaml_file,
                names_file=names_file,
                data_file=data_file,
                images_dir=images_dir,
                ann_files=ann_files,
                split_fractions=split_fractions,
                split_seed=split_seed,
                csv_file=csv_file,
                csv_files=csv_files,
                normalized=normalized,
                xml_file=xml_file,
            ).items()
            if v is not None
        }
        self.report_file: Path | None = None  # where the full issue list goes; None: <Hydra run dir>/data_issues.txt
        reset_decision_log()  # this module's parsers log their layout and split decisions (once each)
        self._class_names = [str(c) for c in _plain(class_names)] if class_names is not None else None
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size) if eval_batch_size is not None else self.batch_size
        self.num_workers = int(num_workers)
        self.pin_memory = bool(pin_memory)
        self.persistent_workers = bool(persistent_workers)
        try:
            self.img_size: Size = normal_size(check_input_size(_plain(img_size)))
        except (TypeError, ValueError):
            raise ValueError(
                f"img_size must be a multiple of {STRIDE}, got {img_size!r} (a side, or [height, width] of them)"
            ) from None
        self.multiscale = MultiScaleConfig.from_mapping(_plain(multiscale))
        self.sizes = self.multiscale.resolved_sizes()
        self.augment = AugmentConfig.from_mapping(_plain(augment))
        self.issues = IssueLog(on_error)  # type: ignore[arg-type]
        self.on_error = on_error
        self.max_boxes = int(max_boxes) if max_boxes is not None else None
        self.shuffle_boxes = bool(shuffle_boxes)
        self.cache_images = bool(cache_images)
        self.max_images = _plain(max_images)
        self.include_difficult = bool(include_difficult)
        self.headline_metric = str(headline_metric)
        self.drop_last = bool(drop_last)
        self.seed = int(seed)
        self.root = root
        self._parsers: dict[str, list[AnnotationParser]] = {}
        self.datasets: dict[str, DetectionDataset] = {}

    # ----------------------------------------------------------------------------------------- classes
    def parsers(self, split: str) -> list[AnnotationParser]:
        """Parsers of a split (instantiated once)."""
        if split not in self._parsers:
            self._parsers[split] = _as_parsers(self.specs[split], split)
        return self._parsers[split]

    @property
    def class_names(self) -> list[str]:
        """Class names (index = position)."""
        if self._class_names is None:
            missing: list[FileNotFoundError] = []  # a split's files missing: another split may name the classes
            for split in SPLITS:
                found: list[tuple[str, list[str]]] = []  # (parser, its class names) of this split
                for p in self.parsers(split):
                    try:
                        names = p.discover_class_names()
                    except FileNotFoundError as e:  # e.g. no train JSON beside an evaluation's test JSON
                        missing.append(e)
                        continue
                    if names:
                        found.append((repr(p), [str(n) for n in names]))
                if found:  # the split's parsers together (VOC07+12: a class only VOC2012 holds was "unknown")
                    self._class_names = _merge_class_lists(found)
                    _warn_case_twins(self._class_names, found)
                    return self._class_names
            if missing:
                raise missing[0]
            parsers = ", ".join(repr(p) for s in SPLITS for p in self.parsers(s)) or "no parsers"
            raise ValueError(
                f"no class_names in the data config and none found by the parsers ({parsers}): set "
                "data.class_names=[name0,name1,...] (or the dataset's names file / dataset yaml)"
            )
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # ------------------------------------------------------------------------------------------- setup
    def _build(self, split: str) -> DetectionDataset | None:
        parsers = self.parsers(split)
        if not parsers:
            return None
        records: list[DetectionRecord] = []
        limit = self._limit(split)
        # with data.max_images the problems are held back until the kept images are known: those of images left
        # out are not the run's (they were reported as the run's, naming files it never read)
        found = self.issues if limit is None else IssueLog(self.issues.policy, max_warnings_per_reason=0)
        before = len(found.issues)  # this split's problems follow (self.issues holds the earlier splits' too)
        for p in parsers:
            records.extend(p.parse(self.class_names, found))
        if limit is not None:
            records = self._keep_first(split, records, limit, found)
        if not records:
            lost = [i for i in found.issues[before:] if i.action == "skip_image"]  # why, when images were listed
            why = "; ".join(f"{n} x {reason}" for reason, n in Counter(i.reason for i in lost).most_common(3))
            first = lost[0] if lost else None
            hint = (
                f"; a {split} split drawn by hash from a small dataset can come out empty: give it its own files, or "
                "set data.split_fractions / data.split_seed"
                if split != "train"
                else ""
            )
            raise ValueError(
                f"data.{split}: no images ({', '.join(map(repr, parsers))})"
                + (f"; every image was skipped: {why} (first: {first.file}: {first.detail})" if first else hint)
            )
        kept = {str(r.image_path) for r in records}
        unlabelled = [i for i in self._unlabelled(found) if i.file in kept]  # this split's images without labels
        none_labelled = len({i.file for i in unlabelled}) == len(kept)
        if split == "train" and not any(len(r.boxes) for r in records):
            raise DataError(self._no_boxes_message(len(records), parsers, unlabelled if none_labelled else []))
        if none_labelled and self._rank_zero():
            logger.warning(
                "data.%s: none of its %d images has a label file (looked for %s, ...): every image is a negative "
                "and its mAP undefined; YOLO labels mirror the images' folders (images/%s/x.jpg -> labels/%s/x.txt)",
                split, len(records), unlabelled[0].detail, split, split,
            )  # fmt: skip
        transform = DetectionTransform(train=split == "train", augment=self.augment)
        return DetectionDataset(
            records,
            transform,
            self.issues,
            default_size=self.img_size,
            include_difficult=self.include_difficult,
            max_boxes=self.max_boxes,
            shuffle_boxes=self.shuffle_boxes,
            cache_images=self.cache_images and split in ("train", "val"),  # loaded every epoch / validation
        )

    def _keep_first(
        self, split: str, records: list[DetectionRecord], limit: int, found: IssueLog
    ) -> list[DetectionRecord]:
        """The first ``limit`` records; the problems ``found`` while parsing go to :attr:`issues` (logged now)
        except those of the images left out (an issue's file with the stem of a left-out image, its image or
        annotation file), which are counted in one line."""
        kept = records[:limit]
        left_out = {r.image_id for r in records[limit:]} - {r.image_id for r in kept}
        dropped = 0
        for issue in found.issues:
            if Path(issue.file).stem in left_out:
                dropped += 1
            else:
                self.issues.add(issue)
        if dropped and self._rank_zero():
            logger.info(
                "data.%s: data.max_images left out %d images; %d data problem%s found in them %s not reported",
                split,
                len(records) - len(kept),
                dropped,
                "" if dropped == 1 else "s",
                "is" if dropped == 1 else "are",
            )
        return kept

    @staticmethod
    def _unlabelled(issues: IssueLog) -> list[Issue]:
        """The notes of images without a label file (YOLO layouts), in the order found."""
        return [i for i in issues.issues if i.action == "note" and i.reason.startswith("no label file")]

    def check_has_boxes(self, split: str) -> None:
        """A split that is evaluated must hold boxes (its mAP is undefined without: every metric came out nan and
        the evaluation ended as a success): DataError saying why (:meth:`_no_boxes_message`)."""
        ds = self.datasets.get(split)
        if ds is not None and len(ds.records) and not len(box_labels(ds.records)):
            raise DataError(self._no_boxes_message(len(ds.records), [], split=split))

    def _no_boxes_message(
        self, n_images: int, parsers: Sequence[Any], unlabelled: Sequence[Issue] = (), split: str = "train"
    ) -> str:
        """Why a split kept no box: no image has a label file (``unlabelled``: their notes), or the class
        names its annotations use that the class list lacks."""
        if unlabelled:
            return (
                f"data.train: none of its {n_images} images has a label file ({', '.join(map(repr, parsers))}; "
                f"looked for {unlabelled[0].detail}, ...): YOLO labels mirror the images' folders "
                "(images/train/x.jpg -> labels/train/x.txt), or give the dataset's yaml (data.yaml_file)"
            )
        unknown = sorted({i.reason for i in self.issues.issues if i.reason.startswith("unknown class")})
        names = ", ".join(u.removeprefix("unknown class ") for u in unknown[:20])
        found = f"; its annotations name classes not in that list: {names}" if unknown else ""
        what = "train on" if split == "train" else "evaluate"
        source = f" ({', '.join(map(repr, parsers))})" if parsers else ""
        return (
            f"data.{split}: {n_images} images and no box to {what}{source}; the classes are "
            f"{self.class_names[:20]}{found}. Set data.class_names=null (the dataset's own names) or "
            "data.class_names=[...] in the annotations' spelling"
        )

    def setup(self, stage: str | None = None) -> None:
        """Parse the splits the stage needs (once each) and log the problem summary (when a split was added)."""
        added = False
        for split in _STAGE_SPLITS.get(stage, SPLITS):
            if split not in self.datasets:
                ds = self._build(split)
                if ds is not None:
                    self.datasets[split] = ds
                    added = True
        release_cache()  # the COCO JSON the splits were parsed from (a later stage's split reads it again)
        if added and self._rank_zero():
            parts = [f"{s}: {len(d)} images, {self._box_count(s, d)}" for s, d in self.datasets.items()]
            logger.info("data (%d classes) %s; %s", self.num_classes, "; ".join(parts), self.issue_summary())
            train = ": training boxes" if "train" in self.datasets else ""
            logger.info("classes (index name%s): %s", train, self._class_line())
            self._warn_shared_images()
            self._write_report()

    def _box_count(self, split: str, ds: Any) -> str:
        """``2804 boxes``, and how many of them are difficult / crowd (``(205 difficult / crowd: not trained on)``
        for a training split without ``include_difficult``; the metrics ignore them, as VOC's and COCO's)."""
        n, trained = len(box_labels(ds.records)), len(box_labels(ds.records, trained=True))
        if n == trained:
            return f"{n} boxes"
        left_out = ": not trained on" if split == "train" and not self.include_difficult else ""
        return f"{n} boxes ({n - trained} difficult / crowd{left_out})"

    def _class_line(self, limit: int = 30) -> str:
        """``0 RBC: 606, 1 WBC: 45, ...``: each class index, name and training boxes (the first ``limit``; difficult /
        crowd boxes counted only with ``include_difficult``)."""
        ds = self.datasets.get("train")
        counts = (
            np.bincount(box_labels(ds.records, trained=not self.include_difficult), minlength=self.num_classes)
            if ds is not None and len(ds.records)
            else None
        )
        names = self.class_names
        wide = counts is not None and len(names) > limit  # a WordTree's 9418 nodes: the classes with training boxes
        shown = np.flatnonzero(counts)[:limit].tolist() if wide else range(min(limit, len(names)))
        items = [f"{i} {names[i]}" + (f": {int(counts[i])}" if counts is not None else "") for i in shown]
        if wide:
            return ", ".join(items) + f" ({int((counts > 0).sum())} of the {len(names)} classes have training boxes)"
        more = len(names) - len(items)
        return ", ".join(items) + (f", ... ({more} more)" if more else "")

    def _warn_shared_images(self) -> None:
        """A warning when an evaluation split holds images of the training split (a dataset yaml with ``val:`` the
        train folder, as coco128.yaml has): its metrics are then no held-out measurement."""
        train = self.datasets.get("train")
        if train is None:
            return
        seen = {p.resolve() for p in image_paths(train.records)}
        for split in ("val", "test"):
            ds = self.datasets.get(split)
            shared = [p for p in image_paths(ds.records) if p.resolve() in seen] if ds is not None else []
            if shared:
                logger.warning(
                    "data: %d of the %d %s images are training images too (%s%s): %s metrics are not held out",
                    len(shared),
                    len(ds.records),  # type: ignore[union-attr]
                    split,
                    ", ".join(str(p) for p in shared[:3]),
                    ", ..." if len(shared) > 3 else "",
                    split,
                )

    def box_sizes(self, split: str = "train") -> np.ndarray:
        """float32 (N, 2): (w, h) of every box of ``split`` over its image size (for k-means anchors)."""
        return self._dataset(split).box_sizes()

    def _collect_load_issues(self) -> None:
        """Merge the load-time issues of every process (DataLoader workers included) into ``issues``."""
        for d in {id(d): d for d in self.datasets.values()}.values():
            for issue in d.load_issues():
                self.issues.add(issue, log=False)

    def report_path(self) -> Path | None:
        """Where the full issue list is written: ``report_file``, else ``<Hydra run dir>/data_issues.txt``."""
        return self.report_file if self.report_file is not None else default_report_path()

    def _write_report(self) -> None:
        path = self.report_path()
        if path is not None and self._rank_zero() and len(self.issues):
            write_issue_report(path, self.issues, {f"augmentation.{s}": v for s, v in self._augmentation().items()})

    def issue_summary(self) -> str:
        """Readable summary of the data problems found while parsing and (so far) while loading, by every process:
        counts per reason with the first files of each (the rest in :meth:`data_report` / ``data_issues.txt``)."""
        self._collect_load_issues()
        return self.issues.summary(see=self.report_path())

    def _augmentation(self) -> dict[str, dict[str, int]]:
        out = {}
        for s in self.datasets:
            st = self.split_stats(s)  # a resumed run's earlier processes included
            out[s] = {
                "samples_loaded": st["loaded"],
                "boxes_dropped": st["dropped_boxes"],
                "boxes_over_max_boxes": st["truncated_boxes"],
            }
        return out

    def data_report(self) -> dict[str, Any]:
        """What the run's ``metrics.json`` gets about the data (also writes :meth:`report_path`, logs the summary):

        - ``data_issues``: :meth:`issue_summary` (text);
        - ``data_problems``: per reason ``{"action": "skipped images" | "ignored files" | "dropped boxes" | "fixed" |
          "notes", "count": n, "files": [every file]}``, from parsing and loading;
        - ``augmentation`` (not data problems): per split, ``samples_loaded`` (loads, all epochs and every
          process of a resumed run), ``boxes_dropped`` (training boxes cut by the jitter's geometry, its crop or the
          input's edge, or by the small-box rule: ``min_box_side``, or ``min_box_area`` with ``small_box=area``, /
          ``min_box_pixels``)
          and ``boxes_over_max_boxes`` (beyond ``max_boxes``).
        """
        summary = self.issue_summary()
        self._write_report()
        if self._rank_zero():
            logger.info("data summary: %s", summary)
        return {
            "data_issues": summary,
            "data_problems": self.issues.report_dict(),
            "augmentation": self._augmentation(),
            **self.counts_scope(),
        }

    # ---------------------------------------------------------------------------------------- loaders
    def collate_fn(self, train: bool = False) -> DetectionCollate:
        # rows = the most boxes in the batch (at most max_boxes: the dataset caps); training batches carry no
        # evaluation lists
        return DetectionCollate(eval_targets=not train)

    def train_batch_sampler(self) -> MultiScaleBatchSampler:
        """The multi-scale batch sampler over a (DDP-sharded, shuffled) index sampler."""
        sampler = self._train_batch_sampler_for(self._dataset("train"), self.sizes, **self.multiscale_kwargs())
        if self._rank_zero():
            ms = self.multiscale
            train = (
                f"multi-scale, a size of {self.sizes} every {ms.period} batches"
                if sampler.enabled
                else f"{size_text(sampler.fixed_size)} px every batch (multi-scale off)"  # type: ignore[arg-type]
            )
            logger.info("training input: %s; evaluation at %s px", train, size_text(self.img_size))
        return self.with_final_phase(sampler)

    def with_final_phase(self, sampler: MultiScaleBatchSampler) -> MultiScaleBatchSampler:
        """``multiscale.final_batches``: the run's last N batches at ``final_size`` (darknet: the last 200
        iterations at 608). The run's length comes from the trainer (``max_steps``, else ``max_epochs`` times the
        batches of an epoch); without a trainer, or with an explicit ``final_size_after``, nothing changes."""
        n = self.multiscale.final_batches
        trainer = getattr(self, "trainer", None)
        if not n or trainer is None or self.multiscale.final_size_after is not None or not sampler.enabled:
            return sampler  # multi-scale off: no final phase either (darknet's random=0), and none logged
        max_steps = getattr(trainer, "max_steps", -1) or -1
        max_epochs = getattr(trainer, "max_epochs", None)
        total = max_steps if max_steps > 0 else (max_epochs or 0) * len(sampler)
        if total > 0:
            sampler.final_size_after = max(0, total - int(n))
            if self._rank_zero():
                logger.info(
                    "final phase: batches %d..%d of the run at %d px",
                    sampler.final_size_after,
                    total - 1,
                    sampler.final_size,
                )
        return sampler

    def multiscale_kwargs(self) -> dict[str, Any]:
        """:class:`MultiScaleBatchSampler` keyword arguments of the ``multiscale`` config."""
        ms = self.multiscale
        return {
            "period": ms.period,
            "seed": ms.seed,
            "enabled": ms.enabled,
            "fixed_size": ms.fixed_size if ms.fixed_size is not None else self.img_size,
            "final_size_after": ms.final_size_after,
            "final_size": ms.final_size,
        }

    def train_dataloader(self) -> DataLoader:
        """Multi-scale, per-sample-seeded training loader; Lightning checkpoints its position mid-epoch."""
        return self._resumable_train_loader(self.train_batch_sampler())
