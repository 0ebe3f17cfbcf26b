"""DDP (trainer=ddp_sim: 2 CPU processes, gloo) under Hydra: both ranks train on the same input size at every
step, on disjoint images, and the checkpoint resumes. The first run is a `-m` job, so Lightning's relaunch of
rank 1 must re-run that job (yolo9000.multirun), not the sweep.

A test-only callback (tests/ddp_probe.py, passed with +callbacks.ddp_probe) writes what each rank trains on.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from conftest import ROOT, run_script, script_env
from yolo9000.data.multiscale import size_for_batch

SEED = 1
TINY = [
    "trainer=ddp_sim",
    "logger=csv",
    f"seed={SEED}",
    "data.max_images={train:16,val:9,test:9}",  # 4 steps of 2 x 2 training images per epoch; 9 = 5 + 4 evaluated
    "data.batch_size=2",
    "data.num_workers=0",
    "data.img_size=64",
    "data.multiscale.min_size=64",
    "data.multiscale.max_size=96",
    "data.multiscale.period=1",  # a new size every batch
    "model.net.backbone.width=0.125",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.prediction_images.num_images=1",
    "+callbacks.ddp_probe._target_=ddp_probe.InputSizeProbe",
]


def train(*args: str) -> None:
    run_script("train.py", None, *args)


def read_probe(folder: Path) -> tuple[list[dict], list[dict]]:
    ranks = [[json.loads(line) for line in (folder / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    return ranks[0], ranks[1]


def check_lockstep(r0: list[dict], r1: list[dict]) -> list[int]:
    """Same steps and sizes on both ranks, disjoint images; returns the steps."""
    assert len(r0) == len(r1) > 0
    for a, b in zip(r0, r1, strict=True):
        assert (a["rank"], b["rank"], a["world_size"], b["world_size"]) == (0, 1, 2, 2)
        assert a["step"] == b["step"] and a["size"] == b["size"], (a, b)
        assert a["size"][0] == a["size"][1] == size_for_batch(SEED, a["step"], [64, 96], 1)
        assert not set(a["ids"]) & set(b["ids"]), "ranks trained on the same image in one step"
    return [a["step"] for a in r0]


def test_ddp_sim_ranks_step_in_lockstep_and_resume_the_schedule(tmp_path: Path) -> None:
    """One epoch on two processes: the same step and input size on both ranks at every batch, disjoint shards
    covering the 16 training images once; resumed for a second epoch, the global batch count (and with it the size
    schedule) goes on from 4, sizes of both multi-scale values seen (the default suite's part of the slow sweep
    scenario below)."""
    job, probe1, probe2 = tmp_path / "run", tmp_path / "probe1", tmp_path / "probe2"
    train(f"hydra.run.dir={job}", *TINY, "trainer.max_epochs=1", "test=false", f"+callbacks.ddp_probe.out_dir={probe1}")
    r0, r1 = read_probe(probe1)
    assert check_lockstep(r0, r1) == [0, 1, 2, 3]
    assert len({i for rec in r0 + r1 for i in rec["ids"]}) == 16
    resumed_dir = tmp_path / "resumed"
    train(
        f"hydra.run.dir={resumed_dir}", *TINY, "trainer.max_epochs=2", "test=false",
        f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}", f"+callbacks.ddp_probe.out_dir={probe2}",
    )  # fmt: skip
    q0, q1 = read_probe(probe2)
    assert check_lockstep(q0, q1) == [4, 5, 6, 7]
    assert {rec["size"][0] for rec in r0 + q0} == {64, 96}  # (check_lockstep: each step's size is size_for_batch's)
    resumed = torch.load(resumed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (resumed["epoch"], resumed["global_step"], int(resumed["state_dict"]["seen"])) == (1, 8, 32)


@pytest.mark.slow  # ~70 s: seven launches; its lockstep and resume are in the default suite (the test above)
def test_ddp_sim_same_sizes_on_both_ranks_and_resumes(tmp_path: Path) -> None:
    """A 2-job sweep: job 0 fails on both ranks at its first batch (a planted error, raised before the probe
    records anything), job 1 trains. Lightning's watcher of job 0's rank 1 (a thread of the sweep's process)
    SIGKILLed the whole sweep once that rank had exited non-zero, while job 1 ran."""
    sweep, probe1, probe2 = tmp_path / "sweep", tmp_path / "probe1", tmp_path / "probe2"
    res = run_script(
        "train.py",
        None,
        "-m",
        f"hydra.sweep.dir={sweep}",
        "+callbacks.fail._target_=ddp_probe.FailOnStart",  # before the probe: job 0 stops before it writes
        "+callbacks.fail.fail=true,false",
        *TINY,
        "trainer.max_epochs=1",
        f"+callbacks.ddp_probe.out_dir={probe1}",
        check=False,
        timeout=300,  # a killed sweep leaves job 1's rank 1 waiting in a collective
    )
    assert res.returncode != -9, "the sweep's process was killed"
    assert json.loads((sweep / "0" / "failed.json").read_text())["error"].startswith("RuntimeError: planted failure")
    assert "(1 ok, 1 failed, 0 without result)" in (sweep / "summary.md").read_text()
    job = sweep / "1"
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"], "rank 1 started a sweep of its own"
    r0, r1 = read_probe(probe1)
    assert check_lockstep(r0, r1) == [0, 1, 2, 3]
    ids = {i for rec in r0 + r1 for i in rec["ids"]}
    assert len(ids) == 16  # the DistributedSampler shards cover the 16 training images once
    metrics = json.loads((job / "metrics.json").read_text())  # written by rank 0 after the DDP test
    assert 0.0 <= metrics["map_50"] <= 1.0 and metrics["seen"] == 16
    assert metrics["counts_scope"].startswith("rank 0 of 2 processes")  # its augmentation counts: rank 0's shard
    assert metrics["augmentation"]["train"]["samples_loaded"] == 8
    assert "| `+callbacks.fail.fail=False` | 1 |" in (sweep / "summary.md").read_text()
    # uneven evaluation shards (5 + 4 test images) gather every image once: the ground truth one process counts
    single, ddp_eval = tmp_path / "eval_single", tmp_path / "eval_ddp"
    for out, trainer in ((single, "default"), (ddp_eval, "ddp_sim")):
        run_script("eval.py", out, f"ckpt_path={metrics['checkpoint']}", f"trainer={trainer}", "draw=0")
    gts = [
        {c: v["num_gt"] for c, v in json.loads((d / "metrics.json").read_text())["per_class"].items()}
        for d in (job, single, ddp_eval)
    ]
    assert gts[0] == gts[1] == gts[2] and sum(gts[1].values()) > 0

    ckpt = torch.load(job / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (ckpt["epoch"], ckpt["global_step"], int(ckpt["state_dict"]["seen"])) == (0, 4, 16)

    resumed_dir = tmp_path / "resumed"
    train(
        f"hydra.run.dir={resumed_dir}",
        *TINY,
        "trainer.max_epochs=2",
        "test=false",
        f"ckpt_path={job / 'checkpoints' / 'last.ckpt'}",
        f"+callbacks.ddp_probe.out_dir={probe2}",
    )
    r0, r1 = read_probe(probe2)
    assert check_lockstep(r0, r1) == [4, 5, 6, 7]  # continues the global batch count (and size schedule)
    sizes = {rec["size"][0] for rec in read_probe(probe1)[0] + r0}
    assert sizes == {64, 96}
    resumed = torch.load(resumed_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (resumed["epoch"], resumed["global_step"], int(resumed["state_dict"]["seen"])) == (1, 8, 32)
    assert resumed["optimizer_states"][0]["state"], "optimizer state not carried over"

    # the run trained on 2 processes: a continuation on 1 would change every step's batch and the shards
    before = sorted(p.name for p in job.iterdir())
    one = [o if o != "trainer=ddp_sim" else "trainer=default" for o in TINY if "ddp_probe" not in o]
    res = run_script("train.py", None, f"resume={job}", *one, "trainer.max_epochs=2", check=False)
    assert res.returncode != 0
    assert "trained on 2 process(es)" in res.stderr and "this job starts 1" in res.stderr, res.stderr[-2000:]
    assert sorted(p.name for p in job.iterdir()) == before  # nothing written into the run's folder


@pytest.mark.parametrize("mode", ["run", "multirun"])
def test_relaunch_argv(mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under -m the DDP relaunch command is the job's own overrides and its folder; a single run is untouched."""
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict

    from yolo9000.multirun import end_distributed, prepare_ddp_relaunch, register_resolvers

    register_resolvers()
    for k in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"):
        monkeypatch.delenv(k, raising=False)
    argv = ["src/train.py", "-m", "model.net.passthrough=true,false", "trainer=ddp_sim"]
    monkeypatch.setattr(sys, "argv", list(argv))
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=["model.net.passthrough=false", "trainer=ddp_sim"], return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.mode = RunMode.MULTIRUN if mode == "multirun" else RunMode.RUN
            cfg.hydra.runtime.output_dir = str(tmp_path / "3")
        monkeypatch.setattr(HydraConfig.instance(), "cfg", None)  # restored after the test
        HydraConfig.instance().set_config(cfg)
        prepare_ddp_relaunch()
        if mode == "run":
            assert sys.argv == argv
        else:
            assert sys.argv[0] == "src/train.py" and "-m" not in sys.argv
            assert sys.argv[1] == f"--config-path={ROOT / 'conf'}" and sys.argv[2] == "--config-name=train"
            assert sys.argv[3:] == ["model.net.passthrough=false", "trainer=ddp_sim"]
            assert HydraConfig.get().run.dir == str(tmp_path / "3")
            # what Lightning's launcher leaves in the sweep process; the next job must launch its own ranks again
            monkeypatch.setenv("MASTER_PORT", "12910")  # set before the job: kept
            prepare_ddp_relaunch()
            for k, v in {"LOCAL_RANK": "0", "WORLD_SIZE": "2", "NODE_RANK": "0", "MASTER_PORT": "555"}.items():
                monkeypatch.setenv(k, v)
            end_distributed()
            assert not {"LOCAL_RANK", "WORLD_SIZE", "NODE_RANK"} & set(os.environ)
            assert os.environ["MASTER_PORT"] == "12910"


@pytest.mark.slow  # ~14 s; the default suite runs DDP lockstep and the joint stream apart
def test_ddp_sim_joint_training_ends_its_epochs(tmp_path: Path) -> None:
    """YOLO9000's joint training under DDP: the per-source image counts are summed over the ranks (sync_dist) at the
    epoch's end. Rank 0's progress line once read the train metrics alone at that point, computing that sum while
    rank 1 waited at the checkpoint's barrier: the first epoch never ended."""
    out = tmp_path / "joint"
    run_script(
        "train.py",
        out,
        "experiment=yolo9000_digits",
        "trainer=ddp_sim",
        "logger=csv",
        "trainer.max_epochs=2",
        "trainer.check_val_every_n_epoch=1",
        "data.batch_size=6",
        "data.num_workers=0",
        "model.net.backbone.width=0.125",
        "model.burn_in=1",
        "callbacks.prediction_images.num_images=1",
        "data.train.num_images=12",
        "data.classification.num_images=24",
        "data.val.num_images=7",
        "test=false",
        timeout=300,
    )
    with (out / "csv" / "metrics.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/images_detection")]
    counts = [(r["epoch"], float(r["train/images_detection"]), float(r["train/images_classification"])) for r in rows]
    assert counts == [("0", 12.0, 24.0), ("1", 12.0, 24.0)]  # both ranks' images, each epoch
    main_log = (out / "yolo9000_digits.log").read_text()
    lines = [ln for ln in main_log.splitlines() if "| val/map_50" in ln]
    assert len(lines) == 2 and "epoch 2/2" in lines[1]
    # rank 1 writes its own log: its lines no longer repeat the run's data summary in the run's log
    assert "[rank: 1]" in (out / "yolo9000_digits_rank1.log").read_text() and "[rank: 1]" not in main_log
    assert main_log.count("priors (kmeans)") == 1
    assert "val/map_50" in main_log and "when logging on epoch level in distributed" not in main_log  # gathered


