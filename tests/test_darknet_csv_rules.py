"""Rules of darknet's generic-network layers (:mod:`yolo9000.models.layers`: the activations, ``[shortcut]``,
``[upsample]``, ``[connected]``, maxpool, reorg, darknet's batch norm), the cfg <-> native-module bridge
(:mod:`yolo9000.darknet.native`) and the CSV box-table parser (:mod:`yolo9000.data.csv_boxes`), each checked against
a hand-computed value, darknet's documented C behaviour or a documented property (found by mutation testing of these
modules).

Tensors are a few values; tables are tmp_path CSVs next to tiny blank images.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from yolo9000.darknet.cfg import RegionMeta, parse_cfg_text, region_from_section
from yolo9000.darknet.native import NativeSpec, build_native, darknet_detector, match_native, native_cfg_text
from yolo9000.data import IssueLog
from yolo9000.data.csv_boxes import CSVParser
from yolo9000.data.splits import hash_split
from yolo9000.models.darknet19 import Darknet19
from yolo9000.models.layers import DarknetBatchNorm2d, DarknetConnected, DarknetConv, DarknetShortcut
from yolo9000.models.yolov2 import YOLOv2

BOX_HEADER = ["filename", "class", "xmin", "ymin", "xmax", "ymax"]


def _image(path: Path, size: tuple[int, int] = (40, 30)) -> Path:
    """A blank RGB image of (width, height) ``size``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size).save(path)
    return path


