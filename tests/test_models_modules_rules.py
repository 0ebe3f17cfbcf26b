"""Rules of the networks (:mod:`yolo9000.models.darknet19`, :mod:`yolo9000.models.yolov2`) and the Lightning modules
(:mod:`yolo9000.modules.base`, :mod:`yolo9000.modules.detector`, :mod:`yolo9000.modules.pretrained`,
:mod:`yolo9000.modules.schedules`), each checked against a hand-computed value, darknet's documented behaviour
(cfg/darknet19.cfg, cfg/yolov2-voc.cfg, ``get_current_rate``) or a property a user relies on (found by mutation
testing of these modules).

Every network here is a width-0.125 Darknet-19 (8 to 128 filters) on 32 to 96 pixel inputs, so the whole file runs in
seconds on a CPU.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn

from yolo9000.loss import RegionLoss
from yolo9000.models.darknet19 import ClassifierHead, Darknet19, Darknet19Classifier, scaled
from yolo9000.models.layers import DarknetBatchNorm2d, Reorg
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules import base, detector
from yolo9000.modules.base import _skips_on_device
from yolo9000.modules.detector import (
    DetectorModule,
    check_decode_settings,
    evaluated_names,
    resolve_map,
    to_evaluated,
)
from yolo9000.modules.pretrained import _darknet_bn, fold_batch_norm, load_pretrained
from yolo9000.modules.schedules import DarknetPoly, darknet_optimization, param_groups
from yolo9000.wordtree import WordTree

WIDTH = 0.125  # 8 .. 128 filters
SMALL_TREE = Path(__file__).parent / "fixtures" / "small.tree"  # 12 nodes: animal, vehicle, dog, cat, bird, car...


def _hp(**kw: Any) -> SimpleNamespace:
    """A module's optimisation hyper-parameters (darknet's defaults, burn-in off)."""
    hp = {"optimizer": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "lr_policy": "steps", "power": 4.0}
    return SimpleNamespace(**{**hp, "burn_in": 0, "steps": None, "scales": None, **kw})


def _tiny(anchors: list[list[float]] | None = None, **kw: Any) -> YOLOv2:
    """A width-0.125 YOLOv2 with 3 classes and 2 priors."""
    backbone = kw.pop("backbone", None) or Darknet19(width=WIDTH)
    return YOLOv2(backbone, 3, [[1.0, 1.0], [2.0, 2.0]] if anchors is None else anchors, **kw)


def _module(**kw: Any) -> DetectorModule:
    """A detector module around :func:`_tiny`, its logging calls silenced (no trainer)."""
    module = DetectorModule(_tiny(), RegionLoss, **kw)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    return module


# --------------------------------------------------------------------------------------------------- schedules
def test_poly_rate_stays_zero_past_the_end_of_the_run() -> None:
    """``policy=poly``: lr * (1 - batch / max_batches)^power reaches 0 at the run's end and stays there; an even
    power must not bring the rate back as (negative)^4 for a step past the end (batch 15 of 10: 0, not 0.5^4)."""
    p = DarknetPoly(10, power=4.0)
    assert p(9) == 0.0  # batch 10 of 10
    assert p(14) == 0.0  # batch 15 of 10


def test_frozen_parameters_are_left_out_of_the_optimizer() -> None:
    """A parameter with ``requires_grad=False`` (a frozen backbone) is in neither decay group: the optimizer would
    decay it otherwise (darknet's weight decay moves a weight whatever its gradient)."""
    model = _tiny()
    for p in model.backbone.parameters():
        p.requires_grad_(False)
    decay, no_decay = param_groups(model, 5e-4)
    frozen = {id(p) for p in model.backbone.parameters()}
    grouped = [id(p) for p in decay["params"] + no_decay["params"]]
    assert not frozen & set(grouped)
    assert len(grouped) == sum(1 for p in model.parameters() if p.requires_grad)


def test_sgd_gets_the_configured_momentum() -> None:
    """``momentum`` of the hyper-parameters is SGD's momentum (darknet's cfg ``momentum=0.9``; here 0.5)."""
    opt = darknet_optimization(nn.Conv2d(1, 1, 1), _hp(momentum=0.5), total_steps=10)["optimizer"]
    assert all(g["momentum"] == 0.5 for g in opt.param_groups)


# --------------------------------------------------------------------------------------------- the base module
def test_seen_reads_the_buffer_again_after_training_ends() -> None:
    """While fitting, ``seen_images`` is the host's count; after ``on_train_end`` it is the buffer again (a later
    edit or load of the buffer shows)."""
    module = _module()
    module.on_train_start()
    module.count_seen(4)
    assert module.seen_images == 4
    module.on_train_end()
    module.seen.fill_(100)
    assert module.seen_images == 100


def test_logs_are_written_outside_a_trainer() -> None:
    """Without a trainer every step counts as one the loggers write (the diagnostics are computed)."""
    assert _module().logs_written_this_step() is True


def test_setup_compiles_the_network_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``torch.compile`` runs for the first ``fit`` stage only: a second fit (or validate) on the same module must
    not compile the compiled network again."""
    calls: list[bool] = []
    monkeypatch.setattr(base, "apply_fast_path", lambda model, fast, compile: calls.append(compile))
    module = _module()
    module.setup("validate")
    module.setup("fit")
    module.setup("fit")
    module.setup("validate")
    assert calls == [False, True, False, False]


def test_nonfinite_warnings_first_ten_then_every_hundredth(caplog: pytest.LogCaptureFixture) -> None:
    """Skipped steps warn for each of the first 10, then every 100th: the 10th warns, the 11th does not, the 100th
    does."""
    module = _module()
    shown = []
    for before, total in [(9, 10), (10, 11), (99, 100), (100, 101)]:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=base.log.name):
            module._warn_nonfinite(before, total)
        shown.append(any("non-finite" in r.getMessage() for r in caplog.records))
    assert shown == [True, False, True, False]


def test_empty_training_batch_is_skipped_in_one_process_refused_in_several() -> None:
    """An empty batch (every image unreadable) is skipped with a warning in a single process; in a run of several
    processes a training step cannot be left out (DataError); a batch of one image is a batch."""
    from yolo9000.data.records import DataError

    module = _module()
    empty = {"images": torch.zeros(0, 3, 32, 32)}
    assert module.skip_empty_batch(empty, "train") is True
    assert module.skip_empty_batch({"images": torch.zeros(1, 3, 32, 32)}, "train") is False
    module._trainer = SimpleNamespace(world_size=2, global_rank=1)  # type: ignore[assignment]
    with pytest.raises(DataError, match="several processes"):
        module.skip_empty_batch(empty, "train")
    assert module.skip_empty_batch(empty, "val") is True  # evaluation adds nothing, in any process


def test_checkpoint_keeps_the_model_config() -> None:
    """The resolved model config goes into every checkpoint (eval / detect / convert rebuild the network from it)
    and comes back on load."""
    module = _module()
    module.model_config = {"_target_": "x.DetectorModule", "eval_size": 64}
    ckpt: dict[str, Any] = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["yolo9000_model_config"] == {"_target_": "x.DetectorModule", "eval_size": 64}
    other = _module()
    other.on_load_checkpoint(ckpt)
    assert other.model_config == ckpt["yolo9000_model_config"]


def test_checkpoint_load_drops_the_host_seen_count() -> None:
    """A checkpoint load restores the ``seen`` buffer: the host's count of a run before must not hide it."""
    module = _module()
    module.on_train_start()
    module.count_seen(8)
    module.seen.fill_(640)  # what load_state_dict restores
    module.on_load_checkpoint({})
    assert module.seen_images == 640


def _fused_sgd(params: list[nn.Parameter], momentum: float = 0.9) -> torch.optim.SGD:
    return torch.optim.SGD(params, lr=0.1, momentum=momentum, fused=True)


def test_device_skip_needs_every_stepped_parameter_state_and_no_scaler() -> None:
    """A fused step skips by ``found_inf`` only when every parameter with a gradient has its momentum (a first step
    of one of them would allocate state it then skipped initialising), all groups are fused, and no fp16 loss scaler
    owns ``found_inf``; SGD without momentum keeps no state and always can."""
    a, b = nn.Parameter(torch.ones(2)), nn.Parameter(torch.ones(2))
    opt = _fused_sgd([a, b])
    a.grad, b.grad = torch.ones(2), torch.ones(2)
    opt.state[a]["momentum_buffer"] = torch.zeros(2)  # a stepped before, b never did
    assert not _skips_on_device(opt, None, [a, b])
    assert _skips_on_device(opt, None, [a])
    scaled_trainer = SimpleNamespace(precision_plugin=SimpleNamespace(scaler=object()))
    assert not _skips_on_device(opt, scaled_trainer, [a])  # type: ignore[arg-type]
    opt.param_groups[0]["fused"] = False
    assert not _skips_on_device(opt, None, [a])
    plain = _fused_sgd([a, b], momentum=0.0)
    assert _skips_on_device(plain, None, [a, b])  # no state needed


def test_host_path_clears_a_found_inf_flag_and_the_device_counts() -> None:
    """A step on the host path (here: a plain, unfused SGD) clears the ``found_inf`` flag a fused step before left
    (else the fused kernel would skip a good step) and drops the device counters, so the epoch-end read does not
    restore their old counts."""
    module = _module(skip_nonfinite=3)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    opt.found_inf = torch.tensor(1.0)  # type: ignore[attr-defined]
    module._nonfinite_counts = torch.tensor([5, 2])
    module.skipped_steps, module._nonfinite_run = 1, 0
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    module.on_before_optimizer_step(opt)
    assert opt.found_inf is None  # type: ignore[attr-defined]
    module.on_train_epoch_end()
    assert (module.skipped_steps, module._nonfinite_run) == (1, 0)


def test_channels_last_batches() -> None:
    """``fast.channels_last``: the uint8 batch becomes float in [0, 1] in NHWC memory on the device."""
    module = DetectorModule(_tiny(), RegionLoss, fast={"channels_last": True})
    batch = module.on_after_batch_transfer({"images": torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)}, 0)
    assert batch["images"].is_contiguous(memory_format=torch.channels_last)
    assert not batch["images"].is_contiguous()
    assert batch["images"].max().item() == 1.0


