"""darknet interop: cfg parsing, parameter counts, darknet's batch norm, .weights I/O, native vs generic networks,
and the convert.py round trip. Tiny cfgs / widths only; no downloads (the official .weights are not used)."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from conftest import load_script, reorg_fixture_shape
from yolo9000.api import Detector
from yolo9000.build import instantiate_module
from yolo9000.checkpoints import (
    DARKNET_SEARCH,
    WORDTREE_DIR,
    checkpoint_to_darknet,
    darknet_to_checkpoint,
    load_module,
    model_yaml,
)
from yolo9000.darknet import (
    SUPPORTED,
    DarknetNet,
    build_darknet,
    conv_load_options,
    count_params,
    darknet_convs,
    layer_specs,
    load_darknet,
    load_weights,
    match_native,
    parse_cfg,
    parse_cfg_text,
    read_header,
    region_meta,
    save_weights,
)
from yolo9000.darknet.cfg import trained_net_lines
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier, scaled
from yolo9000.models.layers import DarknetBatchNorm2d
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules.detector import DetectorModule
from yolo9000.wordtree import WordTree

ROOT = Path(__file__).resolve().parents[1]
CFG = ROOT / "data" / "darknet" / "cfg"
FIX = Path(__file__).parent / "fixtures"
ALL_CFGS = sorted(p.name for p in CFG.glob("*.cfg"))

# darknet's own parameter counts (conv weights + biases + BN scales), docs/darknet-fidelity.md
DARKNET_PARAMS = {
    "darknet19.cfg": 20_842_376,
    "yolov2-voc.cfg": 50_655_389,
    "yolov2.cfg": 50_962_889,
    "yolov2-tiny-voc.cfg": 15_861_773,
    "yolo9000.cfg": 48_793_101,
}


# ---------------------------------------------------------------------------------------------------- helpers
def scaled_cfg(tmp_path: Path, name: str, width: float, classes: int, route: str | None = None) -> Path:
    """A vendored cfg at a channel width (``scaled``), its last conv resized to ``classes`` (classifier) or
    num * (5 + classes) (detector, ``[region] classes`` changed too)."""
    text = (CFG / name).read_text()
    text = re.sub(r"filters=(\d+)", lambda m: f"filters={scaled(int(m.group(1)), width)}", text)
    last = list(re.finditer(r"filters=\d+", text))[-1]
    if "[region]" in text:
        num = int(re.search(r"num=(\d+)", text).group(1))  # type: ignore[union-attr]
        text = text[: last.start()] + f"filters={num * (5 + classes)}" + text[last.end() :]
        text = re.sub(r"classes=\d+", f"classes={classes}", text)
    else:
        text = text[: last.start()] + f"filters={classes}" + text[last.end() :]
    if route is not None:
        text = text.replace("layers=-1,-4", route)
    tag = "" if route is None else "_route" + re.sub(r"\W", "", route)
    out = tmp_path / f"{Path(name).stem}_w{width}_c{classes}{tag}.cfg"
    out.write_text(text)
    return out


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random values in every darknet-stored tensor (positive variances) so nothing is a default."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for conv, bn in darknet_convs(model):
            fan_in = conv.weight[0].numel()
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * (2.0 / fan_in) ** 0.5)
            if conv.bias is not None:
                conv.bias.copy_(torch.randn(conv.bias.shape, generator=g) * 0.1)
            if bn is not None:
                n = bn.num_features
                bn.weight.copy_(1 + 0.1 * torch.randn(n, generator=g))
                bn.bias.copy_(0.1 * torch.randn(n, generator=g))
                bn.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                bn.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model


TINY_CFG = """[net]
# a hand-written classifier: conv-BN-leaky, maxpool, conv-BN-leaky, linear conv, avgpool, softmax
batch=1
 height=16
width = 16
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[maxpool]
size=2
stride=2

; a second comment style
[conv]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky

[convolutional]
filters=10
size=1
stride=1
pad=1
activation=linear

[avgpool]

[softmax]
groups=1

