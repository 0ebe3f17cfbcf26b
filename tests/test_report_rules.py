"""The rules of the sweep summary (report.py), the run's metric tables (results.py) and the speed / accuracy table
(tradeoff.py) that the other tests left open: how overrides and ``paper`` conditions are read, job order, seed
grouping, which jobs count, the cells, counts and columns of summary.md / summary.csv, the panels of summary.png,
archiving, metrics.json, Lightning's metric table, the log's table excerpt, metric groups, and the trade-off's
batches, settings, timings and table cells. Every expected value is worked out by hand from tiny made-up sweeps,
metrics and rows; no training, no subprocess."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from test_sweeps import fake_job
from yolo9000 import tradeoff
from yolo9000.report import (
    ConfigRow,
    JobResult,
    archive_jobs,
    format_markdown,
    group_jobs,
    is_reporting_key,
    load_job,
    load_sweep,
    paper_row,
    paper_value,
    parse_override,
    plot_panels,
    write_summary,
)
from yolo9000.results import (
    check_metric_groups,
    format_group_table,
    format_metric_table,
    group_means,
    model_stats,
    plain,
    table_for_log,
    write_metrics,
)

NAN = float("nan")


def job(num: int, overrides: list[str], seed: int | None = 1, status: str = "ok", **kw: Any) -> JobResult:
    """A job as load_job returns it, without files (``values`` etc. through ``kw``)."""
    return JobResult(num=num, path=Path(f"/nowhere/{num}"), overrides=overrides, seed=seed, status=status, **kw)


def csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def table_rows(md: str) -> list[str]:
    return [line for line in md.splitlines() if line.startswith("| `")]


# ------------------------------------------------------------------------------------------ report: reading jobs
def test_parse_override_drops_every_prefix() -> None:
    assert parse_override("+a.b=3") == ("a.b", "3")
    assert parse_override("++a.b=x=y") == ("a.b", "x=y")  # only the first "=" splits
    assert parse_override("~a.b") == ("a.b", None)  # a deletion has no value
    assert parse_override("~a.b=3") == ("a.b", "3")
    assert parse_override("a.b=") == ("a.b", "")  # an empty value is not a deletion


def test_load_job_reads_values_per_class_ap50_and_a_failure_without_message(tmp_path: Path) -> None:
    metrics = {
        "map_50": 0.5,
        "map": 1,  # an int is a number too
        "resumed": True,  # a flag is no number for the summary
        "name": "x",
        "per_class": {"A": {"ap50": 0.75, "ap": 0.25}, "B": {"ap": 0.5}},  # B: no AP@0.5
    }
    fake_job(tmp_path, 0, ["variant=yolo", "seed=abc"], metrics)
    got = load_job(tmp_path / "0")
    assert got is not None and got.status == "ok"
    assert got.values == {"map_50": 0.5, "map": 1.0}
    assert got.per_class == {"A": 0.75}
    assert got.seed is None  # "abc" is no seed (config.yaml's seed is not used when the override sets one)
    fake_job(tmp_path, 1, ["variant=yolo", "seed=2"], None)
    (tmp_path / "1" / "failed.json").write_text(json.dumps({"traceback": "..."}))
    failed = load_job(tmp_path / "1")
    assert failed is not None and (failed.status, failed.error, failed.seed) == ("failed", "unknown error", 2)


def test_unreadable_overrides_are_not_replaced_by_those_of_metrics_json(tmp_path: Path) -> None:
    """metrics.json's overrides stand for those of .hydra only when .hydra's could be read: a job whose
    configuration is unknown is failed, with no configuration borrowed."""
    fake_job(tmp_path, 0, ["variant=yolo"], {"map_50": 0.5, "overrides": ["variant=yolo", "trainer.max_epochs=2"]})
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    got = load_job(tmp_path / "0")
    assert got is not None and got.status == "failed" and got.overrides == []


def test_jobs_come_in_number_order_and_other_folders_last(tmp_path: Path) -> None:
    for num in (10, 2, 0):
        fake_job(tmp_path, num, [f"variant=v{num}"], {"map_50": 0.5})
    extra = tmp_path / "best"
    (extra / ".hydra").mkdir(parents=True)
    (extra / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(["variant=best"]))
    assert [j.path.name for j in load_sweep(tmp_path)] == ["0", "2", "10", "best"]


# ------------------------------------------------------------------------------------------- report: paper rows
def test_paper_conditions() -> None:
    config = {"model": {"net": {"anchors": "kmeans", "size": "416"}}}
    paper = {
        "rows": [
            {"when": "variant=yolo", "value": 63.4},  # one condition as a plain string
            {"when": ["model.net.missing=null"], "value": 1.0},  # no such key: never holds
            {"when": ["tag=[x"], "value": 2.0},  # a value that is no YAML: compared as text
            {"when": ["model.net.size=416"], "value": 76.8},  # the config's "416" (a string) is 416
        ]
    }
    yolo = job(0, ["variant=yolo"], config=config)
    assert paper_row(paper, yolo) == 0 and paper_value(paper, yolo) == (63.4, "")  # no note: empty, not "None"
    assert paper_row(paper, job(1, ["tag=[y"], config={})) is None
    assert paper_row(paper, job(2, ["tag=[x"], config={})) == 2
    assert paper_value(paper, job(3, ["variant=other"], config=config)) == (76.8, "")


# ------------------------------------------------------------------------------------------ report: grouping
def test_grouping_ignores_override_order_and_seeds_are_sorted() -> None:
    jobs = [
        job(0, ["a=1", "b=2", "seed=3"], seed=3, values={"map_50": 0.4}),
        job(1, ["b=2", "a=1", "seed=1"], seed=1, values={"map_50": 0.6}),
    ]
    (row,), common = group_jobs(jobs)
    assert row.seeds == [1, 3] and row.label == "default" and common == ["a=1", "b=2"]
    assert row.stats["map_50"] == (pytest.approx(0.5), pytest.approx(0.02**0.5), 2)


def test_the_logger_and_the_launcher_are_not_part_of_a_configuration() -> None:
    """``logger=csv,wandb`` in a sweep is one configuration logged twice (it made a row per logger, and
    ``report.py --combine`` kept a ``logger=csv`` sweep apart from one without); the launcher and the loader workers
    are not configurations either; a logger key's sub-keys neither, but a key that merely starts alike is."""
    jobs = [
        job(0, ["v=a", "logger=csv", "seed=1"], values={"map_50": 0.4}),
        job(1, ["v=a", "logger=wandb", "seed=2"], seed=2, values={"map_50": 0.6}),
        job(2, ["v=b", "logger=csv", "logger.wandb.project=p", "seed=1"], values={"map_50": 0.5}),
        job(3, ["v=a", "hydra/launcher=submitit_local", "data.num_workers=2", "seed=3"], seed=3, values={"map_50": 1}),
        job(4, ["v=a", "loggers_extra=1", "seed=1"], values={"map_50": 0.1}),
    ]
    rows, common = group_jobs(jobs)
    assert [(r.label, r.seeds) for r in rows] == [("v=a", [1, 2, 3]), ("v=b", [1]), ("v=a loggers_extra=1", [1])]
    assert rows[0].stats["map_50"][0] == pytest.approx(2 / 3) and common == []
    assert is_reporting_key("logger") and is_reporting_key("hydra/launcher") and not is_reporting_key("loggers_extra")


