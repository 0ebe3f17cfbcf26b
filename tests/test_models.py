"""Darknet-19 / YOLOv2 structure against darknet's numbers and the reorg fixtures."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import reorg_fixture_shape
from yolo9000.models import layers
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.models.layers import (
    DarknetConv,
    FusedConvLeaky,
    MaxPool2x2,
    MaxPoolSame,
    fold_batch_norms,
    fold_input_scale,
    fuse_for_inference,
    init_weights_,
    reorg,
)
from yolo9000.models.yolov2 import YOLOv2

FIX = Path(__file__).parent / "fixtures"
VOC_ANCHORS = [
    [1.3221, 1.73145],
    [3.19275, 4.00944],
    [5.05587, 8.09892],
    [9.47112, 4.84053],
    [11.2364, 10.0071],
]


def n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters() if p.requires_grad)


@pytest.mark.parametrize("path", sorted(FIX.glob("reorg_*.npy")), ids=lambda p: p.stem)
def test_reorg_matches_darknet(path: Path) -> None:
    ref = np.load(path)
    shape, stride = reorg_fixture_shape(path)
    x = torch.arange(math.prod(shape)).reshape(shape)
    np.testing.assert_array_equal(reorg(x, stride).numpy(), ref)


def _darknet_reorg_loops(x: np.ndarray, stride: int) -> np.ndarray:
    """darknet's ``reorg_cpu(x, w, h, c, batch, stride, forward=0, out)`` as ``forward_reorg_layer`` calls it,
    transcribed loop for loop from its C source (the output buffer has the input's size)."""
    batch, c, h, w = x.shape
    flat, out = x.reshape(-1), np.empty(x.size, x.dtype)
    out_c = c // (stride * stride)
    for b in range(batch):
        for k in range(c):
            for j in range(h):
                for i in range(w):
                    in_index = i + w * (j + h * (k + c * b))
                    c2, offset = k % out_c, k // out_c
                    w2, h2 = i * stride + offset % stride, j * stride + offset // stride
                    out[in_index] = flat[w2 + w * stride * (h2 + h * stride * (c2 + out_c * b))]
    return out.reshape(batch, c * stride * stride, h // stride, w // stride)


@pytest.mark.parametrize(("shape", "stride"), [((2, 18, 6, 9), 3), ((1, 32, 8, 4), 4), ((1, 8, 2, 6), 2)])
def test_reorg_other_strides_and_rectangles(shape: tuple[int, int, int, int], stride: int) -> None:
    """Strides other than the fixtures' 2 and rectangular maps, against darknet's loops transcribed (a stride
    ignored, or H and W swapped, would differ)."""
    x = np.arange(math.prod(shape)).reshape(shape)
    np.testing.assert_array_equal(reorg(torch.from_numpy(x), stride).numpy(), _darknet_reorg_loops(x, stride))


def test_reorg_is_not_pixel_unshuffle() -> None:
    x = torch.arange(1 * 8 * 4 * 4).reshape(1, 8, 4, 4)
    assert not torch.equal(reorg(x), torch.nn.functional.pixel_unshuffle(x, 2))


def test_darknet_parameter_counts() -> None:
    assert n_params(Darknet19Classifier(Darknet19(), 1000)) == 20_842_376  # darknet19.cfg
    assert n_params(YOLOv2(Darknet19(), 20, VOC_ANCHORS)) == 50_655_389  # yolov2-voc.cfg
    assert n_params(YOLOv2(Darknet19(), 80, VOC_ANCHORS)) == 50_962_889  # yolov2.cfg (COCO)


@pytest.mark.parametrize("size", [64, 96, 160])
def test_output_layout_and_strides(size: int) -> None:
    m = YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS).eval()
    out = m(torch.rand(2, 3, size, size))
    assert out.shape == (2, 5 * (5 + 3), size // 32, size // 32)
    feats = m.backbone(torch.rand(1, 3, size, size))
    assert feats["c4"].shape[-1] == size // 16 and feats["c5"].shape[-1] == size // 32


def test_switches() -> None:
    bb = Darknet19(batch_norm=False, width=0.125)
    convs = [m for m in bb.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 18 and all(c.bias is not None for c in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in bb.modules())
    no_pt = YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS, passthrough=False)
    with_pt = YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS, passthrough=True)
    assert n_params(with_pt) > n_params(no_pt)
    assert no_pt(torch.rand(1, 3, 64, 64)).shape == (1, 40, 2, 2)
    free = YOLOv2(Darknet19(width=0.125), 3, None, num_boxes=2)
    assert free.anchors.shape == (2, 2) and not free.bias_match
    fc = YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS, head="fc", fc_grid=2, fc_hidden=32)
    assert fc(torch.rand(2, 3, 64, 64)).shape == (2, 40, 2, 2)
    with pytest.raises(ValueError, match="fc head"):
        fc(torch.rand(1, 3, 96, 96))
    with pytest.raises(ValueError, match="location"):
        YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS, location="bogus")  # type: ignore[arg-type]


