"""Rules of ``model=darknet``'s region options (``model.net.region_options``, ``RegionMeta.loss_options``,
``region_lines``, ``detector_cfg_text(set_region=...)``, ``convert.py --names-out``) and of the fast-path helpers in
:mod:`yolo9000.speed`, each pinned against darknet's documented ``[region]`` semantics, values written into a tiny
cfg, torch's memory formats or glibc's ``mallopt`` parameters (``malloc.h``). Unit-level calls only: no training."""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from conftest import load_script
from yolo9000 import speed
from yolo9000.build import _region_options
from yolo9000.darknet import detector_cfg_text, parse_cfg_text, region_meta
from yolo9000.darknet.cfg import RegionMeta, region_lines
from yolo9000.speed import (
    FastPath,
    apply_fast_path,
    channels_last_images,
    float_images,
    keep_freed_memory,
    optimizer_flags,
    set_channels_last,
    worker_malloc,
)

# A tiny detector cfg whose [region] sets every loss option off the yolov2 defaults of model.loss (no softmax line:
# darknet's parse_region default softmax=0, logistic classes).
CFG = (
    "[net]\nheight=64\nwidth=64\nchannels=3\n"
    "[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
    "[region]\nanchors=1,1\nclasses=2\nnum=1\nthresh=.7\nobject_scale=2\nnoobject_scale=.5\nclass_scale=3\n"
    "coord_scale=4\nrescore=0\n"
)
# model.loss as conf/model/_detector.yaml has it (yolov2-voc.cfg's [region]).
YOLOV2_LOSS: dict[str, Any] = {
    "thresh": 0.6,
    "object_scale": 5.0,
    "noobject_scale": 1.0,
    "class_scale": 1.0,
    "coord_scale": 1.0,
    "rescore": True,
    "class_activation": "softmax",
}
CFG_LOSS: dict[str, Any] = {
    "thresh": 0.7,
    "object_scale": 2.0,
    "noobject_scale": 0.5,
    "class_scale": 3.0,
    "coord_scale": 4.0,
    "rescore": False,
    "class_activation": "logistic",
}


def _model(region_options: str | None, loss: dict[str, Any] | None = None, text: str = CFG) -> dict[str, Any]:
    """A resolved ``model=darknet`` config as ``resolved_model_config`` hands it to ``_region_options``."""
    net: dict[str, Any] = {"cfg": "tiny.cfg", "cfg_text": text}
    if region_options is not None:
        net["region_options"] = region_options
    return {"net": net, "loss": copy.deepcopy(loss or YOLOV2_LOSS)}


# ------------------------------------------------------------------------------------------- region options
def test_region_options_default_to_the_cfgs_region_when_the_key_is_absent() -> None:
    """A model config without ``net.region_options`` (an older checkpoint's) takes darknet's way, ``cfg``: the loss
    gets the [region]'s .7, 2 / .5 / 3 / 4, rescore=0 and logistic classes; the key is removed either way."""
    m = _model(None)
    _region_options(m)
    assert m["loss"] == pytest.approx(CFG_LOSS)
    assert "region_options" not in m["net"] and m["net"]["cfg_text"] == CFG


