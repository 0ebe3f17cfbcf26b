"""Mutation-audit tests of the training machinery: darknet's learning-rate policies (``get_current_rate``), its SGD
update (``update_convolutional_layer``: decay and momentum order), which tensors get weight decay, the learning rate
Lightning applies per optimizer step, loss normalisation by the batch, the ``seen`` counter given to evaluation,
the classifier's losses, and the pretrained loader's refusals. Expected values are darknet's formulas evaluated by
hand here, not the library's own code."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from conftest import quiet_trainer
from yolo9000.darknet import save_weights
from yolo9000.loss import RegionLoss
from yolo9000.models.darknet19 import Darknet19, Darknet19Classifier
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules.classifier import ClassifierModule
from yolo9000.modules.detector import DetectorModule
from yolo9000.modules.pretrained import load_pretrained
from yolo9000.modules.schedules import DarknetPoly, DarknetSteps, darknet_optimization, param_groups, resolve_steps


def _hp(**kw: object) -> SimpleNamespace:
    base = {
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "lr_policy": "steps",
        "power": 4.0,
        "burn_in": 0,
        "steps": None,
        "scales": None,
    }
    return SimpleNamespace(**{**base, **kw})


# ------------------------------------------------------------------------------------------- learning-rate policies
def test_fraction_steps_round_to_the_nearest_iteration_and_one_is_a_fraction() -> None:
    """0.29 * 100 is 28.999999999999996 in floats: the step is iteration 29, not 28; a step at 1.0 is the run's end
    (every step <= 1 is a fraction)."""
    assert resolve_steps([0.29, 0.57], 100) == [29, 57]
    assert resolve_steps([0.5, 1.0], 200) == [100, 200]


def test_steps_policy_after_burn_in_as_darknet() -> None:
    """darknet: ``if (batch_num < burn_in)`` burn-in, else STEPS multiplies ``scales[i]`` for every ``steps[i] <=
    batch_num``; a step at the burn-in's last batch applies there (batch 10 of burn_in 10: 0.1, not 1.0)."""
    s = DarknetSteps(burn_in=10, steps=[10], scales=[0.1])
    assert s(8) == pytest.approx((9 / 10) ** 4)  # batch 9
    assert s(9) == pytest.approx(0.1)  # batch 10


def test_poly_policy_at_the_end_of_burn_in_as_darknet() -> None:
    """darknet's POLY at batch_num == burn_in is already the poly value: (1 - 10 / 100)^4, not the burn-in's 1."""
    p = DarknetPoly(100, power=4, burn_in=10)
    assert p(8) == pytest.approx((9 / 10) ** 4)  # batch 9: burn-in
    assert p(9) == pytest.approx(0.9**4)  # batch 10: poly


# --------------------------------------------------------------------------------------------- darknet's SGD update
def test_fully_connected_weights_are_decayed() -> None:
    """darknet decays connected layers' weights (``update_connected_layer``) as conv weights: the fc head's Linear
    weights are in the decay group, its biases are not."""
    m = YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0]], head="fc", fc_grid=2, fc_hidden=8)
    decay, no_decay = param_groups(m, 5e-4)
    linears = [mod for mod in m.modules() if isinstance(mod, nn.Linear)]
    assert len(linears) == 2
    decayed, plain = {id(p) for p in decay["params"]}, {id(p) for p in no_decay["params"]}
    assert all(id(lin.weight) in decayed and id(lin.bias) in plain for lin in linears)


