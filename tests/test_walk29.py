"""Walk-through of session 29's features: the build's log of a darknet weights file's ``seen`` names the learning
rate the schedule starts at, and says when ``model.start_seen=0`` (darknet's -clear) sets the header's count aside
(the loader's lines still name it)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from yolo9000.build import _log_net_options
from yolo9000.darknet import save_weights

NET = "[net]\nbatch=64\nlearning_rate=0.001\nburn_in=1000\npower=2\npolicy=steps\nsteps=2000\nscales=.1\n"
KEYS = {"lr": 0.001, "lr_policy": "steps", "steps": [2000], "scales": [0.1], "burn_in": 1000, "power": 2.0}


def log_start(caplog: pytest.LogCaptureFixture, weights: Path | None, **m: object) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, "yolo9000"):
        net = {"cfg": "t.cfg", "cfg_text": NET, "weights": None if weights is None else str(weights)}
        _log_net_options({"net": net, "loss": {}, **KEYS, **m})
    return caplog.text


def test_the_start_log_names_the_learning_rate(caplog: pytest.LogCaptureFixture) -> None:
    """Iteration 499 of burn_in=1000 power=2: lr x (500 / 1000)^2 = 0.25, 0.001 x 0.25 = 0.00025; iteration 2000,
    past the step: x 0.1 = 0.0001."""
    assert "lr x 0.25 now = 0.00025)" in log_start(caplog, None, start_seen=64 * 499, start_iteration=499)
    assert "lr x 0.1 now = 0.0001)" in log_start(caplog, None, start_seen=64 * 2000, start_iteration=2000)


def test_start_seen_0_says_the_headers_count_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A header with seen 6400 and model.start_seen=0: one line says it is set aside; a header with seen 0 and no
    weights file say nothing of it."""
    weights = tmp_path / "w.weights"
    save_weights([], weights, seen=6400)
    text = log_start(caplog, weights, start_seen=0, start_iteration=0)
    assert "seen 6400 in its header set aside (model.start_seen=0, darknet's -clear)" in text
    assert "goes on from it" not in text
    save_weights([], weights, seen=0)
    assert "set aside" not in log_start(caplog, weights, start_seen=0, start_iteration=0)
    assert "set aside" not in log_start(caplog, None, start_seen=0, start_iteration=0)