[cost]
"""
# floats per conv layer of TINY_CFG: biases + (scales, mean, var) + weights
TINY_SIZES = [8 * 4 + 8 * 3 * 9, 16 * 4 + 16 * 8 * 9, 10 + 10 * 16]


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Path:
    p = tmp_path / "tiny.cfg"
    p.write_text(TINY_CFG)
    return p


def same_tensors(a: list[list[torch.Tensor]], b: list[list[torch.Tensor]]) -> bool:
    """Two :func:`conv_tensors` lists hold equal tensors, layer for layer."""
    if len(a) != len(b) or any(len(x) != len(y) for x, y in zip(a, b, strict=True)):
        return False
    return all(torch.equal(t, u) for x, y in zip(a, b, strict=True) for t, u in zip(x, y, strict=True))


def conv_tensors(model: nn.Module) -> list[list[torch.Tensor]]:
    out = []
    for conv, bn in darknet_convs(model):
        ts = [bn.bias, bn.weight, bn.running_mean, bn.running_var] if bn is not None else [conv.bias]
        out.append([t.detach().clone() for t in [*ts, conv.weight]])
    return out


# ----------------------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize("name", ALL_CFGS)
def test_parse_every_vendored_cfg(name: str) -> None:
    sections = parse_cfg(CFG / name)
    assert sections[0]["type"] == "net"
    assert all(s["type"] in SUPPORTED for s in sections[1:])
    specs = layer_specs(sections)
    n_conv = sum(s.type == "convolutional" for s in specs)
    expected = {
        "darknet19.cfg": 19,
        "darknet19_448.cfg": 19,
        "darknet9000.cfg": 19,
        "yolov2-voc.cfg": 23,
        "yolov2.cfg": 23,
        "yolo9000.cfg": 19,
        "yolov2-tiny-voc.cfg": 9,
        "yolov2-tiny.cfg": 9,
    }[name]
    assert n_conv == expected


def test_parse_whitespace_comments_aliases(tiny_cfg: Path) -> None:
    sections = parse_cfg(tiny_cfg)
    assert [s["type"] for s in sections] == [
        "net", "convolutional", "maxpool", "convolutional", "convolutional", "avgpool", "softmax", "cost",
    ]  # fmt: skip
    assert sections[0]["options"] == {"batch": "1", "height": "16", "width": "16", "channels": "3"}
    assert sections[3]["line"] == 21  # the [conv] alias, after the ';' comment
    anchors = parse_cfg(CFG / "yolov2-voc.cfg")[-1]["options"]["anchors"]
    assert anchors.startswith("1.3221,1.73145,3.19275")  # "anchors =  1.3221, 1.73145, ..." stripped


@pytest.mark.parametrize(
    ("text", "error", "line"),
    [
        ("[net]\nchannels=3\nnot an option\n", ValueError, 3),
        ("# comment\nchannels=3\n[net]\n", ValueError, 2),
        ("\n[convolutional]\nfilters=3\n", ValueError, 2),
        ("[net]\n[convolutional]\nfilters=abc\n", ValueError, 3),
        ("[net]\n[convolutional\n", ValueError, 2),
        ("[net]\nchannels=3\n\n[shortcut]\nfrom=-3\n", ValueError, 5),
        ("[net]\n[convolutional]\nfilters=4\n[shortcut]\n", ValueError, 4),
        ("[net]\n[convolutional]\n[convolutional]\n[shortcut]\nfrom=-1,-2\n", NotImplementedError, 5),
        ("[net]\n[convolutional]\n[shortcut]\nfrom=-1\nweights_type=per_feature\n", NotImplementedError, 5),
        ("[net]\n[upsample]\nstride=0\n", ValueError, 3),
        ("[net]\n[convolutional]\n[connected]\noutput=4\n", ValueError, 3),
        ("[net]\nheight=8\nwidth=8\n[connected]\noutput=4\nactivation=swish\n", NotImplementedError, 6),
        ("[net]\n[local]\nfilters=4\n", NotImplementedError, 2),
        ("[net]\n[convolutional]\nfilters=4\nactivation=leaky\n[yolo]\n", NotImplementedError, 5),
        ("[net]\n[banana]\n", NotImplementedError, 2),
        ("[net]\n[convolutional]\nactivation=mish\n", NotImplementedError, 3),
        ("[net]\n[route]\nlayers=-1\n", ValueError, 3),
        ("[net]\n[convolutional]\nfilters=8\n[region]\nclasses=2\nnum=1\n", ValueError, 4),
        # options of later darknets that change the computation: an error, not a different network built silently
        ("[net]\n[convolutional]\nfilters=4\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n", NotImplementedError, 6),
        ("[net]\n[maxpool]\nsize=2\nstride=2\nmaxpool_depth=1\n", NotImplementedError, 5),
        ("[net]\n[convolutional]\nfilters=4\ndilation=2\n", NotImplementedError, 4),
        # [region] variants the decode does not implement: coords != 4, not last
        (
            "[net]\n[convolutional]\nfilters=8\n[region]\nclasses=2\nnum=1\ncoords=5\nsoftmax=1\n",
            NotImplementedError,
            7,
        ),
        (
            "[net]\n[convolutional]\nfilters=7\n[region]\nclasses=2\nnum=1\nsoftmax=1\n[dropout]\n",
            NotImplementedError,
            4,
        ),
        ("[net]\n[reorg]\nstride=0\n", ValueError, 2),
    ],
)
def test_cfg_errors_name_file_and_line(tmp_path: Path, text: str, error: type, line: int) -> None:
    p = tmp_path / "bad.cfg"
    p.write_text(text)
    with pytest.raises(error, match=re.escape(f"{p}:{line}")):
        layer_specs(parse_cfg(p))


def test_cfg_unused_options_are_reported_and_route_groups_1_accepted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "typo.cfg"
    p.write_text("[net]\n[convolutional]\nfiltres=8\nfilters=4\n[route]\nlayers=-1\ngroups=1\n")
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        specs = layer_specs(parse_cfg(p))
    assert [s.out_channels for s in specs] == [4, 4]  # the typo changes nothing; groups=1 is the whole route
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and f"{p}:3" in warned[0] and "filtres=8" in warned[0]


def test_cfg_unused_option_is_reported_once_per_load(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # from_darknet builds a cfg's layers three times (checkpoint, module, network): darknet says "Unused field" once
    p = tmp_path / "unused.cfg"
    p.write_text(
        "[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
        "filtres=99\n[region]\nanchors=1,1\nclasses=2\nnum=1\nsoftmax=1\nfoo=bar\n"
    )
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        Detector.from_darknet(p, device="cpu")
        layer_specs(parse_cfg(p))
    warned = [r.getMessage() for r in caplog.records if "unused" in r.getMessage()]
    assert len(warned) == 2, warned
    assert f"{p}:9: [convolutional] option filtres=99" in warned[0] and f"{p}:15: [region] option foo=bar" in warned[1]


def test_trained_net_lines_note_names_the_policy_the_cfg_keeps() -> None:
    """Steps as fractions of the run cannot be written as darknet's iterations: the note said "the steps below are
    the cfg's" also for a cfg whose policy is poly or exp (no steps below; darknet trains that policy). It names the
    policy the exported cfg keeps."""
    base = "[net]\nbatch=2\n{}\n[convolutional]\nfilters=2\n"
    hparams = {"lr_policy": "steps", "steps": [0.5], "scales": [0.1]}
    for policy in ("policy=poly", "policy=exp\ngamma=.9", "policy=steps\nsteps=100\nscales=.1"):
        lines, notes = trained_net_lines(hparams, parse_cfg_text(base.format(policy), "x.cfg"))
        assert lines == {} and len(notes) == 1, (policy, lines, notes)
        assert notes[0].startswith("# trained with steps at fractions [0.5] of the run"), notes
        assert f"the cfg's {policy.splitlines()[0]} below stays as written" in notes[0], notes


def test_generic_net_route_of_different_sizes_names_the_line(tmp_path: Path) -> None:
    p = tmp_path / "route.cfg"
    p.write_text("[net]\nchannels=3\n[convolutional]\nfilters=2\n[maxpool]\nsize=2\nstride=2\n[route]\nlayers=-1,-2\n")
    with pytest.raises(ValueError, match=re.escape(f"{p}:8") + r".*different sizes"):
        DarknetNet(parse_cfg(p))(torch.zeros(1, 3, 8, 8))


def test_generic_detector_with_a_1x1_grid_keeps_the_region_layout(tmp_path: Path) -> None:
    p = tmp_path / "avg.cfg"
    p.write_text(
        "[net]\nchannels=3\n[convolutional]\nfilters=7\nsize=1\nactivation=linear\n[avgpool]\n"
        "[region]\nanchors=1,1\nclasses=2\nnum=1\nsoftmax=1\n"
    )
    assert DarknetNet(parse_cfg(p))(torch.zeros(2, 3, 8, 8)).shape == (2, 7, 1, 1)  # not flattened to (2, 7)


def test_one_channel_detector_cfg_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "grey.cfg"
    p.write_text(
        "[net]\nchannels=1\n[convolutional]\nfilters=7\nsize=1\n[region]\nanchors=1,1\nclasses=2\nnum=1\nsoftmax=1\n"
    )
    with pytest.raises(NotImplementedError, match=r"channels=1"):
        darknet_to_checkpoint(p)


# ------------------------------------------------------------------------------------------- parameter counts
@pytest.mark.parametrize("name", sorted(DARKNET_PARAMS))
def test_count_params_matches_darknet(name: str) -> None:
    assert count_params(CFG / name) == DARKNET_PARAMS[name]


EXPECTED_TYPE = {
    "darknet19.cfg": Darknet19Classifier,
    "darknet19_448.cfg": Darknet19Classifier,
    "darknet9000.cfg": Darknet19Classifier,
    "yolov2-voc.cfg": YOLOv2,
    "yolov2.cfg": YOLOv2,
    "yolo9000.cfg": YOLOv2,
    "yolov2-tiny-voc.cfg": DarknetNet,
    "yolov2-tiny.cfg": DarknetNet,
}


@pytest.mark.parametrize("name", ALL_CFGS)
def test_built_modules_match_cfg_param_count(name: str) -> None:
    with torch.device("meta"):  # full-size modules without allocating them
        native = build_darknet(CFG / name)
        generic = build_darknet(CFG / name, native=False)
    assert type(native) is EXPECTED_TYPE[name]
    n_cfg = count_params(CFG / name)
    assert sum(p.numel() for p in native.parameters()) == n_cfg
    assert sum(p.numel() for p in generic.parameters()) == n_cfg
    assert len(darknet_convs(native)) == len(darknet_convs(generic))
    if not isinstance(native, DarknetNet):
        assert all(isinstance(m, DarknetBatchNorm2d) for m in native.modules() if isinstance(m, nn.BatchNorm2d))


def test_match_native_structures() -> None:
    voc = match_native(CFG / "yolov2-voc.cfg")
    assert voc is not None and voc.kind == "detector" and voc.width == 1.0 and voc.num_classes == 20
    assert (voc.passthrough, voc.passthrough_channels, voc.extra_convs, voc.fuse) == (True, 64, 2, True)
    coco = match_native(CFG / "yolov2.cfg")
    assert coco is not None and coco.num_classes == 80 and coco.passthrough
    nine = match_native(CFG / "yolo9000.cfg")
    assert nine is not None and nine.num_classes == 9418 and len(nine.anchors or []) == 3
    assert (nine.passthrough, nine.extra_convs, nine.fuse) == (False, 0, False)
    for name, classes in [("darknet19.cfg", 1000), ("darknet19_448.cfg", 1000), ("darknet9000.cfg", 9418)]:
        spec = match_native(CFG / name)
        assert spec is not None and spec.kind == "classifier" and spec.num_classes == classes
    assert match_native(CFG / "yolov2-tiny-voc.cfg") is None
    assert match_native(CFG / "yolov2-tiny.cfg") is None


def test_region_meta() -> None:
    voc = region_meta(CFG / "yolov2-voc.cfg")
    assert voc is not None
    assert voc.anchors.shape == (5, 2) and voc.anchors[0].tolist() == pytest.approx([1.3221, 1.73145])
    assert (voc.classes, voc.num, voc.coords, voc.thresh, voc.jitter) == (20, 5, 4, 0.6, 0.3)
    assert voc.rescore and voc.bias_match and voc.random and voc.softmax and voc.absolute
    assert (voc.object_scale, voc.noobject_scale, voc.class_scale, voc.coord_scale) == (5, 1, 1, 1)
    assert voc.tree is None
    nine = region_meta(CFG / "yolo9000.cfg", search=DARKNET_SEARCH)  # the application's vendored data folders
    assert nine is not None and nine.anchors.tolist()[2] == pytest.approx([9.22725, 9.61974])
    assert nine.tree == WORDTREE_DIR / "9k.tree" and nine.map == WORDTREE_DIR / "coco9k.map"
    assert nine.jitter == pytest.approx(0.2)
    assert len(nine.tree.read_text().splitlines()) == nine.classes == 9418
    assert region_meta(CFG / "darknet19.cfg") is None


def test_region_data_files_resolve_from_cfg_folder_and_search(tmp_path: Path) -> None:
    """``tree=`` / ``map=`` resolve relative to the cfg's folder, then the caller's search folders (by path, then by
    file name); the library itself knows no repository layout."""
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "data").mkdir()
    (tmp_path / "cfg" / "data" / "t.tree").write_text("a -1\n")
    (tmp_path / "vendored").mkdir()
    (tmp_path / "vendored" / "m.map").write_text("0\n")
    cfg = tmp_path / "cfg" / "r.cfg"
    cfg.write_text("[net]\nchannels=6\n[region]\nclasses=1\nnum=1\ntree=data/t.tree\nmap=data/m.map\n")
    meta = region_meta(cfg, search=[tmp_path / "vendored"])
    assert meta is not None
    assert meta.tree == tmp_path / "cfg" / "data" / "t.tree" and meta.map == tmp_path / "vendored" / "m.map"
    unresolved = region_meta(cfg)
    assert unresolved is not None and unresolved.map == Path("data/m.map")


def test_darknet_package_imports_no_application_layer() -> None:
    """yolo9000.darknet is a library: importing it pulls in neither Lightning nor Hydra / OmegaConf."""
    code = (
        "import sys, yolo9000.darknet; "
        "bad = [m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning', 'hydra', 'omegaconf'))]; "
        "assert not bad, bad"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


# ---------------------------------------------------------------------------------------------- batch norm
def test_darknet_batchnorm_eval_formula() -> None:
    bn = DarknetBatchNorm2d(3).eval()
    mean, var = np.array([0.5, -1.0, 0.0]), np.array([4.0, 0.25, 1e-10])
    w, b = np.array([1.5, -2.0, 0.5]), np.array([0.1, 0.2, -0.3])
    with torch.no_grad():
        for t, v in [(bn.running_mean, mean), (bn.running_var, var), (bn.weight, w), (bn.bias, b)]:
            t.copy_(torch.from_numpy(v))
    x = torch.randn(2, 3, 4, 5)
    ref = (x.double().numpy() - mean[:, None, None]) / (np.sqrt(var)[:, None, None] + 1e-6) * w[:, None, None]
    ref += b[:, None, None]
    np.testing.assert_allclose(bn(x).detach().numpy(), ref, rtol=1e-5, atol=1e-5)
    torch_bn = nn.BatchNorm2d(3).eval()
    torch_bn.load_state_dict(bn.state_dict())  # same keys
    assert not torch.allclose(torch_bn(x)[:, 2], bn(x)[:, 2])  # tiny variance: the formulas differ


def test_darknet_batchnorm_training_uses_unbiased_batch_stats() -> None:
    bn = DarknetBatchNorm2d(3, momentum=0.01).train()
    x = torch.randn(4, 3, 5, 5) * 3 + 1
    y = bn(x)
    xn = x.double().numpy()
    m = xn.mean(axis=(0, 2, 3))
    v = xn.var(axis=(0, 2, 3), ddof=1)  # darknet's variance_cpu divides by B*H*W - 1
    ref = (xn - m[:, None, None]) / (np.sqrt(v)[:, None, None] + 1e-6)
    np.testing.assert_allclose(y.detach().numpy(), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.01 * m, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.99 + 0.01 * v, rtol=1e-5)
    assert int(bn.num_batches_tracked) == 1


def test_bn_style_threading() -> None:
    def bns(m: nn.Module) -> list[nn.Module]:
        return [x for x in m.modules() if isinstance(x, nn.BatchNorm2d)]

    dark = YOLOv2(Darknet19(width=0.125, bn_style="darknet"), num_classes=3, anchors=[[1, 1]])
    plain = YOLOv2(Darknet19(width=0.125), num_classes=3, anchors=[[1, 1]])
    assert bns(dark) and all(isinstance(b, DarknetBatchNorm2d) for b in bns(dark))
    assert not any(isinstance(b, DarknetBatchNorm2d) for b in bns(plain))
    assert len(bns(dark)) == len(bns(plain)) == 18 + 2 + 1 + 1
    assert dark.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(dark.state_dict())
    with pytest.raises(ValueError, match="bn_style"):
        Darknet19(width=0.125, bn_style="caffe")  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------- .weights I/O
def expected_file(model: nn.Module, header: bytes) -> bytes:
    """The .weights bytes written independently: per conv biases, [scales, mean, var], weights, float32 LE."""
    parts = [header]
    for ts in conv_tensors(model):
        parts += [t.numpy().astype("<f4").tobytes() for t in ts]
    return b"".join(parts)


def test_weights_round_trip_bit_exact(tiny_cfg: Path, tmp_path: Path) -> None:
    src = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=1)
    a, b = tmp_path / "a.weights", tmp_path / "b.weights"
    seen = 2**40 + 7  # needs the int64 field of version 0.2
    save_weights(src, a, seen=seen)
    header = np.array([0, 2, 0], "<i4").tobytes() + np.array([seen], "<i8").tobytes()
    assert a.read_bytes() == expected_file(src, header)
    assert len(a.read_bytes()) == 20 + 4 * sum(TINY_SIZES)
    dst = DarknetNet(parse_cfg(tiny_cfg))
    info = load_weights(dst, a)
    assert (info.major, info.minor, info.revision, info.seen) == (0, 2, 0, seen)
    assert (info.layers_loaded, info.layers_total) == (3, 3)
    for ts, us in zip(conv_tensors(src), conv_tensors(dst), strict=True):
        assert all(torch.equal(t, u) for t, u in zip(ts, us, strict=True))
    save_weights(dst, b, seen=info.seen)
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(("major", "minor", "seen_dtype"), [(0, 1, "<i4"), (0, 2, "<i8"), (1, 0, "<i8"), (0, 0, "<i4")])
def test_header_versions(tiny_cfg: Path, tmp_path: Path, major: int, minor: int, seen_dtype: str) -> None:
    src = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=2)
    header = np.array([major, minor, 3], "<i4").tobytes() + np.array([12345], seen_dtype).tobytes()
    path = tmp_path / "v.weights"
    path.write_bytes(expected_file(src, header))  # written by hand, not by save_weights
    dst = DarknetNet(parse_cfg(tiny_cfg))
    info = load_weights(dst, path)
    assert (info.major, info.minor, info.revision, info.seen) == (major, minor, 3, 12345)
    for ts, us in zip(conv_tensors(src), conv_tensors(dst), strict=True):
        assert all(torch.equal(t, u) for t, u in zip(ts, us, strict=True))
    out = tmp_path / "w.weights"
    save_weights(dst, out, seen=12345, major=major, minor=minor, revision=3)
    assert out.read_bytes() == path.read_bytes()


def test_unusable_values_are_named_at_load(tiny_cfg: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """nan / inf floats and negative rolling variances load as darknet loads them (the network then outputs nan),
    with a warning naming the file and the conv layers; a clean file gives none."""
    src = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=4)
    clean = tmp_path / "clean.weights"
    save_weights(src, clean)
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), clean)
    assert "nan" not in caplog.text
    convs = darknet_convs(src)
    with torch.no_grad():
        convs[-1][0].weight.view(-1)[3] = float("nan")
        convs[-1][0].bias.view(-1)[0] = float("inf") if convs[-1][0].bias is not None else float("nan")
        bn_layers = [i for i, (_, bn) in enumerate(convs) if bn is not None]
        convs[bn_layers[0]][1].running_var[1] = -0.5
    bad = tmp_path / "bad.weights"
    save_weights(src, bad)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        dst = DarknetNet(parse_cfg(tiny_cfg))
        load_weights(dst, bad)
    last = len(convs) - 1
    assert f"{bad}: 2 nan / inf values, in conv layers [{last}]: the network outputs nan" in caplog.text
    assert f"{bad}: negative rolling variances in conv layers [{bn_layers[0]}]" in caplog.text
    assert torch.isnan(darknet_convs(dst)[-1][0].weight).any()  # loaded as they are


def test_partial_file_fills_first_layers(tiny_cfg: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=3)
    path = tmp_path / "tiny.conv.2"
    save_weights(src, path, cutoff=2)
    assert path.stat().st_size == 20 + 4 * sum(TINY_SIZES[:2])
    dst = DarknetNet(parse_cfg(tiny_cfg))
    with torch.no_grad():
        for t in dst.state_dict().values():
            if t.is_floating_point():
                t.fill_(7.0)
    with caplog.at_level(logging.INFO, logger="yolo9000"):
        info = load_weights(dst, path)
    assert (info.layers_loaded, info.layers_total) == (2, 3)
    assert "filled 2 of 3 conv layers" in caplog.text
    got, want = conv_tensors(dst), conv_tensors(src)
    for i in range(2):
        assert all(torch.equal(t, u) for t, u in zip(got[i], want[i], strict=True))
    assert all(bool((t == 7.0).all()) for t in got[2])


def test_backbone_conv23_file_fills_a_detector_backbone(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """darknet's ``darknet19_448.conv.23`` (the first 23 layers = 18 convs) initialises yolov2-voc's backbone."""
    cls_cfg = scaled_cfg(tmp_path, "darknet19_448.cfg", 0.125, 7)
    classifier = randomize(build_darknet(cls_cfg), seed=12)
    part = tmp_path / "darknet19_448.conv.23"
    save_weights(classifier, part, cutoff=18)
    det = build_darknet(scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3))
    before = conv_tensors(det)
    with caplog.at_level(logging.INFO, logger="yolo9000"):
        info = load_weights(det, part)
    assert (info.layers_loaded, info.layers_total) == (18, 23) and "filled 18 of 23" in caplog.text
    want = conv_tensors(classifier)
    for i, ts in enumerate(conv_tensors(det)):
        ref = want[i] if i < 18 else before[i]
        assert all(torch.equal(t, u) for t, u in zip(ts, ref, strict=True))


def test_detector_from_a_backbone_file_warns_it_is_untrained(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A backbone file given as a detector's weights converts (darknet loads it too) but says the head is random."""
    part = tmp_path / "darknet19_448.conv.23"
    save_weights(randomize(build_darknet(scaled_cfg(tmp_path, "darknet19_448.cfg", 0.125, 7)), seed=1), part, cutoff=18)
    det_cfg = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        darknet_to_checkpoint(det_cfg, part)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(part) in m and "filled 18 of the 23" in m and "untrained" in m for m in warned)
    full = tmp_path / "full.weights"
    save_weights(randomize(build_darknet(det_cfg), seed=2), full)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        darknet_to_checkpoint(det_cfg, full)
    assert not [r for r in caplog.records if "partial" in r.getMessage()]


