"""A typo'd override on an entry script (``data.max_image=8``) got Hydra's "Key 'max_image' is not in struct ... To
append to your config use +data.max_image=8", which suggests adding the wrong key: the scripts add "did you mean
data.max_images=8?" under Hydra's message, with its exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra

from conftest import CONF, ROOT, script_env
from yolo9000.environment import close_keys, override_hints


def hints(config: str, *overrides: str) -> list[str]:
    return override_hints(CONF, f"{config}.yaml", list(overrides))


def test_a_nested_key_typo_names_the_key_meant() -> None:
    assert hints("train", "data.max_image=8") == [
        "'data.max_image' is not in the config; did you mean data.max_images=8?"
    ]
    assert hints("train", "~data.max_image") == [
        "'data.max_image' is not in the config; did you mean ~data.max_images?"
    ]
    # a sweep's values are kept; a misspelt parent is matched on the whole dotted key
    assert "did you mean data.max_images=1,2?" in hints("train", "data.max_image=1,2")[0]
    assert "did you mean model.net.backbone.width=0.5?" in hints("train", "model.net.bakbone.width=0.5")[0]


def test_a_top_level_key_typo_names_the_key_meant() -> None:
    assert hints("detect", "conf_tresh=0.1") == ["'conf_tresh' is not in the config; did you mean conf_thresh=0.1?"]
    assert "did you mean model=yolov2?" in hints("train", "modle=yolov2")[0]  # a group's name misspelt
    assert "did you mean data.max_images=3?" in hints("train", "max_images=3")[0]  # its node left out
    # the predict API's keyword for detect.py's key: the key it begins
    assert hints("detect", "conf=0.1") == ["'conf' is not in the config; did you mean conf_thresh=0.1?"]
    assert hints("detect", "nms=0.5") == ["'nms' is not in the config; did you mean nms_thresh=0.5?"]


def test_a_group_option_typo_names_the_option_meant() -> None:
    assert hints("train", "data=bcc") == ["data has no option 'bcc'; did you mean data=bccd?"]
    assert hints("train", "model=yolov2_cpuu") == ["model has no option 'yolov2_cpuu'; did you mean model=yolov2_cpu?"]
    # nothing close: the options (not the bases, model/_detector.yaml)
    assert hints("train", "model=zzzz") == [
        "model has no option 'zzzz' (its options: darknet, darknet19_cls, darknet19_cls_cpu, yolov2, yolov2_cpu)"
    ]
    # several mistakes: a hint each, the keys checked in what the valid groups compose
    assert hints("train", "model=yolov2_cpu", "model.fast.channel_last=false", "trainer=gpuu") == [
        "trainer has no option 'gpuu'; did you mean trainer=gpu?",
        "'model.fast.channel_last' is not in the config; did you mean model.fast.channels_last=false?",
    ]
    # detect.yaml selects no model (the checkpoint has it): Hydra says only "No match in the defaults list"
    for option in ("yolov2_cpuu", "yolov2_cpu"):
        assert hints("detect", f"model={option}") == ["detect.yaml does not use the model group (its groups: paths)"]
    assert hints("train", "model=yolov2_cpu") == []  # train.yaml does
    assert hints("detect", "hydra/job_logging=default") == []  # Hydra's own groups are every config's


def test_no_close_key_gets_no_guess() -> None:
    (hint,) = hints("train", "zzzqq=1")
    assert "did you mean" not in hint and "no key there is close" in hint
    (hint,) = hints("detect", "data.max_image=8")  # detect.yaml has no data node
    assert "did you mean" not in hint


def test_overrides_that_compose_get_no_hint() -> None:
    assert (
        hints("train", "data.max_images=4", "trainer.max_epochs=1", "+new_key=1", "++data.other=2", "model=null") == []
    )
    assert hints("train", "data=bccd", "data.max_images=2", "seed=1,2", "hydra.run.dir=x") == []
    assert hints("train", "data.max_images=[") == []  # Hydra's parse error is its own to report


def test_close_keys() -> None:
    tree = {"data": {"max_images": 1, "batch_size": 2}, "trainer": {"max_epochs": 1}, "seed": 0}
    assert close_keys("data.max_image", tree) == ["data.max_images"]
    assert close_keys("dta.batch_size", tree) == ["data.batch_size"]
    assert close_keys("max_epochs", tree) == ["trainer.max_epochs"]
    assert close_keys("sed", tree) == ["seed"]
    assert close_keys("data.zzzz", tree) == []


def test_a_callers_hydra_stays_as_it_was() -> None:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        hints("train", "data.max_image=8")
        assert GlobalHydra.instance().is_initialized()
        assert compose("detect.yaml").nms_thresh == 0.45
    assert not GlobalHydra.instance().is_initialized()


@pytest.mark.parametrize(
    ("script", "override", "hint"),
    [
        (
            "train.py",
            "data.max_image=8",
            "Hint: 'data.max_image' is not in the config; did you mean data.max_images=8?",
        ),
        ("detect.py", "conf_tresh=0.1", "Hint: 'conf_tresh' is not in the config; did you mean conf_thresh=0.1?"),
    ],
)
def test_the_script_adds_the_hint_to_hydras_message(script: str, override: str, hint: str) -> None:
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / script), override],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, res.stderr[-2000:]  # Hydra's status
    key = override.split("=")[0]
    assert f"Could not override '{key}'" in res.stderr and f"+{override}" in res.stderr  # Hydra's message stays
    assert hint in res.stderr.splitlines()


def test_the_command_lines_overrides_and_config_name() -> None:
    from yolo9000.environment import _override_words

    argv = ["bench.py", "--config-name", "bench_gpu_full", "-m", "a=1", "--cfg", "job", "-p", "data", "~b"]
    assert _override_words(argv) == (["a=1", "~b"], "bench_gpu_full")
    assert _override_words(["t.py", "--config-name=b", "--info", "x=1"]) == (["x=1"], "b")
    assert _override_words(["t.py", "-i", "defaults", "x=1"]) == (["x=1"], None)


def _stderr_of_failure(capsys: pytest.CaptureFixture[str], argv: list[str], cause: BaseException) -> str:
    """stderr after hint_unknown_overrides saw Hydra's ``sys.exit(1)`` for ``cause`` (raised inside its handler,
    as Hydra's run_and_report does); the exit goes on."""
    from yolo9000.environment import hint_unknown_overrides

    with pytest.raises(SystemExit) as info, hint_unknown_overrides("train.yaml", argv=argv):
        try:
            raise cause
        except Exception:
            sys.exit(1)
    assert info.value.code == 1
    return capsys.readouterr().err


