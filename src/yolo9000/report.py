"""Sweep summaries: one row per configuration of a Hydra multirun, seeds grouped, with the paper's numbers.

Per job folder ``<sweep dir>/<job num>/`` it reads ``.hydra/overrides.yaml`` (the configuration = the overrides
minus ``seed``), ``.hydra/config.yaml`` (the seed, the experiment's ``paper`` block), ``build.json`` (what
train.py's build computed: ``anchors_avg_iou``), ``metrics.json`` and ``failed.json``. It writes
``summary.md``, ``summary.csv`` and ``summary.png`` into the sweep folder. Used by the Hydra callback
:class:`yolo9000.callbacks.sweep_summary.SweepSummary` (after each job and at the end of a multirun) and by
``python src/report.py <sweep dir>``.

The ``paper`` block an experiment may set (the paper's number for the rows it matches)::

    paper:
      source: Table 2, VOC 2007 test mAP@0.5 (%)
      metric: map_50            # the summary column it compares with
      rows:
        - {when: [model.net.backbone.batch_norm=false], value: 63.4, note: YOLO}

A row matches when every ``key=value`` of ``when`` holds for the job: the job's override of ``key`` (``+``
prefixes ignored) or, without one, the value of ``key`` in the composed config, compared as YAML values.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import shutil
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

log = logging.getLogger("yolo9000.report")

__all__ = [
    "COLUMNS",
    "Column",
    "ConfigRow",
    "JobResult",
    "group_jobs",
    "load_job",
    "load_sweep",
    "mean_std",
    "paper_value",
    "parse_override",
    "write_summary",
]


@dataclass(frozen=True)
class Column:
    """A summary column: ``key`` in the job's values, its title, display ``scale`` and decimals."""

    key: str
    title: str
    csv_name: str
    scale: float = 1.0
    decimals: int = 1
    optional: bool = False  # shown only when some job has it
    kind: str | None = None  # "detection" / "classification": shown in sweeps of that kind only (None: any)


COLUMNS: tuple[Column, ...] = (
    Column("map_50", "mAP@0.5 (%)", "map_50_pct", 100.0, 1, kind="detection"),
    Column("voc07_map_50", "VOC07 AP@0.5 (%)", "voc07_map_50_pct", 100.0, 1, optional=True),
    Column("map", "mAP@[.5:.95] (%)", "map_pct", 100.0, 1, kind="detection"),
    Column("top1", "top-1 (%)", "top1_pct", 100.0, 1, kind="classification"),
    Column("top5", "top-5 (%)", "top5_pct", 100.0, 1, kind="classification"),
    Column("tree_top1", "tree decode top-1 (%)", "tree_top1_pct", 100.0, 1, optional=True),
    Column("anchors_avg_iou", "prior avg IoU (%)", "anchors_avg_iou_pct", 100.0, 1, optional=True),
    Column("params", "params (M)", "params_M", 1e-6, 2),
    Column("gflops", "GFLOPs", "gflops", 1.0, 2),
    Column("train_img_per_s", "train img/s", "train_img_per_s", 1.0, 1),
    Column("inference_fps", "inference FPS", "inference_fps", 1.0, 1),
)


@dataclass
class JobResult:
    """What one job of a sweep left behind.

    ``overrides``: the job's (``.hydra/overrides.yaml``), or those of the process that wrote its metrics.json when
    it records them (a job trained further with a longer ``trainer.max_epochs``);
    ``values``: the numbers of metrics.json (+ ``anchors_avg_iou`` from build.json), unscaled;
    ``per_class``: AP@0.5 per class; ``status``: ``ok`` (metrics.json), ``failed`` (failed.json) or ``missing``
    (neither: still running, killed, or the job does not write metrics).
    """

    num: int
    path: Path
    overrides: list[str]
    seed: int | None
    values: dict[str, float] = field(default_factory=dict)
    per_class: dict[str, float] = field(default_factory=dict)
    status: str = "missing"
    error: str | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the composed (unresolved) config
    provenance: dict[str, str] = field(default_factory=dict)  # command, commit, machine (metrics.json)


