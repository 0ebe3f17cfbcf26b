"""darknet's [shortcut], [upsample], [connected], [crop] and its less common activations in the generic network: each
against hand-computed values of darknet's C (shortcut_cpu, upsample_cpu, forward_connected_layer, forward_crop_layer,
activations.h),
their weights in darknet's file order, and residual networks through conversion and the predict API."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from test_darknet import randomize
from yolo9000.checkpoints import checkpoint_to_darknet, darknet_to_checkpoint, load_module
from yolo9000.darknet import (
    DarknetNet,
    conv_load_options,
    count_params,
    layer_specs,
    load_darknet,
    load_weights,
    parse_cfg_text,
    save_weights,
)
from yolo9000.models.layers import (
    DARKNET_ACTIVATIONS,
    DarknetCrop,
    DarknetShortcut,
    DarknetUpsample,
    darknet_activation,
)


def net_of(text: str) -> DarknetNet:
    return DarknetNet(parse_cfg_text(text)).eval()


# ------------------------------------------------------------------------------------------------------ shortcut
def test_shortcut_same_shape_scales_then_activates() -> None:
    """alpha * input + beta * from, then the activation (leaky 0.1 on the sum, not on the parts)."""
    layer = DarknetShortcut(alpha=0.5, beta=2.0, activation="leaky")
    x = torch.tensor([1.0, -6.0, 4.0]).view(1, 3, 1, 1)
    y = torch.tensor([3.0, 1.0, -1.5]).view(1, 3, 1, 1)
    # 0.5 + 6 = 6.5; -3 + 2 = -1 -> -0.1; 2 - 3 = -1 -> -0.1
    assert torch.allclose(layer(x, y).flatten(), torch.tensor([6.5, -0.1, -0.1]))
    plain = DarknetShortcut()
    assert torch.equal(plain(x, y).flatten(), torch.tensor([4.0, -5.0, 2.5]))


def test_shortcut_from_a_larger_layer_samples_every_stride() -> None:
    """from 4 x 4 into 2 x 2: darknet adds from[2j, 2i] (stride = 4 / 2)."""
    x = torch.zeros(1, 1, 2, 2)
    y = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(DarknetShortcut()(x, y), torch.tensor([[[[0.0, 2.0], [8.0, 10.0]]]]))


def test_shortcut_from_a_smaller_layer_adds_into_every_sample_position_only() -> None:
    """from 2 x 2 into 4 x 4: darknet adds into positions (2j, 2i) (sample = 4 / 2); the others keep the input,
    unscaled by alpha."""
    x = torch.ones(1, 1, 4, 4)
    y = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    want = torch.tensor(
        [
            [3.0, 1.0, 5.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
            [7.0, 1.0, 9.0, 1.0],
            [1.0, 1.0, 1.0, 1.0],
        ]
    )
    assert torch.equal(DarknetShortcut(alpha=1.0, beta=2.0)(x, y)[0, 0], want)
    # alpha scales only the positions darknet's loop visits
    got = DarknetShortcut(alpha=3.0, beta=0.0)(x, y)[0, 0]
    assert got[0, 0] == 3.0 and got[0, 1] == 1.0 and got[1, 1] == 1.0


def test_shortcut_adds_over_the_smaller_channel_count() -> None:
    """Channels beyond the other layer's are left as the input's (darknet's minc)."""
    x = torch.ones(1, 3, 1, 1)
    y = torch.full((1, 2, 1, 1), 5.0)
    assert torch.equal(DarknetShortcut()(x, y).flatten(), torch.tensor([6.0, 6.0, 1.0]))
    x2 = torch.ones(1, 2, 1, 1)
    y2 = torch.tensor([1.0, 2.0, 3.0, 4.0]).view(1, 4, 1, 1)
    assert torch.equal(DarknetShortcut()(x2, y2).flatten(), torch.tensor([2.0, 3.0]))


def test_shortcut_of_unequal_height_and_width_factors_is_refused() -> None:
    """darknet asserts the same factor in height and width: a clear error instead."""
    with pytest.raises(ValueError, match=r"\[shortcut\] cannot add a \(1, 1, 4, 2\) output to a \(1, 1, 2, 2\)"):
        DarknetShortcut()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 4, 2))
    with pytest.raises(ValueError, match="scale by the same factor"):  # 2 / 3 = 0 against 2 / 2 = 1 before clamping
        DarknetShortcut()(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 3))