@pytest.mark.parametrize("mode", ["cfg", "keys"])
def test_a_cfg_tree_and_map_leave_the_kept_cfg_with_a_warning_when_the_run_has_no_tree(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """yolo9000.cfg's ``[region] tree=data/9k.tree map=data/coco9k.map`` under ``model=darknet``: its classes are
    set to the data's, so those lines leave the cfg text the checkpoint keeps (written back with them it said
    ``classes=2`` over a 9418-node tree); a run without ``model.loss.tree`` is warned that it trains flat, one with
    it told that its tree is the loss's. The rest of the [region] stays as it was."""
    text = CFG.replace("rescore=0\n", "rescore=0\ntree=data/9k.tree\nmap=data/coco9k.map\n")
    for tree, level, said in ((None, "WARNING", "trains a flat softmax"), ({"path": "t"}, "INFO", "model.loss.tree's")):
        m = _model(mode, {**YOLOV2_LOSS, "tree": tree}, text)
        caplog.clear()
        with caplog.at_level("INFO", logger="yolo9000"):
            _region_options(m)
        region = parse_cfg_text(m["net"]["cfg_text"])[-1]
        assert "tree" not in region["options"] and "map" not in region["options"]
        assert region["options"]["classes"] == "2" and region["options"]["anchors"] == "1,1"
        (rec,) = [r for r in caplog.records if "tree=data/9k.tree, map=data/coco9k.map" in r.getMessage()]
        assert rec.levelname == level and said in rec.getMessage()


def test_region_options_refuses_an_unknown_mode_itself() -> None:
    """``_region_options`` refuses a mode other than cfg / keys on its own (not only ``check_config``): neither the
    loss nor the cfg text is touched as if it were ``keys``."""
    m = _model("both")
    with pytest.raises(ValueError, match="model.net.region_options must be cfg or keys, got 'both'"):
        _region_options(m)
    assert m["loss"] == YOLOV2_LOSS and m["net"]["cfg_text"] == CFG


def test_region_options_keys_writes_rescore_0_and_softmax_0() -> None:
    """``keys`` with a logistic, rescore-off loss writes ``softmax=0`` (added: the cfg has no line) and replaces
    ``rescore`` with 0: the kept cfg reads back as the loss that trained, which itself is kept."""
    loss = {**YOLOV2_LOSS, "thresh": 0.125, "rescore": False, "class_activation": "logistic"}
    m = _model("keys", loss, CFG.replace("rescore=0", "rescore=1"))
    _region_options(m)
    assert m["loss"] == loss
    region = parse_cfg_text(m["net"]["cfg_text"])[-1]
    assert region["options"]["rescore"] == "0" and region["options"]["softmax"] == "0"
    assert region["options"]["thresh"] == "0.125"
    written = region_meta(parse_cfg_text(m["net"]["cfg_text"]), search=None)
    assert written is not None and written.loss_options() == pytest.approx(loss)


def test_loss_options_a_tree_classifies_with_its_softmax() -> None:
    """darknet's region layer runs a tree's grouped softmax whatever ``softmax`` says: a [region] with ``tree=`` and
    no softmax line gives softmax classes; without a tree, softmax=0 is logistic."""
    text = CFG.replace("rescore=0\n", "rescore=0\ntree=data/9k.tree\n")
    meta = region_meta(parse_cfg_text(text), search=None)
    assert meta is not None and not meta.softmax and meta.tree == Path("data/9k.tree")
    assert meta.loss_options()["class_activation"] == "softmax"
    plain = RegionMeta(anchors=torch.ones(1, 2))
    assert plain.loss_options()["class_activation"] == "logistic"
    assert RegionMeta(anchors=torch.ones(1, 2), tree=Path("t.tree")).loss_options()["class_activation"] == "softmax"


def test_region_lines_by_hand() -> None:
    """Each loss setting as darknet's cfg writes it: floats without trailing zeros and at full precision (0.125, not
    0.1), rescore and softmax as 0 / 1."""
    got = region_lines(
        {
            "thresh": 0.125,
            "object_scale": 5,
            "noobject_scale": 0.5,
            "class_scale": 1.0,
            "coord_scale": 2.25,
            "rescore": False,
            "class_activation": "logistic",
        }
    )
    assert got == {
        "thresh": "0.125",
        "object_scale": "5",
        "noobject_scale": "0.5",
        "class_scale": "1",
        "coord_scale": "2.25",
        "rescore": "0",
        "softmax": "0",
    }
    on = region_lines({**CFG_LOSS, "rescore": True, "class_activation": "softmax"})
    assert (on["rescore"], on["softmax"]) == ("1", "1")
    third = region_lines({**CFG_LOSS, "thresh": 1 / 3, "coord_scale": 1e-7})  # read back exactly, not to 6 digits
    assert float(third["thresh"]) == 1 / 3 and float(third["coord_scale"]) == 1e-7


def test_set_region_replaces_softmax_1_with_0() -> None:
    """``detector_cfg_text(set_region=...)`` on a [region] that says ``softmax=1`` and ``rescore=1``: the lines are
    replaced in place (not duplicated) and the cfg reads back logistic and rescore off."""
    text = CFG.replace("rescore=0\n", "rescore=1\nsoftmax=1\n")
    out = detector_cfg_text(text, set_region=region_lines(CFG_LOSS))
    assert out.count("softmax=") == 1 and "\nsoftmax=0\n" in out and "\nrescore=0\n" in out
    meta = region_meta(parse_cfg_text(out), search=None)
    assert meta is not None and meta.loss_options() == pytest.approx(CFG_LOSS)


def test_convert_names_out_for_a_classifier_is_refused_by_convert_py(tmp_path: Path) -> None:
    """``convert.py --to-darknet --names-out`` on a classifier checkpoint stops with the flag named (the classifier
    has no class names to write) before any file is written."""
    ckpt = tmp_path / "cls.ckpt"
    torch.save({"yolo9000_classifier_config": {}}, ckpt)
    out = tmp_path / "cls.weights"
    argv = ["--to-darknet", "--ckpt", str(ckpt), "--out", str(out), "--names-out", str(tmp_path / "cls.names")]
    with pytest.raises(SystemExit) as stop:
        load_script("convert").main(argv)
    assert "--names-out: a classifier checkpoint has no class names to write" in str(stop.value.code)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cls.ckpt"]


# ------------------------------------------------------------------------------------------------ fast path
def test_fast_path_of_accepts_every_documented_setting() -> None:
    """``FastPath.of``: an instance passes through as it is; None is all off; each documented fused_optimizer value
    (null / auto / true / false / foreach) is accepted."""
    fast = FastPath(channels_last=True)
    assert FastPath.of(fast) is fast
    assert FastPath.of(None) == FastPath() == FastPath.of({})
    for value in (None, "auto", True, False, "foreach"):
        assert FastPath.of({"fused_optimizer": value}).fused_optimizer == value


class _Recorder(nn.Module):
    """A conv network whose ``compile`` records its keyword arguments instead of compiling."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.compiled: list[dict[str, Any]] = []

    def compile(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.compiled.append(kwargs)


def test_apply_fast_path_compiles_with_the_keys_asked_and_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """``compile=False`` (evaluation) never compiles; otherwise the network is compiled once with the backend,
    mode and dynamic of ``model.fast``; nothing is compiled when ``fast.compile`` is off."""
    monkeypatch.setattr(speed, "keep_freed_memory", lambda: True)
    fast = FastPath(compile=True, compile_backend="aot_eager", compile_mode="max-autotune", compile_dynamic=True)
    net = _Recorder()
    assert apply_fast_path(net, fast, compile=False) is net and net.compiled == []
    apply_fast_path(net, fast)
    assert net.compiled == [{"backend": "aot_eager", "mode": "max-autotune", "dynamic": True}]
    off = _Recorder()
    apply_fast_path(off, FastPath())
    assert off.compiled == []


def test_apply_fast_path_raises_the_recompile_limit_for_static_shapes_only() -> None:
    """compile_dynamic=false lifts dynamo's recompile limit to at least 64 (a raised one is kept); None and True
    leave it as it is. (torch's own ``config.patch`` restores it: pytest's monkeypatch on torch's config module
    deletes the setting at its undo, and every later read of it fails.)"""
    cfg = torch._dynamo.config
    for dynamic, before, after in ((False, 8, 64), (False, 100, 100), (None, 8, 8), (True, 8, 8)):
        with cfg.patch(recompile_limit=before):
            apply_fast_path(_Recorder(), FastPath(compile=True, compile_dynamic=dynamic))
            assert cfg.recompile_limit == after, (dynamic, before)


def test_apply_fast_path_channels_last_and_keep_freed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """``channels_last`` puts the 4-D weights in NHWC memory (same values); ``keep_freed_memory`` applies the
    process's malloc setting once, and not when off."""
    calls: list[int] = []
    monkeypatch.setattr(speed, "keep_freed_memory", lambda: calls.append(1) or True)
    net = _Recorder()
    before = net.conv.weight.detach().clone()
    apply_fast_path(net, FastPath(channels_last=True))
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last) and not net.conv.weight.is_contiguous()
    assert torch.equal(net.conv.weight, before) and calls == []
    apply_fast_path(net, FastPath(keep_freed_memory=True))
    assert calls == [1]