@pytest.mark.parametrize(
    ("hw", "size", "predict_hw"),
    [((416, 416), 416, None), ((100, 100), 96, None), ((64, 96), 64, [64, 96]), ((10, 10), 32, None),
     ((100, 200), 96, [96, 192]), ((48, 80), 64, [64, 96])],  # halves up: 5:3 stays wide (round(): 64 x 64)
)  # fmt: skip
def test_detector_default_size_from_net_section(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, hw: tuple[int, int], size: int, predict_hw: list[int] | None
) -> None:
    """Evaluation's square side is the [net] height, the predict API's input its height x width when not square
    (multiples of 32, the nearest: a warning when one is not)."""
    p = tmp_path / "d.cfg"
    p.write_text(
        f"[net]\nheight={hw[0]}\nwidth={hw[1]}\nchannels=3\n[convolutional]\nfilters=7\nsize=1\n"
        "[region]\nanchors=1,1\nclasses=2\nnum=1\nsoftmax=1\n"
    )
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        ckpt = darknet_to_checkpoint(p)
    assert ckpt["yolo9000_model_config"]["eval_size"] == size
    assert ckpt["yolo9000_model_config"].get("predict_hw") == predict_hw
    assert (f"{p}:1" in caplog.text) == (hw[0] % 32 != 0 or hw[1] % 32 != 0)  # sides not multiples of 32: warned