def test_shortcut_in_a_cfg_takes_from_relative_and_absolute() -> None:
    """from=-2 and from=0 both name layer 0; the net adds layer 0's output to layer 1's."""
    head = "[net]\nheight=2\nwidth=2\nchannels=1\n[convolutional]\nfilters=1\nsize=1\nactivation=linear\n"
    head += "[convolutional]\nfilters=1\nsize=1\nactivation=linear\n"
    for frm in ("-2", "0"):
        net = net_of(head + f"[shortcut]\nfrom={frm}\n")
        assert net.specs[2].sources == [0]
        with torch.no_grad():
            (c0, _), (c1, _) = net.conv_pairs()
            c0.weight.fill_(2.0), c0.bias.fill_(1.0), c1.weight.fill_(3.0), c1.bias.fill_(0.0)  # type: ignore[union-attr]
            x = torch.tensor([[[[1.0, 2.0], [0.0, -1.0]]]])
            a = 2 * x + 1
            assert torch.equal(net(x), a + 3 * a)


# ------------------------------------------------------------------------------------------------------ upsample
def test_upsample_repeats_each_value_times_scale() -> None:
    """stride=2 scale=0.5: every value copied into a 2 x 2 block, times 0.5 (upsample_cpu forward)."""
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    want = 0.5 * torch.tensor([[1, 1, 2, 2], [1, 1, 2, 2], [3, 3, 4, 4], [3, 3, 4, 4]], dtype=torch.float32)
    assert torch.equal(DarknetUpsample(2, 0.5)(x)[0, 0], want)


def test_upsample_negative_stride_sums_blocks() -> None:
    """stride=-2 in the cfg: each 2 x 2 block summed (darknet's reverse upsample accumulates), times scale."""
    net = net_of("[net]\nheight=4\nwidth=4\nchannels=1\n[upsample]\nstride=-2\nscale=2\n")
    assert net.specs[0].out_hw == (2, 2)
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert torch.equal(net(x)[0, 0], 2 * torch.tensor([[10.0, 18.0], [42.0, 50.0]]))
    with pytest.raises(ValueError, match="divisible by 2, got 3 x 4"):
        net(torch.zeros(1, 1, 3, 4))


# ----------------------------------------------------------------------------------------------------- connected
CONNECTED = """[net]
height=2
width=2
channels=2
[connected]
output=3
batch_normalize={bn}
activation={act}
"""


def _write(path: Path, header: tuple[int, int, int], *arrays: np.ndarray) -> None:
    """A darknet .weights file by hand: int32 major, minor, revision, seen (int64 when major*10+minor >= 2 and both
    under 1000), then the float32 arrays as given."""
    major, minor, rev = header
    wide = major * 10 + minor >= 2 and major < 1000 and minor < 1000
    with open(path, "wb") as f:
        f.write(np.array(header, "<i4").tobytes() + np.array([7], "<u8" if wide else "<i4").tobytes())
        for a in arrays:
            f.write(np.asarray(a, "<f4").tobytes())


def test_connected_reads_darknet_order_and_computes_wx_plus_b(tmp_path: Path) -> None:
    """File order biases, weights (out, in); the input flattened (C, H, W); output (B, out) for a classifier."""
    net = net_of(CONNECTED.format(bn=0, act="linear"))
    assert count_params(parse_cfg_text(CONNECTED.format(bn=0, act="linear"))) == 3 * 8 + 3
    b = np.array([0.5, -1.0, 2.0])
    w = np.arange(24, dtype=np.float32).reshape(3, 8) / 10
    path = tmp_path / "c.weights"
    _write(path, (0, 2, 0), b, w)
    load_weights(net, path)
    x = torch.arange(8.0).view(1, 2, 2, 2)
    want = torch.from_numpy(w @ np.arange(8.0, dtype=np.float32) + b.astype(np.float32))
    assert torch.allclose(net(x)[0], want)
    assert net(x).shape == (1, 3)


