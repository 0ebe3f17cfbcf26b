"""Rules of image decoding and of the detection DataModule's wiring, each checked against hand-made inputs.

Image I/O (:mod:`yolo9000.data.image_io`): which files a folder holds (suffix case), array conversion (alpha,
channel layout, 16-bit, float tolerance, empty / two-channel arrays), 16-bit and 32-bit greyscale files, EXIF
orientation (pixel placement, square photos, notes), the errors users read (missing file, Git LFS pointer, bad
pixel values) and the load-time issues re-derived from the shared flags.

DataModule (:mod:`yolo9000.data.datamodule`, :mod:`yolo9000.data.sharded`): which splits each stage builds,
where the class names come from, ``max_images``, evaluation transforms and caching, batch sizes, the multi-scale
keys and final phase, the training shuffle seed, pinned memory and the unpadded DDP evaluation shards.

Run set-up (:mod:`yolo9000.build`, :mod:`yolo9000.multirun`, :mod:`yolo9000.environment`): ``check_config`` /
``build_info`` (img_size stride, fc grid), W&B tags, the ``cpus`` / ``max`` / ``coalesce`` resolvers, torch threads
under SLURM, Hydra option ordering and the unset-variable hint.

Every expected value is computed by hand from the tiny images and records written here.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from yolo9000.data.datamodule import DetectionDataModule, MultiScaleConfig
from yolo9000.data.image_io import (
    CONVERTED,
    EXIF_APPLIED,
    LOAD_FAILED,
    SIZE_MISMATCH,
    SIZE_MISMATCH_REASON,
    ImageDecodeError,
    LoadFlags,
    image_conversions,
    image_size,
    images_under,
    load_time_issues,
    read_image,
    read_image_notes,
    read_record_image,
    rgb_uint8,
)
from yolo9000.data.records import DetectionRecord, IssueLog

# ------------------------------------------------------------------------------------------------ image files

# six distinct colours of a 2 x 3 grid of 16-pixel blocks (JPEG keeps a block's centre within a few levels)
COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
    np.uint8,
)
BLOCK = 16


def _grid_image(grid: np.ndarray) -> np.ndarray:
    """(rows * 16, cols * 16, 3) pixels: block (r, c) is ``COLOURS[grid[r, c]]``."""
    return np.repeat(np.repeat(COLOURS[grid], BLOCK, axis=0), BLOCK, axis=1)


def _block_colours(image: np.ndarray) -> np.ndarray:
    """The colour index of each 16-pixel block of ``image`` (nearest colour of its centre pixel)."""
    rows, cols = image.shape[0] // BLOCK, image.shape[1] // BLOCK
    out = np.zeros((rows, cols), int)
    for r in range(rows):
        for c in range(cols):
            px = image[r * BLOCK + BLOCK // 2, c * BLOCK + BLOCK // 2].astype(int)
            out[r, c] = int(np.abs(COLOURS.astype(int) - px).sum(1).argmin())
    return out


def _jpeg_with_orientation(path: Path, grid: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_grid_image(grid)).save(path, exif=exif, quality=95)


STORED = np.array([[0, 1, 2], [3, 4, 5]])  # 2 rows x 3 columns of blocks: 48 wide, 32 high
# the grid a viewer shows for each EXIF orientation (the EXIF specification's meaning of the tag)
UPRIGHT = {
    1: STORED,
    2: STORED[:, ::-1],  # mirrored left-right
    3: STORED[::-1, ::-1],  # rotated 180
    4: STORED[::-1, :],  # mirrored top-bottom
    5: STORED.T,  # transposed (main diagonal)
    6: np.rot90(STORED, -1),  # rotated 90 clockwise
    7: np.rot90(STORED, 2).T,  # transverse (anti-diagonal)
    8: np.rot90(STORED, 1),  # rotated 90 counter-clockwise
}


@pytest.mark.parametrize("orientation", sorted(UPRIGHT))
def test_every_exif_orientation_puts_the_pixels_where_a_viewer_shows_them(tmp_path: Path, orientation: int) -> None:
    path = tmp_path / f"o{orientation}.jpg"
    _jpeg_with_orientation(path, STORED, orientation)
    got, notes = read_image_notes(path)
    want = UPRIGHT[orientation]
    assert got.shape == (want.shape[0] * BLOCK, want.shape[1] * BLOCK, 3)
    assert _block_colours(got).tolist() == want.tolist() and got.flags.c_contiguous  # rotated, yet one block
    # an explicit upright tag (1) is no conversion; every other tag is noted
    assert [r for r, _ in notes] == ([] if orientation == 1 else [EXIF_APPLIED])
    stored, stored_notes = read_image_notes(path, exif=False)
    assert _block_colours(stored).tolist() == STORED.tolist() and stored_notes == []


@pytest.mark.parametrize("orientation", [3, 6, 7, 8])
def test_a_webp_with_an_exif_orientation_is_decoded_upright_at_its_header_size(
    tmp_path: Path, orientation: int
) -> None:
    """WebP carries EXIF as JPEG does (phones write it): the pixels are upright, at the size :func:`image_size`
    gives (which YOLO labels, carrying no size, are read against), as the note says. torchvision's WebP decoder
    ignores the tag: the stored pixels came back, 48 x 32 where the header size said 32 x 48."""
    path = tmp_path / f"o{orientation}.webp"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(_grid_image(STORED)).save(path, exif=exif, lossless=True)
    want = UPRIGHT[orientation]
    got, notes = read_image_notes(path)
    assert _block_colours(got).tolist() == want.tolist()
    assert image_size(path) == (got.shape[1], got.shape[0]) == (want.shape[1] * BLOCK, want.shape[0] * BLOCK)
    assert [r for r, _ in notes] == [EXIF_APPLIED]
    stored, _ = read_image_notes(path, exif=False)
    assert np.array_equal(stored, _grid_image(STORED))  # lossless: the stored pixels exactly


def test_a_square_exif_rotated_photo_is_read_upright_whatever_its_annotation_size(tmp_path: Path) -> None:
    """A square photo's annotation size cannot tell whether it was labelled on the stored or the upright pixels
    (both are 32 x 32): it is read upright, as viewers and the labelling tools show it."""
    grid = np.array([[0, 1], [2, 3]])
    path = tmp_path / "square.jpg"
    _jpeg_with_orientation(path, grid, 6)
    image, notes = read_record_image(DetectionRecord(path, "square", 32, 32))
    assert _block_colours(image).tolist() == np.rot90(grid, -1).tolist()
    assert [r for r, _ in notes] == [EXIF_APPLIED]


def test_an_annotation_with_swapped_size_but_no_exif_tag_keeps_the_image_as_stored(tmp_path: Path) -> None:
    """A 48 x 32 image without an EXIF tag annotated as 32 x 48: no rotation to undo (the boxes are rescaled
    elsewhere), so no note that an EXIF orientation was left unapplied."""
    path = tmp_path / "plain.png"
    Image.fromarray(_grid_image(STORED)).save(path)
    image, notes = read_record_image(DetectionRecord(path, "plain", 32, 48))
    assert _block_colours(image).tolist() == STORED.tolist()
    assert notes == []


def test_exif_orientation_not_applied_note_names_the_annotation_size(tmp_path: Path) -> None:
    path = tmp_path / "phone.jpg"
    _jpeg_with_orientation(path, STORED, 6)  # stored 48 x 32, shown 32 x 48
    image, notes = read_record_image(DetectionRecord(path, "phone", 48, 32))
    assert _block_colours(image).tolist() == STORED.tolist()
    assert notes[-1][0].startswith("EXIF orientation not applied") and notes[-1][1] == "48x32"


def test_a_16_bit_png_keeps_its_high_byte(tmp_path: Path) -> None:
    """16-bit grey 0x1234 -> 0x12 (18), 0xFFFF -> 255, 0x00FF -> 0: the high byte, not the low one."""
    a = np.array([[0x1234, 0xFFFF, 0x00FF]], np.uint16)
    path = tmp_path / "deep.png"
    Image.fromarray(a).save(path)
    assert Image.open(path).mode.startswith("I")  # a 16-bit file indeed
    got = read_image(path)
    assert got.shape == (1, 3, 3) and got[0, :, 0].tolist() == [0x12, 255, 0] and (got == got[..., :1]).all()


def test_a_32_bit_tiff_of_65535_is_white_and_negative_values_are_refused(tmp_path: Path) -> None:
    ok = tmp_path / "i32.tif"
    Image.fromarray(np.array([[0, 256, 65535]], np.int32)).save(ok)
    assert read_image(ok)[0, :, 0].tolist() == [0, 1, 255]
    bad = tmp_path / "neg.tif"
    Image.fromarray(np.array([[-5, 0, 100]], np.int32)).save(bad)
    with pytest.raises(ImageDecodeError, match="unsupported pixel values") as err:
        read_image(bad)
    assert "outside 0..65535" in err.value.detail


def test_image_files_are_found_whatever_the_case_of_their_suffix(tmp_path: Path) -> None:
    """Cameras and Windows tools write ``.JPG`` / ``.PNG``; every suffix the readers take counts, TIFF's long one
    included."""
    names = ["a.JPG", "b.Png", "c.tiff", "d.TIF", "e.jpeg", "f.webp"]
    for name in names:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("no image")
    assert [p.name for p in images_under(tmp_path)] == names


def test_an_upper_case_suffix_is_not_a_format_mismatch(tmp_path: Path) -> None:
    path = tmp_path / "photo.JPG"
    Image.new("RGB", (8, 8), (10, 20, 30)).save(path, format="JPEG")
    assert image_conversions(path) == []
    png_named_jpg = tmp_path / "x.JPG"
    Image.new("RGB", (8, 8)).save(png_named_jpg, format="PNG")
    assert image_conversions(png_named_jpg) == [("PNG data in a .JPG file, decoded as PNG", "")]


def test_a_missing_file_and_a_git_lfs_pointer_say_what_they_are(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError) as err:
        read_image(tmp_path / "gone.jpg")
    assert err.value.reason == "missing image file" and "FileNotFoundError" in err.value.detail
    lfs = tmp_path / "lfs.jpg"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 123\n")
    with pytest.raises(ImageDecodeError) as err:
        read_image(lfs)
    assert err.value.reason == "a Git LFS pointer, not an image" and "git lfs pull" in err.value.detail
    assert str(err.value) == f"{err.value.reason} ({err.value.detail})"


def test_decoded_images_are_c_contiguous(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    Image.fromarray(_grid_image(STORED)).save(path)
    got = read_image(path)
    assert got.flags.c_contiguous and got.shape == (32, 48, 3)


# ---------------------------------------------------------------------------------------------- rgb_uint8


def test_rgba_arrays_drop_alpha_and_keep_rgb() -> None:
    a = np.array([[[10, 20, 30, 40]]], np.uint8)
    assert rgb_uint8(a).tolist() == [[[10, 20, 30]]]
    chw = np.array([[[10]], [[20]], [[30]], [[40]]], np.uint8)  # (4, 1, 1)
    assert rgb_uint8(chw, channels_last=False).tolist() == [[[10, 20, 30]]]


def test_channels_first_arrays_keep_height_and_width() -> None:
    """A (3, 2, 3) array: pixel (y, x) of the result is channel values [c][y][x]."""
    chw = np.arange(18, dtype=np.uint8).reshape(3, 2, 3)
    got = rgb_uint8(chw, channels_last=False)
    assert got.shape == (2, 3, 3)
    assert got[1, 2].tolist() == [5, 11, 17] and got[0, 1].tolist() == [1, 7, 13]


def test_uint16_arrays_keep_the_high_byte() -> None:
    got = rgb_uint8(np.array([[0x1234, 0xFFFF, 0x01FF]], np.uint16))
    assert got[0, :, 0].tolist() == [0x12, 255, 1]


def test_floats_just_above_one_are_white_and_clearly_above_are_refused() -> None:
    assert rgb_uint8(np.array([[1.0005]], np.float32))[0, 0].tolist() == [255, 255, 255]
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        rgb_uint8(np.array([[1.01]], np.float32))


@pytest.mark.parametrize("shape", [(0, 4, 3), (4, 0), (4, 4, 2)])
def test_empty_and_two_channel_arrays_are_refused(shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match="empty image|1, 3 or 4 channels"):
        rgb_uint8(np.zeros(shape, np.uint8))


# ----------------------------------------------------------------------------------------- load-time issues


def test_load_flags_keep_the_bits_already_set() -> None:
    flags = LoadFlags(2)
    assert flags.set(0, LOAD_FAILED) and flags.set(0, CONVERTED)
    assert not flags.set(0, LOAD_FAILED) and not flags.set(0, CONVERTED)
    assert int(flags.flags[0]) == LOAD_FAILED | CONVERTED and int(flags.flags[1]) == 0


def test_load_flags_pickled_after_use_write_into_their_own_tensor() -> None:
    """set() writes through a NumPy view of the flags it makes once; a pickled copy (a spawned loader worker's, with
    the tensor in shared memory there) must not carry the old view, or its flags would land in a private array that
    nobody reads."""
    import pickle

    flags = LoadFlags(3)
    flags.set(0, LOAD_FAILED)  # the view now exists
    copy = pickle.loads(pickle.dumps(flags))
    assert copy.set(2, CONVERTED) and int(copy.flags[2]) == CONVERTED  # the copy's own tensor
    assert int(copy.flags[0]) == LOAD_FAILED and not copy.set(0, LOAD_FAILED)
    assert int(flags.flags[2]) == 0  # (plain pickling copies the memory: the original is untouched)


def test_load_time_issues_name_each_flagged_problem(tmp_path: Path) -> None:
    grey = tmp_path / "grey.png"
    Image.new("L", (20, 10), 128).save(grey)  # 20 wide, 10 high
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff not really a jpeg")

    issues = load_time_issues(broken, LOAD_FAILED)
    assert [(i.reason, i.action) for i in issues] == [("corrupt or unreadable image", "skip_image")]
    assert "0x20" in issues[0].detail  # the decoder's word on the file: its second marker is the byte 0x20 (" ")

    conv = load_time_issues(grey, CONVERTED)
    assert [(i.reason, i.action) for i in conv] == [("greyscale image converted to RGB", "note")]  # not a problem
    misnamed = tmp_path / "misnamed.jpg"
    Image.new("RGB", (4, 4)).save(misnamed, format="PNG")
    assert [(i.action, i.reason) for i in load_time_issues(misnamed, CONVERTED)] == [
        ("fixed", "PNG data in a .jpg file, decoded as PNG")  # a problem of the file, repaired
    ]

    (size,) = load_time_issues(grey, SIZE_MISMATCH, (40, 30))
    assert (size.reason, size.action, size.detail) == (SIZE_MISMATCH_REASON, "fixed", "40x30 vs 20x10")
    assert load_time_issues(grey, SIZE_MISMATCH, (40, None)) == []  # no annotated size: nothing to compare
    assert load_time_issues(grey, SIZE_MISMATCH) == []
    assert load_time_issues(grey, 0) == []


# --------------------------------------------------------------------------------------------- DataModule


class FakeParser:
    """A parser of hand-made records (the AnnotationParser protocol): ``names`` is what it discovers (an
    exception instance: raised)."""

    def __init__(self, records: Sequence[DetectionRecord], names: list[str] | Exception | None = None) -> None:
        self.records = list(records)
        self.names = names

    def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]:
        return list(self.records)

    def discover_class_names(self) -> list[str] | None:
        if isinstance(self.names, Exception):
            raise self.names
        return self.names

    def __repr__(self) -> str:
        return f"FakeParser({len(self.records)})"


def _records(folder: Path, prefix: str, n: int, size: tuple[int, int] = (64, 48)) -> list[DetectionRecord]:
    """``n`` PNG images of ``size`` (w, h), each with one box of class 0 and one difficult box of class 1."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        path = folder / f"{prefix}{i}.png"
        Image.new("RGB", size, (40 * i % 256, 100, 200)).save(path)
        boxes = [[4.0, 4.0, 30.0, 30.0], [10.0, 10.0, 20.0, 20.0]]
        out.append(DetectionRecord(path, path.stem, size[0], size[1], boxes, [0, 1], [False, True]))
    return out


