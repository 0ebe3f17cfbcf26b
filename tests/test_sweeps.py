"""Sweeps: a real tiny `-m` sweep (summary, W&B grouping), report.py on failed jobs, seed grouping, the configs."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import ROOT, compose_config, run_script
from conftest import TINY as CONFTEST_TINY
from yolo9000 import run_folder
from yolo9000.callbacks.sweep_guard import sweep_conflicts
from yolo9000.report import group_jobs, load_sweep, mean_std, plot_panels, write_summary

TINY = [*CONFTEST_TINY[:-2], "callbacks.prediction_images.num_images=1"]


def run(*args: str, script: str = "train.py") -> subprocess.CompletedProcess:
    return run_script(script, None, *args)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two configurations (passthrough on / off), W&B offline: the Hydra callback writes the summary."""
    out = tmp_path_factory.mktemp("sweep") / "2026-01-02_03-04-05"
    run("-m", f"hydra.sweep.dir={out}", "experiment=ablation_passthrough", *TINY, "logger=many")
    return out


def test_multirun_writes_summary(sweep: Path) -> None:
    rows = read_csv(sweep / "summary.csv")
    assert [r["configuration"] for r in rows] == ["model.net.passthrough=True", "model.net.passthrough=False"]
    for r in rows:
        job = json.loads((sweep / ("0" if r["configuration"].endswith("True") else "1") / "metrics.json").read_text())
        assert float(r["map_50_pct_mean"]) == pytest.approx(100 * job["map_50"])
        assert float(r["params_M_mean"]) == pytest.approx(job["params"] / 1e6)
        assert r["seeds"] == "1" and r["status"] == "ok" and r["map_50_pct_std"] == ""
    # the experiment's paper block: Table 2, passthrough 74.4 -> 75.4
    assert [float(r["paper_value"]) for r in rows] == [75.4, 74.4]
    assert float(rows[0]["params_M_mean"]) > float(rows[1]["params_M_mean"])  # the passthrough conv + wider fuse
    md = (sweep / "summary.md").read_text()
    assert "| `model.net.passthrough=True` | 1 |" in md and "75.4 (+ passthrough)" in md
    assert "`data.max_images=8`" in md  # common overrides listed once, not in the labels
    assert (sweep / "summary.png").stat().st_size > 10_000


def test_job_log_holds_lightning_messages_and_warnings(sweep: Path) -> None:
    """train.log holds what the console showed: Lightning's own messages (it logs through a console handler of
    its own) and Python warnings, not only the project's lines."""
    log = (sweep / "0" / "train.log").read_text()
    assert "`Trainer.fit` stopped: `max_epochs=1` reached." in log  # Lightning's rank-zero info
    assert "py.warnings" in log  # a warning of the tiny run (e.g. fewer batches than the logging interval)


def test_sweep_rerun_with_another_grid_is_refused_and_keeps_the_records(sweep: Path, tmp_path: Path) -> None:
    """A sweep re-run into its folder with another grid gives each job number another configuration: the sweep
    stops before Hydra writes anything, naming every job's differences; multirun.yaml (the plan report.py reads),
    .hydra/, the logs and the results stay the sweep's, so the summary still is. Each job checks its own folder
    too (a launcher whose jobs the guard cannot foresee)."""
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("wandb", "checkpoints", "predictions"))
    kept = ("multirun.yaml", "0/.hydra/overrides.yaml", "0/train.log", "0/metrics.json", "1/metrics.json")
    before = {f: (copy / f).read_bytes() for f in kept}
    grid = ["experiment=ablation_passthrough", "model.net.passthrough=false,true"]
    res = run_script("train.py", None, "-m", f"hydra.sweep.dir={copy}", *grid, *TINY, check=False)
    assert res.returncode == 1
    assert "2 job(s) would be another configuration" in res.stderr
    assert "model.net.passthrough: True (the run) vs False (this job)" in res.stderr
    assert "model.net.passthrough: False (the run) vs True (this job)" in res.stderr
    assert {f: (copy / f).read_bytes() for f in before} == before
    assert not (copy / "0" / "failed.json").exists() and not (copy / "0" / ".hydra_resumed").exists()
    job0 = yaml.safe_load((copy / "0" / ".hydra" / "overrides.yaml").read_text())
    other = [o if not o.startswith("model.net.passthrough=") else "model.net.passthrough=False" for o in job0]
    run_folder.check_same_job(copy / "0", job0)  # its own overrides: the same run
    common = [o for o in job0 if not o.startswith("model.net.passthrough=")]  # the grid is the experiment's
    again = compose_config("train", f"hydra.sweep.dir={copy}", *common, "trainer.max_epochs=3", hydra_config=True)
    assert sweep_conflicts(again.hydra) == []  # the same grid trained further: the guard lets it run
    swapped = compose_config(
        "train",
        f"hydra.sweep.dir={copy}",
        *common,
        "hydra.sweeper.params={model.net.passthrough:'false,true'}",
        hydra_config=True,
    )
    assert [folder.name for folder, _ in sweep_conflicts(swapped.hydra)] == ["0", "1"]
    with pytest.raises(run_folder.ResumeRefused, match=r"^[^\n]*\n  model.net.passthrough: True \(the run\) vs False"):
        run_folder.check_same_job(copy / "0", other)
    rows = read_csv(copy / "summary.csv")
    assert [(r["configuration"], r["status"]) for r in rows] == [
        ("model.net.passthrough=True", "ok"),
        ("model.net.passthrough=False", "ok"),
    ]