def test_cfg_with_a_byte_order_mark(tmp_path: Path) -> None:
    p = tmp_path / "bom.cfg"
    p.write_text("\ufeff[net]\nchannels=3\n[convolutional]\nfilters=4\n", encoding="utf-8")
    assert [s["type"] for s in parse_cfg(p)] == ["net", "convolutional"]


def test_detector_module_backbone_from_darknet_conv23(tmp_path: Path) -> None:
    """``model.backbone_ckpt=darknet19_448.conv.23``: the detector module's one pretrained loader takes darknet
    weights as well as checkpoints; a file of another width is refused with the float counts."""
    from yolo9000.modules.pretrained import load_pretrained

    classifier = randomize(build_darknet(scaled_cfg(tmp_path, "darknet19_448.cfg", 0.125, 7)), seed=13)
    part = tmp_path / "darknet19_448.conv.23"
    save_weights(classifier, part, cutoff=18)
    det = YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0]])
    assert load_pretrained(det.backbone, part, part="backbone") == 18
    want = conv_tensors(classifier)[:18]
    got = conv_tensors(det.backbone)
    assert all(torch.equal(t, u) for a, b in zip(got, want, strict=True) for t, u in zip(a, b, strict=True))
    with pytest.raises(ValueError, match="floats"):
        load_pretrained(YOLOv2(Darknet19(width=0.25), 3, [[1.0, 1.0]]).backbone, part, part="backbone")


def test_backbone_from_a_whole_darknet_classifier_file(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """``model.backbone_ckpt=darknet19_448.weights`` (the whole classifier, as darknet's site serves it): its first
    18 convs fill the backbone and its classifier layer (a 1x1 conv with biases, 7 filters here) is skipped, logged;
    as a whole network's weights the same file is refused. A file that fills none of the layers is a warning."""
    from yolo9000.darknet.weights import load_weights
    from yolo9000.modules.pretrained import load_pretrained

    classifier = randomize(build_darknet(scaled_cfg(tmp_path, "darknet19_448.cfg", 0.125, 7)), seed=14)
    whole = tmp_path / "darknet19_448.weights"
    save_weights(classifier, whole)
    det = YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0]])
    with caplog.at_level(logging.INFO, logger="yolo9000"):
        assert load_pretrained(det.backbone, whole, part="backbone") == 18
    assert "darknet's classifier (a 1x1 conv of 7 filters on 128 channels): not part of this network" in caplog.text
    want, got = conv_tensors(classifier)[:18], conv_tensors(det.backbone)
    assert all(torch.equal(t, u) for a, b in zip(got, want, strict=True) for t, u in zip(a, b, strict=True))
    # as a whole Darknet-19's weights: darknet fills the 18 convs and ignores the rest (warned); strict refuses it
    caplog.clear()
    plain = Darknet19(width=0.125)
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        info = load_weights(plain, whole)
    assert (info.layers_loaded, info.trailing_floats) == (18, 7 * (128 + 1))
    assert f"({7 * 129} trailing)" in caplog.text and "ignored the rest, as darknet does" in caplog.text
    assert same_tensors(conv_tensors(plain), want)
    with pytest.raises(ValueError, match="trailing.*does not match the weights"):
        load_weights(Darknet19(width=0.125), whole, strict=True)
    header = tmp_path / "header_only.weights"
    save_weights(classifier, header, cutoff=0)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        assert load_pretrained(Darknet19(width=0.125), header, part="backbone") == 0
    assert "0 of 18 conv layers" in caplog.text


def test_size_mismatch_errors_state_expected_and_found(
    tiny_cfg: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=4)
    full = tmp_path / "full.weights"
    save_weights(src, full)
    data = full.read_bytes()
    total = sum(TINY_SIZES)
    cut = tmp_path / "cut.weights"
    cut.write_bytes(data[: -4 * 5])  # 5 floats short: inside the last layer
    # layers counted from 1, as the partial-file warning counts them; another cfg's weights suggested
    msg = rf"inside conv layer 3 of 3 .*expected {TINY_SIZES[2]} floats.*found {TINY_SIZES[2] - 5}.*another cfg"
    with pytest.raises(ValueError, match=msg):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), cut)
    extra = tmp_path / "extra.weights"
    extra.write_bytes(data + np.array([1.5, -2.5, 3.5], "<f4").tobytes())
    with pytest.raises(ValueError, match=rf"expect {total} floats after the header, found {total + 3}"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), extra, strict=True)
    lenient = DarknetNet(parse_cfg(tiny_cfg))  # darknet's default: the layers filled, the 3 floats after them ignored
    assert load_weights(lenient, extra).trailing_floats == 3
    assert same_tensors(conv_tensors(lenient), conv_tensors(src))
    # darknet's fread reads whole floats: 1 to 3 bytes after the last layer are never read (warned; strict refuses)
    odd = tmp_path / "odd.weights"
    odd.write_bytes(data + b"\x00\x01")
    lenient = DarknetNet(parse_cfg(tiny_cfg))
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        assert load_weights(lenient, odd).trailing_floats == 0
    assert f"{odd}: 3 conv layers expect {total} floats after the header, found {total} (0 trailing and 2 bytes)" in (
        caplog.text
    )
    assert same_tensors(conv_tensors(lenient), conv_tensors(src))
    with pytest.raises(ValueError, match=r"\(0 trailing and 2 bytes\).*does not match the weights"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), odd, strict=True)
    odd_inside = tmp_path / "odd_inside.weights"  # bytes that end inside a layer: a truncated file, refused
    odd_inside.write_bytes(data[:-4] + b"\x00")
    with pytest.raises(ValueError, match="not a whole number of float32"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), odd_inside)
    short = tmp_path / "short.weights"
    short.write_bytes(data[:8])
    with pytest.raises(ValueError, match="too short"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), short)