def _module(tmp_path: Path, **kw: Any) -> DetectionDataModule:
    splits = {s: FakeParser(_records(tmp_path / s, s, n)) for s, n in (("train", 4), ("val", 3), ("test", 2))}
    defaults: dict[str, Any] = {"class_names": ["a", "b"], "num_workers": 0, "img_size": 64, "batch_size": 2}
    return DetectionDataModule(**{**splits, **defaults, **kw})


@pytest.mark.parametrize(
    ("stage", "built"),
    [("fit", ["train", "val"]), ("validate", ["val"]), ("test", ["test"]), ("predict", ["test"])],
)
def test_each_stage_builds_only_its_splits(tmp_path: Path, stage: str, built: list[str]) -> None:
    dm = _module(tmp_path)
    dm.setup(stage)
    assert sorted(dm.datasets) == built
    n = {"train": 4, "val": 3, "test": 2}
    assert {s: len(d) for s, d in dm.datasets.items()} == {s: n[s] for s in built}


def test_predict_loader_reads_the_test_split_even_when_test_split_is_val(tmp_path: Path) -> None:
    dm = _module(tmp_path)
    dm.test_split = "val"
    dm.setup()
    assert len(dm.predict_dataloader().dataset) == 2 and len(dm.test_dataloader().dataset) == 3


