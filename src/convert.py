"""Convert between darknet (.cfg + .weights) and this project's checkpoints.

darknet -> checkpoint (usable by src/eval.py and src/detect.py as ``ckpt_path=...``):

    python src/convert.py --cfg data/darknet/cfg/yolov2-voc.cfg --weights yolov2-voc.weights \\
        --names data/darknet/voc.names --out yolov2-voc.ckpt

checkpoint -> darknet (.weights, and the cfg: the stored original, or one generated for a trained checkpoint):

    python src/convert.py --to-darknet --ckpt yolov2-voc.ckpt --out yolov2-voc.weights [--cfg-out yolov2-voc.cfg]

A detector's class names go beside them (``--names-out``, default ``--out`` with ``.names``), the file darknet's
``.data`` points ``names=`` at.

A round trip cfg + weights -> checkpoint -> weights gives identical bytes (values are copied, never transformed;
converted networks use darknet's batch norm, ``bn_style: darknet``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # `python src/convert.py` without an installed package

log = logging.getLogger("yolo9000")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to-darknet", action="store_true", help="checkpoint -> .weights (+ cfg) instead")
    p.add_argument("--cfg", type=Path, help="darknet cfg (darknet -> checkpoint)")
    p.add_argument("--weights", type=Path, help="darknet .weights (omit for an untrained checkpoint)")
    p.add_argument("--names", type=Path, help="class names, one a line (e.g. data/darknet/voc.names)")
    p.add_argument("--ckpt", type=Path, help="checkpoint to convert (--to-darknet)")
    p.add_argument("--out", type=Path, required=True, help="output .ckpt, or .weights with --to-darknet")
    p.add_argument("--cfg-out", type=Path, help="cfg written beside the .weights (default: --out with .cfg)")
    p.add_argument("--names-out", type=Path, help="a detector's class names, one a line (default: --out with .names)")
    p.add_argument(
        "--strict",
        action="store_true",
        help="refuse a .weights file with more floats than the cfg's layers take (default: as darknet, the rest is "
        "ignored, with a warning)",
    )
    args = p.parse_args(argv)
    if args.to_darknet and args.ckpt is None:
        p.error("--to-darknet needs --ckpt")
    if not args.to_darknet and args.cfg is None:
        p.error("darknet -> checkpoint needs --cfg")
    return args


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    args = parse_args(argv)
    try:
        convert(args)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:  # the file and the problem, no traceback
        raise SystemExit(f"Error: {e}") from None


def convert(args: argparse.Namespace) -> None:
    """The conversion ``args`` ask for (see the module docstring)."""
    # imported here, not at the top: --help and argument errors need no Lightning, Hydra or torchvision
    from yolo9000.checkpoints import checkpoint_to_darknet, darknet_to_checkpoint

    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.to_darknet:
        cfg_out = args.cfg_out or args.out.with_suffix(".cfg")
        # which kind: the keys alone (memory-mapped, no tensor read; checkpoint_to_darknet loads it)
        detector = "yolo9000_model_config" in torch.load(args.ckpt, map_location="cpu", weights_only=False, mmap=True)
        names_out = (args.names_out or args.out.with_suffix(".names")) if detector else None
        if args.names_out is not None and not detector:
            raise ValueError(f"{args.ckpt}: --names-out: a classifier checkpoint has no class names to write")
        info = checkpoint_to_darknet(args.ckpt, args.out, cfg_out, names_out)
        log.info(
            "wrote %s (%d conv layers, version %d.%d.%d, seen %d), %s%s",
            args.out, info.layers_total, info.major, info.minor, info.revision, info.seen, cfg_out,
            f" and {names_out}" if names_out else "",
        )  # fmt: skip
        return
    ckpt = darknet_to_checkpoint(args.cfg, args.weights, args.names, strict=args.strict)
    torch.save(ckpt, args.out)
    kind = "detector" if "yolo9000_model_config" in ckpt else "classifier"
    weights = f" + {args.weights}" if args.weights else " with no --weights: the network's freshly initialised weights"
    log.info("wrote %s (%s from %s%s)", args.out, kind, args.cfg, weights)


if __name__ == "__main__":
    main()