@pytest.mark.slow  # ~15 s; the default suite stops single-process runs on SIGTERM in and out of validation
def test_ddp_sigterm_to_one_process_late_in_a_validation_batch_finishes_it_and_stops_all_saved(tmp_path: Path) -> None:
    """SIGTERM reaching rank 1 alone, at the end of its first validation batch of epoch 1 (after the checkpoint
    callback's batch-end hook): Lightning's own handling stopped that process at once, mid-validation and unsaved,
    and rank 0 was left waiting in the validation's collectives. Now the validation finishes on both, the epoch is
    saved after it, and both processes exit together (143)."""
    out = tmp_path / "run"
    probe = "+callbacks.sigterm={_target_: sigterm_probe.SigtermAt, epoch: 1, where: validation_batch_end, rank: 1}"
    tiny = [o for o in TINY if "ddp_probe" not in o]
    res = run_script("train.py", out, *tiny, "trainer.max_epochs=3", "test=false", probe, check=False, timeout=300)
    assert res.returncode == 143, res.stderr[-3000:]
    assert "[rank 1] SIGTERM during validation: it finishes, the run is saved, then it stops" in res.stdout + res.stderr
    state = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert (state["epoch"], state["global_step"]) == (1, 8)  # epoch 1's 4 steps saved after its validation
    with (out / "csv" / "metrics.csv").open() as f:
        validated = [row["epoch"] for row in csv.DictReader(f) if row.get("val/map_50")]
    assert validated == ["0", "1"]  # epoch 1's validation ran to its end (its metrics logged)