# ------------------------------------------------------------------------------------------ forward passes
def np_conv(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Reference stride-1 convolution, (B, C, H, W) x (O, C, k, k) -> (B, O, H', W')."""
    k = w.shape[-1]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    h, wd = xp.shape[2] - k + 1, xp.shape[3] - k + 1
    out = np.zeros((x.shape[0], w.shape[0], h, wd))
    for i in range(k):
        for j in range(k):
            out += np.einsum("oc,bchw->bohw", w[:, :, i, j], xp[:, :, i : i + h, j : j + wd])
    return out


def test_darknet_net_matches_numpy_reference(tiny_cfg: Path) -> None:
    net = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=5).eval()
    x = torch.rand(2, 3, 16, 16)
    out = net(x)
    assert out.shape == (2, 10)  # logits: the [softmax] is left out of forward
    layers = [[t.double().numpy() for t in ts] for ts in conv_tensors(net)]
    (b1, s1, m1, v1, w1), (b2, s2, m2, v2, w2), (b3, w3) = layers

    def bn_leaky(y: np.ndarray, s: np.ndarray, b: np.ndarray, m: np.ndarray, v: np.ndarray) -> np.ndarray:
        y = (y - m[:, None, None]) / (np.sqrt(v)[:, None, None] + 1e-6) * s[:, None, None] + b[:, None, None]
        return np.where(y > 0, y, 0.1 * y)

    y = bn_leaky(np_conv(x.double().numpy(), w1, 1), s1, b1, m1, v1)
    y = y.reshape(2, 8, 8, 2, 8, 2).max(axis=(3, 5))
    y = bn_leaky(np_conv(y, w2, 1), s2, b2, m2, v2)
    y = np_conv(y, w3, 0) + b3[:, None, None]
    np.testing.assert_allclose(out.detach().numpy(), y.mean(axis=(2, 3)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("size", "stride", "hw"), [(2, 1, 5), (2, 2, 5), (2, 2, 6), (3, 2, 7), (3, 1, 4)])
def test_maxpool_matches_darknet_loop(tmp_path: Path, size: int, stride: int, hw: int) -> None:
    p = tmp_path / "pool.cfg"
    p.write_text(f"[net]\nchannels=2\n[maxpool]\nsize={size}\nstride={stride}\n")
    x = torch.randn(1, 2, hw, hw)
    out = DarknetNet(parse_cfg(p))(x).numpy()
    pad = size - 1  # darknet's default padding; windows start at -pad/2 (C division)
    n = (hw + pad - size) // stride + 1
    ref = np.full((1, 2, n, n), -np.inf, dtype=np.float32)
    xn = x.numpy()
    for i in range(n):
        for j in range(n):
            for di in range(size):
                for dj in range(size):
                    r, c = i * stride - pad // 2 + di, j * stride - pad // 2 + dj
                    if 0 <= r < hw and 0 <= c < hw:
                        ref[:, :, i, j] = np.maximum(ref[:, :, i, j], xn[:, :, r, c])
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("path", sorted(FIX.glob("reorg_*.npy")), ids=lambda p: p.stem)
def test_cfg_reorg_matches_darknet_fixture(tmp_path: Path, path: Path) -> None:
    """A cfg's ``[reorg]`` layer (its stride, on the ``[net]``'s input) gives darknet's output."""
    fix = np.load(path)
    (b, c, h, w), stride = reorg_fixture_shape(path)
    p = tmp_path / "reorg.cfg"
    p.write_text(f"[net]\nchannels={c}\nheight={h}\nwidth={w}\n\n[reorg]\nstride={stride}\n")
    x = torch.arange(b * c * h * w, dtype=torch.float32).view(b, c, h, w)  # exact in float32 up to 2^24
    assert np.array_equal(DarknetNet(parse_cfg(p))(x).numpy(), fix.astype(np.float32))


@pytest.mark.parametrize(
    ("name", "cls", "out_shape"),
    [
        ("yolov2-voc.cfg", YOLOv2, (2, 5 * 8, 2, 2)),
        ("yolo9000.cfg", YOLOv2, (2, 3 * 8, 2, 2)),
        ("darknet19.cfg", Darknet19Classifier, (2, 3)),
    ],
)
def test_native_equals_generic(tmp_path: Path, name: str, cls: type, out_shape: tuple[int, ...]) -> None:
    cfg = scaled_cfg(tmp_path, name, 0.125, 3)
    generic = randomize(build_darknet(cfg, native=False), seed=6)
    weights = tmp_path / "w.weights"
    save_weights(generic, weights, seen=100)
    native = load_darknet(cfg, weights)
    assert type(native) is cls and cls is not DarknetNet
    generic.eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = native(x)
        assert out.shape == out_shape
        assert torch.equal(out, generic(x))
    native.train(), generic.train()  # batch statistics, darknet's formula in both
    assert torch.equal(native(x), generic(x))
    for ts, us in zip(conv_tensors(native), conv_tensors(generic), strict=True):  # same running-stat updates
        assert all(torch.equal(t, u) for t, u in zip(ts, us, strict=True))


def test_route_order_matters(tmp_path: Path) -> None:
    """The cfg path reproduces the native passthrough (reorg first); swapping the route is another network."""
    good = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    swapped = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3, route="layers=-4,-1")
    assert match_native(good) is not None and match_native(swapped) is None
    native = randomize(build_darknet(good), seed=7).eval()
    weights = tmp_path / "w.weights"
    save_weights(native, weights)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(load_darknet(good, weights, native=False)(x), native(x))
        assert not torch.allclose(load_darknet(swapped, weights)(x), native(x))


# ------------------------------------------------------------------------------------------------- convert.py
def convert_main() -> object:
    return load_script("convert").main


def test_convert_round_trip_detector(tmp_path: Path) -> None:
    cfg = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    names = tmp_path / "names.txt"
    names.write_text("RBC\nWBC\nPlatelets\n")
    weights = tmp_path / "in.weights"
    save_weights(randomize(build_darknet(cfg), seed=8), weights, seen=64000)
    main = convert_main()
    ckpt = tmp_path / "net.ckpt"
    main(["--cfg", str(cfg), "--weights", str(weights), "--names", str(names), "--out", str(ckpt)])  # type: ignore[operator]
    module = load_module(ckpt)
    assert module.class_names == ["RBC", "WBC", "Platelets"] and int(module.seen) == 64000
    mc = module.model_config
    assert mc["net"]["backbone"]["bn_style"] == "darknet"
    assert mc["net"]["anchors"][0] == pytest.approx([1.3221, 1.73145])
    assert mc["eval_size"] == 416 and mc["loss"]["thresh"] == pytest.approx(0.6) and mc["steps"] == [40000, 60000]
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(module(x), load_darknet(cfg, weights)(x))
    back = tmp_path / "back.weights"
    main(["--to-darknet", "--ckpt", str(ckpt), "--out", str(back)])  # type: ignore[operator]
    assert back.read_bytes() == weights.read_bytes()
    assert back.with_suffix(".cfg").read_bytes() == cfg.read_bytes()
    # the class names beside them, in class order, one a line (what a darknet .data's names= reads)
    assert back.with_suffix(".names").read_text() == "RBC\nWBC\nPlatelets\n"
    own = tmp_path / "elsewhere" / "classes.txt"
    own.parent.mkdir()
    main(["--to-darknet", "--ckpt", str(ckpt), "--out", str(back), "--names-out", str(own)])  # type: ignore[operator]
    assert own.read_text().splitlines() == ["RBC", "WBC", "Platelets"]


