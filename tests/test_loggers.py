"""The configured loggers continue a job's logs when it restarts in the same run folder (SLURM requeue, resume):
metrics.csv is appended to, not restarted, and W&B resumes the job's run (offline here)."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra.utils import instantiate

ROOT = Path(__file__).resolve().parents[1]


def logger_conf(name: str) -> dict[str, Any]:
    """The logger node of conf/logger/<name>.yaml (interpolations are replaced by the tests)."""
    return yaml.safe_load((ROOT / "conf" / "logger" / f"{name}.yaml").read_text())[name]


def csv_logger(save_dir: Path, **kw: Any) -> Any:
    """The configured csv logger (conf/logger/csv.yaml) writing into ``save_dir``."""
    return instantiate({**logger_conf("csv"), "save_dir": str(save_dir), **kw})


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def test_csv_appends_after_restart_and_merges_header(tmp_path: Path) -> None:
    first = csv_logger(tmp_path)
    for step in range(3):
        first.log_metrics({"train/loss": 1.0 - step / 10}, step=step)
    first.finalize("success")
    metrics = tmp_path / "csv" / "metrics.csv"
    assert len(read_rows(metrics)) == 3

    second = csv_logger(tmp_path)  # a new process, same run folder
    second.log_metrics({"train/loss": 0.6}, step=3)
    second.log_metrics({"train/loss": 0.5, "val/map_50": 0.25}, step=4)  # a new column
    second.finalize("success")

    rows = read_rows(metrics)
    assert [int(r["step"]) for r in rows] == [0, 1, 2, 3, 4]
    assert [float(r["train/loss"]) for r in rows] == pytest.approx([1.0, 0.9, 0.8, 0.6, 0.5])
    assert [r["val/map_50"] for r in rows] == ["", "", "", "", "0.25"]
    assert metrics.read_text().splitlines()[0] == "step,train/loss,val/map_50"


def test_csv_restart_replaces_rows_logged_after_the_checkpoint(tmp_path: Path) -> None:
    """A job killed after its checkpoint logs steps 3, 4 again: they replace the old rows, not follow them."""
    first = csv_logger(tmp_path)
    for step in range(5):
        first.log_metrics({"loss": float(step)}, step=step)
    first.finalize("failed")
    second = csv_logger(tmp_path)
    for step in range(3, 6):
        second.log_metrics({"loss": 10.0 * step}, step=step)
    second.finalize("success")
    rows = read_rows(tmp_path / "csv" / "metrics.csv")
    assert [(int(r["step"]), float(r["loss"])) for r in rows] == [(0, 0), (1, 1), (2, 2), (3, 30), (4, 40), (5, 50)]


def test_csv_rewind_killed_mid_rewrite_keeps_every_row(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The restart's rewrite (dropping the rows it logs again) goes to a file beside and is renamed: a kill in the
    middle of it (here: the writer failing after half the rows) leaves the file as it was, no row lost."""
    first = csv_logger(tmp_path)
    for step in range(6):
        first.log_metrics({"loss": float(step)}, step=step)
    first.finalize("failed")
    path = tmp_path / "csv" / "metrics.csv"
    before = path.read_text()

    def half_then_die(self: csv.DictWriter, rows: list[dict[str, Any]]) -> None:
        for row in rows[: len(rows) // 2]:
            self.writerow(row)
        raise KeyboardInterrupt  # stands in for SIGKILL

    second = csv_logger(tmp_path)
    monkeypatch.setattr(csv.DictWriter, "writerows", half_then_die)
    with pytest.raises(KeyboardInterrupt):
        second.log_metrics({"loss": 30.0}, step=3)
    assert path.read_text() == before


def test_csv_first_step_zero_keeps_every_row(tmp_path: Path) -> None:
    """A trainer that did not resume (e.g. a test-only run in the folder) logs at step 0: nothing is dropped."""
    first = csv_logger(tmp_path)
    for step in range(3):
        first.log_metrics({"loss": float(step)}, step=step)
    first.finalize("success")
    second = csv_logger(tmp_path)
    second.log_metrics({"test/map_50": 0.5}, step=0)
    second.finalize("success")
    rows = read_rows(tmp_path / "csv" / "metrics.csv")
    assert [r["step"] for r in rows] == ["0", "1", "2", "0"] and rows[-1]["test/map_50"] == "0.5"


def test_csv_keeps_rows_through_a_lightning_resume(tmp_path: Path) -> None:
    """Trainer.fit, then a new Trainer resuming from its last checkpoint in the same folder: one csv, every step."""
    import pytorch_lightning as pl
    from pytorch_lightning.demos.boring_classes import BoringModel

    class Logging(BoringModel):
        def training_step(self, batch: Any, batch_idx: int) -> Any:
            out = super().training_step(batch, batch_idx)
            self.log("train_loss", out["loss"])
            return out

    def fit(epochs: int, ckpt: str | None) -> None:
        trainer = pl.Trainer(
            default_root_dir=tmp_path,
            max_epochs=epochs,
            limit_train_batches=4,
            limit_val_batches=1,
            log_every_n_steps=1,
            logger=csv_logger(tmp_path),
            enable_progress_bar=False,
            enable_model_summary=False,
            accelerator="cpu",
        )
        trainer.fit(Logging(), ckpt_path=ckpt)

    fit(2, None)
    before = read_rows(tmp_path / "csv" / "metrics.csv")
    ckpt = next(tmp_path.rglob("*.ckpt"))
    fit(4, str(ckpt))
    rows = read_rows(tmp_path / "csv" / "metrics.csv")
    assert rows[: len(before)] == before, "the rows of the first run were lost"
    train_steps = [int(r["step"]) for r in rows if r.get("train_loss")]
    assert train_steps == list(range(16)), "one row per training step, no restart and no duplicate"


@pytest.fixture
def wandb_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def wandb_logger(save_dir: Path) -> Any:
    """The configured W&B logger (conf/logger/wandb.yaml) writing into ``save_dir``."""
    conf = logger_conf("wandb")
    conf |= {"save_dir": str(save_dir), "project": "yolo9000-test", "entity": None, "group": "g", "tags": ["t"]}
    conf["job_type"] = "train"
    return instantiate(conf)


def test_wandb_restart_resumes_the_run_of_the_folder(tmp_path: Path, wandb_offline: None) -> None:
    first = wandb_logger(tmp_path)
    run_id = first.experiment.id
    first.log_metrics({"loss": 1.0}, step=0)
    first.experiment.finish()

    second = wandb_logger(tmp_path)  # the requeued job: same folder, new process
    assert second.experiment.id == run_id
    assert (tmp_path / "wandb" / "run_id").read_text().strip() == run_id
    second.log_metrics({"loss": 0.5}, step=1)
    second.experiment.finish()

    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    # offline: one folder a start, offline-run-<date>_<time>-<id> (W&B appends "-1" when both start in one second)
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(\w+?)(-\d+)?", r.name).group(1) for r in runs}
    assert len(runs) == 2 and ids == {run_id}

    third = wandb_logger(tmp_path)
    assert third.version == run_id  # known before the run starts (checkpoint names, etc.)
    other = wandb_logger(tmp_path / "other_job")
    assert other.experiment.id != run_id  # another run folder, another run
    other.experiment.finish()


def test_wandb_calls_after_the_service_died_are_dropped(tmp_path: Path) -> None:
    """SLURM's SIGTERM to the job step kills the W&B service while Lightning ends its batch: no crash."""
    from yolo9000.loggers import ResumableWandbLogger

    class DeadRun:
        id = "dead0001"
        calls = 0

        def log(self, *args: Any, **kwargs: Any) -> None:
            DeadRun.calls += 1
            raise ConnectionResetError("Connection lost")

    lg = ResumableWandbLogger(save_dir=tmp_path, project="p", experiment=DeadRun())
    lg.log_metrics({"loss": 1.0}, step=0)
    lg.log_metrics({"loss": 0.5}, step=1)
    lg.finish(summary={"test/map_50": 0.1})
    assert lg.service_lost and DeadRun.calls == 1


TORCH_LOG_SCRIPT = """
import logging, sys
import torch
from yolo9000.environment import log_to_job_log
logging.basicConfig(level=logging.INFO, handlers=[logging.FileHandler(sys.argv[1])])
if sys.argv[2] == "on":
    log_to_job_log()
torch._dynamo.config.automatic_dynamic_shapes = False
f = torch.compile(lambda x: x * 2, backend="eager")
f(torch.ones(2))
f(torch.ones(3))
"""


@pytest.mark.parametrize("job_log", ["on", "off"])
def test_torch_logs_reach_the_job_log(tmp_path: Path, job_log: str) -> None:
    """What ``TORCH_LOGS=recompiles`` asks for (a recompilation, here of a function called at a second size)
    reaches the job's log file once ``log_to_job_log`` ran; torch's own handlers keep it on stderr otherwise."""
    import os
    import subprocess
    import sys

    log_file = tmp_path / "job.log"
    env = {**os.environ, "TORCH_LOGS": "recompiles", "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run(
        [sys.executable, "-c", TORCH_LOG_SCRIPT, str(log_file), job_log], env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    in_file = "Recompiling function" in log_file.read_text()
    assert in_file == (job_log == "on")
    assert ("Recompiling function" in proc.stderr) == (job_log == "off")
