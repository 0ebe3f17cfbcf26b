"""The speed / accuracy trade-off (paper Table 3 / Figure 4): ``eval.py sizes=[...]`` on a random-weight BCCD
checkpoint, its accuracy against a plain eval at the same size, a converted darknet network through the sweep, and
the VOC detection / paper points of the plot. Times are checked for being positive numbers, never for values."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pytorch_lightning.loggers import WandbLogger

from conftest import data_config, run_script
from test_cli_bench_detect_eval import make_checkpoint
from yolo9000.tradeoff import (
    PAPER_LABEL,
    PAPER_TABLE3,
    VOC_CLASSES,
    SweepSettings,
    columns,
    format_markdown,
    is_voc,
    log_sweep,
    plot_series,
    plot_tradeoff,
    run_sweep,
)

SMALL = ["data.max_images=4", "data.num_workers=0", "data.eval_batch_size=4"]
SPEED = ["speed_warmup=1", "speed_iters=2", "speed_seconds=null"]


@pytest.fixture(scope="module")
def bccd_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "bccd.ckpt")


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def small_bccd_sweep(shapes: list[Any] | None = None) -> tuple[Callable[[Any], Any], Callable[[list[Any]], Any]]:
    """``run_sweep``'s make_datamodule and make_trainer: BCCD's first 2 images, evaluated 2 at a time in this process
    on the CPU; each data module's size is appended to ``shapes`` when given."""
    import hydra
    import pytorch_lightning as pl

    data = data_config("bccd")
    data.data.update(max_images=2, num_workers=0, eval_batch_size=2)

    def make_datamodule(size: Any) -> Any:
        data.data.img_size = size if isinstance(size, int) else list(size)
        dm = hydra.utils.instantiate(data.data)
        if shapes is not None:
            shapes.append(dm.img_size)
        return dm

    def make_trainer(callbacks: list[Any]) -> pl.Trainer:
        return pl.Trainer(
            accelerator="cpu", logger=False, callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False
        )

    return make_datamodule, make_trainer


def test_eval_sizes_writes_the_table_and_applies_each_size(bccd_ckpt: Path, tmp_path: Path) -> None:
    """Two sizes: tradeoff.csv / .md / .png and size_<S>/ per size; the accuracy at a size is what a plain eval
    with data.img_size=<size> reports (the size is applied), and differs between the sizes."""
    sweep = tmp_path / "sweep"
    run_script("eval.py", sweep, f"ckpt_path={bccd_ckpt}", "sizes=[96,64]", "draw=1", *SMALL, *SPEED)
    rows = read_csv(sweep / "tradeoff.csv")
    assert list(rows[0]) == columns([1, 32])
    assert [int(r["size"]) for r in rows] == [64, 96]  # evaluated in increasing order
    for r in rows:
        nums = {k: float(v) for k, v in r.items() if k not in ("device", "dtype")}
        assert r["dtype"] == "float32"  # the trainer's 32-true: timed in float32
        assert all(math.isfinite(v) for v in nums.values()), r
        assert nums["img_per_s_bs1"] > 0 and nums["img_per_s_bs32"] > 0 and nums["ms_per_img_bs32"] > 0
        assert nums["img_per_s_bs1"] == pytest.approx(1000 / nums["ms_per_img_bs1"])
        assert r["device"].startswith("cpu") and int(r["threads"]) >= 1
    assert float(rows[1]["gflops"]) > float(rows[0]["gflops"])
    assert (sweep / "tradeoff.png").stat().st_size > 0
    md = (sweep / "tradeoff.md").read_text()
    assert "img/s (batch 32)" in md and "forward pass, decode" in md and "Titan X" not in md  # BCCD: no paper
    assert "; float32; torch threads" in md
    assert (sweep / "size_64" / "predictions").is_dir() and (sweep / "size_96" / "per_class.md").is_file()
    logged = read_csv(sweep / "csv" / "metrics.csv")
    assert [int(r["step"]) for r in logged] == [64, 96]
    summary = json.loads((sweep / "metrics.json").read_text())
    assert summary["sizes"] == [64, 96] and summary["images"] == 4 and len(summary["tradeoff"]) == 2

    plain = tmp_path / "plain"
    run_script("eval.py", plain, f"ckpt_path={bccd_ckpt}", "data.img_size=96", "voc07=true", "draw=0", *SMALL)
    want = json.loads((plain / "metrics.json").read_text())
    got = json.loads((sweep / "size_96" / "metrics.json").read_text())
    for key in ("map_50", "voc07_map_50", "map"):
        assert float(rows[1][key]) == pytest.approx(want[key], abs=1e-12)
        assert got[key] == pytest.approx(want[key], abs=1e-12)
    assert got["per_class"] == want["per_class"]
    assert (rows[0]["map_50"], rows[0]["map"]) != (rows[1]["map_50"], rows[1]["map"])  # another size, other boxes


