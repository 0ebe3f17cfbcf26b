"""Every bad-input case under both policies: ``error`` raises DataError naming the file, ``skip`` logs and
counts it, and nothing else is lost."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from yolo9000.data import (
    DataError,
    DetectionCollate,
    DetectionDataset,
    DetectionTransform,
    IssueLog,
    VOCParser,
    read_image,
)

CLASSES = ["cat", "dog"]
GOOD_BOX = (5, 6, 30, 20)  # 1-based VOC coordinates


def _xml(objects: list[tuple[str, tuple]], size: tuple[int, int] | None = (40, 30)) -> str:
    s = "" if size is None else f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>"
    objs = "".join(
        f"<object><name>{n}</name><difficult>{int(d)}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
        f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for n, b, d in ((o[0], o[1], o[2] if len(o) > 2 else 0) for o in objects)
    )
    return f"<annotation><filename>x.jpg</filename>{s}{objs}</annotation>"


def _image(path: Path, size: tuple[int, int] = (40, 30), mode: str = "RGB", fmt: str = "JPEG") -> np.ndarray:
    w, h = size
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    im = Image.fromarray(arr)
    if mode == "L":
        im = im.convert("L")
    elif mode == "RGBA":
        im = Image.fromarray(np.dstack([arr, np.full((h, w), 200, np.uint8)]), "RGBA")
    elif mode == "P":
        im = im.convert("P")
    im.save(path, format=fmt)
    return arr


def _voc(
    root: Path, bad_xml: str | None = None, bad_image: str = "jpg", ids: tuple[str, ...] = ("good", "bad")
) -> Path:
    """A VOC folder with a good image and (optionally) a bad one; ImageSets/Main/train.txt lists ``ids``."""
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    (root / "ImageSets" / "Main").mkdir(parents=True)
    _image(root / "JPEGImages" / "good.jpg")
    (root / "Annotations" / "good.xml").write_text(_xml([("cat", GOOD_BOX), ("dog", (1, 1, 40, 30), 1)]))
    if bad_xml is not None:
        (root / "Annotations" / "bad.xml").write_text(bad_xml)
        if bad_image == "jpg":
            _image(root / "JPEGImages" / "bad.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("\n".join(ids) + "\n")
    return root


def _check_good(records) -> None:
    good = next(r for r in records if r.image_id == "good")
    np.testing.assert_array_equal(good.boxes, [[4, 5, 30, 20], [0, 0, 40, 30]])
    assert good.labels.tolist() == [0, 1] and good.difficult.tolist() == [False, True]


# (name, xml of "bad", write bad.jpg, reason substring, action under skip, boxes of "bad" kept under skip)
LOSSY_CASES = [
    (
        "unknown_class",
        _xml([("cat", (2, 2, 10, 10)), ("zebra", (3, 3, 9, 9))]),
        "jpg",
        "unknown class 'zebra'",
        "drop_box",
        [[1, 1, 10, 10]],
    ),
    (
        "zero_area_box",
        _xml([("cat", (7, 7, 7, 7)), ("dog", (2, 2, 10, 10))]),
        "jpg",
        "zero-area",
        "drop_box",
        [[1, 1, 10, 10]],
    ),
    (
        "inverted_box",
        _xml([("cat", (20, 7, 10, 15)), ("dog", (2, 2, 10, 10))]),
        "jpg",
        "zero-area",
        "drop_box",
        [[1, 1, 10, 10]],
    ),
    (
        "box_fully_outside",
        _xml([("cat", (50, 40, 60, 50)), ("dog", (2, 2, 10, 10))]),
        "jpg",
        "box outside the image",
        "drop_box",
        [[1, 1, 10, 10]],
    ),
    (
        "malformed_bndbox",
        _xml([("cat", ("a", 2, 10, 10)), ("dog", (2, 2, 10, 10))]),
        "jpg",
        "malformed <bndbox>",
        "drop_box",
        [[1, 1, 10, 10]],
    ),
    ("missing_image", _xml([("cat", (2, 2, 10, 10))]), "none", "missing image file", "skip_image", None),
    ("unparsable_xml", "<annotation><size><width>40</wid", "jpg", "unparsable XML", "skip_image", None),
]


@pytest.mark.parametrize("case", LOSSY_CASES, ids=[c[0] for c in LOSSY_CASES])
def test_lossy_case_error_policy(tmp_path, case):
    _, xml, img, reason, _, _ = case
    root = _voc(tmp_path, xml, img)
    with pytest.raises(DataError) as e:
        VOCParser(root, "train").parse(CLASSES, IssueLog("error"))
    assert str(e.value).startswith(str(root / "Annotations" / "bad.xml") + ": ")
    assert reason in str(e.value)


@pytest.mark.parametrize("case", LOSSY_CASES, ids=[c[0] for c in LOSSY_CASES])
def test_lossy_case_skip_policy(tmp_path, case, caplog):
    _, xml, img, reason, action, kept = case
    root = _voc(tmp_path, xml, img)
    issues = IssueLog("skip")
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        recs = VOCParser(root, "train").parse(CLASSES, issues)
    assert len(issues) == 1 and issues.issues[0].action == action and reason in issues.issues[0].reason
    assert issues.issues[0].file.endswith("bad.xml")
    assert any("bad.xml" in r.getMessage() and reason in r.getMessage() for r in caplog.records)
    label = {"drop_box": "1 dropped boxes", "skip_image": "1 skipped images"}[action]
    assert issues.summary().startswith(f"1 problems: {label}") and reason in issues.summary()
    _check_good(recs)  # nothing else lost
    if kept is None:
        assert [r.image_id for r in recs] == ["good"]
    else:
        bad = next(r for r in recs if r.image_id == "bad")
        np.testing.assert_array_equal(bad.boxes, kept)


def test_missing_annotation_file(tmp_path):
    root = _voc(tmp_path, None, ids=("good", "ghost"))
    with pytest.raises(DataError, match=r"ghost\.xml: missing annotation file"):
        VOCParser(root, "train").parse(CLASSES, IssueLog("error"))
    issues = IssueLog("skip")
    recs = VOCParser(root, "train").parse(CLASSES, issues)
    assert [r.image_id for r in recs] == ["good"] and issues.count("skip_image", "missing annotation") == 1


# repaired cases: logged and counted as fixed under both policies, never raise
FIXED_CASES = [
    (
        "missing_size",
        _xml([("cat", (2, 2, 10, 10))], size=None),
        "size read from the image header",
        [[1, 1, 10, 10]],
    ),
    (
        "zero_size",
        _xml([("cat", (2, 2, 10, 10))], size=(0, 0)),
        "size read from the image header",
        [[1, 1, 10, 10]],
    ),
    ("box_sticking_out", _xml([("cat", (-4, 2, 45, 10))]), "box outside the image clipped", [[0, 1, 40, 10]]),
]


@pytest.mark.parametrize("policy", ["error", "skip"])
@pytest.mark.parametrize("case", FIXED_CASES, ids=[c[0] for c in FIXED_CASES])
def test_fixed_cases(tmp_path, case, policy, caplog):
    _, xml, reason, boxes = case
    root = _voc(tmp_path, xml)
    issues = IssueLog(policy)
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        recs = VOCParser(root, "train").parse(CLASSES, issues)
    bad = next(r for r in recs if r.image_id == "bad")
    assert (bad.width, bad.height) == (40, 30)
    np.testing.assert_array_equal(bad.boxes, boxes)
    assert len(issues) == 1 and issues.issues[0].action == "fixed" and reason in issues.issues[0].reason
    assert any("bad.xml" in r.getMessage() for r in caplog.records)
    assert "1 fixed" in issues.summary()
    _check_good(recs)


@pytest.mark.parametrize("policy", ["error", "skip"])
def test_clean_edge_cases_are_not_problems(tmp_path, policy):
    # no objects (a valid negative: kept, named as a note, not a problem), a box overshooting by <= 1 px
    # (silently clipped)
    root = _voc(tmp_path, _xml([]))
    (root / "Annotations" / "edge.xml").write_text(_xml([("dog", (0, 1, 41, 30))]))
    _image(root / "JPEGImages" / "edge.jpg")
    (root / "ImageSets" / "Main" / "train.txt").write_text("good\nbad\nedge\n")
    issues = IssueLog(policy)
    recs = {r.image_id: r for r in VOCParser(root, "train").parse(CLASSES, issues)}
    assert set(recs) == {"good", "bad", "edge"}
    assert [(i.action, Path(i.file).name) for i in issues.issues] == [("note", "bad.xml")]
    assert issues.summary().startswith("0 problems; 1 notes") and "bad.xml" in issues.summary()
    assert recs["bad"].boxes.shape == (0, 4)
    np.testing.assert_array_equal(recs["edge"].boxes, [[0, 0, 40, 30]])


# ------------------------------------------------------------------------------------ image decoding
def _dataset_with_image(tmp_path: Path, write, policy: str) -> DetectionDataset:
    root = _voc(tmp_path, _xml([("cat", (2, 2, 10, 10))]), "none")
    write(root / "JPEGImages" / "bad.jpg")
    recs = VOCParser(root, "train").parse(CLASSES, IssueLog("error"))
    return DetectionDataset(recs, DetectionTransform(train=False), IssueLog(policy), default_size=64)


def _garbage(p: Path) -> None:
    p.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 3)


def _truncated(p: Path) -> None:
    _image(p, (40, 30))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("write", [_garbage, _truncated], ids=["corrupt", "truncated"])
def test_unreadable_image_error_policy(tmp_path, write):
    ds = _dataset_with_image(tmp_path, write, "error")
    with pytest.raises(DataError, match=r"bad\.jpg: corrupt or unreadable image"):
        ds[1]
    # the DataLoader re-raises a worker's error in the main process
    loader = DataLoader(ds, batch_size=2, collate_fn=DetectionCollate(), num_workers=0)
    with pytest.raises(DataError, match=r"bad\.jpg"):
        next(iter(loader))


@pytest.mark.parametrize("write", [_garbage, _truncated], ids=["corrupt", "truncated"])
def test_unreadable_image_skip_policy(tmp_path, write, caplog):
    ds = _dataset_with_image(tmp_path, write, "skip")
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        assert ds[1] is None
        batch = next(iter(DataLoader(ds, batch_size=2, collate_fn=DetectionCollate(), num_workers=0)))
    assert batch["image_ids"] == ["good"] and batch["images"].shape == (1, 3, 64, 64)
    # two failed loads of the same image: counted twice, recorded and logged once, the reason said once
    assert ds.issues.count("skip_image", "corrupt or unreadable image") == 1
    assert ds.stats()["skipped_images"] == 2 and ds.stats()["loaded"] == 1
    msgs = [r.getMessage() for r in caplog.records if "bad.jpg" in r.getMessage()]
    assert len(msgs) == 1 and msgs[0].count("corrupt or unreadable image") == 1 and msgs[0].count("bad.jpg") == 1
    # the file is named once; the batch that lost it says nothing more (a warning a batch repeated it 48 times)
    assert not any("dropped 1 unreadable sample" in r.getMessage() for r in caplog.records)


def test_skip_counted_across_workers(tmp_path):
    ds = _dataset_with_image(tmp_path, _garbage, "skip")
    loader = DataLoader(ds, batch_size=1, collate_fn=DetectionCollate(), num_workers=2)
    # the batch holding only the bad image is empty (the modules skip it), with every key; the good one goes through
    batches = list(loader)
    assert [len(b["images"]) for b in batches] == [1, 0] and batches[1]["image_ids"] == []
    assert set(batches[1]) == set(batches[0]) and batches[1]["targets"].shape == (0, 1, 5)
    assert ds.stats()["skipped_images"] >= 1


PNG_IN_JPG = "PNG data in a .jpg file, decoded as PNG"


@pytest.mark.parametrize(
    "mode,fmt,name,said",
    [
        ("RGB", "PNG", "png_named_jpg", [PNG_IN_JPG]),
        ("L", "JPEG", "grey", ["greyscale image converted to RGB"]),
        ("RGBA", "PNG", "rgba", [PNG_IN_JPG, "RGBA image converted to RGB (alpha dropped)"]),
        ("P", "PNG", "palette", [PNG_IN_JPG, "palette image converted to RGB"]),
    ],
)
@pytest.mark.parametrize("policy", ["error", "skip"])
def test_odd_but_valid_images(tmp_path, mode, fmt, name, said, policy):
    root = _voc(tmp_path, _xml([("cat", (2, 2, 10, 10))]), "none")
    _image(root / "JPEGImages" / "bad.jpg", mode=mode, fmt=fmt)
    with Image.open(root / "JPEGImages" / "bad.jpg") as im:
        expected = np.asarray(im.convert("RGB"))
    got = read_image(root / "JPEGImages" / "bad.jpg")
    assert got.shape == (30, 40, 3) and got.dtype == np.uint8
    tol = 2 if fmt == "JPEG" else 0  # libjpeg vs PIL's JPEG decoder may differ by rounding
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= tol
    recs = VOCParser(root, "train").parse(CLASSES, IssueLog(policy))
    ds = DetectionDataset(recs, DetectionTransform(train=True), IssueLog(policy), default_size=64)
    s = ds[1]
    assert s is not None and s["image"].shape == (3, 64, 64) and isinstance(s["boxes"], torch.Tensor)
    # every conversion is said (never an error), naming the file; once however often it is loaded; a PNG named
    # .jpg as a problem repaired, a colour conversion as a note
    ds[1]
    assert [(i.action, i.reason) for i in ds.issues.issues] == [
        ("fixed" if r == PNG_IN_JPG else "note", r) for r in said
    ]
    assert {Path(i.file).name for i in ds.issues.issues} == {"bad.jpg"}
    assert all(r in ds.issues.summary() for r in said) and "JPEGImages/bad.jpg" in ds.issues.summary()
    assert ds[0] is not None and len(ds.issues) == len(said)  # the plain RGB JPEG: nothing to say


def test_conversions_are_checked_at_the_first_load_only(tmp_path, monkeypatch):
    """The header parse that notes conversions (~1 ms of a 4 ms load) runs once per image, not every epoch; a
    conversion found then is still said, and the flag it leaves is no issue of its own."""
    import yolo9000.data.image_io as image_io

    root = _voc(tmp_path, _xml([("cat", (2, 2, 10, 10))]), "none")
    _image(root / "JPEGImages" / "bad.jpg", mode="L", fmt="JPEG")
    calls: list[str] = []
    real = image_io.image_conversions
    monkeypatch.setattr(
        image_io, "image_conversions", lambda path, data=None: calls.append(Path(path).name) or real(path, data)
    )
    recs = VOCParser(root, "train").parse(CLASSES, IssueLog("skip"))
    ds = DetectionDataset(recs, DetectionTransform(train=True), IssueLog("skip"), default_size=64)
    for _ in range(3):  # three epochs
        assert ds[0] is not None and ds[1] is not None
    assert sorted(calls) == sorted(Path(r.image_path).name for r in recs)  # once per image
    assert [i.reason for i in ds.issues.issues] == ["greyscale image converted to RGB"]
    assert [i.reason for i in ds.load_issues()] == ["greyscale image converted to RGB"]  # the NOTED bit says nothing


def test_issue_log_summary_and_throttle(caplog):
    log = IssueLog("skip", max_warnings_per_reason=2)
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        for k in range(5):
            log.report(f"f{k}.xml", "unknown class 'x'", action="drop_box")
        log.report("g.jpg", "corrupt", action="skip_image")
        log.fixed("h.xml", "box clipped")
    assert len(log) == 7 and log.count("drop_box") == 5
    assert log.summary().startswith("7 problems: 1 skipped images, 5 dropped boxes, 1 fixed")
    assert "unknown class 'x' [dropped boxes]: 5" in log.summary()
    assert sum("[box dropped]" in r.getMessage() for r in caplog.records) == 2  # throttled, still counted
    assert any("further" in r.getMessage() and "not logged" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError):
        IssueLog("ignore")  # type: ignore[arg-type]


def test_cached_images_are_decoded_once_and_change_nothing(tmp_path, monkeypatch, caplog):
    """``cache_images``: the same samples (pixels, boxes, augmentation) as decoding at every load, one decode per
    image, read-only pixels, and the load-time reports unchanged: a conversion said once, an unreadable image
    skipped and reported as without a cache."""
    import yolo9000.data.image_io as image_io_mod

    root = _voc(tmp_path, _xml([("cat", (2, 2, 10, 10))]), "none", ids=("good", "grey", "bad"))
    _image(root / "JPEGImages" / "good.jpg", size=(40, 30))
    _image(root / "JPEGImages" / "grey.jpg", mode="L")
    _garbage(root / "JPEGImages" / "bad.jpg")
    for name in ("grey", "bad"):
        (root / "Annotations" / f"{name}.xml").write_text(_xml([("dog", (3, 4, 20, 25))]))
    recs = VOCParser(root, "train").parse(CLASSES, IssueLog("skip"))
    plain = DetectionDataset(recs, DetectionTransform(train=True), IssueLog("skip"), default_size=64)
    keys = [(i, 96, 100 * epoch + i) for epoch in range(3) for i in range(len(recs))]
    want = [plain[k] for k in keys]  # three epochs decoding at every load
    reads: list[str] = []
    real = image_io_mod.read_image_notes
    monkeypatch.setattr(image_io_mod, "read_image_notes", lambda p, **k: reads.append(Path(p).stem) or real(p, **k))
    with caplog.at_level(logging.INFO, logger="yolo9000.data"):
        cached = DetectionDataset(
            recs, DetectionTransform(train=True), IssueLog("skip"), default_size=64, cache_images=True
        )
    assert sorted(reads) == ["bad", "good", "grey"] and any("cached 2 decoded images" in m for m in caplog.messages)
    # the unreadable image is reported at setup, before any load (a short run may never draw it)
    assert [(Path(i.file).stem, i.reason) for i in cached.issues.issues] == [("bad", "corrupt or unreadable image")]
    ids = [r.image_id for r in recs]
    for k, a in zip(keys, want, strict=True):
        b = cached[k]
        if ids[k[0]] == "bad":
            assert a is None and b is None
            continue
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    # after caching only the unreadable image is read again (each load tries it, as without a cache)
    assert sorted(reads) == ["bad", "bad", "bad", "bad", "good", "grey"]
    # the same issues; the cache reports the unreadable image at setup, before the loads (so first)
    assert sorted((i.action, i.reason) for i in cached.issues.issues) == sorted(
        (i.action, i.reason) for i in plain.issues.issues
    )
    assert cached.issues.issues[0].reason == "corrupt or unreadable image"
    assert sorted(i.reason for i in cached.issues.issues) == [
        "corrupt or unreadable image",
        "greyscale image converted to RGB",
    ]
    with pytest.raises(ValueError, match="read-only"):
        cached._images[ids.index("good")][0, 0, 0] = 1  # shared pixels are never written


def test_image_cache_refuses_more_than_the_free_memory(tmp_path, monkeypatch, caplog):
    import yolo9000.data.dataset as dataset_mod

    root = _voc(tmp_path, _xml([("cat", (2, 2, 10, 10))]), "none", ids=("good",))
    _image(root / "JPEGImages" / "good.jpg", size=(40, 30))
    recs = VOCParser(root, "train").parse(CLASSES, IssueLog("error"))
    monkeypatch.setattr(dataset_mod, "_available_memory", lambda: 4000)  # 40 x 30 x 3 = 3600 bytes > half of it
    with caplog.at_level(logging.WARNING, logger="yolo9000.data"):
        ds = DetectionDataset(recs, DetectionTransform(train=False), IssueLog("error"), cache_images=True)
    assert ds._images is None and any("not cached" in m and "1 images" in m for m in caplog.messages)
    assert ds[0] is not None  # loads decode as usual
    monkeypatch.setattr(dataset_mod, "_available_memory", lambda: 8000)
    assert ds.cache_images() == 3600


def test_yolo_label_and_names_files_with_a_byte_order_mark(tmp_path: Path) -> None:
    """Windows tools write a UTF-8 byte-order mark: it is no part of the first line's class id or name."""
    from yolo9000.darknet.cfg import read_names
    from yolo9000.data.yolo_labels import read_label_rows

    label = tmp_path / "a.txt"
    label.write_text("\ufeff1 0.5 0.5 0.2 0.2\n0 0.3 0.3 0.1 0.1\n", encoding="utf-8")
    issues = IssueLog("skip")
    rows = read_label_rows(label, tmp_path / "a.jpg", 2, issues)
    assert [r[0] for r in rows] == [1, 0] and not issues.issues
    names = tmp_path / "obj.names"
    names.write_text("\ufeffcat\ndog\n", encoding="utf-8")
    assert read_names(names) == ["cat", "dog"]