def test_darknet_init_keeps_a_bn_free_network_alive() -> None:
    """darknet's initialisation (make_convolutional_layer / make_connected_layer): conv weights N(0, 2 / fan_in),
    fc weights U(-sqrt(2 / in), sqrt(2 / in)), biases 0. Through a BN-free Darknet-19 + fc head (Table 2's YOLO
    column) it keeps the output varying with the input; PyTorch's default init shrinks it to nearly a constant."""
    torch.manual_seed(0)

    def net(init: str) -> YOLOv2:
        bb = Darknet19(batch_norm=False, width=0.25)
        return YOLOv2(bb, 3, None, num_boxes=2, head="fc", fc_grid=2, fc_hidden=64, passthrough=False, init=init)

    dk, pt = net("darknet"), net("torch")
    convs = [m for m in dk.modules() if isinstance(m, torch.nn.Conv2d)]
    big = max(convs, key=lambda m: m.weight.numel())
    fan_in = big.in_channels * big.kernel_size[0] * big.kernel_size[1]
    assert big.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    biases = [m.bias.detach() for m in convs if m.bias is not None]
    assert biases and all(float(b.abs().max()) == 0 for b in biases)  # BN-free convs have biases: all 0
    fc1 = next(m for m in dk.modules() if isinstance(m, torch.nn.Linear))
    bound = (2 / fc1.in_features) ** 0.5
    assert bound * 0.95 < float(fc1.weight.detach().abs().max()) <= bound
    x = torch.rand(4, 3, 64, 64)
    with torch.no_grad():
        spread_dk = dk(x).std(0).mean().item()  # how much the output changes from image to image
        spread_pt = pt(x).std(0).mean().item()
    assert spread_dk > 1000 * spread_pt  # measured: 3.5e-3 vs 5e-10
    bn = Darknet19(width=0.125)
    for m in bn.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.fill_(3.0)
    init_weights_(bn)
    assert all(float(m.weight.detach().min()) == 1 for m in bn.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with pytest.raises(ValueError, match="init"):
        init_weights_(bn, "xavier")  # type: ignore[arg-type]


def test_maxpool_same_keeps_size() -> None:
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    y = MaxPoolSame(2, 1)(x)
    assert y.shape == x.shape
    assert y[0, 0, 0, 0] == 5.0 and y[0, 0, 3, 3] == 15.0 and y[0, 0, 3, 0] == 13.0


def test_bn_is_darknet_like() -> None:
    bn = next(m for m in Darknet19(width=0.125).modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.momentum == pytest.approx(0.01)
    leaky = next(m for m in Darknet19(width=0.125).modules() if isinstance(m, torch.nn.LeakyReLU))
    assert leaky.negative_slope == pytest.approx(0.1)


def test_gflops_match_darknet() -> None:
    from yolo9000.results import model_stats

    stats = model_stats(YOLOv2(Darknet19(), 20, VOC_ANCHORS), 416)
    assert stats["params"] == 50_655_389
    # darknet prints 29.371 BFLOPs for yolov2-voc at 416 (conv multiply-adds x 2, the paper's "29.4")
    assert stats["gflops"] == pytest.approx(29.37, rel=0.01)


def _random_bn_stats(net: torch.nn.Module, seed: int) -> None:
    """Running statistics and affine parameters far from a fresh BN's, variances down to 1e-4 (where darknet's
    ``sqrt(var) + eps`` and PyTorch's ``sqrt(var + eps)`` give different outputs)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            n = bn.num_features
            bn.weight.copy_(1 + 0.3 * torch.randn(n, generator=g))
            bn.bias.copy_(0.3 * torch.randn(n, generator=g))
            bn.running_mean.copy_(0.2 * torch.randn(n, generator=g))
            bn.running_var.copy_(10 ** (-4 + 4 * torch.rand(n, generator=g)))


@pytest.mark.parametrize("bn_style", ["torch", "darknet"])
def test_fold_batch_norms_computes_the_eval_network(bn_style: str) -> None:
    net = YOLOv2(Darknet19(width=0.125, bn_style=bn_style), 3, VOC_ANCHORS, passthrough=True)
    _random_bn_stats(net, seed=1)
    net.train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    folded = fold_batch_norms(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    convs = [m for m in folded.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(c.bias is not None and not c.weight.requires_grad for c in convs)
    # the source network is untouched: still training, its BNs and tensors as they were
    assert net.training and sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == len(convs) - 1
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    x = torch.rand(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        want = net.eval()(x)
        got = folded(x)
    assert got.shape == want.shape
    assert torch.allclose(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    # the style matters at these variances: folding with the other formula would not pass the check above
    other = YOLOv2(Darknet19(width=0.125, bn_style="darknet" if bn_style == "torch" else "torch"), 3, VOC_ANCHORS)
    other.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert not torch.allclose(other.eval()(x), want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))


def test_fold_batch_norms_darknet_conv_with_and_without_bn() -> None:
    net = torch.nn.Sequential(
        DarknetConv(3, 8, 3, padding=1, batch_norm=True, activation="leaky"),
        DarknetConv(8, 4, 1, batch_norm=False, activation="linear"),
    )
    _random_bn_stats(net, seed=2)
    folded = fold_batch_norms(net)
    assert isinstance(folded[0].bn, torch.nn.Identity) and folded[0].conv.bias is not None
    assert torch.equal(folded[1].conv.bias, net[1].conv.bias)  # no BN: the conv as it was
    x = torch.randn(1, 3, 10, 10)
    with torch.no_grad():
        assert torch.allclose(folded(x), net.eval()(x), atol=1e-4)


def _cfg(first: str) -> str:
    """A darknet cfg whose first layer is ``first`` (a section's text), then a conv-BN-leaky and a 1x1 linear conv,
    the second conv routed with the first layer's output (a route names layers, never the input)."""
    conv = "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n"
    head = "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n"
    return f"[net]\nheight=32\nwidth=32\nchannels=3\n\n{first}\n{conv}\n[route]\nlayers=-1,-2\n\n{head}"


@pytest.mark.parametrize("kind", ["yolov2", "darknet_cfg"])
def test_fold_input_scale_makes_the_network_take_pixels(kind: str) -> None:
    """After folding 1 / 255 into the input conv, the network given 0-255 pixels computes what it computed for
    pixels / 255; only that conv's weights changed (its bias too stays: a conv with a bias, the BN folded, or
    a plain one). Folding twice is refused."""
    from yolo9000.darknet.net import darknet_net_from_text

    if kind == "yolov2":
        net = YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS)
        _random_bn_stats(net, seed=3)
        net = fold_batch_norms(net)  # the input conv now has a bias
        size = 64
    else:
        first = "[convolutional]\nfilters=4\nsize=3\nstride=1\npad=1\nactivation=leaky\n"  # a bias, no BN
        net = darknet_net_from_text(_cfg(first)).eval()
        with torch.no_grad():
            net.input_conv().bias.normal_(0, 0.5)
        size = 32
    conv = net.input_conv()
    assert isinstance(conv, torch.nn.Conv2d) and conv.bias is not None
    before = {k: v.clone() for k, v in net.state_dict().items()}
    pixels = torch.randint(0, 256, (2, 3, size, size), generator=torch.Generator().manual_seed(0)).float()
    with torch.no_grad():
        want = net(pixels / 255)
        assert fold_input_scale(net, 1 / 255) and net.folded_input_scale == pytest.approx(1 / 255)
        got = net(pixels)
        unscaled = net(pixels / 255)  # what a caller that still divides would get: not the network's output
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))
    assert not torch.allclose(unscaled, want, rtol=1e-2, atol=1e-2 * float(want.abs().max()))
    changed = [k for k, v in net.state_dict().items() if not torch.equal(v, before[k])]
    weight = next(k for k, p in net.named_parameters() if p is conv.weight)
    assert changed == [weight]
    torch.testing.assert_close(conv.weight, before[weight] / 255)
    with pytest.raises(ValueError, match="folded into it already"):
        fold_input_scale(net, 1 / 255)


