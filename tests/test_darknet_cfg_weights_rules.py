"""Gaps a mutation audit of the darknet file formats found: each test pins one behaviour of darknet's C code
(pjreddie/darknet, parser.c / option_list.c / weights loading / layer code) against values computed by hand or
bytes written with ``struct.pack``, independently of the code under test. Tiny inputs only."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from test_models import _darknet_reorg_loops
from yolo9000.darknet import (
    DarknetNet,
    NativeSpec,
    conv_load_options,
    layer_specs,
    load_weights,
    match_native,
    native_net_config,
    parse_cfg_text,
    read_header,
    region_from_section,
)
from yolo9000.models.layers import DarknetBatchNorm2d, fold_batch_norms

CFG = Path(__file__).resolve().parents[1] / "data" / "darknet" / "cfg"


def _one_conv_net(options: str, channels: int = 1) -> DarknetNet:
    return DarknetNet(parse_cfg_text(f"[net]\nchannels={channels}\n[convolutional]\nfilters=1\n{options}"))


def _set_conv(net: DarknetNet, weight: float, bias: float = 0.0) -> None:
    conv, bn = net.conv_pairs()[0]
    assert bn is None
    with torch.no_grad():
        conv.weight.fill_(weight)
        conv.bias.fill_(bias)  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------------ .weights header
@pytest.mark.parametrize(("major", "minor"), [(1000, 0), (0, 1000)])
def test_header_of_version_1000_keeps_a_32_bit_seen(tmp_path: Path, major: int, minor: int) -> None:
    """darknet's load_weights reads ``seen`` as a size_t only when major * 10 + minor >= 2 AND major < 1000 AND
    minor < 1000; otherwise an int (16-byte header)."""
    net = _one_conv_net("size=1\nactivation=linear\n")  # 1 bias + 1 weight
    path = tmp_path / "v1000.weights"
    path.write_bytes(struct.pack("<iiii", major, minor, 5, 77) + struct.pack("<ff", 0.25, -3.0))
    info, size = read_header(path)
    assert (info.major, info.minor, info.revision, info.seen, size) == (major, minor, 5, 77, 16)
    load_weights(net, path)
    conv, _ = net.conv_pairs()[0]
    assert conv.bias.item() == 0.25 and conv.weight.item() == -3.0  # type: ignore[union-attr]


def test_a_header_seen_beyond_int64_is_refused_naming_the_file(tmp_path: Path) -> None:
    """An 8-byte ``seen`` of 2^63 or more (a corrupt header) is refused naming the file; 2^63 - 1 is read (it
    crashed in the checkpoint's int64 counter with an overflow traceback)."""
    for seen, ok in ((2**63 - 1, True), (2**63, False), (2**64 - 1, False)):
        path = tmp_path / f"s{seen}.weights"
        path.write_bytes(struct.pack("<iiiQ", 0, 2, 0, seen) + struct.pack("<ff", 0.25, -3.0))
        if ok:
            assert read_header(path)[0].seen == seen
        else:
            with pytest.raises(ValueError, match=rf"{path.name}: its header says {seen} images seen .*corrupt"):
                read_header(path)


def test_a_softmax_inside_the_network_is_refused_naming_its_line() -> None:
    """darknet's ``[softmax]`` as the output (a ``[cost]`` after it) is left out (logits); one that other layers
    follow would change their input, so it is refused with its file and line (it was built as an identity)."""
    head = "[net]\nchannels=3\nheight=32\nwidth=32\n[convolutional]\nfilters=4\nsize=1\n"
    DarknetNet(parse_cfg_text(head + "[avgpool]\n[softmax]\ngroups=1\n[cost]\n", "ok.cfg"))
    with pytest.raises(NotImplementedError, match=r"mid\.cfg:8: \[softmax\] is supported as the network's output only"):
        DarknetNet(parse_cfg_text(head + "[softmax]\ngroups=1\n[convolutional]\nfilters=2\nsize=1\n", "mid.cfg"))


# ----------------------------------------------------------------------------------------------------- cfg parser
def test_repeated_option_keeps_the_first_value() -> None:
    """option_insert appends to the section's list and option_find returns the first match: the first value wins."""
    sections = parse_cfg_text("[net]\nchannels=3\n[convolutional]\nfilters=4\nfilters=8\nsize=1\n")
    assert sections[1]["options"]["filters"] == "4"
    assert layer_specs(sections)[0].out_channels == 4


def test_section_aliases_of_darknet() -> None:
    """string_to_layer_type: [network] = [net], [conv], [max], [avg], [soft] are the long names."""
    sections = parse_cfg_text(
        "[network]\nchannels=3\n[conv]\nfilters=2\nsize=1\n[max]\nsize=2\nstride=2\n[avg]\n[soft]\n"
    )
    assert [s["type"] for s in sections] == ["net", "convolutional", "maxpool", "avgpool", "softmax"]


def test_pad_1_means_size_over_2_also_for_even_kernels() -> None:
    """parse_convolutional: ``if(pad) padding = size/2``; a 2x2 conv with pad=1 on 5x5 gives (5 + 2 - 2) + 1 = 6."""
    net = _one_conv_net("size=2\nstride=1\npad=1\nactivation=linear\n")
    assert net.specs[0].padding == 1
    _set_conv(net, 1.0)
    x = torch.ones(1, 1, 5, 5)
    out = net(x)
    assert out.shape == (1, 1, 6, 6)
    assert out[0, 0, 0, 0].item() == 1.0 and out[0, 0, 1, 1].item() == 4.0  # corner: one real pixel of four


def test_conv_stride_is_used_by_the_generic_network() -> None:
    """A 3x3 stride-2 pad-1 conv on 5x5: (5 + 2 - 3) / 2 + 1 = 3 outputs a side, each the sum of its window."""
    net = _one_conv_net("size=3\nstride=2\npad=1\nactivation=linear\n")
    _set_conv(net, 1.0, bias=0.5)
    x = torch.arange(25, dtype=torch.float32).view(1, 1, 5, 5)
    xp = np.pad(x[0, 0].numpy(), 1)
    want = np.array([[xp[2 * i : 2 * i + 3, 2 * j : 2 * j + 3].sum() + 0.5 for j in range(3)] for i in range(3)])
    np.testing.assert_array_equal(net(x)[0, 0].detach().numpy(), want)


def test_activations_and_the_logistic_default() -> None:
    """parse_convolutional's default activation is ``logistic``; logistic = 1 / (1 + e^-x), relu = max(0, x),
    leaky = x > 0 ? x : 0.1 x (activations.h)."""
    x = torch.tensor([-2.0, -0.5, 0.0, 1.5]).view(1, 1, 1, 4)
    xs = [-2.0, -0.5, 0.0, 1.5]
    want = {
        None: [1 / (1 + np.exp(-v)) for v in xs],
        "logistic": [1 / (1 + np.exp(-v)) for v in xs],
        "relu": [0.0, 0.0, 0.0, 1.5],
        "leaky": [-0.2, -0.05, 0.0, 1.5],
        "linear": xs,
    }
    for act, ref in want.items():
        net = _one_conv_net("size=1\n" + (f"activation={act}\n" if act else ""))
        assert net.specs[0].activation == (act or "logistic")
        _set_conv(net, 1.0)
        np.testing.assert_allclose(net(x).detach().numpy().ravel(), ref, rtol=1e-6, atol=1e-7, err_msg=str(act))


def test_maxpool_option_defaults() -> None:
    """parse_maxpool: stride defaults to 1, size to the stride, padding to size - 1; output (w + padding - size) /
    stride + 1."""
    only_stride, only_size = layer_specs(parse_cfg_text("[net]\nchannels=1\n[maxpool]\nstride=3\n[maxpool]\nsize=2\n"))
    assert (only_stride.size, only_stride.stride, only_stride.padding) == (3, 3, 2)
    assert (only_size.size, only_size.stride, only_size.padding) == (2, 1, 1)
    net = DarknetNet(parse_cfg_text("[net]\nchannels=1\n[maxpool]\nsize=2\n"))
    assert net(torch.zeros(1, 1, 5, 5)).shape == (1, 1, 5, 5)  # (5 + 1 - 2) / 1 + 1


def test_maxpool_size_2_stride_1_padding_0_does_not_pad() -> None:
    """An explicit ``padding=0``: (5 + 0 - 2) / 1 + 1 = 4, each output the max of a 2x2 window inside the map."""
    net = DarknetNet(parse_cfg_text("[net]\nchannels=1\n[maxpool]\nsize=2\nstride=1\npadding=0\n"))
    x = torch.tensor(np.random.default_rng(0).standard_normal((1, 1, 5, 5)), dtype=torch.float32)
    xn = x[0, 0].numpy()
    want = np.array([[xn[i : i + 2, j : j + 2].max() for j in range(4)] for i in range(4)])
    np.testing.assert_array_equal(net(x)[0, 0].numpy(), want)


def test_route_layer_0_is_absolute() -> None:
    """parse_route: ``if(index < 0) index = params.index + index``: 0 is the first layer, not the route itself."""
    specs = layer_specs(
        parse_cfg_text("[net]\nchannels=3\n[convolutional]\nfilters=2\nsize=1\n[maxpool]\nsize=1\n[route]\nlayers=0\n")
    )
    assert specs[2].sources == [0] and specs[2].out_channels == 2


def test_cfg_reorg_uses_its_stride() -> None:
    net = DarknetNet(parse_cfg_text("[net]\nchannels=9\n[reorg]\nstride=3\n"))
    x = np.arange(9 * 6 * 3, dtype=np.float32).reshape(1, 9, 6, 3)
    np.testing.assert_array_equal(net(torch.from_numpy(x)).numpy(), _darknet_reorg_loops(x, 3))


def test_region_defaults_of_parse_region() -> None:
    """parse_region / make_region_layer defaults: coords 4, classes 20, num 1, biases 0.5, softmax 0, thresh .5,
    jitter .2, every scale 1, rescore / bias_match / absolute / random 0."""
    meta = region_from_section(parse_cfg_text("[net]\n[region]\n")[1])
    assert (meta.coords, meta.classes, meta.num) == (4, 20, 1)
    assert meta.anchors.tolist() == [[0.5, 0.5]]
    assert (meta.thresh, meta.jitter) == (0.5, pytest.approx(0.2))
    assert (meta.object_scale, meta.noobject_scale, meta.class_scale, meta.coord_scale) == (1, 1, 1, 1)
    assert not (meta.softmax or meta.rescore or meta.bias_match or meta.absolute or meta.random)
    two = region_from_section(parse_cfg_text("[net]\n[region]\nnum=2\nclasses=3\n")[1])
    assert two.anchors.tolist() == [[0.5, 0.5], [0.5, 0.5]]


def test_numload_equal_to_filters_is_the_whole_layer(tmp_path: Path) -> None:
    """darknet's ``if(l.numload) l.n = l.numload``: numload = filters reads every filter (no error)."""
    cfg = parse_cfg_text("[net]\nchannels=1\n[convolutional]\nfilters=2\nsize=1\nnumload=2\nactivation=linear\n")
    options = conv_load_options(cfg)
    assert options[0].numload == 2
    path = tmp_path / "n.weights"
    path.write_bytes(struct.pack("<iiiQ", 0, 2, 0, 0) + struct.pack("<4f", 1.0, 2.0, 3.0, 4.0))
    net = DarknetNet(cfg)
    load_weights(net, path, options=options)
    conv, _ = net.conv_pairs()[0]
    assert conv.bias.tolist() == [1.0, 2.0] and conv.weight.flatten().tolist() == [3.0, 4.0]  # type: ignore[union-attr]


def test_maxpool_without_padding_is_not_the_native_darknet19() -> None:
    """darknet19.cfg's 2/2 maxpools pad one (odd sides round up, as the native module's ceil mode); with
    ``padding=0`` darknet rounds down ((15 + 0 - 2) / 2 + 1 = 7, not 8): not the native module."""
    text = (CFG / "darknet19.cfg").read_text()
    assert match_native(parse_cfg_text(text)) is not None
    unpadded = parse_cfg_text(text.replace("[maxpool]\nsize=2\nstride=2\n", "[maxpool]\nsize=2\nstride=2\npadding=0\n"))
    assert sum(s["options"].get("padding") == "0" for s in unpadded) == 5
    assert match_native(unpadded) is None


# -------------------------------------------------------------------------------------------- batch-norm folding
@pytest.mark.parametrize("bn_cls", [nn.BatchNorm2d, DarknetBatchNorm2d])
def test_fold_batch_norms_of_a_conv_with_its_own_bias(bn_cls: type[nn.BatchNorm2d]) -> None:
    """A conv with a bias before a BN folds to bn(conv(x)): its bias passes through the BN's scale too."""
    g = torch.Generator().manual_seed(0)
    net = nn.Sequential(nn.Conv2d(2, 3, 1, bias=True), bn_cls(3))
    with torch.no_grad():
        net[0].bias.copy_(torch.tensor([2.0, -3.0, 5.0]))
        net[1].weight.copy_(torch.tensor([0.5, 2.0, -1.5]))
        net[1].running_var.copy_(torch.tensor([4.0, 0.25, 9.0]))
        net[1].running_mean.copy_(torch.tensor([1.0, -1.0, 0.5]))
    x = torch.randn(1, 2, 4, 4, generator=g)
    folded = fold_batch_norms(net)
    assert isinstance(folded[1], nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), net.eval()(x), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------------- conversion
def test_checkpoint_without_a_header_is_written_as_version_0_2(tmp_path: Path) -> None:
    """A checkpoint that carries no darknet header is written with darknet's own save_weights header: major 0,
    minor 2, revision 0, then ``seen`` as a size_t (20 bytes)."""
    from yolo9000.checkpoints import checkpoint_to_darknet
    from yolo9000.darknet.native import build_native

    spec = NativeSpec("classifier", 0.125, 5)
    model = build_native(spec)
    ckpt = tmp_path / "cls.ckpt"
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    torch.save({"state_dict": state, "yolo9000_classifier_config": native_net_config(spec)}, ckpt)
    out = tmp_path / "cls.weights"
    checkpoint_to_darknet(ckpt, out)
    data = out.read_bytes()
    assert data[:20] == struct.pack("<iiiQ", 0, 2, 0, 0)
    n_floats = sum(t.numel() for k, t in model.state_dict().items() if not k.endswith("num_batches_tracked"))
    assert len(data) == 20 + 4 * n_floats


# ---------------------------------------------------------------------------------------------- .names files
def test_names_count_every_line_as_darknet_and_drop_only_trailing_blanks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """darknet's get_labels: line i + 1 is class i, a blank line too (so "c" stays class 2, not 1); blank lines at
    the end are no class; spaces around a name go; a Latin-1 byte reads as darknet's byte."""
    import logging

    from yolo9000.darknet.cfg import read_names

    f = tmp_path / "x.names"
    f.write_bytes(b"a \n\n  c\r\nd\xe9\n\n\n")
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        assert read_names(f) == ["a", "", "c", "d\xe9"]
    assert f"{f}:2: a blank line: class 1 has no name" in caplog.text
    assert "not UTF-8" in caplog.text


def test_names_against_a_cfgs_classes(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """With the cfg's classes: more names than classes give the first ones (darknet reads only those), warned; fewer
    are refused with the counts and the file; a missing file names itself."""
    import logging

    from yolo9000.darknet.cfg import read_names

    f = tmp_path / "x.names"
    f.write_text("a\nb\nc\n")
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        assert read_names(f, 2) == ["a", "b"]
    assert "3 names for 2 classes: the first 2 are used" in caplog.text
    assert read_names(f, 3) == ["a", "b", "c"]
    with pytest.raises(ValueError, match=rf"{f}: 3 names for 4 classes"):
        read_names(f, 4)
    with pytest.raises(FileNotFoundError, match="class names file not found: .*nope.names"):
        read_names(tmp_path / "nope.names")