def test_no_hint_after_a_job_that_ran_failed(capsys: pytest.CaptureFixture[str]) -> None:
    """A multirun whose job failed (no log file handler is left, no HydraConfig) ends with Hydra's exit 1 too: its
    overrides composed, so no composition (and no hint) follows; a composition error's exit gets them."""
    from hydra.errors import ConfigCompositionException

    argv = [str(ROOT / "src" / "train.py"), "-m", "data.max_image=8"]
    assert "Hint:" not in _stderr_of_failure(capsys, argv, TypeError("Trainer got an unexpected keyword argument"))
    hinted = _stderr_of_failure(capsys, argv, ConfigCompositionException("Could not override 'data.max_image'."))
    assert "Hint: 'data.max_image' is not in the config; did you mean data.max_images=8?" in hinted.splitlines()


def test_hints_compose_the_config_dirs_of_the_command_line(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """--config-dir adds a folder of configs (data=mine from there): no hint may call its option unknown;
    --config-path replaces conf/: the keys are checked in the config found there."""
    from hydra.errors import ConfigCompositionException

    (tmp_path / "extra" / "data").mkdir(parents=True)
    (tmp_path / "extra" / "data" / "mine.yaml").write_text("defaults:\n  - bccd\n")
    script = str(ROOT / "src" / "train.py")
    failed = ConfigCompositionException("Could not override 'data.max_image'.")
    for argv in (
        [script, "--config-dir", str(tmp_path / "extra"), "data=mine", "data.max_image=8"],
        [script, f"--config-dir={tmp_path / 'extra'}", "data=mine", "data.max_image=8"],
        [script, "-cd", str(tmp_path / "extra"), "data=mine", "data.max_image=8"],
    ):
        assert "no option 'mine'" not in _stderr_of_failure(capsys, argv, failed)
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "train.yaml").write_text("learning_rate: 0.1\n")
    err = _stderr_of_failure(capsys, [script, "--config-path", str(tmp_path / "own"), "learning_rat=0.2"], failed)
    assert "Hint: 'learning_rat' is not in the config; did you mean learning_rate=0.2?" in err.splitlines()


def test_a_sweep_whose_job_failed_gets_no_hint(tmp_path: Path) -> None:
    """anchors.py -m with --config-dir (data=mine from there) and a job that failed (k=0): the job's error and
    Hydra's status 1, then no "Hint: data has no option 'mine'" (the hints composed conf/ after the failed job)."""
    (tmp_path / "extra" / "data").mkdir(parents=True)
    (tmp_path / "extra" / "data" / "mine.yaml").write_text("defaults:\n  - bccd\n")
    res = subprocess.run(
        [sys.executable, str(ROOT / "src" / "anchors.py"), "--config-dir", str(tmp_path / "extra"), "-m"]
        + ["data=mine", "data.max_images=8", "k=0", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=ROOT,
        env=script_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1 and "k-means needs 1 <= k" in res.stderr, res.stderr[-2000:]  # the job ran, failed
    assert "Hint:" not in res.stderr
