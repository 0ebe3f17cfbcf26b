"""Run an entry script with PyTorch's own batch-norm backward for every batch (session 40's A/B of the narrow NHWC
backward).

Not part of the library: a measurement record. ``NATIVE_BN=1`` sets ``yolo9000.models.layers._NARROW`` to 0, so
:class:`yolo9000.models.layers.BatchNorm2d` takes ``nn.BatchNorm2d``'s path for every batch; without it the
library's default runs. The first argument names the script in ``src/`` (``bench``, ``train``), the rest are its.
``bench_native_bn_ab.txt`` holds two alternations of

    [NATIVE_BN=1] python docs/results/bench_cpu_s40/native_bn.py bench bench.infer_batches=[] \\
        bench.postprocess=false bench.data_loader=false bench.loss_protocol=null

and ``train_native_bn_ab.txt`` two of ``native_bn.py train trainer.max_epochs=20 test=false``.
"""

from __future__ import annotations

import os
import runpy
import sys
from pathlib import Path

from yolo9000.models import layers

if os.environ.get("NATIVE_BN"):
    layers._NARROW = 0
script = Path(__file__).resolve().parents[3] / "src" / f"{sys.argv[1]}.py"
sys.argv = [str(script), *sys.argv[2:]]
runpy.run_path(str(script), run_name="__main__")
