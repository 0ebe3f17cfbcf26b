"""Rules of src/bench.py's helpers and row assembly, and of the trade-off's size handling and plot data, that a
mutation audit found untested: every expected value here is worked out by hand (no timing runs)."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from conftest import load_script
from yolo9000 import tradeoff


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    return load_script("bench")


def settings(**over: Any) -> Any:
    base = {
        "size": 64,
        "batch_size": 2,
        "steps": 1,
        "infer_batches": [1],
        "infer_ckpt": None,
        "infer_images": None,
        "device": "cpu",
    }
    return OmegaConf.create({**base, **over})


# ---------------------------------------------------------------------------------------------- bench.py setup
def test_bench_config_fixes_the_shape_and_repeats_the_parsers(bench: ModuleType) -> None:
    """Every number is taken at bench.batch_size x bench.size: the data's batch, no partial batch, multi-scale off
    at the fixed size; train_repeat=3 lists the training parser 3 times with its interpolations resolved; the
    caller's config is left as it was."""
    cfg = OmegaConf.create(
        {
            "bench": {"batch_size": 4, "size": 96, "train_repeat": 3},
            "data": {
                "root": "r",
                "batch_size": 16,
                "drop_last": False,
                "multiscale": {"enabled": True, "fixed_size": None},
                "train": {"path": "${..root}/x"},
            },
        }
    )
    out = bench.bench_config(cfg)
    assert out.data.batch_size == 4 and out.data.drop_last is True
    assert out.data.multiscale.enabled is False and out.data.multiscale.fixed_size == 96
    assert OmegaConf.to_container(out.data.train) == [{"path": "r/x"}] * 3
    assert cfg.data.batch_size == 16 and cfg.data.drop_last is False and cfg.data.multiscale.enabled is True
    cfg.bench.train_repeat = 2
    assert OmegaConf.to_container(bench.bench_config(cfg).data.train) == [{"path": "r/x"}] * 2
    cfg.bench.train_repeat = 1
    assert OmegaConf.to_container(bench.bench_config(cfg).data.train) == {"path": "${..root}/x"}  # untouched


def test_split_variant_pops_the_precision(bench: ModuleType) -> None:
    """A variant's precision is taken out of its fast-path settings (returned as a string; None: the trainer's),
    a precision outside 32-true / 32 / bf16-mixed / 16-mixed and an unknown model.fast key are refused."""
    conf = OmegaConf.create({"precision": "bf16-mixed", "channels_last": True})
    assert bench.split_variant(conf) == ("bf16-mixed", {"channels_last": True})
    assert bench.split_variant({"precision": 32}) == ("32", {})
    assert bench.split_variant(None) == (None, {})
    with pytest.raises(ValueError, match="precision must be one of"):
        bench.split_variant({"precision": "64-true"})
    with pytest.raises(ValueError, match="unknown keys"):
        bench.split_variant({"channels_lst": True})


def test_check_settings_names_every_bad_key(bench: ModuleType, tmp_path: Path) -> None:
    """bench.steps is checked as size and batch_size are (0 is refused); a boolean is not an integer (True would
    pass as 1); a directory is no checkpoint file."""
    bench.check_settings(settings())
    bad_values = (("steps", 0), ("batch_size", 0), ("batch_size", True), ("size", True), ("size", 0), ("steps", 1.0))
    for key, bad in bad_values:
        with pytest.raises(ValueError, match=f"bench.{key} must be"):
            bench.check_settings(settings(**{key: bad}))
    with pytest.raises(ValueError, match="infer_batches must be positive"):
        bench.check_settings(settings(infer_batches=[True]))
    with pytest.raises(ValueError, match="infer_batches must be positive"):
        bench.check_settings(settings(infer_batches=[2, 0]))
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        bench.check_settings(settings(infer_ckpt=str(tmp_path)))


def test_inference_images_cycle_the_sorted_files(bench: ModuleType, tmp_path: Path) -> None:
    """As many images as the largest inference batch: the glob's files in sorted order, cycled; without files
    random uint8 pixels of infer_image_hw (h, w), every value 0-255 possible."""
    import cv2

    for name, value in (("b.png", 200), ("a.png", 100)):
        cv2.imwrite(str(tmp_path / name), np.full((4, 6, 3), value, np.uint8))
    b = OmegaConf.create({"infer_batches": [2, 5], "infer_images": str(tmp_path / "*.png"), "infer_image_hw": [1, 1]})
    images = bench.inference_images(b)
    assert [int(im[0, 0, 0]) for im in images] == [100, 200, 100, 200, 100]
    assert images[0].shape == (4, 6, 3)
    b = OmegaConf.create({"infer_batches": [3, 1], "infer_images": None, "infer_image_hw": [64, 48]})
    images = bench.inference_images(b)
    assert len(images) == 3 and all(im.shape == (64, 48, 3) and im.dtype == np.uint8 for im in images)
    assert images[0].min() == 0 and images[0].max() == 255  # 9216 draws: missing one of 256 values has p ~ e^-36