def test_class_names_come_from_the_training_parser_first(tmp_path: Path) -> None:
    recs = _records(tmp_path / "i", "x", 1)
    dm = DetectionDataModule(
        train=FakeParser(recs, ["train0", "train1"]),
        val=FakeParser(recs, ["val0"]),
        test=FakeParser(recs, ["test0"]),
        num_workers=0,
    )
    assert dm.class_names == ["train0", "train1"] and dm.num_classes == 2


def test_class_names_skip_a_split_without_names_and_report_a_missing_file(tmp_path: Path) -> None:
    recs = _records(tmp_path / "i", "x", 1)
    dm = DetectionDataModule(train=FakeParser(recs, []), val=FakeParser(recs, ["v"]), num_workers=0)
    assert dm.class_names == ["v"]  # an empty discovery names no classes
    missing = FileNotFoundError("no train json here")
    dm = DetectionDataModule(train=FakeParser(recs, missing), val=FakeParser(recs, None), num_workers=0)
    with pytest.raises(FileNotFoundError, match="no train json here"):
        _ = dm.class_names


def test_max_images_keeps_exactly_the_first_n_of_each_split(tmp_path: Path) -> None:
    dm = _module(tmp_path, max_images={"train": 3, "val": 1})
    dm.setup()
    ids = {s: [r.image_id for r in d.records] for s, d in dm.datasets.items()}
    assert ids == {"train": ["train0", "train1", "train2"], "val": ["val0"], "test": ["test0", "test1"]}