def test_fold_input_scale_leaves_a_network_without_an_input_conv() -> None:
    """A cfg that starts with a maxpool, and a module without ``input_conv``: nothing folded, nothing changed."""
    from yolo9000.darknet.net import darknet_net_from_text

    net = darknet_net_from_text(_cfg("[maxpool]\nsize=2\nstride=1\n"))
    assert net.input_conv() is None
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert not fold_input_scale(net, 1 / 255) and getattr(net, "folded_input_scale", None) is None
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())
    plain = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    w = plain[0].weight.detach().clone()
    assert not fold_input_scale(plain, 1 / 255) and torch.equal(plain[0].weight, w)


def _counting_pointwise_op(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Patch the fused conv op with a wrapper that records the activation of every call it runs."""
    op = layers._pointwise_conv_op()
    assert op is not None, "this PyTorch build has no oneDNN fused convolution"
    calls: list[str] = []

    def counting(*args: object) -> torch.Tensor:
        calls.append(str(args[7]))
        return op(*args)

    monkeypatch.setattr(layers, "_pointwise_conv_op", lambda: counting)
    return calls


@pytest.mark.parametrize("channels_last", [True, False])
def test_fuse_for_inference_computes_the_folded_network(monkeypatch: pytest.MonkeyPatch, channels_last: bool) -> None:
    """Every conv + leaky pair of Darknet-19 / YOLOv2 is fused (18, extra 2, passthrough 1, after the concat 1),
    every 2 x 2 pool (5) replaced; batch 2 runs the fused op once per pair, batch 1 never; both give the folded
    network's output, negative pre-activations included (a ReLU, or a slope other than 0.1, would not)."""
    net = YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS, passthrough=True)
    _random_bn_stats(net, seed=4)
    folded = fold_batch_norms(net)
    fused = fold_batch_norms(net)
    pairs = sum(isinstance(m, torch.nn.LeakyReLU) for m in folded.modules())
    assert pairs == 22 and fuse_for_inference(fused) == pairs + 5
    assert sum(isinstance(m, FusedConvLeaky) for m in fused.modules()) == pairs
    assert sum(isinstance(m, MaxPool2x2) for m in fused.modules()) == 5
    assert not any(isinstance(m, torch.nn.LeakyReLU) for m in fused.modules())
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    folded, fused = folded.to(memory_format=fmt), fused.to(memory_format=fmt)
    calls = _counting_pointwise_op(monkeypatch)
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0)).contiguous(memory_format=fmt)
    with torch.no_grad():
        want = folded(x)
        got = fused(x)
        assert calls == ["leaky_relu"] * pairs
        one = fused(x[:1])
    assert len(calls) == pairs  # batch 1: the two ops
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    torch.testing.assert_close(one, want[:1], rtol=1e-5, atol=1e-5 * float(want.abs().max()))
    relu = fold_batch_norms(net)
    for m in relu.modules():
        for name, child in list(m._modules.items()):
            if isinstance(child, torch.nn.LeakyReLU):
                setattr(m, name, torch.nn.ReLU())
    with torch.no_grad():
        assert not torch.allclose(relu.to(memory_format=fmt)(x), want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


def test_fused_sibling_shares_the_weights() -> None:
    """The fused sibling holds the network's own parameter tensors: a change made in place to one shows in the
    other (a Detector folds its input scale or moves to NHWC once, for both), and it computes the same."""
    net = fold_batch_norms(YOLOv2(Darknet19(width=0.125), 3, VOC_ANCHORS))
    sibling, count = layers.fused_sibling(net)
    assert count == 22 + 5 and sibling is not net
    pairs = list(zip(net.parameters(), sibling.parameters(), strict=True))
    assert pairs and all(a is b for a, b in pairs)
    assert not any(isinstance(m, FusedConvLeaky) for m in net.modules())
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        net.input_conv().weight.mul_(2.0)
        want = net(x)
        torch.testing.assert_close(sibling(x), want, rtol=1e-5, atol=1e-5 * float(want.abs().max()))


def test_fused_layers_run_the_plain_ops_when_gradients_are_wanted(monkeypatch: pytest.MonkeyPatch) -> None:
    """With gradients the fused conv runs conv + leaky (oneDNN's fused op has no backward) and the pool its own
    max pool, whose gradient goes to one element of a tied block (two maxima would split it: 0.25 each)."""
    calls = _counting_pointwise_op(monkeypatch)
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    fused = FusedConvLeaky(conv, 0.1)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = fused(x)
    y.sum().backward()
    assert calls == [] and x.grad is not None
    torch.testing.assert_close(y, torch.nn.functional.leaky_relu(conv(x), 0.1))
    pool = MaxPool2x2(torch.nn.MaxPool2d(2, 2, ceil_mode=True))
    flat = torch.ones(2, 1, 4, 4, requires_grad=True)
    pool(flat).sum().backward()
    assert flat.grad is not None
    assert sorted(flat.grad.unique().tolist()) == [0.0, 1.0] and float(flat.grad.sum()) == 2 * 4
    with torch.no_grad():  # no gradients: the maxima, the same values
        ties = pool(torch.ones(2, 1, 4, 4))
    assert torch.equal(ties, torch.ones(2, 1, 2, 2))


@pytest.mark.parametrize("hw", [(6, 10), (7, 10), (7, 9)])
def test_max_pool_2x2_takes_each_block_and_leaves_odd_sides_to_the_pool(hw: tuple[int, int]) -> None:
    """Even sides: each 2 x 2 block's maximum (hand-made blocks whose maxima sit at every corner); an odd side:
    the replaced pool's own result (ceil mode: a last half block)."""
    h, w = hw
    x = torch.zeros(2, 3, h, w)
    for i in range(h // 2):
        for j in range(w // 2):
            corner = (i + j) % 4  # the block's maximum at each corner in turn
            x[:, :, 2 * i + corner // 2, 2 * j + corner % 2] = 1.0 + i * w + j
    x = x - 5.0  # negative values elsewhere: a zero-padded pool would differ
    pool = torch.nn.MaxPool2d(2, 2, ceil_mode=True)
    with torch.no_grad():
        got = MaxPool2x2(pool)(x)
        want = pool(x)
    assert got.shape == want.shape == (2, 3, -(-h // 2), -(-w // 2))
    assert torch.equal(got, want)
    if h % 2 == 0 and w % 2 == 0:
        blocks = torch.tensor([[1.0 + i * w + j for j in range(w // 2)] for i in range(h // 2)]) - 5.0
        assert torch.equal(got[0, 0], blocks)


@pytest.mark.parametrize(
    ("stride", "padding", "dilation", "groups", "bias"),
    [(2, 1, 1, 1, True), (1, 2, 2, 1, False), (1, (1, 0), 1, 2, True), (2, 0, 1, 4, False)],
)
def test_fused_conv_leaky_takes_any_conv_geometry(
    monkeypatch: pytest.MonkeyPatch, stride: int, padding: int | tuple[int, int], dilation: int, groups: int, bias: bool
) -> None:
    """Strides, uneven paddings, dilations, groups and no bias: the fused op (it ran) gives conv + leaky ReLU."""
    calls = _counting_pointwise_op(monkeypatch)
    conv = torch.nn.Conv2d(8, 12, 3, stride, padding, dilation, groups, bias=bias)
    x = torch.randn(2, 8, 17, 15, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        want = torch.nn.functional.leaky_relu(conv(x), 0.1)
        got = FusedConvLeaky(conv, 0.1)(x.contiguous(memory_format=torch.channels_last))
    assert calls == ["leaky_relu"]
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_fused_conv_leaky_falls_back_under_autocast_and_refuses_same_padding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under CPU autocast (bf16) the conv runs as autocast has it, not fused in float32; a conv whose padding is
    the word ``same`` is no fused conv (the pass leaves it; built directly, refused)."""
    calls = _counting_pointwise_op(monkeypatch)
    conv = torch.nn.Conv2d(4, 4, 3, padding=1)
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y = FusedConvLeaky(conv, 0.1)(x)
    assert calls == [] and y.dtype == torch.bfloat16
    same = torch.nn.Conv2d(4, 4, 3, padding="same")
    with pytest.raises(ValueError, match="numeric zero padding"):
        FusedConvLeaky(same, 0.1)
    seq = torch.nn.Sequential(same, torch.nn.LeakyReLU(0.1))
    assert fuse_for_inference(seq) == 0 and isinstance(seq[0], torch.nn.Conv2d)


def test_fuse_for_inference_on_a_darknet_cfg() -> None:
    """darknet's stride-2 maxpool (padding 1 after, never reached on an even side) becomes the maxima; the
    stride-1 one (yolov2-tiny's, keeping the size) stays; a linear conv stays a conv. The same output."""
    from yolo9000.darknet.net import darknet_net_from_text

    text = (
        "[net]\nheight=32\nwidth=32\nchannels=3\n\n"
        "[convolutional]\nbatch_normalize=1\nfilters=8\nsize=3\nstride=1\npad=1\nactivation=leaky\n\n"
        "[maxpool]\nsize=2\nstride=2\n\n[maxpool]\nsize=2\nstride=1\n\n"
        "[convolutional]\nfilters=6\nsize=1\nstride=1\npad=1\nactivation=linear\n"
    )
    net = darknet_net_from_text(text)
    _random_bn_stats(net, seed=5)
    folded = fold_batch_norms(net)
    fused = fold_batch_norms(net)
    assert fuse_for_inference(fused) == 2
    kinds = [type(m).__name__ for m in fused.layers]
    assert kinds == ["DarknetConv", "MaxPool2x2", "MaxPoolSame", "DarknetConv"]
    assert isinstance(fused.layers[0].conv, FusedConvLeaky) and isinstance(fused.layers[3].conv, torch.nn.Conv2d)
    x = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(fused(x), folded(x), rtol=1e-5, atol=1e-5)


def _counting_narrow_bn(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Patch the narrow NHWC batch norm's autograd function to record the channel count of every batch it takes."""
    orig = layers._NarrowNhwcBatchNorm.apply
    calls: list[int] = []

    def counting(x: torch.Tensor, *rest: object) -> torch.Tensor:
        calls.append(int(x.shape[1]))
        return orig(x, *rest)

    monkeypatch.setattr(layers._NarrowNhwcBatchNorm, "apply", counting)
    return calls


@pytest.mark.parametrize(
    ("channels", "momentum", "spread", "mean"), [(8, 0.01, 3.0, 2.0), (3, 0.1, 3.0, 2.0), (5, None, 0.05, 40.0)]
)
def test_narrow_nhwc_batch_norm_trains_as_pytorchs(
    monkeypatch: pytest.MonkeyPatch, channels: int, momentum: float | None, spread: float, mean: float
) -> None:
    """A training step of an NHWC batch of few channels: the same output, running statistics and batch count as
    ``nn.BatchNorm2d``'s, and gradients of the input, weight and bias equal to a float64 ``nn.BatchNorm2d``'s
    within float32 rounding (an NHWC and an NCHW upstream gradient; a mean 800 times the spread too); the narrow
    backward ran for each step."""
    calls = _counting_narrow_bn(monkeypatch)
    g = torch.Generator().manual_seed(channels)
    x0 = torch.randn(3, channels, 20, 24, generator=g) * spread + mean
    x0 = x0.contiguous(memory_format=torch.channels_last)
    ours, ref = layers.BatchNorm2d(channels, momentum=momentum), torch.nn.BatchNorm2d(channels, momentum=momentum)
    with torch.no_grad():
        ref.weight.uniform_(0.5, 1.5, generator=g)
        ref.bias.uniform_(-1, 1, generator=g)
    ours.load_state_dict(ref.state_dict())
    ref64 = torch.nn.BatchNorm2d(channels, momentum=momentum).double()
    ref64.load_state_dict(ref.state_dict())
    for step, layout in enumerate((torch.channels_last, torch.contiguous_format)):
        upstream = torch.randn(3, channels, 20, 24, generator=g).contiguous(memory_format=layout)
        grads = []
        for bn, dtype in ((ours, torch.float32), (ref, torch.float32), (ref64, torch.float64)):
            x = x0.detach().to(dtype, copy=True).requires_grad_(True)
            y = bn(x)
            y.backward(upstream.to(dtype))
            grads.append((y, x.grad, bn.weight.grad, bn.bias.grad))
            bn.zero_grad(set_to_none=True)
        assert len(calls) == step + 1 and grads[0][0].is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(grads[0][0], grads[1][0])  # PyTorch's own forward
        for got, native, want in zip(grads[0][1:], grads[1][1:], grads[2][1:], strict=True):
            # within PyTorch's own float32 error (at least 1e-5 of the largest gradient)
            tol = max(1e-5, 2 * float((native.double() - want).abs().max() / want.abs().max()))
            torch.testing.assert_close(got, want.float(), rtol=tol, atol=tol * float(want.abs().max()))
        assert torch.equal(ours.running_mean, ref.running_mean) and torch.equal(ours.running_var, ref.running_var)
        assert int(ours.num_batches_tracked) == int(ref.num_batches_tracked) == step + 1
    # a wrong backward (the batch statistics' own gradient left out: grad * weight * invstd) is told apart
    x = x0.detach().clone().requires_grad_(True)
    ours(x).backward(upstream)
    naive = upstream * (ours.weight / torch.sqrt(x0.var(dim=(0, 2, 3), correction=0) + ours.eps)).view(1, -1, 1, 1)
    assert not torch.allclose(x.grad, naive, rtol=1e-2, atol=1e-3)


def test_narrow_batch_norm_compiles_as_pytorchs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``torch.compile`` (aot_eager: PyTorch's own kernels) the graph holds PyTorch's batch norm, not the
    narrow autograd function; the compiled step's output, gradients and running statistics equal the eager one's."""
    calls = _counting_narrow_bn(monkeypatch)
    torch.manual_seed(7)
    eager = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), layers.BatchNorm2d(8), torch.nn.LeakyReLU(0.1))
    eager = eager.to(memory_format=torch.channels_last)
    twin = copy.deepcopy(eager)
    compiled = torch.compile(twin, backend="aot_eager")
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    outs = []
    for net in (eager, compiled):
        y = net(x)
        y.square().mean().backward()
        outs.append(y.detach())
    assert calls == [8]  # the eager step only
    torch.testing.assert_close(outs[1], outs[0], rtol=1e-5, atol=1e-5)
    for a, b in zip(eager.parameters(), twin.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(twin[1].running_var, eager[1].running_var)
    assert int(twin[1].num_batches_tracked) == int(eager[1].num_batches_tracked) == 1


def test_batch_norm_leaves_other_batches_to_pytorch(monkeypatch: pytest.MonkeyPatch) -> None:
    """16 channels and more, an NCHW batch, evaluation and no-gradient passes: nn.BatchNorm2d's own path."""
    calls = _counting_narrow_bn(monkeypatch)
    for channels, layout, train, grad in [
        (16, torch.channels_last, True, True),
        (8, torch.contiguous_format, True, True),
        (8, torch.channels_last, False, True),
        (8, torch.channels_last, True, False),
    ]:
        bn = layers.BatchNorm2d(channels).train(train)
        x = torch.randn(2, channels, 6, 6).contiguous(memory_format=layout)
        with torch.set_grad_enabled(grad):
            torch.testing.assert_close(bn(x), torch.nn.BatchNorm2d(channels).train(train)(x))
    assert calls == []
    assert isinstance(layers.make_batch_norm(8), layers.BatchNorm2d)


def test_yes_no_switches_refuse_other_values() -> None:
    """``model.net.passthrough=maybe`` reached the network as the string "maybe" (true to Python): the sweep job
    trained with the passthrough and reported an ordinary row. A switch that is no bool is refused, naming it;
    the composed sweep value goes the same way."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    from conftest import compose_config
    from yolo9000.data.multiscale import MultiScaleBatchSampler

    with pytest.raises(TypeError, match="YOLOv2: passthrough must be true or false, got 'maybe'"):
        YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0]], passthrough="maybe")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Darknet19: batch_norm must be true or false, got 1"):
        Darknet19(batch_norm=1, width=0.125)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="data.multiscale: enabled must be true or false, got 'no'"):
        MultiScaleBatchSampler(range(4), 2, False, [64], enabled="no", fixed_size=64)  # type: ignore[arg-type]
    cfg = compose_config("train", "model.net.passthrough=maybe", "model.net.backbone.width=0.125")
    with pytest.raises(InstantiationException, match="passthrough must be true or false"):
        instantiate(cfg.model.net, num_classes=3, anchors=[[1.0, 1.0]])
    assert YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0]], passthrough=False).passthrough is False