# ------------------------------------------------------------------------------------------------- Darknet-19
def test_width_multiplier_rounds_to_multiples_of_four_at_least_eight() -> None:
    """``scaled``: channels * width rounded to the nearest multiple of 4 (reorg splits C in 4), at least 8; width 1
    is darknet's network unchanged. By hand: 64 * 0.3 = 19.2 -> 20; 32 * 0.125 = 4 -> 8; 1024 * 0.125 = 128;
    32 * 1.3 = 41.6 -> 40; 1000 * 1.0 = 1000 (not a multiple of 4 but darknet's)."""
    assert scaled(64, 0.3) == 20
    assert scaled(32, 0.125) == 8
    assert scaled(1024, 0.125) == 128
    assert scaled(32, 1.3) == 40
    assert scaled(1000, 1.0) == 1000
    assert scaled(512, 0.05) == 24  # 25.6 -> 24


def test_backbone_batch_norm_settings_reach_every_conv() -> None:
    """``bn_momentum`` and ``bn_style`` apply to all 18 BNs of the backbone (darknet's converted networks normalise
    with darknet's formula everywhere), and the output channel counts follow the width (c4: 512, c5: 1024)."""
    net = Darknet19(width=WIDTH, bn_momentum=0.05, bn_style="darknet")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 18
    assert all(isinstance(m, DarknetBatchNorm2d) and m.momentum == 0.05 for m in bns)
    assert (net.c4_channels, net.out_channels) == (64, 128)
    with pytest.raises(ValueError, match="bn_style"):
        Darknet19(width=WIDTH, bn_style="caffe")  # type: ignore[arg-type]