def test_a_finished_job_without_seed_counts_and_failed_jobs_give_no_statistics() -> None:
    """The statistics are over the jobs that succeeded: a failed job's prior IoU (build.json) is not one."""
    ok = job(0, ["k=5"], seed=None, values={"map_50": 0.5, "anchors_avg_iou": 0.6})
    failed = job(1, ["k=5", "seed=2"], seed=2, status="failed", error="E", values={"anchors_avg_iou": 0.8})
    (row,), _ = group_jobs([ok, failed])
    assert len(row.jobs) == 2 and row.ok == [ok]
    assert row.stats["map_50"][::2] == (0.5, 1) and row.stats["anchors_avg_iou"][::2] == (0.6, 1)
    assert math.isnan(row.stats["anchors_avg_iou"][1])


def test_row_status_names_each_seed_when_not_every_seed_failed_alike() -> None:
    one_failed = ConfigRow(
        "x",
        [],
        [job(0, [], seed=1, status="failed", error="E"), job(1, [], seed=2, status="missing")],
    )
    assert one_failed.status == "failed: seed 1 failed: E; seed 2 has no result (running, stopped or killed)"
    both = ConfigRow("x", [], [job(0, [], seed=1, status="failed", error="E"), job(1, [], seed=2, status="failed")])
    assert both.status == "failed: seed 1 failed: E; seed 2 failed: ?"
    same = ConfigRow("x", [], [job(0, [], 1, "failed", error="E"), job(1, [], 2, "failed", error="E")])
    assert same.status == "failed: E"