@pytest.mark.slow  # ~7 s, an eval.py launch for a refusal
def test_eval_sizes_refuses_several_processes(bccd_ckpt: Path, tmp_path: Path) -> None:
    """The timings are one process's: a DDP trainer is refused before any rank starts (nothing evaluated)."""
    res = run_script(
        "eval.py", tmp_path, f"ckpt_path={bccd_ckpt}", "sizes=[64]", "trainer=ddp_sim", *SMALL, *SPEED, check=False
    )
    assert res.returncode != 0 and "trainer runs 2 (trainer.devices / num_nodes)" in res.stderr + res.stdout
    assert not (tmp_path / "tradeoff.csv").exists() and not (tmp_path / "size_64" / "metrics.json").exists()


def test_eval_tradeoff_preset_holds_the_paper_sizes(compose: Any) -> None:
    cfg = compose("eval_tradeoff", "ckpt_path=x.ckpt")
    assert list(cfg.sizes) == [s for s, _, _ in PAPER_TABLE3] and list(cfg.speed_batches) == [1, 32]
    assert compose("eval").sizes is None  # plain eval.py: one size, as before


class RecordingWandb(WandbLogger):
    """A W&B logger that records what it is given instead of starting a run."""

    def __init__(self) -> None:
        super().__init__(offline=True)
        self.calls: list[tuple[str, Any]] = []

    def log_metrics(self, metrics: dict[str, Any], step: int | None = None) -> None:
        self.calls.append(("metrics", (dict(metrics), step)))

    def log_table(self, key: str, columns: Any = None, data: Any = None, **kw: Any) -> None:
        self.calls.append(("table", (key, columns, data)))

    def log_image(self, key: str, images: list[Any], **kw: Any) -> None:
        self.calls.append(("image", (key, images)))

    def save(self) -> None:
        pass

    def finalize(self, status: str) -> None:
        self.calls.append(("finalize", status))


def test_converted_darknet_network_through_the_sweep(tmp_path: Path) -> None:
    """A network converted from darknet cfg + .weights (the generic DarknetNet: yolov2-tiny-voc's layers) is
    evaluated and timed at two sizes; W&B gets the per-size numbers, the table and the plot."""
    import torch

    from test_darknet import randomize, scaled_cfg
    from yolo9000.checkpoints import darknet_to_checkpoint, load_module
    from yolo9000.darknet import build_darknet, save_weights

    cfg = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3)
    weights = tmp_path / "tiny.weights"
    save_weights(randomize(build_darknet(cfg), seed=3), weights, seen=5)
    names = tmp_path / "bccd.names"
    names.write_text("RBC\nWBC\nPlatelets\n")
    ckpt = tmp_path / "tiny.ckpt"
    torch.save(darknet_to_checkpoint(cfg, weights, names), ckpt)
    module = load_module(ckpt, voc07=True)

    make_datamodule, make_trainer = small_bccd_sweep()
    wandb = RecordingWandb()
    settings = SweepSettings(sizes=[64, 96], speed_batches=[1, 3], speed_warmup=0, speed_iters=1, speed_seconds=None)
    rows = run_sweep(module, make_datamodule, make_trainer, settings, tmp_path / "out", loggers=[wandb])
    assert [r["size"] for r in rows] == [64, 96]
    assert all(r["img_per_s_bs3"] > 0 and math.isfinite(r["voc07_map_50"]) for r in rows)
    kinds = [c[0] for c in wandb.calls]
    assert kinds == ["metrics", "metrics", "table", "image", "finalize"]
    assert [c[1][1] for c in wandb.calls[:2]] == [64, 96]  # step = size
    key, cols, table = wandb.calls[2][1]
    assert key == "tradeoff/table" and cols == columns([1, 3]) and [r[0] for r in table] == [64, 96]
    assert wandb.calls[3][1] == ("tradeoff/plot", [str(tmp_path / "out" / "tradeoff.png")])


