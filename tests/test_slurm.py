"""SLURM for real (slow): `hydra/launcher=submitit_slurm` on a single-node cluster (tests/slurm/local_cluster.sh).

- a 2-job tiny sweep runs as one SLURM array (two array tasks), both jobs write metrics.json and the submitting
  process writes the sweep summary;
- a tiny job signalled with SIGUSR1 (what SLURM sends `signal_delay_s` before the time limit) saves
  ``hpc_ckpt_1.ckpt``, is requeued by Lightning (``scontrol requeue``), restarts in the same job folder, resumes from
  that checkpoint and finishes; its csv metrics, W&B run and train.log each continue as one log; the same with two
  DataLoader workers (SLURM signals every process of the job step: the workers ignore SIGUSR1 / SIGTERM).

Skipped when the SLURM client commands are missing. When they are present but no cluster answers, the test starts
one with ``tests/slurm/local_cluster.sh start`` if it runs as root (and stops it again at the end), else skips.

    sudo tests/slurm/local_cluster.sh start && python -m pytest -m slow tests/test_slurm.py
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import TINY as CONFTEST_TINY

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tests" / "slurm" / "local_cluster.sh"
TINY = [  # conftest's tiny run without its image count and epochs (each test sets them), W&B and CSV logging
    *[o for o in CONFTEST_TINY if not o.startswith(("data.max_images", "trainer.", "callbacks."))],
    "callbacks.prediction_images.num_images=1",
    "logger=many",
]
LAUNCHER = [  # CPU-only SLURM jobs on the local cluster: one task, one core, a little memory
    "hydra/launcher=submitit_slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.tasks_per_node=1",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=2",
    "hydra.launcher.timeout_min=60",
]

pytestmark = pytest.mark.slow


def slurm_env() -> dict[str, str]:
    """The environment of the submitting process: W&B offline, ``src`` importable, no SLURM job variables (the
    test may itself run inside a SLURM job), SLURM_CONF of the local cluster when the system has no slurm.conf."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_") or k == "SLURM_CONF"}
    env |= {"WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src"), "HYDRA_FULL_ERROR": "1"}
    if "SLURM_CONF" not in env and not Path("/etc/slurm/slurm.conf").exists():
        out = subprocess.run(["bash", str(SCRIPT), "env"], capture_output=True, text=True).stdout
        conf = out.strip().removeprefix("export SLURM_CONF=")
        if conf and Path(conf).is_file():
            env["SLURM_CONF"] = conf
    return env


