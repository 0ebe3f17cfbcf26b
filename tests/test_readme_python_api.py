"""The README's "Python API" example runs as printed, from the repository root, with a real checkpoint in place of
its placeholder path (a user copies it after ``make train``): every input kind it lists is detected and the darknet
cfg it converts predicts names of VOC's classes."""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path

import torch

from test_cli_bench_detect_eval import make_checkpoint

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = "outputs/train/<ts>/checkpoints/last.ckpt"


def python_api_example() -> str:
    """The first ```python block after the README's "### Python API" heading."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Python API") :]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "no python block under ### Python API"
    return match.group(1)


def test_the_readme_python_api_example_runs(tmp_path: Path) -> None:
    code = python_api_example()
    assert PLACEHOLDER in code  # the placeholder a user replaces
    ckpt = make_checkpoint(tmp_path / "last.ckpt")  # train.py's checkpoint of a small BCCD detector
    code = code.replace(PLACEHOLDER, str(ckpt))
    namespace: dict = {}
    out = io.StringIO()
    cwd = Path.cwd()
    os.chdir(ROOT)  # the README's relative paths (data/bccd/..., data/darknet/...)
    try:
        torch.manual_seed(0)
        with contextlib.redirect_stdout(out):
            exec(compile(code, "README.md (Python API)", "exec"), namespace)  # noqa: S102 - the README's own code
    finally:
        os.chdir(cwd)
    results = namespace["results"]
    assert len(results) == 6  # 4 files, a PIL image and its array
    assert [r.path is not None for r in results] == [True] * 4 + [False] * 2
    assert results[4].image_size == results[5].image_size == (240, 320)  # the resized PIL image, in its own pixels
    assert all(r.image_size == (480, 640) for r in results[:4])
    assert set(namespace["voc"].class_names) >= {"person", "dog", "car"}
    printed = out.getvalue().splitlines()
    assert len(printed) == 7 and printed[0].startswith(str(namespace["files"][0]))