def test_sgd_steps_as_darknets_update() -> None:
    """Four optimizer steps of :func:`darknet_optimization` (loss normalised by the batch: gradients = darknet's
    batch sums / batch) against darknet's ``update_convolutional_layer`` written out: for weights
    ``u += -decay * batch * w; w += lr / batch * u; u *= momentum``, for biases and BN scales the same without the
    decay; ``u`` accumulates the negative batch-summed gradient. Learning rates of ``policy=steps``, burn_in 2,
    power 2, steps 3, scales 0.5, by hand: batch 1: 0.1 * (1/2)^2, batch 2: 0.1, batches 3 and 4: 0.05."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 1, bias=True), nn.BatchNorm2d(3))
    conv, bn = model[0], model[1]
    hp = _hp(lr=0.1, momentum=0.9, weight_decay=0.05, burn_in=2, power=2.0, steps=[3], scales=[0.5])
    cfg = darknet_optimization(model, hp, total_steps=100)
    opt, sched = cfg["optimizer"], cfg["lr_scheduler"]["scheduler"]
    assert cfg["lr_scheduler"]["interval"] == "step"
    rates = [0.1 * (1 / 2) ** 2, 0.1, 0.05, 0.05]
    batch, decay, momentum = 4, 0.05, 0.9
    # darknet's state, in float64
    w, b = conv.weight.detach().double().clone(), conv.bias.detach().double().clone()
    s = bn.weight.detach().double().clone()
    uw, ub, us = torch.zeros_like(w), torch.zeros_like(b), torch.zeros_like(s)
    gen = torch.Generator().manual_seed(1)
    for lr in rates:
        sums = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in (w, b, s)]  # batch-summed grads
        conv.weight.grad, conv.bias.grad, bn.weight.grad = (g.float() / batch for g in sums)
        bn.bias.grad = torch.zeros_like(bn.bias)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)
        opt.step()
        sched.step()
        uw -= sums[0]
        ub -= sums[1]
        us -= sums[2]
        uw += -decay * batch * w
        w += lr / batch * uw
        uw *= momentum
        b += lr / batch * ub
        ub *= momentum
        s += lr / batch * us
        us *= momentum
        torch.testing.assert_close(conv.weight.detach().double(), w, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(conv.bias.detach().double(), b, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(bn.weight.detach().double(), s, rtol=1e-5, atol=1e-6)


def test_adam_switch() -> None:
    model = nn.Conv2d(1, 1, 1)
    cfg = darknet_optimization(model, _hp(optimizer="adam", lr=0.003), total_steps=10)
    assert type(cfg["optimizer"]) is torch.optim.Adam and cfg["optimizer"].param_groups[0]["lr"] == 0.003
    assert type(darknet_optimization(model, _hp(), total_steps=10)["optimizer"]) is torch.optim.SGD
    with pytest.raises(ValueError, match="optimizer must be"):
        darknet_optimization(model, _hp(optimizer="rmsprop"), total_steps=10)


def test_lightning_applies_poly_with_burn_in_per_optimizer_step() -> None:
    """A real fit: 2 epochs of 4 batches, 2 batches accumulated per step = 4 optimizer steps (darknet's
    max_batches counts updates). poly power 2 with burn_in 3, lr 0.1, by hand: batch 1: (1/3)^2, batch 2: (2/3)^2,
    batch 3: (1 - 3/4)^2, batch 4: 0. The scheduler steps every optimizer step, not every epoch."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    torch.manual_seed(0)
    module = ClassifierModule(
        Darknet19Classifier(Darknet19(width=0.125), 3), lr=0.1, lr_policy="poly", power=2.0, burn_in=3
    )
    seen: list[float] = []

    class Rates(pl.Callback):
        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:  # noqa: ANN001
            seen.append(optimizer.param_groups[0]["lr"])

    batches = [{"images": torch.rand(2, 3, 32, 32), "labels": torch.tensor([0, 1])} for _ in range(4)]
    trainer = quiet_trainer(max_epochs=2, accumulate_grad_batches=2, limit_val_batches=0, callbacks=[Rates()])
    trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
    assert seen == pytest.approx([0.1 / 9, 0.1 * 4 / 9, 0.1 / 16, 0.0])