@dataclass
class ConfigRow:
    """One configuration: its jobs (one per seed), statistics over the successful ones, the paper's number."""

    label: str
    overrides: list[str]
    jobs: list[JobResult]
    stats: dict[str, tuple[float, float, int]] = field(default_factory=dict)  # key -> (mean, std, n), unscaled
    class_stats: dict[str, tuple[float, float, int]] = field(default_factory=dict)
    paper: float | None = None
    paper_note: str = ""

    @property
    def seeds(self) -> list[int]:
        return sorted({j.seed for j in self.jobs if j.seed is not None})

    @property
    def ok(self) -> list[JobResult]:
        return [j for j in self.jobs if j.status == "ok"]

    @property
    def status(self) -> str:
        """``ok``, ``failed: <error>`` (every seed), ``no result: ...`` (no seed finished, none failed: running,
        stopped or killed), or ``partial: seed s failed: <error>; ...``."""
        bad = [j for j in self.jobs if j.status != "ok"]
        if not bad:
            return "ok"
        what = "; ".join(
            f"seed {j.seed} "
            + ("failed: " + (j.error or "?") if j.status == "failed" else "has no result (running, stopped or killed)")
            for j in bad
        )
        if not self.ok:
            errors = {j.error for j in bad if j.status == "failed"}
            if len(errors) == 1 and all(j.status == "failed" for j in bad):
                return f"failed: {errors.pop()}"
            return f"{'failed' if errors else 'no result'}: {what}"  # none failed: running, stopped or killed
        return f"partial: {what}"


def parse_override(text: str) -> tuple[str, str | None]:
    """``"+a.b=3"`` -> ``("a.b", "3")``; ``"~a.b"`` -> ``("a.b", None)`` (prefixes ``+``, ``++``, ``~`` dropped)."""
    key, sep, value = text.partition("=")
    return key.lstrip("+~"), (value if sep else None)


def _yaml_value(text: str | None) -> Any:
    """An override's value as the YAML value it stands for ("true" -> True, "5" -> 5, "null" -> None)."""
    if text is None:
        return None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _select(cfg: dict[str, Any], key: str) -> tuple[bool, Any]:
    """(found, value) of a dotted ``key`` in a nested dict."""
    node: Any = cfg
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False, None
        node = node[part]
    return True, node


def _read_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text()) if path.is_file() else None


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def load_job(path: Path) -> JobResult | None:
    """Read one job folder (None when it is not a Hydra job folder, i.e. has no ``.hydra/overrides.yaml``)."""
    ov_file = path / ".hydra" / "overrides.yaml"
    if not ov_file.is_file():
        return None
    unreadable: list[str] = []

    def read(file: Path, how: Any, default: Any) -> Any:
        """The parsed file, or ``default`` with the problem noted (a job killed while writing it, a full disk)."""
        try:
            return how(file) if file.is_file() else default
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as e:
            unreadable.append(f"unreadable {file}: {type(e).__name__}: {' '.join(str(e).split())[:200]}")
            return default

    raw_overrides = read(ov_file, _read_yaml, [])
    bad_overrides = bool(unreadable) or not isinstance(raw_overrides, list)
    if not isinstance(raw_overrides, list):
        unreadable.append(f"unreadable {ov_file}: not a list of overrides")
    overrides = [str(o) for o in raw_overrides] if isinstance(raw_overrides, list) else []
    config = read(path / ".hydra" / "config.yaml", _read_yaml, None) or {}
    if not isinstance(config, dict):
        config = {}
    ov = dict(parse_override(o) for o in overrides)
    seed = _yaml_value(ov["seed"]) if "seed" in ov else config.get("seed")
    try:
        num = int(path.name)
    except ValueError:
        num = 1 << 30
    job = JobResult(
        num=num, path=path, overrides=overrides, seed=seed if isinstance(seed, int) else None, config=config
    )
    metrics_file, failed_file = path / "metrics.json", path / "failed.json"
    metrics = read(metrics_file, _read_json, None)
    if isinstance(metrics, dict):
        job.values = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        if isinstance(metrics.get("provenance"), dict):
            job.provenance = {str(k): str(v) for k, v in metrics["provenance"].items()}
        for name, entry in (metrics.get("per_class") or {}).items():
            if isinstance(entry, dict) and isinstance(entry.get("ap50"), int | float):
                job.per_class[str(name)] = float(entry["ap50"])
        job.status = "ok"
        final = metrics.get("overrides")  # the overrides of the process that wrote the result (an extended job's)
        if isinstance(final, list) and all(isinstance(o, str) for o in final) and not bad_overrides:
            job.overrides = final
    elif failed_file.is_file():
        failed = read(failed_file, _read_json, None)
        job.error = str(failed.get("error", "unknown error")) if isinstance(failed, dict) else None
        job.status = "failed"
    built = read(path / "build.json", _read_json, None)  # what the build computed (train.py), also for failed jobs
    if isinstance(built, dict) and isinstance(built.get("anchors_avg_iou"), int | float):
        job.values["anchors_avg_iou"] = float(built["anchors_avg_iou"])
    if unreadable and (job.status != "ok" or bad_overrides):
        # a job whose result or configuration cannot be read counts as failed, saying why
        job.status, job.error = "failed", "; ".join([e for e in [job.error] if e] + unreadable)
    elif unreadable:
        log.warning("%s: %s", path, "; ".join(unreadable))
    return job


