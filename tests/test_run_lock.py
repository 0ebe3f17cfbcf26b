"""One process trains a run folder: a second training of it (``resume=<run>`` while the run still trains, the same
``hydra.run.dir`` twice) is refused with exit status 1 before it writes anything there; the lock
(``<run>/.train.lock``, ``flock``) goes with its process, also when that is killed with SIGKILL."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest
from omegaconf import OmegaConf

from conftest import ROOT, script_env
from yolo9000 import run_folder

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="no fcntl: no guard on Windows")

RUN = [
    "data.max_images={train: 8, val: 4, test: 4}",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.img_size=64",
    "data.multiscale.min_size=64",
    "data.multiscale.max_size=64",
    "model.net.backbone.width=0.125",
    "trainer.max_epochs=1",
    "callbacks.prediction_images.num_images=0",
    "logger=csv",
]


def _cmd(out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={out}", *RUN, *extra]


def _env() -> dict[str, str]:
    return {**script_env(), "OMP_NUM_THREADS": "1"}


def _snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file (its bytes) and folder (None) under ``folder``."""
    return {str(p.relative_to(folder)): p.read_bytes() if p.is_file() else None for p in sorted(folder.rglob("*"))}


def _train_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "src" / "train.py")
    assert spec is not None and spec.loader is not None
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    return train


def _hold_lock(folder: Path) -> tuple[subprocess.Popen, int]:
    """Another process holding ``folder``'s lock (as a training process does), with a forked child of its own (a
    DataLoader worker) that outlives it."""
    code = (
        "import os, sys, time\n"
        "from yolo9000.run_folder import lock_run_folder\n"
        "assert lock_run_folder(sys.argv[1])\n"
        "worker = os.fork()\n"  # a worker: lives on after its parent is killed
        "if worker == 0:\n"
        "    time.sleep(60); os._exit(0)\n"
        "print(worker, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder)], env=_env(), stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


def test_the_lock_refuses_a_second_process_and_goes_with_a_sigkilled_holder(tmp_path: Path) -> None:
    """Taken in another process: refused here, naming the folder and the holder's pid; the holder SIGKILLed (its
    forked worker still alive, whose copy of the descriptor is closed at the fork): taken here at once."""
    run = tmp_path / "run"
    holder, worker = _hold_lock(run)
    try:
        with pytest.raises(run_folder.RunFolderBusy) as busy:
            run_folder.lock_run_folder(run)
        message = str(busy.value)
        assert message.startswith(f"{run.resolve()} is being trained by another process (pid {holder.pid} on host ")
        assert "since " in message and message.endswith("a run resumes from its last checkpoint")
        # train.py's check before Hydra, for resume= (the run folder, its checkpoints/, a checkpoint in it) and
        # for hydra.run.dir: the same refusal
        train = _train_script()
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "last.ckpt").write_bytes(b"")
        for arg in (f"resume={run}", f"resume={run}/checkpoints", f"resume={run}/checkpoints/last.ckpt"):
            with pytest.raises(SystemExit, match=f"^Error: {run.resolve()} is being trained by another process"):
                train._lock_named_run(["train.py", arg])
        with pytest.raises(SystemExit, match="is being trained by another process"):
            train._lock_named_run(["train.py", f"hydra.run.dir={run}", "resume=elsewhere"])
        train._lock_named_run(["train.py", "-m", f"resume={run}"])  # a sweep: its jobs lock their own folders
        train._lock_named_run(["train.py", f"hydra.run.dir={tmp_path / 'new'}"])  # a new folder: main() locks it
        assert not (tmp_path / "new").exists()
        # a folder worked out otherwise (a sweep's job, a config's hydra.run.dir): the job stops before its run
        before = _snapshot(run)
        cfg = OmegaConf.create({"paths": {"output_dir": str(run)}})
        with pytest.raises(SystemExit, match="is being trained by another process"):
            train.main.__wrapped__(cfg)
        assert _snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()
    try:
        assert run_folder.lock_run_folder(run)  # the kernel released it with its process, its worker still there
        os.kill(worker, 0)  # (alive)
        assert not run_folder.lock_run_folder(run)  # this process holds it already: no error
        assert f"pid {os.getpid()} on host " in (run / run_folder.LOCK_FILE).read_text()
    finally:
        run_folder.release_run_folder(run)
        with contextlib.suppress(ProcessLookupError):
            os.kill(worker, signal.SIGKILL)