def test_classifier_head_is_a_biased_1x1_conv_averaged_over_the_map() -> None:
    """darknet19.cfg's classifier: a 1x1 conv to the classes with biases, then ``[avgpool]``: the logits are the
    mean of the conv over the map (here a conv of weight 1, bias 0.5 on a 2 x 2 map of 1, 2, 3, 6: 3 + 0.5)."""
    head = ClassifierHead(1, 1)
    assert head.conv.bias is not None
    with torch.no_grad():
        head.conv.weight.fill_(1.0)
        head.conv.bias.fill_(0.5)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    assert head(x).item() == pytest.approx(3.5)


def test_darknet_init_of_the_classifier() -> None:
    """``init=darknet`` initialises the whole classifier as darknet's ``make_convolutional_layer``: conv weights
    N(0, 2 / fan_in) (the head's 1x1 conv over 128 channels: std sqrt(2 / 128) = 0.125), every bias 0."""
    torch.manual_seed(0)
    net = Darknet19Classifier(Darknet19(width=WIDTH), 1000, init="darknet")
    w = net.head.conv.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / 128), rel=0.05)
    assert torch.count_nonzero(net.head.conv.bias) == 0


def test_odd_maps_round_up_at_the_maxpools() -> None:
    """darknet's maxpool rounds an odd side up: a 240-pixel input is 15 cells at stride 16 and 8 (not 7) at
    stride 32."""
    feats = Darknet19(width=WIDTH).eval()(torch.rand(1, 3, 240, 240))
    assert feats["c4"].shape[-2:] == (15, 15) and feats["c5"].shape[-2:] == (8, 8)