def _exif_rotated_jpeg(path: Path) -> np.ndarray:
    """A 40 x 30 (w x h) stored JPEG with a red top-left block and EXIF orientation 6 (shown rotated 90 degrees
    clockwise: 30 x 40, the block at the top right). Returns the stored pixels."""
    stored = np.full((30, 40, 3), 255, np.uint8)
    stored[:10, :10] = (255, 0, 0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    return stored


def test_exif_orientation_is_applied_unless_the_annotation_is_the_stored_size(tmp_path: Path) -> None:
    """Phone photos: decoded upright as viewers and labelling tools show them (YOLO labels carry no size, so they
    are read upright, as ultralytics does); a VOC / COCO annotation whose size is the stored one (labelImg ignores
    EXIF) keeps the stored pixels, noted."""
    from yolo9000.data.image_io import EXIF_APPLIED, image_size, read_image_notes, read_record_image
    from yolo9000.data.records import DetectionRecord

    path = tmp_path / "phone.jpg"
    _exif_rotated_jpeg(path)
    up, notes = read_image_notes(path)
    assert up.shape == (40, 30, 3) and image_size(path) == (30, 40)
    assert up[2, -3, 1] < 60 and up[2, 2, 1] > 200  # red block at the top right, white at the top left
    assert [r for r, _ in notes] == [EXIF_APPLIED]
    stored, stored_notes = read_image_notes(path, exif=False)
    assert stored.shape == (30, 40, 3) and stored_notes == []
    as_shown = read_record_image(DetectionRecord(path, "phone", 30, 40))
    assert as_shown[0].shape == (40, 30, 3)
    unrotated, why = read_record_image(DetectionRecord(path, "phone", 40, 30))
    assert unrotated.shape == (30, 40, 3) and "EXIF orientation not applied" in why[-1][0]
    # the notes re-derived for the data summary (loader workers' loads) say what the load did, and only that
    from yolo9000.data.image_io import CONVERTED, EXIF_NOT_APPLIED, load_time_issues

    assert [i.reason for i in load_time_issues(path, CONVERTED, (30, 40))] == [EXIF_APPLIED]
    assert [(i.reason, i.detail) for i in load_time_issues(path, CONVERTED, (40, 30))] == [(EXIF_NOT_APPLIED, "40x30")]


def test_yolo_labels_in_pixels_are_named_as_such(tmp_path: Path) -> None:
    """``0 320 240 100 100`` (pixels, not fractions): dropped with the reason, not as 'a box outside the image'."""
    from yolo9000.data.yolo_labels import read_label_rows

    label = tmp_path / "a.txt"
    label.write_text("0 320 240 100 100\n1 0.5 0.5 1.2 0.3\n", encoding="utf-8")  # a box past the edge is clipped
    issues = IssueLog("skip")
    rows = read_label_rows(label, tmp_path / "a.jpg", 2, issues)
    assert [r[0] for r in rows] == [1]
    assert [i.reason for i in issues.issues] == [
        "label coordinates above 1: YOLO labels are fractions of the image size (pixels given?)"
    ]


def test_a_training_split_without_boxes_stops_naming_the_unknown_classes(tmp_path):
    """Annotations spelled otherwise than the class list drop every box: the run stops before training on nothing,
    naming the classes the annotations use and the fix; the dataset's own names (class_names=null) train."""
    from yolo9000.data.datamodule import DetectionDataModule
    from yolo9000.data.records import DataError

    root = tmp_path / "voc"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    for k in range(12):
        _image(root / "JPEGImages" / f"{k}.jpg")
        (root / "Annotations" / f"{k}.xml").write_text(_xml([("red_cell", GOOD_BOX), ("platelet", (1, 1, 9, 9))]))
    parser = {"_target_": "yolo9000.data.voc.VOCParser", "root": str(root), "split_files": None}
    splits = {"train": {**parser, "split": "train"}, "val": {**parser, "split": "val"}}

    def module(class_names, test: bool = False):  # noqa: ANN001, ANN202
        return DetectionDataModule(
            **({"test": {**parser, "split": "test"}} if test else splits),
            class_names=class_names,
            split_fractions={"train": 0.0, "val": 0.0, "test": 1.0} if test else {"train": 0.5, "val": 0.5, "test": 0},
            on_error="skip",
            batch_size=2,
            num_workers=0,
            img_size=64,
            cache_images=False,
        )

    with pytest.raises(DataError, match=r"data.train: \d+ images and no box to train on") as err:
        module(["RBC", "WBC"]).setup("fit")
    assert "'platelet', 'red_cell'" in str(err.value) and "data.class_names=null" in str(err.value)
    dm = module(None)
    dm.setup("fit")
    assert dm.class_names == ["platelet", "red_cell"] and sum(len(r.boxes) for r in dm.datasets["train"].records) > 0
    # an evaluated split the same (eval.py of a checkpoint on data of other class names: every metric was nan,
    # exit status 0)
    dm = module(["RBC", "WBC"], test=True)
    dm.setup("test")
    with pytest.raises(DataError, match=r"data.test: \d+ images and no box to evaluate; .*'platelet', 'red_cell'"):
        dm.check_has_boxes("test")


def test_an_unknown_split_name_lists_the_splits() -> None:
    """``anchors.py split=nope`` (box_sizes of a split) stopped with a bare KeyError: 'nope'."""
    import hydra

    from conftest import compose_config

    dm = hydra.utils.instantiate(compose_config("train", "data.max_images=4", "data.num_workers=0").data)
    with pytest.raises(ValueError, match=r"split='nope': one of train, val, test"):
        dm.box_sizes("nope")


def test_max_images_reports_the_problems_of_the_images_kept_only() -> None:
    """BCCD's train split has a zero-area box in BloodImage_00343.xml (its 171st image): a run of its first 8
    images reported that dropped box as its own; all 205 report it."""
    import hydra

    from conftest import compose_config

    def problems(*overrides: str) -> list[str]:
        dm = hydra.utils.instantiate(compose_config("train", "data.num_workers=0", *overrides).data)
        dm.setup("fit")
        return [i.file for i in dm.issues.issues if i.action == "drop_box"]

    assert any("BloodImage_00343" in f for f in problems("data.max_images={train: 205, val: 1}"))
    assert not any("BloodImage_00343" in f for f in problems("data.max_images={train: 8, val: 1}"))


def test_difficult_words_and_identical_bad_boxes(tmp_path: Path) -> None:
    """``<difficult>true</difficult>`` (CVAT's and Label Studio's exports) is difficult (it was read as 0, and the
    box counted as an ordinary truth); ``false`` / ``no`` are not; an unreadable word is noted. Two identical bad
    boxes in one file are two dropped boxes (one issue each, by their place), not one."""
    obj = "<object><name>{}</name><difficult>{}</difficult><bndbox><xmin>{}</xmin><ymin>5</ymin><xmax>{}</xmax>"
    obj += "<ymax>20</ymax></bndbox></object>"
    words = ["true", "False", "no", "YES", "maybe", "1"]
    objs = "".join(obj.format("cat", w, 5 + k, 30) for k, w in enumerate(words))
    objs += obj.format("dog", 0, 30, 10) * 2  # two identical inverted boxes
    xml = f"<annotation><size><width>40</width><height>30</height><depth>3</depth></size>{objs}</annotation>"
    root = _voc(tmp_path, xml)
    issues = IssueLog("skip")
    recs = {r.image_id: r for r in VOCParser(root, "train").parse(CLASSES, issues)}
    assert recs["bad"].difficult.tolist() == [True, False, False, True, False, True]
    assert issues.count("note", "unreadable <difficult>") == 1
    assert issues.count("drop_box", "zero-area or inverted box") == 2