def _table(path: Path, header: list[str], rows: list[list[str]], encoding: str = "utf-8") -> Path:
    """A CSV written by the csv module (a header, then the rows)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding=encoding) as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def _boxes(parser: CSVParser, names: list[str]) -> dict[str, list[list[float]]]:
    """image id -> its boxes, under the error policy (any lost row raises)."""
    return {r.image_id: r.boxes.tolist() for r in parser.parse(names, IssueLog("error"))}


# ---------------------------------------------------------------------------------------------- darknet layers
def test_shortcut_same_shape_with_one_unit_weight_still_scales_the_other() -> None:
    """shortcut_cpu's ``out = alpha * out + beta * add`` for equal shapes, with only ONE of alpha, beta equal to 1:
    alpha=1, beta=0.5 on x=2, y=4 gives 4; alpha=0.25, beta=1 gives 4.5."""
    x, y = torch.full((1, 1, 2, 2), 2.0), torch.full((1, 1, 2, 2), 4.0)
    assert torch.equal(DarknetShortcut(alpha=1.0, beta=0.5)(x, y), torch.full((1, 1, 2, 2), 4.0))
    assert torch.equal(DarknetShortcut(alpha=0.25, beta=1.0)(x, y), torch.full((1, 1, 2, 2), 4.5))


def test_shortcut_of_outputs_of_different_batch_sizes_is_refused() -> None:
    """darknet's shortcut asserts one batch: a (2, ...) output and a (1, ...) one of another size are refused, never
    broadcast."""
    with pytest.raises(ValueError, match="cannot add"):
        DarknetShortcut()(torch.zeros(2, 1, 2, 2), torch.zeros(1, 1, 4, 4))


def test_connected_defaults_to_darknet_s_logistic_activation() -> None:
    """``[connected]`` without ``activation=`` is logistic (darknet's parse_connected default): zero weights and
    biases give sigmoid(0) = 0.5 for every output, shape (B, out, 1, 1)."""
    layer = DarknetConnected(4, 3)
    torch.nn.init.zeros_(layer.linear.weight)
    torch.nn.init.zeros_(layer.linear.bias)
    assert torch.equal(layer(torch.ones(2, 1, 2, 2)), torch.full((2, 3, 1, 1), 0.5))


def test_grouped_conv_stores_c_over_groups_weights_per_filter() -> None:
    """``groups=2`` of a 4 -> 6 3x3 conv: darknet's c / groups * n * size * size = 2 * 6 * 9 = 108 weights, and each
    output reads only its group's inputs (a one on input channel 0 leaves the second group's outputs 0)."""
    layer = DarknetConv(4, 6, 3, padding=1, groups=2)
    assert layer.conv.weight.numel() == 108
    torch.nn.init.ones_(layer.conv.weight)
    torch.nn.init.zeros_(layer.conv.bias)
    x = torch.zeros(1, 4, 3, 3)
    x[0, 0, 1, 1] = 1.0
    out = layer(x)[0, :, 1, 1]
    assert out.tolist() == [1.0, 1.0, 1.0, 0.0, 0.0, 0.0]


# ------------------------------------------------------------------------------------ cfg <-> native modules
CFG = Path(__file__).resolve().parents[1] / "data" / "darknet" / "cfg"
CONV_1024 = "batch_normalize=1\nsize=3\nstride=1\npad=1\nfilters=1024\nactivation=leaky\n"


def _edit(name: str, *edits: tuple[str, int, str, str]) -> str:
    """A vendored cfg's text with each ``(kind, n, old, new)`` applied: ``old`` replaced by ``new`` (once) in the
    ``n``-th (0-based) ``[kind]`` section."""
    parts = ("\n" + (CFG / name).read_text()).split("\n[")
    for kind, n, old, new in edits:
        i = [k for k, p in enumerate(parts) if p.startswith(kind + "]")][n]
        assert parts[i].count(old) == 1, (name, kind, n, old)
        parts[i] = parts[i].replace(old, new)
    return "\n[".join(parts)[1:]


def _native(text: str) -> NativeSpec | None:
    return match_native(parse_cfg_text(text))


@pytest.mark.parametrize(
    ("old", "new", "what"),
    [
        ("stride=1", "stride=2", "a strided 3x3 conv"),
        ("activation=leaky", "activation=relu", "another activation"),
        ("batch_normalize=1\n", "", "no batch norm"),
        ("pad=1", "groups=2\npad=1", "a grouped conv"),
        ("pad=1", "padding=2", "padding 2 on a 3x3 conv"),
    ],
)
def test_native_match_needs_darknet19_s_exact_conv(old: str, new: str, what: str) -> None:
    """Darknet-19's convs are 3x3 or 1x1, stride 1, ungrouped, padded size // 2, batch-normalised, leaky: darknet19.cfg
    is a native classifier, and with its 3rd conv changed in any one of these ways it is not."""
    assert _native((CFG / "darknet19.cfg").read_text()) is not None
    assert _native(_edit("darknet19.cfg", ("convolutional", 2, old, new))) is None, what


def test_native_match_needs_darknet_s_maxpool_padding_and_3_channels() -> None:
    """A ``[maxpool] padding=0`` pools odd sizes differently from darknet's default (padding = size - 1, what the
    native module does): not native; nor a network of 1 input channel."""
    assert _native(_edit("darknet19.cfg", ("maxpool", 0, "stride=2", "stride=2\npadding=0"))) is None
    assert _native(_edit("darknet19.cfg", ("net", 0, "channels=3", "channels=1"))) is None


def test_native_classifier_tail_is_only_softmax_or_cost() -> None:
    """After darknet19's 1x1 conv and [avgpool] only [softmax] / [cost] may follow: another conv makes it generic
    (one after the [softmax] is refused: that softmax would change its input); the 1x1 head conv must be linear
    WITHOUT batch norm."""
    tail = "[convolutional]\nfilters=10\nsize=1\nactivation=linear\n\n"
    text = (CFG / "darknet19.cfg").read_text()
    assert _native(text.replace("[softmax]", tail + "[softmax]")) is None
    with pytest.raises(NotImplementedError, match=r"\[softmax\] is supported as the network's output only"):
        _native(text + "\n" + tail)
    bn_head = _edit("darknet19.cfg", ("convolutional", 18, "filters=1000", "batch_normalize=1\nfilters=1000"))
    assert _native(bn_head) is None


@pytest.mark.parametrize(
    "edits",
    [
        [("route", 0, "layers=-9", "layers=-10")],  # the passthrough from another layer than the 13th conv
        [("reorg", 0, "stride=2", "stride=4")],
        # one more 3x3 conv after the fuse conv: a layer the native module does not have
        [("convolutional", 21, "activation=leaky", "activation=leaky\n\n[convolutional]\n" + CONV_1024)],
    ],
)
def test_native_yolov2_needs_the_route_from_the_13th_conv_and_reorg_2(edits: list[tuple[str, int, str, str]]) -> None:
    """yolov2-voc.cfg is a native YOLOv2 (passthrough from the 13th conv, 64 channels, 2 extra convs); a route from
    another layer, a reorg of stride 4 or a conv after the fuse conv is not."""
    voc = _native((CFG / "yolov2-voc.cfg").read_text())
    assert voc is not None and (voc.passthrough, voc.passthrough_channels, voc.extra_convs) == (True, 64, 2)
    assert _native(_edit("yolov2-voc.cfg", *edits)) is None


def _region(text: str) -> RegionMeta:
    return region_from_section(next(s for s in parse_cfg_text(text) if s["type"] == "region"))


def test_native_cfg_text_of_a_yolov2_routes_as_yolov2_voc_and_writes_its_flags() -> None:
    """A YOLOv2 (2 extra convs, passthrough) written as a cfg routes as yolov2-voc.cfg does (``layers=-9`` to the
    13th conv, ``layers=-1,-4`` reorg + deep), its anchors to float32 precision, ``softmax=0`` when asked,
    ``bias_match`` = whether it has anchors; read back it is the same native structure."""
    anchors = [[1.3221, 1.73145], [3.19275, 4.00944]]
    model = YOLOv2(Darknet19(width=0.125), num_classes=2, anchors=anchors)
    text = native_cfg_text(model, size=64, softmax=False)
    assert "[route]\nlayers=-9\n" in text and "[route]\nlayers=-1,-4\n" in text
    region = _region(text)
    assert not region.softmax and region.bias_match
    assert np.allclose(region.anchors, anchors, rtol=1e-6, atol=0)
    assert _region(native_cfg_text(model)).softmax
    assert not _region(native_cfg_text(YOLOv2(Darknet19(width=0.125), num_classes=2))).bias_match
    spec = _native(text)
    assert spec is not None and (spec.width, spec.num_classes, spec.passthrough, spec.extra_convs) == (
        0.125,
        2,
        True,
        2,
    )


@pytest.mark.parametrize(
    ("passthrough", "extra_convs", "fuse"), [(False, 2, True), (False, 0, True), (True, 0, True), (False, 0, False)]
)
def test_native_cfg_text_reads_back_as_the_same_head(passthrough: bool, extra_convs: int, fuse: bool) -> None:
    """Every head shape (yolov2 without passthrough: 3 3x3 convs = 2 extra + fuse; one 3x3 conv = fuse alone; a
    passthrough straight from the backbone; yolo9000's no conv at all) is recognised back from its own cfg with the
    same passthrough / extra convs / fuse."""
    model = YOLOv2(Darknet19(width=0.125), num_classes=2, passthrough=passthrough, extra_convs=extra_convs, fuse=fuse)
    spec = _native(native_cfg_text(model))
    assert spec is not None and (spec.passthrough, spec.extra_convs, spec.fuse) == (passthrough, extra_convs, fuse)


def test_native_cfg_text_without_batch_norm_has_no_batch_normalize() -> None:
    """A network without batch norm (Table 2's YOLO column) has no ``batch_normalize`` line in any conv, the fuse
    conv included."""
    model = YOLOv2(Darknet19(batch_norm=False, width=0.125), num_classes=2)
    assert "batch_normalize" not in native_cfg_text(model)


def test_a_recognised_cfg_builds_with_darknet_s_batch_norm_and_momentum() -> None:
    """A native module built from a cfg normalises as darknet (:class:`DarknetBatchNorm2d`) with darknet's rolling
    momentum 0.01, in every BN."""
    net = build_native(_native(native_cfg_text(YOLOv2(Darknet19(width=0.125), num_classes=2))))
    bns = [m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(isinstance(m, DarknetBatchNorm2d) and m.momentum == 0.01 for m in bns)


def test_darknet_detector_starts_from_darknet_s_init() -> None:
    """``init="darknet"`` (the default): every bias 0 (make_convolutional_layer), so the linear prediction conv's
    bias is all zeros; ``init="torch"`` leaves PyTorch's non-zero uniform biases."""
    text = "[net]\nheight=32\nwidth=32\nchannels=3\n[convolutional]\nfilters=8\nsize=3\nstride=32\npad=1\n"
    text += "activation=leaky\n[convolutional]\nfilters=12\nsize=1\nactivation=linear\n[region]\nclasses=1\nnum=2\n"
    text += "coords=4\nanchors=1,1,2,2\n"
    darknet_init = darknet_detector(cfg_text=text).conv_pairs()[-1][0].bias
    torch_init = darknet_detector(cfg_text=text, init="torch").conv_pairs()[-1][0].bias
    assert darknet_init is not None and torch_init is not None
    assert torch.count_nonzero(darknet_init) == 0 and torch.count_nonzero(torch_init) == 12


# ------------------------------------------------------------------------------------------------ CSV: columns
def test_csv_header_names_ignore_case_spaces_underscores_and_hyphens(tmp_path: Path) -> None:
    """Header names match in any case with spaces, ``_`` and ``-`` ignored: ``File-Name``, ``X-Min``, ``y_max``."""
    _image(tmp_path / "a.jpg")
    _table(
        tmp_path / "t.csv",
        ["File-Name", "Class", "X-Min", "Y Min", "x_max", "Y-MAX"],
        [["a.jpg", "cat", "1", "2", "11", "12"]],
    )
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_a_column_serves_one_role_only(tmp_path: Path) -> None:
    """``name`` is the class column where another column names the file (``image,name,...``); a table whose only
    candidate for both is one ``name`` column has no class column (its boxes are of one class), never the file name
    as its class."""
    _image(tmp_path / "a.jpg")
    _table(
        tmp_path / "t.csv", ["image", "name", "xmin", "ymin", "xmax", "ymax"], [["a.jpg", "cat", "1", "2", "11", "12"]]
    )
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}
    _table(tmp_path / "t.csv", ["name", "xmin", "ymin", "xmax", "ymax"], [["a.jpg", "1", "2", "11", "12"]])
    assert CSVParser(tmp_path, "all").discover_class_names() == ["object"]
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_cells_are_stripped_and_short_rows_read_as_empty(tmp_path: Path) -> None:
    """Spaces around a cell are not part of it (``a.jpg, cat, 1``); a row shorter than the header reads its missing
    cells as empty: ``c.jpg`` alone is an image without objects (a negative), kept with no box."""
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "c.jpg")
    rows = [[" a.jpg", " cat ", " 1", "2 ", " 11 ", "12"], ["c.jpg"]]
    _table(tmp_path / "t.csv", BOX_HEADER, rows)
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]], "c": []}


