"""Summarise sweeps: `python src/report.py <sweep dir> [more sweep dirs] [--combine OUT [--archive]] [--no-plot]`.

Writes summary.md, summary.csv and summary.png into each sweep folder (the Hydra callback does the same at the
end of a multirun): one row per configuration (jobs that differ only in seed grouped: mean ± std), failed jobs
marked with their error, the paper's number beside the rows it has one for. With ``--combine OUT`` the jobs of all
the folders are summarised together into OUT (one seed per sweep, run in different sessions: one table with
mean ± std over the seeds); ``--archive`` first copies each job's record (configs, metrics, no checkpoints) to
OUT/jobs/<sweep>/<job>/ and summarises those copies, for committing results. See :mod:`yolo9000.report`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from yolo9000.report import archive_jobs, write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dirs", nargs="+", type=Path, help="multirun_sweeps/<experiment>/<timestamp>")
    parser.add_argument("--no-plot", action="store_true", help="skip summary.png")
    parser.add_argument("--combine", type=Path, metavar="OUT", help="one summary of all the folders' jobs, in OUT")
    parser.add_argument(
        "--archive", action="store_true", help="with --combine: copy each job's configs and metrics to OUT/jobs/ first"
    )
    args = parser.parse_args(argv)
    if args.archive and args.combine is None:
        parser.error("--archive needs --combine OUT")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.combine is not None:
        try:
            dirs = archive_jobs(args.sweep_dirs, args.combine) if args.archive else args.sweep_dirs
            out = write_summary(dirs, plot=not args.no_plot, out_dir=args.combine)
        except (OSError, ValueError) as e:  # a missing folder, an OUT that is a file, two sweeps of one name
            print(f"error: {e}", file=sys.stderr)
            return 1
        print(out["md"].read_text())
        return 0
    status = 0
    for d in args.sweep_dirs:
        try:
            out = write_summary(d, plot=not args.no_plot)
        except OSError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        print(out["md"].read_text())
    return status


if __name__ == "__main__":
    sys.exit(main())