# ----------------------------------------------------------------------------------------- report: summary.md
def test_summary_md_counts_cells_and_columns() -> None:
    err = "RuntimeError: a|b " + "x" * 400
    jobs = [
        job(0, ["v=a", "seed=1"], values={"map_50": 0.5, "map": 0.25, "params": 2e6}),
        job(1, ["v=a", "seed=2"], seed=2, status="missing"),
        job(2, ["v=b", "seed=1"], status="failed", error=err),
        job(3, ["v=c", "seed=1"], values={"map_50": 0.7, "top1": 0.9, "params": 1e6}),
    ]
    rows, common = group_jobs(jobs)
    rows[0].paper, rows[0].paper_note = 74.44, "off"
    md = format_markdown(rows, common, title="t", sweep_dir=Path("/s"), paper=None, plot_name=None)
    assert "- jobs: 4 (2 ok, 1 failed, 1 without result), configurations: 3" in md
    header = next(line for line in md.splitlines() if line.startswith("| configuration"))
    # a detection sweep (map_50 reported): no top-1 / top-5 columns though one job has top1; no optional column
    assert header == "| configuration | seeds | mAP@0.5 (%) | mAP@[.5:.95] (%) | params (M) | GFLOPs | train img/s | " \
        "inference FPS | paper | status |"  # fmt: skip
    a, b, c = table_rows(md)
    assert a.startswith("| `v=a` | 1, 2 | 50.0 | 25.0 | 2.00 |  |  |  | 74.4 (off) | partial: seed 2 has no result")
    status = b.split(" | ")[-1].removesuffix(" |")
    want = ("failed: " + err)[:299] + "…"  # at most 300 characters, a "|" escaped
    assert status == want.replace("|", "\\|") and "a\\|b" in status
    assert c.startswith("| `v=c` | 1 | 70.0 |  | 1.00 |")


def test_summary_md_lists_twenty_missing_jobs_then_how_many_more() -> None:
    rows, common = group_jobs([job(0, ["v=a", "seed=1"], values={"map_50": 0.5})])
    missing = [(Path("/s"), 22, num, ["v=a", f"seed={num}"]) for num in range(1, 22)]  # 21 never started
    md = format_markdown(rows, common, title="t", sweep_dir=Path("/s"), paper=None, plot_name=None, missing=missing)
    line = next(x for x in md.splitlines() if "**incomplete**" in x)
    assert "planned 22 jobs (multirun.yaml); 21 never started" in line
    assert "20 (`seed=20`), ... 1 more (re-run" in line and "21 (`seed=21`)" not in line
    md20 = format_markdown(
        rows, common, title="t", sweep_dir=Path("/s"), paper=None, plot_name=None, missing=missing[:20]
    )
    assert "more" not in md20 and "20 (`seed=20`) (re-run" in md20