def test_voc_detection_and_the_paper_points(tmp_path: Path) -> None:
    assert (
        is_voc(VOC_CLASSES) and is_voc(sorted(VOC_CLASSES, reverse=True)) and is_voc([c.upper() for c in VOC_CLASSES])
    )
    assert not is_voc(VOC_CLASSES[:-1]) and not is_voc(["RBC", "WBC", "Platelets"])
    assert not is_voc([*VOC_CLASSES[:-1], "monitor"])
    assert is_voc(data_config("voc").data.class_names)  # conf/data/voc.yaml's list

    rows = [
        {"size": s, "map_50": 0.5 + i / 10, "voc07_map_50": 0.4 + i / 10, "map": 0.2, "img_per_s_bs1": 10.0 / (i + 1),
         "ms_per_img_bs1": 100.0 * (i + 1), "gflops": 1.0, "device": "cpu", "threads": 2}
        for i, s in enumerate([96, 128])
    ]  # fmt: skip
    voc = plot_series(rows, [1], voc=True)
    assert voc[PAPER_LABEL] == [(91.0, 69.0, 288), (81.0, 73.7, 352), (67.0, 76.8, 416), (59.0, 77.8, 480),
                                (40.0, 78.6, 544)]  # fmt: skip
    assert voc["ours, batch 1"] == [(10.0, pytest.approx(40.0), 96), (5.0, pytest.approx(50.0), 128)]  # VOC07, %
    other = plot_series(rows, [1], voc=False)
    assert PAPER_LABEL not in other and other["ours, batch 1"][0][1] == pytest.approx(50.0)  # mAP@0.5
    assert plot_tradeoff(voc, tmp_path / "t.png").stat().st_size > 0
    assert "| 544 | 78.6 | 40 |" in format_markdown(rows, [1], {}, voc=True)
    assert "Titan X" not in format_markdown(rows, [1], {}, voc=False)
    # the load average of each size's timing, a warning where it exceeded the CPUs (other work shared them)
    cpus = os.cpu_count() or 1
    quiet = [{**r, "load_avg_1min": 0.5} for r in rows]
    busy = [{**r, "load_avg_1min": 0.5 if r["size"] == 96 else cpus + 1.0} for r in rows]
    assert f"on {cpus} CPUs: 0.50, 0.50\n" in format_markdown(
        quiet, [1], {}
    ) and "time it again" not in format_markdown(quiet, [1], {})
    assert f"{cpus + 1.0:.2f}. **Above the CPU count at size 128: other work shared" in format_markdown(busy, [1], {})
    with pytest.raises(ValueError, match="multiples of 32"):
        SweepSettings(sizes=[100])


def test_a_rectangle_among_the_sizes(tmp_path: Path) -> None:
    """``sizes=[96, [64, 128], 64]``: evaluated in order of area (64, 64x128, 96), the rectangle at 64 x 128 (its
    test batches that shape, its folder size_64x128, its row "64x128", twice the square 64's GFLOPs) and logged at
    the side of a square of its area (91); a side off the stride is refused naming the list."""

    from conftest import compose_config
    from yolo9000.build import build

    module = build(compose_config("train", "data.max_images=2", "model.net.backbone.width=0.125")).module
    shapes: list[Any] = []
    make_datamodule, make_trainer = small_bccd_sweep(shapes)
    wandb = RecordingWandb()
    settings = SweepSettings(
        sizes=[96, [64, 128], 64], speed_batches=[1], speed_warmup=0, speed_iters=1, speed_seconds=None
    )
    rows = run_sweep(module, make_datamodule, make_trainer, settings, tmp_path / "out", loggers=[wandb])
    assert shapes == [64, (64, 128), 96] and [r["size"] for r in rows] == [64, "64x128", 96]
    assert (tmp_path / "out" / "size_64x128" / "metrics.json").is_file()
    assert rows[1]["gflops"] == pytest.approx(2 * rows[0]["gflops"], rel=1e-9)
    assert [c[1][1] for c in wandb.calls[:3]] == [64, 91, 96]  # steps: 91 = round(sqrt(64 * 128))
    assert "| 64x128 |" in (tmp_path / "out" / "tradeoff.md").read_text()
    with pytest.raises(ValueError, match=r"sizes must be positive multiples of 32 \(or \[height, width\] of them\)"):
        SweepSettings(sizes=[64, [64, 100]])


def test_wandb_table_of_a_rectangle_beside_squares(tmp_path: Path) -> None:
    """``sizes=[224,[256,320]]`` with logger=wandb: the table W&B builds takes one type a column, so the sizes are
    all text when a rectangle's "HxW" is among them (an int beside a str raised TypeError after the whole sweep)."""
    import wandb

    class TableWandb(RecordingWandb):
        def log_table(self, key: str, columns: Any = None, data: Any = None, **kw: Any) -> None:
            wandb.Table(columns=columns, data=data)  # W&B's own check of the column types
            super().log_table(key, columns, data)

    cols = columns([1])
    row = {"map_50": 0.5, "voc07_map_50": 0.5, "map": 0.2, "img_per_s_bs1": 10.0, "ms_per_img_bs1": 100.0}
    row |= {"gflops": 1.0, "device": "cpu", "dtype": "float32", "threads": 2, "load_avg_1min": 0.5}
    png = plot_tradeoff({}, tmp_path / "t.png")
    lg = TableWandb()
    log_sweep([lg], [{**row, "size": 224}, {**row, "size": "256x320"}], cols, png)
    table = next(c[1][2] for c in lg.calls if c[0] == "table")
    assert [r[0] for r in table] == ["224", "256x320"]
    lg = TableWandb()
    log_sweep([lg], [{**row, "size": 224}, {**row, "size": 256}], cols, png)
    assert [r[0] for r in next(c[1][2] for c in lg.calls if c[0] == "table")] == [224, 256]  # squares: numbers