def load_sweep(sweep_dir: str | Path) -> list[JobResult]:
    """Every job folder directly under ``sweep_dir``, in job-number order."""
    sweep_dir = Path(sweep_dir)
    if sweep_dir.is_file():
        raise FileNotFoundError(f"{sweep_dir} is a file: give a sweep folder (multirun_sweeps/<experiment>/<time>)")
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"sweep folder not found: {sweep_dir}")
    jobs = [j for p in sorted(sweep_dir.iterdir()) if p.is_dir() and (j := load_job(p)) is not None]
    return sorted(jobs, key=lambda j: (j.num, j.path.name))


def planned_jobs(sweep_dir: str | Path) -> list[list[str]] | None:
    """The overrides of every job Hydra's basic sweeper planned for a sweep folder, in job-number order: its
    ``multirun.yaml`` (the experiment's ``hydra.sweeper.params`` and the command line's overrides) expanded as the
    sweeper expands them. None when unknown (no multirun.yaml, another sweeper, an unreadable file)."""
    file = Path(sweep_dir) / "multirun.yaml"
    if not file.is_file():
        return None
    try:
        return sweep_jobs((yaml.safe_load(file.read_text()) or {})["hydra"])
    except Exception as e:  # a summary goes on without the plan
        log.warning("%s: the planned jobs are unknown (%s: %s)", file, type(e).__name__, e)
        return None


def sweep_jobs(hydra_cfg: Mapping[str, Any]) -> list[list[str]] | None:
    """The overrides of every job of a multirun, in job-number order, from its ``hydra`` config node (a plain
    mapping, unresolved): ``sweeper.params`` and ``overrides.task`` expanded as Hydra's basic sweeper expands them;
    None for another sweeper (its jobs are not known beforehand)."""
    sweeper = hydra_cfg.get("sweeper") or {}
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        return None
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]  # as the sweeper reads them
    parsed = OverridesParser.create().parse_overrides([*params, *hydra_cfg["overrides"]["task"]])
    return [list(job) for batch in BasicSweeper.split_arguments(parsed, None) for job in batch]


def not_started(sweep_dir: str | Path, jobs: Sequence[JobResult]) -> tuple[int, list[tuple[int, list[str]]]]:
    """(planned job count, [(job number, overrides)] of the planned jobs without a folder) of a sweep folder:
    jobs a stopped sweep never reached. (0, []) when the plan is unknown."""
    planned = planned_jobs(sweep_dir)
    if planned is None:
        return 0, []
    found = {j.num for j in jobs}
    return len(planned), [(i, ov) for i, ov in enumerate(planned) if i not in found]


