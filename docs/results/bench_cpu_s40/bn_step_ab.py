"""A training step of the default CPU model with the narrow NHWC batch-norm backward and without (session 40).

Not part of the library: a measurement record. Two copies of a checkpoint's network in training mode and NHWC,
one with :class:`yolo9000.models.layers.BatchNorm2d` (the library's) and one with ``nn.BatchNorm2d`` (the same
statistics), alternate (ABBA) a forward + backward of one batch of 16 at 256 x 256; the medians of the step and of
its forward part are printed.

Usage: ``python docs/results/bench_cpu_s40/bn_step_ab.py <checkpoint> [rounds]``.
"""

from __future__ import annotations

import copy
import statistics
import sys
import time

import torch

from yolo9000 import Detector
from yolo9000.models.layers import BatchNorm2d
from yolo9000.speed import keep_freed_memory


def main() -> None:
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 12
    torch.set_num_threads(2)
    keep_freed_memory()  # as training on the CPU does
    det = Detector.from_checkpoint(sys.argv[1], device="cpu")
    ours = copy.deepcopy(det.module.model).train().to(memory_format=torch.channels_last)
    native = copy.deepcopy(ours)
    for parent in list(native.modules()):
        for name, child in list(parent._modules.items()):
            if type(child) is BatchNorm2d:
                plain = torch.nn.BatchNorm2d(child.num_features, momentum=child.momentum)
                plain.load_state_dict(child.state_dict())
                setattr(parent, name, plain)
    x = torch.rand(16, 3, 256, 256).contiguous(memory_format=torch.channels_last)
    times: dict[str, list[float]] = {"ours": [], "native": [], "ours forward": [], "native forward": []}

    def step(net: torch.nn.Module, name: str) -> None:
        net.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        y = net(x)
        t1 = time.perf_counter()
        y.float().square().mean().backward()
        times[name].append(time.perf_counter() - t0)
        times[f"{name} forward"].append(t1 - t0)

    for _ in range(2):
        step(ours, "ours")
        step(native, "native")
    for v in times.values():
        v.clear()
    for r in range(rounds):
        order = [("ours", ours), ("native", native)]
        for name, net in order if r % 2 == 0 else order[::-1]:
            step(net, name)
    print(", ".join(f"{k} {1e3 * statistics.median(v):.1f} ms" for k, v in times.items()))


if __name__ == "__main__":
    main()
