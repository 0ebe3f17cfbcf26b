"""Cut the boxes of the vendored BCCD dataset into an ImageFolder classification dataset (Darknet-19 pretraining
on the CPU; the data module `data=bccd_crops` runs this itself when the folder is missing).

python src/make_crops.py                            # data/bccd -> data/bccd_crops (96 px, 15% margin)
python src/make_crops.py --side 128 --margin 0.25 --out /tmp/crops
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # runs without `pip install -e .`

from yolo9000.data.crops import build_crops, format_counts  # noqa: E402

BCCD_CLASSES = ["RBC", "WBC", "Platelets"]


def main(argv: list[str] | None = None) -> dict[str, dict[str, int]]:
    """Parse the arguments, build (or find complete) the crop folder, print the counts per split and class."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", type=Path, default=ROOT / "data" / "bccd", help="VOC dataset root")
    p.add_argument("--out", type=Path, default=ROOT / "data" / "bccd_crops", help="output ImageFolder root")
    p.add_argument("--classes", nargs="+", default=BCCD_CLASSES, help="class names (folder names)")
    p.add_argument("--splits", nargs="+", default=["train", "val", "test"], help="ImageSets/Main splits")
    p.add_argument("--margin", type=float, default=0.15, help="context per side, fraction of the longer box side")
    p.add_argument("--side", type=int, default=96, help="crop side in pixels")
    p.add_argument("--quality", type=int, default=95, help="JPEG quality")
    p.add_argument("--exclude-difficult", action="store_true", help="leave out boxes flagged difficult")
    p.add_argument("--on-error", choices=["error", "skip"], default="skip", help="bad annotations / images")
    p.add_argument("--force", action="store_true", help="rebuild even when the output is complete")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    counts = build_crops(
        args.source,
        args.out,
        class_names=args.classes,
        splits=args.splits,
        margin=args.margin,
        side=args.side,
        include_difficult=not args.exclude_difficult,
        quality=args.quality,
        on_error=args.on_error,
        force=args.force,
    )
    print(f"{args.out}:\n{format_counts(counts)}")
    return counts


if __name__ == "__main__":
    main()