def test_convert_and_export_stop_with_the_reason_alone(tmp_path: Path) -> None:
    """A network outside darknet's YOLOv2-era layers (YOLOv3's [yolo]), a missing cfg or weights file, a missing
    checkpoint: the file and the problem as the exit message (status 1), no traceback (both printed one before)."""
    v3 = tmp_path / "yolov3-part.cfg"
    v3.write_text(
        "[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\nstride=1\n"
        "pad=1\nactivation=leaky\n\n[yolo]\nmask=0\n"
    )
    cfg = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    runs = {
        "yolo": (["convert", "--cfg", str(v3), "--out", str(tmp_path / "a.ckpt")], f"{v3}:13: [yolo]"),
        "no cfg": (["convert", "--cfg", str(tmp_path / "no.cfg"), "--out", str(tmp_path / "b.ckpt")], "cfg not found"),
        "no weights": (
            [
                "convert",
                "--cfg",
                str(cfg),
                "--weights",
                str(tmp_path / "no.weights"),
                "--out",
                str(tmp_path / "c.ckpt"),
            ],
            "weights not found",
        ),
        "no ckpt": (["export", "--ckpt", str(tmp_path / "no.ckpt"), "--out", str(tmp_path / "d.onnx")], "not found"),
    }
    for name, (args, said) in runs.items():
        with pytest.raises(SystemExit) as stop:  # a message as its code: Python prints it alone, exit status 1
            load_script(args[0]).main(args[1:])
        assert isinstance(stop.value.code, str) and stop.value.code.startswith("Error: ") and said in stop.value.code
        assert stop.value.__suppress_context__, name  # raised `from None`: no chained traceback


def test_convert_generic_and_classifier_round_trip(tmp_path: Path) -> None:
    tiny = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 2)
    weights = tmp_path / "tiny.weights"
    save_weights(randomize(build_darknet(tiny), seed=9), weights, seen=5, major=0, minor=1)
    ckpt = tmp_path / "tiny.ckpt"
    torch.save(darknet_to_checkpoint(tiny, weights), ckpt)
    module = load_module(ckpt)
    assert isinstance(module.model, DarknetNet) and module.model.num_classes == 2
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(module(x), load_darknet(tiny, weights)(x))
    checkpoint_to_darknet(ckpt, tmp_path / "tiny2.weights", tmp_path / "tiny2.cfg")
    assert (tmp_path / "tiny2.weights").read_bytes() == weights.read_bytes()
    assert (tmp_path / "tiny2.cfg").read_bytes() == tiny.read_bytes()

    cls_cfg = scaled_cfg(tmp_path, "darknet19.cfg", 0.125, 5)
    cls_w = tmp_path / "cls.weights"
    save_weights(randomize(build_darknet(cls_cfg), seed=10), cls_w, seen=9)
    cls_ckpt = tmp_path / "cls.ckpt"
    torch.save(darknet_to_checkpoint(cls_cfg, cls_w), cls_ckpt)
    checkpoint_to_darknet(cls_ckpt, tmp_path / "cls2.weights")
    assert (tmp_path / "cls2.weights").read_bytes() == cls_w.read_bytes()
    assert not (tmp_path / "cls2.names").exists()  # convert.py writes no names for a classifier by default
    convert_main()(["--to-darknet", "--ckpt", str(cls_ckpt), "--out", str(tmp_path / "cls3.weights")])  # type: ignore[operator]
    assert (tmp_path / "cls3.weights").is_file() and not (tmp_path / "cls3.names").exists()
    with pytest.raises(ValueError, match=r"cls.ckpt: no class names to write to .*cls4.names"):
        checkpoint_to_darknet(cls_ckpt, tmp_path / "cls4.weights", names_out=tmp_path / "cls4.names")
    assert not (tmp_path / "cls4.weights").exists()  # refused before writing anything
    from yolo9000.modules.pretrained import load_pretrained

    backbone = Darknet19(width=0.125, bn_style="darknet")
    load_pretrained(
        backbone, str(cls_ckpt), part="backbone"
    )  # the classifier checkpoint initialises a detector's backbone
    ref = load_darknet(cls_cfg, cls_w)
    own, want = backbone.state_dict(), ref.backbone.state_dict()
    assert own.keys() == want.keys() and all(torch.equal(own[k], want[k]) for k in own)


def test_convert_wordtree_detector(tmp_path: Path) -> None:
    tree = FIX / "small.tree"
    cfg = scaled_cfg(tmp_path, "yolo9000.cfg", 0.125, 11)
    cfg.write_text(cfg.read_text().replace("tree=data/9k.tree", f"tree={tree}").replace("map = data/coco9k.map", ""))
    ckpt = tmp_path / "9k.ckpt"
    torch.save(darknet_to_checkpoint(cfg), ckpt)
    module = load_module(ckpt)
    assert (
        isinstance(module.model, YOLOv2)
        and isinstance(module.model.fuse, torch.nn.Identity)
        and module.criterion.tree.n == 11
    )
    assert module.criterion.tree.num_groups > 1
    # without a names file the classes are the tree file's node ids (not "0", "1", ...); a names file names them
    ids = [ln.split()[0] for ln in tree.read_text().splitlines() if ln.strip()]
    assert module.class_names == ids and module.tree.names == ids
    names = tmp_path / "small.names"
    names.write_text("".join(f"node {i}\n" for i in range(11)))
    named = darknet_to_checkpoint(cfg, None, names)
    assert named["yolo9000_model_config"]["class_names"] == [f"node {i}" for i in range(11)]
    assert named["yolo9000_model_config"]["loss"]["tree"]["names_file"] == str(names.resolve())
    bad = tmp_path / "bad.cfg"
    text = cfg.read_text().replace("classes=11", "classes=10")
    head, _, tail = text.rpartition("filters=48")  # the head conv: 3 x (5 + 10) outputs
    bad.write_text(head + "filters=45" + tail)
    with pytest.raises(ValueError, match=r"small.tree: 11 nodes for the 10 classes of .*bad.cfg"):
        darknet_to_checkpoint(bad)


def tiny_trained_detector(class_activation: str = "softmax") -> DetectorModule:
    """A detector built as training builds it from ``conf/model/yolov2.yaml`` at 1/8 width, darknet BN, 3 classes
    ``a, b, c`` (the config's own anchors), with no checkpoint behind it."""

    cfg = model_yaml()
    cfg.net.backbone.width = 0.125
    cfg.net.backbone.bn_style = "darknet"
    cfg.net.num_classes = 3
    cfg.net.anchors = cfg.priors.anchors
    cfg.class_names = ["a", "b", "c"]
    cfg.loss.class_activation = class_activation
    return instantiate_module(cfg)


def test_trained_checkpoint_to_darknet_generates_cfg(tmp_path: Path) -> None:
    module = tiny_trained_detector()
    randomize(module.model, seed=11)
    module.seen.fill_(321)
    ckpt = tmp_path / "trained.ckpt"
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}, ckpt)
    info = checkpoint_to_darknet(ckpt, tmp_path / "t.weights", tmp_path / "t.cfg")
    assert info.seen == 321
    spec = match_native(tmp_path / "t.cfg")
    assert spec is not None and spec.passthrough and spec.width == 0.125
    net = load_darknet(tmp_path / "t.cfg", tmp_path / "t.weights")
    module.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(net(x), module(x))
        assert torch.equal(load_darknet(tmp_path / "t.cfg", tmp_path / "t.weights", native=False)(x), module(x))
    assert "\nsoftmax=1\n" in (tmp_path / "t.cfg").read_text()
    # a head trained with logistic classes (model.loss.class_activation=logistic) is darknet's softmax=0, both ways
    logistic = tiny_trained_detector("logistic")
    torch.save({"state_dict": logistic.state_dict(), "yolo9000_model_config": logistic.model_config}, ckpt)
    checkpoint_to_darknet(ckpt, tmp_path / "l.weights", tmp_path / "l.cfg")
    assert "\nsoftmax=0\n" in (tmp_path / "l.cfg").read_text()
    back = darknet_to_checkpoint(tmp_path / "l.cfg", tmp_path / "l.weights")
    assert back["yolo9000_model_config"]["loss"]["class_activation"] == "logistic"