def mean_std(values: Sequence[float]) -> tuple[float, float, int]:
    """(mean, sample standard deviation (ddof 1; NaN for fewer than two values), n) of the finite values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def paper_row(paper: dict[str, Any] | None, job: JobResult) -> int | None:
    """Index of the first row of the ``paper`` block whose ``when`` all hold for the job (None: no row)."""
    if not paper:
        return None
    ov = {k: v for k, v in (parse_override(o) for o in job.overrides)}
    for i, row in enumerate(paper.get("rows") or []):
        conds = row.get("when") or []
        if isinstance(conds, str):
            conds = [conds]
        ok = True
        for cond in conds:
            key, want = parse_override(str(cond))
            if key in ov:
                have = _yaml_value(ov[key])
            else:
                found, have = _select(job.config, key)
                if not found:
                    ok = False
                    break
            if have != _yaml_value(want) and str(have) != str(want):
                ok = False
                break
        if ok:
            return i
    return None


def paper_value(paper: dict[str, Any] | None, job: JobResult) -> tuple[float | None, str]:
    """The paper's (value, note) for a job: the first row of the ``paper`` block whose ``when`` all hold."""
    i = paper_row(paper, job)
    if i is None:
        return None, ""
    row = paper["rows"][i]  # type: ignore[index]
    v = row.get("value")
    return (float(v) if isinstance(v, int | float) else None), str(row.get("note") or "")


def _one_per_seed(row: ConfigRow) -> list[JobResult]:
    """The row's jobs with one finished job per seed: a seed that ran twice (sweeps combined that both ran it)
    counts once, the newer result (logged), so that n and the spread are over distinct seeds."""
    newest: dict[int, JobResult] = {}
    for j in row.jobs:
        if j.status == "ok" and j.seed is not None:
            prev = newest.get(j.seed)
            if (
                prev is None
                or (j.path / "metrics.json").stat().st_mtime >= (prev.path / "metrics.json").stat().st_mtime
            ):
                newest[j.seed] = j
            if prev is not None:
                log.warning(
                    "%s: seed %d ran twice (%s, %s): counted once, the newer result",
                    row.label,
                    j.seed,
                    prev.path,
                    j.path,
                )
    superseded = [j for j in row.jobs if j.status != "ok" and j.seed in newest]
    for j in superseded:  # a seed that failed (or stopped) in one sweep and finished in another
        log.info("%s: seed %s of %s is superseded by %s", row.label, j.seed, j.path, newest[j.seed].path)
    return [
        j for j in row.jobs if j.seed is None or (newest[j.seed] is j if j.status == "ok" else j.seed not in newest)
    ]


# override keys (and key prefixes) that change where and how a run reports, not what it trains: a sweep's
# ``logger=csv,wandb`` is one configuration logged twice (resume lets them change too: yolo9000.run_folder)
REPORTING_KEYS = ("logger", "data.num_workers", "paths.", "hydra.", "hydra/")  # hydra/launcher=...: where jobs run


def is_reporting_key(key: str) -> bool:
    """Whether an override's key is one of :data:`REPORTING_KEYS` (``logger``, ``logger.wandb.project``,
    ``hydra/launcher``, ...)."""
    return any(key == k or key.startswith(k if k.endswith((".", "/")) else k + ".") for k in REPORTING_KEYS)


def group_jobs(jobs: Sequence[JobResult]) -> tuple[list[ConfigRow], list[str]]:
    """Group jobs that differ only in ``seed`` (and in :data:`REPORTING_KEYS`: the logger, the loader workers);
    returns (rows in sweep order, the overrides common to all jobs).

    A row's label is the overrides that vary across the sweep (``seed`` and the reporting keys excluded), in the
    job's order.
    """

    def no_seed(j: JobResult) -> list[str]:
        return [o for o in j.overrides if (k := parse_override(o)[0]) != "seed" and not is_reporting_key(k)]

    all_ov = [no_seed(j) for j in jobs]
    common = [o for o in (all_ov[0] if all_ov else []) if all(o in other for other in all_ov)]
    groups: dict[tuple[str, ...], ConfigRow] = {}
    for job, ov in zip(jobs, all_ov, strict=True):
        key = tuple(sorted(ov))
        if key not in groups:
            varying = [o for o in ov if o not in common]
            groups[key] = ConfigRow(label=" ".join(varying) or "default", overrides=ov, jobs=[])
        groups[key].jobs.append(job)
    rows = list(groups.values())
    for row in rows:
        row.jobs = _one_per_seed(row)
        ok = row.ok
        keys = {k for j in ok for k in j.values}
        row.stats = {k: mean_std([j.values.get(k, math.nan) for j in ok]) for k in sorted(keys)}
        classes = {c for j in ok for c in j.per_class}
        row.class_stats = {c: mean_std([j.per_class.get(c, math.nan) for j in ok]) for c in sorted(classes)}
        paper = next((j.config.get("paper") for j in row.jobs if j.config.get("paper")), None)
        row.paper, row.paper_note = paper_value(paper, row.jobs[0])
    return rows, common


