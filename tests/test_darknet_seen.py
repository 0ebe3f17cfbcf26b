"""darknet goes on from the ``seen`` in a weights file's header: ``load_network`` reads it and only ``-clear`` resets
it, so a whole file (a backup of a darknet training) continues the count that stops the prior-matching term at
12,800 images and the schedule at ``get_current_batch = seen / [net] batch``. ``model=darknet`` does the same from
``model.net.weights``; ``model.start_seen=0`` is ``-clear``. Learning rates below are hand-computed from the cfg's
``[net]`` (steps=-1,100,20000,30000 scales=.1,10,.1,.1 of yolov2-tiny-voc.cfg, burn_in=1000, power 4)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import compose_config, run_script
from test_darknet import randomize, scaled_cfg
from yolo9000.build import build
from yolo9000.darknet import darknet_detector, save_weights
from yolo9000.modules.schedules import DarknetPoly, DarknetSteps, darknet_optimization

SEEN = 64 * 20050 + 5  # 20,050 iterations of batch 64 and a few images


def training_cfg(tmp_path: Path) -> Path:
    """yolov2-tiny-voc.cfg at 1/8 width and 3 classes, with its training [net] (batch 64) and a burn-in."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3)
    text = path.read_text()
    assert "batch=1\nsubdivisions=1" in text
    path.write_text(text.replace("batch=1\nsubdivisions=1", "batch=64\nsubdivisions=2\nburn_in=1000", 1))
    return path


def compose(tmp_path: Path, *more: str, seen: int | None = SEEN) -> object:
    cfg_path = training_cfg(tmp_path)
    given = ["model=darknet", f"model.net.cfg={cfg_path}", "data.max_images=4", "data.num_workers=0"]
    if seen is not None:
        weights = tmp_path / "backup.weights"
        save_weights(randomize(darknet_detector(cfg_path), seed=3), weights, seen=seen)
        given.append(f"model.net.weights={weights}")
    return compose_config("train", *given, "data.img_size=64", *more)


def first_lr(module: object, total_steps: int = 50) -> float:
    """The learning rate of the first optimizer step as configure_optimizers sets it up."""
    opt = darknet_optimization(module.model, module.hparams, total_steps)["optimizer"]  # type: ignore[attr-defined]
    return float(opt.param_groups[0]["lr"])


def test_a_whole_weights_file_continues_its_seen_and_schedule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """seen = 64 x 20,050 + 5 in the header: start_seen is it, the schedule starts at iteration 20,050 (past burn-in,
    -1, 100 and 20,000: lr 0.001 x .1 x 10 x .1 = 1e-4), the module's seen counts on from it, and the build says
    so with the way back to 0."""
    cfg = compose(tmp_path)
    assert (cfg.model.start_seen, cfg.model.start_iteration) == (SEEN, 20050)
    with caplog.at_level(logging.INFO, "yolo9000"):
        module = build(cfg).module
    assert int(module.seen) == SEEN and module.count_seen(4) == SEEN + 4
    assert first_lr(module) == pytest.approx(1e-4, rel=1e-6)
    assert f"seen {SEEN} in its header" in caplog.text and "iteration 20050" in caplog.text
    assert "lr x 0.1 now" in caplog.text and "model.start_seen=0 starts both at 0 (darknet's -clear)" in caplog.text


def test_start_seen_0_is_darknets_clear_and_no_file_starts_at_0(tmp_path: Path) -> None:
    """``model.start_seen=0`` (darknet's -clear): iteration 0 too, the first step in burn-in: 0.001 x (1/1000)^4;
    without a weights file, or with a partial one written by ``darknet partial`` (seen 0), the same."""
    cleared = compose(tmp_path / "a", "model.start_seen=0")
    assert (cleared.model.start_seen, cleared.model.start_iteration) == (0, 0)
    module = build(cleared).module
    assert int(module.seen) == 0 and first_lr(module) == pytest.approx(0.001 * 1e-12, rel=1e-6)
    assert compose(tmp_path / "b", seen=None).model.start_seen == 0
    assert compose(tmp_path / "c", seen=0).model.start_iteration == 0