@pytest.mark.slow  # 15 s; the DDP SIGTERM agreement it shares stays in the default suite
def test_ddp_ctrl_c_stops_every_process_after_the_same_batch_saved(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the terminal's process group: both processes and their loader workers) in epoch 1: both
    processes agree to stop after the same batch, save it and exit (130, the log says how to continue), where
    Lightning's own handling stopped each one at once, unsaved since the last save."""
    out = tmp_path / "run"
    last = out / "checkpoints" / "last.ckpt"
    tiny = [o for o in TINY if "ddp_probe" not in o and not o.startswith("data.num_workers")]
    cmd = [sys.executable, str(ROOT / "src" / "train.py"), f"hydra.run.dir={out}", *tiny, "data.num_workers=1"]
    cmd += ["trainer.max_epochs=3", "test=false", "callbacks.last_checkpoint.every_n_train_steps=2"]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=script_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    sent_at = None
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if last.is_file() and torch.load(last, map_location="cpu", weights_only=False)["global_step"] >= 6:
                sent_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
                os.killpg(proc.pid, signal.SIGINT)
                break
            time.sleep(0.05)
        output, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = output.decode()
    assert sent_at is not None, text[-3000:]
    assert proc.returncode == 130, text[-3000:]
    assert "[rank 1] Ctrl-C: the run stops after this batch, saved there" in text
    assert f"stopped by Ctrl-C; {last} holds the state to continue from: resume={out}" in text
    state = torch.load(last, map_location="cpu", weights_only=False)
    assert sent_at < state["global_step"] < 12 and int(state["state_dict"]["seen"]) == 4 * state["global_step"]
