"""Long runs that get killed: last.ckpt is the latest state, written atomically, and a run killed with SIGKILL in
the middle of an epoch and resumed from it ends with the same weights and metrics as the uninterrupted run."""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import SequentialSampler

from conftest import ROOT, compose_config, script_env
from yolo9000 import run_folder
from yolo9000.callbacks.checkpointing import atomic_save_checkpoint
from yolo9000.callbacks.progress import format_duration
from yolo9000.data.multiscale import MultiScaleBatchSampler, sample_seed

EPOCHS, TRAIN_IMAGES, BATCH = 3, 48, 4  # 12 batches an epoch
RUN = [
    f"data.max_images={{train: {TRAIN_IMAGES}, val: 8, test: 8}}",
    f"data.batch_size={BATCH}",
    "data.num_workers=2",  # augmentation drawn in worker processes
    "data.img_size=64",
    "data.multiscale.min_size=64",
    "data.multiscale.max_size=96",
    "data.multiscale.period=3",
    "model.net.backbone.width=0.125",
    f"trainer.max_epochs={EPOCHS}",
    "trainer.check_val_every_n_epoch=5",  # longer than the run: the last epoch is validated anyway
    "callbacks.last_checkpoint.every_n_train_steps=1",
    "callbacks.prediction_images.num_images=0",
    "logger=csv",
]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={out}", *RUN, *extra]


def _env() -> dict[str, str]:
    return {**script_env(), "OMP_NUM_THREADS": "1"}  # the same threads in both runs: bit-identical maths


@contextlib.contextmanager
def _piped_run(out: Path, *extra: str) -> Iterator[subprocess.Popen]:
    """The tiny run in a subprocess (stdout and stderr piped), killed at the end of the block if it still runs."""
    proc = subprocess.Popen(_cmd(out, *extra), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()


def _position(ckpt: dict) -> dict[str, int]:
    """The training loader's saved position (epoch, batch) in a Lightning checkpoint."""
    return ckpt["loops"]["fit_loop"]["state_dict"]["combined_loader"][0]


def _load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)


def _csv_rows(run: Path) -> list[dict[str, str]]:
    """The rows of a run's ``metrics.csv`` in file order, without the columns of measured speed."""
    with open(run / "csv" / "metrics.csv", newline="") as f:
        return [{k: v for k, v in row.items() if "img_per_s" not in k} for row in csv.DictReader(f)]


def test_sampler_starts_mid_epoch_then_runs_whole_epochs() -> None:
    bs = MultiScaleBatchSampler(SequentialSampler(range(30)), 4, False, [64, 96], period=2, seed=5)
    bs.set_epoch(1)
    whole = list(bs)
    bs.start_at(1, 3)
    assert list(bs) == whole[3:]  # the batches an interrupted epoch had left, with their sizes and seeds
    bs.set_epoch(1)  # Lightning sets the same epoch again before iterating: nothing changes
    assert list(bs) == whole
    bs.start_at(1, 5)
    bs.set_epoch(2)  # another epoch cancels the skip
    assert len(list(bs)) == len(bs) == 8


def test_sample_seeds_depend_on_seed_epoch_and_image_only() -> None:
    bs = MultiScaleBatchSampler(SequentialSampler(range(8)), 4, False, [64], seed=5)
    seeds = {i: s for b in bs for i, _, s in b}
    assert seeds == {i: sample_seed(5, 0, i) for i in range(8)}
    assert len(set(seeds.values())) == 8  # every image its own draw
    assert sample_seed(5, 1, 0) != sample_seed(5, 0, 0) != sample_seed(6, 0, 0)


def test_augmentation_is_the_same_with_0_and_2_workers() -> None:
    from yolo9000.data.datamodule import DetectionDataModule
    from yolo9000.data.voc import VOCParser

    def batches(workers: int) -> list[torch.Tensor]:
        dm = DetectionDataModule(
            train=VOCParser(ROOT / "data" / "bccd", "train"),
            class_names=["RBC", "WBC", "Platelets"],
            batch_size=4,
            num_workers=workers,
            persistent_workers=False,
            img_size=64,
            multiscale={"min_size": 64, "max_size": 96},
            max_images=12,
        )
        dm.setup("fit")
        return [b["images"] for b in dm.train_dataloader()]

    a, b = batches(0), batches(2)
    assert len(a) == 3 and all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_atomic_save_keeps_the_previous_file_when_killed_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "last.ckpt"
    path.write_bytes(b"previous complete checkpoint")

    def dies_mid_write(p: Path, **_: object) -> None:
        Path(p).write_bytes(b"half a chec")
        raise KeyboardInterrupt  # the process is killed while writing

    trainer = SimpleNamespace(save_checkpoint=dies_mid_write, is_global_zero=True, strategy=None)
    with pytest.raises(KeyboardInterrupt):
        atomic_save_checkpoint(trainer, path)  # type: ignore[arg-type]
    assert path.read_bytes() == b"previous complete checkpoint"

    def writes(p: Path, **_: object) -> None:
        Path(p).write_bytes(b"new")

    trainer = SimpleNamespace(save_checkpoint=writes, is_global_zero=True, strategy=SimpleNamespace(barrier=print))
    atomic_save_checkpoint(trainer, path)  # type: ignore[arg-type]
    assert path.read_bytes() == b"new" and not (tmp_path / "last.ckpt.tmp").exists()


def test_format_duration() -> None:
    assert [format_duration(x) for x in (4.2, 65, 3725)] == ["4s", "1m05s", "1h02m05s"]


def test_progress_bar_counts_epochs_as_the_epoch_lines() -> None:
    """The last of 4 epochs is "Epoch 4/4" on the bar as in the epoch line (Lightning's bar: "Epoch 3/3")."""
    from types import SimpleNamespace

    from yolo9000.callbacks.progress import EpochProgressBar

    bar = EpochProgressBar()
    bar._trainer = SimpleNamespace(max_epochs=4)  # type: ignore[assignment]
    assert bar._get_train_description(3).strip() == "Epoch 4/4"
    bar._trainer = SimpleNamespace(max_epochs=-1)  # type: ignore[assignment]  # no end: no total
    assert bar._get_train_description(0).strip() == "Epoch 1"


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted")
    res = subprocess.run(_cmd(out), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-5000:]
    return out