def test_multirun_wandb_one_run_per_job_grouped_and_tagged(sweep: Path) -> None:
    groups = set()
    for job, value in (("0", "True"), ("1", "False")):
        wb = yaml.safe_load((sweep / job / "config.yaml").read_text())["logger"]["wandb"]
        groups.add(wb["group"])
        assert {"ablation", "passthrough", f"model.net.passthrough={value}", "experiment=ablation_passthrough"} <= set(
            wb["tags"]
        )
        assert len(list((sweep / job / "wandb").glob("offline-run-*"))) == 1
    assert groups == {"ablation_passthrough_2026-01-02_03-04-05"}  # experiment + sweep timestamp


def test_report_cli_marks_failed_job_and_keeps_the_rest(sweep: Path, tmp_path: Path) -> None:
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("wandb", "checkpoints", "predictions"))
    for f in ("summary.md", "summary.csv", "summary.png"):
        (copy / f).unlink()
    bad = copy / "2"
    (bad / ".hydra").mkdir(parents=True)
    overrides = yaml.safe_load((copy / "0" / ".hydra" / "overrides.yaml").read_text())
    overrides = [o for o in overrides if not o.startswith("model.net.passthrough=")] + ["model.net.head=fc"]
    (bad / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    shutil.copy(copy / "0" / ".hydra" / "config.yaml", bad / ".hydra" / "config.yaml")
    err = "ValueError: model.net.head=fc needs a fixed input size: set data.multiscale.enabled=false"
    (bad / "failed.json").write_text(json.dumps({"error": err, "traceback": "Traceback ..."}))

    res = run(str(copy), script="report.py")
    rows = read_csv(copy / "summary.csv")
    assert [r["configuration"] for r in rows] == [
        "model.net.passthrough=True",
        "model.net.passthrough=False",
        "model.net.head=fc",
    ]
    assert [r["status"] for r in rows[:2]] == ["ok", "ok"] and rows[0]["map_50_pct_mean"] != ""
    assert rows[2]["status"] == f"failed: {err}" and rows[2]["map_50_pct_mean"] == ""
    assert rows[2]["n_failed"] == "1" and rows[2]["n_ok"] == "0"
    assert f"failed: {err}" in (copy / "summary.md").read_text() and "failed: ValueError" in res.stdout
    assert (copy / "summary.png").is_file()


def fake_job(sweep: Path, num: int, overrides: list[str], metrics: dict | None, paper: dict | None = None) -> None:
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    config = {"seed": 1, "experiment_name": "fake", "model": {"net": {"anchors": "kmeans"}}}
    if paper:
        config["paper"] = paper
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (job / "metrics.json").write_text(json.dumps(metrics))


def test_seeds_grouped_mean_std(tmp_path: Path) -> None:
    paper = {
        "source": "Table 9",
        "metric": "map_50",
        "rows": [
            {"when": ["model.net.passthrough=false"], "value": 74.4, "note": "off"},
            {"when": ["model.net.anchors=kmeans", "model.net.passthrough=true"], "value": 75.4},
        ],
    }
    m = lambda v, p=1e6: {"map_50": v, "map": v / 2, "params": p, "per_class": {"A": {"ap50": v}}}  # noqa: E731
    common = ["data.max_images=8"]
    fake_job(tmp_path, 0, ["model.net.passthrough=true", "seed=1", *common], m(0.5), paper)
    fake_job(tmp_path, 1, ["model.net.passthrough=true", "seed=2", *common], m(0.6), paper)
    fake_job(tmp_path, 2, ["model.net.passthrough=true", "seed=3", *common], m(0.7), paper)
    fake_job(tmp_path, 3, ["model.net.passthrough=false", "seed=1", *common], m(0.4, 2e6), paper)
    fake_job(tmp_path, 4, ["model.net.passthrough=false", "seed=2", *common], None, paper)  # still running

    rows, shared = group_jobs(load_sweep(tmp_path))
    assert shared == common
    on, off = rows
    assert on.label == "model.net.passthrough=true" and on.seeds == [1, 2, 3]
    mean, std, n = on.stats["map_50"]
    assert (mean, std, n) == (pytest.approx(0.6), pytest.approx(0.1), 3)  # sample std of .5 .6 .7
    assert on.class_stats["A"][0] == pytest.approx(0.6)
    assert (on.paper, off.paper, off.paper_note) == (75.4, 74.4, "off")  # "kmeans" from the composed config
    assert off.seeds == [1, 2] and off.stats["map_50"][2] == 1 and off.status.startswith("partial: seed 2")

    out = write_summary(tmp_path, plot=False)
    md = out["md"].read_text()
    assert "| `model.net.passthrough=true` | 1, 2, 3 | 60.0 ± 10.0 | 30.0 ± 5.0 |" in md
    assert "| `model.net.passthrough=false` | 1, 2 | 40.0 | 20.0 |" in md
    rows_csv = read_csv(out["csv"])
    assert float(rows_csv[0]["map_50_pct_std"]) == pytest.approx(10.0)
    assert float(rows_csv[0]["ap50_A_pct_mean"]) == pytest.approx(60.0)
    assert rows_csv[1]["seeds"] == "1 2" and rows_csv[1]["n_ok"] == "1"


def test_report_combines_sweeps_of_different_sessions(tmp_path: Path) -> None:
    """One seed per sweep folder (sessions apart): ``report.py a b --combine out`` gives one row per configuration
    with mean ± std over the seeds, the VOC07 column, and each job's commit and machine."""
    m = lambda v, c: {  # noqa: E731
        "map_50": v,
        "voc07_map_50": v - 0.1,
        "map": v / 2,
        "params": 1e6,
        "provenance": {"command": "python src/train.py -m", "commit": c, "machine": "vm: 2 cores"},
    }
    paper = {
        "metric": "voc07_map_50",
        "rows": [{"when": ["variant=batch_norm"], "value": 65.8}, {"when": ["variant=yolo"], "value": 63.4}],
    }
    for seed, (a, b) in zip((1, 2), ((0.5, 0.3), (0.7, 0.5)), strict=True):
        sweep = tmp_path / f"s{seed}"
        fake_job(sweep, 0, ["variant=yolo", f"seed={seed}"], m(a, f"c{seed}"), paper)
        fake_job(sweep, 1, ["variant=batch_norm", f"seed={seed}"], m(b, f"c{seed}"), paper)
    res = run(
        str(tmp_path / "s1"), str(tmp_path / "s2"), "--combine", str(tmp_path / "all"), "--no-plot", script="report.py"
    )
    rows = read_csv(tmp_path / "all" / "summary.csv")
    # rows in the paper's order (batch_norm's row comes first in the paper block), not the order found
    assert [(r["configuration"], r["seeds"]) for r in rows] == [("variant=batch_norm", "1 2"), ("variant=yolo", "1 2")]
    assert float(rows[1]["map_50_pct_mean"]) == pytest.approx(60.0)
    assert float(rows[1]["map_50_pct_std"]) == pytest.approx(100 * 0.02**0.5)
    assert float(rows[0]["voc07_map_50_pct_mean"]) == pytest.approx(30.0) and rows[0]["paper_value"] == "65.8"
    md = (tmp_path / "all" / "summary.md").read_text()
    assert "commit `c1`, vm: 2 cores: 2 job(s), seeds 1" in md and "commit `c2`" in md and "VOC07 AP@0.5" in md
    assert "| `variant=yolo` | 1, 2 |" in res.stdout
    assert not (tmp_path / "s1" / "summary.md").exists()  # the sweeps' own folders are left alone
    with pytest.raises(ValueError, match="out_dir"):
        write_summary([tmp_path / "s1", tmp_path / "s2"], plot=False)


def test_a_seed_run_twice_counts_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Two sweeps combined that both ran seed 1: n and the spread are over distinct seeds (the newer seed-1 result
    counts), with a warning naming both folders."""
    import logging
    import os

    m = lambda v: {"map_50": v, "map": v / 2, "params": 1e6}  # noqa: E731
    fake_job(tmp_path / "a", 0, ["variant=yolo", "seed=1"], m(0.2))
    fake_job(tmp_path / "b", 0, ["variant=yolo", "seed=1"], m(0.4))
    fake_job(tmp_path / "b", 1, ["variant=yolo", "seed=2"], m(0.6))
    os.utime(tmp_path / "a" / "0" / "metrics.json", (1, 1))  # the older seed-1 result
    with caplog.at_level(logging.WARNING, logger="yolo9000.report"):
        (row,), _ = group_jobs([*load_sweep(tmp_path / "a"), *load_sweep(tmp_path / "b")])
    assert row.seeds == [1, 2] and row.stats["map_50"] == (pytest.approx(0.5), pytest.approx(0.02**0.5), 2)
    assert "seed 1 ran twice" in caplog.text and str(tmp_path / "a" / "0") in caplog.text


def test_report_archive_copies_job_records_not_checkpoints(tmp_path: Path) -> None:
    m = {"map_50": 0.5, "voc07_map_50": 0.4, "map": 0.2, "params": 1e6}
    sweep = tmp_path / "runs" / "2026-01-01_00-00-00"
    fake_job(sweep, 0, ["variant=yolo", "seed=1"], m)
    fake_job(sweep, 1, ["variant=batch_norm", "seed=1"], {**m, "map_50": 0.7})
    (sweep / "0" / "checkpoints").mkdir()
    (sweep / "0" / "checkpoints" / "last.ckpt").write_bytes(b"x" * 100)
    (sweep / "1" / "per_class.md").write_text("| class |")
    out = tmp_path / "docs"
    run(str(sweep), "--combine", str(out), "--archive", "--no-plot", script="report.py")
    kept = out / "jobs" / sweep.name
    assert sorted(p.relative_to(kept).as_posix() for p in kept.rglob("*") if p.is_file()) == [
        "0/.hydra/config.yaml",
        "0/.hydra/overrides.yaml",
        "0/metrics.json",
        "1/.hydra/config.yaml",
        "1/.hydra/overrides.yaml",
        "1/metrics.json",
        "1/per_class.md",
    ]
    first = (out / "summary.md").read_text()
    assert "variant=batch_norm" in first and "70.0" in first
    # the archive alone gives the same table (the sweep folder may be gone)
    shutil.rmtree(tmp_path / "runs")
    run(str(kept), "--combine", str(out), "--archive", "--no-plot", script="report.py")
    rows = lambda md: [line for line in md.splitlines() if line.startswith("| `")]  # noqa: E731
    assert rows((out / "summary.md").read_text()) == rows(first) and len(rows(first)) == 2


def test_mean_std_ignores_missing_values() -> None:
    assert mean_std([1.0, float("nan"), 3.0]) == (2.0, pytest.approx(2**0.5), 2)
    assert mean_std([])[2] == 0


@pytest.mark.parametrize(
    "experiment,n_jobs",
    [
        ("ablation_bn", 2),
        ("ablation_anchors", 6),
        ("ablation_location", 2),
        ("ablation_passthrough", 2),
        ("ablation_multiscale", 2),
        ("ablation_head", 2),
        ("ablation_hires_classifier", 2),
        ("path_to_yolov2", 8),
    ],
)
def test_experiment_sweeps_compose(experiment: str, n_jobs: int) -> None:
    """Every experiment's sweep expands to its configurations and each job's config composes (no training)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from yolo9000.multirun import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("train", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        params = cfg.hydra.sweeper.params
        parsed = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
        values = [[f"{o.get_key_element()}={v}" for v in o.sweep_string_iterator()] for o in parsed]
        assert len(values) == 1 and len(values[0]) == n_jobs
        for override in values[0]:
            extra = ["+ckpt_224=a.ckpt", "+ckpt_448=b.ckpt"] if experiment == "ablation_hires_classifier" else []
            job = compose("train", overrides=[f"experiment={experiment}", override, *extra])
            assert job.experiment_name == experiment
            net = job.model.net
            if net.head == "fc":
                assert not job.data.multiscale.enabled and net.fc_grid is None  # build: img_size / 32
            assert job.paper.rows, "the summary's paper column"


def test_handpicked_anchors_are_faster_rcnn_scales_and_ratios() -> None:
    from yolo9000.anchors import handpicked_anchors

    a = handpicked_anchors(8)  # grid 8 = 256 / 32
    assert len(a) == 9
    s = 128 / 600 * 8  # smallest side in cells: 1.70667
    assert a[0] == pytest.approx([s * 2**0.5, s / 2**0.5], abs=1e-4)  # h:w = 1:2
    assert a[1] == pytest.approx([s, s], abs=1e-4)
    assert a[8] == pytest.approx([4 * s / 2**0.5, 4 * s * 2**0.5], abs=1e-4)  # 512 px, h:w = 2:1
    areas = [w * h for w, h in a]
    assert areas[0:3] == pytest.approx([s * s] * 3, rel=1e-4) and areas[6:9] == pytest.approx(
        [16 * s * s] * 3, rel=1e-4
    )


def test_resolve_priors_metric_and_avg_iou() -> None:
    import numpy as np

    from yolo9000.anchors import avg_iou, resolve_priors

    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.uniform(0.02, 0.1, (60, 2)), rng.uniform(0.3, 0.9, (20, 2))])
    got = {}
    for metric in ("iou", "sse"):
        p = resolve_priors("kmeans", wh, 8, k=2, metric=metric, seed=1)
        assert p.avg_iou == pytest.approx(avg_iou(wh, np.asarray(p.anchors) / 8), abs=1e-5)
        got[metric] = p.avg_iou
    assert got["iou"] >= got["sse"]  # the paper's point: 1 - IoU clusters fit shapes better than SSE
    p = resolve_priors([[1.0, 2.0]], wh, 8)
    assert p.anchors == [[1.0, 2.0]] and p.source == "list"  # a list is kept as written
    assert p.avg_iou == pytest.approx(avg_iou(wh, np.array([[1 / 8, 2 / 8]])), abs=1e-5)
    assert resolve_priors(None, wh, 8).anchors is None
    assert resolve_priors("handpicked", wh, 8).anchors == resolve_priors("handpicked", wh, 8).anchors
    with pytest.raises(ValueError, match="kmeans"):
        resolve_priors("kmean", wh, 8)