def test_synthetic_batch_holds_valid_truths(bench: ModuleType) -> None:
    """bench.batch_size images of bench.size, bench.num_boxes truths each as (x, y, w, h, class): centres in
    [0.1, 0.9], sides in [0.05, 0.25], classes in [0, num_classes); the host copies are the same truths."""
    b = OmegaConf.create({"batch_size": 3, "size": 32, "num_boxes": 50})
    batch = bench.synthetic_batch(b, 1, torch.device("cpu"), channels_last=True)
    t = batch["targets"]
    assert batch["images"].shape == (3, 3, 32, 32)
    assert batch["images"].is_contiguous(memory_format=torch.channels_last)
    assert t.shape == (3, 50, 5) and batch["mask"].dtype == torch.bool and bool(batch["mask"].all())
    assert float(t[..., :2].min()) >= 0.1 and float(t[..., :2].max()) <= 0.9
    assert float(t[..., 2:4].min()) >= 0.05 and float(t[..., 2:4].max()) <= 0.25
    assert bool((t[..., 4] == 0).all())  # one class: class 0
    assert torch.equal(batch["targets_host"], t) and torch.equal(batch["mask_host"], batch["mask"])
    many = bench.synthetic_batch(b, 3, torch.device("cpu"), channels_last=False)["targets"][..., 4]
    assert set(many.unique().tolist()) == {0.0, 1.0, 2.0}


def test_host_assignment_hands_the_host_truths_to_the_module_hook(bench: ModuleType) -> None:
    """The module's own on_before_batch_transfer gets the host copies (targets_host as targets, mask_host as
    target_mask) at dataloader index 0; its assignment is returned, None when it makes none."""
    seen = []

    class Module:
        def __init__(self, assignment: Any) -> None:
            self.assignment = assignment

        def on_before_batch_transfer(self, batch: dict[str, Any], idx: int) -> dict[str, Any]:
            seen.append((batch, idx))
            return {**batch, "assignment": self.assignment} if self.assignment else batch

    batch = {"images": "img", "targets": "dev_t", "mask": "dev_m", "targets_host": "host_t", "mask_host": "host_m"}
    assert bench.host_assignment(Module("A"), batch) == "A"
    assert seen[0] == ({"images": "img", "targets": "host_t", "target_mask": "host_m"}, 0)
    assert bench.host_assignment(Module(None), batch) is None


def test_loader_rate_skips_the_first_batch_and_restarts_epochs(bench: ModuleType, monkeypatch: Any) -> None:
    """Images over seconds of ``batches`` batches after the first: epochs of batches of 5, 2, 2 images and 4
    timed batches count 2 + 2 + 5 + 2 = 11 images (the first 5 skipped, an epoch restarted) in 2 s."""

    class Loader:
        def __iter__(self) -> Any:
            return iter([{"images": torch.zeros(n)} for n in (5, 2, 2)])

    clock = iter([10.0, 12.0])
    monkeypatch.setattr(bench, "time", SimpleNamespace(perf_counter=lambda: next(clock)))
    assert bench.loader_rate(Loader(), 4) == pytest.approx(11 / 2)


def test_peak_memory_on_the_cpu_is_resident_kib_in_mib(bench: ModuleType, monkeypatch: Any) -> None:
    """Linux reports ru_maxrss in KiB: 3072 KiB are 3 MiB."""
    monkeypatch.setattr(bench.resource, "getrusage", lambda who: SimpleNamespace(ru_maxrss=3072))
    assert bench.peak_memory_mb(torch.device("cpu")) == 3.0


# ---------------------------------------------------------------------------------------------- bench.py report
def test_targets_are_met_at_their_limits_and_undefined_without_a_value(bench: ModuleType) -> None:
    """A value equal to its limit meets the target (>= 0.9, <= 0.05, <= 0.3); NaN or a missing inference row is
    n/a (None), not a verdict."""
    row = {
        "real_over_bare": 0.9,
        "loss_share_of_step": 0.05,
        "loss_over_conv1x1": 0.3,
        "infer_b4_e2e_over_forward": 0.9,
    }
    met = {k: v["met"] for k, v in bench.check_targets(row, [4, 8]).items()}
    assert met == {
        "real_over_bare": True,
        "loss_share_of_step": True,
        "loss_over_conv1x1": True,
        "e2e_over_forward_b4": True,
        "e2e_over_forward_b8": None,
    }
    t = bench.check_targets({"real_over_bare": float("nan"), "loss_share_of_step": 0.0501}, [])
    assert t["real_over_bare"]["met"] is None and t["loss_share_of_step"]["met"] is False
    assert t["loss_share_of_step"]["target"] == "<= 0.05" and t["real_over_bare"]["target"] == ">= 0.9"


