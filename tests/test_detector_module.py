"""Training details of the detection module: darknet's decay groups, schedule and the global `seen` counter."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from conftest import compose_config
from yolo9000.loss import RegionLoss
from yolo9000.models.darknet19 import Darknet19
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules.detector import DetectorModule
from yolo9000.modules.schedules import DarknetPoly, DarknetSteps, param_groups, resolve_steps


def tiny() -> YOLOv2:
    return YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0], [2.0, 2.0]])


def test_decay_only_on_conv_weights() -> None:
    m = tiny()
    decay, no_decay = param_groups(m, 5e-4)
    convs = [mod for mod in m.modules() if isinstance(mod, torch.nn.Conv2d)]
    assert {id(p) for p in decay["params"]} == {id(c.weight) for c in convs}
    assert decay["weight_decay"] == 5e-4 and no_decay["weight_decay"] == 0.0
    n_bn = sum(2 for mod in m.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    assert len(no_decay["params"]) == n_bn + 1  # BN scale + shift per BN, and the final conv's bias


def test_darknet_steps_schedule() -> None:
    s = DarknetSteps(burn_in=10, steps=[20, 30], scales=[0.1, 0.5])
    assert s(0) == pytest.approx((1 / 10) ** 4)  # darknet counts the current batch: (1 / burn_in)^4
    assert s(4) == pytest.approx((5 / 10) ** 4)
    assert s(9) == 1.0 and s(18) == 1.0
    assert s(19) == pytest.approx(0.1) and s(29) == pytest.approx(0.05)
    assert resolve_steps([0.5, 0.75], 200) == [100, 150] and resolve_steps([40000, 60000], 10) == [
        40000,
        60000,
    ]
    assert DarknetPoly(100, power=4)(49) == pytest.approx(0.5**4)  # batch 50 of 100
    assert DarknetPoly(100, power=2, burn_in=10)(4) == pytest.approx(0.5**2)


class _FakeTrainer:
    world_size = 4


def test_seen_counts_all_ranks_before_forward() -> None:
    module = DetectorModule(tiny(), RegionLoss, burn_in=1)
    seen_at_loss: list[int] = []
    original = module.criterion.forward

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen_at_loss.append(args[4] if len(args) > 4 else kwargs["seen"])
        return original(*args, **kwargs)

    module.criterion.forward = spy  # type: ignore[method-assign]
    module._trainer = _FakeTrainer()  # type: ignore[assignment]
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    batch = {
        "images": torch.rand(2, 3, 64, 64),
        "targets": torch.tensor([[[0.5, 0.5, 0.2, 0.2, 1.0]], [[0.3, 0.3, 0.1, 0.1, 0.0]]]),
        "target_mask": torch.ones(2, 1, dtype=torch.bool),
    }
    module.training_step(batch, 0)
    module.training_step(batch, 1)
    assert seen_at_loss == [8, 16] and int(module.seen) == 16
    assert "seen" in module.state_dict()
    # the host's count (no device read per step) starts from the buffer at the training start (after a resume
    # restored it) and after a checkpoint load
    module.seen.fill_(1000)
    module.on_train_start()
    module.training_step(batch, 2)
    module.seen.fill_(5000)
    module.on_load_checkpoint({})
    module.training_step(batch, 3)
    assert seen_at_loss[2:] == [1008, 5008] and int(module.seen) == 5008 and module.seen_images == 5008


def test_truths_assigned_on_the_host_before_the_transfer() -> None:
    """``on_before_batch_transfer`` adds the truths' assignment to a batch (made on the host, from the grid of the
    batch's input size); the training step's loss with it equals the loss the criterion assigns itself."""
    torch.manual_seed(0)
    module = DetectorModule(tiny(), RegionLoss, burn_in=1)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    targets = torch.tensor(
        [[[0.5, 0.5, 0.2, 0.2, 1.0], [0.52, 0.5, 0.3, 0.2, 2.0]], [[0.3, 0.3, 0.6, 0.5, 0.0], [0] * 5]]
    )
    batch = {
        "images": (torch.rand(2, 3, 96, 64) * 255).to(torch.uint8),
        "targets": targets,
        "target_mask": torch.tensor([[True, True], [True, False]]),
    }
    with_plan = module.on_before_batch_transfer(dict(batch), 0)
    plan = with_plan["assignment"]
    assert plan.cell.tolist() == [[1, 1], [1, 1], [0, 0]]  # a 2 x 3 grid (64 wide, 96 high): int(x * 2), int(y * 3)
    assert plan.win.tolist() == [1, 2]  # both truths of image 0 pick one predictor: the later one's
    losses = []
    for b in (with_plan, batch):
        b = module.on_after_batch_transfer(dict(b), 0)
        module.seen.zero_()
        module.train()
        losses.append(module.training_step(b, 0)["loss"])
    assert torch.equal(losses[0], losses[1])


def _compose(*overrides: str):  # noqa: ANN202
    return compose_config("train", *overrides)


def test_kmeans_anchors_resolved_from_training_boxes() -> None:
    from yolo9000.build import build_info

    class Boxes:
        class_names = ["a"]

        def box_sizes(self, split: str):  # noqa: ANN202
            # two clusters of box shapes: 1/8 and 1/2 of the image (= 1 and 4 cells on an 8 x 8 grid at 256)
            return torch.tensor([[0.125, 0.125]] * 10 + [[0.5, 0.5]] * 10).numpy()

    cfg = _compose("model.priors.anchors=kmeans", "model.priors.k=2", "data.img_size=256")
    before = OmegaConf.to_yaml(cfg)
    info = build_info(cfg, Boxes())
    assert info.anchors == [[1.0, 1.0], [4.0, 4.0]] and info.prior_source == "kmeans"
    assert info.anchors_avg_iou == pytest.approx(1.0) and info.class_names == ["a"]
    assert OmegaConf.to_yaml(cfg) == before  # the composed config is only read


def test_fc_head_needs_fixed_size() -> None:
    from yolo9000.build import check_config

    with pytest.raises(ValueError, match="multiscale.enabled=false"):
        check_config(_compose("model.net.head=fc"))
    with pytest.raises(ValueError, match="fc_grid"):
        check_config(_compose("model.net.head=fc", "data.multiscale.enabled=false", "model.net.fc_grid=13"))
    check_config(_compose("model.net.head=fc", "data.multiscale.enabled=false", "model.net.fc_grid=8"))
    check_config(_compose("model.net.head=fc", "data.multiscale.enabled=false"))  # null: img_size / 32


def test_all_finite_finds_inf_and_nan_anywhere_and_changes_nothing() -> None:
    """The gradient check: inf, -inf or NaN in any tensor (any dtype, strided or not) makes it False; finite values,
    huge ones included (3e38: a total norm, the check before, overflows to inf on them and skipped a finite step),
    make it True; the tensors keep every bit (signed zero, subnormals)."""
    from yolo9000.modules.base import all_finite

    def grads() -> list[torch.Tensor]:
        return [
            torch.tensor([-0.0, 1e-45, 3e38, -3e38]),
            torch.arange(12.0, dtype=torch.float64).view(3, 4).t(),  # strided, another dtype
            torch.ones(5, dtype=torch.bfloat16),
        ]

    clean = grads()
    assert bool(all_finite(clean))
    assert not torch.isfinite(torch.nn.utils.get_total_norm(grads()))  # what the norm made of them
    for a, b in zip(clean, grads(), strict=True):  # bit for bit
        assert torch.equal(a.contiguous().view(torch.uint8), b.contiguous().view(torch.uint8))
    for k, bad in ((0, float("inf")), (1, float("nan")), (2, float("-inf"))):
        g = grads()
        g[k][(1,) if g[k].dim() == 1 else (2, 1)] = bad
        assert not bool(all_finite(g)), (k, bad)


@pytest.mark.parametrize("skip", [3, 0])
def test_nonfinite_gradients_skip_the_step(skip: int) -> None:
    """``skip_nonfinite``: an inf gradient drops every gradient (the optimizer leaves the weights alone) and counts
    the step; without it the inf reaches the weights (darknet's behaviour)."""
    module = DetectorModule(tiny(), RegionLoss, skip_nonfinite=skip)
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    before = [p.detach().clone() for p in module.parameters()]
    for p in module.parameters():
        p.grad = torch.ones_like(p)
    next(module.parameters()).grad[0] = float("inf")
    module.on_before_optimizer_step(opt)
    opt.step()
    changed = [not torch.equal(b, p.detach()) for b, p in zip(before, module.parameters(), strict=True)]
    assert (not any(changed), getattr(module, "skipped_steps", 0)) == ((True, 1) if skip else (False, 0))
    finite = [p.detach().clone() for p in module.parameters()]
    for p in module.parameters():  # a finite step goes through either way
        p.grad = torch.ones_like(p)
    module.on_before_optimizer_step(opt)
    opt.step()
    assert all(not torch.equal(b, p.detach()) for b, p in zip(finite, module.parameters(), strict=True))
    if skip:  # three non-finite steps in a row: the run has diverged
        for _ in range(2):
            next(module.parameters()).grad = torch.full_like(next(module.parameters()), float("nan"))
            module.on_before_optimizer_step(opt)
        next(module.parameters()).grad = torch.full_like(next(module.parameters()), float("nan"))
        with pytest.raises(FloatingPointError, match="3 steps in a row"):
            module.on_before_optimizer_step(opt)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_nonfinite_steps_skipped_by_a_fused_optimizer_on_the_device(optimizer: str) -> None:
    """With a fused optimizer whose state exists, a non-finite step is skipped by the fused kernel's ``found_inf``
    flag (no host read of the gradient norm; the gradients stay): weights and momentum untouched, the step counted
    when the counts are read (here every step: no trainer), the divergence error after 3 in a row; a finite step
    after a skipped one goes through. The first step (no momentum yet) takes the host path."""
    module = DetectorModule(tiny(), RegionLoss, skip_nonfinite=3)
    params = list(module.parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=5e-4, fused=True)
    else:
        opt = torch.optim.Adam(params, lr=0.1, fused=True)

    def step(bad: bool) -> None:
        for p in params:
            p.grad = torch.ones_like(p)
        if bad:
            params[0].grad[0] = float("nan")
        module.on_before_optimizer_step(opt)
        opt.step()

    step(bad=False)  # the state exists from here on
    assert module.__dict__.get("_nonfinite_counts") is None  # the first step: host path
    weights = [p.detach().clone() for p in params]
    state = [{k: v.clone() for k, v in opt.state[p].items()} for p in params]
    step(bad=True)
    assert params[0].grad is not None and opt.found_inf.item() == 1.0  # skipped by the flag, not by dropping
    assert all(torch.equal(w, p) for w, p in zip(weights, params, strict=True))
    assert all(torch.equal(v, opt.state[p][k]) for s, p in zip(state, params, strict=True) for k, v in s.items())
    assert module.skipped_steps == 1 and module._nonfinite_run == 1
    step(bad=False)
    assert opt.found_inf.item() == 0.0 and not any(torch.equal(w, p) for w, p in zip(weights, params, strict=True))
    assert module.skipped_steps == 1 and module._nonfinite_run == 0
    step(bad=True)
    step(bad=True)
    with pytest.raises(FloatingPointError, match="3 steps in a row .* 4 skipped in all"):
        step(bad=True)


def test_skipped_step_counts_carry_over_a_resume() -> None:
    """train/skipped_steps and the count of non-finite steps in a row are saved in checkpoints (a resumed run logged
    0 skipped steps after the resume, and its divergence stop counted the steps in a row from 0 again), from the
    device's counters of fused steps or the host's."""
    module = DetectorModule(tiny(), RegionLoss, skip_nonfinite=3)
    module.skipped_steps, module._nonfinite_run = 3, 1
    ckpt: dict = {}
    module.on_save_checkpoint(ckpt)
    assert ckpt["yolo9000_skipped_steps"] == [3, 1]
    module._nonfinite_counts = torch.tensor([5, 2])  # fused steps counted on the device since
    module.on_save_checkpoint(ckpt)
    assert ckpt["yolo9000_skipped_steps"] == [5, 2]
    resumed = DetectorModule(tiny(), RegionLoss, skip_nonfinite=3)
    resumed.on_load_checkpoint(ckpt)
    assert (resumed.skipped_steps, resumed._nonfinite_run) == (5, 2)
    assert resumed._nonfinite_host_counts().tolist() == [5, 2]  # where the device's counters start again
    old = DetectorModule(tiny(), RegionLoss, skip_nonfinite=3)
    old.on_load_checkpoint({})  # a checkpoint from before: none skipped
    assert (old.skipped_steps, old._nonfinite_run) == (0, 0)


def test_diagnostics_logged_fresh_on_the_steps_the_loggers_write(tmp_path) -> None:
    """The loss is logged every step (progress bar); its terms and the diagnostics (avg IoU, recall, input size,
    seen...) only on the steps the loggers write, with that step's values: ``train/seen`` in the CSV is the images
    seen up to that very step (a value logged earlier and written later would lag). The epoch line averages the
    terms every step returns (EpochLog), not the logged ones."""
    import csv

    import pytorch_lightning as pl
    from pytorch_lightning.loggers import CSVLogger
    from torch.utils.data import DataLoader

    gen = torch.Generator().manual_seed(0)
    batch = {
        "images": torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8, generator=gen),
        "targets": torch.tensor([[[0.5, 0.5, 0.3, 0.4, 1.0]], [[0.3, 0.6, 0.2, 0.2, 2.0]]]),
        "target_mask": torch.ones(2, 1, dtype=torch.bool),
    }
    module = DetectorModule(tiny(), RegionLoss, burn_in=0)
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=6,
        log_every_n_steps=3,
        logger=CSVLogger(tmp_path, name="", version=""),
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
    )
    calls: list[str] = []
    real_log = module.log
    module.log = lambda name, *a, **k: calls.append(name) or real_log(name, *a, **k)  # type: ignore[method-assign]
    trainer.fit(module, train_dataloaders=DataLoader([batch] * 6, batch_size=None))
    with open(tmp_path / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/seen")]
    assert [(int(r["step"]), float(r["train/seen"])) for r in rows] == [(2, 6.0), (5, 12.0)]
    assert all(r["train/avg_iou"] and r["train/coord"] and r["train/input_size"] == "64.0" for r in rows)
    assert calls.count("train/loss") == 6  # every step
    assert calls.count("train/seen") == calls.count("train/avg_iou") == calls.count("train/coord") == 2


def test_epoch_line_averages_the_terms_every_step_returned() -> None:
    """EpochLog's means come from the training steps' outputs: the loss over every batch, each term over the
    batches that returned it (a joint batch without classification images returns no classification loss), not
    over all batches and not from a value a logger last saw."""
    from types import SimpleNamespace

    from yolo9000.callbacks.progress import EpochLog

    cb = EpochLog()
    trainer = SimpleNamespace(world_size=1, current_epoch=0, global_step=0)
    cb.on_train_epoch_start(trainer, None)  # type: ignore[arg-type]
    steps = [
        {
            "loss": torch.tensor(4.0),
            "terms": {"train/coord": torch.tensor(1.0), "train/classification/loss": torch.tensor(2.0)},
        },
        {"loss": torch.tensor(2.0), "terms": {"train/coord": torch.tensor(3.0)}},
        {"loss": torch.tensor(3.0), "terms": {"train/coord": torch.tensor(2.0)}},
    ]
    batch = {"images": torch.zeros(2, 3, 8, 8)}
    for out in steps:
        cb.on_train_batch_start(trainer, None)  # type: ignore[arg-type]
        cb.on_train_batch_end(trainer, None, out, batch, 0)  # type: ignore[arg-type]
    assert cb.mean("train/loss") == pytest.approx(3.0)
    assert cb.mean("train/coord") == pytest.approx(2.0)
    assert cb.mean("train/classification/loss") == pytest.approx(2.0)  # one batch had it: not 2 / 3
    assert cb.mean("train/top1") is None and cb._images == 6


@pytest.mark.parametrize(("max_steps", "eta"), [(-1, "ETA 1m12s"), (12, "ETA 8s")])
def test_epoch_line_eta_counts_max_steps(monkeypatch: pytest.MonkeyPatch, max_steps: int, eta: str) -> None:
    """The ETA of the epoch line: epochs left at the pace so far, or the steps left to trainer.max_steps when those
    end the run first (a 3-step smoke test printed half an hour)."""
    from types import SimpleNamespace

    import yolo9000.callbacks.progress as progress

    clock = iter([100.0, 108.0])  # train start, then the end of the first epoch: 8 s
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    cb = progress.EpochLog()
    trainer = SimpleNamespace(world_size=1, global_step=0, current_epoch=0, max_epochs=10, max_steps=max_steps)
    cb.on_train_start(trainer, None)  # type: ignore[arg-type]
    trainer.global_step = 6  # 6 steps in the first epoch: 8 s; 9 epochs left (72 s) or 6 steps left (8 s)
    monkeypatch.setattr(cb, "_lr", lambda t: None)
    line = cb.line(trainer)  # type: ignore[arg-type]
    assert line.endswith(f"8s elapsed, {eta}")
    assert line.startswith("epoch 1/10 (step 6/12) |" if max_steps > 0 else "epoch 1/10 |")  # where a step cap stands