@pytest.mark.parametrize(
    ("policy", "extended"),
    [
        # poly over 8 steps from step 4: 0.1 * (1 - n / 8) at batch n = 5..8 (the first run's end, 4: lr 0 for all)
        ({"lr_policy": "poly", "power": 1.0}, [0.1 * 3 / 8, 0.1 * 2 / 8, 0.1 / 8, 0.0]),
        # a step at 0.75 of the run: 6 of 8 (the first run's, 3 of 4: 0.01 for all)
        ({"lr_policy": "steps", "steps": [0.75], "scales": [0.1]}, [0.1, 0.01, 0.01, 0.01]),
    ],
)
def test_a_run_trained_further_replans_its_schedule_for_the_longer_run(
    tmp_path: Path, policy: dict, extended: list[float]
) -> None:
    """A finished run resumed with a larger trainer.max_epochs goes on with the schedule a run of that length has
    (poly's end, steps given as fractions of the run), not the checkpoint's (planned for the first run's length:
    poly trained the added epochs at lr 0); a resume of the same length applies the checkpoint's as before."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    seen: list[float] = []

    class Rates(pl.Callback):
        def on_before_optimizer_step(self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer) -> None:  # noqa: ANN001
            seen.append(optimizer.param_groups[0]["lr"])

    batches = [{"images": torch.rand(2, 3, 32, 32), "labels": torch.tensor([0, 1])} for _ in range(2)]

    def fit(max_epochs: int, ckpt_path: Path | None = None, save: Path | None = None) -> list[float]:
        torch.manual_seed(0)
        module = ClassifierModule(Darknet19Classifier(Darknet19(width=0.125), 3), lr=0.1, burn_in=0, **policy)
        trainer = quiet_trainer(max_epochs=max_epochs, limit_val_batches=0, callbacks=[Rates()])
        seen.clear()
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None), ckpt_path=ckpt_path)
        if save is not None:
            trainer.save_checkpoint(save)
        return list(seen)

    whole = fit(4)
    assert whole[4:] == pytest.approx(extended)
    fit(2, save=tmp_path / "two.ckpt")  # the first run: 2 epochs, 4 steps
    assert fit(4, ckpt_path=tmp_path / "two.ckpt") == pytest.approx(extended)  # trained further: 4 more steps
    fit(1, save=tmp_path / "one.ckpt")
    first = fit(2)
    assert fit(2, ckpt_path=tmp_path / "one.ckpt") == pytest.approx(first[2:])  # the same length: as before


# ------------------------------------------------------------------------------------ losses, seen, normalisation
def _tiny_detector() -> DetectorModule:
    return DetectorModule(YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.0], [2.0, 2.0]]), RegionLoss, burn_in=1)


class _Stop(Exception):
    pass


def test_detector_loss_and_terms_divided_by_the_batch_and_eval_gets_seen() -> None:
    """darknet sums the loss over the batch and divides the learning rate by it: the step's loss (and the epoch
    line's terms, the validation loss) is the batch-summed loss / batch. Evaluation scores the loss with the images
    seen so far (the 12,800 rule of the prior term), not 0."""
    module = _tiny_detector()
    outs: list = []
    seens: list[int] = []
    original = module.criterion.forward

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seens.append(args[4])
        outs.append(original(*args, **kwargs))
        return outs[-1]

    logged: dict[str, torch.Tensor] = {}
    module.criterion.forward = spy  # type: ignore[method-assign]
    module.log = lambda name, value, *a, **k: logged.__setitem__(name, value)  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    batch = {
        "images": torch.rand(3, 3, 64, 64),
        "targets": torch.tensor(
            [[[0.5, 0.5, 0.2, 0.2, 1.0]], [[0.3, 0.3, 0.1, 0.1, 0.0]], [[0.6, 0.4, 0.3, 0.2, 2.0]]]
        ),
        "target_mask": torch.ones(3, 1, dtype=torch.bool),
        "transforms": None,
        "orig_sizes": None,
    }
    res = module.training_step(batch, 0)
    out = outs[-1]
    assert float(out.loss.detach()) > 0
    torch.testing.assert_close(res["loss"], out.loss / 3)
    for k in ("coord", "obj", "noobj", "cls"):
        torch.testing.assert_close(res["terms"][f"train/{k}"], getattr(out, k).detach() / 3)
    module.seen.fill_(20000)
    module.on_load_checkpoint({})  # the buffer is the count again

    def stop(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise _Stop

    module.predict_raw = stop  # type: ignore[method-assign]
    with pytest.raises(_Stop):
        module._eval_step(batch, module.val_eval, "val")
    assert seens[-1] == 20000
    torch.testing.assert_close(logged["val/loss"], outs[-1].loss / 3)


def test_classifier_losses_are_means_over_the_batch() -> None:
    """Flat: the training loss is the batch mean of the (smoothed) cross-entropy, the evaluation loss the
    unsmoothed one; with a tree the mean of the per-image hierarchical loss (darknet: batch sum, lr / batch)."""
    from yolo9000.modules.classifier import tree_cross_entropy
    from yolo9000.wordtree import WordTree

    torch.manual_seed(0)
    module = ClassifierModule(Darknet19Classifier(Darknet19(width=0.125), 3), label_smoothing=0.1)
    module.log = lambda *a, **k: None  # type: ignore[method-assign]
    module.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    images, labels = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 1])
    module.eval()  # BN: the same logits in the step and here
    loss = module.training_step({"images": images, "labels": labels}, 0)["loss"]
    logits = module.model(images)
    torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, labels, label_smoothing=0.1))
    module.update_metrics("val", logits, labels)
    torch.testing.assert_close(
        module.val_loss.compute(), nn.functional.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6
    )

    tree = WordTree([-1, -1, 0, 0], ["a", "b", "c", "d"])  # a, b roots; c, d under a
    tm = ClassifierModule(Darknet19Classifier(Darknet19(width=0.125), 4), tree=tree).eval()
    tm.log = lambda *a, **k: None  # type: ignore[method-assign]
    tm.log_dict = lambda *a, **k: None  # type: ignore[method-assign]
    tlabels = torch.tensor([2, 3, 1, 2])
    tloss = tm.training_step({"images": images, "labels": tlabels}, 0)["loss"]
    per_image = tree_cross_entropy(tm.model(images), tlabels, tree)
    torch.testing.assert_close(tloss, per_image.sum() / 4)


# ------------------------------------------------------------------------------------------- non-finite warnings
def test_nonfinite_warnings_each_of_the_first_ten_then_every_hundredth(caplog: pytest.LogCaptureFixture) -> None:
    module = _tiny_detector()
    for before, total, warned in ((9, 10, True), (10, 11, False), (99, 100, True), (100, 101, False)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="yolo9000.modules.base"):
            module._warn_nonfinite(before, total)
        assert bool(caplog.records) == warned, (before, total)


# ------------------------------------------------------------------------------------------------ pretrained loads
def test_whole_network_load_refuses_missing_and_unexpected_tensors(tmp_path: Path) -> None:
    """``part=None``: a checkpoint with a tensor the network lacks, or without one it has, is a ValueError naming
    the file and the tensor (not silently dropped, not a bare RuntimeError)."""
    net = Darknet19Classifier(Darknet19(width=0.125), 3)
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    extra = tmp_path / "extra.ckpt"
    torch.save({"state_dict": {**state, "model.head.extra.weight": torch.zeros(3)}}, extra)
    with pytest.raises(ValueError, match=r"extra\.ckpt.*unexpected head\.extra\.weight"):
        load_pretrained(Darknet19Classifier(Darknet19(width=0.125), 3), extra)
    short = tmp_path / "short.ckpt"
    torch.save({"state_dict": {k: v for k, v in state.items() if k != "model.head.conv.bias"}}, short)
    with pytest.raises(ValueError, match=r"short\.ckpt.*missing head\.conv\.bias"):
        load_pretrained(Darknet19Classifier(Darknet19(width=0.125), 3), short)


def test_darknet_backbone_file_warns_only_when_it_fills_part_of_the_backbone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A darknet file with all 18 backbone convs (``.conv.23``) fills the backbone: an info line; one with 10 of
    them leaves 8 random: a warning."""
    src = Darknet19(width=0.125)
    full, part = tmp_path / "full.conv.23", tmp_path / "part.conv.13"
    save_weights(src, full)
    save_weights(src, part, cutoff=10)
    for path, loaded, warned in ((full, 18, False), (part, 10, True)):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="yolo9000"):
            assert load_pretrained(Darknet19(width=0.125), path, part="backbone") == loaded
        assert any(r.levelno == logging.WARNING for r in caplog.records) == warned, path
        assert f"{loaded} of 18 conv layers" in caplog.text


