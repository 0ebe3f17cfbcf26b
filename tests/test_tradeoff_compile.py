"""``eval.py sizes=[...] speed_compile=...``: the trade-off's timings run the network compiled (each size and batch
compiled in an untimed warm-up of at least three batches) while its mAPs stay the eager module's; the table says so.
Dynamo's ``eager`` backend keeps it to seconds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from test_tradeoff import bccd_ckpt, small_bccd_sweep  # noqa: F401 - bccd_ckpt: the module-scoped checkpoint fixture
from yolo9000.speed import compile_network
from yolo9000.tradeoff import COMPILED_WARMUP, EvalImages, SweepSettings, run_sweep, time_end_to_end

EAGER = {"backend": "eager"}


def test_speed_compile_settings_are_checked_when_the_sweep_is_set_up() -> None:
    assert SweepSettings(sizes=[64]).compile_options is None
    assert SweepSettings(sizes=[64], speed_compile=True).compile_options == {"dynamic": False}
    assert SweepSettings(sizes=[64], speed_compile="reduce-overhead").compile_options == {
        "mode": "reduce-overhead",
        "dynamic": False,
    }
    with pytest.raises(ValueError, match="unknown torch.compile keys"):
        SweepSettings(sizes=[64], speed_compile={"backends": "eager"})


def test_a_compiled_detector_runs_the_timed_forward_after_a_longer_warm_up(bccd_ckpt: Path) -> None:  # noqa: F811
    """The Detector's compiled network runs every forward pass (the module's own never), ``COMPILED_WARMUP``
    untimed batches first however few ``warmup`` asks for; the decode still runs on its output."""
    from yolo9000 import Detector
    from yolo9000.checkpoints import load_module

    module = load_module(bccd_ckpt)
    decoded: list[int] = []

    def forward(*_: Any) -> None:
        raise AssertionError("the module's forward ran")

    original = module.predict_raw
    module.forward = forward  # type: ignore[method-assign]
    module.predict_raw = lambda raw, *a, **k: decoded.append(raw.shape[0]) or original(raw, *a, **k)  # type: ignore[method-assign]
    det = Detector(module, device="cpu", compile=EAGER)
    calls: list[tuple[int, ...]] = []
    det.network.register_forward_pre_hook(lambda _, args: calls.append(tuple(args[0].shape)))
    images = EvalImages(torch.zeros(3, 3, 64, 64, dtype=torch.uint8), torch.ones(3, 4), torch.full((3, 2), 64))
    t = time_end_to_end(det, images, 2, warmup=0, iters=2, max_seconds=None)
    assert t["batches"] == 2 and t["img_per_s"] > 0
    assert calls == [(2, 3, 64, 64)] * (COMPILED_WARMUP + 2) and decoded == [2] * (COMPILED_WARMUP + 2)


def test_the_sweep_times_the_compiled_network_and_says_so(
    bccd_ckpt: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from yolo9000 import api
    from yolo9000.checkpoints import load_module

    timed: list[int] = []  # batches through the compiled network

    def counting_compile(model: torch.nn.Module, options: dict[str, Any]) -> Any:
        compiled = compile_network(model, options)
        return lambda x: timed.append(x.shape[0]) or compiled(x)

    monkeypatch.setattr(api, "compile_network", counting_compile)

    make_datamodule, make_trainer = small_bccd_sweep()
    rows = {}
    for key, compile in (("eager", False), ("compiled", EAGER)):
        module = load_module(bccd_ckpt, voc07=True)
        settings = SweepSettings(
            sizes=[64], speed_batches=[2], speed_warmup=0, speed_iters=1, speed_seconds=None, speed_compile=compile
        )
        rows[key] = run_sweep(module, make_datamodule, make_trainer, settings, tmp_path / key)
        # the module itself stays eager (its checkpoint, its evaluation)
        assert all(getattr(m, "_compiled_call_impl", None) is None for m in module.model.modules())
    assert timed == [2] * (COMPILED_WARMUP + 1)  # the compiled sweep's timing only: warm-up, then 1 timed batch
    assert rows["compiled"][0]["map_50"] == rows["eager"][0]["map_50"]  # the test ran the eager module both times
    note = "timed with the network compiled (torch.compile {'dynamic': False, 'backend': 'eager'})"
    assert note in (tmp_path / "compiled" / "tradeoff.md").read_text()
    assert "compiled" not in (tmp_path / "eager" / "tradeoff.md").read_text()
    metrics = json.loads((tmp_path / "compiled" / "metrics.json").read_text())
    assert metrics["speed_compile"] == "{'dynamic': False, 'backend': 'eager'}"