def test_connected_batch_norm_follows_the_weights_and_takes_the_biases_as_shift(tmp_path: Path) -> None:
    """With batch_normalize: biases, weights, scales, rolling mean, rolling variance; eval output
    (Wx - mean) / (sqrt(var) + 1e-6) * scale + bias, then the activation (logistic, darknet's default)."""
    text = "[net]\nheight=1\nwidth=1\nchannels=2\n[connected]\noutput=2\nbatch_normalize=1\n"
    net = net_of(text)
    b, w = np.array([0.1, -0.2]), np.array([[1.0, 2.0], [-1.0, 0.5]])
    scales, mean, var = np.array([2.0, 0.5]), np.array([1.0, -1.0]), np.array([4.0, 0.25])
    path = tmp_path / "bn.weights"
    _write(path, (0, 2, 0), b, w, scales, mean, var)
    load_weights(net, path)
    x = torch.tensor([[3.0, -2.0]]).view(1, 2, 1, 1)
    wx = np.array([3 - 4, -3 - 1.0])  # [-1, -4]
    pre = (wx - mean) / (np.sqrt(var) + 1e-6) * scales + b  # [-0.9, -6.2]
    want = torch.sigmoid(torch.tensor(pre, dtype=torch.float32))
    assert torch.allclose(net(x)[0], want, atol=1e-6)
    assert count_params(parse_cfg_text(text)) == 4 + 2 + 2  # weights, biases, BN scales (darknet's count)
    # dontloadscales: biases and weights only in the file
    skip = text + "dontloadscales=1\n"
    net2 = net_of(skip)
    _write(tmp_path / "s.weights", (0, 2, 0), b, w)
    load_weights(net2, tmp_path / "s.weights", options=conv_load_options(parse_cfg_text(skip)))
    lin, bn = net2.conv_pairs()[0]
    assert torch.equal(lin.weight, torch.tensor(w, dtype=torch.float32))
    assert torch.equal(bn.bias, torch.tensor(b, dtype=torch.float32)) and torch.equal(bn.running_var, torch.ones(2))  # type: ignore[union-attr]


def test_connected_weights_under_a_transposing_header(tmp_path: Path) -> None:
    """A header with minor > 1000: darknet stores connected weights (inputs, outputs) and transposes them at load;
    writing with that header gives the same bytes back."""
    text = CONNECTED.format(bn=0, act="linear")
    b = np.array([1.0, 2.0, 3.0])
    w_out_in = np.arange(24, dtype=np.float32).reshape(3, 8)
    path = tmp_path / "t.weights"
    _write(path, (0, 1001, 0), b, w_out_in.T.copy())
    net = net_of(text)
    load_weights(net, path)
    assert torch.equal(net.conv_pairs()[0][0].weight, torch.from_numpy(w_out_in))
    save_weights(net, tmp_path / "t2.weights", seen=7, major=0, minor=1001)
    assert (tmp_path / "t2.weights").read_bytes() == path.read_bytes()


def test_connected_infers_its_inputs_from_the_net_size_and_refuses_another_size() -> None:
    """Inputs = C x H x W after a stride-2 conv and a 2/2 maxpool of a 16 x 12 input: 4 x (8 / 2) x (6 / 2)."""
    text = (
        "[net]\nheight=16\nwidth=12\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nstride=2\npad=1\n"
        "activation=leaky\n[maxpool]\nsize=2\nstride=2\n[connected]\noutput=5\nactivation=relu\n"
    )
    specs = layer_specs(parse_cfg_text(text))
    assert [s.out_hw for s in specs] == [(8, 6), (4, 3), (1, 1)]
    assert specs[2].in_features == 4 * 4 * 3
    assert count_params(parse_cfg_text(text)) == (4 * 3 * 9 + 4) + (48 * 5 + 5)
    net = net_of(text)
    assert net(torch.rand(2, 3, 16, 12)).shape == (2, 5)
    with pytest.raises(ValueError, match=r"\[connected\] takes 48 inputs"):
        net(torch.rand(1, 3, 32, 32))


# --------------------------------------------------------------------------------------------------- activations
ACT_CASES = {  # darknet's activations.h at hand-picked points
    "loggy": [(0.0, 0.0), (math.log(3.0), 0.5)],  # 2 / (1 + e^-x) - 1
    "elu": [(-1.0, math.exp(-1) - 1), (2.0, 2.0)],
    "selu": [(1.0, 1.0507), (-1.0, 1.0507 * 1.6732 * (math.exp(-1) - 1))],
    "relie": [(-2.0, -0.02), (3.0, 3.0)],
    "ramp": [(2.0, 2.2), (-2.0, -0.2)],
    "tanh": [(0.5, math.tanh(0.5))],
    "plse": [(-5.0, -0.01), (5.0, 1.01), (0.0, 0.5), (2.0, 0.75)],
    "stair": [(2.5, 1.0), (3.5, 1.5), (-0.5, -0.5)],
    "hardtan": [(2.0, 1.0), (-3.0, -1.0), (0.3, 0.3)],
    "lhtan": [(-1.0, -0.001), (2.0, 1.001), (0.5, 0.5)],
    "leaky": [(-1.0, -0.1), (1.0, 1.0)],
    "relu": [(-1.0, 0.0)],
    "logistic": [(0.0, 0.5)],
}


