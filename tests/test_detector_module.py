"""Training details of the detection module: darknet's decay groups, schedule and the global `seen` counter."""

from __future__ import annotations

import pytest
import torch

from yolo9000.loss import RegionLoss
from yolo9000.models.darknet19 import Darknet19
from yolo9000.models.yolov2 import YOLOv2
from yolo9000.modules.detector import DetectorModule, param_groups
from yolo9000.modules.schedules import DarknetPoly, DarknetSteps, resolve_steps


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
    assert DarknetPoly(100, power=4)(50) == pytest.approx(0.5**4)


class _FakeTrainer:
    world_size = 4


def test_seen_counts_all_ranks_before_forward() -> None:
    module = DetectorModule(tiny(), RegionLoss, burn_in=1)
    seen_at_loss: list[int] = []
    original = module.criterion.forward

    def spy(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        seen_at_loss.append(args[-1] if len(args) == 5 else kwargs["seen"])
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
