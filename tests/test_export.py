"""ONNX export of a detector: onnxruntime reproduces PyTorch's raw output at several sizes and batch sizes."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from yolo9000.models.darknet19 import Darknet19
from yolo9000.models.yolov2 import YOLOv2

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
ort = pytest.importorskip("onnxruntime")


def test_onnx_matches_pytorch(tmp_path: Path) -> None:
    from export import check_onnx, export_onnx

    torch.manual_seed(0)
    net = YOLOv2(Darknet19(width=0.125), 3, [[1.0, 1.5], [2.0, 2.0]]).eval()
    with torch.no_grad():  # non-trivial BN statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    path = export_onnx(net, tmp_path / "net.onnx", size=64)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch, size in [(1, 64), (3, 96)]:
        x = torch.rand(batch, 3, size, size)
        got = sess.run(None, {"images": x.numpy()})[0]
        with torch.no_grad():
            ref = net(x).numpy()
        assert got.shape == (batch, 2 * 8, size // 32, size // 32)
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    assert check_onnx(net, path, (64,)) < 1e-4