def test_the_end_to_end_targets_are_judged_on_trained_weights_only(bench: ModuleType) -> None:
    """Without ``bench.infer_ckpt`` an end-to-end ratio (met or not) gets no verdict and the note says why, with the
    detections an image; the training targets are judged either way; the table prints the note."""
    row = {
        "real_over_bare": 0.95,
        "loss_share_of_step": 0.01,
        "infer_b1_e2e_over_forward": 0.8,
        "infer_b1_dets_per_img": 245.0,
        "infer_b32_e2e_over_forward": 0.95,
    }
    trained = bench.check_targets(row, [1, 32], trained_weights=True)
    assert (trained["e2e_over_forward_b1"]["met"], trained["e2e_over_forward_b32"]["met"]) == (False, True)
    assert not any("note" in t for t in trained.values())
    untrained = bench.check_targets(row, [1, 32], trained_weights=False)
    assert untrained["e2e_over_forward_b1"]["met"] is None and untrained["e2e_over_forward_b32"]["met"] is None
    assert untrained["e2e_over_forward_b1"]["value"] == 0.8  # the number is still reported
    assert "random weights (245 detections an image)" in untrained["e2e_over_forward_b1"]["note"]
    assert "detections unknown" in untrained["e2e_over_forward_b32"]["note"]
    assert untrained["real_over_bare"]["met"] is True and untrained["loss_share_of_step"]["met"] is True
    table = bench.format_table(
        {"machine": {"device": "cpu"}, "setup": {}, "variants": {"a": row}, "targets": untrained}
    )
    assert "target e2e_over_forward_b1: 0.8 (>= 0.9): n/a: random weights (245 detections an image)" in table


def test_the_targets_judge_the_variant_without_settings(bench: ModuleType) -> None:
    """The default model is the first variant with no settings of its own; with none such, the first."""
    assert bench.targets_variant({"bf": {"precision": "bf16-mixed"}, "plain": {}, "also": {}}) == "plain"
    assert bench.targets_variant({"bf": {"precision": "bf16-mixed"}, "cl": {"channels_last": True}}) == "bf"


def test_table_of_one_variant(bench: ModuleType) -> None:
    """One variant: no '(name)' after the targets; an undefined target reads n/a; an empty call-site list reads
    'none'; floats to 4 significant digits; the once-measured figures (machine, setup, loader, decode + NMS, loss
    protocol) under the table; a short row name still leaves the 'metric' header its width."""
    res = {
        "machine": {"device": "cpu"},
        "setup": {"batch": 2},
        "data_loader": {"loader_img_per_s": 12.3456},
        "postprocess": {"postprocess_2cls_ms_per_img": 0.5},
        "loss_protocol": {"loss_over_conv1x1": 0.25},
        "variants": {"only": {"ab": 1.23456, "lightning_sync_sites": ""}},
        "targets": {"real_over_bare": {"value": None, "target": ">= 0.9", "met": None}},
        "targets_variant": "only",
    }
    lines = bench.format_table(res).splitlines()
    assert lines[0] == "metric   only" and lines[1] == "ab      1.235"  # "metric" + 2, cells 5 wide
    assert "lightning_sync_sites (only): none" in lines
    assert "target real_over_bare: None (>= 0.9): n/a" in lines
    assert "loader_img_per_s             12.35" in lines
    assert "postprocess_2cls_ms_per_img  0.5" in lines and "loss_over_conv1x1            0.25" in lines


def test_report_writes_every_number(bench: ModuleType, tmp_path: Path) -> None:
    """bench.json holds the results as they are (indented JSON)."""
    res = {"machine": {"device": "cpu"}, "setup": {}, "variants": {"v": {"x": 1.0}}}
    bench._report(res, tmp_path / "bench.json")
    text = (tmp_path / "bench.json").read_text()
    assert json.loads(text) == res and text.startswith('{\n  "machine"')


