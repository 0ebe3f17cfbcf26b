"""``Detector(compile=...)``: the network it runs compiled by ``torch.compile`` (static graphs by default), the same
detections as the eager network, the module's own network left eager, a refused mode named at construction, and the
outputs copied where CUDA graphs would overwrite them. Dynamo's ``eager`` backend (tracing, no code generation) keeps
the default tests to seconds; one slow test compiles with inductor on the CPU."""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from test_api import ckpt, names_file  # noqa: F401 - a BCCD checkpoint of yolov2-voc.cfg at 1/8 width
from yolo9000 import Detector
from yolo9000.speed import STATIC_RECOMPILE_LIMIT, inference_compile_options

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "data" / "bccd" / "JPEGImages").glob("*.jpg"))[:3]
SIZE = 128
EAGER = {"backend": "eager"}  # dynamo traces the network into a graph and runs it with torch's own kernels


def same_detections(a: list, b: list, atol: float = 0.0) -> None:  # lists of Detections
    """Same labels, scores within ``atol`` and boxes (pixels of 640 x 480 images) within 10 ``atol``."""
    assert [len(d) for d in a] == [len(d) for d in b] and sum(len(d) for d in a) > 10
    for x, y in zip(a, b, strict=True):
        assert torch.equal(x.labels, y.labels)
        torch.testing.assert_close(x.boxes, y.boxes, atol=10 * atol, rtol=0)
        torch.testing.assert_close(x.scores, y.scores, atol=atol, rtol=0)


def bench_inference_settings(**over: Any) -> Any:
    """``bench.*`` keys of ``bench.time_inference`` at batch 1 and :data:`SIZE`, a couple of calls (a DictConfig)."""
    from omegaconf import OmegaConf

    base = {"size": SIZE, "steps": 2, "warmup": 1, "infer_batches": [1], "infer_rounds": 2, "infer_conf": 0.01}
    return OmegaConf.create({**base, "infer_fold_bn": True, "infer_fuse": True, "infer_workers": 0, **over})


def is_compiled(net: torch.nn.Module) -> bool:
    return isinstance(net, torch._dynamo.eval_frame.OptimizedModule)


def test_compile_settings_become_torch_compile_keywords() -> None:
    assert inference_compile_options(False) is None and inference_compile_options(None) is None
    assert inference_compile_options(True) == {"dynamic": False}  # static graphs unless asked otherwise
    assert inference_compile_options("reduce-overhead") == {"mode": "reduce-overhead", "dynamic": False}
    assert inference_compile_options({"backend": "eager"}) == {"backend": "eager", "dynamic": False}
    assert inference_compile_options({"mode": "max-autotune", "dynamic": None}) == {
        "mode": "max-autotune",
        "dynamic": None,
    }
    from omegaconf import OmegaConf  # a Hydra key's mapping: plain dicts for torch.compile, nested ones too

    plain = inference_compile_options(OmegaConf.create({"backend": "eager", "options": {"trace.enabled": False}}))
    assert plain == {"dynamic": False, "backend": "eager", "options": {"trace.enabled": False}}
    assert type(plain["options"]) is dict
    with pytest.raises(ValueError, match=r"unknown torch.compile keys \['modes'\]"):
        inference_compile_options({"modes": "default"})
    with pytest.raises(TypeError, match="compile must be"):
        inference_compile_options(1)


