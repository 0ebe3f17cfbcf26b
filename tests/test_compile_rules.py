"""The rules of the inference ``compile`` settings that test_detector_compile.py and test_tradeoff_compile.py leave
open: every ``torch.compile`` keyword named in the docs accepted, static graphs raising torch's recompile limit (and
only they), a network compiled already run as it is, a pickle free of compiled code, ``Detector.from_darknet``'s
``compile``, the outputs copied on CUDA exactly when a compiled network runs there, the trade-off's compiled timing
(three untimed batches at least, never fewer than asked), eval.py's ``speed_compile`` reaching the sweep, and the
eager defaults of the configs and of bench.py. Dynamo's ``eager`` backend keeps it to seconds."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import compose_config, load_script
from test_api import ckpt, names_file  # noqa: F401 - a BCCD checkpoint of yolov2-voc.cfg at 1/8 width
from test_darknet import scaled_cfg
from test_detector_compile import EAGER, IMAGES, SIZE, bench_inference_settings, is_compiled, same_detections
from yolo9000 import Detector, api
from yolo9000.checkpoints import load_module
from yolo9000.speed import STATIC_RECOMPILE_LIMIT, compile_network, inference_compile_options
from yolo9000.tradeoff import EvalImages, time_end_to_end


def test_every_documented_torch_compile_keyword_is_accepted() -> None:
    """The docs name ``backend``, ``mode``, ``dynamic``, ``fullgraph`` and ``options``: all are torch.compile's and
    all pass through unchanged."""
    import inspect

    keys = {"backend": "eager", "mode": None, "dynamic": True, "fullgraph": True, "options": {"x": 1}}
    assert set(keys) <= set(inspect.signature(torch.compile).parameters)
    assert inference_compile_options(keys) == keys
    assert inference_compile_options({"fullgraph": True}) == {"fullgraph": True, "dynamic": False}


def test_static_graphs_and_only_they_raise_the_recompile_limit() -> None:
    """Past torch's recompile limit (8 graphs per frame by default) a static network silently runs eagerly: a static
    compile raises the limit to STATIC_RECOMPILE_LIMIT; a dynamic one needs no more graphs and leaves it."""
    from yolo9000.speed import FastPath, apply_fast_path

    cfg = torch._dynamo.config
    before = cfg.recompile_limit
    net = torch.nn.Conv2d(3, 4, 3)
    try:
        cfg.recompile_limit = 8
        dynamic = compile_network(net, {"backend": "eager", "dynamic": True})
        assert cfg.recompile_limit == 8 and is_compiled(dynamic) and dynamic._orig_mod is net
        static = compile_network(net, inference_compile_options(EAGER))  # dynamic=False
        assert cfg.recompile_limit == STATIC_RECOMPILE_LIMIT and is_compiled(static)
        assert getattr(net, "_compiled_call_impl", None) is None  # net itself stays eager
        cfg.recompile_limit = 8
        fast = FastPath(compile=True, compile_backend="eager", compile_dynamic=False)
        apply_fast_path(torch.nn.Conv2d(3, 4, 3), fast)
        assert cfg.recompile_limit == STATIC_RECOMPILE_LIMIT
    finally:
        cfg.recompile_limit = before


def test_a_network_compiled_already_runs_as_it_is(ckpt: Path) -> None:  # noqa: F811
    """``model.fast.compile`` compiled the module's network in place: the Detector runs it, not a second wrapper."""
    module = load_module(ckpt, conf_thresh=0.01)
    module.model.compile(backend="eager", dynamic=False)
    det = Detector(module, device="cpu", compile=EAGER)
    assert det.compile_options is None and det.network is module.model and not is_compiled(det.network)
    assert "compile=" not in repr(det)
    eager = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01)
    same_detections(eager.predict(IMAGES, size=SIZE), det.predict(IMAGES, size=SIZE), atol=1e-4)


def test_a_compiled_detector_pickles_without_compiled_code(ckpt: Path) -> None:  # noqa: F811
    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01, compile=EAGER)
    data = pickle.dumps(det)
    assert b"OptimizedModule" not in data and b"torch._dynamo" not in data
    assert is_compiled(det.network)  # pickling leaves the original compiled
    copy = pickle.loads(data)
    assert is_compiled(copy.network) and not is_compiled(copy.network._orig_mod)
    assert copy.compile_options == det.compile_options
    plain = pickle.loads(pickle.dumps(Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01)))
    assert not is_compiled(plain.network) and plain.compile_options is None
    same_detections(plain.predict(IMAGES, size=SIZE), copy.predict(IMAGES, size=SIZE))


def test_from_darknet_compiles_when_asked(tmp_path: Path) -> None:
    names = tmp_path / "bccd.names"
    names.write_text("RBC\nWBC\nPlatelets\n")
    cfg = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    det = Detector.from_darknet(cfg, None, names, device="cpu", compile=EAGER)
    assert is_compiled(det.network) and det.compile_options == {"dynamic": False, "backend": "eager"}
    assert not is_compiled(Detector.from_darknet(cfg, None, names, device="cpu").network)


