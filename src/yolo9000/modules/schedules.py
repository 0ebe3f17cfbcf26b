"""darknet's learning-rate policies as LambdaLR multipliers (per optimizer step = darknet iteration)."""

from __future__ import annotations

from collections.abc import Sequence


def resolve_steps(steps: Sequence[float], total: int) -> list[int]:
    """Steps given as fractions (all <= 1) of ``total`` iterations, or as absolute iterations."""
    if steps and all(float(s) <= 1.0 for s in steps):
        return [int(round(float(s) * total)) for s in steps]
    return [int(s) for s in steps]


class DarknetSteps:
    """``policy=steps`` with ``burn_in``: lr * (it / burn_in)^power during burn-in, then times ``scales[k]`` after
    each of ``steps[k]``. Picklable (checkpoints keep the scheduler)."""

    def __init__(self, burn_in: int, steps: Sequence[int], scales: Sequence[float], power: float = 4.0) -> None:
        if len(steps) != len(scales):
            raise ValueError(f"steps {list(steps)} and scales {list(scales)} differ in length")
        self.burn_in, self.steps, self.scales, self.power = burn_in, list(steps), list(scales), power

    def __call__(self, it: int) -> float:
        batch_num = it + 1  # darknet's get_current_batch() at update time counts this batch
        if batch_num < self.burn_in:
            return (batch_num / self.burn_in) ** self.power
        factor = 1.0
        for step, scale in zip(self.steps, self.scales, strict=True):
            if batch_num >= step:
                factor *= scale
        return factor


class DarknetPoly:
    """``policy=poly``: lr * (1 - it / max_batches)^power (darknet19.cfg: power 4), after a burn-in that also
    uses ``power`` (darknet's ``get_current_rate``)."""

    def __init__(self, max_iters: int, power: float = 4.0, burn_in: int = 0) -> None:
        self.max_iters, self.power, self.burn_in = max(1, max_iters), power, burn_in

    def __call__(self, it: int) -> float:
        batch_num = it + 1  # as DarknetSteps
        if batch_num < self.burn_in:
            return (batch_num / self.burn_in) ** self.power
        return max(0.0, 1.0 - batch_num / self.max_iters) ** self.power