def test_unreadable_job_files_fail_that_job_and_the_summary_goes_on(tmp_path: Path) -> None:
    """A job killed while writing (or a full disk): its unreadable result or configuration marks that job failed,
    naming the file; the other jobs are summarised. An unreadable build.json beside a good result only warns."""
    m = {"map_50": 0.5, "map": 0.2, "params": 1e6}
    fake_job(tmp_path, 0, ["variant=yolo", "seed=1"], m)
    fake_job(tmp_path, 1, ["variant=yolo", "seed=2"], None)
    (tmp_path / "1" / "metrics.json").write_text('{"map_50": 0.4, "ma')  # truncated
    fake_job(tmp_path, 2, ["variant=batch_norm", "seed=1"], m)
    (tmp_path / "2" / "build.json").write_text("")
    fake_job(tmp_path, 3, ["variant=passthrough", "seed=1"], m)
    (tmp_path / "3" / ".hydra" / "overrides.yaml").write_text("- variant=passthrough\n- [unclosed\n")
    write_summary(tmp_path, plot=False)
    rows = {r["configuration"]: r for r in read_csv(tmp_path / "summary.csv")}
    yolo = rows["variant=yolo"]
    assert yolo["n_ok"] == "1" and yolo["status"].startswith("partial: seed 2 failed: unreadable ")
    assert str(tmp_path / "1" / "metrics.json") in yolo["status"] and "JSONDecodeError" in yolo["status"]
    assert rows["variant=batch_norm"]["status"] == "ok"
    (bad,) = [r for r in rows.values() if str(tmp_path / "3" / ".hydra" / "overrides.yaml") in r["status"]]
    assert bad["n_ok"] == "0" and bad["status"].startswith("failed: unreadable")  # its overrides are unknown