def test_a_weights_file_gone_at_resume_leaves_the_count_to_the_checkpoint(tmp_path: Path) -> None:
    """The header is read only where the file is: gone (a resumed run), start_seen is 0 and the scheduler's
    restored state carries the start (LambdaLR keeps its lambdas' attributes); a scheduler pickled before ``start``
    existed counts from 0."""
    cfg = compose(tmp_path)
    Path(cfg.model.net.weights).unlink()
    assert (cfg.model.start_seen, cfg.model.start_iteration) == (0, 0)
    p = torch.nn.Parameter(torch.zeros(1))
    saved = torch.optim.lr_scheduler.LambdaLR(
        torch.optim.SGD([p], lr=0.001), DarknetSteps(1000, [-1, 100, 20000, 30000], [0.1, 10, 0.1, 0.1], 4.0, 20050)
    ).state_dict()
    opt = torch.optim.SGD([p], lr=0.001)
    fresh = torch.optim.lr_scheduler.LambdaLR(opt, DarknetSteps(1000, [-1, 100, 20000, 30000], [0.1, 10, 0.1, 0.1]))
    fresh.load_state_dict(saved)
    assert fresh.lr_lambdas[0].start == 20050 and fresh.lr_lambdas[0](0) == pytest.approx(0.1)
    old = DarknetSteps(1000, [100], [0.1])
    del old.start
    assert old(0) == pytest.approx(1e-12)
    # a checkpoint saved before ``start`` existed resumes counting from 0, not from this run's start
    module = build(compose(tmp_path / "again")).module
    ckpt = {"lr_schedulers": [{"lr_lambdas": [{"burn_in": 1000, "steps": [100], "scales": [0.1], "power": 4.0}]}]}
    module.on_load_checkpoint(ckpt)
    resumed = torch.optim.lr_scheduler.LambdaLR(opt, DarknetSteps(1000, [100], [0.1], 4.0, 20050))
    resumed.load_state_dict({**saved, "lr_lambdas": ckpt["lr_schedulers"][0]["lr_lambdas"]})
    assert resumed.lr_lambdas[0].start == 0


def test_poly_and_fraction_steps_count_from_the_start() -> None:
    """poly from iteration 50 of a 50-step run: (1 - 51 / 100)^4 at the first step; steps given as fractions of
    the run fall that far into it after the start (0.5 of 100 from 1,000: at 1,050)."""
    poly = DarknetPoly(100, 4.0, 0, 50)
    assert poly(0) == pytest.approx(0.49**4) and poly(49) == 0.0
    model = torch.nn.Conv2d(1, 1, 1)
    hp = SimpleNamespace(optimizer="sgd", lr=0.01, momentum=0.9, weight_decay=0.0, lr_policy="steps", power=4.0)
    hp.__dict__.update(burn_in=0, steps=[0.5], scales=[0.1], start_iteration=1000)
    sched = darknet_optimization(model, hp, 100)["lr_scheduler"]["scheduler"]
    assert sched.lr_lambdas[0].steps == [1050]
    assert sched.lr_lambdas[0](48) == 1.0 and sched.lr_lambdas[0](49) == pytest.approx(0.1)
    hp.lr_policy = "poly"
    poly = darknet_optimization(model, hp, 100)["lr_scheduler"]["scheduler"].lr_lambdas[0]
    assert (poly.max_iters, poly.start) == (1100, 1000) and poly(0) == pytest.approx((1 - 1001 / 1100) ** 4)


def test_a_resume_after_the_weights_file_is_gone_is_not_refused(tmp_path: Path) -> None:
    """The run's config has the file's seen and iteration; at resume the file is gone (0, 0): not a difference that
    stops the resume (the checkpoint holds both), while another model setting still is."""
    from omegaconf import OmegaConf

    from yolo9000 import run_folder

    run = {"model": {"start_seen": SEEN, "start_iteration": 20050, "lr": 0.001}}
    (tmp_path / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(run)))
    now = {"model": {"start_seen": 0, "start_iteration": 0, "lr": 0.001}}
    run_folder.check_resume_config(OmegaConf.create(now), tmp_path)
    now["model"]["lr"] = 0.01
    with pytest.raises(run_folder.ResumeRefused, match=r"model\.lr: 0\.001 \(the run\) vs 0\.01 \(now\)"):
        run_folder.check_resume_config(OmegaConf.create(now), tmp_path)


@pytest.mark.slow  # two training runs (~40 s): the parts are in the default suite above
def test_train_py_from_a_backup_goes_on_and_resumes_without_the_file(tmp_path: Path) -> None:
    """`train.py model=darknet` from a backup with SEEN images: after two epochs of 8 images (the second resumed
    with the weights file gone) the checkpoint's seen is SEEN + 16 and its schedule still starts at 20,050 (lr 1e-4)."""
    cfg_path = training_cfg(tmp_path)
    weights = tmp_path / "backup.weights"
    save_weights(randomize(darknet_detector(cfg_path), seed=3), weights, seen=SEEN)
    given = ["model=darknet", f"model.net.cfg={cfg_path}", f"model.net.weights={weights}", "data.max_images=8"]
    given += ["data.batch_size=4", "data.num_workers=0", "data.img_size=64", "data.multiscale.min_size=64"]
    given += ["data.multiscale.max_size=96"]
    out = tmp_path / "run"
    run_script("train.py", out, *given, "trainer.max_epochs=1")
    weights.unlink()
    run_script("train.py", None, f"resume={out}", *given, "trainer.max_epochs=2")
    ckpt = torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["epoch"] == 1 and int(ckpt["state_dict"]["seen"]) == SEEN + 16
    (sched,) = ckpt["lr_schedulers"]
    assert {d["start"] for d in sched["lr_lambdas"]} == {20050} and sched["_last_lr"] == pytest.approx([1e-4, 1e-4])
