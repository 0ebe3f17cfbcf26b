"""Export a trained network to ONNX and check it with onnxruntime:

    python src/export.py --ckpt outputs/train/<ts>/checkpoints/last.ckpt --out yolov2.onnx [--size 416 | 352x608]

The graph maps (B, 3, H, W) float images in [0, 1] to the raw head output (B, A * (5 + C), H / 32, W / 32)
(detectors; decode with yolo9000.postprocess) or to (B, classes) logits (classifiers). Batch and input size are
dynamic (multiples of 32) unless --static; a network that takes one input size (an fc head, a darknet cfg with a
[connected] layer) is exported at that size with the batch free.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger("yolo9000.export")


def trained_size(module: torch.nn.Module) -> int:
    """The input side a checkpoint's network was evaluated at: a detector's ``eval_size``, a classifier's
    evaluation size from its build record; 416 when neither is known."""
    hp = getattr(module, "hparams", {})
    size = hp.get("eval_size") or (hp.get("build_info") or {}).get("eval_size")
    return int(size or 416)


def default_hw(module: torch.nn.Module) -> tuple[int, int]:
    """The (height, width) a checkpoint's network runs at: a detector's ``input_hw`` (a converted darknet cfg's
    rectangular ``[net]``, else its eval size), else :func:`trained_size` square."""
    hw = getattr(module, "input_hw", None)
    if hw is not None:
        return int(hw[0]), int(hw[1])
    size = trained_size(module)
    return size, size


def fixed_input_size(net: torch.nn.Module) -> tuple[int, int] | None:
    """The one input (height, width) a network takes: a detector with an ``fc`` head (``fc_grid`` x 32 square), a
    darknet network whose ``[connected]`` layer ties it to its cfg's ``[net]`` size (``fixed_hw``); None: any
    multiple of 32."""
    from yolo9000.models import STRIDE

    if getattr(net, "head_type", None) == "fc":
        side = int(net.fc_grid) * STRIDE
        return side, side
    hw = getattr(net, "fixed_hw", None)
    return (int(hw[0]), int(hw[1])) if hw is not None else None


def parse_size(text: str) -> int | tuple[int, int]:
    """``--size``: one side (``416``) or height x width (``352x608``, ``352,608``); each a multiple of 32."""
    from yolo9000.data.resize import check_input_size, normal_size

    parts = text.lower().replace(",", "x").split("x")
    try:
        return normal_size(check_input_size([int(p) for p in parts] if len(parts) > 1 else int(parts[0])))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(
            f"must be a multiple of 32, or height x width of such sides (352x608), got {text}"
        ) from None


def export_onnx(
    net: torch.nn.Module,
    out: Path,
    size: int | Sequence[int] = 416,
    opset: int = 18,
    dynamic: bool = True,
    fixed_size: bool = False,
) -> Path:
    """Write ``net`` as ONNX (input ``images`` (B, 3, H, W), output ``output``) traced at ``size`` (a side, or
    (height, width)); ``dynamic``: free batch, and free height and width unless ``fixed_size`` (a network that
    takes one input size)."""
    from yolo9000.data.resize import input_hw

    net = net.eval()
    for name in ("onnxscript", "onnx_ir"):  # their optimizer's INFO lines (constant folding, initializers) per node
        logging.getLogger(name).setLevel(logging.WARNING)
    example = torch.rand(1, 3, *input_hw(size))
    out.parent.mkdir(parents=True, exist_ok=True)
    dynamic_shapes = None
    if dynamic:
        batch = torch.export.Dim("batch", min=1, max=1024)
        hw = {} if fixed_size else {2: torch.export.Dim.AUTO, 3: torch.export.Dim.AUTO}
        dynamic_shapes = ({0: batch, **hw},)  # by position: any name of the forward argument
    torch.onnx.export(
        net,
        (example,),
        str(out),
        input_names=["images"],
        output_names=["output"],
        opset_version=opset,
        dynamo=True,
        dynamic_shapes=dynamic_shapes,
        external_data=False,
        verbose=False,  # no step-by-step report of the exporter
    )
    return out


def check_onnx(
    net: torch.nn.Module, path: Path, sizes: Sequence[int | Sequence[int]] = (416,), batch: int = 2
) -> tuple[float, float]:
    """onnxruntime against PyTorch on random inputs of the given sizes (each a side, or (height, width)).

    Returns:
        (max |onnxruntime - PyTorch|, max |PyTorch|) over all sizes: float32 rounding grows with the outputs'
        magnitude (a trained head's logits, a classifier's scores), so the difference is judged against the scale.
    """
    import onnxruntime as ort

    from yolo9000.data.resize import input_hw, size_text

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = scale = 0.0
    g = torch.Generator().manual_seed(0)
    for s in sizes:
        x = torch.rand(batch, 3, *input_hw(s), generator=g)
        with torch.no_grad():
            ref = net.eval()(x).numpy()
        got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
        if got.shape != ref.shape:
            raise RuntimeError(f"ONNX output shape {got.shape} != PyTorch {ref.shape} at size {size_text(s)}")
        worst = max(worst, float(np.abs(got - ref).max()))
        scale = max(scale, float(np.abs(ref).max()))
    return worst, scale


def agrees(worst: float, scale: float, tol: float) -> bool:
    """The exported graph computes the network: max difference <= ``tol`` x max(1, output magnitude) (absolute
    for outputs up to 1, relative above); a non-finite difference never agrees."""
    return bool(np.isfinite(worst)) and worst <= tol * max(1.0, scale)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", required=True, help="a checkpoint written by train.py or convert.py")
    p.add_argument("--out", required=True, help="output .onnx file")
    p.add_argument(
        "--size",
        type=parse_size,
        default=None,
        help="example input size, a side or HxW (default: the size the checkpoint runs at, a darknet [net]'s)",
    )
    p.add_argument("--opset", type=int, default=18)
    p.add_argument("--static", action="store_true", help="fixed batch 1 and input size")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime comparison")
    p.add_argument(
        "--tol", type=float, default=1e-3, help="largest difference allowed, x max(1, largest output magnitude)"
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from yolo9000.checkpoints import load_module
    from yolo9000.data.resize import input_hw, normal_size, size_text

    try:
        module = load_module(args.ckpt)
    except (FileNotFoundError, ValueError) as e:  # a wrong path or another kind of file: the reason alone
        raise SystemExit(f"Error: {e}") from None
    h, w = input_hw(args.size) if args.size is not None else default_hw(module)
    static = args.static
    fixed = fixed_input_size(module.model)
    if fixed is not None:  # one input size, the one it was built for
        what = "the fc head" if getattr(module.model, "head_type", None) == "fc" else "its [connected] layer"
        if args.size is not None and (h, w) != fixed:
            p.error(f"{args.ckpt}: {what} takes {fixed[0]}x{fixed[1]} inputs only, not --size {size_text((h, w))}")
        if not static:
            log.info(
                "%s: %s takes %dx%d inputs only: exported with a fixed size (batch stays free)",
                args.ckpt,
                what,
                *fixed,
            )
        h, w = fixed
    size = normal_size((h, w))
    out = export_onnx(module.model, Path(args.out), size, args.opset, dynamic=not static, fixed_size=fixed is not None)
    log.info("wrote %s", out)
    if not args.no_check:
        sizes = (size,) if static or fixed is not None else (size, normal_size((h + 64, w + 64)))
        err, scale = check_onnx(module.model, out, sizes, batch=1 if static else 2)
        log.info(
            "onnxruntime vs PyTorch: max abs difference %.3g over sizes %s (outputs up to %.3g)",
            err,
            ", ".join(size_text(s) for s in sizes),
            scale,
        )
        if not agrees(err, scale, args.tol):
            log.error(
                "%s: the ONNX output differs from PyTorch's by %.3g, above --tol %g x max(1, %.3g)",
                out,
                err,
                args.tol,
                scale,
            )
            return 1
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
