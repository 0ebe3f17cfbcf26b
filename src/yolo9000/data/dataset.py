"""Detection dataset over parsed records, and the collate function that builds the batch dict."""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.ops import box_convert

from .image_io import (
    CONVERTED,
    ISSUE_FLAGS,
    LOAD_FAILED,
    NOTED,
    SIZE_MISMATCH,
    SIZE_MISMATCH_REASON,
    ImageDecodeError,
    LoadCounters,
    LoadFlags,
    conversion_issue,
    load_time_issues,
    read_record_image,
)
from .records import DetectionRecord, Issue, IssueLog, PackedRecords
from .resize import Size, normal_size

if TYPE_CHECKING:  # an annotation only: it imports albumentations, which the predict path (stack_nhwc) goes without
    from .transforms import DetectionTransform

logger = logging.getLogger("yolo9000.data")

__all__ = ["DetectionCollate", "DetectionDataset", "detection_collate"]

_STAT_KEYS = ("loaded", "skipped_images", "dropped_boxes", "truncated_boxes", "size_mismatch")


class DetectionDataset(Dataset):
    """Images + boxes of a list of :class:`DetectionRecord`, transformed to an input size (a side, or (height,
    width)).

    ``dataset[i]`` uses ``default_size``; ``dataset[(i, size)]`` the given size and ``dataset[(i, size, seed)]``
    also seeds the augmentation of this sample (the multi-scale batch sampler passes the size it chose in the
    main process and a per-sample seed).

    Load-time problems (corrupt / truncated image) go to ``issues``: under ``"error"`` a
    :class:`~yolo9000.data.records.DataError` is raised, under ``"skip"`` the sample is ``None`` (dropped by
    the collate) and logged. Counters of all processes (DataLoader workers included) are kept in shared
    memory: see :meth:`stats`.

    Args:
        records: parsed records.
        transform: a :class:`DetectionTransform` (or any callable with its signature).
        issues: problem log (default: a ``"error"`` log).
        default_size: input size for integer indices (a side, or (height, width)).
        include_difficult: keep difficult / crowd boxes in the training targets (``boxes``); darknet's
            ``voc_label.py`` leaves them out. ``gt_*`` always keep them.
        max_boxes: keep at most this many target boxes per image (None: all); the rest are counted. In training
            the cap applies after the shuffle and before augmentation drops boxes, as darknet's
            ``fill_truth_detection`` (at most 30 boxes, counted before the small-box filter).
        shuffle_boxes: in training, shuffle an image's boxes on every load (darknet's ``randomize_boxes``), so
            which of two truths in one cell wins, and which boxes the cap keeps, is not fixed by annotation
            order. The order is a function of the sample's seed.
        cache_images: decode every image once, here, into memory (:meth:`cache_images`): no decode per epoch.
    """

    def __init__(
        self,
        records: Sequence[DetectionRecord],
        transform: DetectionTransform,
        issues: IssueLog | None = None,
        default_size: Size = 416,
        include_difficult: bool = False,
        max_boxes: int | None = None,
        shuffle_boxes: bool = False,
        cache_images: bool = False,
    ) -> None:
        # packed: flat arrays instead of a Python object per image, which forked loader workers would copy
        self.records = records if isinstance(records, PackedRecords) else PackedRecords(list(records))
        self.shuffle_boxes = shuffle_boxes
        self.transform = transform
        self.issues = issues if issues is not None else IssueLog("error")
        self.default_size = normal_size(default_size)
        self.include_difficult = include_difficult
        self.max_boxes = max_boxes
        self._stats = LoadCounters(_STAT_KEYS)
        # per-image load-time flags (LOAD_FAILED, CONVERTED, SIZE_MISMATCH), shared with the DataLoader workers
        self._load_flags = LoadFlags(len(self.records))
        self._flags = self._load_flags.flags
        # decoded images (read-only uint8 (H, W, 3)) and their conversion notes, when cached; None: not cached
        self._images: list[np.ndarray | None] | None = None
        self._notes: list[list[tuple[str, str]]] = []
        if cache_images:
            self.cache_images()

    def __len__(self) -> int:
        return len(self.records)

    def stats(self) -> dict[str, int]:
        """Counters over all processes: loaded, skipped_images, dropped_boxes (by the transform),
        truncated_boxes (over ``max_boxes``), size_mismatch (annotation size != image size)."""
        return self._stats.totals()

    def _flag(self, index: int, bit: int) -> bool:
        """Set a load-time flag of an image (visible to every process); True when it was not set before."""
        return self._load_flags.set(index, bit)

    def load_issues(self) -> list[Issue]:
        """Load-time issues found by every process (DataLoader workers included) since the last call, each naming
        its image: unreadable images, conversions (PNG data in a .jpg, RGBA / palette / grey to RGB, ...) and
        annotation sizes that differ from the image. Re-derived here from the shared per-image flags."""
        flags = self._flags[: len(self.records)].numpy() & ISSUE_FLAGS  # (a copy)
        seen = getattr(self, "_flags_seen", None)  # what earlier calls re-derived (this process only)
        new = flags & ~seen if seen is not None else flags
        self._flags_seen = flags
        out: list[Issue] = []
        for i in np.flatnonzero(new).tolist():
            rec = self.records[i]
            out += load_time_issues(rec.image_path, int(new[i]), (rec.width, rec.height))
        return out

    def cache_images(self, threads: int | None = None, max_share: float = 0.5) -> int:
        """Decode every image once into this process's memory; returns the bytes held (0: not cached).

        Call it before DataLoader workers start: forked workers share the decoded pages (no copy per worker; with
        the ``spawn`` start method each worker gets a copy, and every DDP process holds its own). Images that
        cannot be read stay uncached: their loads fail (and are reported) as without a cache. Nothing is cached
        when the images' decoded size (``H * W * 3`` bytes each, from the annotations) exceeds ``max_share`` of
        the memory available now (a warning says so); loading then decodes as usual.

        Args:
            threads: decoding threads (default: the machine's CPUs, at most 8).
            max_share: largest share of the available memory the cache may take.
        """
        need = int(self.records.sizes.clip(min=0).prod(1).sum()) * 3
        avail = _available_memory()
        if avail is not None and need > max_share * avail:
            logger.warning(
                "cache_images: the %d images need %.1f GB decoded, more than %.0f%% of the %.1f GB available: "
                "not cached (images are decoded at every load)",
                len(self.records),
                need / 1e9,
                100 * max_share,
                avail / 1e9,
            )
            return 0
        start = time.perf_counter()

        def load(rec: DetectionRecord) -> tuple[np.ndarray | None, list[tuple[str, str]], ImageDecodeError | None]:
            try:
                image, notes = read_record_image(rec)
            except ImageDecodeError as e:
                return None, [], e
            image.flags.writeable = False  # shared by every load (and every forked worker): never written
            return image, notes, None

        with ThreadPoolExecutor(threads or min(8, os.cpu_count() or 1)) as pool:
            loaded = list(pool.map(load, self.records))
        # unreadable images are known now: report them here (under on_error=error: stop here, naming the file),
        # not only when a batch happens to draw them (a short run or limit_val_batches may never do so)
        for i, (_, _, err) in enumerate(loaded):
            if err is not None and self._flag(i, LOAD_FAILED):
                self.issues.report(self.records[i].image_path, err.reason, action="skip_image", detail=err.detail)
        self._images = [im for im, _, _ in loaded]
        self._notes = [notes for _, notes, _ in loaded]
        held = sum(im.nbytes for im in self._images if im is not None)
        logger.info(
            "cached %d decoded images (%.0f MB) in %.1f s",
            sum(im is not None for im in self._images),
            held / 1e6,
            time.perf_counter() - start,
        )
        return held

    def _load(self, index: int, rec: DetectionRecord) -> tuple[np.ndarray, list[tuple[str, str]]]:
        """The decoded image of record ``index`` (``rec``, already built from the packed records; from the cache
        when there) and, at its first load in any process, its conversion notes. Raises :class:`ImageDecodeError`."""
        cached = self._images[index] if self._images is not None else None
        if cached is not None:
            return cached, self._notes[index] if self._flag(index, NOTED) else []
        # the conversions are checked at the first load of each image (in any process), not at every epoch
        return read_record_image(rec, notes=self._flag(index, NOTED))

    def box_sizes(self) -> np.ndarray:
        """float32 (N, 2): (w, h) of every box the run trains on (difficult / crowd ones only with
        ``include_difficult``: darknet's labels leave them out, and its priors were clustered on those labels)
        normalised by its image size (for k-means anchors)."""
        recs = self.records
        wh = np.repeat(recs.sizes, np.diff(recs.box_offsets), axis=0)  # (M, 2) each box's image size
        known = (wh > 0).all(1)  # images without a size (none in the annotation) give no box size
        if not self.include_difficult:
            known &= ~recs.difficult
        return (recs.boxes[known, 2:] - recs.boxes[known, :2]) / wh[known].astype(np.float32)  # float32

    def __getitem__(self, item: int | tuple[int, int] | tuple[int, int, int]) -> dict[str, Any] | None:
        """Returns a sample dict (None for a skipped unreadable image under ``"skip"``):

        - image: uint8 (3, h, w) RGB tensor (a view of (h, w, 3) HWC memory) at the input size (a side S: S x S)
        - boxes: float32 (N, 4) xyxy in input pixels; labels: int64 (N,); difficult: bool (N,)
        - image_id: str; path: str; orig_size: (h, w); size: the input size (S, or (height, width))
        - transform: float32 (4,) (scale_x, scale_y, pad_x, pad_y), net = orig * scale + pad
        - gt_boxes: float32 (N0, 4) xyxy original pixels (unaugmented); gt_labels (N0,); gt_difficult (N0,)
        """
        index, size, seed = (tuple(item) + (None, None))[:3] if isinstance(item, tuple) else (item, None, None)
        size = self.default_size if size is None else normal_size(size)
        rec = self.records[int(index)]
        try:
            image, conversions = self._load(int(index), rec)
        except ImageDecodeError as e:
            self._stats.add("skipped_images")
            if self._flag(int(index), LOAD_FAILED) or self.issues.policy == "error":  # logged once per image
                self.issues.report(rec.image_path, e.reason, action="skip_image", detail=e.detail)
            return None
        if conversions and self._flag(int(index), CONVERTED):
            for reason, detail in conversions:
                self.issues.add(conversion_issue(rec.image_path, reason, detail))
        h, w = image.shape[:2]
        boxes, labels, difficult = rec.boxes, rec.labels, rec.difficult
        if (rec.width, rec.height) != (w, h) and rec.width and rec.height:
            self._stats.add("size_mismatch")
            if self._flag(int(index), SIZE_MISMATCH):
                detail = f"{rec.width}x{rec.height} vs {w}x{h}"
                self.issues.fixed(rec.image_path, SIZE_MISMATCH_REASON, detail=detail)
            boxes = boxes * np.array([w / rec.width, h / rec.height] * 2, np.float32)
        t_boxes, t_labels, t_diff = boxes, labels, difficult
        if not self.include_difficult:
            t_boxes, t_labels, t_diff = boxes[~difficult], labels[~difficult], difficult[~difficult]
        if getattr(self.transform, "train", False):
            if self.shuffle_boxes and len(t_boxes) > 1:
                order = _box_order(seed, len(t_boxes))
                t_boxes, t_labels, t_diff = t_boxes[order], t_labels[order], t_diff[order]
            if self.max_boxes is not None and len(t_boxes) > self.max_boxes:
                self._stats.add("truncated_boxes", len(t_boxes) - self.max_boxes)
                m = self.max_boxes
                t_boxes, t_labels, t_diff = t_boxes[:m], t_labels[:m], t_diff[:m]
        out = self.transform(image, t_boxes, t_labels, t_diff, size, seed=seed)
        if out.n_dropped:
            self._stats.add("dropped_boxes", out.n_dropped)
        b, lab, dif = out.boxes, out.labels, out.difficult
        if self.max_boxes is not None and len(b) > self.max_boxes:
            self._stats.add("truncated_boxes", len(b) - self.max_boxes)
            b, lab, dif = b[: self.max_boxes], lab[: self.max_boxes], dif[: self.max_boxes]
        self._stats.add("loaded")
        return {
            # (3, S, S) view of the HWC pixels: no transposing copy here; the collate stacks them NHWC and the
            # module's uint8 -> float conversion writes the layout the network wants in one pass
            "image": torch.from_numpy(np.ascontiguousarray(out.image)).permute(2, 0, 1),
            "boxes": torch.from_numpy(np.ascontiguousarray(b, np.float32)),
            "labels": torch.from_numpy(np.ascontiguousarray(lab, np.int64)),
            "difficult": torch.from_numpy(np.ascontiguousarray(dif, bool)),
            "image_id": rec.image_id,
            "path": str(rec.image_path),
            "orig_size": (h, w),
            "size": size,
            "transform": torch.from_numpy(np.asarray(out.params, np.float32)),
            "gt_boxes": torch.from_numpy(np.ascontiguousarray(boxes, np.float32)),
            "gt_labels": torch.from_numpy(np.ascontiguousarray(labels, np.int64)),
            "gt_difficult": torch.from_numpy(np.ascontiguousarray(difficult, bool)),
        }


