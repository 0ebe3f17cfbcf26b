"""src/bench.py: several variants (bf16 + channels_last, compile) in one run and their bench.json keys, the GPU
preset's content, the variant checks and the table. Benchmarks print; nothing here asserts on a time."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from types import ModuleType, SimpleNamespace

import hydra
import pytest
import torch

from conftest import compose_config, load_script, run_script

TINY_BENCH = [
    "bench.steps=1",
    "bench.warmup=0",
    "bench.batch_size=2",
    "bench.size=64",
    "bench.loader_batches=1",
    "bench.infer_batches=[1,2]",
    "bench.postprocess=false",
    "bench.data_loader=false",
    "data.max_images=8",
    "data.num_workers=0",
    "model.net.backbone.width=0.125",
    "bench.loss_protocol.batch=2",
    "bench.loss_protocol.rounds=1",
    "bench.loss_protocol.calls=1",
    "bench.loss_protocol.compiled_backend=eager",  # the compiled loss's row, traced by dynamo without inductor
]
ROW_KEYS = {
    "precision",
    "bare_img_per_s",
    "loss_img_per_s",
    "step_s",
    "loss_fwd_bwd_s",
    "loss_share_of_step",
    "lightning_img_per_s",
    "lightning_precision",
    "real_over_bare",
    "paired_bare_img_per_s",
    "infer_b1_forward_img_per_s",
    "infer_b1_e2e_img_per_s",
    "infer_b1_e2e_over_forward",
    "infer_b2_forward_img_per_s",
    "infer_b2_e2e_img_per_s",
    "infer_b2_e2e_over_forward",
    "peak_mem_mb",
}


def load_bench() -> ModuleType:
    return load_script("bench")


@pytest.mark.slow  # 18 s; the default config's run (test_cli_bench_detect_eval) stays in the default suite
def test_bench_variants(tmp_path: Path) -> None:
    """fp32, bf16 + channels_last and a compiled network (dynamo with the eager backend: no code generation)."""
    variants = (
        "bench.variants={fp32:{precision:32-true},"
        "bf16_cl:{precision:bf16-mixed,channels_last:true},"
        "compiled:{compile:true,compile_backend:eager}}"
    )
    res = run_script("bench.py", tmp_path, *TINY_BENCH, variants)
    got = json.loads((tmp_path / "bench.json").read_text())
    assert list(got["variants"]) == ["fp32", "bf16_cl", "compiled"]
    for name, row in got["variants"].items():
        assert ROW_KEYS <= set(row), f"{name}: missing {ROW_KEYS - set(row)}"
        assert all(row[k] > 0 for k in ROW_KEYS if k.endswith(("_per_s", "_s", "_mb"))), row
        # on the CPU the ratio is against the bare steps timed between the Lightning batches (median of the pairs)
        assert 0 < row["real_over_bare"] and row["paired_bare_img_per_s"] > 0
    assert got["variants"]["bf16_cl"]["lightning_precision"] == "bf16-mixed"
    assert got["variants"]["bf16_cl"]["channels_last"] is True
    assert got["variants"]["compiled"]["lightning_precision"] == "32-true"  # the trainer's
    assert {"device", "threads", "torch"} <= set(got["machine"])
    lp = got["loss_protocol"]  # the region loss against a 1x1 conv on the ports' protocol
    assert lp["loss_over_conv1x1"] == pytest.approx(lp["loss_protocol_loss_ms"] / lp["loss_protocol_conv1x1_ms"])
    assert lp["loss_protocol_compiled_backend"] == "eager"
    ms = lp["loss_protocol_compiled_loss_ms"]
    assert lp["compiled_loss_over_conv1x1"] == pytest.approx(ms / lp["loss_protocol_conv1x1_ms"]) and ms > 0
    assert (
        lp["loss_protocol_fresh_process"] is True and lp["loss_protocol_threads"] >= 1
    )  # timed in a process of its own
    assert got["targets"]["loss_over_conv1x1"]["target"] == "<= 0.3"
    assert got["targets_variant"] == "fp32"  # no variant as composed: the first
    header = next(line for line in res.stdout.splitlines() if line.startswith("metric"))
    assert header.split() == ["metric", "fp32", "bf16_cl", "compiled"]


def test_gpu_preset_composes() -> None:
    """``--config-name bench_gpu_full``: YOLOv2-416 at batch 64, fp32 / bf16 / + channels_last / + compile, with
    the real loss and Lightning step, inference at batch 1 and 64, on the GPU trainer."""
    cfg = compose_config("bench_gpu_full")
    b = cfg.bench
    assert (b.batch_size, b.size, b.device, list(b.infer_batches)) == (64, 416, "cuda", [1, 64])
    assert cfg.model.net.backbone.width == 1.0 and cfg.trainer.accelerator == "gpu" and b.lightning
    v = b.variants
    assert [v[k].precision for k in v] == ["32-true", "bf16-mixed", "bf16-mixed", "bf16-mixed"]
    assert [v[k].channels_last for k in v] == [False, False, True, True]
    assert [v[k].compile for k in v] == [False, False, False, True]
    bench = load_bench()
    for settings in v.values():
        bench.split_variant(settings)  # valid keys
    # BCCD's training list 8 times: 25 batches of 64 an epoch (3 without), every parser resolved where it stood
    train = bench.bench_config(cfg).data.train
    assert len(train) == 8 and all(t.split == "train" and t.root == cfg.data.root for t in train)
    parsers = hydra.utils.instantiate(bench.bench_config(cfg).data).parsers("train")
    assert len(parsers) == 8 and {type(p).__name__ for p in parsers} == {"VOCParser"}
    assert compose_config("bench").bench.train_repeat == 1  # the CPU bench: the data as training reads it


def test_split_variant_checks_keys() -> None:
    bench = load_bench()
    assert bench.split_variant({"precision": "bf16-mixed", "channels_last": True}) == (
        "bf16-mixed",
        {"channels_last": True},
    )
    assert bench.split_variant({}) == (None, {})
    with pytest.raises(ValueError, match="unknown keys"):
        bench.split_variant({"channelslast": True})
    with pytest.raises(ValueError, match="precision"):
        bench.split_variant({"precision": "fp8"})


def test_settings_are_checked_before_any_timing(tmp_path: Path) -> None:
    """A wrong bench key fails at once, naming it (a size of 250 failed after the training rows, ~35 s; a batch of
    0 with a ZeroDivisionError; a missing checkpoint with torch's bare FileNotFoundError)."""
    bench = load_bench()
    ok = compose_config("bench", *TINY_BENCH).bench
    bench.check_settings(ok)
    cases = {
        "bench.size=250": (ValueError, r"bench.size must be a positive multiple of 32, got 250"),
        "bench.infer_batches=[1,0]": (ValueError, r"bench.infer_batches must be positive integers, got \[1, 0\]"),
        f"bench.infer_ckpt={tmp_path / 'nope.ckpt'}": (FileNotFoundError, r"bench.infer_ckpt=.*nope.ckpt: no such"),
        f"bench.infer_images={tmp_path}/*.jpg": (FileNotFoundError, r"bench.infer_images=.*: no file matches"),
    }
    if not torch.cuda.is_available():
        cases["bench.device=cuda"] = (ValueError, r"bench.device=cuda: torch finds no CUDA device")
    for override, (err, msg) in cases.items():
        with pytest.raises(err, match=msg):
            bench.check_settings(compose_config("bench", *TINY_BENCH, override).bench)
    res = run_script("bench.py", tmp_path / "run", *TINY_BENCH, "bench.size=250", check=False)
    assert res.returncode != 0 and "bench.size must be a positive multiple of 32" in res.stderr
    assert "Traceback" not in res.stderr and f"(the traceback: {tmp_path / 'run' / 'bench.log'})" in res.stderr
    assert "bare_img_per_s" not in res.stdout + res.stderr  # nothing was timed first


def test_targets_and_table() -> None:
    bench = load_bench()
    row = {
        "real_over_bare": 0.95,
        "loss_share_of_step": 0.08,
        "infer_b1_e2e_over_forward": 0.5,
        "infer_b32_e2e_over_forward": 0.93,
        "loss_over_conv1x1": 0.29,
    }
    t = bench.check_targets(row, [1, 32])
    assert {k: v["met"] for k, v in t.items()} == {
        "real_over_bare": True,
        "loss_share_of_step": False,
        "loss_over_conv1x1": True,
        "e2e_over_forward_b1": False,
        "e2e_over_forward_b32": True,
    }
    assert bench.check_targets({}, [1])["real_over_bare"]["met"] is None
    # loader workers (CPU) prepare batches during the paired bare steps: that ratio is not judged
    with_workers = bench.check_targets(row | {"lightning_loader_workers": 1}, [1, 32])["real_over_bare"]
    assert with_workers["met"] is None and "data.num_workers=0" in with_workers["note"]
    assert bench.check_targets(row | {"lightning_loader_workers": 0}, [1])["real_over_bare"]["met"] is True
    res = {
        "machine": {"device": "cpu"},
        "setup": {"batch": 16},
        "variants": {"a": {"x_img_per_s": 1.5}, "bb": {"x_img_per_s": 2.25, "y": "z", "s_sites": "f.py:3 x2"}},
        "targets": t,
        "targets_variant": "bb",
    }
    table = bench.format_table(res).splitlines()
    assert table[0].split() == ["metric", "a", "bb"]
    assert table[1].split() == ["x_img_per_s", "1.5", "2.25"] and table[2].split() == ["y", "z"]
    assert any(line.startswith("target loss_share_of_step (bb):") and "NOT met" in line for line in table)
    # the targets judge the default model: the variant as composed (README: {nchw:{channels_last:false},nhwc:{}})
    assert bench.targets_variant({"nchw": {"channels_last": False}, "nhwc": {}}) == "nhwc"
    assert bench.targets_variant({"fp32": {"precision": "32-true"}, "cl": {"channels_last": True}}) == "fp32"
    assert "s_sites (bb): f.py:3 x2" in table  # call sites under the table, not a column


def test_step_timer_records_the_audited_batch_host_syncs(monkeypatch: pytest.MonkeyPatch) -> None:
    """On CUDA the timer records the synchronising calls of one batch (``audit``, from 1) by their call sites:
    those of batch 2 only, neither its own end-of-batch sync nor other warnings (no GPU here: the sync warnings
    that torch's debug mode raises are raised by hand)."""
    bench = load_bench()
    modes: list[object] = []
    message = "called a synchronizing CUDA operation"
    monkeypatch.setattr(bench.torch.cuda, "set_sync_debug_mode", modes.append)
    monkeypatch.setattr(bench, "sync", lambda device: warnings.warn(message, stacklevel=1))
    timer = bench.StepTimer(skip=1, audit=2)
    module = SimpleNamespace(device=torch.device("cuda"))
    batch = {"images": torch.zeros(2, 3, 4, 4)}
    for i in range(3):
        timer.on_train_batch_start(None, module)
        for _ in range(i + 1):  # batch i + 1 makes i + 1 syncs
            warnings.warn(message, stacklevel=1)
        warnings.warn("not a sync", stacklevel=1)
        timer.on_train_batch_end(None, module, None, batch)
    assert sum(timer.syncs.values()) == 2 and len(timer.syncs) == 1 and modes == ["warn", 0]
    assert next(iter(timer.syncs)).startswith("test_bench.py:")


def test_cpu_bf16_units_names_the_best_bf16_arithmetic_of_the_flags() -> None:
    """AMX tiles before AVX-512 dot products, neither: none; no flags line to read: unknown."""
    from yolo9000.speed import cpu_bf16_units

    assert cpu_bf16_units("fpu sse2 avx512f avx512_bf16 amx_tile amx_bf16") == "amx_bf16"
    assert cpu_bf16_units("fpu sse2 avx512f avx512_bf16 amx_int8") == "avx512_bf16"  # int8 tiles only: no bf16 AMX
    assert cpu_bf16_units("fpu sse2 avx2 fma") == "none"
    assert cpu_bf16_units("fpu avx512_bf16x") == "none"  # whole flags, not prefixes
    # ARM's Features line (Graviton 3: SVE with bf16; an SME core; a Cortex-A72 without bf16)
    assert cpu_bf16_units("fp asimd sve i8mm bf16 svebf16 svei8mm") == "svebf16"
    assert cpu_bf16_units("fp asimd sve bf16 svebf16 sme smeb16f32 smef32f32") == "smeb16f32"
    assert cpu_bf16_units("fp asimd bf16") == "bf16"
    assert cpu_bf16_units("fp asimd evtstrm crc32 cpuid") == "none"
    assert cpu_bf16_units() in ("amx_bf16", "smeb16f32", "avx512_bf16", "svebf16", "bf16", "none", "unknown")


def test_bf16_note_only_on_amx_without_a_bf16_variant() -> None:
    """The table's closing note names the bf16 command on an AMX CPU whose run timed no bf16 variant; none on
    another CPU, on a GPU (no cpu_bf16), or once a bf16 variant ran."""
    bench = load_script("bench")
    fp32 = {"default": {"precision": "32-true"}}
    assert "bench.variants=" in bench.bf16_note({"machine": {"cpu_bf16": "amx_bf16"}, "variants": fp32})
    assert bench.bf16_note({"machine": {"cpu_bf16": "avx512_bf16"}, "variants": fp32}) is None
    assert bench.bf16_note({"machine": {}, "variants": fp32}) is None
    both = {**fp32, "bf16": {"precision": "bf16-mixed"}}
    assert bench.bf16_note({"machine": {"cpu_bf16": "amx_bf16"}, "variants": both}) is None


def test_a_busy_machine_is_said_under_the_verdicts(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bench run while other work loaded the CPUs (load average above the CPU count at its start or end) printed
    its NOT met verdicts with no word of it; it now warns under them."""
    bench = load_script("bench")
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert bench.busy_note({"machine": {"load_avg_1min_at_start": 1.2, "load_avg_1min_at_end": 1.9}}) is None
    note = bench.busy_note({"machine": {"load_avg_1min_at_start": 1.2, "load_avg_1min_at_end": 2.53}})
    assert note is not None and "1.20, 2.53" in note and "exceeded the 2 CPUs" in note