# ------------------------------------------------------------------------------------------------------ YOLOv2
def test_without_anchors_unit_priors_and_no_bias_match() -> None:
    """``anchors=None`` (Table 2's first columns): ``num_boxes`` predictors with a 1 x 1 cell prior, matched by
    the predicted shape (``bias_match`` off); with anchors, darknet's ``bias_match=1``."""
    m = YOLOv2(Darknet19(width=WIDTH), 3, None, num_boxes=3)
    assert m.anchors.tolist() == [[1.0, 1.0]] * 3 and m.bias_match is False
    assert _tiny().bias_match is True
    with pytest.raises(ValueError, match="anchors"):
        YOLOv2(Darknet19(width=WIDTH), 3, [[1.0, 2.0, 3.0]])


def test_head_normalises_like_the_backbone() -> None:
    """The head's BNs follow the backbone's style and momentum (a converted darknet network normalises darknet's
    way in every layer)."""
    m = _tiny(backbone=Darknet19(width=WIDTH, bn_style="darknet", bn_momentum=0.05))
    head_bns = [mod for name, mod in m.named_modules() if isinstance(mod, nn.BatchNorm2d) and "backbone" not in name]
    assert len(head_bns) == 4  # 2 extra convs, the passthrough 1x1, the fuse conv
    assert all(isinstance(b, DarknetBatchNorm2d) and b.momentum == 0.05 for b in head_bns)


def test_head_layout_as_yolov2_voc_cfg() -> None:
    """yolov2-voc.cfg's head at width 0.125: 2 extra 3x3x1024 convs (128), a 1x1x64 passthrough conv (8, scaled),
    reorg (4 * 8 = 32 channels), the 3x3x1024 fuse conv over 128 + 32 = 160 channels, and a biased 1x1 prediction
    conv to A * (5 + C) = 2 * 8 = 16 channels; ``fuse=False`` leaves the fuse conv out (yolo9000.cfg)."""
    m = _tiny()
    assert len(m.extra) == 2
    pt = m.pt_conv[0]
    assert (pt.in_channels, pt.out_channels, pt.kernel_size) == (64, 8, (1, 1))
    assert m.fuse[0].in_channels == 160 and m.fuse[0].kernel_size == (3, 3)
    assert m.pred.out_channels == 16 and m.pred.bias is not None and m.pred.kernel_size == (1, 1)
    assert isinstance(_tiny(fuse=False).fuse, nn.Identity)
    assert len(_tiny(extra_convs=0).extra) == 0 and len(_tiny(extra_convs=1).extra) == 1


def test_passthrough_features_come_first_as_darknet_route() -> None:
    """darknet's ``[route] layers=-1,-4``: the reorganised 26 x 26 features first, then the deep ones; the fuse
    conv's input starts with the reorg's output."""
    m = _tiny().eval()
    seen: dict[str, torch.Tensor] = {}
    m.reorg.register_forward_hook(lambda mod, i, o: seen.__setitem__("reorg", o))
    m.fuse.register_forward_pre_hook(lambda mod, i: seen.__setitem__("fuse_in", i[0]))
    with torch.no_grad():
        m(torch.rand(1, 3, 64, 64))
    n = seen["reorg"].shape[1]
    assert torch.equal(seen["fuse_in"][:, :n], seen["reorg"])
    assert isinstance(m.reorg, Reorg)


def test_fc_head_is_leaky_and_checks_both_sides() -> None:
    """The YOLOv1-style ``fc`` head: leaky ReLU(0.1) between its two connected layers (darknet's ``[connected]
    activation=leaky``), and an input of another height or width than ``fc_grid * 32`` is refused."""
    m = _tiny(head="fc", fc_grid=2, fc_hidden=8).eval()
    acts = [mod for mod in m.pred.modules() if isinstance(mod, nn.LeakyReLU)]
    assert len(acts) == 1 and acts[0].negative_slope == 0.1
    assert m(torch.rand(1, 3, 64, 64)).shape == (1, 16, 2, 2)
    with pytest.raises(ValueError, match="fc head"):
        m(torch.rand(1, 3, 64, 96))


def test_torch_init_keeps_pytorchs_defaults() -> None:
    """``init=torch`` keeps PyTorch's initialisation (Kaiming-uniform conv weights, |w| <= 1 / sqrt(fan_in)):
    the prediction conv over 128 channels stays within 1 / sqrt(128), where darknet's N(0, 2 / 128) would not."""
    torch.manual_seed(0)
    w = _tiny(init="torch").pred.weight
    assert w.abs().max().item() <= 1 / math.sqrt(128) + 1e-6
    torch.manual_seed(0)
    assert _tiny(init="darknet").pred.weight.abs().max().item() > 1 / math.sqrt(128)


