"""The fast-path switches (``model.fast``, ``trainer.precision``, ``trainer.benchmark``, ``data.pin_memory``): each
trains a tiny detector for a few Lightning steps on real BCCD images and gives the default path's losses within a
tolerance (bf16: a loose one), on the CPU; ``torch.compile`` does not recompile per step under multi-scale."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import pytorch_lightning as pl
import torch
from torch._dynamo.utils import counters

from conftest import compose_config
from yolo9000.build import build
from yolo9000.speed import FastPath, apply_fast_path, float_images, optimizer_flags

STEPS = 4
# 8 images, batches of 4, the full learning rate from the first step (burn_in 1). A random-weight detector's loss is
# chaotic under large updates (its target assignment is discrete: a rounding difference of a switch flips a predictor
# and shows as a 1% loss difference two steps later, also at darknet's lr with SGD; Adam's first steps move every
# weight by ~lr whatever its gradient): plain SGD at a small rate keeps the differences proportional to the rounding.
BASE = [
    "data.max_images=8",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.img_size=64",
    "data.multiscale.enabled=false",
    "model.net.backbone.width=0.125",
    "model.burn_in=1",
    "model.optimizer=sgd",
    "model.lr=0.00001",
    "model.fast.channels_last=false",  # the reference: the plain NCHW path (the CPU model's default is NHWC)
]
MULTISCALE = ["data.multiscale.enabled=true", "data.multiscale.sizes=[64,96]", "data.multiscale.period=1"]


class LossRecorder(pl.Callback):
    """The training loss of every step, and the input sizes seen."""

    def __init__(self) -> None:
        self.losses: list[float] = []
        self.sizes: list[int] = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, *_: Any) -> None:
        self.losses.append(float(outputs["loss"]))
        self.sizes.append(int(batch["images"].shape[-1]))


def fit(*overrides: str, steps: int = STEPS, **trainer_kwargs: Any) -> tuple[LossRecorder, pl.Trainer, Any]:
    """``steps`` training steps of the tiny detector (config ``BASE`` + ``overrides``), same seed every call."""
    cfg = compose_config("train", *BASE, *overrides)
    pl.seed_everything(0)
    built = build(cfg)
    rec = LossRecorder()
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        callbacks=[rec],
        **trainer_kwargs,
    )
    trainer.fit(built.module, datamodule=built.datamodule)
    assert len(rec.losses) == steps
    return rec, trainer, built.module


@pytest.fixture(scope="module")
def reference() -> list[float]:
    return fit()[0].losses


@pytest.fixture(scope="module")
def reference_multiscale() -> LossRecorder:
    return fit(*MULTISCALE)[0]


def assert_close(got: list[float], want: list[float], rtol: float) -> None:
    assert got == pytest.approx(want, rel=rtol), f"losses {got} vs the default path's {want}"
    assert len(set(want)) > 1  # the weights changed between the steps (the check has teeth)


def assert_close_rounding(got: list[float], want: list[float]) -> None:
    """A switch that only rounds differently (other kernels, memory layout): the first step, on the same weights,
    within float rounding; later steps also by the target assignments that the rounding flips (an IoU at the
    ignore threshold: ~0.2 % of the loss by step 3 on these samples), within 0.5 %."""
    assert got[0] == pytest.approx(want[0], rel=1e-5), f"first-step loss {got[0]} vs the default path's {want[0]}"
    assert_close(got, want, 5e-3)


def test_channels_last(reference: list[float]) -> None:
    rec, trainer, module = fit("model.fast.channels_last=true")
    assert_close_rounding(rec.losses, reference)
    conv = next(m for m in module.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)


def test_channels_last_batches() -> None:
    module = build(compose_config("train", *BASE, "model.fast.channels_last=true")).module
    batch = module.on_after_batch_transfer({"images": torch.zeros(2, 3, 64, 64, dtype=torch.uint8)}, 0)
    assert batch["images"].dtype == torch.float32
    assert batch["images"].is_contiguous(memory_format=torch.channels_last)


def test_float_images_one_copy_into_either_layout() -> None:
    """uint8 pixels in either memory layout (the predict collate's are NHWC-backed) -> the same floats / 255 in the
    layout asked for."""
    hwc = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    want = hwc.permute(0, 3, 1, 2).contiguous().double() / 255  # (2, 3, 5, 7)
    for images in (hwc.permute(0, 3, 1, 2), hwc.permute(0, 3, 1, 2).contiguous()):
        for cl in (False, True):
            x = float_images(images, cl)
            assert x.dtype == torch.float32 and x.shape == (2, 3, 5, 7)
            assert x.is_contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
            assert x.is_contiguous() != cl
            torch.testing.assert_close(x.double(), want)
    floats = torch.rand(1, 3, 4, 4)
    assert float_images(floats, False) is floats  # float input: kept as it is when the layout already fits


def test_float_images_as_pixels_cast_without_dividing() -> None:
    """uint8 pixels -> the same values as float32 (0-255, the input of a network with the 1 / 255 folded into its
    first conv) in the layout asked for; floats in [0, 1] -> times 255."""
    hwc = torch.randint(0, 256, (2, 5, 7, 3), dtype=torch.uint8)
    want = hwc.permute(0, 3, 1, 2).contiguous().float()
    for cl in (False, True):
        x = float_images(hwc.permute(0, 3, 1, 2), cl, pixels=True)
        assert x.dtype == torch.float32 and x.is_contiguous() != cl
        assert torch.equal(x, want) and float(x.max()) > 1
    torch.testing.assert_close(float_images(want / 255, True, pixels=True), want)


def test_bf16_autocast(reference: list[float]) -> None:
    rec, trainer, _ = fit(precision="bf16-mixed")
    assert_close(rec.losses, reference, 0.05)


@pytest.mark.parametrize("setting", [True, "foreach", False])
def test_fused_and_foreach_optimizer(reference: list[float], setting: bool | str) -> None:
    rec, trainer, _ = fit(f"model.fast.fused_optimizer={str(setting).lower()}")
    assert_close(rec.losses, reference, 1e-4)
    group = trainer.optimizers[0].param_groups[0]
    want = optimizer_flags(setting, "cpu")
    assert {k: group[k] for k in want} == want
    assert group["lr"] == pytest.approx(trainer.lr_scheduler_configs[0].scheduler.get_last_lr()[0])


def test_optimizer_flags_auto() -> None:
    assert optimizer_flags(None, "cuda") == {"fused": True} == optimizer_flags("auto", "cuda")
    assert optimizer_flags(None, "cpu") == {}


def test_cudnn_benchmark_and_pinned_memory(reference: list[float]) -> None:
    rec, _, _ = fit("data.pin_memory=true", benchmark=True)
    assert_close(rec.losses, reference, 1e-5)
    rec, _, _ = fit("data.pin_memory=false")
    assert_close(rec.losses, reference, 1e-5)


@pytest.mark.slow  # ~23 s of tracing; the default suite compiles the sizes without recompiling (next test)
def test_compile_same_losses_under_multiscale(reference_multiscale: LossRecorder) -> None:
    """``aot_eager`` traces the forward and backward graphs as inductor does, without generating C++ (minutes on
    2 cores); inductor itself: ``test_compile_inductor`` (slow)."""
    torch._dynamo.reset()
    rec, _, module = fit(*MULTISCALE, "model.fast.compile=true", "model.fast.compile_backend=aot_eager")
    assert len(set(rec.sizes)) > 1 and rec.sizes == reference_multiscale.sizes
    assert_close(rec.losses, reference_multiscale.losses, 1e-4)
    assert not any("_orig_mod" in k for k in module.state_dict())  # checkpoints keep their parameter names


@pytest.mark.parametrize(  # None: 9 s, True: 15 s (slow); False (the sizes compiled one by one) in the default suite
    "dynamic", [pytest.param(None, marks=pytest.mark.slow), pytest.param(True, marks=pytest.mark.slow), False]
)
def test_compile_no_recompilation_once_sizes_seen(dynamic: bool | None) -> None:
    """Training steps over the multi-scale sizes, twice: the second pass compiles nothing (recompilation is
    dynamo's decision, whatever the backend: ``eager`` runs the captured graphs as they are)."""
    module = build(compose_config("train", *BASE)).module
    net = apply_fast_path(module.model, FastPath(compile=True, compile_backend="eager", compile_dynamic=dynamic))
    net.train()
    torch._dynamo.reset()
    counters.clear()
    sizes = (64, 96, 128, 160)
    graphs = []
    for _ in range(2):
        for s in sizes:
            net(torch.rand(2, 3, s, s)).float().square().mean().backward()
        graphs.append(counters["stats"]["unique_graphs"])
    assert 1 <= graphs[0] <= len(sizes), graphs
    assert graphs[1] == graphs[0], f"recompiled on sizes already seen: {graphs}"


@pytest.mark.slow
def test_compile_inductor(reference: list[float]) -> None:
    """The real backend (generates and builds C++ on the CPU: minutes)."""
    torch._dynamo.reset()
    rec, _, _ = fit("model.fast.compile=true")
    assert_close_rounding(rec.losses, reference)


def test_compile_loss_same_losses(reference: list[float]) -> None:
    """``model.fast.compile_loss``: the region loss's deltas run as dynamo's graph (backend ``eager``: the captured
    operations as they are, so the same floats; inductor's fused kernels: ``test_compile_loss_inductor``, slow)."""
    torch._dynamo.reset()
    counters.clear()
    rec, _, module = fit("model.fast.compile_loss=true", "model.fast.compile_backend=eager")
    assert module.criterion.compile_options == {"backend": "eager", "mode": None}
    assert counters["stats"]["unique_graphs"] >= 1  # the loss ran compiled (the network is not: compile=false)
    assert_close(rec.losses, reference, 1e-6)


@pytest.mark.slow  # inductor builds C++ for the loss: ~30 s on 2 cores
def test_compile_loss_inductor(reference: list[float]) -> None:
    torch._dynamo.reset()
    counters.clear()
    rec, _, _ = fit("model.fast.compile_loss=true")
    assert counters["inductor"]["fxgraph_cache_miss"] + counters["inductor"]["fxgraph_cache_hit"] >= 1
    assert_close_rounding(rec.losses, reference)


def test_unknown_fast_key_raises() -> None:
    with pytest.raises(ValueError, match="unknown keys"):
        FastPath.of({"channel_last": True})
    with pytest.raises(ValueError, match="fused_optimizer"):
        FastPath.of({"fused_optimizer": "yes"})


FAULTS = """
import resource, sys, torch
from yolo9000.speed import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory() and keep_freed_memory()  # applied; a second call is a no-op


def step():  # a training step's large activations: allocated, written, alive together, freed
    xs = [torch.ones(n) for n in (8 << 20, 4 << 20, 2 << 20, 8 << 20)]  # 32, 16, 8, 32 MB
    return sum(float(x[0]) for x in xs)


for _ in range(6):  # the heap settles (glibc's placement of the first steps' blocks may still grow it)
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    step()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (mallopt) only")
def test_keep_freed_memory_stops_page_faults() -> None:
    """glibc's default maps large blocks afresh at every allocation (~22k page faults for the 88 MB of one such
    step); kept, freed blocks are reused once the heap has settled (none in five steps on the project's VM; after
    only two warm-up steps, 6k-49k, as glibc's placement still grew the heap now and then)."""

    def faults(mode: str) -> int:
        res = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr[-2000:]
        return int(res.stdout.split()[-1])

    default, kept = faults("default"), faults("keep")
    assert default > 5 * 22528 // 2, default
    assert kept < default / 10, (kept, default)
    assert FastPath.of({"keep_freed_memory": True}).keep_freed_memory


RETAINED = """
import sys, torch
from yolo9000.speed import keep_freed_memory
from yolo9000.data.sharded import worker_init

def resident() -> int:
    return int(open("/proc/self/statm").read().split()[1]) * 4096

if "keep" in sys.argv[1]:
    keep_freed_memory()  # the CPU models' setting, which forked loader workers inherit
if "worker" in sys.argv[1]:
    worker_init(0)  # what a DataLoader worker runs first
before = resident()
for _ in range(2):  # a sample's 24 MB buffer, twice: glibc's default raises its mmap threshold to the first freed
    x = torch.ones(6 << 20)
    del x
print((resident() - before) >> 20)  # MB the freed buffers left resident
"""


@pytest.mark.slow  # ~14 s: a memory behaviour of forked workers, not a result
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc malloc (mallopt) only")
def test_loader_workers_give_large_freed_buffers_back() -> None:
    """A loader worker's freed 24 MB buffer goes back to the system, whatever the parent set (glibc's default keeps
    it in a heap that is never trimmed once a block that size was freed; keep_freed_memory keeps everything): the
    classification workers' heaps grew by 1.0-1.3 GB over 25k ImageNet-sized samples, 2-46 MB with this."""

    modes = ("default", "keep", "worker", "keep_worker")
    procs = {
        m: subprocess.Popen(
            [sys.executable, "-c", RETAINED, m], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for m in modes
    }
    left = {}
    for mode, proc in procs.items():  # started together: one process start-up's wait
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        left[mode] = int(out.split()[-1])
    assert left["default"] >= 20 and left["keep"] >= 20, left  # kept resident
    assert left["worker"] <= 8 and left["keep_worker"] <= 8, left  # given back (a few MB of other allocations)


def test_classifier_takes_the_fast_path_keys() -> None:
    """model.fast reaches the classifier modules too (the CPU classifier keeps freed memory, as the CPU detector)."""
    cpu = compose_config("train", "experiment=pretrain_darknet19", "data.max_images=4")
    assert build(cpu).module.fast == FastPath(keep_freed_memory=True)
    fused = compose_config("train", "experiment=pretrain_darknet19", "+model.fast.fused_optimizer=true")
    assert optimizer_flags(build(fused).module.fast.fused_optimizer, "cpu") == {"fused": True}
    gpu = compose_config("train", "experiment=pretrain_darknet19", "model=darknet19_cls", "data.max_images=4")
    assert build(gpu).module.fast == FastPath()
    loss = compose_config("train", "experiment=pretrain_darknet19", "+model.fast.compile_loss=true")
    with pytest.raises(Exception, match="compile_loss compiles a detector.s region loss; a classifier has none"):
        build(loss)


@pytest.mark.parametrize(
    "key, value",
    [
        ("compile", "maybe"),
        ("channels_last", "yes"),
        ("keep_freed_memory", 1),
        ("compile_dynamic", "x"),
        ("compile_loss", "on"),
    ],
)
def test_fast_switch_that_is_no_bool_is_refused(key: str, value: Any) -> None:
    """``model.fast.compile=maybe`` compiled (a non-empty string is truthy); each switch takes true / false only
    (compile_dynamic also null) and names itself otherwise."""
    with pytest.raises(ValueError, match=rf"model\.fast\.{key} must be true/false"):
        FastPath.of({key: value})
    assert FastPath.of({key: True}).__dict__[key] is True and FastPath.of({"compile_dynamic": None}).compile is False
