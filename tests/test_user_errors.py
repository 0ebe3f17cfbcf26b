"""A user's mistake (a missing dataset, a checkpoint evaluated on data with other classes, a bad bench setting) ends
a single run of ``train.py`` / ``eval.py`` / ``bench.py`` with its message and the log file that holds the traceback,
exit status 1, no traceback on the console; any other error keeps its traceback; multirun jobs re-raise (Hydra
reports them). eval.py's and bench.py's are checked in their own tests (test_cli_bench_detect_eval, test_bench)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_script
from yolo9000.data.records import DataError
from yolo9000.environment import concise_exit


def assert_concise(res, log: Path) -> str:  # type: ignore[no-untyped-def]
    assert res.returncode == 1, res.stderr[-3000:]
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    assert f"(the traceback: {log})" in res.stderr
    assert "Traceback (most recent call last)" in log.read_text()
    return res.stderr


def test_train_with_a_missing_dataset_prints_the_reason_and_the_log(tmp_path: Path) -> None:
    out = tmp_path / "run"
    res = run_script("train.py", out, "data=voc", f"data.root={tmp_path / 'no_voc'}", "logger=csv", check=False)
    err = assert_concise(res, out / "train.log")
    assert "Error: VOC annotation (XML) folder not found" in err
    assert f"the dataset root {tmp_path / 'no_voc'}/VOC2007 does not exist" in err  # not "set data.ann_dir"
    assert "Traceback" in json.loads((out / "failed.json").read_text())["traceback"]  # the sweep summaries' record


def test_only_user_errors_of_a_single_run_are_made_concise(monkeypatch: pytest.MonkeyPatch) -> None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    assert concise_exit(ValueError("x")) is None  # outside a Hydra app: raised as it is
    for mode, error, concise in (
        (RunMode.RUN, ValueError("bad key"), True),
        (RunMode.RUN, FileNotFoundError("no file"), True),
        (RunMode.RUN, FileExistsError("data.root=x holds other files than object crops"), True),
        (RunMode.RUN, RuntimeError("a bug"), False),
        (RunMode.RUN, KeyError("k"), False),
        (RunMode.RUN, DataError("a.xml: no <object>"), True),
        (RunMode.MULTIRUN, ValueError("bad key"), False),
    ):
        monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda mode=mode: OmegaConf.create({"mode": mode})))
        got = concise_exit(error)
        assert (got is not None) == concise, (mode, error)
        if got is not None:
            assert str(got.code).startswith(f"Error: {error}")
    # a config value its class refuses, wrapped by Hydra's instantiate: the class's message and the target built
    from hydra.errors import InstantiationException

    wrapped = InstantiationException("Error in call to target 'yolo9000.models.yolov2.YOLOv2':\nTypeError(...)")
    wrapped.__cause__ = TypeError("YOLOv2: passthrough must be true or false, got 'maybe'")
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: OmegaConf.create({"mode": RunMode.RUN})))
    # a required key left ??? (eval.py without ckpt_path): one line naming it (OmegaConf's traceback before)
    from omegaconf.errors import MissingMandatoryValue

    with pytest.raises(MissingMandatoryValue) as missing:
        OmegaConf.create({"ckpt_path": "???"}).ckpt_path  # noqa: B018
    got = concise_exit(missing.value)
    assert got is not None and str(got.code).startswith("Error: ckpt_path is required: add ckpt_path=<value>")
    got = concise_exit(wrapped)
    assert got is not None and str(got.code).startswith(
        "Error: YOLOv2: passthrough must be true or false, got 'maybe' (building yolo9000.models.yolov2.YOLOv2)"
    )
    # a key added with Hydra's "+" (as its own message advises) that the class does not take: the typo hint too
    target = "yolo9000.data.datamodule.DetectionDataModule"
    added = InstantiationException(f"Error in call to target '{target}':\nTypeError(...)")
    added.__cause__ = TypeError("DetectionDataModule.__init__() got an unexpected keyword argument 'max_image'")
    hc = OmegaConf.create({"mode": RunMode.RUN, "overrides": {"task": ["+data.max_image=8", "seed=2"]}})
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: hc))
    got = concise_exit(added)
    assert got is not None and f"(building {target}); did you mean data.max_images=8?" in str(got.code)
    hc.overrides.task = ["++data.max_image=8"]  # Hydra's "add or override": the hint without its pluses
    got = concise_exit(added)
    assert got is not None and str(got.code).split("\n")[0].endswith("; did you mean data.max_images=8?")
    bug = InstantiationException("Error in call to target 'x.Y':\nRuntimeError(...)")
    bug.__cause__ = RuntimeError("a bug")
    assert concise_exit(bug) is None  # a crash keeps its traceback
    # trainer=gpu where torch finds no GPU: Lightning's refusal (a traceback before), with the way to run here
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    no_gpu = InstantiationException("Error in call to target 'pytorch_lightning.trainer.trainer.Trainer':\n...")
    no_gpu.__cause__ = MisconfigurationException("No supported gpu backend found!")
    got = concise_exit(no_gpu)
    assert got is not None and str(got.code).startswith(
        "Error: No supported gpu backend found! (building pytorch_lightning.trainer.trainer.Trainer): trainer=gpu and "
        "trainer=ddp need a CUDA GPU, and torch finds none here; trainer=cpu runs on the CPU"
    )


def test_a_test_split_without_images_stops_the_run_before_training(tmp_path: Path) -> None:
    """A dataset whose test images are all unreadable trained to the end and then failed at the test
    (``data.test: no images``): the test split is read with the others, so the run stops before training."""
    import shutil

    import yaml

    photo = sorted((Path(__file__).resolve().parents[1] / "data" / "bccd" / "JPEGImages").glob("*.jpg"))[0]
    root = tmp_path / "ds"
    for split in ("train", "val", "test"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for k in range(2):
            image = root / "images" / split / f"{split}{k}.jpg"
            if split == "test":
                image.write_bytes(b"")  # unreadable
            else:
                shutil.copy(photo, image)
            (root / "labels" / split / f"{split}{k}.txt").write_text(f"0 0.5 0.5 0.{k + 2} 0.{k + 3}\n")
    (root / "data.yaml").write_text(
        yaml.safe_dump({"train": "images/train", "val": "images/val", "test": "images/test", "names": ["cell"]})
    )
    out = tmp_path / "run"
    res = run_script(
        "train.py", out, "data=yolo", f"data.root={root}", "logger=csv", "data.img_size=64",
        "data.multiscale.enabled=false", "data.batch_size=2", "trainer.max_epochs=1", "model.priors.k=2", check=False,
    )  # fmt: skip
    err = assert_concise(res, out / "train.log")
    assert "data.test: no images" in err
    assert not (out / "checkpoints").exists()  # nothing trained


def test_a_sweep_experiment_without_m_is_warned(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``train.py experiment=ablation_passthrough`` (no ``-m``) ran one job with the config's values without a word:
    a warning names the keys the sweep would vary; a config without a sweep, or a multirun job, says nothing."""
    import logging

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from conftest import load_script

    train = load_script("train")
    for mode, params, warned in (
        (RunMode.RUN, {"model.net.passthrough": "true,false"}, True),
        (RunMode.RUN, {}, False),
        (RunMode.MULTIRUN, {"model.net.passthrough": "true,false"}, False),
    ):
        hc = OmegaConf.create({"mode": mode, "sweeper": {"params": params}})
        monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda hc=hc: hc))
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            train._warn_sweep_without_m()
        assert ("defines a sweep over model.net.passthrough" in caplog.text and "add -m" in caplog.text) == warned