def test_max_images_reports_the_problems_of_an_image_both_kept_and_left_out(tmp_path: Path) -> None:
    """Two records of one image id (a list joining two parsers): the first is kept, so the problem found in
    that file is the run's and is reported, although a later record of the same id is left out."""
    recs = _records(tmp_path / "t", "same", 1)
    rec = recs[0]

    class Reporting(FakeParser):
        def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]:
            issues.fixed(rec.image_path, "a problem of the kept image", detail="")
            return [rec, rec]

    dm = DetectionDataModule(train=Reporting([]), class_names=["a", "b"], num_workers=0, max_images=1)
    dm.setup("fit")
    assert [r.image_id for r in dm.datasets["train"].records] == ["same0"]
    assert [i.reason for i in dm.issues.issues] == ["a problem of the kept image"]


def test_evaluation_splits_are_not_augmented_and_are_cached_with_training(tmp_path: Path) -> None:
    dm = _module(tmp_path, cache_images=True)
    dm.setup()
    ds = dm.datasets
    assert ds["train"].transform.train and not ds["val"].transform.train and not ds["test"].transform.train
    # cache_images: train and val (loaded every epoch / validation), not test
    assert ds["train"]._images is not None and ds["val"]._images is not None and ds["test"]._images is None
    a, b = ds["val"][0], ds["val"][0]
    assert a is not None and b is not None and bool((a["image"] == b["image"]).all())
    # a 64 x 48 image at 64: scale 1, no jitter; the non-difficult box only (include_difficult=False)
    assert a["boxes"].shape == (1, 4) and a["labels"].tolist() == [0]