def test_invalid_location_and_head_are_refused() -> None:
    """``location`` is ``direct`` or ``offset`` (kept for decode and loss), ``head`` is ``conv`` or ``fc``."""
    assert _tiny(location="offset").location == "offset"
    with pytest.raises(ValueError, match="location"):
        _tiny(location="absolute")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="head"):
        _tiny(head="attention")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ pretrained weights
def test_a_pickled_checkpoint_named_weights_is_still_a_checkpoint(tmp_path: Path) -> None:
    """darknet weights are told by content, whatever the name: a PyTorch checkpoint in the legacy pickle format
    (first byte 0x80) named ``.weights`` loads as a checkpoint, not as darknet floats."""
    src = Darknet19(width=WIDTH)
    path = tmp_path / "backbone.weights"
    torch.save(src.state_dict(), path, _use_new_zipfile_serialization=False)
    assert path.read_bytes()[:1] == b"\x80"
    dst = Darknet19(width=WIDTH)
    assert load_pretrained(dst, path) == len(dst.state_dict())
    assert all(torch.equal(v, src.state_dict()[k]) for k, v in dst.state_dict().items())


def test_an_unreadable_partial_darknet_file_is_a_darknet_error(tmp_path: Path) -> None:
    """A file named as darknet's partial weights (``.conv.23``) whose header cannot be read is reported by the
    darknet reader (a header too short), not as a broken PyTorch pickle."""
    path = tmp_path / "darknet19_448.conv.23"
    path.write_bytes(b"\x00\x00\x00")
    with pytest.raises(ValueError, match="too short for a darknet"):
        load_pretrained(Darknet19(width=WIDTH), path, part="backbone")


def test_darknet_bn_style_is_read_from_any_saved_config() -> None:
    """A checkpoint normalises as darknet when ``bn_style: darknet`` stands anywhere in its model config, classifier
    config or hyper-parameters (nested mappings and lists); ``bn_style: torch`` or none is PyTorch's."""
    dk = {"net": {"backbone": {"bn_style": "darknet"}}}
    assert _darknet_bn({"yolo9000_model_config": dk})
    assert _darknet_bn({"hyper_parameters": {"stages": [{"x": 1}, dk]}})
    assert not _darknet_bn({"yolo9000_model_config": {"net": {"backbone": {"bn_style": "torch"}}}})
    assert not _darknet_bn({})


def test_fold_leaves_convs_with_their_own_bias_and_drops_folded_bns() -> None:
    """Folding touches only a conv whose bias the checkpoint lacks (a BN-free conv keeps its weights and bias),
    and a folded pair loses every BN tensor (num_batches_tracked too): by hand, g = 2, var = 3, mean = 1, beta = 0.5:
    w * 2 / sqrt(3 + 1e-5), bias 0.5 - 1 * 2 / sqrt(3 + 1e-5)."""
    own = {"a.0.weight": torch.zeros(1, 1, 1, 1), "a.0.bias": torch.zeros(1)}
    bn = {"a.1.weight": torch.tensor([2.0]), "a.1.bias": torch.tensor([0.5])}
    bn |= {"a.1.running_mean": torch.tensor([1.0]), "a.1.running_var": torch.tensor([3.0])}
    bn["a.1.num_batches_tracked"] = torch.tensor(7)
    with_bias = {"a.0.weight": torch.ones(1, 1, 1, 1), "a.0.bias": torch.tensor([9.0]), **bn}
    assert fold_batch_norm(with_bias, own)["a.0.bias"].item() == 9.0
    folded = fold_batch_norm({"a.0.weight": torch.ones(1, 1, 1, 1), **bn}, own)
    assert set(folded) == {"a.0.weight", "a.0.bias"}
    s = 2 / math.sqrt(3 + 1e-5)
    assert folded["a.0.weight"].item() == pytest.approx(s) and folded["a.0.bias"].item() == pytest.approx(0.5 - s)


def test_a_whole_network_load_refuses_missing_tensors(tmp_path: Path) -> None:
    """A checkpoint without one of the network's tensors does not fit (``missing ...``), rather than leaving it at
    its initialisation silently."""
    state = Darknet19(width=WIDTH).state_dict()
    gone = next(k for k in state if k.endswith("running_var"))
    del state[gone]
    torch.save({"state_dict": state}, tmp_path / "cut.ckpt")
    with pytest.raises(ValueError, match=f"missing {gone}"):
        load_pretrained(Darknet19(width=WIDTH), tmp_path / "cut.ckpt")