def test_set_channels_last_both_ways() -> None:
    """``set_channels_last(model, True)`` -> NHWC weights, ``False`` -> NCHW again, the values unchanged."""
    net = nn.Conv2d(3, 4, 3)
    before = net.weight.detach().clone()
    set_channels_last(net, True)
    assert net.weight.is_contiguous(memory_format=torch.channels_last) and not net.weight.is_contiguous()
    set_channels_last(net, False)
    assert net.weight.is_contiguous() and torch.equal(net.weight, before)


def test_channels_last_images() -> None:
    """A (B, C, H, W) batch comes back in NHWC memory with the same values and shape; a 3-D tensor as it is."""
    x = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    y = channels_last_images(x)
    assert y.shape == x.shape and torch.equal(y, x)
    assert y.is_contiguous(memory_format=torch.channels_last) and not y.is_contiguous()
    three = torch.rand(3, 4, 5)
    assert channels_last_images(three) is three


def test_float_images_floats_and_single_images() -> None:
    """A float batch is put in the layout asked for (NHWC for channels_last) with its values; a 3-D uint8 image
    (no batch dimension) becomes contiguous floats / 255 even with channels_last (NHWC is 4-D only)."""
    floats = torch.rand(2, 3, 4, 5)
    nhwc = float_images(floats, True)
    assert nhwc.is_contiguous(memory_format=torch.channels_last) and not nhwc.is_contiguous()
    assert torch.equal(nhwc, floats)
    back = float_images(nhwc, False)
    assert back.is_contiguous() and torch.equal(back, floats)
    chw = torch.tensor([[[0, 51], [255, 102]]], dtype=torch.uint8).expand(3, 2, 2)
    got = float_images(chw, True)
    assert got.dtype == torch.float32 and got.shape == (3, 2, 2) and got.is_contiguous()
    assert got[0].flatten().tolist() == pytest.approx([0.0, 0.2, 1.0, 0.4])