def test_summary_of_an_undefined_value_is_blank_and_the_title_defaults_to_the_experiment_folder(
    tmp_path: Path,
) -> None:
    """A job whose metrics.json holds NaN (files of older versions): the cell is blank in summary.md and .csv;
    without experiment_name the title is the folder above the sweep; a missing job is no failed one."""
    sweep = tmp_path / "my_experiment" / "2026-01-01_00-00-00"
    fake_job(sweep, 0, ["seed=1"], None)
    (sweep / "0" / "metrics.json").write_text('{"map_50": 0.5, "map": NaN, "params": 1000000}')
    fake_job(sweep, 1, ["seed=2"], None)  # still running
    for j in ("0", "1"):
        (sweep / j / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 1}))
    out = write_summary(sweep, plot=False)
    md = out["md"].read_text()
    assert md.startswith("# Sweep summary: my_experiment\n")
    assert table_rows(md)[0].startswith("| `default` | 1, 2 | 50.0 |  | 1.00 |")
    (row,) = csv_rows(out["csv"])
    assert (row["map_pct_mean"], row["map_pct_std"], row["map_50_pct_mean"]) == ("", "", "50.0")
    assert (row["n_ok"], row["n_failed"]) == ("1", "0")


# ------------------------------------------------------------------------------------------- report: the plot
def test_plot_panels() -> None:
    def row(**stats: float) -> ConfigRow:
        return ConfigRow("r", [], [], stats={k: (v, NAN, 1) for k, v in stats.items()})

    same_iou = [row(map_50=0.5, anchors_avg_iou=0.6), row(map_50=0.6, anchors_avg_iou=0.6)]
    assert plot_panels(same_iou, None) == ["map_50"]  # one prior IoU for all: no panel
    assert plot_panels(same_iou, {"metric": "anchors_avg_iou"}) == ["map_50", "anchors_avg_iou"]
    assert plot_panels(same_iou, {"metric": "voc07_map_50"}) == ["map_50"]  # no job reports VOC07 AP
    assert plot_panels([row(map_50=0.5, voc07_map_50=0.4)], {"metric": "voc07_map_50"}) == ["voc07_map_50"]


# --------------------------------------------------------------------------------------- report: combined sweeps
def test_combined_sweeps_put_rows_the_paper_does_not_name_last(tmp_path: Path) -> None:
    paper = {"metric": "map_50", "rows": [{"when": ["variant=yolo"], "value": 63.4}]}
    fake_job(tmp_path / "a", 0, ["variant=other", "seed=1"], {"map_50": 0.1}, paper)
    fake_job(tmp_path / "b", 0, ["variant=yolo", "seed=1"], {"map_50": 0.2}, paper)
    out = write_summary([tmp_path / "a", tmp_path / "b"], out_dir=tmp_path / "all", plot=False)
    assert [(r["configuration"], r["paper_value"]) for r in csv_rows(out["csv"])] == [
        ("variant=yolo", "63.4"),
        ("variant=other", ""),
    ]


def test_a_folder_of_many_sweeps_is_named_with_three_of_them(tmp_path: Path) -> None:
    for name in ("s0", "s1", "s2", "s3"):
        fake_job(tmp_path / name, 0, ["variant=yolo"], {"map_50": 0.5})
    with pytest.raises(FileNotFoundError, match=r"it holds sweep folders \(s0, s1, s2, \.\.\.\): pass one"):
        write_summary(tmp_path, plot=False)


def test_archive_keeps_failures_and_refuses_two_sweeps_of_one_name(tmp_path: Path) -> None:
    fake_job(tmp_path / "x" / "s", 0, ["variant=yolo", "seed=1"], None)
    (tmp_path / "x" / "s" / "0" / "failed.json").write_text(json.dumps({"error": "RuntimeError: out of memory"}))
    fake_job(tmp_path / "y" / "s", 0, ["variant=yolo", "seed=2"], {"map_50": 0.5})
    (kept,) = archive_jobs([tmp_path / "x" / "s"], tmp_path / "out")
    assert json.loads((kept / "0" / "failed.json").read_text())["error"] == "RuntimeError: out of memory"
    with pytest.raises(ValueError, match="two sweep folders named s"):
        archive_jobs([tmp_path / "x" / "s", tmp_path / "y" / "s"], tmp_path / "out2")


# ----------------------------------------------------------------------------------------------- results.py
def test_plain_gives_string_keys() -> None:
    assert plain({1: torch.tensor(0.5), "a": (np.float32(0.25), [torch.tensor([1, 2])])}) == {
        "1": 0.5,
        "a": [0.25, [[1, 2]]],
    }