def test_a_failed_seed_that_finished_in_another_sweep_is_superseded(tmp_path: Path) -> None:
    """Sweeps combined: seed 2 failed in one and finished in the other; the row is complete, not partial. A job
    without a result says so, not that it failed."""
    m = {"map_50": 0.5, "map": 0.2, "params": 1e6}
    fake_job(tmp_path / "a", 0, ["variant=yolo", "seed=1"], m)
    fake_job(tmp_path / "a", 1, ["variant=yolo", "seed=2"], None)
    (tmp_path / "a" / "1" / "failed.json").write_text(json.dumps({"error": "RuntimeError: out of memory"}))
    fake_job(tmp_path / "b", 0, ["variant=yolo", "seed=2"], m)
    fake_job(tmp_path / "b", 1, ["variant=yolo", "seed=3"], None)  # running, stopped or killed
    (row,), _ = group_jobs([*load_sweep(tmp_path / "a"), *load_sweep(tmp_path / "b")])
    assert row.seeds == [1, 2, 3] and len(row.ok) == 2
    assert row.status == "partial: seed 3 has no result (running, stopped or killed)"
    # no seed finished and none failed: "no result", as the header counts it, not "failed"
    fake_job(tmp_path / "c", 0, ["variant=fc", "seed=1"], None)
    (alone,), _ = group_jobs(load_sweep(tmp_path / "c"))
    assert alone.status == "no result: seed 1 has no result (running, stopped or killed)"