def test_main_assembles_the_rows(bench: ModuleType, monkeypatch: Any, tmp_path: Path) -> None:
    """main's rows with the timings stubbed: each variant's precision (its own, else the trainer's) and fast keys,
    real_over_bare = Lightning / bare img/s (8 / 10), decode + NMS timed for the first variant only, the targets
    judged on the variant without settings, the setup (parameters of a 2 -> 3 linear layer: 9)."""
    calls: dict[str, list[Any]] = {"lightning": [], "inference": [], "heads": []}

    def variant_module(mc: Any, fast: dict[str, Any], device: Any) -> Any:
        return SimpleNamespace(
            model=SimpleNamespace(num_classes=2), fast=SimpleNamespace(channels_last=bool(fast.get("channels_last")))
        )

    built = SimpleNamespace(
        module=SimpleNamespace(model_config={}, model=torch.nn.Linear(2, 3)),
        info=SimpleNamespace(class_names=["a", "b"]),
        datamodule=None,
    )
    monkeypatch.setattr(bench, "build", lambda cfg: built)
    monkeypatch.setattr(bench, "variant_module", variant_module)
    monkeypatch.setattr(bench, "time_loops", lambda *a: {"bare_img_per_s": 10.0, "loss_share_of_step": 0.01})
    monkeypatch.setattr(bench, "bare_step", lambda *a, **k: lambda: None)
    monkeypatch.setattr(
        bench, "time_lightning", lambda cfg, m, p, *a: calls["lightning"].append(p) or {"lightning_img_per_s": 8.0}
    )
    monkeypatch.setattr(
        bench,
        "time_inference",
        lambda m, p, images, b, d, cl, warp: (
            calls["inference"].append((p, cl, len(images), warp)) or {"infer_b1_e2e_over_forward": 0.95}
        ),
    )
    monkeypatch.setattr(bench, "time_heads", lambda m, x, p, b: calls["heads"].append(p) or {"postprocess_ms": 1.0})
    monkeypatch.setattr(bench, "peak_memory_mb", lambda device: 5.0)
    cfg = OmegaConf.create(
        {
            "bench": {
                **OmegaConf.to_container(settings(infer_batches=[1, 3])),
                "threads": None,
                "variants": {"bf": {"precision": "bf16-mixed", "channels_last": True}, "plain": {}},
                "lightning": True,
                "postprocess": True,
                "data_loader": False,
                "loss_protocol": None,
                "num_boxes": 1,
                "infer_image_hw": [4, 4],
            },
            "trainer": {"precision": "32-true"},
            "model": {"net": {"backbone": {"width": 0.25}}},
            "paths": {"output_dir": str(tmp_path)},
            "data": {
                "batch_size": 8,
                "drop_last": False,
                "multiscale": {"enabled": True, "fixed_size": None},
                "augment": {"eval_warp": False},  # the Detector resizes as the data's evaluation
            },
        }
    )
    bench.main(cfg)
    res = json.loads((tmp_path / "bench.json").read_text())
    assert res["setup"] | {"cudnn_benchmark": None} == {
        "batch": 2,
        "size": 64,
        "params": 9,
        "width": 0.25,
        "classes": 2,
        "cudnn_benchmark": None,
    }
    bf, plain = res["variants"]["bf"], res["variants"]["plain"]
    assert bf["precision"] == "bf16-mixed" and bf["channels_last"] is True and plain["precision"] == "32-true"
    assert "channels_last" not in plain
    assert bf["real_over_bare"] == pytest.approx(0.8) and plain["peak_mem_mb"] == 5.0
    assert calls == {
        "lightning": ["bf16-mixed", "32-true"],
        "inference": [("bf16-mixed", True, 3, False), ("32-true", None, 3, False)],
        "heads": ["bf16-mixed"],
    }
    assert res["postprocess"] == {"postprocess_ms": 1.0} and res["targets_variant"] == "plain"
    assert {k: v["met"] for k, v in res["targets"].items()} == {
        "real_over_bare": False,
        "loss_share_of_step": True,
        "loss_over_conv1x1": None,
        "e2e_over_forward_b1": None,  # no bench.infer_ckpt: random weights, not judged
        "e2e_over_forward_b3": None,
    }
    assert res["targets"]["e2e_over_forward_b1"]["value"] == 0.95
    assert res["targets"]["e2e_over_forward_b1"]["note"].startswith("random weights (detections unknown)")


# ---------------------------------------------------------------------------------------------- tradeoff.py
def test_sizes_in_order_of_area_then_shape() -> None:
    """Sizes sorted by area (a 64x128 rectangle, 8192 px, between 64 and 96), equal areas by (h, w); duplicates
    (96 and [96, 96]) once; speed batches kept in the order given, duplicates once."""
    s = tradeoff.SweepSettings(sizes=[96, [128, 64], [64, 128], 64, [96, 96]], speed_batches=[8, 1, 8])
    assert [tradeoff.input_hw(x) for x in s.sizes] == [(64, 64), (64, 128), (128, 64), (96, 96)]
    assert s.speed_batches == [8, 1]


def test_area_of_a_rectangle() -> None:
    """A row's size '64x128' is 8192 pixels (what orders a plot's points and gives W&B's step); a side of 96 is
    9216."""
    assert tradeoff._area("64x128") == 8192 and tradeoff._area(96) == 9216