def test_a_compiled_detector_gives_the_eager_detections_and_leaves_the_module_eager(ckpt: Path) -> None:  # noqa: F811 - test_api's fixture
    eager = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01)
    compiled = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01, compile=EAGER)
    assert not is_compiled(eager.network) and is_compiled(compiled.network)
    assert compiled.compile_options == {"backend": "eager", "dynamic": False} and eager.compile_options is None
    assert "compile={'dynamic': False, 'backend': 'eager'}" in repr(compiled) and "compile" not in repr(eager)
    # the module's own network (its checkpoint, its training) stays eager: the compiled one is the folded copy's
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in compiled.module.model.modules())
    assert torch._dynamo.config.recompile_limit >= STATIC_RECOMPILE_LIMIT  # one static graph per input shape
    same_detections(eager.predict(IMAGES, size=SIZE, batch_size=2), compiled.predict(IMAGES, size=SIZE, batch_size=2))
    # not folded: the module's network wrapped, not compiled in place
    unfolded = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01, fold_bn=False, compile=EAGER)
    assert is_compiled(unfolded.network) and unfolded.network._orig_mod is unfolded.module.model
    assert all(getattr(m, "_compiled_call_impl", None) is None for m in unfolded.module.model.modules())
    same_detections(eager.predict(IMAGES, size=SIZE), unfolded.predict(IMAGES, size=SIZE), atol=1e-4)
    copy = pickle.loads(pickle.dumps(compiled))
    assert is_compiled(copy.network)
    same_detections(eager.predict(IMAGES, size=SIZE), copy.predict(IMAGES, size=SIZE))


def test_a_mode_torch_refuses_is_named_when_the_detector_is_built(ckpt: Path) -> None:  # noqa: F811 - test_api's fixture
    with pytest.raises(ValueError, match=r"compile='fastest': Unrecognized mode=fastest"):
        Detector.from_checkpoint(ckpt, device="cpu", compile="fastest")
    with pytest.raises(ValueError, match="unknown torch.compile keys"):
        Detector.from_checkpoint(ckpt, device="cpu", compile={"backend": "eager", "dynamo": True})


def test_outputs_are_copied_where_cuda_graphs_would_overwrite_them(ckpt: Path) -> None:  # noqa: F811 - test_api's fixture
    """Under CUDA graphs a compiled call's output lives in the graph's memory, overwritten by the next call (video
    averaging keeps several frames' outputs): the Detector then copies each output. A stand-in network returns one
    tensor every call; on the CPU nothing is copied (no CUDA graphs there)."""
    det = Detector.from_checkpoint(ckpt, device="cpu", compile=EAGER)
    assert det._copy_outputs is False  # CPU
    fixed = torch.randn(1, 40, 4, 4)
    det.network = lambda x: fixed  # type: ignore[assignment]
    images = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)
    assert det._forward(images).data_ptr() == fixed.data_ptr()  # as it is (float32, contiguous: no copy made)
    det._copy_outputs = True  # what a CUDA device with a compiled network sets
    out = det._forward(images)
    assert out.data_ptr() != fixed.data_ptr() and torch.equal(out, fixed)


def test_the_compiled_network_runs_in_one_grad_mode_wherever_it_is_called_from(ckpt: Path, tmp_path: Path) -> None:  # noqa: F811 - test_api's fixture
    """``predict``, ``detect_batch`` called under autograd or ``no_grad``, the trade-off's timing and video
    averaging (which runs the network outside ``detect_batch``) all run it in inference mode: one graph for one input
    shape (dynamo compiles again for each grad mode it meets)."""
    from test_video import write_clip

    graphs: list[Any] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Any:
        graphs.append(gm)
        return gm.forward

    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01, compile={"backend": backend})
    (first,) = det.predict([IMAGES[0]], size=SIZE)
    images = torch.zeros(1, 3, SIZE, SIZE, dtype=torch.uint8)
    transforms, orig = torch.tensor([[1.0, 1.0, 0.0, 0.0]]), torch.tensor([[SIZE, SIZE]])
    with torch.enable_grad():
        (preds,) = det.detect_batch(images, transforms, orig)
    with torch.no_grad():
        det.detect_batch(images, transforms, orig)
    from yolo9000.tradeoff import EvalImages, time_end_to_end

    time_end_to_end(det, EvalImages(images, transforms, orig), 1, warmup=0, iters=1, max_seconds=None)
    write_clip(tmp_path / "clip.avi", 3)
    with torch.enable_grad():
        averaged = list(det.predict_video(tmp_path / "clip.avi", size=SIZE, batch_size=1, average=3))
    assert len(averaged) == 3 and len(graphs) == 1
    assert preds["scores"].is_inference() and not first.scores.is_inference()  # predict's: ordinary copies
    first.boxes[:, 0] += 1  # editable in place


