"""The trade-off times what an application runs: the checkpoint's :class:`~yolo9000.Detector` (batch norms folded
into the convs, NHWC on a CPU) at the Trainer's precision, while the mAPs stay the evaluated module's. A precision the
Detector cannot reproduce is refused before the test runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytorch_lightning as pl
import torch

from test_tradeoff import bccd_ckpt, read_csv, small_bccd_sweep  # noqa: F401 - bccd_ckpt: the module-scoped checkpoint fixture
from yolo9000 import Detector, tradeoff
from yolo9000.checkpoints import load_module
from yolo9000.speed import inference_dtype
from yolo9000.tradeoff import SweepSettings, _title, run_sweep

SETTINGS = {"speed_batches": [2], "speed_warmup": 0, "speed_iters": 1, "speed_seconds": None}


def spy_detectors(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """Each Detector the sweep times: its network's batch norms, memory layout and dtype, and the layout of every
    input its network got."""
    seen: list[dict[str, Any]] = []

    def make(module: Any, **kw: Any) -> Detector:
        det = Detector(module, **kw)
        rec: dict[str, Any] = {
            "bn": sum(isinstance(m, torch.nn.BatchNorm2d) for m in det.network.modules()),
            "module_bn": sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.model.modules()),
            "channels_last": det.channels_last,
            "dtype": det.dtype,
            "inputs_nhwc": [],
            "autocast": [],
        }

        def hook(_: Any, args: tuple[torch.Tensor, ...]) -> None:
            rec["inputs_nhwc"].append(args[0].is_contiguous(memory_format=torch.channels_last))
            rec["autocast"].append(torch.is_autocast_enabled("cpu"))

        for net in {id(n): n for n in (det.network, det.network_for(2))}.values():  # batch 2: the fused sibling
            net.register_forward_pre_hook(hook)
        seen.append(rec)
        return det

    monkeypatch.setattr(tradeoff, "Detector", make)
    return seen


def test_the_timing_runs_the_folded_nhwc_network_while_the_test_runs_the_module(
    bccd_ckpt: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    module = load_module(bccd_ckpt, voc07=True)
    bns = sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.model.modules())
    assert bns > 0
    seen = spy_detectors(monkeypatch)
    make_datamodule, make_trainer = small_bccd_sweep()
    rows = run_sweep(module, make_datamodule, make_trainer, SweepSettings(sizes=[64, 96], **SETTINGS), tmp_path)
    assert [r["size"] for r in rows] == [64, 96] and all(r["img_per_s_bs2"] > 0 for r in rows)
    assert len(seen) == 2  # one Detector a size, on the trainer's device
    for rec in seen:
        assert rec["bn"] == 0 and rec["module_bn"] == bns  # folded copy timed; the module keeps its batch norms
        assert rec["channels_last"] and rec["inputs_nhwc"] and all(rec["inputs_nhwc"])
        assert rec["dtype"] == torch.float32 and not any(rec["autocast"])
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in module.model.modules()) == bns
    assert "batch norms folded" in (tmp_path / "tradeoff.md").read_text()


def test_bf16_mixed_is_timed_under_bf16_autocast(
    bccd_ckpt: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = spy_detectors(monkeypatch)
    make_datamodule, _ = small_bccd_sweep()

    def make_trainer(callbacks: list[Any]) -> pl.Trainer:
        return pl.Trainer(
            accelerator="cpu",
            precision="bf16-mixed",
            logger=False,
            callbacks=callbacks,
            enable_progress_bar=False,
            enable_model_summary=False,
        )

    module = load_module(bccd_ckpt, voc07=True)
    rows = run_sweep(module, make_datamodule, make_trainer, SweepSettings(sizes=[64], **SETTINGS), tmp_path)
    assert seen[0]["dtype"] == torch.bfloat16 and seen[0]["autocast"] and all(seen[0]["autocast"])
    # the table says so: a bf16 table reads apart from a float32 one (its img/s are another precision's)
    assert [r["dtype"] for r in read_csv(tmp_path / "tradeoff.csv")] == ["bfloat16"]
    assert "; bfloat16 autocast; torch threads" in (tmp_path / "tradeoff.md").read_text()
    assert "bfloat16 autocast" in _title(rows, {})


def test_a_precision_without_an_inference_counterpart_is_refused_before_the_test(
    bccd_ckpt: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    make_datamodule, _ = small_bccd_sweep()
    tested: list[int] = []

    class Trainer:
        world_size = 1
        precision = "bf16-true"

        def test(self, *a: Any, **k: Any) -> None:
            tested.append(1)

    module = load_module(bccd_ckpt, voc07=True)
    with pytest.raises(ValueError, match=r"trainer.precision: precision 'bf16-true' has no inference counterpart"):
        run_sweep(module, make_datamodule, lambda cb: Trainer(), SweepSettings(sizes=[64], **SETTINGS), tmp_path)
    assert not tested


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("32-true", torch.float32), ("32", torch.float32), ("bf16-mixed", torch.bfloat16), ("16-mixed", torch.float16)],
)
def test_inference_dtype_of_each_mixed_precision(precision: str, dtype: torch.dtype) -> None:
    assert inference_dtype(precision) == dtype


def test_inference_dtype_refuses_true_half_precisions() -> None:
    for precision in ("bf16-true", "16-true", "64-true", "transformer-engine"):
        with pytest.raises(ValueError, match=precision):
            inference_dtype(precision)