def test_backbone_from_darknet_classifier_weights_and_partial_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A detector's backbone from darknet's whole classifier file (``darknet19.weights``: 18 convs and the 1x1
    classifier conv, skipped) fills all 18 convs quietly; from a partial file of the first 5 convs it is a warning
    (the rest keep their initialisation)."""
    from yolo9000.darknet import save_weights

    cls = Darknet19Classifier(Darknet19(width=WIDTH), 7)
    save_weights(cls, tmp_path / "darknet19.weights")
    save_weights(cls, tmp_path / "darknet19.conv.5", cutoff=5)
    for name, n, warned in (("darknet19.weights", 18, False), ("darknet19.conv.5", 5, True)):
        caplog.clear()
        backbone = Darknet19(width=WIDTH)
        with caplog.at_level(logging.INFO, logger="yolo9000"):
            assert load_pretrained(backbone, tmp_path / name, part="backbone") == n
        levels = [r.levelno for r in caplog.records if "darknet weights" in r.getMessage()]
        assert levels == [logging.WARNING if warned else logging.INFO]
    torch.testing.assert_close(backbone.stage1[0][0].weight, cls.backbone.stage1[0][0].weight)


def test_a_part_ignores_the_checkpoints_other_tensors_and_counts_the_targets(tmp_path: Path) -> None:
    """With ``part``, tensors of the checkpoint the target lacks are left out, not errors (the documented
    difference to a whole-network load); the count returned is the target's tensors loaded."""
    src = Darknet19(width=WIDTH)
    state = {f"model.backbone.{k}": v for k, v in src.state_dict().items()}
    state["model.backbone.stage2.extra_scale"] = torch.ones(3)
    torch.save({"state_dict": state}, tmp_path / "det.ckpt")
    dst = Darknet19(width=WIDTH)
    assert load_pretrained(dst, tmp_path / "det.ckpt", part="backbone") == len(dst.state_dict())
    assert torch.equal(dst.stage2[-1][0].weight, src.stage2[-1][0].weight)


def test_a_part_load_says_which_parts_of_the_checkpoint_it_left_out(tmp_path: Path, caplog) -> None:
    """A detector checkpoint given as a backbone: the log names what was not used (its head and anchors), so the
    user knows the head starts afresh; a checkpoint holding the backbone alone says nothing of the kind."""
    src = Darknet19(width=WIDTH)
    state = {f"model.backbone.{k}": v for k, v in src.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "backbone_only.ckpt")
    state |= {"model.pred.weight": torch.ones(2, 3, 1, 1), "model.anchors": torch.ones(5, 2), "seen": torch.tensor(1)}
    torch.save({"state_dict": state}, tmp_path / "det.ckpt")
    with caplog.at_level(logging.INFO, logger="yolo9000"):
        load_pretrained(Darknet19(width=WIDTH), tmp_path / "det.ckpt", part="backbone")
        assert "the rest of the checkpoint (anchors, pred, seen) is not used" in caplog.text
        caplog.clear()
        load_pretrained(Darknet19(width=WIDTH), tmp_path / "backbone_only.ckpt", part="backbone")
        assert "backbone initialised from" in caplog.text and "not used" not in caplog.text


def test_head_rows_reordered_in_a_checkpoint_without_the_model_prefix(tmp_path: Path) -> None:
    """A checkpoint whose classes are the model's in another order gets its classifier rows reordered, also where
    its state dict has no ``model.`` prefix (``head.conv.weight``): saved [b, a, c], model [a, b, c] -> rows 1, 0,
    2."""
    torch.manual_seed(0)
    src = Darknet19Classifier(Darknet19(width=WIDTH), 3)
    torch.save({"state_dict": src.state_dict(), "hyper_parameters": {"class_names": ["b", "a", "c"]}}, tmp_path / "c")
    dst = Darknet19Classifier(Darknet19(width=WIDTH), 3)
    load_pretrained(dst, tmp_path / "c", class_names=["a", "b", "c"])
    assert torch.equal(dst.head.conv.weight, src.head.conv.weight[[1, 0, 2]])
    assert torch.equal(dst.head.conv.bias, src.head.conv.bias[[1, 0, 2]])