def test_ranks_of_a_distributed_run_take_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):
        monkeypatch.delenv(key, raising=False)
    assert run_folder.launching_process()
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert run_folder.launching_process()
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID"):  # Lightning's launched ranks, torchrun's, SLURM's tasks
        monkeypatch.setenv(key, "1")
        assert not run_folder.launching_process()
        monkeypatch.setenv(key, "0")


@pytest.mark.slow  # ~30 s: a tiny run held at its start, two refused starts, the run to its end, a resume of it
def test_a_second_training_of_a_run_folder_is_refused_and_writes_nothing(tmp_path: Path) -> None:
    """Two processes training one folder wrote its checkpoints, metrics.csv and log together (one died with a CSV
    error). The second (the same hydra.run.dir, a resume= of the run) stops with status 1 and the reason, the
    folder as it was; once the run has ended a resume is not refused."""
    out, ready, release = tmp_path / "run", tmp_path / "ready", tmp_path / "release"
    hold = (
        f"+callbacks.hold={{_target_: sigterm_probe.HoldAtStart, ready: '{ready}', release: '{release}', seconds: 60}}"
    )
    first = subprocess.Popen(_cmd(out, hold), cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not ready.is_file() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert ready.is_file(), first.communicate(timeout=60)[1].decode()[-3000:]
        before = _snapshot(out)
        # the same command again, a resume of the run (both refused before Hydra writes there), the folder given
        # as an interpolation Hydra resolves (refused as the job starts; Hydra's .hydra_resumed/ record removed)
        interpolated = [*_cmd(out, hold)[:2], "hydra.run.dir=${oc.env:RUN_DIR}", *_cmd(out, hold)[3:]]
        seconds = [
            subprocess.Popen(
                cmd,
                cwd=ROOT,
                env={**_env(), "RUN_DIR": str(out)},
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for cmd in (_cmd(out, hold), _cmd(out, f"resume={out}"), interpolated)
        ]
        for proc in seconds:
            stdout, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 1, stderr[-3000:]
            want = f"Error: {out.resolve()} is being trained by another process (pid {first.pid} on host "
            assert stderr.startswith(want) and "Traceback" not in stderr, stderr[-3000:]
        assert _snapshot(out) == before  # no .hydra_resumed/, no line in train.log, no config written
        release.write_text("")
        stdout, stderr = (b.decode() for b in first.communicate(timeout=300))
        assert first.returncode == 0, stderr[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (out / "metrics.json").is_file()
    res = subprocess.run(_cmd(out, f"resume={out}"), cwd=ROOT, env=_env(), capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-3000:]  # the lock went with the run: the finished run says so itself
    assert "already holds this job's finished run" in (out / "train.log").read_text()


def test_a_later_node_of_a_multi_node_run_takes_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lightning's own multi-node start (each node runs the command with ``NODE_RANK=<n>``, no RANK / LOCAL_RANK in
    the launching process): node 1's launching process trains the same (shared) folder as node 0's, so it takes no
    lock; it took it, and whichever node started second was refused (or node 0 itself)."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "NODE_RANK", "GROUP_RANK"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("NODE_RANK", "0")
    assert run_folder.launching_process()
    monkeypatch.setenv("NODE_RANK", "1")
    assert not run_folder.launching_process()


def test_another_users_lock_file_is_locked_read_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A lock file this user may not write (another user's run in a shared group folder, mode 0644) stopped the start
    with a PermissionError traceback: it is locked through a read-only descriptor, its holder's record kept."""
    import fcntl

    lock = tmp_path / run_folder.LOCK_FILE
    lock.write_text("pid 1 on host other, since 2026-01-01 00:00:00\n")
    real_open = os.open

    def as_another_user(path: object, flags: int, *args: object) -> int:
        if Path(str(path)) == lock and flags & (os.O_RDWR | os.O_WRONLY):  # root ignores modes: refused here
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *args)

    monkeypatch.setattr(run_folder.os, "open", as_another_user)
    try:
        assert run_folder.lock_run_folder(tmp_path) is True
        other = real_open(lock, os.O_RDONLY)  # another open file: the flock conflicts with it, as another process's
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
        assert lock.read_text() == "pid 1 on host other, since 2026-01-01 00:00:00\n"
    finally:
        run_folder.release_run_folder(tmp_path)