@pytest.mark.slow
def test_inductor_on_the_cpu_gives_the_eager_detections(ckpt: Path) -> None:  # noqa: F811 - test_api's fixture
    """The real compiler (a C++ toolchain on the CPU): static graphs of two shapes (batch 2, then the last batch of
    1), the eager network's detections (oneDNN's kernels round alike: within float noise)."""
    eager = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01)
    compiled = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.01, compile=True)
    same_detections(
        eager.predict(IMAGES, size=SIZE, batch_size=2), compiled.predict(IMAGES, size=SIZE, batch_size=2), atol=1e-4
    )


@pytest.mark.slow  # ~16 s, a subprocess that compiles; the Detector's compile is this file's, in the default suite
def test_detect_py_compiles_when_asked(ckpt: Path, tmp_path: Path) -> None:  # noqa: F811 - test_api's fixture
    """``detect.py compile=...``: the Detector it builds compiles (its log line names the settings), the same
    detections as without."""
    from test_cli_bench_detect_eval import run

    image = ROOT / "data" / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    common = (f"ckpt_path={ckpt}", f"source={image}", f"img_size={SIZE}", "draw=false", "conf_thresh=0.01")
    plain = run("detect.py", tmp_path / "plain", *common)
    compiled = run("detect.py", tmp_path / "compiled", *common, "compile={backend: eager}")
    assert plain.returncode == 0 and compiled.returncode == 0, compiled.stderr[-3000:]
    assert "compile={'dynamic': False, 'backend': 'eager'}" in compiled.stdout + compiled.stderr
    assert "compile=" not in plain.stdout + plain.stderr
    dets = [
        json.loads((tmp_path / k / "detections.json").read_text())["images"][0]["detections"]
        for k in ("plain", "compiled")
    ]
    assert len(dets[0]) > 10 and dets[0] == dets[1]


def test_bench_times_the_compiled_detector_and_the_latency_preset_asks_for_cuda_graphs(ckpt: Path) -> None:  # noqa: F811 - test_api's fixture
    """``bench.infer_compile``: the inference rows' Detector compiles (bench.json names the settings); the GPU
    latency preset (``--config-name bench_gpu_latency``) is YOLOv2-416 with one bf16 + channels_last variant and
    CUDA graphs (``reduce-overhead``) for its inference at batch 1 and 64."""
    from conftest import compose_config, load_script
    from yolo9000.checkpoints import load_module

    bench = load_script("bench")
    b = bench_inference_settings(infer_compile=EAGER)
    images = [np.asarray(Image.open(p).convert("RGB")) for p in IMAGES[:1]]
    res = bench.time_inference(load_module(ckpt), "32-true", images, b, torch.device("cpu"))
    assert res["infer_compile"] == "{'dynamic': False, 'backend': 'eager'}"
    assert res["infer_b1_forward_img_per_s"] > 0 and res["infer_b1_dets_per_img"] > 0
    b.infer_compile = False
    assert bench.time_inference(load_module(ckpt), "32-true", images, b, torch.device("cpu"))["infer_compile"] is False
    cfg = compose_config("bench_gpu_latency")
    assert (cfg.bench.size, cfg.bench.batch_size, cfg.bench.device, list(cfg.bench.infer_batches)) == (
        416,
        64,
        "cuda",
        [1, 64],
    )
    assert cfg.model.net.backbone.width == 1.0 and cfg.bench.infer_compile == "reduce-overhead"
    assert list(cfg.bench.variants) == ["bf16_cl"] and not cfg.bench.lightning
    bench.split_variant(cfg.bench.variants.bf16_cl)  # valid keys