def sh(*cmd: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    res = subprocess.run(cmd, capture_output=True, text=True, env=slurm_env(), timeout=timeout)
    assert not check or res.returncode == 0, f"{' '.join(cmd)}: {res.stdout}\n{res.stderr}"
    return res


def idle_partition() -> str | None:
    """The default (else first) partition with an idle or mixed node, None when the cluster does not answer."""
    try:
        res = sh("sinfo", "-h", "-o", "%P %t", check=False, timeout=20)
    except subprocess.TimeoutExpired:
        return None
    rows = [line.split() for line in res.stdout.splitlines() if line.strip()]
    usable = [p for p, state in rows if state.rstrip("*~#") in ("idle", "mix")]
    if res.returncode or not usable:
        return None
    default = [p for p in usable if p.endswith("*")]
    return (default or usable)[0].rstrip("*")


@pytest.fixture(scope="module")
def partition() -> Iterator[str]:
    """A partition of an answering SLURM cluster (the local one started here if needed and possible)."""
    missing = [c for c in ("sbatch", "sinfo", "squeue", "scancel", "scontrol") if shutil.which(c) is None]
    if missing:
        pytest.skip(f"SLURM client commands missing ({', '.join(missing)}): sudo {SCRIPT.relative_to(ROOT)} start")
    started = False
    part = idle_partition()
    if part is None:
        if os.geteuid() != 0:
            pytest.skip(f"no SLURM cluster answers (sinfo) and not root: sudo {SCRIPT.relative_to(ROOT)} start")
        res = subprocess.run(["bash", str(SCRIPT), "start"], capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, f"local_cluster.sh start failed:\n{res.stdout}\n{res.stderr}"
        started = True
        part = idle_partition()
        assert part is not None, f"the local cluster started but no partition is idle:\n{sh('sinfo').stdout}"
    yield part
    if started:
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=120)


def submit(sweep_dir: Path, partition: str, *overrides: str) -> subprocess.Popen:
    """Start ``train.py -m`` with the SLURM launcher; it returns when every job of the sweep has finished."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        str(ROOT / "src" / "train.py"),
        "-m",
        f"hydra.sweep.dir={sweep_dir}",
        *LAUNCHER,
        f"hydra.launcher.partition={partition}",
        *TINY,
        *overrides,
    ]
    log = (sweep_dir.parent / f"{sweep_dir.name}.submit.log").open("w")
    return subprocess.Popen(cmd, cwd=ROOT, env=slurm_env(), stdout=log, stderr=subprocess.STDOUT, text=True)


def job_ids(sweep_dir: Path) -> list[str]:
    """The SLURM ids of the sweep's jobs, from submitit's job folders: ``<array job>_<task>`` for the tasks of an
    array, a plain id when submitit submitted a single job (a one-job sweep is not an array)."""
    names = [p.name for p in (sweep_dir / ".submitit").glob("*") if re.fullmatch(r"\d+(_\d+)?", p.name)]
    tasks = sorted(n for n in names if "_" in n)  # an array also has a folder of the array job (its sbatch script)
    return tasks or sorted(names)


def cancel(sweep_dir: Path) -> None:
    for job in job_ids(sweep_dir):
        sh("scancel", job, check=False)


@pytest.fixture
def sweeps() -> Iterator[list[Path]]:
    """Sweep folders of a test: their jobs still queued at the end (a failed test) are cancelled."""
    dirs: list[Path] = []
    yield dirs
    for d in dirs:
        cancel(d)


def wait(proc: subprocess.Popen, sweep_dir: Path, timeout: float) -> None:
    """Wait for the submitting process; on a timeout cancel its jobs. Fails with the logs when it failed."""
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        cancel(sweep_dir)
        proc.kill()
        rc = None
    assert rc == 0, f"sweep failed (rc {rc}):\n{submit_log(sweep_dir)[-4000:]}\n{job_logs(sweep_dir)[-6000:]}"


def submit_log(sweep_dir: Path) -> str:
    path = sweep_dir.parent / f"{sweep_dir.name}.submit.log"
    return path.read_text(errors="replace") if path.exists() else ""


def job_logs(sweep_dir: Path) -> str:
    """SLURM stdout + stderr of every array task (submitit appends across requeues)."""
    files = sorted((sweep_dir / ".submitit").glob("*/*_log.*"))
    return "".join(f"==> {f.name}\n{f.read_text(errors='replace')}\n" for f in files)


def job_info(job: str, timeout: float = 120) -> str:
    """``scontrol show job`` once the job has left RUNNING / COMPLETING (the result pickle comes a little before
    the end of the job); "" when SLURM no longer knows the job."""
    end = time.monotonic() + timeout
    while True:
        info = sh("scontrol", "show", "job", job, check=False).stdout
        if not re.search(r"JobState=(RUNNING|COMPLETING|PENDING|REQUEUED)", info) or time.monotonic() > end:
            return info
        time.sleep(2)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def wait_for(what: str, cond: object, timeout: float, proc: subprocess.Popen, sweep_dir: Path) -> None:
    """Poll ``cond()`` every second until it holds; fail (cancelling the jobs) on timeout or when the sweep ended."""
    end = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if proc.poll() is not None or time.monotonic() > end:
            cancel(sweep_dir)
            proc.kill()
            pytest.fail(
                f"waiting for {what}: {'timeout' if proc.returncode is None else 'sweep ended'}\n"
                f"{submit_log(sweep_dir)[-3000:]}\n{job_logs(sweep_dir)[-6000:]}"
            )
        time.sleep(1)


def test_sweep_runs_as_array_tasks_and_writes_summary(partition: str, tmp_path: Path, sweeps: list[Path]) -> None:
    sweep = tmp_path / "2026-01-02_03-04-05"
    sweeps.append(sweep)
    proc = submit(
        sweep,
        partition,
        "experiment=ablation_passthrough",
        "data.max_images=8",
        "trainer.max_epochs=1",
        "trainer.check_val_every_n_epoch=1",
    )
    wait(proc, sweep, timeout=900)

    ids = job_ids(sweep)
    assert len(ids) == 2 and len({i.split("_")[0] for i in ids}) == 1, f"not one array of two tasks: {ids}"
    script = next((sweep / ".submitit").glob("*/*_submission.sh")).read_text()
    assert "#SBATCH --array=0-1" in script and "#SBATCH --signal=USR1@" in script
    assert f"#SBATCH --partition={partition}" in script
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert 0.0 <= metrics["map_50"] <= 1.0 and metrics["seen"] == 8
        assert not (sweep / job / "failed.json").exists()
    md = (sweep / "summary.md").read_text()
    assert "`model.net.passthrough=True`" in md and "`model.net.passthrough=False`" in md
    rows = read_csv(sweep / "summary.csv")
    assert [r["status"] for r in rows] == ["ok", "ok"]


def test_a_failed_array_job_still_leaves_the_summary(partition: str, tmp_path: Path, sweeps: list[Path]) -> None:
    """One job of the array fails (an input size that is no multiple of 32): the submitting process then fails
    without writing the summary (Hydra's end of the multirun never comes), but every job wrote it when it ended:
    the finished job's row, the failed job's."""
    sweep = tmp_path / "2026-01-02_03-04-06"
    sweeps.append(sweep)
    proc = submit(sweep, partition, "data.img_size=64,100", "data.max_images=8", "trainer.max_epochs=1")
    try:
        rc = proc.wait(timeout=900)
    except subprocess.TimeoutExpired:
        cancel(sweep)
        proc.kill()
        raise
    assert rc != 0, submit_log(sweep)[-3000:]
    assert (sweep / "1" / "failed.json").exists() and (sweep / "0" / "metrics.json").exists()
    rows = {r["configuration"]: r["status"] for r in read_csv(sweep / "summary.csv")}
    assert rows["data.img_size=64"] == "ok" and rows["data.img_size=100"].startswith("failed"), rows


@pytest.mark.parametrize(
    "workers",
    [0, 2],
    ids=lambda w: f"w{w}",  # with workers: they ignore SLURM's signals (datamodule.worker_init)
)
def test_sigusr1_saves_hpc_ckpt_requeues_and_resumes_one_log(
    partition: str, tmp_path: Path, sweeps: list[Path], workers: int
) -> None:
    """SIGUSR1 while training: hpc_ckpt_1.ckpt, requeue, restore; csv, W&B and train.log continue."""
    import torch

    sweep = tmp_path / "requeue"
    sweeps.append(sweep)
    # 128 images, batch 4: 32 steps an epoch (1-2 s on an idle 2-core VM; with 64 images the signal sometimes came
    # in the last epoch, after the last train row), 96 in all, a train row every 5 steps. The signal comes in epoch
    # 2: Lightning saves hpc_ckpt_1.ckpt and requeues; SLURM's SIGTERM follows within a second or two, before the
    # epoch ends, and last.ckpt is saved after the batch it arrived in (the latest state): the restarted job resumes
    # from the newer of the two.
    epochs = 3
    proc = submit(
        sweep,
        partition,
        "data.max_images=128",
        f"trainer.max_epochs={epochs}",
        f"trainer.check_val_every_n_epoch={epochs}",
        f"data.num_workers={workers}",
        f"hydra.launcher.cpus_per_task={min(1 + workers, os.cpu_count() or 1)}",
    )
    job_dir = sweep / "0"
    train_log = job_dir / "train.log"
    wait_for("the job to train", lambda: train_log.exists() and "epoch 1/" in train_log.read_text(), 600, proc, sweep)
    (job,) = job_ids(sweep)
    sh("scancel", "--signal=USR1", job)

    hpc = job_dir / "hpc_ckpt_1.ckpt"
    wait_for("hpc_ckpt_1.ckpt", lambda: hpc.exists(), 120, proc, sweep)
    time.sleep(2)  # the handler flushed the loggers before it saved the checkpoint
    before = read_csv(job_dir / "csv" / "metrics.csv")
    first_log = train_log.read_text()
    wait(proc, sweep, timeout=1200)

    # requeued (not resubmitted): the same SLURM job ran twice and the second run restored the hpc checkpoint
    logs = job_logs(sweep)
    assert logs.count("Starting with JobEnvironment") == 2, logs[-6000:]
    restored = re.findall(r"Restoring states from the checkpoint path at (\S+)", logs)
    assert restored and restored[0] in (str(hpc), str(job_dir / "checkpoints" / "last.ckpt")), logs[-6000:]
    info = job_info(job)
    if info:  # the record stays MinJobAge seconds after the end
        assert "Restarts=1" in info and "JobState=COMPLETED" in info, info
    assert not list(job_dir.glob("hpc_ckpt_2.ckpt")), "requeued twice"
    assert not (job_dir / "failed.json").exists()
    metrics = json.loads((job_dir / "metrics.json").read_text())
    assert 0.0 <= metrics["map_50"] <= 1.0
    ckpt = torch.load(hpc, map_location="cpu", weights_only=False)
    last = torch.load(job_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    g = int(ckpt["global_step"])
    assert 0 < g < last["global_step"]

    # csv: one log, the rows from before the requeue kept, training steps continue to the end without a restart
    rows = read_csv(job_dir / "csv" / "metrics.csv")
    kept = [r for r in before if int(r["step"]) < g]
    assert any(r.get("train/loss") for r in kept), "no training row before the requeue"
    assert [{k: v for k, v in r.items() if v} for r in rows[: len(kept)]] == [
        {k: v for k, v in r.items() if v} for r in kept
    ]
    train_steps = [int(r["step"]) for r in rows if r.get("train/loss")]
    assert train_steps == sorted(set(train_steps)), f"steps restart or repeat: {train_steps}"
    assert train_steps[0] < g < train_steps[-1] and train_steps[-1] >= last["global_step"] - 5
    assert any(r.get("test/map_50") for r in rows)

    # W&B: one run id for the job (offline: one folder per start, both with the stored id)
    run_id = (job_dir / "wandb" / "run_id").read_text().strip()
    runs = sorted((job_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and {r.name.rsplit("-", 1)[1] for r in runs} == {run_id}, [r.name for r in runs]

    # train.log: one file, appended by the restarted job
    log = train_log.read_text()
    assert log.startswith(first_log) and len(log) > len(first_log)
    assert f"epoch 1/{epochs}" in first_log and f"epoch {epochs}/{epochs}" in log[len(first_log) :]
    assert "test map_50" in log