def test_last_ckpt_is_the_latest_state_and_short_runs_validate(uninterrupted: Path) -> None:
    last = _load(uninterrupted / "checkpoints" / "last.ckpt")
    assert last["epoch"] == EPOCHS - 1 and last["global_step"] == EPOCHS * TRAIN_IMAGES // BATCH
    assert int(last["state_dict"]["seen"]) == EPOCHS * TRAIN_IMAGES
    metrics = json.loads((uninterrupted / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).name == f"epoch_{EPOCHS - 1:03d}.ckpt"  # validated although period 5 > 3
    # last.ckpt holds the best-checkpoint record of that last validation (a resume tests the true best)
    (record,) = [v for k, v in last["callbacks"].items() if "RunCheckpoint" in k]
    assert record["best_model_path"] == metrics["checkpoint"] and record["best_model_score"] is not None
    log = (uninterrupted / "train.log").read_text()
    lines = re.findall(r"epoch (\d)/3 \| loss [\d.]+ \(coord .*\) \| [\d.]+ img/s \| lr \S+ \|.* ETA \S+", log)
    assert lines == ["1", "2", "3"], log[-3000:]
    assert "val/map_50" in log.splitlines()[[i for i, x in enumerate(log.splitlines()) if "epoch 3/3" in x][0]]


@pytest.mark.parametrize(
    "kill_epoch", [pytest.param(1, marks=pytest.mark.slow), EPOCHS - 1], ids=["middle_epoch", "last_epoch"]
)
def test_sigkill_mid_epoch_then_resume_gives_the_same_run(uninterrupted: Path, tmp_path: Path, kill_epoch: int) -> None:
    out = tmp_path / "killed"
    last = out / "checkpoints" / "last.ckpt"
    proc = subprocess.Popen(_cmd(out), cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline, seen_mtime = time.monotonic() + 300, 0.0
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file() and last.stat().st_mtime != seen_mtime:
                seen_mtime = last.stat().st_mtime
                pos = _position(_load(last))
                if pos["epoch"] == kill_epoch and pos["batch"] >= 2:
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed mid-epoch"
    pos = _position(_load(last))
    assert pos["epoch"] == kill_epoch and 0 < pos["batch"] < TRAIN_IMAGES // BATCH, pos  # killed inside that epoch

    res = subprocess.run(_cmd(out, f"resume={out}"), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-5000:]
    assert "not resumable" not in res.stderr  # Lightning knows the loader's position
    want, got = _load(uninterrupted / "checkpoints" / "last.ckpt"), _load(last)
    assert got["global_step"] == want["global_step"]
    diff = [k for k, v in want["state_dict"].items() if not torch.equal(v, got["state_dict"][k])]
    assert not diff, f"weights differ after kill + resume: {diff[:5]}"
    m_want = json.loads((uninterrupted / "metrics.json").read_text())
    m_got = json.loads((out / "metrics.json").read_text())
    for key in ("map_50", "map", "seen"):
        assert m_got[key] == m_want[key], key
    # the last epoch validated and tested from its checkpoint, also when the kill fell inside it (Lightning skips
    # on_train_epoch_start on a mid-epoch restart: the resumed run tested its last weights, unvalidated)
    assert Path(m_got["checkpoint"]).name == Path(m_want["checkpoint"]).name == f"epoch_{EPOCHS - 1:03d}.ckpt"
    # the records a summary reads: the run's overrides (not resume=), its data counters over both processes
    assert m_got["overrides"] == m_want["overrides"] and not any(o.startswith("resume=") for o in m_got["overrides"])
    # (the workers' prefetch before the kill is loaded again: at most 2 workers x 2 batches more)
    got_train, want_train = m_got["augmentation"]["train"], m_want["augmentation"]["train"]
    assert 0 <= got_train["samples_loaded"] - want_train["samples_loaded"] <= 2 * 2 * BATCH
    assert {k: v for k, v in m_got["augmentation"].items() if k != "train"} == {
        k: v for k, v in m_want["augmentation"].items() if k != "train"
    }
    log = (out / "train.log").read_text()
    assert "resuming the run" in log and log.count("epoch 1/3 |") == 1  # one continuous log file
    # the interrupted epoch's line averages all its batches, as the uninterrupted run's (the sums are checkpointed)
    loss = re.compile(rf"epoch {kill_epoch + 1}/3 \| (loss [\d.]+ \(coord [^)]*\))")
    assert loss.findall(log) == loss.findall((uninterrupted / "train.log").read_text())
    # every row the uninterrupted run logged, once, with the same values: the rows logged before the kill reached
    # the file before the checkpoint the run resumed from, the later ones were logged again
    want_rows, got_rows = _csv_rows(uninterrupted), _csv_rows(out)
    assert [r["step"] for r in got_rows] == [r["step"] for r in want_rows]
    assert got_rows == want_rows


def _signal_in_epoch_2(out: Path, sig: signal.Signals, *overrides: str, group: bool = False) -> tuple[int, str, dict]:
    """Train (periodic saves every 5 steps), send ``sig`` from outside in epoch 2 (the run waits at the end of step
    16 until it arrives: :class:`sigterm_probe.HoldAtStep`), to the training process or (``group``) to its process
    group, as a terminal's Ctrl-C: the exit status, stderr and the last.ckpt it left."""
    last = out / "checkpoints" / "last.ckpt"
    ready = out.parent / f"{out.name}.ready"
    hold = f"+callbacks.hold_step={{_target_: sigterm_probe.HoldAtStep, step: 16, ready: '{ready}'}}"
    cmd = _cmd(out, *overrides, hold)
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=group
    )
    send = (lambda: os.killpg(proc.pid, sig)) if group else (lambda: os.kill(proc.pid, sig))
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if ready.is_file():
                send()
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, err.decode(), _load(last)


def test_sigterm_saves_the_batch_it_stopped_at_exits_143_and_resumes_exactly(
    uninterrupted: Path, tmp_path: Path
) -> None:
    """SIGTERM (a scheduler, ``timeout``, ``kill``): Lightning stops after the current batch; last.ckpt is written
    there (not only at the periodic saves, here every 5 steps) and the process exits with 143, not 0."""
    out = tmp_path / "terminated"
    last = out / "checkpoints" / "last.ckpt"
    every5 = "callbacks.last_checkpoint.every_n_train_steps=5"
    code, err, state = _signal_in_epoch_2(out, signal.SIGTERM, every5)
    assert code == 143, err[-3000:]
    assert f"stopped by SIGTERM; {last} holds the state" in (out / "train.log").read_text()
    steps = TRAIN_IMAGES // BATCH  # a periodic save is at a multiple of 5, the epoch ends at multiples of 12
    assert state["global_step"] % 5 and steps < state["global_step"] < 2 * steps, state["global_step"]  # the stop
    res = subprocess.run(_cmd(out, every5, f"resume={out}"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-5000:]
    want, got = _load(uninterrupted / "checkpoints" / "last.ckpt"), _load(last)
    diff = [k for k, v in want["state_dict"].items() if not torch.equal(v, got["state_dict"][k])]
    assert not diff, f"weights differ after SIGTERM + resume: {diff[:5]}"
    assert (out / "config_resumed.yaml").is_file() and (out / "launch_overrides.txt").read_text().strip()


@pytest.mark.slow  # ~9 s; SIGTERM stops after the batch and saves in the default suite (the same path)
def test_ctrl_c_stops_after_the_batch_saves_it_and_exits_130(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group: the loader workers too) stopped the run where it was,
    unsaved since the last periodic save, with no word on how to go on; it now stops as SIGTERM does: after the
    batch, saved there (SIGTERM's save resumes exactly, above), the workers leaving the signal to the main process."""
    out = tmp_path / "interrupted"
    every5 = "callbacks.last_checkpoint.every_n_train_steps=5"
    code, err, state = _signal_in_epoch_2(out, signal.SIGINT, every5, "data.num_workers=2", group=True)
    assert code == 130, err[-3000:]
    log = (out / "train.log").read_text()
    assert "Ctrl-C: the run stops after this batch" in log and f"stopped by Ctrl-C; {out / 'checkpoints'}" in log
    steps = TRAIN_IMAGES // BATCH
    assert state["global_step"] % 5 and steps < state["global_step"] < 2 * steps, state["global_step"]


def test_ctrl_c_while_starting_exits_130_with_a_line_not_a_traceback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C before the fit (the data being read) ended in a KeyboardInterrupt traceback: it exits 130 after a line
    saying what to do, which differs for a fresh run (start it again) and one with a checkpoint (resume=)."""
    import importlib.util

    from omegaconf import OmegaConf

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)

    def interrupted(cfg: object) -> None:
        raise KeyboardInterrupt  # what SIGINT raises in the main thread

    monkeypatch.setattr(train, "run", interrupted)
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    for expected in ("nothing was trained: the same command starts it", f"resume={tmp_path} continues the run"):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "yolo9000"), pytest.raises(SystemExit) as stop:
            train.main.__wrapped__(cfg)
        assert stop.value.code == 130
        assert f"stopped by Ctrl-C before training (while starting): {expected}" in caplog.text
        (tmp_path / "config.yaml").write_text("{}\n")  # the second round: a run with a checkpoint
        (tmp_path / "checkpoints").mkdir(exist_ok=True)
        (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"")


def test_sigterm_while_starting_exits_143_with_a_line_in_the_console_and_the_log(tmp_path: Path) -> None:
    """SIGTERM before Lightning's fit takes the signal (here while the callbacks are built, after the data and the
    model) killed the process with no word anywhere (status -15): it exits 143 after a line in the console and the
    run's log saying how to go on."""
    out, ready = tmp_path / "run", tmp_path / "ready"
    hold = f"+callbacks.hold={{_target_: sigterm_probe.HoldAtStart, ready: '{ready}'}}"
    with _piped_run(out, hold) as proc:
        deadline = time.monotonic() + 300
        while not ready.is_file() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.is_file(), proc.communicate(timeout=60)[1].decode()[-3000:]
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = (b.decode() for b in proc.communicate(timeout=120))
    assert proc.returncode == 143, stderr[-3000:]
    line = "stopped by SIGTERM before training (while starting): nothing was trained: the same command starts it"
    assert line in stdout + stderr and line in (out / "train.log").read_text()
    assert "Traceback" not in stderr


def test_sigterm_while_the_imports_run_exits_143_with_a_line(tmp_path: Path) -> None:
    """SIGTERM while train.py imports torch and Lightning (seconds; before its start's handler is armed) killed the
    process with no word (status -15): it exits 143 after a line saying how the run goes on, writing nothing."""
    out = tmp_path / "run"
    with _piped_run(out) as proc:
        maps, deadline = Path(f"/proc/{proc.pid}/maps"), time.monotonic() + 120
        while proc.poll() is None and time.monotonic() < deadline and "libtorch" not in maps.read_text():
            time.sleep(0.002)  # torch's libraries are loaded: the import of Lightning has begun, far from done
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        _, stderr = (b.decode() for b in proc.communicate(timeout=120))
    assert proc.returncode == 143, stderr[-3000:]
    assert "stopped by SIGTERM while starting (importing): nothing was trained: the same command starts it" in stderr
    assert "Traceback" not in stderr and not out.exists()


def test_sigterm_during_fit_and_test_is_lightnings_to_handle(tmp_path: Path) -> None:
    """The handler in place while fitting and testing is Lightning's (stop at the batch end, SLURM's requeue; the
    checkpoint callback's swap inside it), with train.py's handler of the start composed last underneath it, where
    it does nothing (it is not SIGTERM's handler itself: :func:`_sigterm_while_starting`)."""
    out, record = tmp_path / "run", tmp_path / "handlers.json"
    probe = f"+callbacks.handlers={{_target_: sigterm_probe.RecordSigtermHandler, out: '{record}'}}"
    tiny = ["data.max_images={train: 8, val: 4, test: 4}", "data.num_workers=0", "trainer.max_epochs=1"]
    keys = tuple(o.split("=")[0] for o in tiny)
    cmd = [a for a in _cmd(out) if not a.startswith(keys)] + [*tiny, probe]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    seen = json.loads(record.read_text())
    for stage in ("fit", "test"):
        assert seen[stage]["type"] == "_HandlersCompose", seen
        # train.py's handler of the start, composed underneath, does nothing while Lightning's is in place
        assert seen[stage]["handlers"][-1] == "_sigterm_while_starting", seen


def test_sigterm_while_starting_handler_does_nothing_under_lightnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning composes the handler it finds into its own for the fit and the test: called from there (it is not
    SIGTERM's handler itself) it leaves the stop at the batch end to Lightning; as the handler, it stops the start."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    monkeypatch.setattr(train, "_ARMED_PID", os.getpid())
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        assert train._sigterm_while_starting(signal.SIGTERM, None) is None  # composed: not the handler in place
        signal.signal(signal.SIGTERM, train._sigterm_while_starting)
        with pytest.raises(train._TerminatedWhileStarting):
            train._sigterm_while_starting(signal.SIGTERM, None)
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_composed_start_handler_leaves_a_forked_loader_worker_running(monkeypatch: pytest.MonkeyPatch) -> None:
    """A DataLoader worker forked while Lightning's handler (with the start's composed into it) is in place inherits
    it until ``worker_init`` ignores SIGTERM: a SIGTERM then (SLURM signals every process of the job) must leave the
    worker to its main process, not end it (a worker killed by a signal fails the next batch, before Lightning's stop
    at the batch end). Called in another process than the one that armed it, not as SIGTERM's handler itself: no
    kill, SIGTERM's handling left as it is; as the handler itself there, the child ends as SIGTERM's default."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    monkeypatch.setattr(train, "_ARMED_PID", -2)  # armed in another process: this one is a forked child
    kills: list[tuple[int, int]] = []
    monkeypatch.setattr(train.os, "kill", lambda pid, sig: kills.append((pid, sig)))
    composed = lambda signum, frame: train._sigterm_while_starting(signum, frame)  # noqa: E731  (as Lightning's)
    previous = signal.signal(signal.SIGTERM, composed)
    try:
        assert train._sigterm_while_starting(signal.SIGTERM, None) is None
        assert kills == [] and signal.getsignal(signal.SIGTERM) is composed
        signal.signal(signal.SIGTERM, train._sigterm_while_starting)  # the handler itself, inherited by a fork
        train._sigterm_while_starting(signal.SIGTERM, None)
        assert kills == [(os.getpid(), signal.SIGTERM)] and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_sigterm_after_the_stop_ends_the_process_at_once_with_143(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After a SIGTERM stopped the job, train.py's process re-armed the start's handler: a second SIGTERM (a
    scheduler's repeat, a user's second kill) raised inside the exit's clean-up, an "Exception ignored in atexit
    callback" traceback, or ended the line's writing with -15. Now it ends the process at once with status 143."""
    import importlib.util

    from omegaconf import OmegaConf
    from pytorch_lightning.utilities.exceptions import SIGTERMException

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)

    def stopped(cfg: object) -> None:
        raise SIGTERMException  # Lightning's stop at the batch end

    monkeypatch.setattr(train, "run", stopped)
    monkeypatch.setattr(train, "_ARMED_PID", os.getpid())
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path)}})
    previous = signal.signal(signal.SIGTERM, train._sigterm_while_starting)  # as train.py's own process
    try:
        with pytest.raises(SystemExit) as stop:
            train.main.__wrapped__(cfg)
        assert stop.value.code == 143
        assert signal.getsignal(signal.SIGTERM) is train._second_sigterm_exits_143
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a caller's process: its handling stays as it was
        with pytest.raises(SystemExit):
            train.main.__wrapped__(cfg)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow  # ~20 s: a run stopped, refused, then run to its end (the check itself: test_resume_arg_check_*)