def test_outputs_are_copied_on_cuda_exactly_when_a_compiled_network_runs(
    ckpt: Path,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Where CUDA graphs may hold the outputs (a CUDA device and a network compiled here or in place), not elsewhere.
    The device is pretended (no weights move), so the rule is checked on any machine."""
    monkeypatch.setattr(api, "_resolve_device", lambda device: torch.device("cuda"))
    monkeypatch.setattr(torch.nn.Module, "to", lambda self, *a, **k: self)

    def copies(compile: Any, in_place: bool = False) -> bool:
        module = load_module(ckpt)
        if in_place:
            module.model.compile(backend="eager")
        det = Detector(module, device="cuda", compile=compile, keep_freed_memory=False)
        assert det.device.type == "cuda"
        return det._copy_outputs

    assert copies(EAGER) is True
    assert copies(False, in_place=True) is True
    assert copies(False) is False


def counted(det: Detector, calls: list[int]) -> Detector:
    """``det`` whose ``detect_batch`` calls append their batch sizes to ``calls``."""
    original = det.detect_batch
    det.detect_batch = lambda images, *a, **k: calls.append(images.shape[0]) or original(images, *a, **k)  # type: ignore[method-assign]
    return det


def test_compiled_timing_warms_up_at_least_three_batches_and_never_fewer_than_asked(tmp_path: Path) -> None:
    """eval.yaml's ``speed_compile``: each (size, batch) compiles in an untimed warm-up of >= 3 batches; a longer
    ``warmup`` stays as asked, and the eager timing (and a network compiled in place) keeps its own ``warmup``
    (in place: at least 3 as well)."""
    images = EvalImages(torch.zeros(2, 3, 64, 64, dtype=torch.uint8), torch.ones(2, 4), torch.full((2, 2), 64))
    compiled = Detector(load_module(_ckpt(tmp_path)), device="cpu", compile=EAGER)
    for warmup, expected in ((0, 3), (1, 3), (5, 5)):
        calls: list[int] = []
        time_end_to_end(counted(compiled, calls), images, 2, warmup=warmup, iters=2, max_seconds=None)
        assert calls == [2] * (expected + 2), warmup
    eager_calls: list[int] = []
    eager = Detector(load_module(_ckpt(tmp_path)), device="cpu")
    time_end_to_end(counted(eager, eager_calls), images, 2, warmup=0, iters=2, max_seconds=None)
    assert eager_calls == [2, 2]
    module = load_module(_ckpt(tmp_path))
    module.model.compile(backend="eager", dynamic=False)
    in_place: list[int] = []
    time_end_to_end(counted(Detector(module, device="cpu"), in_place), images, 2, warmup=1, iters=1, max_seconds=None)
    assert in_place == [2] * 4


def _ckpt(tmp_path: Path) -> Path:
    names = tmp_path / "bccd.names"
    names.write_text("RBC\nWBC\nPlatelets\n")
    from yolo9000.checkpoints import darknet_to_checkpoint

    ck = darknet_to_checkpoint(scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3), None, names)
    torch.save(ck, tmp_path / "bccd.ckpt")
    return tmp_path / "bccd.ckpt"


def test_eval_py_passes_speed_compile_to_the_sweep(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from omegaconf import OmegaConf

    from yolo9000 import tradeoff

    seen: list[Any] = []

    class Stop(Exception):
        pass

    def run_sweep(module: Any, make_datamodule: Any, make_trainer: Any, settings: Any, *a: Any, **k: Any) -> Any:
        seen.append(settings)
        raise Stop

    monkeypatch.setattr(tradeoff, "run_sweep", run_sweep)
    ev = load_script("eval")
    cfg = compose_config("eval")
    assert cfg.speed_compile is False  # eager timings unless asked
    OmegaConf.update(cfg, "logger", None, force_add=True)  # its run directory is Hydra's, not set here
    OmegaConf.update(cfg, "ckpt_path", str(tmp_path / "x.ckpt"))
    for setting, expected in ((EAGER, {"dynamic": False, "backend": "eager"}), ("max-autotune", None), (False, None)):
        OmegaConf.update(cfg, "sizes", [64], force_add=True)
        OmegaConf.update(cfg, "speed_compile", setting, force_add=True)
        with pytest.raises(Stop):
            ev.tradeoff(cfg, OmegaConf.create({}), None, tmp_path)
        want = expected if setting != "max-autotune" else {"mode": "max-autotune", "dynamic": False}
        assert seen.pop().compile_options == want


def test_detect_and_bench_are_eager_by_default(ckpt: Path) -> None:  # noqa: F811
    """detect.yaml's ``compile`` and bench.yaml's ``infer_compile`` are false; a bench config without the key (made
    before it) times the eager Detector too."""
    assert compose_config("detect").compile is False
    assert compose_config("bench").bench.infer_compile is False
    bench = load_script("bench")
    b = bench_inference_settings()  # no infer_compile key
    images = [np.asarray(Image.open(p).convert("RGB")) for p in IMAGES[:1]]
    assert bench.time_inference(load_module(ckpt), "32-true", images, b, torch.device("cpu"))["infer_compile"] is False