def test_csv_an_excel_byte_order_mark_is_not_part_of_the_first_header(tmp_path: Path) -> None:
    """A CSV saved with a UTF-8 byte-order mark (Excel's "CSV UTF-8") still has its ``filename`` column."""
    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]], encoding="utf-8-sig")
    assert (tmp_path / "t.csv").read_bytes()[:3] == b"\xef\xbb\xbf"
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


# ------------------------------------------------------------------------------------------------- CSV: files
def test_csv_root_may_be_the_table_itself_in_any_suffix_case(tmp_path: Path) -> None:
    """``root`` naming a ``.CSV`` file is that table (its folder the root), as a ``.csv`` one."""
    _image(tmp_path / "a.jpg")
    table = _table(tmp_path / "BOXES.CSV", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    parser = CSVParser(table, "all")
    assert parser.root == tmp_path
    assert _boxes(parser, ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_files_a_split_set_to_none_is_absent(tmp_path: Path) -> None:
    """``csv_files={train: a.csv, val: b.csv, test: None}`` (a Hydra default left empty): no test table, so test is
    val's table (logged), not an error."""
    _image(tmp_path / "a.jpg")
    _image(tmp_path / "b.jpg")
    _table(tmp_path / "a.csv", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    _table(tmp_path / "b.csv", BOX_HEADER, [["b.jpg", "cat", "3", "4", "13", "14"]])
    files = {"train": "a.csv", "val": "b.csv", "test": None}
    assert sorted(CSVParser(tmp_path, "test", csv_files=files).split_csvs()) == ["train", "val"]
    assert _boxes(CSVParser(tmp_path, "test", csv_files=files), ["cat"]) == {"b": [[3.0, 4.0, 13.0, 14.0]]}


def test_csv_split_folders_the_first_folder_of_a_split_in_name_order_wins(tmp_path: Path) -> None:
    """Two folders naming one split (``val/`` and ``valid/``): the split's table is the first folder's in name order
    (``val``), read alone, never the other one or a mix."""
    for folder, box in (("train", "1"), ("val", "2"), ("valid", "3")):
        _image(tmp_path / folder / f"{folder}.jpg")
        _table(tmp_path / folder / "_annotations.csv", BOX_HEADER, [[f"{folder}.jpg", "cat", box, box, "20", "20"]])
    parser = CSVParser(tmp_path, "val")
    assert parser.split_csvs()["val"] == tmp_path / "val" / "_annotations.csv"
    assert _boxes(parser, ["cat"]) == {"val": [[2.0, 2.0, 20.0, 20.0]]}


def test_csv_a_spreadsheet_s_blank_celled_first_line_is_skipped_before_the_header(tmp_path: Path) -> None:
    """A line of empty cells (``,,,,,`` as spreadsheets write empty rows) is blank: skipped, so the header is the first
    line with a value."""
    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", [""] * 6, [BOX_HEADER, ["a.jpg", "cat", "1", "2", "11", "12"], [""] * 6])
    assert _boxes(CSVParser(tmp_path, "all"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


# ------------------------------------------------------------------------------------- CSV: normalised values
def test_csv_values_of_exactly_0_and_1_are_fractions(tmp_path: Path) -> None:
    """Every value in the CLOSED interval [0, 1] reads as fractions: an Open Images box from the left edge (0) to
    the right one (1) covers the 40 x 30 image's whole width."""
    _image(tmp_path / "a.jpg")
    header = ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"]
    _table(tmp_path / "oi.csv", header, [["a", "/m/x", "0", "1", "0.5", "1"]])
    assert _boxes(CSVParser(tmp_path, "all"), ["/m/x"]) == {"a": [[0.0, 15.0, 40.0, 30.0]]}


def test_csv_a_row_that_is_not_numbers_does_not_decide_the_reading(tmp_path: Path) -> None:
    """The fractions-or-pixels decision looks at every row that reads as numbers: a corrupted first row (reported,
    its box dropped) leaves the others, all in [0, 1], read as fractions."""
    _image(tmp_path / "a.jpg")
    header = ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"]
    _table(
        tmp_path / "oi.csv",
        header,
        [["a", "/m/x", "n/a", "0.5", "0.1", "0.2"], ["a", "/m/x", "0.25", "0.5", "0.1", "0.2"]],
    )
    issues = IssueLog("skip")
    (rec,) = CSVParser(tmp_path, "all").parse(["/m/x"], issues)
    assert np.allclose(rec.boxes, [[10.0, 3.0, 20.0, 6.0]])
    assert issues.report_dict()["a box value is not a number"]["count"] == 1


# ------------------------------------------------------------------------------------------------ CSV: classes
def test_csv_discovered_class_names_are_sorted_and_never_empty(tmp_path: Path) -> None:
    """Without given names: every class the table names, sorted (eight names, so an unordered set cannot pass by
    chance), without the empty class of a negative image's row."""
    names = ["kiwi", "apple", "fig", "date", "lime", "banana", "cherry", "grape"]
    rows = [[f"{i}.jpg", n, "1", "1", "5", "5"] for i, n in enumerate(names)] + [["neg.jpg", "", "", "", "", ""]]
    _table(tmp_path / "t.csv", BOX_HEADER, rows)
    assert CSVParser(tmp_path, "all").discover_class_names() == sorted(names)


# ------------------------------------------------------------------------------------------------- CSV: splits
def test_csv_split_column_value_naming_the_asked_split_itself(tmp_path: Path) -> None:
    """A split column may hold a union's own name (VOC's ``trainval``): asking for ``trainval`` picks those rows (as
    well as any ``train`` / ``val`` ones), ``test`` only its own."""
    rows = [["a.jpg", "cat", "1", "1", "5", "5", "trainval"], ["b.jpg", "cat", "1", "1", "5", "5", "test"]]
    rows.append(["c.jpg", "cat", "1", "1", "5", "5", "train"])
    for r in rows:
        _image(tmp_path / r[0])
    _table(tmp_path / "t.csv", [*BOX_HEADER, "split"], rows)
    assert sorted(_boxes(CSVParser(tmp_path, "trainval"), ["cat"])) == ["a", "c"]
    assert sorted(_boxes(CSVParser(tmp_path, "test"), ["cat"])) == ["b"]


def test_csv_hash_split_without_a_test_fraction_makes_test_the_val_split(tmp_path: Path) -> None:
    """Fractions without ``test`` (``{train: 0.5, val: 0.5}``): the test split is the val split (module docstring: a
    missing test split is the val split), and train and val share out every image exactly once."""
    rows = [[f"{i}.jpg", "cat", "1", "1", "5", "5"] for i in range(12)]
    for r in rows:
        _image(tmp_path / r[0], (8, 8))
    _table(tmp_path / "t.csv", BOX_HEADER, rows)
    frac = {"train": 0.5, "val": 0.5}
    ids = {s: sorted(_boxes(CSVParser(tmp_path, s, split_fractions=frac), ["cat"])) for s in ("train", "val", "test")}
    assert ids["test"] == ids["val"]
    assert sorted(ids["train"] + ids["val"]) == sorted(str(i) for i in range(12))
    # the split is hash_split's of the file names at seed 0 (the default; None too)
    want = sorted(Path(f).stem for f in hash_split([r[0] for r in rows], "val", frac, 0))
    assert ids["val"] == want
    # a fraction keyed by an alias (``valid``) is val's
    alias = CSVParser(tmp_path, "val", split_fractions={"train": 0.5, "valid": 0.5}, split_seed=None)
    assert sorted(_boxes(alias, ["cat"])) == want


def test_csv_split_all_of_a_table_with_a_split_column_is_every_image(tmp_path: Path) -> None:
    """``split="all"`` (and None) reads every image of a one-table dataset, whatever its split column says."""
    rows = [["a.jpg", "cat", "1", "1", "5", "5", "train"], ["b.jpg", "cat", "1", "1", "5", "5", "valid"]]
    for r in rows:
        _image(tmp_path / r[0])
    _table(tmp_path / "t.csv", [*BOX_HEADER, "subset"], rows)
    assert sorted(_boxes(CSVParser(tmp_path, "all"), ["cat"])) == ["a", "b"]
    assert sorted(_boxes(CSVParser(tmp_path, None), ["cat"])) == ["a", "b"]


def test_csv_without_a_val_table_train_and_val_are_disjoint_hash_shares_of_train(tmp_path: Path) -> None:
    """Split folders with only ``train/`` (a Roboflow export without a valid split): val is a hash share of train's
    table and train the rest of it (as the YOLO-txt parser does), so no validation image is trained on; together they
    are every image once; test is val."""
    rows = [[f"{i}.jpg", "cat", "1", "1", "5", "5"] for i in range(16)]
    for r in rows:
        _image(tmp_path / "train" / r[0], (8, 8))
    _table(tmp_path / "train" / "_annotations.csv", BOX_HEADER, rows)
    ids = {s: sorted(_boxes(CSVParser(tmp_path, s), ["cat"])) for s in ("train", "val", "test")}
    assert ids["val"] and ids["train"]
    assert not set(ids["train"]) & set(ids["val"])
    assert sorted(ids["train"] + ids["val"]) == sorted(str(i) for i in range(16))
    assert ids["test"] == ids["val"]


# ------------------------------------------------------------------------------------------------- CSV: images
def test_csv_an_image_id_without_suffix_finds_a_png_under_images(tmp_path: Path) -> None:
    """An ImageID names its file without the suffix: ``p`` is ``images/p.png`` when that is the file there."""
    _image(tmp_path / "images" / "p.png", (50, 20))
    _table(
        tmp_path / "t.csv",
        ["ImageID", "LabelName", "XMin", "XMax", "YMin", "YMax"],
        [["p", "/m/x", "0.2", "0.4", "0.5", "1"]],
    )
    (rec,) = CSVParser(tmp_path, "all").parse(["/m/x"], IssueLog("error"))
    assert rec.image_path == tmp_path / "images" / "p.png"
    assert np.allclose(rec.boxes, [[10.0, 10.0, 20.0, 20.0]])


def test_csv_a_row_with_a_class_but_no_box_or_a_box_but_no_class_is_reported(tmp_path: Path) -> None:
    """Only a row with neither class nor box is a negative image; a class without its box, or a box without its class,
    loses a box: reported (raising under the error policy), never skipped silently."""
    from yolo9000.data import DataError

    _image(tmp_path / "a.jpg")
    _table(tmp_path / "t.csv", BOX_HEADER, [["a.jpg", "cat", "", "", "", ""]])
    with pytest.raises(DataError, match="a class without a box"):
        CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    _table(tmp_path / "t.csv", BOX_HEADER, [["a.jpg", "", "1", "2", "11", "12"]])
    with pytest.raises(DataError, match="unknown class ''"):
        CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))


def test_csv_a_folder_s_preferred_table_name_matches_in_any_case(tmp_path: Path) -> None:
    """A folder holding ``_Annotations.CSV`` and another CSV: the preferred name (any case) is its table, no
    ambiguity error."""
    _image(tmp_path / "train" / "a.jpg")
    _table(tmp_path / "train" / "_Annotations.CSV", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    _table(tmp_path / "train" / "notes.csv", ["note"], [["hello"]])
    assert _boxes(CSVParser(tmp_path, "train"), ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}


def test_csv_two_unnamed_tables_in_a_folder_are_ambiguous(tmp_path: Path) -> None:
    """Two CSVs, neither with a preferred name: refused naming both (set data.csv_file), never one picked silently."""
    _table(tmp_path / "a.csv", BOX_HEADER, [])
    _table(tmp_path / "b.csv", BOX_HEADER, [])
    with pytest.raises(ValueError, match=r"several CSV files in .*: a\.csv, b\.csv"):
        CSVParser(tmp_path, "all").single_csv()


def test_csv_a_width_column_without_a_height_column_reads_the_image_header(tmp_path: Path) -> None:
    """The record's size comes from the table only where it has BOTH width and height columns; a lone ``width``
    column leaves the size to the image header (40 x 30)."""
    _image(tmp_path / "a.jpg", (40, 30))
    _table(tmp_path / "t.csv", [*BOX_HEADER, "width"], [["a.jpg", "cat", "1", "2", "11", "12", "999"]])
    (rec,) = CSVParser(tmp_path, "all").parse(["cat"], IssueLog("error"))
    assert (rec.width, rec.height) == (40, 30)


def test_csv_image_dir_may_name_one_folder_a_split(tmp_path: Path) -> None:
    """Open Images' layout: a CSV a split and the images of each in its own folder (train/, validation/):
    ``image_dir={train: train, val: validation}`` gives each split's parser its folder (a mapping failed with
    "unsupported operand type(s) for /"); a split the mapping leaves out looks in the default places."""
    _image(tmp_path / "train" / "a.jpg")
    _image(tmp_path / "validation" / "b.jpg")
    _table(tmp_path / "train-boxes.csv", BOX_HEADER, [["a.jpg", "cat", "1", "2", "11", "12"]])
    _table(tmp_path / "val-boxes.csv", BOX_HEADER, [["b.jpg", "cat", "3", "4", "13", "14"]])
    files = {"train": "train-boxes.csv", "validation": "val-boxes.csv"}
    dirs = {"train": "train", "validation": "validation"}
    train = CSVParser(tmp_path, "train", csv_files=files, image_dir=dirs)
    val = CSVParser(tmp_path, "val", csv_files=files, image_dir=dirs)
    assert train.image_dir == tmp_path / "train" and val.image_dir == tmp_path / "validation"
    assert _boxes(train, ["cat"]) == {"a": [[1.0, 2.0, 11.0, 12.0]]}
    assert _boxes(val, ["cat"]) == {"b": [[3.0, 4.0, 13.0, 14.0]]}
    assert CSVParser(tmp_path, "test", csv_files=files, image_dir=dirs).image_dir is None


def test_a_split_whose_every_image_is_missing_says_why(tmp_path: Path) -> None:
    """Every image of a CSV missing: the run ended with "no images (CSVParser(...))", the reasons logged earlier
    cut off after 20 lines; the error now counts the reasons and names the first file and where it was looked for."""
    from yolo9000.data.datamodule import DetectionDataModule

    _table(tmp_path / "boxes.csv", BOX_HEADER, [[f"{k}.jpg", "cat", "1", "2", "11", "12"] for k in range(3)])
    parser = {"_target_": "yolo9000.data.csv_boxes.CSVParser", "root": str(tmp_path), "csv_file": "boxes.csv"}
    dm = DetectionDataModule(
        train={**parser, "split": "all"}, class_names=["cat"], on_error="skip", num_workers=0, img_size=64
    )
    with pytest.raises(ValueError, match=r"data.train: no images .*every image was skipped: 3 x .*\(first: .*0\.jpg: "):
        dm.setup("fit")