# ------------------------------------------------------------------------------------------- detector module
def test_decode_settings_bounds_are_inclusive() -> None:
    """Thresholds lie in [0, 1] both ends included (conf_thresh=1 keeps only certain boxes; nan is refused), and
    ``max_det=0`` is a valid cap, -1 is not."""
    check_decode_settings(max_det=0, conf_thresh=1.0, nms_thresh=0.0)
    for bad in (1.0001, -0.1, float("nan")):
        with pytest.raises(ValueError, match="conf_thresh must lie in"):
            check_decode_settings(conf_thresh=bad)
    with pytest.raises(ValueError, match="max_det"):
        check_decode_settings(max_det=-1)


def test_module_settings_refused_at_build() -> None:
    """An eval size off the 32-pixel grid, or a VOC07 headline with VOC07 off, is refused when the module is built
    (not after a training run)."""
    with pytest.raises(ValueError, match="eval_size"):
        DetectorModule(_tiny(), RegionLoss, eval_size=100)
    with pytest.raises(ValueError, match="voc07=true"):
        DetectorModule(_tiny(), RegionLoss, headline_metric="voc07_map_50", voc07=False)
    assert DetectorModule(_tiny(), RegionLoss, headline_metric="map").monitor == "val/map"


def test_loss_gets_the_networks_matching_and_no_host_assignment_without_priors() -> None:
    """The loss is built with the network's ``bias_match``: a network without priors matches by the predicted
    shape, so no assignment is made on the host before the transfer (it depends on the predictions)."""
    module = DetectorModule(YOLOv2(Darknet19(width=WIDTH), 3, None, num_boxes=2), RegionLoss)
    assert module.criterion.bias_match is False
    batch = {
        "images": torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
        "targets": torch.tensor([[[0.5, 0.5, 0.2, 0.2, 1.0]]]),
        "target_mask": torch.ones(1, 1, dtype=torch.bool),
    }
    assert "assignment" not in module.on_before_batch_transfer(batch, 0)


def test_loss_normalisation_and_terms_per_image() -> None:
    """``loss_normalize=batch`` divides the batch-summed loss by the batch size, ``none`` keeps the sum; the epoch
    line's terms are per image either way, and they add up to the normalised loss."""
    torch.manual_seed(0)
    module = _module(burn_in=0)
    batch = {
        "images": torch.rand(2, 3, 64, 64),
        "targets": torch.tensor([[[0.5, 0.5, 0.3, 0.4, 1.0]], [[0.3, 0.6, 0.2, 0.2, 2.0]]]),
        "target_mask": torch.ones(2, 1, dtype=torch.bool),
    }
    module.eval()  # BN on running statistics: the same output for both steps
    per_batch = module.training_step(batch, 0)
    module.hparams.loss_normalize = "none"
    summed = module.training_step(batch, 1)
    assert summed["loss"].item() == pytest.approx(2 * per_batch["loss"].item(), rel=1e-5)
    total = sum(v for k, v in per_batch["terms"].items())
    assert total.item() == pytest.approx(per_batch["loss"].item(), rel=1e-5)
    assert summed["terms"]["train/coord"].item() == pytest.approx(per_batch["terms"]["train/coord"].item())


def test_joint_batch_terms_per_source() -> None:
    """A joint batch's per-source terms: the mean over the source's images of each term and of their sum. By hand,
    images 0 (detection), 1 and 2 (classification) with coord 1, 2, 4 and cls 0, 1, 3: detection loss 1, coord 1,
    cls 0; classification loss (3 + 7) / 2 = 5, coord 3, cls 2."""
    module = _module()
    per_image = {"coord": torch.tensor([1.0, 2.0, 4.0]), "cls": torch.tensor([0.0, 1.0, 3.0])}
    terms = module._source_terms(torch.tensor([False, True, True]), per_image, 3, written=False)
    got = {k: round(v.item(), 6) for k, v in terms.items()}
    assert got == {
        "train/detection/loss": 1.0,
        "train/detection/coord": 1.0,
        "train/detection/cls": 0.0,
        "train/classification/loss": 5.0,
        "train/classification/coord": 3.0,
        "train/classification/cls": 2.0,
    }


def test_predict_raw_overrides_and_module_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``predict_raw``'s conf_thresh / nms_thresh / max_det override the module's for that call; ``pre_nms_topk``
    is the module's."""
    seen: dict[str, Any] = {}
    monkeypatch.setattr(detector, "postprocess", lambda *a, **k: seen.update(k) or [])
    module = _module(conf_thresh=0.1, nms_thresh=0.4, max_det=50, pre_nms_topk=20)
    raw = torch.zeros(1, 16, 2, 2)
    module.predict_raw(raw, (64, 64), None, None)
    assert (seen["conf_thresh"], seen["nms_thresh"], seen["max_det"], seen["pre_nms_topk"]) == (0.1, 0.4, 50, 20)
    module.predict_raw(raw, (64, 64), None, None, conf_thresh=0.3, nms_thresh=0.6, max_det=7)
    assert (seen["conf_thresh"], seen["nms_thresh"], seen["max_det"]) == (0.3, 0.6, 7)