def _available_memory() -> int | None:
    """Bytes of memory available now (Linux ``MemAvailable``), None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def _box_order(seed: int | None, n: int) -> np.ndarray:
    """int64 (n,): a training sample's box order, a random permutation that is a function of its seed (the training
    sampler gives every sample one); without a seed, from fresh entropy (the torch RNG stream is left alone). A
    Python ``random.Random`` of its own (~10 us an image; a NumPy generator's seeding took ~40 us), seeded above 2^32 so
    that its stream is never the augmentation's of a sample whose (32-bit) seed equals it."""
    rng = random.Random(int(seed) + (0xB0C5 << 32)) if seed is not None else random.Random()
    order = list(range(n))
    rng.shuffle(order)
    return np.array(order, np.int64)


def stack_nhwc(images: Sequence[torch.Tensor]) -> torch.Tensor:
    """uint8 (3, S, S) images (views of HWC memory, as the datasets make them) -> (B, 3, S, S) with NHWC strides:
    no transposing copy; the module's float conversion (:func:`yolo9000.speed.float_images`) writes the layout the
    network wants in the same pass. A batch of one is a view of its image (no copy at all)."""
    if len(images) == 1:
        return images[0].unsqueeze(0)
    return torch.stack([im.permute(1, 2, 0) for im in images]).permute(0, 3, 1, 2)


class TensorList(list):
    """A list of tensors (same dtype and trailing dimensions) that crosses a process boundary as one: pickled as
    their concatenation and lengths, unpickled as views of it.

    A DataLoader worker sends every tensor of a batch as its own shared-memory segment, a file descriptor passed
    over a socket (~0.2 ms each, in the training process); the per-image ground-truth lists of a batch of 16 were
    48 of them. Everywhere else it is the list it holds.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        items = list(self)
        packable = bool(items) and all(isinstance(t, torch.Tensor) and t.dim() >= 1 for t in items)
        if packable and len({(t.dtype, t.device, tuple(t.shape[1:])) for t in items}) == 1:
            return _tensor_list, (torch.cat(items), [int(t.shape[0]) for t in items])
        return TensorList, (items,)


def _tensor_list(flat: torch.Tensor, lengths: list[int]) -> TensorList:
    """Unpickles a :class:`TensorList`: views of ``flat``, ``lengths`` rows each."""
    return TensorList(flat.split(lengths))


class DetectionCollate:
    """Builds the batch dict of the shared contract from samples, dropping ``None`` (skipped) samples.

    Args:
        max_boxes: pad the targets to exactly this many rows (None: to the most boxes in the batch, >= 1).

    Returns (from ``__call__``): images uint8 (B, 3, h, w) with NHWC strides (the LightningModule converts to
    float in [0, 1], in the network's layout, after the transfer to the device); targets float (B, M, 5)
    (cx, cy, w, h normalised to the input's width and height, class), zero padded; target_mask bool (B, M);
    image_ids; image_paths; orig_sizes long (B, 2) (h, w); transforms float (B, 4); gt_boxes / gt_labels /
    gt_difficult lists (:class:`TensorList`: one transfer each from a loader worker) unless
    ``eval_targets=False``.

    Args:
        max_boxes: pad the targets to exactly this many rows (None: to the most boxes in the batch, >= 1).
        eval_targets: include the per-image ground-truth lists the evaluation reads (the training loader leaves
            them out: a training step never reads them, and pinning and moving them to a GPU took a small copy
            per image and list, 192 a step at batch 64).
    """

    def __init__(self, max_boxes: int | None = None, eval_targets: bool = True) -> None:
        self.max_boxes = max_boxes
        self.eval_targets = eval_targets

    def __call__(self, samples: Sequence[dict[str, Any] | None]) -> dict[str, Any]:
        kept = [s for s in samples if s is not None]
        if len(kept) < len(samples):
            # each image was reported once by the dataset (and every load counted): a line a batch would repeat it
            logger.debug("collate: dropped %d unreadable sample(s) from the batch", len(samples) - len(kept))
        if not kept:  # every image unreadable (data.on_error=skip): an empty batch, which the modules skip
            return self.empty()
        sizes = {tuple(s["image"].shape[-2:]) for s in kept}  # (h, w)
        if len(sizes) != 1:
            raise ValueError(f"samples of one batch have different input sizes (h, w) {sorted(sizes)}")
        net_h, net_w = sizes.pop()
        counts = [len(s["boxes"]) for s in kept]
        m = self.max_boxes if self.max_boxes is not None else max(1, max(counts))
        counts = [min(n, m) for n in counts]
        # every truth of the batch converted at once, written into the zero-padded rows in (image, box) order
        mask = torch.arange(m) < torch.tensor(counts).unsqueeze(1)  # (B, M)
        targets = torch.zeros(len(kept), m, 5)
        boxes = torch.cat([s["boxes"][:n].reshape(-1, 4) for s, n in zip(kept, counts, strict=True)])
        labels = torch.cat([s["labels"][:n].reshape(-1) for s, n in zip(kept, counts, strict=True)])
        scale = torch.tensor([net_w, net_h, net_w, net_h], dtype=torch.float32)
        targets[mask] = torch.cat([box_convert(boxes, "xyxy", "cxcywh") / scale, labels.float().unsqueeze(1)], 1)
        batch = {
            "images": stack_nhwc([s["image"] for s in kept]),  # uint8: 4x less IPC; the module scales
            "targets": targets,
            "target_mask": mask,
            "image_ids": [s["image_id"] for s in kept],
            "image_paths": [s["path"] for s in kept],
            "orig_sizes": torch.tensor([s["orig_size"] for s in kept], dtype=torch.long),
            "transforms": torch.stack([s["transform"] for s in kept]),
        }
        if self.eval_targets:
            for key in ("gt_boxes", "gt_labels", "gt_difficult"):
                batch[key] = TensorList(s[key] for s in kept)
        return batch

    def empty(self) -> dict[str, Any]:
        """The batch of no image (B = 0), with every key of a batch: all its samples were unreadable and skipped
        (``data.on_error=skip``; under ``error`` the first one raised). The modules' steps skip it
        (:meth:`yolo9000.modules.base.DarknetModule.skip_empty_batch`)."""
        batch = {
            "images": torch.zeros(0, 3, 0, 0, dtype=torch.uint8),
            "targets": torch.zeros(0, 1, 5),
            "target_mask": torch.zeros(0, 1, dtype=torch.bool),
            "image_ids": [],
            "image_paths": [],
            "orig_sizes": torch.zeros(0, 2, dtype=torch.long),
            "transforms": torch.zeros(0, 4),
        }
        if self.eval_targets:
            for key in ("gt_boxes", "gt_labels", "gt_difficult"):
                batch[key] = TensorList([])
        return batch


detection_collate = DetectionCollate()