def test_summary_lists_the_planned_jobs_a_stopped_sweep_never_started(tmp_path: Path) -> None:
    """The sweep folder's multirun.yaml (the experiment's sweeper params and the command line's) gives the job
    plan, expanded as Hydra's basic sweeper does: jobs without a folder are listed, the summary is incomplete."""
    hydra_cfg = {
        "sweeper": {
            "_target_": "hydra._internal.core_plugins.basic_sweeper.BasicSweeper",
            "max_batch_size": None,
            "params": {"variant": "yolo,batch_norm"},
        },
        "overrides": {"hydra": ["hydra.mode=MULTIRUN"], "task": ["experiment=fake", "seed=1,2"]},
    }
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": hydra_cfg, "seed": 1}))
    m = {"map_50": 0.5, "map": 0.2, "params": 1e6}
    fake_job(tmp_path, 0, ["variant=yolo", "experiment=fake", "seed=1"], m)
    fake_job(tmp_path, 1, ["variant=yolo", "experiment=fake", "seed=2"], None)  # the job that was stopped
    from yolo9000.report import planned_jobs

    assert planned_jobs(tmp_path) == [
        ["variant=yolo", "experiment=fake", "seed=1"],
        ["variant=yolo", "experiment=fake", "seed=2"],
        ["variant=batch_norm", "experiment=fake", "seed=1"],
        ["variant=batch_norm", "experiment=fake", "seed=2"],
    ]
    md = write_summary(tmp_path, plot=False)["md"].read_text()
    assert "**incomplete**" in md and "planned 4 jobs" in md and "2 never started" in md
    assert "job 2 (`variant=batch_norm seed=1`), 3 (`variant=batch_norm seed=2`)" in md
    # combined with a sweep that ran batch_norm seed 2: only seed 1 is missing
    fake_job(tmp_path / "other", 0, ["variant=batch_norm", "seed=2", "experiment=fake"], m)
    combined = write_summary([tmp_path, tmp_path / "other"], out_dir=tmp_path / "both", plot=False)
    md = combined["md"].read_text()
    assert "1 never started: job 2 (`variant=batch_norm seed=1`)" in md and "seed=2`)" not in md
    fake_job(tmp_path, 2, ["variant=batch_norm", "experiment=fake", "seed=1"], m)
    fake_job(tmp_path, 3, ["variant=batch_norm", "experiment=fake", "seed=2"], m)
    assert "incomplete" not in write_summary(tmp_path, plot=False)["md"].read_text()


