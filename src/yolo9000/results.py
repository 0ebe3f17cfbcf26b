"""What a run leaves behind: ``metrics.json`` (scalars, per-class AP), ``per_class.md``, ``pr_curves.png``, and the
model's size and cost."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from yolo9000.text_io import write_text

__all__ = ["evaluated_on", "format_metric_table", "group_means", "model_stats", "plain", "write_metrics"]


def plain(v: Any) -> Any:
    """Tensors / arrays / nested containers -> JSON-friendly Python values."""
    if isinstance(v, torch.Tensor):
        v = v.detach().cpu().numpy()
    if isinstance(v, np.ndarray | np.generic):
        return v.item() if v.size == 1 else v.tolist()
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [plain(x) for x in v]
    return v


def model_stats(net: torch.nn.Module, size: int | Sequence[int]) -> dict[str, Any]:
    """Learnable parameters and forward GFLOPs (2 x multiply-adds of convs / linears, darknet's convention) for
    one (1, 3, size, size) image (``size`` a side, or (height, width): ``gflops_input_size`` is then
    ``[height, width]``)."""
    h, w = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
    from torch.utils.flop_counter import FlopCounterMode

    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        net(torch.zeros(1, 3, h, w, device=device))
    net.train(was_training)
    params = sum(p.numel() for p in net.parameters() if p.requires_grad)
    shown = h if h == w else [h, w]
    return {"params": params, "gflops": counter.get_total_flops() / 1e9, "gflops_input_size": shown}


def _finite_or_null(v: Any) -> Any:
    """``v`` with every nan / inf float as None: metrics.json is strict JSON (a class without ground truth has no
    AP; a bare NaN is rejected by jq, JavaScript and other strict parsers)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: _finite_or_null(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_finite_or_null(x) for x in v]
    return v


def evaluated_on(datamodule: Any, precision: Any = None) -> dict[str, Any]:
    """What metrics.json records about the images a test evaluated, for train.py's test as for eval.py's: ``split``,
    the data split ``trainer.test`` read (the datamodule's ``test_split``: ``test``, or ``val`` for eval.py
    split=val), ``img_size``, the evaluation input size (a side, or [height, width]; the training's multi-scale
    sizes are not it), and ``precision``, the trainer's (``32-true``, ``bf16-mixed``: a bf16 test's mAPs are its own, a
    few thousandths from float32's) when given. :func:`pr_title` names them in pr_curves.png's title."""
    size = plain(getattr(datamodule, "img_size", None))
    out: dict[str, Any] = {"split": str(getattr(datamodule, "test_split", "test"))}
    if size is not None:
        out["img_size"] = size
    if precision is not None:
        out["precision"] = str(precision)
    return out


def pr_title(metrics: dict[str, Any]) -> str:
    """What ``pr_curves.png`` shows, as its title: the split, the input size, the IoU threshold of the curves and
    their mAP, and the checkpoint (its run folder and file), from what metrics.json holds."""
    size = metrics.get("img_size", metrics.get("gflops_input_size"))
    if isinstance(size, list | tuple):
        size = "x".join(str(s) for s in size)
    parts = [f"{metrics.get('split', 'test')} split"]
    if size is not None:
        parts.append(f"{size} px input")
    if str(metrics.get("precision", "32-true")) not in ("32-true", "32"):  # float32 goes without saying
        parts.append(str(metrics["precision"]))
    head = ", ".join(parts) + ": precision-recall at IoU 0.5"
    if isinstance(metrics.get("map_50"), float | int):
        head += f", mAP@0.5 {float(metrics['map_50']):.3f}"
    if metrics.get("checkpoint"):
        head += "\n" + checkpoint_label(metrics["checkpoint"])
    return head


def checkpoint_label(ckpt: str | Path) -> str:
    """A checkpoint as a picture's title names it: its run folder and file (``<run>/last.ckpt`` for
    ``<run>/checkpoints/last.ckpt``), the file alone when it has no folder."""
    path = Path(str(ckpt))
    run = path.parent.parent.name if path.parent.name == "checkpoints" else path.parent.name
    return f"{run}/{path.name}" if run else path.name


def write_metrics(
    out_dir: Path, results: dict[str, Any], class_names: list[str], extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``per_class.md`` (a table), ``pr_curves.png`` and, last, ``metrics.json`` (scalars + per-class AP):
    its presence marks a finished run (a resume runs it no more), so a kill before it leaves none of them missing
    for good.

    Returns what metrics.json holds.
    """
    from yolo9000.metrics import format_ap_table
    from yolo9000.viz import plot_pr_curves

    out_dir.mkdir(parents=True, exist_ok=True)
    out = {k: plain(v) for k, v in results.items() if k != "pr"}
    out.update(extra or {})
    if "per_class" in results:
        rows = results["per_class"]
        if "accuracy" in next(iter(rows.values()), {}):  # classification (ClassifierModule.test_results)
            from yolo9000.modules.classifier import format_accuracy_table

            table = format_accuracy_table(rows, class_names)
        else:
            table = format_ap_table(rows, class_names)
        write_text(out_dir / "per_class.md", table + "\n")
    if results.get("pr"):
        ap = {c: v.get("ap50", float("nan")) for c, v in results.get("per_class", {}).items()}
        plot_pr_curves(results["pr"], out_dir / "pr_curves.png", ap=ap, title=pr_title(out))
    tmp = out_dir / "metrics.json.tmp"  # written beside and renamed: a kill mid-write leaves no half a result
    tmp.write_text(json.dumps(_finite_or_null(out), indent=2, allow_nan=False))
    tmp.replace(out_dir / "metrics.json")
    return out


def format_metric_table(results: Sequence[Mapping[str, float]], title: str = "Test metric") -> str:
    """Lightning's end-of-test table (``trainer.test``'s return: per dataloader {name: value}) as markdown, for the
    job's log file (Lightning prints it with Rich, to the console only)."""
    names = sorted({k for r in results for k in r})
    head = f"| {title} | " + " | ".join(f"DataLoader {i}" for i in range(len(results))) + " |"
    rule = "|---|" + "---:|" * len(results)
    rows = [f"| {k} | " + " | ".join(f"{float(r[k]):.6g}" if k in r else "" for r in results) + " |" for k in names]
    return "\n".join([head, rule, *rows])


def table_for_log(path: Path, max_rows: int = 40) -> str:
    """A markdown table file for the log: as it is, or (more than ``max_rows`` rows: a WordTree head's 9418
    classes) ``max_rows`` rows, those with a value before those without (a class with no ground truth), in the
    table's order, its last (the mean) and where the whole table is."""
    lines = path.read_text().rstrip("\n").splitlines()
    if len(lines) <= max_rows + 3:
        return "\n".join(lines)
    rows = lines[2:-1]
    # rows with a value first (a class without ground truth: "| name | – | – | 0 |"): a dataset yaml naming 150
    # classes of which a few are labelled shows those, not the first 40 empty ones; the table's order is kept
    empty = [all(c.strip() in ("–", "0", "") for c in r.strip().strip("|").split("|")[1:]) for r in rows]
    chosen = sorted(sorted(range(len(rows)), key=lambda i: empty[i])[:max_rows])
    note = " (rows without a value left out first)" if chosen[-1] >= max_rows else ""
    shown = [rows[i] for i in chosen]
    return "\n".join([*lines[:2], *shown, f"| ... {len(rows) - max_rows} more rows: {path}{note} |", lines[-1]])


def check_metric_groups(groups: dict[str, list[Any]] | None, class_names: list[str]) -> dict[str, list[str]]:
    """``metric_groups`` as {group: [class name, ...]} (numbers given on the command line, ``[5,6]``, read as the
    names "5", "6"); raises ValueError naming every entry that is no class of the run, before training starts."""
    out = {str(name): [str(c) for c in classes] for name, classes in (groups or {}).items()}
    known = set(class_names)
    for name, classes in out.items():
        unknown = [c for c in classes if c not in known]
        if unknown or not classes:
            raise ValueError(
                f"metric_groups.{name}: {unknown or 'an empty list'} {'is no class' if unknown else 'is no group'} of "
                f"this run (its classes: {class_names[:20]}{' ...' if len(class_names) > 20 else ''})"
            )
    return out


def group_means(
    per_class: dict[str, dict[str, float]], groups: dict[str, list[Any]] | None, key: str = "ap50"
) -> dict[str, float]:
    """``<key>_<group>``: the mean of ``per_class[c][key]`` over each group's classes (e.g. YOLO9000's digits that
    had boxes vs those seen only in classification), as the per-class table's mean: a class without test boxes (no
    finite value) is left out; nan when no class of the group has one. Raises ValueError naming a group entry
    that is no class of the run (:func:`check_metric_groups`)."""
    out: dict[str, float] = {}
    for name, classes in check_metric_groups(groups, list(per_class)).items():
        vals = [float(per_class[c].get(key, float("nan"))) for c in classes]
        vals = [v for v in vals if np.isfinite(v) and v >= 0]
        out[f"{key}_{name}"] = float(np.mean(vals)) if vals else float("nan")
    return out


def format_group_table(per_class: dict[str, dict[str, float]], groups: dict[str, list[str]], key: str = "ap50") -> str:
    """Markdown table of :func:`group_means`: one row per group with its mean and each class's value (e.g. the
    YOLO9000 digits' ``seen`` / ``unseen`` table)."""
    groups = check_metric_groups(groups, list(per_class))
    means = group_means(per_class, groups, key)

    def num(v: float, digits: int) -> str:  # undefined (a class without truths): "–", as per_class.md
        return f"{v:.{digits}f}" if math.isfinite(v) else "–"

    lines = [f"| group | mean {key} | per class |", "|---|---:|---|"]
    for name, classes in groups.items():
        vals = ", ".join(f"{c}: {num(float(per_class[c].get(key, float('nan'))), 3)}" for c in classes)
        lines.append(f"| {name} | {num(float(means[f'{key}_{name}']), 4)} | {vals} |")
    return "\n".join(lines)