def test_optimizer_flags_table() -> None:
    """``fused_optimizer`` by hand: null / auto -> fused on any CUDA device (an index too), torch's default ({})
    elsewhere; foreach -> foreach on any device; true -> fused (also on the CPU); false -> a plain loop
    (foreach off)."""
    assert optimizer_flags(None, torch.device("cuda", 1)) == {"fused": True}
    assert optimizer_flags("auto", "cuda:0") == {"fused": True}
    assert optimizer_flags("auto", "cpu") == {} == optimizer_flags(None, torch.device("cpu"))
    assert optimizer_flags("foreach", "cpu") == {"foreach": True} == optimizer_flags("foreach", "cuda")
    assert optimizer_flags(True, "cpu") == {"fused": True}
    assert optimizer_flags(False, "cuda") == {"foreach": False} == optimizer_flags(False, "cpu")
    params = [nn.Parameter(torch.ones(2))]
    assert torch.optim.SGD(params, lr=0.1, **optimizer_flags(False, "cpu")).param_groups[0]["foreach"] is False


# glibc's mallopt parameters (malloc.h) and the defaults mallopt(3) documents for the two a worker restores
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
GLIBC_DEFAULT = 128 * 1024


class _FakeLibc:
    """``libc.so.6`` whose ``mallopt`` records (param, value) and fails for the params in ``fail``."""

    def __init__(self, fail: tuple[int, ...] = ()) -> None:
        self.calls: list[tuple[int, int]] = []
        self.fail = fail

    def mallopt(self, param: int, value: Any) -> int:
        self.calls.append((param, int(value.value)))
        return 0 if param in self.fail else 1


@pytest.fixture
def libc(monkeypatch: pytest.MonkeyPatch) -> _FakeLibc:
    """A fake glibc behind :mod:`yolo9000.speed` (the test process's malloc is never changed), on Linux, with the
    module's applied flag cleared (restored afterwards)."""
    fake = _FakeLibc()
    monkeypatch.setattr(sys, "platform", "linux")
    monkeypatch.setattr(speed.ctypes, "CDLL", lambda name: fake)
    monkeypatch.setattr(speed, "_KEPT", False)
    return fake


def test_keep_freed_memory_sets_the_three_malloc_parameters_once(libc: _FakeLibc) -> None:
    """keep_freed_memory: mmap threshold 1 GiB (the 32 MB activations from the heap), trim threshold the largest
    int (never trimmed), top pad 64 MiB, each under its malloc.h parameter number; a second call is a no-op."""
    assert keep_freed_memory() is True
    assert dict(libc.calls) == {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: 2**31 - 1, M_TOP_PAD: 64 << 20}
    assert len(libc.calls) == 3
    assert keep_freed_memory() is True and len(libc.calls) == 3


def test_worker_malloc_restores_glibcs_defaults_and_undoes_keep(libc: _FakeLibc) -> None:
    """worker_malloc: glibc's documented 128 KiB mmap and trim thresholds and no top pad; after it, a later
    keep_freed_memory applies its settings again (the process's malloc is the worker's now)."""
    assert keep_freed_memory() is True
    libc.calls.clear()
    assert worker_malloc() is True
    assert dict(libc.calls) == {M_MMAP_THRESHOLD: GLIBC_DEFAULT, M_TRIM_THRESHOLD: GLIBC_DEFAULT, M_TOP_PAD: 0}
    libc.calls.clear()
    assert keep_freed_memory() is True
    assert dict(libc.calls)[M_MMAP_THRESHOLD] == 1 << 30


def test_malloc_settings_fail_without_glibc(libc: _FakeLibc, monkeypatch: pytest.MonkeyPatch) -> None:
    """One refused parameter makes the whole setting fail (not applied, tried again next time); off Linux nothing is
    called and nothing applies; a libc that cannot be loaded is no glibc."""
    libc.fail = (M_TOP_PAD,)
    assert keep_freed_memory() is False and speed._KEPT is False
    libc.fail = ()
    monkeypatch.setattr(sys, "platform", "darwin")
    libc.calls.clear()
    assert keep_freed_memory() is False and worker_malloc() is False and libc.calls == []
    monkeypatch.setattr(sys, "platform", "linux")

    def missing(name: str) -> None:
        raise OSError(name)

    monkeypatch.setattr(speed.ctypes, "CDLL", missing)
    assert keep_freed_memory() is False