def test_report_names_what_a_wrong_folder_is(tmp_path: Path) -> None:
    """report.py on a run folder or on a folder of sweep folders says what it is and what to pass."""
    run_dir = tmp_path / "outputs" / "train" / "2026-01-01_00-00-00"
    (run_dir / ".hydra").mkdir(parents=True)
    res = run_script("report.py", None, str(run_dir), check=False)
    assert res.returncode == 1 and f"it is a run folder; `report.py {run_dir.parent}`" in res.stderr
    fake_job(tmp_path / "exp" / "2026-01-01_00-00-00", 0, ["variant=yolo"], {"map_50": 0.5})
    res = run_script("report.py", None, str(tmp_path / "exp"), check=False)
    assert res.returncode == 1 and "it holds sweep folders (2026-01-01_00-00-00)" in res.stderr
    with pytest.raises(FileNotFoundError, match="README.md is a file: give a sweep folder"):  # not "not found"
        load_sweep(ROOT / "README.md")


def test_summary_labels_follow_the_process_that_wrote_each_result(sweep: Path, tmp_path: Path) -> None:
    """A sweep trained further (re-run into its folder with trainer.max_epochs=2) kept .hydra/overrides.yaml's
    max_epochs=1 in summary.md's common overrides; metrics.json records the overrides of the process that wrote it,
    and the summary reads those."""
    job = json.loads((sweep / "0" / "metrics.json").read_text())
    assert job["overrides"] == yaml.safe_load((sweep / "0" / ".hydra" / "overrides.yaml").read_text())
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy, ignore=shutil.ignore_patterns("wandb", "checkpoints", "predictions"))
    for j in ("0", "1"):
        m = json.loads((copy / j / "metrics.json").read_text())
        m["overrides"] = [*m["overrides"], "trainer.max_epochs=2"]
        (copy / j / "metrics.json").write_text(json.dumps(m))
    write_summary(copy, plot=False)
    md = (copy / "summary.md").read_text()
    assert "`trainer.max_epochs=2`" in md