def test_metrics_json_nulls_every_non_finite_number_and_extra_describes_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import yolo9000.viz

    drawn: dict[str, Any] = {}
    monkeypatch.setattr(yolo9000.viz, "plot_pr_curves", lambda pr, path, ap=None, **kw: drawn.update(pr=pr, ap=ap))
    per_class = {"a": {"ap50": 0.5, "ap": 0.25, "num_gt": 3}, "b": {"ap": NAN, "num_gt": 0}}
    results = {"map_50": 0.5, "inf": float("inf"), "curve": [0.5, NAN], "split": "x", "per_class": per_class}
    results["pr"] = {"a": ([1.0], [0.5])}
    write_metrics(tmp_path, results, ["a", "b"], {"split": "test"})
    got = json.loads((tmp_path / "metrics.json").read_text())
    assert (got["inf"], got["curve"], got["split"]) == (None, [0.5, None], "test") and "pr" not in got
    assert drawn["pr"] == results["pr"] and drawn["ap"]["a"] == 0.5 and math.isnan(drawn["ap"]["b"])
    assert (tmp_path / "per_class.md").read_text().splitlines()[0] == "| class | AP@0.5 | AP@[.5:.95] | #GT |"
    accuracy = {"a": {"accuracy": 0.75, "num_images": 4}, "b": {"accuracy": NAN, "num_images": 0}}
    write_metrics(tmp_path / "cls", {"top1": 0.75, "per_class": accuracy}, ["a", "b"])
    assert (tmp_path / "cls" / "per_class.md").read_text() == (
        "| class | accuracy | #images |\n|---|---:|---:|\n| a | 0.7500 | 4 |\n| b | – | 0 |\n| mean | 0.7500 | 4 |\n"
    )


def test_lightning_metric_table() -> None:
    table = format_metric_table([{"test/b": 0.5, "test/a": 1 / 3}, {"test/a": 1234567.0}], "Val metric")
    assert table.splitlines() == [
        "| Val metric | DataLoader 0 | DataLoader 1 |",
        "|---|---:|---:|",
        "| test/a | 0.333333 | 1.23457e+06 |",
        "| test/b | 0.5 |  |",
    ]


def test_table_for_log_keeps_a_table_of_max_rows_plus_three_lines_whole(tmp_path: Path) -> None:
    def table(n_rows: int) -> Path:
        path = tmp_path / f"t{n_rows}.md"
        path.write_text(
            "| c | AP |\n|---|---|\n" + "".join(f"| r{i} | 1 |\n" for i in range(n_rows)) + "| mean | 1 |\n"
        )
        return path

    assert table_for_log(table(2), max_rows=2) == table(2).read_text().rstrip("\n")  # 5 lines: whole
    cut = table_for_log(table(3), max_rows=2).splitlines()  # 6 lines: 2 rows shown, 1 left out
    assert cut == [
        "| c | AP |",
        "|---|---|",
        "| r0 | 1 |",
        "| r1 | 1 |",
        f"| ... 1 more rows: {table(3)} |",
        "| mean | 1 |",
    ]


def test_metric_groups_refuse_an_empty_group_and_list_at_most_twenty_classes() -> None:
    with pytest.raises(ValueError, match=r"^metric_groups.none: an empty list is no group of this run"):
        check_metric_groups({"none": []}, ["a"])
    twenty = [str(i) for i in range(20)]
    with pytest.raises(ValueError, match=r"'19'\]\)$"):  # all 20 named, no " ..."
        check_metric_groups({"g": ["x"]}, twenty)
    with pytest.raises(ValueError, match=r"'19'\] \.\.\.\)$"):
        check_metric_groups({"g": ["x"]}, [*twenty, "20"])