def test_steps_mixing_fractions_and_iterations_are_refused() -> None:
    """Whole iterations may include darknet's -1 (yolov2.cfg: ``steps=-1,100,20000,30000``); a fraction among
    them would silently be iteration 0 (the scale from the first batch)."""
    assert resolve_steps([-1, 100, 20000], 1000) == [-1, 100, 20000]
    with pytest.raises(ValueError, match="not a mix"):
        resolve_steps([0.5, 400], 1000)


def test_a_run_ending_at_max_steps_inside_an_epoch_validates_its_last_weights() -> None:
    """``trainer.max_steps`` inside an epoch (darknet's max_batches; experiment=yolo9000 has no epoch limit): the
    last step is validated, so its weights can be the best checkpoint tested; without the callback Lightning stops
    unvalidated (validation periods of 5 epochs never reached). The trainer's period is given back."""
    import pytorch_lightning as pl
    from torch.utils.data import DataLoader

    from yolo9000.callbacks.checkpointing import ValidateLastEpoch

    validated: list[int] = []

    class Steps(pl.Callback):
        def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
            if not trainer.sanity_checking:
                validated.append(trainer.global_step)

    batches = [{"images": torch.rand(2, 3, 32, 32), "labels": torch.tensor([0, 1])} for _ in range(4)]
    # 6: inside epoch 2; 8: at the end of epoch 2, not a validated one either
    cases = [(6, [Steps()], []), (6, [Steps(), ValidateLastEpoch()], [6]), (8, [Steps(), ValidateLastEpoch()], [8])]
    for steps, callbacks, expected in cases:
        validated.clear()
        module = ClassifierModule(Darknet19Classifier(Darknet19(width=0.125), 3), lr=0.01, burn_in=0)
        trainer = quiet_trainer(
            max_steps=steps, max_epochs=-1, check_val_every_n_epoch=5, num_sanity_val_steps=0, callbacks=callbacks
        )
        loader = DataLoader(batches, batch_size=None)
        trainer.fit(module, train_dataloaders=loader, val_dataloaders=loader)
        assert trainer.global_step == steps and validated == expected
        assert trainer.check_val_every_n_epoch == 5


