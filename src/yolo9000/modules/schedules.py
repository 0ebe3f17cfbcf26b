"""darknet's optimisation: SGD with decay on conv weights only, and its learning-rate policies as LambdaLR
multipliers (one optimizer step = one darknet iteration). Shared by the detector and the classifier."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn


def fraction_steps(steps: Sequence[float] | None) -> bool:
    """Whether ``steps`` are fractions of the run (all <= 1), not iterations."""
    return bool(steps) and all(float(s) <= 1.0 for s in steps)  # type: ignore[union-attr]


def resolve_steps(steps: Sequence[float], total: int) -> list[int]:
    """Steps given as fractions (all <= 1) of ``total`` iterations, or as absolute iterations (whole numbers; darknet's
    yolov2.cfg has ``steps=-1,100,20000,30000``); a fraction among absolute steps is a ValueError (it would be
    iteration 0)."""
    if fraction_steps(steps):
        return [int(round(float(s) * total)) for s in steps]
    if any(float(s) != int(float(s)) for s in steps):
        raise ValueError(
            f"steps {list(steps)}: either all fractions of the run (<= 1) or all whole iterations, not a mix"
        )
    return [int(s) for s in steps]


class DarknetSteps:
    """``policy=steps`` with ``burn_in``: lr * (it / burn_in)^power during burn-in, then times ``scales[k]`` after
    each of ``steps[k]``. ``start``: the iterations done before this run (darknet weights' ``seen`` / batch: darknet
    goes on from there), added to the scheduler's count. Picklable (checkpoints keep the scheduler, ``start`` too)."""

    def __init__(
        self, burn_in: int, steps: Sequence[int], scales: Sequence[float], power: float = 4.0, start: int = 0
    ) -> None:
        if len(steps) != len(scales):
            raise ValueError(f"steps {list(steps)} and scales {list(scales)} differ in length")
        self.burn_in, self.steps, self.scales, self.power = burn_in, list(steps), list(scales), power
        self.start = int(start)

    def __call__(self, it: int) -> float:
        batch_num = self.__dict__.get("start", 0) + it + 1  # darknet's get_current_batch() at update time counts
        # this batch (a scheduler pickled before ``start`` existed has none: 0)
        if batch_num < self.burn_in:
            return (batch_num / self.burn_in) ** self.power
        factor = 1.0
        for step, scale in zip(self.steps, self.scales, strict=True):
            if batch_num >= step:
                factor *= scale
        return factor


class DarknetPoly:
    """``policy=poly``: lr * (1 - it / max_batches)^power (darknet19.cfg: power 4), after a burn-in that also
    uses ``power`` (darknet's ``get_current_rate``). ``start``: as :class:`DarknetSteps`' (``max_iters`` counts from
    iteration 0, so a run of ``n`` steps from ``start`` takes ``start + n``)."""

    def __init__(self, max_iters: int, power: float = 4.0, burn_in: int = 0, start: int = 0) -> None:
        self.max_iters, self.power, self.burn_in, self.start = max(1, max_iters), power, burn_in, int(start)

    def __call__(self, it: int) -> float:
        batch_num = self.__dict__.get("start", 0) + it + 1  # as DarknetSteps
        if batch_num < self.burn_in:
            return (batch_num / self.burn_in) ** self.power
        return max(0.0, 1.0 - batch_num / self.max_iters) ** self.power


def replan_schedule(policy: Any, planned: Any, fractions: bool) -> bool:
    """A schedule restored from a checkpoint (``policy``) re-planned for this run's length, the one
    ``configure_optimizers`` built for it (``planned``): poly's end and steps given as fractions of the run
    (``fractions``) move with a longer (or shorter) ``trainer.max_epochs`` / ``max_steps``, counted from the
    restored schedule's own ``start``; absolute steps stay. A resume of the same length changes nothing; a run
    trained further no longer keeps the first run's end (poly: a learning rate of 0 for every added step).
    Returns whether anything changed."""
    start, planned_start = policy.__dict__.get("start", 0), planned.__dict__.get("start", 0)
    if isinstance(policy, DarknetPoly) and isinstance(planned, DarknetPoly):
        max_iters = max(1, start + planned.max_iters - planned_start)
        changed = max_iters != policy.max_iters
        policy.max_iters = max_iters
        return changed
    if isinstance(policy, DarknetSteps) and isinstance(planned, DarknetSteps) and fractions:
        steps = [start + s - planned_start for s in planned.steps]
        changed = steps != policy.steps
        policy.steps = steps
        return changed
    return False


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """darknet decays conv (and connected) weights only: BN scales/shifts and biases get no decay."""
    decay, no_decay = [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            is_weight = name == "weight" and isinstance(module, nn.Conv2d | nn.Linear)
            (decay if is_weight else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def darknet_optimization(
    model: nn.Module, hp: Any, total_steps: int, flags: Mapping[str, bool] | None = None
) -> dict[str, Any]:
    """Lightning's ``configure_optimizers`` answer from a module's hyper-parameters: ``optimizer`` (sgd | adam),
    ``lr``, ``momentum``, ``weight_decay``, ``lr_policy`` (steps | poly), ``power``, ``burn_in``, ``steps``,
    ``scales``, and ``start_iteration`` when it has one (the schedule's iteration at the start; poly's end is then
    ``start_iteration + total_steps``); the scheduler steps once per optimizer step. ``flags``: the optimizer's
    ``fused`` / ``foreach`` (:func:`yolo9000.speed.optimizer_flags`)."""
    groups = param_groups(model, hp.weight_decay)
    if hp.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, **(flags or {}))
    elif hp.optimizer == "adam":
        opt = torch.optim.Adam(groups, lr=hp.lr, **(flags or {}))
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {hp.optimizer!r}")
    start = int(getattr(hp, "start_iteration", 0) or 0)
    if hp.lr_policy == "poly":
        policy: DarknetSteps | DarknetPoly = DarknetPoly(start + total_steps, hp.power, hp.burn_in, start)
    elif hp.lr_policy == "steps":
        steps = resolve_steps(hp.steps or [], total_steps)
        if fraction_steps(hp.steps):  # fractions of this run: from its start
            steps = [start + s for s in steps]
        policy = DarknetSteps(hp.burn_in, steps, hp.scales or [], hp.power, start)
    else:
        raise ValueError(f"lr_policy must be 'steps' or 'poly', got {hp.lr_policy!r}")
    sched = torch.optim.lr_scheduler.LambdaLR(opt, policy)
    return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