def test_include_difficult_keeps_the_difficult_training_boxes(tmp_path: Path) -> None:
    for flag, n in ((False, 1), (True, 2)):
        dm = _module(tmp_path / str(flag), include_difficult=flag, augment={"jitter": 0.0})
        dm.setup("fit")
        sample = dm.datasets["train"][0, 64, 0]
        assert sample is not None and len(sample["gt_boxes"]) == 2
        assert len(sample["labels"]) == n


def test_difficult_boxes_are_counted_apart_and_left_out_of_the_priors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The setup line counted difficult / crowd boxes as training boxes though the targets leave them out (and the
    k-means priors clustered them): they are counted apart, the class line counts the trained ones, the priors'
    box sizes are those of the trained boxes (darknet's labels leave them out); include_difficult keeps all."""
    for flag in (False, True):
        dm = _module(tmp_path / str(flag), include_difficult=flag)
        caplog.clear()
        with caplog.at_level(logging.INFO, "yolo9000.data"):
            dm.setup("fit")
        text = caplog.text
        if flag:
            assert "train: 4 images, 8 boxes (4 difficult / crowd);" in text and "0 a: 4, 1 b: 4" in text
            assert len(dm.box_sizes("train")) == 8
        else:
            assert "train: 4 images, 8 boxes (4 difficult / crowd: not trained on);" in text
            assert "val: 3 images, 6 boxes (3 difficult / crowd)" in text and "0 a: 4, 1 b: 0" in text
            sizes = dm.box_sizes("train")
            assert sizes.shape == (4, 2) and np.allclose(sizes, [[26 / 64, 26 / 48]] * 4)  # the class-0 boxes only


def test_max_boxes_caps_every_training_sample(tmp_path: Path) -> None:
    dm = _module(tmp_path, include_difficult=True, max_boxes=1, augment={"jitter": 0.0})
    dm.setup("fit")
    sample = dm.datasets["train"][0, 64, 0]
    assert sample is not None and len(sample["boxes"]) == 1


def test_eval_batch_size_defaults_to_the_training_batch_size(tmp_path: Path) -> None:
    dm = _module(tmp_path, batch_size=3)
    dm.setup()
    assert dm.eval_batch_size == 3 and dm.val_dataloader().batch_size == 3
    assert _module(tmp_path / "b", batch_size=3, eval_batch_size=5).eval_batch_size == 5


def test_img_size_must_be_a_multiple_of_32(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="img_size must be a multiple of 32, got 100"):
        DetectionDataModule(img_size=100)


def test_multiscale_keys_are_checked_and_normalised() -> None:
    with pytest.raises(ValueError, match=r"unknown multiscale keys \['sizez'\]"):
        MultiScaleConfig.from_mapping({"sizez": [320]})
    with pytest.raises(ValueError, match="final_batches or final_size_after, not both"):
        MultiScaleConfig.from_mapping({"final_batches": 10, "final_size_after": 0})
    cfg = MultiScaleConfig.from_mapping({"seed": None, "sizes": ["320", 352.0]})
    assert cfg.seed == 0 and cfg.sizes == [320, 352] and all(type(s) is int for s in cfg.sizes)


def test_fixed_size_defaults_to_img_size_with_multiscale_off(tmp_path: Path) -> None:
    dm = _module(tmp_path, img_size=96, multiscale={"enabled": False})
    assert dm.multiscale_kwargs()["fixed_size"] == 96
    batches = list(dm.train_batch_sampler())
    assert {size for batch in batches for _, size, _ in batch} == {96}


def _with_trainer(dm: DetectionDataModule, **trainer: Any) -> DetectionDataModule:
    """``dm`` with a stand-in trainer (the attributes the DataModule reads)."""
    dm.trainer = SimpleNamespace(**{"world_size": 1, "global_rank": 0, "max_steps": -1, "max_epochs": None, **trainer})
    return dm


def test_final_phase_covers_exactly_the_last_n_batches(tmp_path: Path) -> None:
    """4 training images, batch 2: 2 batches an epoch; 3 epochs = 6 batches; final_batches=2: batches 4 and 5."""
    ms = {"min_size": 64, "max_size": 128, "final_batches": 2, "final_size": 96}
    dm = _module(tmp_path, multiscale=ms)
    dm.setup("fit")
    _with_trainer(dm, max_epochs=3)
    sampler = dm.train_batch_sampler()
    assert sampler.final_size_after == 4 and sampler.final_size == 96  # the configured size, not the largest
    _with_trainer(dm, max_steps=10, max_epochs=3)  # max_steps wins over the epochs
    assert dm.train_batch_sampler().final_size_after == 8
    off = _module(tmp_path / "off", multiscale={**ms, "enabled": False})
    off.setup("fit")
    _with_trainer(off, max_epochs=3)
    assert off.train_batch_sampler().final_size_after is None  # no multi-scale: no final phase either


@pytest.mark.parametrize(("n", "world"), [(7, 3), (6, 3), (2, 3)])
def test_evaluation_shards_cover_every_image_exactly_once(tmp_path: Path, n: int, world: int) -> None:
    recs = _records(tmp_path / "v", "v", n)
    seen: list[int] = []
    for rank in range(world):
        dm = DetectionDataModule(
            train=FakeParser(recs), val=FakeParser(recs), class_names=["a", "b"], num_workers=0, img_size=64
        )
        _with_trainer(dm, world_size=world, global_rank=rank)
        sampler = dm.val_dataloader().sampler
        idx = list(sampler)
        assert len(sampler) == len(idx) == len(range(rank, n, world))
        seen += idx
    assert sorted(seen) == list(range(n))


def test_a_split_whose_parsers_find_no_image_is_an_error_naming_it(tmp_path: Path) -> None:
    dm = DetectionDataModule(
        train=FakeParser(_records(tmp_path / "t", "t", 2)), val=FakeParser([]), class_names=["a", "b"], num_workers=0
    )
    with pytest.raises(ValueError, match=r"data\.val: no images \(FakeParser\(0\)\)"):
        dm.setup("fit")


def test_each_split_is_parsed_once_whatever_the_stages_set_up(tmp_path: Path) -> None:
    """Lightning calls setup for every stage (fit, then validate / test): a split already built is kept, not
    parsed again (its problems would be counted twice)."""
    calls: list[str] = []

    class Counting(FakeParser):
        def parse(self, class_names: Sequence[str] | None, issues: IssueLog) -> list[DetectionRecord]:
            calls.append(self.records[0].image_id)
            return super().parse(class_names, issues)

    dm = DetectionDataModule(
        train=Counting(_records(tmp_path / "t", "t", 2)),
        val=Counting(_records(tmp_path / "v", "v", 1)),
        test=Counting(_records(tmp_path / "s", "s", 1)),
        class_names=["a", "b"],
        num_workers=0,
    )
    dm.setup("fit")
    train = dm.datasets["train"]
    dm.setup("fit")
    dm.setup("validate")
    dm.setup("test")
    dm.setup(None)
    assert sorted(calls) == ["s0", "t0", "v0"] and dm.datasets["train"] is train


def test_no_report_file_is_written_for_clean_data(tmp_path: Path) -> None:
    dm = _module(tmp_path)
    dm.report_file = tmp_path / "data_issues.txt"
    dm.setup()
    assert len(dm.issues) == 0 and not dm.report_file.exists()


def test_the_training_shuffle_follows_data_seed(tmp_path: Path) -> None:
    """Two seeds give two orders of 8 images (the same seed, the same order)."""
    recs = _records(tmp_path / "t", "t", 8)

    def order(seed: int) -> list[int]:
        dm = DetectionDataModule(
            train=FakeParser(recs), class_names=["a", "b"], num_workers=0, img_size=64, batch_size=8, seed=seed
        )
        dm.setup("fit")
        (batch,) = list(dm.train_batch_sampler())
        return [i for i, _, _ in batch]

    assert sorted(order(0)) == list(range(8))
    assert order(0) == order(0) and order(0) != order(1)


def test_pinned_memory_only_with_cuda(tmp_path: Path) -> None:
    dm = _module(tmp_path, pin_memory=True)
    dm.setup("validate")
    assert dm.val_dataloader().pin_memory == torch.cuda.is_available()


# ------------------------------------------------------------------------------- build, multirun, environment


def test_wandb_tags_are_cut_to_64_characters_and_never_repeated() -> None:
    from yolo9000.multirun import tags_with_overrides

    long = "data.class_names=[" + "x," * 40 + "]"  # 99 characters
    got = tags_with_overrides(["ablation", "seed=1"], ["seed=1", long, "", long])
    assert got == ["ablation", "seed=1", long[:64]] and len(got[2]) == 64


def test_config_resolvers_on_empty_and_null_values() -> None:
    """``${cpus:}`` (an empty cap): every CPU; ``${max:a,b}`` counts null as 0; ``${coalesce:a,b}`` replaces null
    only (0 and an empty string are values)."""
    from omegaconf import OmegaConf

    from yolo9000.multirun import available_cpus, register_resolvers

    register_resolvers()
    assert available_cpus("") == available_cpus(None) == available_cpus() >= 1
    cfg = OmegaConf.create(
        {"none": None, "zero": 0, "empty": "", "m": "${max:${none},3}", "c0": "${coalesce:${zero},7}"}
        | {"ce": "${coalesce:${empty},7}", "cn": "${coalesce:${none},7}"}
    )
    assert (cfg.m, cfg.c0, cfg.ce, cfg.cn) == (3, 0, "", 7)


def test_torch_threads_at_most_the_cpus_and_unchanged_when_they_already_fit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A SLURM task of more CPUs than the process may run on gets the CPUs it may run on (1 here); threads equal
    to the CPUs given are left alone."""
    import yolo9000.multirun as multirun
    from yolo9000.environment import fit_torch_threads

    before = torch.get_num_threads()
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(multirun, "available_cpus", lambda cap=None: 1)
    try:
        torch.set_num_threads(2)
        monkeypatch.setenv("SLURM_CPUS_PER_TASK", "4")
        assert fit_torch_threads() == 1 and torch.get_num_threads() == 1
        assert fit_torch_threads() is None  # 1 thread on 1 CPU: nothing to change
    finally:
        torch.set_num_threads(before)


def test_a_lone_dash_is_an_override_not_a_hydra_option() -> None:
    from yolo9000.environment import hydra_flags_first

    assert hydra_flags_first(["t.py", "a=1", "-", "-m", "b=2"]) == ["t.py", "-m", "a=1", "-", "b=2"]


def test_the_env_hint_leaves_an_errno_style_file_not_found_error_alone() -> None:
    """``FileNotFoundError(errno, strerror, filename)`` (what ``open`` raises) keeps its arguments."""
    from omegaconf import OmegaConf

    from yolo9000.environment import hint_unset_env

    node = OmegaConf.create({"root": "${oc.env:YOLO9000_SURELY_UNSET_VAR,data/x}"})
    with pytest.raises(FileNotFoundError) as err, hint_unset_env(node):
        raise FileNotFoundError(2, "No such file or directory", "data/x/a.json")
    assert err.value.args == (2, "No such file or directory")
    assert str(err.value) == "[Errno 2] No such file or directory: 'data/x/a.json'"


def test_check_config_refuses_an_img_size_off_the_stride_and_takes_the_fc_grid_given() -> None:
    from conftest import compose_config
    from yolo9000.build import build_info, check_config

    with pytest.raises(ValueError, match="data.img_size must be a multiple of 32, got 100"):
        check_config(compose_config("train", "data.img_size=100"))

    class Data:
        class_names = ("a", "b")

        def box_sizes(self, split: str) -> np.ndarray:
            return np.array([[0.1, 0.1], [0.2, 0.3], [0.4, 0.2], [0.5, 0.6], [0.8, 0.7]], np.float32)

    fc = ["model.net.head=fc", "data.multiscale.enabled=false", "data.img_size=256"]
    assert build_info(compose_config("train", *fc, "model.net.fc_grid=8"), Data()).fc_grid == 8
    assert build_info(compose_config("train", *fc), Data()).fc_grid == 8  # null: 256 / 32
    assert build_info(compose_config("train", *fc, "model.net.fc_grid=4"), Data()).fc_grid == 4
    info = build_info(compose_config("train", "data.img_size=256"), Data())
    assert info.class_names == ["a", "b"] and info.eval_size == 256 and info.fc_grid is None


def test_build_info_resolves_the_priors_with_the_runs_seed_box_cap_k_and_metric(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """k-means priors are resolved on the training boxes with the run's ``seed`` and ``model.priors`` ``k``,
    ``metric`` and ``max_boxes`` (a seed or cap left out gives other priors from the same data), on the grid of
    ``data.img_size / 32``."""
    import yolo9000.build as build_mod
    from conftest import compose_config

    cfg = compose_config(
        "train", "seed=7", "data.img_size=96", "model.priors.k=3", "model.priors.max_boxes=50",
        "model.priors.metric=iou",
    )  # fmt: skip
    seen: dict[str, Any] = {}

    def resolve(anchors: Any, boxes: Any, grid: int, **kw: Any) -> SimpleNamespace:
        seen.update(anchors=anchors, boxes=boxes, grid=grid, **kw)
        return SimpleNamespace(anchors=[[1.0, 1.0]] * 3, avg_iou=0.5, source="kmeans")

    monkeypatch.setattr(build_mod, "resolve_priors", resolve)
    data = SimpleNamespace(class_names=["a", "b"], box_sizes=lambda split: f"boxes of {split}")
    info = build_mod.build_info(cfg, data)
    assert seen == {
        "anchors": "kmeans", "boxes": "boxes of train", "grid": 3, "k": 3, "metric": "iou", "seed": 7,
        "max_boxes": 50,
    }  # fmt: skip
    assert info.class_names == ["a", "b"] and info.anchors == [[1.0, 1.0]] * 3


def test_an_image_over_pils_pixel_limit_is_unreadable_with_the_way_to_lift_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PIL refuses images over twice ``Image.MAX_IMAGE_PIXELS`` (~179 M pixels) with an exception that is no
    OSError: a BMP / TIFF that large crashed the reader (and ``predict(skip_unreadable=True)``) instead of being an
    unreadable image. A 100 x 100 BMP under a limit of 2,000 pixels stands in for it."""
    from yolo9000 import api

    bmp = tmp_path / "big.bmp"
    Image.fromarray(np.zeros((100, 100, 3), np.uint8)).save(bmp)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2000)
    for read in (read_image, image_size):
        with pytest.raises(ImageDecodeError, match=r"DecompressionBombError.*MAX_IMAGE_PIXELS = None"):
            read(bmp)
    got = api.ImageFilesDataset([str(bmp)], 64).read(0)
    assert "DecompressionBombError" in got["error"]
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert read_image(bmp).shape == (100, 100, 3) and image_size(bmp) == (100, 100)