def test_group_means_and_table_leave_out_classes_without_the_value() -> None:
    per_class = {"0": {"ap50": 0.8}, "1": {"ap50": 0.45}, "5": {"ap50": NAN}, "6": {"ap": 0.1}}
    assert group_means(per_class, {"g": ["0", "6"]}) == {"ap50_g": 0.8}  # 6 has no ap50: left out, not 0
    assert format_group_table(per_class, {"seen": ["0", "1"], "unseen": [5]}).splitlines() == [  # type: ignore[dict-item]
        "| group | mean ap50 | per class |",
        "|---|---:|---|",
        "| seen | 0.6250 | 0: 0.800, 1: 0.450 |",
        "| unseen | – | 5: – |",  # undefined: "–", as per_class.md
    ]


def test_model_stats_counts_learnable_parameters_and_keeps_the_mode() -> None:
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 1), torch.nn.Conv2d(2, 1, 1))
    net[0].requires_grad_(False)  # frozen: 8 parameters not counted
    net.train()
    stats = model_stats(net, 4)
    assert stats["params"] == 3 and net.training
    # 16 pixels x (3 x 2 + 2 x 1) multiply-adds x 2
    assert stats["gflops"] == pytest.approx(16 * 8 * 2 / 1e9) and stats["gflops_input_size"] == 4


# ---------------------------------------------------------------------------------------------- tradeoff.py
def test_timing_batches_cycle_so_that_every_image_appears() -> None:
    images = tradeoff.EvalImages(torch.arange(5).view(5, 1, 1, 1), torch.zeros(5, 4), torch.zeros(5, 2))
    assert [b.images.flatten().tolist() for b in images.batches(2)] == [[0, 1], [2, 3], [4, 0]]
    assert [b.images.flatten().tolist() for b in images.batches(7)] == [[0, 1, 2, 3, 4, 0, 1]]