def test_wordtree_checkpoint_to_darknet_writes_its_tree_beside_the_cfg(tmp_path: Path) -> None:
    """A detector trained over a WordTree (``experiment=yolo9000_digits``) goes to darknet with its tree: the cfg's
    ``[region]`` says ``tree=<cfg stem>.tree``, the file beside it is the tree, and the converted files detect what
    the checkpoint detects (without the tree the head decoded as a flat 13-way softmax: other scores and boxes)."""
    from omegaconf import OmegaConf

    tree_file = ROOT / "data" / "mnist5k" / "digits.tree"
    tree = WordTree.from_file(tree_file)
    cfg = model_yaml()
    cfg.net.backbone.width = 0.125
    cfg.net.backbone.bn_style = "darknet"
    cfg.net.num_classes = tree.n
    cfg.net.anchors = cfg.priors.anchors
    cfg.class_names = list(tree.names)
    cfg.loss.tree = OmegaConf.create({"_target_": "yolo9000.wordtree.WordTree.from_file", "path": str(tree_file)})
    module = instantiate_module(cfg)
    assert module.tree is not None
    randomize(module.model, seed=13)
    ckpt = tmp_path / "tree.ckpt"
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}, ckpt)
    checkpoint_to_darknet(ckpt, tmp_path / "t.weights", tmp_path / "t.cfg", tmp_path / "t.names")
    assert "\ntree=t.tree\n" in (tmp_path / "t.cfg").read_text()
    back = WordTree.from_file(tmp_path / "t.tree")
    assert torch.equal(back.parent, tree.parent) and back.wnids == tree.wnids
    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    want = Detector.from_checkpoint(ckpt, device="cpu").predict(image, size=64, conf=0.01)[0]
    got = Detector.from_darknet(tmp_path / "t.cfg", tmp_path / "t.weights", tmp_path / "t.names", device="cpu")
    got_dets = got.predict(image, size=64, conf=0.01)[0]
    assert len(want.scores) > 0 and got_dets.names == want.names
    torch.testing.assert_close(got_dets.scores, want.scores, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(got_dets.boxes, want.boxes, rtol=1e-4, atol=1e-3)


def test_a_wordtree_classifier_to_darknet_writes_no_tree_it_does_not_name(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A classifier over a WordTree (``experiment=wordtree_digits``): its cfg's [softmax] cannot name the tree here,
    so no ``.tree`` file is left beside a cfg that never mentions it (one was), and a warning says the outputs read
    as a flat softmax in darknet."""
    from omegaconf import OmegaConf

    tree_file = ROOT / "data" / "mnist5k" / "digits.tree"
    tree = WordTree.from_file(tree_file)
    cfg = OmegaConf.load(ROOT / "conf" / "model" / "darknet19_cls.yaml")
    cfg.net.backbone.width = 0.125
    cfg.net.num_classes = tree.n
    cfg.tree = {"_target_": "yolo9000.wordtree.WordTree.from_file", "path": str(tree_file)}
    cfg.class_names = list(tree.names)
    module = instantiate_module(cfg)
    assert module.tree is not None
    ckpt = tmp_path / "c.ckpt"
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}, ckpt)
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        checkpoint_to_darknet(ckpt, tmp_path / "c.weights", tmp_path / "c.cfg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.cfg", "c.ckpt", "c.weights"]
    assert "a classifier over a WordTree: its cfg's [softmax] is written without the tree" in caplog.text


def test_torch_bn_checkpoint_exports_what_darknet_computes_alike(tmp_path: Path) -> None:
    """A detector trained with PyTorch's batch norm (sqrt(var + 1e-5)) is written with its variances adjusted, so that
    darknet's sqrt(var) + 1e-6 normalises alike: the exported network (read back with darknet's formula) computes the
    module's output. Small variances are where the two formulas differ most."""

    cfg = model_yaml()
    cfg.net.backbone.width = 0.125
    cfg.net.num_classes = 3
    cfg.net.anchors = cfg.priors.anchors
    cfg.class_names = ["a", "b", "c"]
    module = instantiate_module(cfg)
    assert module.model.backbone.bn_style == "torch"
    randomize(module.model, seed=12)
    for m in module.model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_var.uniform_(1e-4, 2e-3)
    ckpt = tmp_path / "torch_bn.ckpt"
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}, ckpt)
    checkpoint_to_darknet(ckpt, tmp_path / "t.weights", tmp_path / "t.cfg")
    net = load_darknet(tmp_path / "t.cfg", tmp_path / "t.weights")  # darknet's batch norm
    module.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        want, got = module(x), net(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def _yolo9000_checkpoint(tmp_path: Path) -> Path:
    ckpt = tmp_path / "yolo9000.ckpt"
    torch.save(darknet_to_checkpoint(CFG / "yolo9000.cfg"), ckpt)
    return ckpt


def test_yolo9000_cfg_names_boxes_with_the_wordtree(tmp_path: Path) -> None:
    """yolo9000.cfg at full width (48,793,101 parameters, 9418 nodes, 3 priors, no passthrough) converted without
    weights: boxes are named with 9k.names by darknet's descent over all 9418 nodes by default (``detector test``
    passes no map: the cfg's ``map = coco9k.map`` relabels training truths only) and, with
    ``eval_map=coco9k.map``, as COCO's 80 nodes (darknet's ``validate_detector`` with a map)."""
    from yolo9000.wordtree import read_map

    ckpt = _yolo9000_checkpoint(tmp_path)
    names = (ROOT / "data/darknet/wordtree/9k.names").read_text().splitlines()
    coco_nodes = set(read_map(ROOT / "data/darknet/wordtree/coco9k.map"))
    x = torch.rand(1, 3, 96, 96)
    batch = {"images": x, "transforms": None, "orig_sizes": None}
    no_nms = {"nms_thresh": 1.0}  # every box once: the scores are comparable with the objectness values
    coco_map = str(ROOT / "data/darknet/wordtree/coco9k.map")
    for settings, allowed in (
        ({"conf_thresh": 0.0, "eval_map": coco_map}, {names[n] for n in coco_nodes}),
        (no_nms, None),
        ({"eval_map": "all", **no_nms}, None),
    ):
        module = load_module(ckpt, **settings)
        assert sum(p.numel() for p in module.model.parameters()) == 48_793_101
        assert module.tree is not None and module.tree.n == 9418 and module.model.anchors.shape == (3, 2)
        assert module.class_names == names
        with torch.no_grad():
            det = module.predict_step(batch)["detections"][0]
        assert len(det["names"]) > 0
        if allowed is None:  # every node may name a box; darknet's decode scores it by objectness alone
            assert set(module.eval_nodes.tolist() if module.eval_nodes is not None else []) == set()
            obj = module.model(x)[:, 4::9423].sigmoid().flatten()
            assert torch.allclose(det["scores"].sort(descending=True).values[:3], obj.sort(descending=True).values[:3])
        else:
            assert set(det["names"]) <= allowed


@pytest.mark.slow
def test_yolo9000_cfg_detect_cli_prints_wordtree_names(tmp_path: Path) -> None:
    """detect.py on a converted yolo9000.cfg prints and writes WordTree names (darknet's ``dog: 82%`` lines)."""
    import json

    from conftest import run_script

    ckpt = _yolo9000_checkpoint(tmp_path)
    names = set((ROOT / "data/darknet/wordtree/9k.names").read_text().splitlines())
    image = next((ROOT / "data/bccd").rglob("*.jpg"))
    out = tmp_path / "out"
    res = run_script(
        "detect.py", out, f"ckpt_path={ckpt}", f"source={image}", "img_size=96", "eval_map=all", "conf_thresh=0.3"
    )
    dets = json.loads((out / "detections.json").read_text())["images"][0]["detections"]
    assert dets and {d["class"] for d in dets} <= names
    assert f"{dets[0]['class']} {dets[0]['score']:.2f}" in res.stdout + res.stderr


def test_weights_files_are_known_by_content(tmp_path: Path) -> None:
    """A text or PyTorch file given as darknet weights is named as such; darknet weights under any file name
    initialise a backbone (sniffed by their header, not their suffix)."""
    from yolo9000.modules.pretrained import load_pretrained

    text = tmp_path / "notes.weights"
    text.write_text("0.5 1.0 these are not weights\n")
    with pytest.raises(ValueError, match=re.escape(f"{text}: not a darknet .weights file")):
        read_header(text)
    torch_file = tmp_path / "model.weights"
    torch.save({"a": torch.zeros(1)}, torch_file)
    with pytest.raises(ValueError, match="a PyTorch checkpoint"):
        read_header(torch_file)
    classifier = randomize(build_darknet(scaled_cfg(tmp_path, "darknet19_448.cfg", 0.125, 7)), seed=3)
    odd_name = tmp_path / "backbone.dat"
    save_weights(classifier, odd_name, cutoff=18)
    det = build_darknet(scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3))
    load_pretrained(det, odd_name)
    assert torch.equal(conv_tensors(det)[0][-1], conv_tensors(classifier)[0][-1])


def test_numbers_with_a_trailing_comment_read_as_darknet_does(tmp_path: Path) -> None:
    """``filters=27 # 3*(5+4)``: darknet's atoi reads 27; a word with a comment stays an error naming the line."""
    p = tmp_path / "c.cfg"
    p.write_text("[net]\nchannels=3\n[convolutional]\nfilters=27 # 3*(5+4)\nsize=3;k\nactivation=leaky\n")
    (spec,) = layer_specs(parse_cfg(p))
    assert (spec.filters, spec.size) == (27, 3)
    p.write_text("[net]\nchannels=3\n[convolutional]\nfilters=8\nactivation=leaky # relu\n")
    with pytest.raises(NotImplementedError, match=re.escape(f"{p}:5")):
        layer_specs(parse_cfg(p))