def _fmt(stat: tuple[float, float, int] | None, col: Column) -> str:
    if stat is None or stat[2] == 0:
        return ""
    mean, std, n = stat
    m = f"{mean * col.scale:.{col.decimals}f}"
    return m if n == 1 else f"{m} ± {std * col.scale:.{col.decimals}f}"


def _md_cell(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|")


def sweep_kind(rows: Sequence[ConfigRow]) -> str:
    """``classification`` when the jobs report classifier metrics (top-1) and no detection metric, else
    ``detection`` (also when no job finished)."""
    have = {k for r in rows for k in r.stats}
    return "classification" if "top1" in have and "map_50" not in have else "detection"


def _columns(rows: Sequence[ConfigRow]) -> list[Column]:
    kind = sweep_kind(rows)
    return [
        c
        for c in COLUMNS
        if (c.kind is None or c.kind == kind) and (not c.optional or any(c.key in r.stats for r in rows))
    ]


def format_markdown(
    rows: Sequence[ConfigRow],
    common: Sequence[str],
    *,
    title: str,
    sweep_dir: Path | Sequence[Path],
    paper: dict[str, Any] | None,
    plot_name: str | None,
    missing: Sequence[tuple[Path, int, int, list[str]]] = (),
) -> str:
    """The summary.md text; ``missing``: (sweep folder, planned jobs, job number, overrides) of each planned job
    that never started (:func:`not_started`)."""
    jobs = [j for r in rows for j in r.jobs]
    n_ok = sum(j.status == "ok" for j in jobs)
    n_failed = sum(j.status == "failed" for j in jobs)
    cols = _columns(rows)
    lines = [
        f"# Sweep summary: {title}",
        "",
        "- sweep: " + ", ".join(f"`{d}`" for d in ([sweep_dir] if isinstance(sweep_dir, Path) else sweep_dir)),
        f"- jobs: {len(jobs)} ({n_ok} ok, {n_failed} failed, {len(jobs) - n_ok - n_failed} without result), "
        f"configurations: {len(rows)}",
        f"- common overrides: {' '.join(f'`{o}`' for o in common) or '(none)'}",
        "- mean ± sample std (ddof 1) over the seeds that succeeded; test split; speeds on the machine of each job",
    ]
    for folder in dict.fromkeys(m[0] for m in missing):
        mine = [m for m in missing if m[0] == folder]
        shown = [f"{num} (`{' '.join(o for o in ov if o not in common)}`)" for _, _, num, ov in mine[:20]]
        lines.append(
            f"- **incomplete**: `{folder}` planned {mine[0][1]} jobs (multirun.yaml); {len(mine)} never started: job "
            + ", ".join(shown)
            + (f", ... {len(mine) - 20} more" if len(mine) > 20 else "")
            + " (re-run the sweep's command with `hydra.sweep.dir=<that folder>` to finish it)"
        )
    if paper:
        lines.append(f"- paper column: {paper.get('source', '')}; on other data compare the trend, not the value")
    several = not isinstance(sweep_dir, Path) and len(list(sweep_dir)) > 1  # --combine: numbers repeat per sweep
    untimed = [
        f"{j.path.parent.name}/{j.num}" if several else j.num
        for j in jobs
        if j.status == "ok" and "train_img_per_s" not in j.values
    ]
    if untimed and any(c.key == "train_img_per_s" for c in cols):
        lines.append(
            f"- train img/s: blank for job(s) {', '.join(map(str, untimed[:20]))}"
            + (f", ... {len(untimed) - 20} more" if len(untimed) > 20 else "")
            + ": no training speed in metrics.json (one batch per process: the first batch warms up, untimed)"
        )
    header = ["configuration", "seeds", *(c.title for c in cols), "paper", "status"]
    lines += ["", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        paper_cell = "" if r.paper is None else f"{r.paper:.1f}" + (f" ({r.paper_note})" if r.paper_note else "")
        cells = [
            f"`{r.label}`",
            ", ".join(str(s) for s in r.seeds),
            *(_fmt(r.stats.get(c.key), c) for c in cols),
            paper_cell,
            r.status,
        ]
        lines.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    if plot_name:
        shown = " and ".join(_PANELS[k][0] for k in plot_panels(rows, paper))
        lines += ["", f"![{shown} per configuration]({plot_name})"]
    prov = sorted({(j.provenance.get("commit", ""), j.provenance.get("machine", "")) for j in jobs if j.provenance})
    if prov:
        lines += ["", "Where the numbers come from (metrics.json `provenance` of each job):", ""]
        for commit, machine in prov:
            which = [
                j
                for j in jobs
                if (j.provenance.get("commit", ""), j.provenance.get("machine", "")) == (commit, machine)
            ]
            seeds = sorted({j.seed for j in which if j.seed is not None})
            lines.append(
                f"- commit `{commit}`, {machine}: {len(which)} job(s), seeds {', '.join(map(str, seeds)) or '-'}"
            )
        commands = sorted({j.provenance["command"] for j in jobs if j.provenance.get("command")})
        lines += [f"- command: `{c}`" for c in commands]
    return "\n".join(lines) + "\n"


def _csv_stat(stat: tuple[float, float, int] | None, scale: float) -> list[Any]:
    """[mean, std] scaled, blank where undefined (no value; std of a single seed)."""
    if stat is None or stat[2] == 0:
        return ["", ""]
    mean, std, _ = stat
    return [mean * scale, "" if math.isnan(std) else std * scale]


def write_csv(rows: Sequence[ConfigRow], path: Path, paper: dict[str, Any] | None) -> None:
    """summary.csv: the table's numbers at full precision in the same units (``_pct`` = percent)."""
    classes = sorted({c for r in rows for c in r.class_stats})
    head = ["configuration", "overrides", "seeds", "n_ok", "n_failed", "status"]
    for c in COLUMNS:
        head += [f"{c.csv_name}_mean", f"{c.csv_name}_std"]
    for name in classes:
        head += [f"ap50_{name}_pct_mean", f"ap50_{name}_pct_std"]
    head += ["paper_value", "paper_note", "paper_metric", "paper_source"]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(head)
        for r in rows:
            out: list[Any] = [
                r.label,
                " ".join(r.overrides),
                " ".join(str(s) for s in r.seeds),
                len(r.ok),
                sum(j.status == "failed" for j in r.jobs),
                r.status,
            ]
            for c in COLUMNS:
                out += _csv_stat(r.stats.get(c.key), c.scale)
            for name in classes:
                out += _csv_stat(r.class_stats.get(name), 100.0)
            out += [
                "" if r.paper is None else r.paper,
                r.paper_note,
                (paper or {}).get("metric", ""),
                (paper or {}).get("source", ""),
            ]
            w.writerow(out)


_PANELS = {  # metric -> (its name in summary.md's caption, the plot's axis title)
    "map_50": ("mAP@0.5", "mAP@0.5 (%, COCO-style 101-point)"),
    "voc07_map_50": ("VOC07 AP@0.5", "VOC07 AP@0.5 (%, 11-point)"),
    "map": ("mAP@[.5:.95]", "mAP@[.5:.95] (%)"),
    "anchors_avg_iou": ("prior IoU", "prior avg IoU (%)"),
    "top1": ("top-1", "top-1 accuracy (%)"),
}


def plot_panels(rows: Sequence[ConfigRow], paper: dict[str, Any] | None) -> list[str]:
    """The metrics summary.png shows, one panel each: the paper's detection metric when the jobs report it (else
    mAP@0.5), and the priors' average IoU when it varies or is the paper's metric (Table 1); a classifier
    sweep's top-1."""
    metric = (paper or {}).get("metric", "map_50")
    if sweep_kind(rows) == "classification":
        return ["top1"]
    ious = {round(r.stats["anchors_avg_iou"][0], 6) for r in rows if "anchors_avg_iou" in r.stats}
    first = metric if metric in ("map_50", "voc07_map_50", "map") and any(metric in r.stats for r in rows) else "map_50"
    return [first] + (["anchors_avg_iou"] if metric == "anchors_avg_iou" or len(ious) > 1 else [])


def plot_summary(rows: Sequence[ConfigRow], path: Path, paper: dict[str, Any] | None, title: str) -> None:
    """Horizontal bars of mAP@0.5 (%) per configuration with std error bars, the paper's values as markers
    (when the paper's metric is mAP@0.5); a second panel for the priors' average IoU when it varies or is the
    paper's metric (Table 1)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = (paper or {}).get("metric", "map_50")
    panels = plot_panels(rows, paper)
    n = len(rows)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels) + 2.5, 0.55 * n + 1.6), squeeze=False)
    y = np.arange(n)
    for ax, key in zip(axes[0], panels, strict=True):
        mean = np.array([r.stats.get(key, (math.nan, 0, 0))[0] for r in rows]) * 100.0
        std = np.array([r.stats.get(key, (0, math.nan, 0))[1] for r in rows]) * 100.0
        ax.barh(
            y,
            np.nan_to_num(mean),
            xerr=np.nan_to_num(std),
            color="tab:blue",
            alpha=0.8,
            capsize=4,
            label="this run (mean ± std over seeds)",
        )
        for i, r in enumerate(rows):
            if not r.ok:  # "failed" or "no result", as the table's status
                ax.text(0.5, i, r.status.split(":", 1)[0], va="center", color="tab:red")
        pv = np.array([math.nan if r.paper is None else r.paper for r in rows], dtype=float)
        if key == metric and np.isfinite(pv).any():
            source = (paper or {}).get("source", "")
            ax.plot(pv, y, "kD", label=textwrap.fill(f"paper ({source})", 48))  # the whole source, wrapped
        ax.set_yticks(y, [r.label for r in rows] if ax is axes[0][0] else [""] * n)
        ax.invert_yaxis()
        ax.set_xlabel(_PANELS[key][1])
        ax.grid(axis="x", alpha=0.3)
        ax.legend(loc="best", fontsize=7, framealpha=0.9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


ARCHIVED_FILES = ("metrics.json", "build.json", "per_class.md", "failed.json", "data_issues.txt")


def archive_jobs(sweep_dirs: Sequence[str | Path], out_dir: str | Path) -> list[Path]:
    """Copy each job's record (``.hydra/*.yaml`` and :data:`ARCHIVED_FILES`; no checkpoints, logs or pictures) to
    ``out_dir/jobs/<sweep folder name>/<job>/``: small enough to commit beside the combined summary, and enough to
    summarise again (``report.py <out_dir>/jobs/* --combine <out_dir>``). A folder already under ``out_dir/jobs``
    is kept as it is. Returns the archived sweep folders, in the order given.

    Raises FileNotFoundError for a folder without job folders; ValueError when two sweeps share a folder name.
    """
    root = Path(out_dir) / "jobs"
    out: list[Path] = []
    for d in (Path(x) for x in sweep_dirs):
        dest = root / d.name
        if d.resolve() == dest.resolve():
            out.append(dest)
            continue
        if dest in out:
            raise ValueError(f"two sweep folders named {d.name}: rename one before archiving")
        jobs = load_sweep(d)
        if not jobs:
            raise FileNotFoundError(f"{d}: no job folders (<job num>/.hydra/overrides.yaml)")
        for job in jobs:
            target = dest / job.path.name
            (target / ".hydra").mkdir(parents=True, exist_ok=True)
            for f in (job.path / ".hydra").glob("*.yaml"):
                shutil.copy2(f, target / ".hydra" / f.name)
            for name in ARCHIVED_FILES:
                if (job.path / name).is_file():
                    shutil.copy2(job.path / name, target / name)
        out.append(dest)
    return out


def _folder_hint(folder: Path) -> str:
    """Why a folder given as a sweep folder holds no job folders, when it is something else: a run folder, or a
    folder of sweep folders (``multirun_sweeps/<experiment>``)."""
    if (folder / ".hydra").is_dir():
        return f": it is a run folder; `report.py {folder.parent}` summarises the runs beside it"
    sweeps = sorted(p for p in folder.iterdir() if p.is_dir() and any(load_sweep(p))) if folder.is_dir() else []
    if sweeps:
        names = ", ".join(p.name for p in sweeps[:3]) + (", ..." if len(sweeps) > 3 else "")
        return f": it holds sweep folders ({names}): pass one, or several with --combine"
    return ""


def write_summary(
    sweep_dir: str | Path | Sequence[str | Path], plot: bool = True, out_dir: str | Path | None = None
) -> dict[str, Path]:
    """Summarise a sweep, or several sweeps together (e.g. one seed per sweep, run in different sessions): writes
    summary.md, summary.csv and summary.png into ``out_dir`` (default: the one sweep folder; required for
    several). Jobs of all folders that differ only in ``seed`` form one row.

    Returns the paths written. Raises FileNotFoundError when a folder holds no job folders, ValueError when several
    folders come without ``out_dir``.
    """
    dirs = [Path(sweep_dir)] if isinstance(sweep_dir, str | Path) else [Path(d) for d in sweep_dir]
    if out_dir is None and len(dirs) != 1:
        raise ValueError("several sweep folders need out_dir (where the combined summary goes)")
    out_path = Path(out_dir) if out_dir is not None else dirs[0]
    jobs: list[JobResult] = []
    missing: list[tuple[Path, int, int, list[str]]] = []
    for d in dirs:
        found = load_sweep(d)
        if not found:
            raise FileNotFoundError(f"{d}: no job folders (<job num>/.hydra/overrides.yaml){_folder_hint(d)}")
        jobs += found
        planned, absent = not_started(d, found)
        missing += [(d, planned, num, ov) for num, ov in absent]
    if len(dirs) > 1:  # combined: a job one sweep never started that another sweep finished is not missing
        done = [dict(parse_override(o) for o in j.overrides) for j in jobs if j.status == "ok"]
        missing = [m for m in missing if dict(parse_override(o) for o in m[3]) not in done]
    rows, common = group_jobs(jobs)
    experiments = sorted({str(j.config.get("experiment_name")) for j in jobs if j.config.get("experiment_name")})
    if len(experiments) > 1:
        log.warning(
            "the jobs come from %d experiments (%s): the paper column's source is the first's, each row's value "
            "its own experiment's",
            len(experiments),
            ", ".join(experiments),
        )
    paper = next((j.config.get("paper") for j in jobs if j.config.get("paper")), None)
    if len(dirs) > 1 and paper:  # sweeps run apart: rows in the paper's order (the others after, as found)
        n = len(paper.get("rows") or [])
        rows.sort(key=lambda r: min((i for j in r.jobs if (i := paper_row(paper, j)) is not None), default=n))
    title = str(
        next((j.config.get("experiment_name") for j in jobs if j.config.get("experiment_name")), "")
        or dirs[0].parent.name
    )
    out_path.mkdir(parents=True, exist_ok=True)
    out = {"md": out_path / "summary.md", "csv": out_path / "summary.csv"}
    if plot:
        out["png"] = out_path / "summary.png"
        names = sorted(d.name for d in dirs)
        which = ", ".join(names) if len(names) <= 2 else f"{len(names)} sweeps, {names[0]} .. {names[-1]}"
        plot_summary(rows, out["png"], paper, f"{title} ({which})")
    write_csv(rows, out["csv"], paper)
    out["md"].write_text(
        format_markdown(
            rows,
            common,
            title=title,
            sweep_dir=dirs[0] if len(dirs) == 1 else dirs,
            paper=paper,
            plot_name=out["png"].name if plot else None,
            missing=missing,
        )
    )
    counted = sum(len(r.jobs) for r in rows)  # a seed that ran twice counts once
    log.info("sweep summary (%d jobs, %d configurations): %s", counted, len(rows), out["md"])
    return out