def test_an_epoch_whose_every_training_batch_was_empty_stops_the_run(caplog: pytest.LogCaptureFixture) -> None:
    """Every training image unreadable (data.on_error=skip): each batch was skipped with a warning and the run went
    on at 0 img/s to a checkpoint and exit 0. An epoch with no readable training image now stops the run
    (DataError naming the epoch and its batch count); an epoch with one readable batch among empty ones trains."""
    from torch.utils.data import DataLoader

    from yolo9000.data.records import DataError

    empty = {"images": torch.zeros(0, 3, 32, 32), "labels": torch.zeros(0, dtype=torch.long)}
    full = {"images": torch.rand(2, 3, 32, 32), "labels": torch.tensor([0, 1])}

    def fit(batches: list[dict[str, torch.Tensor]]) -> ClassifierModule:
        module = ClassifierModule(Darknet19Classifier(Darknet19(width=0.125), 3), lr=0.01, burn_in=0)
        trainer = quiet_trainer(max_epochs=2, num_sanity_val_steps=0, limit_val_batches=0)
        trainer.fit(module, train_dataloaders=DataLoader(batches, batch_size=None))
        return module

    with pytest.raises(DataError, match="epoch 0: none of its 3 training batches held a readable image"):
        fit([empty, empty, empty])
    assert fit([empty, full, empty]).current_epoch == 2  # both epochs trained