def test_predict_hw_is_height_then_width() -> None:
    """``predict_hw`` is (height, width) as darknet's ``[net] height, width`` keys are stored: (64, 96) stays
    (64, 96); without it ``eval_size`` square."""
    assert _module(predict_hw=[64, 96]).input_hw == (64, 96)
    assert _module(eval_size=96).input_hw == (96, 96)


def test_evaluated_labels_through_a_map() -> None:
    """``to_evaluated`` with a map of nodes [2, 0] (lut: node 2 -> 0, node 0 -> 1, others -1): predictions get
    their position in the map; truths of a node the map leaves out are dropped with their difficult flags, and a
    truth mapped to position 0 is kept."""
    lut = torch.tensor([1, -1, 0, -1])
    preds = [{"boxes": torch.zeros(2, 4), "scores": torch.ones(2), "labels": torch.tensor([2, 0])}]
    truths = [
        {
            "boxes": torch.arange(12.0).view(3, 4),
            "labels": torch.tensor([2, 3, 0]),
            "difficult": torch.tensor([True, False, False]),
        }
    ]
    p, t = to_evaluated(preds, truths, lut)
    assert p[0]["labels"].tolist() == [0, 1]
    assert t[0]["labels"].tolist() == [0, 1] and t[0]["difficult"].tolist() == [True, False]
    assert t[0]["boxes"][:, 0].tolist() == [0.0, 8.0]


def test_module_builds_the_map_lut_and_checks_tree_class_names() -> None:
    """With a WordTree head, ``eval_map=[2, 0]`` gives the lut node 2 -> 0, node 0 -> 1, every other node -1; class
    names that are not the tree's nodes in order are refused."""
    tree = WordTree.from_file(SMALL_TREE)
    net = YOLOv2(Darknet19(width=WIDTH), tree.n, [[1.0, 1.0]])

    def loss(**kw: Any) -> RegionLoss:
        return RegionLoss(tree=tree, **kw)

    module = DetectorModule(net, loss, eval_map=[2, 0], class_names=list(tree.names))
    want = [-1] * tree.n
    want[2], want[0] = 0, 1
    assert module._eval_lut.tolist() == want
    assert module.eval_class_names == [tree.names[2], tree.names[0]]
    with pytest.raises(ValueError, match="class 0 is"):
        DetectorModule(net, loss, class_names=list(reversed(tree.names)))


def test_eval_map_all_and_duplicate_names() -> None:
    """``eval_map: all`` (or null) is every node, with or without a tree; names shared by several evaluated
    classes get their class index ("a [0]"), unique ones stay as they are."""
    assert resolve_map(None, "all") is None and resolve_map(None, None) is None
    assert evaluated_names(["a", "b", "a"], None) == ["a [0]", "b", "a [2]"]


def test_backbone_ckpt_takes_the_backbone_of_a_classifier(tmp_path: Path) -> None:
    """``backbone_ckpt``: a classifier checkpoint's ``backbone.*`` tensors initialise the detector's backbone (its
    classifier head is left out, not an unexpected tensor)."""
    torch.manual_seed(0)
    cls = Darknet19Classifier(Darknet19(width=WIDTH), 5)
    torch.save({"state_dict": {f"model.{k}": v for k, v in cls.state_dict().items()}}, tmp_path / "cls.ckpt")
    module = DetectorModule(_tiny(), RegionLoss, backbone_ckpt=str(tmp_path / "cls.ckpt"))
    for k, v in module.model.backbone.state_dict().items():
        assert torch.equal(v, cls.backbone.state_dict()[k]), k


@pytest.mark.parametrize("content", [b"\xff\xd8\xff\xe0 a JPEG", b"PK\x03\x04 cut short"])
def test_an_unreadable_pretrained_file_is_named_with_the_keys_that_take_it(tmp_path: Path, content: bytes) -> None:
    """``model.backbone_ckpt=<an image>`` / a truncated checkpoint: a ValueError naming the file and what the keys
    take (the unpickler's UnpicklingError / the zip reader's RuntimeError came through Hydra as a traceback)."""
    path = tmp_path / "start.ckpt"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"start\.ckpt: not a readable PyTorch checkpoint .*model\.backbone_ckpt"):
        load_pretrained(nn.Conv2d(3, 4, 3), path)