@pytest.mark.parametrize("name", sorted(ACT_CASES))
def test_darknet_activations_at_hand_computed_points(name: str) -> None:
    """Each activation's formula (stair: floor(x / 2) on even floor(x), else x - floor(x) + floor(x / 2))."""
    act = darknet_activation(name)
    assert act is not None
    xs, want = zip(*ACT_CASES[name], strict=True)
    got = act(torch.tensor(xs, dtype=torch.float64))
    assert torch.allclose(got, torch.tensor(want, dtype=torch.float64), atol=1e-9)


def test_every_darknet_activation_name_builds() -> None:
    """Every name a cfg may give builds (linear: none); another name is refused with the list."""
    assert set(ACT_CASES) | {"linear"} == set(DARKNET_ACTIVATIONS)
    assert darknet_activation("linear") is None
    with pytest.raises(ValueError, match="no darknet activation 'mish'"):
        darknet_activation("mish")


# ------------------------------------------------------------------------------------------ residual networks
RESIDUAL_DETECTOR = """[net]
height=64
width=64
channels=3

[convolutional]
batch_normalize=1
filters=8
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=8
size=3
stride=1
pad=1
activation=leaky

[shortcut]
from=-2
activation=linear

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[convolutional]
batch_normalize=1
filters=16
size=1
stride=1
pad=1
activation=leaky

[shortcut]
from=-2

[maxpool]
size=2
stride=2

[convolutional]
batch_normalize=1
filters=16
size=3
stride=2
pad=1
activation=leaky

[upsample]
stride=2

[route]
layers=-1,-3

[maxpool]
size=2
stride=2

[convolutional]
size=1
stride=1
pad=1
filters=21
activation=linear

[region]
anchors = 1.0,1.5, 2.0,2.5, 3.0,1.0
bias_match=1
classes=2
coords=4
num=3
softmax=1
"""


def test_residual_detector_converts_round_trips_and_predicts(tmp_path: Path) -> None:
    """A YOLOv2-style detector with [shortcut] / [upsample]: its checkpoint computes what load_darknet computes, goes
    back to the same .weights bytes and cfg, and the predict API returns boxes inside the image."""
    from yolo9000 import Detector

    cfg = tmp_path / "res.cfg"
    cfg.write_text(RESIDUAL_DETECTOR)
    net = randomize(DarknetNet(parse_cfg_text(RESIDUAL_DETECTOR)), seed=3)
    assert net.out_channels == 21 and net.num_classes == 2
    weights = tmp_path / "res.weights"
    save_weights(net, weights, seen=64)
    ckpt = tmp_path / "res.ckpt"
    torch.save(darknet_to_checkpoint(cfg, weights), ckpt)
    module = load_module(ckpt).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = module(x)
        assert out.shape == (2, 21, 2, 2)
        assert torch.equal(out, load_darknet(cfg, weights)(x))
    checkpoint_to_darknet(ckpt, tmp_path / "back.weights", tmp_path / "back.cfg")
    assert (tmp_path / "back.weights").read_bytes() == weights.read_bytes()
    assert (tmp_path / "back.cfg").read_bytes() == cfg.read_bytes()
    det = Detector.from_checkpoint(ckpt)
    image = (np.random.default_rng(0).random((48, 80, 3)) * 255).astype(np.uint8)
    (res,) = det.predict([image], size=64, conf=0.0)
    assert len(res.scores) > 0
    assert float(res.boxes[:, [0, 2]].min()) >= 0 and float(res.boxes[:, [0, 2]].max()) <= 80
    assert float(res.boxes[:, [1, 3]].max()) <= 48


# ---------------------------------------------------------------------------------------------------------- crop
CROP_NET = "[net]\nheight=4\nwidth=6\nchannels=1\n[crop]\ncrop_height=2\ncrop_width=3\n"


def test_crop_takes_the_centre_window_as_2x_minus_1_in_eval() -> None:
    """forward_crop_layer at test time: dh = (4 - 2) / 2 = 1, dw = (6 - 3) / 2 = 1 (rounded down), values times 2
    minus 1; ``noadjust=1`` keeps the values."""
    x = torch.arange(24.0).view(1, 1, 4, 6) / 24
    want = x[0, 0, 1:3, 1:4]
    assert torch.equal(net_of(CROP_NET)(x)[0, 0], want * 2 - 1)
    assert torch.equal(net_of(CROP_NET + "noadjust=1\n")(x)[0, 0], want)
    spec = layer_specs(parse_cfg_text(CROP_NET))[0]
    assert spec.out_hw == (2, 3) and spec.in_hw == (4, 6) and spec.params == 0