def test_resume_of_no_run_with_hydra_run_dir_leaves_no_folder_and_the_run_starts_there(tmp_path: Path) -> None:
    """``resume=<folder>`` with the run's overrides, ``hydra.run.dir=<folder>`` among them, for a run that was
    stopped before it wrote anything (its folder absent): Hydra created the folder and recorded the resume's start
    there (then failed.json and a traceback in the log), and the run's own command was then refused there ("holds
    the run of other overrides"). It stops with the reason before anything is created, as without hydra.run.dir."""
    out = tmp_path / "run"
    tiny = ["data.max_images={train: 8, val: 4, test: 4}", "data.num_workers=0", "trainer.max_epochs=1"]
    keys = tuple(o.split("=")[0] for o in tiny)
    cmd = [a for a in _cmd(out) if not a.startswith(keys)] + tiny
    res = subprocess.run([*cmd, f"resume={out}"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 1 and f"Error: resume={out}: no such run folder" in res.stderr, res.stderr[-3000:]
    assert not out.exists()
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]


def test_resume_arg_check_reads_the_value_as_hydra_does(tmp_path: Path) -> None:
    """The check before Hydra creates a folder read ``resume=`` by splitting at "=": a quoted folder (one with a space,
    as Hydra's override grammar needs it) or an interpolation Hydra resolves was refused as "no such run folder"
    though Hydra would resume it. It reads the override as Hydra does; a folder that does not exist is still refused."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    run = tmp_path / "my run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("{}\n")
    train._check_resume_arg(["train.py", f"resume='{run}'"])  # Hydra resumes it: no error
    train._check_resume_arg(["train.py", f"++resume='{run}/checkpoints'"])
    train._check_resume_arg(["train.py", "resume=${oc.env:SOME_RUN}"])  # Hydra's to resolve and check
    train._check_resume_arg(["train.py", "hydra.mode=MULTIRUN", "resume=a,b"])  # a sweep: no single run here
    train._check_resume_arg(["train.py", "resume=null"])
    with pytest.raises(SystemExit, match="no such run folder"):
        train._check_resume_arg(["train.py", f"resume='{tmp_path / 'absent'}'"])
    with pytest.raises(SystemExit, match="no such run folder"):
        train._check_resume_arg(["train.py", f"resume={tmp_path / 'absent'}"])


@pytest.mark.parametrize("stage", ["fit", pytest.param("test", marks=pytest.mark.slow)])  # test: ~26 s, slow
def test_sigterm_in_lightnings_setup_exits_143_with_a_line_and_the_run_goes_on(tmp_path: Path, stage: str) -> None:
    """SIGTERM inside Lightning's fit or test before Lightning takes the signal (the data's setup, the checkpoint's
    restore: train.py had handed SIGTERM to its default handler already) killed the process silently (status -15):
    it exits 143 with a line saying how the run goes on, and the run goes on so (the test: resume= tests it)."""
    out = tmp_path / "run"
    probe = f"+callbacks.sigterm_setup={{_target_: sigterm_probe.SigtermAtSetup, stage: {stage}}}"
    tiny = ["data.max_images={train: 8, val: 4, test: 4}", "data.num_workers=0", "trainer.max_epochs=1"]
    keys = tuple(o.split("=")[0] for o in tiny)
    cmd = [a for a in _cmd(out) if not a.startswith(keys)] + tiny
    res = subprocess.run([*cmd, probe], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 143, res.stderr[-3000:]
    assert "Traceback" not in res.stderr
    if stage == "fit":
        line = "stopped by SIGTERM before training (while starting): nothing was trained: the same command starts it"
    else:
        line = f"stopped by SIGTERM after training (the training is saved): resume={out} tests the run again"
    assert line in res.stdout + res.stderr and line in (out / "train.log").read_text()
    assert not (out / "metrics.json").exists()
    if stage == "test":
        res = subprocess.run([*cmd, f"resume={out}"], cwd=ROOT, env=_env(), capture_output=True, text=True)
        assert res.returncode == 0, res.stderr[-3000:]
        assert (out / "metrics.json").is_file()


@pytest.mark.slow  # ~25 s: a tiny run trained, then tested alone and stopped
def test_sigterm_in_a_test_only_runs_setup_says_nothing_was_trained(tmp_path: Path) -> None:
    """A test-only run (``train=false ckpt_path=...``) stopped by SIGTERM in the test's set-up said "the training is
    saved: resume= tests the run again", though its folder holds no training: it says the same command starts it."""
    tiny = ["data.max_images={train: 8, val: 4, test: 4}", "data.num_workers=0", "trainer.max_epochs=1"]
    keys = tuple(o.split("=")[0] for o in tiny)
    trained = tmp_path / "trained"
    cmd = [a for a in _cmd(trained) if not a.startswith(keys)] + tiny
    res = subprocess.run([*cmd, "test=false"], cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "tested"
    probe = "+callbacks.sigterm_setup={_target_: sigterm_probe.SigtermAtSetup, stage: test}"
    ckpt = f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}"
    cmd = [a for a in _cmd(out) if not a.startswith(keys)] + tiny + ["train=false", ckpt, probe]
    res = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 143, res.stderr[-3000:]
    line = "stopped by SIGTERM before training (while starting): nothing was trained: the same command starts it"
    assert line in res.stdout + res.stderr and "the training is saved" not in res.stdout + res.stderr