def test_summary_caption_names_the_metrics_the_plot_shows(tmp_path: Path) -> None:
    """summary.md captioned summary.png "mAP@0.5 per configuration" whatever it showed (VOC07 AP for a VOC07
    paper block, the priors' IoU beside it when it varies)."""
    from yolo9000.report import format_markdown

    for j, (k, iou) in enumerate([(5, 0.6), (9, 0.7)]):
        fake_job(tmp_path, j, [f"model.priors.k={k}"], {"map_50": 0.5, "voc07_map_50": 0.4, "params": 1e6})
        (tmp_path / str(j) / "build.json").write_text(json.dumps({"anchors_avg_iou": iou}))
    rows, common = group_jobs(load_sweep(tmp_path))
    assert len(rows) == 2 and all("anchors_avg_iou" in r.stats for r in rows)
    md = {
        metric: format_markdown(
            rows, common, title="t", sweep_dir=tmp_path, paper={"metric": metric}, plot_name="summary.png"
        )
        for metric in ("map_50", "voc07_map_50")
    }
    assert "![mAP@0.5 and prior IoU per configuration](summary.png)" in md["map_50"]
    assert "![VOC07 AP@0.5 and prior IoU per configuration](summary.png)" in md["voc07_map_50"]


def test_a_classifier_sweep_summary_shows_its_accuracy(tmp_path: Path) -> None:
    """A classifier sweep (wordtree_digits -m seed=1,2) had only empty mAP columns: its summary shows top-1 / top-5
    (and the tree decode's top-1), the plot's caption says top-1; a detection sweep keeps its columns."""
    for j, (seed, top1) in enumerate([(1, 0.8), (2, 0.9)]):
        fake_job(tmp_path, j, [f"seed={seed}"], {"top1": top1, "top5": 0.99, "tree_top1": 0.7, "params": 1e6})
    md = write_summary(tmp_path, plot=False)["md"].read_text()
    header = next(line for line in md.splitlines() if line.startswith("| configuration"))
    assert "top-1 (%)" in header and "top-5 (%)" in header and "tree decode top-1 (%)" in header
    assert "mAP" not in header
    assert "| 85.0 ± 7.1 |" in md  # top-1 over the two seeds, in percent
    rows = read_csv(tmp_path / "summary.csv")
    assert float(rows[0]["top1_pct_mean"]) == pytest.approx(85.0)
    assert plot_panels(group_jobs(load_sweep(tmp_path))[0], None) == ["top1"]


