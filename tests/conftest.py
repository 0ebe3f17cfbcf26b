"""Shared test helpers: the tiny overrides that make a real run take seconds, a runner for the entry scripts as a
user types them, and config composition."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"

# A detector run on a few real BCCD images with a tiny network: seconds on 2 cores.
TINY = [
    "data.max_images=8",
    "data.batch_size=4",
    "data.num_workers=0",
    "data.img_size=64",
    "data.multiscale.min_size=64",
    "data.multiscale.max_size=96",
    "model.net.backbone.width=0.125",
    "trainer.max_epochs=1",
    "trainer.check_val_every_n_epoch=1",
    "callbacks.prediction_images.num_images=2",
    "callbacks.prediction_images.score_thresh=0.0",
]


def quiet_trainer(**settings: Any) -> Any:
    """A CPU ``pl.Trainer`` for module tests: no logger, checkpoints, progress bar, model summary or distributed
    sampler (``settings`` add or override Trainer arguments)."""
    import pytorch_lightning as pl

    quiet = {
        "accelerator": "cpu",
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "use_distributed_sampler": False,
    }
    return pl.Trainer(**(quiet | settings))


def script_env() -> dict[str, str]:
    """The environment of an entry script under test: offline W&B, the repository's ``src`` first (and ``tests``,
    for test-only callbacks such as ``ddp_probe``), no rank variables inherited from a launcher."""
    env = {**os.environ, "WANDB_MODE": "offline"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    env.pop("LOCAL_RANK", None)
    return env


def run_script(
    script: str, out: Path | None, *overrides: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess:
    """``python src/<script> hydra.run.dir=<out> <overrides>`` from the repository root; with ``check`` the run must
    succeed (the assertion shows the end of its output)."""
    cmd = [sys.executable, str(ROOT / "src" / script)]
    if out is not None:
        cmd.append(f"hydra.run.dir={out}")
    res = subprocess.run(
        [*cmd, *overrides], cwd=ROOT, env=script_env(), capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert res.returncode == 0, f"{script} failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    return res


def load_script(name: str) -> ModuleType:
    """``src/<name>.py`` imported as a module (its ``main`` and helpers, without running it)."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "src" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def compose_config(config_name: str = "train", *overrides: str, hydra_config: bool = False) -> DictConfig:
    """Compose ``conf/<config_name>.yaml`` with overrides, as the entry scripts do (resolvers registered;
    ``paths.root_dir`` is ``.`` unless overridden)."""
    from hydra import compose, initialize_config_dir

    from yolo9000.multirun import register_resolvers

    register_resolvers()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        root = [] if any(o.startswith("paths.root_dir=") for o in overrides) else ["paths.root_dir=."]
        return compose(f"{config_name}.yaml", overrides=[*root, *overrides], return_hydra_config=hydra_config)


@pytest.fixture(scope="session")
def tiny() -> list[str]:
    """The tiny-run overrides (a copy: tests may extend it)."""
    return list(TINY)


@pytest.fixture(scope="session")
def run() -> Callable[..., subprocess.CompletedProcess]:
    """:func:`run_script` as a fixture."""
    return run_script


@pytest.fixture(scope="session")
def compose() -> Callable[..., DictConfig]:
    """:func:`compose_config` as a fixture."""
    return compose_config


def data_config(name: str, root_dir: Path | str = ROOT) -> DictConfig:
    """``conf/data/<name>.yaml`` as composed (its defaults included), with ``paths`` for its interpolations: a
    config to edit and instantiate (``cfg.data``)."""
    from omegaconf import OmegaConf

    cfg = compose_config("train", f"data={name}", f"paths.root_dir={root_dir}")
    return OmegaConf.create({"paths": OmegaConf.to_container(cfg.paths), "data": OmegaConf.to_container(cfg.data)})


def reorg_fixture_shape(path: Path) -> tuple[tuple[int, int, int, int], int]:
    """(B, C, H, W) and stride of a darknet reorg fixture, from its name ``reorg_in{B}x{C}x{H}x{W}_stride{s}``."""
    m = re.fullmatch(r"reorg_in(\d+)x(\d+)x(\d+)x(\d+)_stride(\d+)", path.stem)
    assert m, f"{path.name}: not a reorg_in<B>x<C>x<H>x<W>_stride<s> fixture name"
    b, c, h, w, s = (int(v) for v in m.groups())
    return (b, c, h, w), s


@pytest.fixture
def made_figures(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Every matplotlib ``Figure`` made while the test runs (drawn and saved as usual), in order: what a plot
    function drew, for its axes, texts and scales."""
    import matplotlib.figure

    made: list[Any] = []

    class Recorded(matplotlib.figure.Figure):
        def __init__(self, *args: Any, **kw: Any) -> None:
            super().__init__(*args, **kw)
            made.append(self)

    monkeypatch.setattr(matplotlib.figure, "Figure", Recorded)
    return made
