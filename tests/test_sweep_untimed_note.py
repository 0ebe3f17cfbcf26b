"""summary.md says why a job's train img/s is blank (a job that trained one batch per process has no training speed:
the first batch warms up and is not timed), naming those jobs only; a sweep whose jobs were all timed has no note."""

from __future__ import annotations

from pathlib import Path

from test_sweeps import fake_job
from yolo9000.report import write_summary

NOTE = "- train img/s: blank for job(s)"


def test_untimed_jobs_are_named_and_timed_sweeps_have_no_note(tmp_path: Path) -> None:
    timed = {"map_50": 0.5, "map": 0.25, "params": 1e6, "train_img_per_s": 30.0}
    untimed = {"map_50": 0.4, "map": 0.2, "params": 1e6}
    fake_job(tmp_path / "mixed", 0, ["model.net.passthrough=true", "seed=1"], timed)
    fake_job(tmp_path / "mixed", 1, ["model.net.passthrough=false", "seed=1"], untimed)
    fake_job(tmp_path / "mixed", 2, ["model.net.passthrough=false", "seed=2"], untimed)
    md = write_summary(tmp_path / "mixed", plot=False)["md"].read_text()
    (note,) = [line for line in md.splitlines() if line.startswith(NOTE)]
    assert note.startswith(f"{NOTE} 1, 2: no training speed in metrics.json")
    fake_job(tmp_path / "timed", 0, ["model.net.passthrough=true", "seed=1"], timed)
    fake_job(tmp_path / "timed", 1, ["model.net.passthrough=false", "seed=1"], {**timed, "train_img_per_s": 20.0})
    assert NOTE not in write_summary(tmp_path / "timed", plot=False)["md"].read_text()


def test_combined_sweeps_name_their_untimed_jobs_with_the_sweep(tmp_path: Path) -> None:
    """Two sweeps combined (report.py --combine) number their jobs from 0 each: the note names a job with its sweep's
    folder ("a/0, b/0"), where "0, 0" did not say which."""
    untimed = {"map_50": 0.4, "map": 0.2, "params": 1e6}
    timed = {**untimed, "train_img_per_s": 30.0}
    fake_job(tmp_path / "a", 0, ["model.net.passthrough=false", "seed=1"], untimed)
    fake_job(tmp_path / "a", 1, ["model.net.passthrough=true", "seed=1"], timed)
    fake_job(tmp_path / "b", 0, ["model.net.passthrough=false", "seed=2"], untimed)
    md = write_summary([tmp_path / "a", tmp_path / "b"], plot=False, out_dir=tmp_path / "both")["md"].read_text()
    (note,) = [line for line in md.splitlines() if line.startswith(NOTE)]
    assert note.startswith(f"{NOTE} a/0, b/0: no training speed")