def test_ctrl_c_during_the_test_exits_130_and_says_how_the_run_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Ctrl-C during the final test meets Lightning's own handling ("Detected KeyboardInterrupt", sys.exit(1)): the
    process ended with status 1 and no word on the run (no metrics.json); it now exits 130, as a Ctrl-C of the fit,
    after the line saying that resume=<run> tests it again. Another SystemExit passes unchanged."""
    import importlib.util

    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)

    class Interrupted(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(1, 1)

        def test_step(self, batch: torch.Tensor, batch_idx: int) -> None:
            raise KeyboardInterrupt  # what SIGINT raises in the main thread

    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    previous = signal.getsignal(signal.SIGINT)  # Lightning leaves SIGINT ignored after its handling
    try:
        with caplog.at_level(logging.WARNING, "yolo9000"), pytest.raises(SystemExit) as stop:
            with train._ctrl_c_exits_130(trainer, tmp_path, testing=True):
                trainer.test(Interrupted(), dataloaders=DataLoader([torch.zeros(1)]))
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop.value.code == 130
    assert f"stopped by Ctrl-C while testing (the training is saved; no metrics.json): resume={tmp_path} tests" in (
        caplog.text
    )
    with pytest.raises(SystemExit) as other, train._ctrl_c_exits_130(pl.Trainer(logger=False), tmp_path, True):
        raise SystemExit(1)
    assert other.value.code == 1


@pytest.mark.parametrize("where", ["validation", pytest.param("last_train_batch", marks=pytest.mark.slow)])
def test_sigterm_during_validation_finishes_it_saves_the_epoch_exits_143(
    uninterrupted: Path, tmp_path: Path, where: str
) -> None:
    """SIGTERM during a validation, or during the last training batch before one: the validation finishes, the epoch
    is saved with its best checkpoint, then the run exits 143 (Lightning stopped after the validation batch, before
    the epoch-end save: the epoch's training was lost). The resume ends as the uninterrupted run."""
    out = tmp_path / where
    probe = f"+callbacks.sigterm={{_target_: sigterm_probe.SigtermAt, epoch: {EPOCHS - 1}, where: {where}}}"
    res = subprocess.run(_cmd(out, probe), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    assert res.returncode == 143, res.stderr[-3000:]
    assert "SIGTERM during validation: it finishes, the run is saved, then it stops" in (out / "train.log").read_text()
    want, got = _load(uninterrupted / "checkpoints" / "last.ckpt"), _load(out / "checkpoints" / "last.ckpt")
    assert got["global_step"] == want["global_step"] == EPOCHS * TRAIN_IMAGES // BATCH
    assert all(torch.equal(v, got["state_dict"][k]) for k, v in want["state_dict"].items())
    assert (out / "checkpoints" / f"epoch_{EPOCHS - 1:03d}.ckpt").is_file()  # validated: the best checkpoint
    res = subprocess.run(_cmd(out, f"resume={out}"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    ref, now = (json.loads((d / "metrics.json").read_text()) for d in (uninterrupted, out))
    assert now["map_50"] == ref["map_50"] and Path(now["checkpoint"]).name == Path(ref["checkpoint"]).name


@pytest.mark.slow  # ~19 s; the SIGTERM save of the batch it stopped at stays in the default suite
def test_sigterm_after_the_batch_end_check_still_saves_that_batch(uninterrupted: Path, tmp_path: Path) -> None:
    """SIGTERM that arrives after the checkpoint callback's batch-end check (later callbacks, logging) stops the run
    at that batch's end: the batch is saved then (it was lost back to the previous save, the epoch's start here)."""
    out = tmp_path / "late"
    probe = "+callbacks.sigterm={_target_: sigterm_probe.SigtermAt, epoch: 1, where: after_batch_end, batch: 4}"
    no_periodic = "callbacks.last_checkpoint.every_n_train_steps=null"
    res = subprocess.run(_cmd(out, probe, no_periodic), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 143, res.stderr[-3000:]
    last = out / "checkpoints" / "last.ckpt"
    steps = TRAIN_IMAGES // BATCH
    assert _load(last)["global_step"] == steps + 5 and _position(_load(last)) == {"epoch": 1, "batch": 5}
    res = subprocess.run(_cmd(out, no_periodic, f"resume={out}"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    want, got = _load(uninterrupted / "checkpoints" / "last.ckpt"), _load(last)
    assert all(torch.equal(v, got["state_dict"][k]) for k, v in want["state_dict"].items())


def test_classifier_loader_is_resumable_and_worker_independent(tmp_path: Path) -> None:
    from PIL import Image

    from yolo9000.data.imagefolder import ClassificationDataModule

    gen = torch.Generator().manual_seed(0)
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = torch.randint(0, 255, (40, 48, 3), generator=gen, dtype=torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "train" / cls / f"{i}.png")

    def batches(workers: int, start: tuple[int, int] = (0, 0)) -> list[torch.Tensor]:
        dm = ClassificationDataModule(
            str(tmp_path), val_split="train", img_size=32, batch_size=4, num_workers=workers, seed=3
        )
        dm.setup("fit")
        dm.load_state_dict({"epoch": start[0], "batch": start[1]})
        return [b["images"] for b in dm.train_dataloader()]

    whole = batches(0, (1, 0))
    assert len(whole) == 3 and all(torch.equal(x, y) for x, y in zip(whole, batches(2, (1, 0)), strict=True))
    resumed = batches(0, (1, 2))  # a run resumed before batch 2 of epoch 1 gets exactly the rest
    assert len(resumed) == 1 and torch.equal(resumed[0], whole[2])
    assert not torch.equal(batches(0, (2, 0))[0], whole[0])  # another epoch: other shuffle and augmentation


def test_resume_with_other_data_is_refused_and_names_the_run_overrides(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """``resume=<run>`` composed without the run's data overrides would train on the default data (BCCD, other
    classes): refused before anything is rewritten, naming the keys that differ and the run's launch overrides.
    So are the settings that decide the rest of the training (a changed model.lr would not apply while the records
    said it did; the schedule's steps were counted at the run's batch size; another seed draws other batches);
    other changed settings (speed switches, precision) are a warning that names them, loader workers information."""
    here = f"paths.output_dir={tmp_path}"  # as Hydra sets it in a run (the CSV logger: no ${hydra:} keys)

    def config(*overrides: str) -> DictConfig:
        return compose_config("train", here, "logger=csv", *overrides)

    started = ["data=yolo", f"data.root={tmp_path / 'cells'}"]
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(config(*started), resolve=True))
    (tmp_path / run_folder.LAUNCH_FILE).write_text(" ".join(started) + "\n")
    with caplog.at_level(logging.INFO, logger="yolo9000.train"):
        run_folder.check_resume_config(config(*started), tmp_path)  # the same run: silent
        assert not caplog.records
        run_folder.check_resume_config(
            config(*started, "data.num_workers=2", "model.fast.channels_last=false", "trainer.precision=bf16-mixed"),
            tmp_path,
        )
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    informed = [r.getMessage() for r in caplog.records if r.levelno == logging.INFO]
    assert (
        len(warned) == 1
        and "2 setting(s) differ" in warned[0]
        and "model.fast.channels_last: True -> False" in warned[0]
    )
    assert "num_workers" not in warned[0] and informed == [
        f"resume={tmp_path}: continued with data.num_workers: 0 -> 2"
    ]
    with pytest.raises(run_folder.ResumeRefused, match="data or training settings differ") as err:
        run_folder.check_resume_config(config(), tmp_path)
    msg = str(err.value)
    assert f"data.root: '{tmp_path / 'cells'}' (the run)" in msg and "data.batch_size" not in msg
    assert f"python src/train.py {' '.join(started)} resume={tmp_path}" in msg.splitlines()[0]  # the fix first
    trajectory = ["data.batch_size=4", "model.lr=0.01", "seed=2", "data.multiscale.max_size=352"]
    with pytest.raises(run_folder.ResumeRefused) as err:
        run_folder.check_resume_config(config(*started, *trajectory), tmp_path)
    msg = str(err.value)
    for line in ["data.batch_size: 16 (the run) vs 4 (now)", "model.lr: 0.001 (the run) vs 0.01 (now)"]:
        assert line in msg
    assert "\n  seed: 1 (the run) vs 2 (now)" in msg and "data.multiscale.max_size: 608 (the run) vs 352" in msg
    assert "data.root:" not in msg and "model.fast" not in msg


def test_a_job_in_a_folder_of_another_run_is_refused(tmp_path: Path) -> None:
    """A job Hydra puts into a folder holding a run (a sweep re-run into its folder) must be that run: any other
    override is refused, naming each; a longer schedule, other loader workers or loggers are the same run."""
    (tmp_path / ".hydra").mkdir()
    started = ["experiment=ablation_anchors", "priors=none", "seed=1"]
    (tmp_path / ".hydra" / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(started)))
    run_folder.check_same_job(tmp_path, started)
    run_folder.check_same_job(tmp_path, [*started[::-1], "trainer.max_epochs=90", "data.num_workers=2", "logger=csv"])
    with pytest.raises(run_folder.ResumeRefused) as err:
        run_folder.check_same_job(tmp_path, ["experiment=ablation_anchors", "priors=kmeans5_iou", "seed=5", "+a.b=1"])
    msg = str(err.value)
    assert "priors: none (the run) vs kmeans5_iou (this job)" in msg and "seed: 1 (the run) vs 5 (this job)" in msg
    assert "a.b: (not set) (the run) vs 1 (this job)" in msg and "experiment" not in msg.split("\n")[1]
    assert "A sweep re-run into its folder" in msg
    with pytest.raises(run_folder.ResumeRefused) as err:  # a single run given hydra.run.dir: no word of sweeps
        run_folder.check_same_job(tmp_path, [*started[:2], "seed=5"], sweep=False)
    assert "sweep" not in str(err.value) and "give this one another folder" in str(err.value)
    assert f"continue that run with resume={tmp_path} and its overrides" in str(err.value)
    run_folder.check_same_job(tmp_path / "fresh", ["priors=kmeans5_iou"])  # no record there: nothing to compare


def test_record_subdir_keeps_the_first_start_record(tmp_path: Path) -> None:
    """Hydra saves a job's config in .hydra/ of a fresh folder, in .hydra_resumed/ of a folder whose .hydra/ holds
    its run's record (resume, a sweep re-run into its folder, a requeued job): sweep summaries read .hydra/."""
    from yolo9000.multirun import record_subdir

    assert record_subdir(str(tmp_path)) == ".hydra"
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("[]\n")
    assert record_subdir(str(tmp_path)) == ".hydra_resumed"
    (tmp_path / ".hydra_resumed").mkdir()  # every later start keeps its own record
    assert record_subdir(str(tmp_path)) == ".hydra_resumed_2"
    (tmp_path / ".hydra_resumed_2").mkdir()
    assert record_subdir(str(tmp_path)) == ".hydra_resumed_3"


def test_best_checkpoint_records_follow_a_moved_run_folder(tmp_path: Path) -> None:
    """A run folder moved, then resumed: the best score and files are mapped to the new folder (Lightning alone
    drops them, and the first validation after the resume becomes the best); files elsewhere: Lightning's way."""
    from yolo9000.callbacks.checkpointing import RunCheckpoint

    old, new = tmp_path / "old" / "checkpoints", tmp_path / "new" / "checkpoints"
    new.mkdir(parents=True)
    (new / "epoch_001.ckpt").write_bytes(b"x")
    saved = {
        "monitor": "val/map_50",
        "best_model_score": torch.tensor(0.42),
        "best_model_path": str(old / "epoch_001.ckpt"),
        "current_score": torch.tensor(0.3),
        "dirpath": str(old),
        "best_k_models": {str(old / "epoch_001.ckpt"): torch.tensor(0.42)},
        "kth_best_model_path": str(old / "epoch_001.ckpt"),
        "kth_value": torch.tensor(0.42),
        "last_model_path": "",
    }
    cb = RunCheckpoint(dirpath=str(new), monitor="val/map_50", mode="max")
    cb.load_state_dict(dict(saved))
    assert cb.best_model_path == str(new / "epoch_001.ckpt") and float(cb.best_model_score) == pytest.approx(0.42)
    assert list(cb.best_k_models) == [str(new / "epoch_001.ckpt")] and cb.kth_best_model_path == cb.best_model_path
    elsewhere = RunCheckpoint(dirpath=str(tmp_path / "other"), monitor="val/map_50", mode="max")
    with pytest.warns(UserWarning, match="dirpath has changed"):
        elsewhere.load_state_dict(dict(saved))
    assert elsewhere.best_model_score is None  # a new folder without those files starts a fresh top-k


@pytest.mark.slow  # ~15 s, two launches; a sweep re-run into its folders is in the default suite (test_sweeps.py)
def test_finished_run_is_not_run_again_and_a_refused_resume_writes_nothing(uninterrupted: Path) -> None:
    """``resume=<finished run>`` with its overrides (a sweep re-run into its folder) keeps the result as it is and
    leaves no record of the start that ran nothing (each retry added a .hydra_resumed_N/); with other data it stops
    before writing into the folder (no failed.json, the run's .hydra/ and records unchanged)."""
    files = ("metrics.json", "config.yaml", ".hydra/config.yaml", ".hydra/overrides.yaml", "checkpoints/last.ckpt")
    before = {f: (uninterrupted / f).read_bytes() for f in files}
    res = subprocess.run(
        _cmd(uninterrupted, f"resume={uninterrupted}"), cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert "already holds this job's finished run" in (uninterrupted / "train.log").read_text()
    assert "resuming the run in" not in res.stdout + res.stderr  # it is not resumed: no message says it is
    assert sorted(p.name for p in uninterrupted.glob(".hydra_resumed*")) == []
    other = [o if not o.startswith("data.max_images") else "data.max_images={train: 8, val: 8, test: 8}" for o in RUN]
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={uninterrupted}", *other]
    res = subprocess.run([*cmd, f"resume={uninterrupted}"], cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 1 and "data or training settings differ" in res.stderr
    # a user's mistake, not a crash: the reason alone (no Hydra traceback), and no "resuming" before it
    assert res.stderr.startswith("Error: resume=") and "Traceback" not in res.stderr
    assert "resuming the run" not in res.stdout
    # the command it gives is the latest finished process's (metrics.json), as given there
    first = res.stderr.splitlines()[0]
    assert f" trainer.max_epochs={EPOCHS} " in first and first.endswith(f" logger=csv resume={uninterrupted}")
    assert not (uninterrupted / "failed.json").exists()
    assert {f: (uninterrupted / f).read_bytes() for f in files} == before
    assert sorted(p.name for p in uninterrupted.glob(".hydra_resumed*")) == []  # the refused start left none


@pytest.mark.slow  # ~21 s, two launches; the default suite resumes runs in the other tests of this file
def test_resume_does_not_need_the_starting_weights_file(tmp_path: Path) -> None:
    """A run started from model.backbone_ckpt resumes from its last.ckpt after that file is gone (the weights come
    from the checkpoint)."""
    from yolo9000.models.darknet19 import Darknet19

    backbone = tmp_path / "backbone.ckpt"
    state = Darknet19(width=0.125).state_dict()
    torch.save({"state_dict": {f"model.backbone.{k}": v for k, v in state.items()}}, backbone)
    out = tmp_path / "run"
    one = [o if not o.startswith("trainer.max_epochs") else "trainer.max_epochs=1" for o in RUN]
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={out}", *one]
    res = subprocess.run(
        [*cmd, f"model.backbone_ckpt={backbone}"], cwd=ROOT, env=_env(), capture_output=True, text=True
    )
    assert res.returncode == 0, res.stderr[-3000:]
    backbone.unlink()
    # resume= given the run's checkpoint file (not its folder): the same continuation, in the run's folder
    last = out / "checkpoints" / "last.ckpt"
    more = [*cmd, f"model.backbone_ckpt={backbone}", "trainer.max_epochs=2", f"resume={last}"]
    res = subprocess.run(more, cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _load(last)["epoch"] == 1 and (out / ".hydra_resumed").is_dir()
    assert "resuming the run in" in (out / "train.log").read_text()


def test_a_resume_of_a_wrong_folder_says_which_folder_to_give(tmp_path: Path) -> None:
    """resume= takes a run's folder: its checkpoints/ folder is answered with the run's folder, a folder that
    holds no run (Hydra has made it by then) is named as not a training run's, pointing to ckpt_path=."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 1\n")
    (run_dir / run_folder.LAUNCH_FILE).write_text("data=voc seed=3\n")
    for folder, error, said in [
        (run_dir / "checkpoints", FileNotFoundError, f"resume takes the run's folder, resume={run_dir}"),
        (
            tmp_path / "empty",
            FileNotFoundError,
            "not the folder of a training run; a checkpoint file goes as ckpt_path=",
        ),
        (
            run_dir,
            run_folder.ResumeRefused,  # no failed.json in the run's folder: it is started again, not continued
            f"the run saved no checkpoint (it stopped before its first save): nothing to continue; start it again "
            f"into its folder: python src/train.py data=voc seed=3 hydra.run.dir={run_dir}",
        ),
    ]:
        folder.mkdir(exist_ok=True)
        cfg = OmegaConf.create({"resume": str(folder), "ckpt_path": None})
        with pytest.raises(error, match=re.escape(said)):
            run_folder.resume_checkpoint(cfg, folder)


def test_a_run_continues_from_its_own_checkpoint_not_the_one_it_started_from(tmp_path: Path) -> None:
    """A run started from ckpt_path= and continued (resume= with its overrides, a requeued job) goes on from its own
    last.ckpt: it restarted from the starting checkpoint, redoing everything since."""
    start = tmp_path / "elsewhere.ckpt"
    start.write_bytes(b"0")
    run_dir = tmp_path / "run"
    cfg = OmegaConf.create({"resume": None, "ckpt_path": str(start)})
    assert run_folder.resume_checkpoint(cfg, run_dir) == str(start)  # a fresh folder: the run starts there
    (run_dir / "checkpoints").mkdir(parents=True)
    torch.save({"epoch": 0, "global_step": 1}, run_dir / "checkpoints" / "last.ckpt")
    assert run_folder.resume_checkpoint(cfg, run_dir) == str(run_dir / "checkpoints" / "last.ckpt")


@pytest.mark.parametrize(("position", "lowest"), [({"epoch": 3, "batch": 0}, 3), ({"epoch": 2, "batch": 5}, 3)])
def test_a_continuation_may_not_end_before_the_checkpoint(tmp_path: Path, position: dict, lowest: int) -> None:
    """trainer.max_epochs below the epochs a run has trained (or is in) is refused: it stopped at once and tested
    those weights as the run's result, and later resumes took that result as final (the folder could not finish)."""
    ckpt = tmp_path / "last.ckpt"
    torch.save({"epoch": 2, "loops": {"fit_loop": {"state_dict": {"combined_loader": [position]}}}}, ckpt)
    for max_epochs in (lowest, lowest + 5, -1):
        run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": max_epochs}}), ckpt)
    with pytest.raises(run_folder.ResumeRefused, match=rf"trainer.max_epochs={lowest - 1} would stop it there"):
        run_folder.check_resume_progress(OmegaConf.create({"trainer": {"max_epochs": lowest - 1}}), ckpt)


def test_finished_means_as_the_process_that_wrote_the_result_was_configured(tmp_path: Path) -> None:
    """A run extended to 6 epochs (config_resumed.yaml) that wrote its metrics.json is finished for max_epochs=6,
    not 4 (the first start's): the same command again keeps the result (it re-tested and rewrote it)."""
    (tmp_path / "metrics.json").write_text(json.dumps({"headline_metric": "map_50", "map_50": 0.5}))
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml({"trainer": {"max_epochs": 4}}))
    (tmp_path / "config_resumed.yaml").write_text(OmegaConf.to_yaml({"trainer": {"max_epochs": 6}}))
    cfg = OmegaConf.create
    assert run_folder.finished_result(cfg({"trainer": {"max_epochs": 6}}), tmp_path) == 0.5
    assert run_folder.finished_result(cfg({"trainer": {"max_epochs": 4}}), tmp_path) is None


def test_resume_names_a_run_its_checkpoints_folder_or_its_newest_checkpoint(tmp_path: Path) -> None:
    """resume= is resolved to the run's folder before Hydra makes or writes anything: the run's folder, its
    checkpoints/ folder, last.ckpt or an hpc_ckpt in it; a checkpoint older than the run's newest is refused (a new
    run from it: ckpt_path=); a path that names no run stops with its reason and nothing created."""
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "config.yaml").write_text("seed: 1\n")
    old, last = run_dir / "checkpoints" / "epoch_000.ckpt", run_dir / "checkpoints" / "last.ckpt"
    torch.save({"epoch": 0, "global_step": 3}, old)
    torch.save({"epoch": 1, "global_step": 6}, last)
    os.utime(old, (1, 1))  # older than last.ckpt
    hpc = run_dir / "hpc_ckpt_1.ckpt"
    for given in (run_dir, run_dir / "checkpoints", last, old, hpc):
        hpc.write_bytes(b"2") if given == hpc else hpc.unlink(missing_ok=True)
        assert run_folder.resume_folder(str(given)) == str(run_dir)
    hpc.unlink()
    elsewhere = tmp_path / "kept.ckpt"
    elsewhere.write_bytes(b"3")
    for given, said in [
        (
            elsewhere,
            f"not a checkpoint of a training run's folder (no config.yaml in {tmp_path}); to start a new "
            f"run from it: ckpt_path={elsewhere}",
        ),
        (tmp_path / "nothing", "no such run folder or checkpoint file"),
        (tmp_path, "not the folder of a training run (no config.yaml)"),
    ]:
        with pytest.raises(FileNotFoundError, match=re.escape(said)):
            run_folder.resume_folder(str(given))
    assert run_folder.resume_folder(None) is None

    def start(given: Path) -> str | None:
        return run_folder.resume_checkpoint(OmegaConf.create({"resume": str(given), "ckpt_path": None}), run_dir)

    assert start(last) == str(last) == start(run_dir)
    with pytest.raises(run_folder.ResumeRefused, match=re.escape(f"newest checkpoint, {last}: resume={run_dir}")):
        start(old)
    best = run_dir / "checkpoints" / "epoch_001.ckpt"  # the best checkpoint saved with last.ckpt: the same state
    torch.save({"epoch": 1, "global_step": 6}, best)
    os.utime(best, (2, 2))
    assert start(best) == str(last)
    torch.save({"epoch": 1, "global_step": 5}, best)  # same epoch, an earlier step (a mid-epoch save): refused
    os.utime(best, (2, 2))
    with pytest.raises(run_folder.ResumeRefused, match="newest checkpoint"):
        start(best)
    # the command line: Hydra's folder comes from the resolved value, so nothing is made for a path naming no run
    before = sorted(p.name for p in tmp_path.iterdir())
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "train.py"), f"resume={elsewhere}"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 1 and res.stderr.strip().splitlines() == [
        f"Error: resume={elsewhere}: not a checkpoint of a training run's folder (no config.yaml in {tmp_path}); "
        f"to start a new run from it: ckpt_path={elsewhere}"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_data_counters_carry_over_a_resume_and_survive_the_test_restore() -> None:
    """metrics.json's augmentation counts: a resume starts from the killed process's totals (its last.ckpt);
    trainer.test(ckpt_path=best) restores the DataModule again, from a best checkpoint an earlier process may have
    written before its last save: that must not replace the totals (it did: 256 loads reported for 288)."""
    from types import SimpleNamespace

    import hydra
    from pytorch_lightning.trainer.states import TrainerFn

    from conftest import compose_config
    from yolo9000.data import DetectionDataModule
    from yolo9000.data.dataset import _STAT_KEYS

    cfg = compose_config("train", "data.max_images=4", "data.num_workers=0")

    def datamodule(loaded: int) -> DetectionDataModule:
        dm = hydra.utils.instantiate(cfg.data)
        dm.setup("fit")
        dm.datasets["train"]._stats.array[0, _STAT_KEYS.index("loaded")] += loaded  # this process's loads
        return dm

    first = datamodule(4)
    best_of_first = first.state_dict()  # epoch 0's best checkpoint: 4 loads
    first.datasets["train"]._stats.array[0, _STAT_KEYS.index("loaded")] += 6
    last_of_first = first.state_dict()  # the save before the kill: 10 loads
    resumed = datamodule(0)
    resumed.trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.FITTING))
    resumed.load_state_dict(last_of_first)
    resumed.datasets["train"]._stats.array[0, _STAT_KEYS.index("loaded")] += 5
    assert resumed.split_stats("train")["loaded"] == 15
    resumed.trainer = None  # (the position of a fake trainer is not asked for)
    own = resumed.state_dict()
    resumed.trainer = SimpleNamespace(state=SimpleNamespace(fn=TrainerFn.TESTING))
    for best in (best_of_first, own):  # the best checkpoint of the earlier process, or of this one
        resumed.load_state_dict(best)
        assert resumed.split_stats("train")["loaded"] == 15


def test_a_refused_resume_gives_the_overrides_of_the_latest_result(tmp_path: Path) -> None:
    """A run trained further (trainer.max_epochs=2, then 3): the command a refused resume suggests was the launch
    command (max_epochs=2), itself refused as ending before the checkpoint; the latest result's overrides win."""
    (tmp_path / run_folder.LAUNCH_FILE).write_text("data=yolo trainer.max_epochs=2\n")
    assert run_folder.run_overrides(tmp_path) == "data=yolo trainer.max_epochs=2"
    (tmp_path / "metrics.json").write_text(json.dumps({"overrides": ["data=yolo", "trainer.max_epochs=3"]}))
    assert run_folder.run_overrides(tmp_path) == "data=yolo trainer.max_epochs=3"
    (tmp_path / "metrics.json").write_text("{cut sh")  # a result cut short: the launch command
    assert run_folder.run_overrides(tmp_path) == "data=yolo trainer.max_epochs=2"


def test_an_override_with_an_interpolation_starts_and_resumes(tmp_path: Path) -> None:
    """``'data.root=${paths.data_dir}/bccd'``: the job's overrides were read resolved while Hydra's record of them
    (.hydra/overrides.yaml) keeps them as typed, so every fresh run with such an override was refused as "the run
    of other overrides" (and its folder then refused any retry). It trains, records the override as typed (launch
    file, metrics.json), and its resume is the same job."""
    import shlex

    import yaml

    from conftest import TINY, run_script
    from yolo9000.run_folder import LAUNCH_FILE

    out = tmp_path / "run"
    given = "data.root=${paths.data_dir}/bccd"
    run_script("train.py", out, given, *TINY)  # the default loggers: W&B's tags hold the overrides too
    assert shlex.quote(given) in (out / LAUNCH_FILE).read_text().split()
    assert given in json.loads((out / "metrics.json").read_text())["overrides"]
    assert given in yaml.safe_load((out / "config.yaml").read_text())["logger"]["wandb"]["tags"]  # as typed
    res = run_script("train.py", None, f"resume={out}", given, *TINY, "logger=csv", check=False)
    assert "holds the run of other overrides" not in res.stderr and res.returncode == 0, res.stderr[-2000:]