def test_split_val_sweep_logs_val_names(tmp_path: Path) -> None:
    """``sizes=[...] split=val``: the per-size test's metrics are named val/..., as a plain ``eval.py split=val``
    names them (they were test/... while the val images were evaluated)."""
    from conftest import compose_config
    from yolo9000.build import build

    module = build(compose_config("train", "data.max_images=2", "model.net.backbone.width=0.125")).module
    make_datamodule, make_plain_trainer = small_bccd_sweep()
    trainers: list[Any] = []

    def make_trainer(callbacks: list[Any]) -> Any:
        trainers.append(make_plain_trainer(callbacks))
        return trainers[-1]

    settings = SweepSettings(sizes=[64], speed_batches=[1], speed_warmup=0, speed_iters=1, split="val")
    run_sweep(module, make_datamodule, make_trainer, settings, tmp_path / "out")
    names = set(trainers[0].callback_metrics)
    assert "val/map_50" in names and not any(n.startswith("test/") for n in names)


def test_eval_sizes_not_a_list_is_named(tmp_path: Path) -> None:
    """``sizes=abc`` (a scalar that is no size) is refused by the sizes' own message, not OmegaConf's "Input cfg is
    not an OmegaConf config object"; ``sizes=416`` is one size."""
    from omegaconf import OmegaConf

    from conftest import load_script

    tradeoff = load_script("eval").tradeoff
    keys = {"sizes": "abc", "speed_batches": [1], "speed_warmup": 0, "speed_iters": 1, "speed_seconds": None}
    cfg = OmegaConf.create(keys | {"speed_compile": False, "draw": 0, "score_thresh": 0.3, "split": "test"})
    with pytest.raises(ValueError, match=r"sizes must be positive multiples of 32 .*got \['abc'\]"):
        tradeoff(cfg, OmegaConf.create({}), None, tmp_path)


def test_speed_batches_one_number_or_refused_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``speed_batches=32`` is one batch size (it raised "TypeError: 'int' object is not iterable"); a batch size that
    is no whole number is refused naming speed_batches (``int('abc')``'s message before)."""
    from omegaconf import OmegaConf

    import yolo9000.tradeoff
    from conftest import load_script

    got: list[SweepSettings] = []
    monkeypatch.setattr(yolo9000.tradeoff, "run_sweep", lambda m, d, t, settings, *a, **k: got.append(settings) or [{}])
    tradeoff = load_script("eval").tradeoff
    keys = {"sizes": [64], "speed_batches": 4, "speed_warmup": 0, "speed_iters": 1, "speed_seconds": None}
    keys |= {"speed_compile": False, "draw": 0, "score_thresh": 0.3, "split": "test", "ckpt_path": "x.ckpt"}
    with pytest.raises(KeyError):  # the stand-in's row has no map_50: the settings were made
        tradeoff(OmegaConf.create(keys | {"logger": None}), OmegaConf.create({}), None, tmp_path)
    assert got[0].speed_batches == [4]
    for bad in (["abc"], [2.5], [True], 4):
        with pytest.raises(ValueError, match="speed_batches must be batch sizes >= 1, got"):
            SweepSettings(sizes=[64], speed_batches=bad)  # type: ignore[arg-type]
    assert SweepSettings(sizes=[64], speed_batches=[4, 1, 4]).speed_batches == [4, 1]


def test_plot_points_are_labelled_with_their_size_in_pixels(tmp_path: Path, made_figures: list[Any]) -> None:
    """tradeoff.png's points were labelled with bare numbers ("96"): "96 px", and a rectangle "64x128 px"."""
    plot_tradeoff({"ours, batch 1": [(9.0, 40.0, 96), (3.0, 50.0, "64x128")]}, tmp_path / "t.png")
    (ax,) = made_figures[0].axes
    labels = {t.get_text(): t.xy for t in ax.texts}
    assert labels == {"96 px": (9.0, 40.0), "64x128 px": (3.0, 50.0)}