# ---- the summary written by each job's end, on a cluster too -------------------------------------------------
def _job_config(sweep_dir: Path, launcher: str) -> Any:
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    hydra = {"mode": RunMode.MULTIRUN, "sweep": {"dir": str(sweep_dir)}, "launcher": {"_target_": launcher}}
    return OmegaConf.create({"hydra": hydra})


SUBMITIT = "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
BASIC = "hydra._internal.core_plugins.basic_launcher.BasicLauncher"


def test_a_cluster_jobs_end_writes_the_summary_in_turn(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A SLURM array job (submitit) rewrites the summary when it ends, as a local job does (it was left to the
    submitting process, which never wrote it when one job of the array failed); while another job holds the sweep's
    lock it waits its turn; a DDP job's other processes write nothing; a single run's job has no sweep."""
    import fcntl
    import threading

    from lightning_fabric.utilities.rank_zero import rank_zero_only

    from yolo9000.callbacks.sweep_summary import LOCK_NAME, SweepSummary, job_sweep_dir, local_sweep_dir

    fake_job(tmp_path, 0, ["model.net.passthrough=true"], {"map_50": 0.5, "map": 0.2})
    fake_job(tmp_path, 1, ["model.net.passthrough=false"], None)  # failed or running: no metrics
    cluster, local = _job_config(tmp_path, SUBMITIT), _job_config(tmp_path, BASIC)
    assert job_sweep_dir(cluster.hydra) == job_sweep_dir(local.hydra) == str(tmp_path)
    assert local_sweep_dir(cluster.hydra) is None and local_sweep_dir(local.hydra) == str(tmp_path)  # SIGTERM path
    single = _job_config(tmp_path, BASIC)
    single.hydra.mode = "RUN"
    assert job_sweep_dir(single.hydra) is None

    monkeypatch.setattr(rank_zero_only, "rank", 1)
    SweepSummary(plot=False).on_job_end(cluster, None)
    assert not (tmp_path / "summary.md").exists()  # process 1 of a DDP job
    monkeypatch.setattr(rank_zero_only, "rank", 0)
    with open(tmp_path / LOCK_NAME, "a") as held:  # another job of the array is writing
        fcntl.flock(held, fcntl.LOCK_EX)
        job = threading.Thread(target=SweepSummary(plot=False).on_job_end, args=(cluster, None))
        job.start()
        job.join(0.5)
        assert job.is_alive() and not (tmp_path / "summary.md").exists()  # waits for its turn
    job.join(30)
    md = (tmp_path / "summary.md").read_text()
    assert "model.net.passthrough=true" in md and "model.net.passthrough=false" in md


def test_a_failed_job_is_said_on_the_console_when_it_fails(caplog: pytest.LogCaptureFixture) -> None:
    """A sweep's failed job was said only in its own train.log until the whole sweep ended: the summary callback now
    logs the job number, its overrides, the error and its log file when it fails; a finished job says nothing."""
    import logging

    from hydra.core.utils import JobReturn, JobStatus
    from omegaconf import OmegaConf

    from yolo9000.callbacks.sweep_summary import say_failed_job

    hydra_cfg = OmegaConf.create({"hydra": {"runtime": {"output_dir": "/s/2"}, "job": {"num": 2}}})
    failed = JobReturn(overrides=["data.batch_size=0"], hydra_cfg=hydra_cfg, task_name="train", status=JobStatus.FAILED)
    failed.return_value = ValueError("batch_size must be >= 1, got 0")
    ok = JobReturn(overrides=["seed=1"], hydra_cfg=hydra_cfg, task_name="train", status=JobStatus.COMPLETED)
    with caplog.at_level(logging.INFO, "yolo9000"):
        say_failed_job(OmegaConf.create({}), ok)
        assert caplog.text == ""
        say_failed_job(OmegaConf.create({}), failed)
    assert (
        "job 2 (data.batch_size=0) failed: ValueError: batch_size must be >= 1, got 0 (its log: /s/2/train.log)"
        in caplog.text
    )