def test_crop_at_another_size_keeps_the_height_fraction_on_both_sides() -> None:
    """resize_crop_layer: scale = crop_height / height (float), both sides int(scale * side): 224 of 256 at a
    300 x 400 input is int(0.875 * 300) x int(0.875 * 400) = 262 x 350, centred at (19, 25); at the [net] size the
    cfg's own window, whatever the two fractions."""
    layer = DarknetCrop((224, 200), (256, 256), adjust=False).eval()
    assert layer.window(256, 256) == (224, 200)
    x = torch.rand(1, 2, 300, 400)
    assert torch.equal(layer(x), x[..., 19:281, 25:375])
    third = DarknetCrop((100, 100), (300, 300))  # float32(1/3) * 600 = 200.000004 -> 200
    assert third.window(600, 90) == (200, 30)


def test_crop_in_training_moves_and_flips_the_window_once_per_batch() -> None:
    """Training: one random offset in [0, H - h] x [0, W - w] for the batch and, with flip=1, a mirror half the time
    (darknet's CPU layer); without flip never a mirror."""
    x = torch.arange(2 * 4 * 6, dtype=torch.float32).view(2, 1, 4, 6)
    windows = {(dh, dw, f): (x[..., dh : dh + 2, dw : dw + 3].flip(-1) if f else x[..., dh : dh + 2, dw : dw + 3])
               for dh in range(3) for dw in range(4) for f in (False, True)}  # fmt: skip
    torch.manual_seed(0)
    for flip in (True, False):
        layer = DarknetCrop((2, 3), (4, 6), flip=flip, adjust=False).train()
        seen = set()
        for _ in range(60):
            out = layer(x)
            match = [k for k, v in windows.items() if torch.equal(out, v)]  # both images the same window
            assert len(match) == 1
            seen.add(match[0])
        assert len({k[:2] for k in seen}) > 4
        assert {k[2] for k in seen} == ({False, True} if flip else {False})


def test_crop_feeds_a_connected_layer_its_window_and_refuses_what_cannot_fit() -> None:
    """darknet's AlexNet / VGG-16 shape: [crop] 224 of a 256 [net], so a [connected] after a stride-32 conv takes
    8 x 7 x 7 inputs (not 8 x 8 x 8); a window larger than the input, or no [net] size, is an error naming the line."""
    text = (
        "[net]\nheight=256\nwidth=256\nchannels=3\n[crop]\ncrop_height=224\ncrop_width=224\nflip=1\nangle=0\n"
        "saturation=1\nexposure=1\n[convolutional]\nfilters=8\nsize=32\nstride=32\npad=0\nactivation=relu\n"
        "[connected]\noutput=5\nactivation=linear\n[softmax]\ngroups=1\n"
    )
    specs = layer_specs(parse_cfg_text(text))
    assert specs[2].in_features == 8 * 7 * 7
    net = randomize(net_of(text), seed=3)
    assert net(torch.rand(2, 3, 256, 256)).shape == (2, 5)
    with pytest.raises(
        ValueError, match=r"<cfg>:\d+: \[crop\] crop_height=300 crop_width=224 does not fit its 256 x 256"
    ):
        layer_specs(parse_cfg_text(text.replace("crop_height=224", "crop_height=300")))
    with pytest.raises(ValueError, match=r"\[crop\] needs an image before it"):
        layer_specs(parse_cfg_text(text.replace("height=256\nwidth=256\n", "")))


def test_crop_network_round_trips_its_weights_and_is_no_detector(tmp_path: Path) -> None:
    """A [crop] classifier's .weights (the crop holds none) write back byte for byte; model=darknet refuses a
    detector cfg with a [crop] (its window would move the image under the boxes)."""
    from yolo9000.darknet import darknet_detector

    text = (
        CROP_NET.replace("channels=1", "channels=3")
        + "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n[avgpool]\n"
    )
    cfg = tmp_path / "crop.cfg"
    cfg.write_text(text)
    weights = tmp_path / "crop.weights"
    save_weights(randomize(net_of(text), seed=4), weights, seen=12)
    net = load_darknet(cfg, weights)
    save_weights(net, tmp_path / "back.weights", seen=12)
    assert (tmp_path / "back.weights").read_bytes() == weights.read_bytes()
    detector = text.replace("filters=4", "filters=6").replace(
        "[avgpool]\n", "[region]\nanchors=1,1\nclasses=1\nnum=1\n"
    )
    (tmp_path / "det.cfg").write_text(detector)
    with pytest.raises(ValueError, match=r"det\.cfg:5: \[crop\] is a classifier's input layer"):
        darknet_detector(tmp_path / "det.cfg")