def test_converted_generic_network_names_its_cfg_file_in_errors() -> None:
    """A generic (DarknetNet) checkpoint keeps the cfg's file name: its layers' errors say ``<file>:<line>``."""
    from yolo9000.darknet.net import darknet_net_from_text

    cfg = CFG / "yolov2-tiny-voc.cfg"
    net = darknet_to_checkpoint(cfg)["yolo9000_model_config"]["net"]
    assert net["source"] == str(cfg)
    built = darknet_net_from_text(net["cfg_text"], source=net["source"])
    assert built.specs[0].where.startswith(f"{cfg}:")


# ------------------------------------------------------------------------- darknet's per-layer load options
def test_dontload_dontloadscales_numload_read_as_darknet_reads_them(tiny_cfg: Path, tmp_path: Path) -> None:
    """load_weights_upto / load_convolutional_weights: a ``dontload`` layer takes no floats from the file, a
    ``dontloadscales`` one its biases and weights only, a ``numload=m`` one its first m filters; ``dontsave`` leaves
    a layer out of a written file. The file is written by hand in that order."""
    text = TINY_CFG.replace("filters=8\n", "filters=8\ndontloadscales=1\n", 1)
    text = text.replace("filters=16\n", "filters=16\nnumload=5\n", 1).replace(
        "filters=10\n", "filters=10\ndontload=1\n"
    )
    cfg = tmp_path / "opts.cfg"
    cfg.write_text(text)
    src = conv_tensors(randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=3))
    b1, s1, m1, v1, w1 = src[0]
    b2, s2, m2, v2, w2 = src[1]
    parts = [b1, w1, b2[:5], s2[:5], m2[:5], v2[:5], w2[:5]]  # conv 3 (dontload): nothing
    header = np.array([0, 2, 0], "<i4").tobytes() + np.array([9], "<i8").tobytes()
    path = tmp_path / "opts.weights"
    path.write_bytes(header + b"".join(t.numpy().astype("<f4").tobytes() for t in parts))
    net = DarknetNet(parse_cfg(cfg))
    before = conv_tensors(net)
    info = load_weights(net, path, options=conv_load_options(cfg))
    got = conv_tensors(net)
    assert info.layers_loaded == 3
    assert torch.equal(got[0][0], b1) and torch.equal(got[0][4], w1)
    assert all(torch.equal(got[0][k], before[0][k]) for k in (1, 2, 3))  # scales, mean, var: untouched
    for k, (want, init) in enumerate(zip(src[1], before[1], strict=True)):
        assert torch.equal(got[1][k][:5], want[:5]) and torch.equal(got[1][k][5:], init[5:])
    assert all(torch.equal(g, b) for g, b in zip(got[2], before[2], strict=True))
    # without the options the same file is refused (darknet would read it only with them)
    with pytest.raises(ValueError, match="ends inside conv layer"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), path)
    out = tmp_path / "saved.weights"
    text = TINY_CFG.replace("filters=10\n", "filters=10\ndontsave=1\n")
    save_weights(net, out, seen=9, options=conv_load_options(parse_cfg_text(text)))
    assert out.stat().st_size == 20 + 4 * sum(TINY_SIZES[:2])


def test_cfg_option_forms_darknet_reads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A comment after a list (darknet's atof stops there), ``random=0.5`` read as atoi reads it (0, warned), options
    of later darknets at their neutral value (``dilation=1``, ``stride_x=stride_y``), ``classfix`` (read by
    parse_region, no warning); another value of them is still refused, and darknet's other sections are named so."""
    p = tmp_path / "forms.cfg"
    p.write_text(
        "[net]\nwidth=64\nheight=64\n[convolutional]\nfilters=16\nsize=3\ndilation=1\nantialiasing=0\n"
        "[maxpool]\nsize=2\nstride_x=2\nstride_y=2\n[route]\nlayers=-1, -2  # concat\n"
        "[convolutional]\nfilters=7\nsize=1\n[region]\nanchors=1,1 # one prior\nclasses=2\nnum=1\nsoftmax=1\n"
        "random=0.5\nclassfix=0\nbackground=0\nlog=0\n"
    )
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        specs = layer_specs(parse_cfg(p))
        region = region_meta(parse_cfg(p))
    assert [s.out_channels for s in specs[:3]] == [16, 16, 32] and specs[1].stride == 2
    assert region is not None and region.anchors.tolist() == [[1.0, 1.0]] and region.random is False
    warned = {r.getMessage() for r in caplog.records}  # the one option (each parse of the region reads it)
    assert len(warned) == 1 and "random=0.5 read as 0 (darknet's atoi)" in warned.pop()
    for line, bad in [("dilation=1", "dilation=2"), ("stride_y=2", "stride_y=1")]:
        q = tmp_path / "bad.cfg"
        q.write_text(p.read_text().replace(line, bad))
        with pytest.raises(NotImplementedError, match="is not supported by this converter"):
            layer_specs(parse_cfg(q))
    q.write_text("[net]\n[local]\nfilters=8\n")
    with pytest.raises(NotImplementedError, match=r"\[local\] \(a darknet section\)"):
        layer_specs(parse_cfg(q))


def test_native_darknet19_pools_as_darknet_at_any_size(tmp_path: Path) -> None:
    """darknet's 2/2 maxpool pads one: an odd side rounds up (240 -> 15 -> 8), in the native module as in the
    generic network built from darknet19.cfg; at multiples of 32 nothing changes."""
    native = randomize(load_darknet(CFG / "darknet19.cfg", native=True), seed=4)
    generic = DarknetNet(parse_cfg(CFG / "darknet19.cfg")).eval()
    generic.load_state_dict(dict(zip(generic.state_dict(), native.state_dict().values(), strict=True)))
    x = torch.rand(1, 3, 240, 240)
    with torch.no_grad():
        a, b = native(x), generic(x)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    feats = Darknet19(width=0.25)(torch.rand(1, 3, 240, 240))
    assert feats["c5"].shape[-1] == 8 and feats["c4"].shape[-1] == 15


def test_darknet_file_mistakes_are_named_for_what_they_are(
    tiny_cfg: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A folder given as the cfg or the weights is said to be a folder (it was "not found"); a .weights file given as
    the cfg is "binary data" (its bytes filled the message); a trailing comment in a word value is explained; a
    header with no floats warns (it was an INFO line); a cfg without [region] is not a detector. (A file that ends
    inside a layer: test_size_mismatch_errors_state_expected_and_found.)"""
    folder = tmp_path / "a.weights"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=r"a\.weights: a folder, not a \.weights file"):
        load_weights(DarknetNet(parse_cfg(tiny_cfg)), folder)
    with pytest.raises(FileNotFoundError, match=r"a\.weights: a folder, not a \.cfg file"):
        parse_cfg(folder)
    net = randomize(DarknetNet(parse_cfg(tiny_cfg)), seed=3)
    weights = tmp_path / "tiny.weights"
    save_weights(net, weights, seen=0)
    with pytest.raises(ValueError, match=r"tiny\.weights: not a darknet cfg .* binary data$"):
        parse_cfg(weights)
    commented = tmp_path / "c.cfg"
    commented.write_text(TINY_CFG.replace("activation=linear", "activation=linear  # no slope"))
    with pytest.raises(NotImplementedError, match=r"c\.cfg:\d+: activation 'linear#noslope' .* part of the value"):
        layer_specs(parse_cfg(commented))
    data = weights.read_bytes()
    head_only = tmp_path / "head.weights"
    head_only.write_bytes(data[:20])  # version 0.2 header: 3 int32 + int64 seen
    with caplog.at_level(logging.INFO, "yolo9000"):
        info = load_weights(DarknetNet(parse_cfg(tiny_cfg)), head_only)
    assert info.layers_loaded == 0
    assert [r.levelname for r in caplog.records if "none of the 3 conv layers filled" in r.getMessage()] == ["WARNING"]
    detector_less = tmp_path / "convs.cfg"
    detector_less.write_text(TINY_CFG.split("[avgpool]")[0])
    with pytest.raises(NotImplementedError, match=r"convs\.cfg: no \[region\] layer: not a detector cfg"):
        darknet_to_checkpoint(detector_less)
    with pytest.raises(NotImplementedError, match=r"tiny\.cfg: a classifier other than Darknet-19"):
        darknet_to_checkpoint(tiny_cfg)