class FakeLoader:
    def __init__(self, n: int, keep: bool = True) -> None:
        self.dataset = [torch.full((3, 2, 2), i, dtype=torch.uint8) for i in range(n)]
        self.keep = keep

    def collate_fn(self, samples: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        images = torch.stack(samples) if self.keep else torch.zeros(0, 3, 2, 2, dtype=torch.uint8)
        return {"images": images, "transforms": torch.zeros(len(images), 4), "orig_sizes": torch.zeros(len(images), 2)}


def test_collect_images_takes_what_there_is_and_refuses_nothing() -> None:
    assert len(tradeoff.collect_images(FakeLoader(2), 5)) == 2
    assert len(tradeoff.collect_images(FakeLoader(4), 3)) == 3
    with pytest.raises(ValueError, match="no image to time"):
        tradeoff.collect_images(FakeLoader(2, keep=False), 2)  # every sample unreadable


def test_sweep_settings() -> None:
    s = tradeoff.SweepSettings(sizes=[96, 64, 96], speed_batches=[32, 1, 32])
    assert (s.sizes, s.speed_batches) == ([64, 96], [32, 1])
    for bad in ([0], [-32], []):
        with pytest.raises(ValueError, match="multiples of 32"):
            tradeoff.SweepSettings(sizes=bad)
    with pytest.raises(ValueError, match="batch sizes >= 1"):
        tradeoff.SweepSettings(sizes=[64], speed_batches=[1, 0])
    assert tradeoff.columns([1, 8]) == [
        "size", "map_50", "voc07_map_50", "map", "img_per_s_bs1", "ms_per_img_bs1", "img_per_s_bs8",
        "ms_per_img_bs8", "gflops", "device", "dtype", "threads", "load_avg_1min",
    ]  # fmt: skip


def test_an_fc_head_takes_its_one_size() -> None:
    from types import SimpleNamespace

    module = SimpleNamespace(model=SimpleNamespace(head_type="fc", fc_grid=13))
    tradeoff._check_sizes(module, [416])
    with pytest.raises(ValueError, match="fc head takes 416x416 inputs only"):
        tradeoff._check_sizes(module, [416, 448])


class FakeDetector(torch.nn.Module):
    """What the trade-off reads of a detection module: a 1x1 conv as the network, the test's results given."""

    class_names = ["a", "b"]

    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Conv2d(3, 1, 1)
        self.test_results = {"map_50": 0.5, "voc07_map_50": 0.4, "map": 0.25, "per_class": {"a": {"ap50": 0.5}}}


class FakeInference:
    """What the trade-off's timing calls of a :class:`~yolo9000.Detector`: its device, compile state, network and
    ``detect_batch`` (each batch's size recorded)."""

    device = torch.device("cpu")
    dtype = torch.float32
    compile_options = None

    def __init__(self) -> None:
        self.network = torch.nn.Conv2d(3, 1, 1)
        self.seen: list[int] = []

    def detect_batch(self, images: torch.Tensor, transforms: torch.Tensor, orig_sizes: torch.Tensor) -> None:
        assert len(images) == len(transforms) == len(orig_sizes)
        self.seen.append(images.shape[0])


def test_time_end_to_end_per_image(monkeypatch: pytest.MonkeyPatch) -> None:
    def timed(fn: Any, iters: int, warmup: int, device: Any, max_seconds: Any) -> tuple[float, int]:
        assert warmup == 2  # an eager network: the warm-up asked for
        fn()
        return 0.5, 3  # 0.5 s a batch

    monkeypatch.setattr(tradeoff, "time_calls", timed)
    det = FakeInference()
    t = tradeoff.time_end_to_end(det, tradeoff.collect_images(FakeLoader(3), 4), 4)  # type: ignore[arg-type]
    assert t == {"img_per_s": 8.0, "ms_per_img": 125.0, "batches": 3.0} and det.seen == [4]


def test_tradeoff_table_cells_and_notes() -> None:
    row = {"size": 416, "map_50": 0.7684, "voc07_map_50": NAN, "map": 0.25, "img_per_s_bs1": 10.0,
           "ms_per_img_bs1": 100.0, "img_per_s_bs8": 1.0, "ms_per_img_bs8": 0.5, "gflops": 29.371,
           "device": "cpu", "threads": 2}  # fmt: skip
    cpus = os.cpu_count() or 1
    md = tradeoff.format_markdown(
        [row, {**row, "size": 448, "threads": 4}], [1, 8], {"split": "val", "images": 7, "checkpoint": "c.ckpt"}
    )
    lines = md.splitlines()
    assert lines[:3] == [
        "| size | mAP@0.5 (%) | VOC07 AP@0.5 (%) | mAP@[.5:.95] (%) | img/s (batch 1) | ms/img (batch 1) | "
        "img/s (batch 8) | ms/img (batch 8) | GFLOPs |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        "| 416 | 76.8 | – | 25.0 | 10.0 | 100.0 | 1.00 | 0.500 | 29.4 |",
    ]
    assert "- split: val (7 images); checkpoint: c.ckpt" in lines
    assert "- device: cpu; float32; torch threads: 2, 4" in lines  # rows without a dtype: float32
    assert not any(line.startswith("- load average") for line in lines)  # not known for every size
    at_cpus = [{**row, "load_avg_1min": float(cpus)}, {**row, "size": 448, "load_avg_1min": None}]
    assert "load average" not in tradeoff.format_markdown(at_cpus, [1], {})
    assert "time it again" not in tradeoff.format_markdown(at_cpus[:1], [1], {})  # at the CPU count: not above


def test_the_plot_turns_logarithmic_beyond_twenty_times(tmp_path: Path, made_figures: list[Any]) -> None:
    for speeds, scale in (((1.0, 20.0), "linear"), ((1.0, 21.0), "log")):
        tradeoff.plot_tradeoff({"ours": [(speeds[0], 50.0, 416), (speeds[1], 40.0, 288)]}, tmp_path / "t.png")
        assert made_figures[-1].axes[0].get_xscale() == scale


def test_run_sweep_reports_and_logs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_sweep with stand-ins for the data, the trainer and the clock: the plot's axis and title, metrics.json
    and what a logger gets per size."""
    from types import SimpleNamespace

    monkeypatch.setattr(tradeoff, "time_calls", lambda fn, *a: (fn(), (0.25, 2))[1])
    monkeypatch.setattr(tradeoff.os, "getloadavg", lambda: (0.0, 0.0, 0.0))  # an idle machine: no warning
    plotted: dict[str, Any] = {}
    monkeypatch.setattr(tradeoff, "plot_tradeoff", lambda series, path, **kw: plotted.update(series=series, **kw))
    module = FakeDetector()
    module.class_names = list(tradeoff.VOC_CLASSES)
    built: list[dict[str, Any]] = []  # the Detectors the timing was given: one a size, as the trainer runs
    monkeypatch.setattr(tradeoff, "Detector", lambda module, **kw: built.append(kw) or FakeInference())

    def make_datamodule(size: int) -> Any:
        loader = FakeLoader(3)
        return SimpleNamespace(setup=lambda stage: None, test_dataloader=lambda: loader)

    strategy = SimpleNamespace(root_device=torch.device("cpu"))
    trainer = SimpleNamespace(
        world_size=1, test=lambda module, dataloaders: None, strategy=strategy, precision="32-true"
    )

    class Logger:
        def __init__(self) -> None:
            self.metrics: list[tuple[dict[str, float], int]] = []

        def log_metrics(self, metrics: dict[str, float], step: int) -> None:
            self.metrics.append((metrics, step))

        def save(self) -> None:
            pass

        def finalize(self, status: str) -> None:
            pass

    logger = Logger()
    settings = tradeoff.SweepSettings(sizes=[64, 32], speed_batches=[2])
    rows = tradeoff.run_sweep(module, make_datamodule, lambda cb: trainer, settings, tmp_path, loggers=[logger])
    assert [r["size"] for r in rows] == [32, 64] and rows[0]["img_per_s_bs2"] == 8.0
    assert built == [{"device": torch.device("cpu"), "dtype": torch.float32, "compile": False}] * 2
    assert plotted["ylabel"] == "VOC07 AP@0.5 (%)"  # VOC's classes: the paper's metric
    threads = torch.get_num_threads()
    assert plotted["title"] == f"test split (3 images)\n{rows[0]['device']}, float32, {threads} threads"
    assert plotted["series"]["ours, batch 2"] == [(8.0, 40.0, 32), (8.0, 40.0, 64)]
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert (summary["images"], summary["sizes"], summary["split"]) == (3, [32, 64], "test")
    assert [step for _, step in logger.metrics] == [32, 64]
    assert set(logger.metrics[0][0]) == {
        "tradeoff/map_50", "tradeoff/voc07_map_50", "tradeoff/map", "tradeoff/img_per_s_bs2",
        "tradeoff/ms_per_img_bs2", "tradeoff/gflops", "tradeoff/threads", "tradeoff/load_avg_1min",
    }  # fmt: skip
    assert json.loads((tmp_path / "size_32" / "metrics.json").read_text())["img_size"] == 32


def test_tradeoff_plot_title_names_the_split_the_checkpoint_and_a_timing_that_shared_the_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """tradeoff.png's title said only "cpu (AMD EPYC), 2 threads": not which checkpoint or split (tradeoff.md
    did), nor that a size's timing shared the CPU (tradeoff.md warns; the plot showed its low img/s as they are)."""
    monkeypatch.setattr(tradeoff.os, "cpu_count", lambda: 2)
    rows = [
        {"size": 96, "device": "cpu (AMD EPYC)", "threads": 2, "load_avg_1min": 1.98},
        {"size": "320x544", "device": "cpu (AMD EPYC)", "threads": 2, "load_avg_1min": 2.23},
    ]
    info = {"split": "val", "images": 8, "checkpoint": "outputs/train/2026-12-06_x/checkpoints/last.ckpt"}
    assert tradeoff._title(rows, info) == (
        "val split (8 images), 2026-12-06_x/last.ckpt\n"
        "cpu (AMD EPYC), float32, 2 threads\nother work shared the CPU at size 320x544: its img/s are low"
    )
    assert tradeoff._title(rows[:1]) == "cpu (AMD EPYC), float32, 2 threads"  # without info: as before (+ dtype)
    assert tradeoff._title([{**rows[0], "dtype": "bfloat16"}]) == "cpu (AMD EPYC), bfloat16 autocast, 2 threads"
