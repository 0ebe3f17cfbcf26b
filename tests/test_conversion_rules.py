"""Mutation-audit rules for the darknet <-> checkpoint conversion (src/yolo9000/checkpoints.py, src/convert.py,
src/export.py): hand-written tiny cfgs whose [net] / [region] options each differ from conf/model/yolov2.yaml's
defaults, so a value not carried over (or carried into the wrong key) shows."""

from __future__ import annotations

import logging
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from conftest import load_script
from yolo9000.checkpoints import checkpoint_to_darknet, darknet_to_checkpoint, load_module

ROOT = Path(__file__).resolve().parents[1]

# one 1x1 conv of 2 x (5 + 3) filters, then a region of 2 non-square priors (w, h) and 3 classes
REGION = (
    "[convolutional]\nfilters=16\nsize=1\nactivation=linear\n"
    "[region]\nanchors=1.5,3.25, 4,2\nclasses=3\nnum=2\nsoftmax=1\n"
    "thresh=.7\nobject_scale=3\nnoobject_scale=.5\nclass_scale=2\ncoord_scale=4\nrescore=0\nbias_match=0\n"
)
NET = (
    "[net]\nheight=64\nwidth=64\nchannels=3\nlearning_rate=0.0025\nmomentum=0.8\ndecay=0.001\nburn_in=7\n"
    "power=3\nmax_batches=500\n"
)


def _convert(tmp_path: Path, net: str = NET, region: str = REGION) -> dict:
    cfg = tmp_path / "t.cfg"
    cfg.write_text(net + region)
    return darknet_to_checkpoint(cfg)


def test_priors_record_holds_the_cfg_anchors_as_width_height_pairs(tmp_path: Path) -> None:
    """``anchors=1.5,3.25, 4,2``: the priors (w, h) in the cfg's order, the network's anchors alike."""
    ckpt = _convert(tmp_path)
    priors = ckpt["yolo9000_model_config"]["priors"]
    assert priors["anchors"] == [[1.5, 3.25], [4.0, 2.0]] and priors["k"] == 2
    module = load_module_from(ckpt, tmp_path)
    assert module.model.anchors.tolist() == priors["anchors"]


def load_module_from(ckpt: dict, tmp_path: Path):
    path = tmp_path / "t.ckpt"
    torch.save(ckpt, path)
    return load_module(path)


def test_region_training_options_reach_the_loss(tmp_path: Path) -> None:
    """[region] thresh / object / noobject / class / coord scales / rescore / bias_match (each off the yaml
    default) are the converted module's loss settings, each in its own key."""
    ckpt = _convert(tmp_path)
    loss = ckpt["yolo9000_model_config"]["loss"]
    assert (loss["thresh"], loss["object_scale"], loss["noobject_scale"]) == (0.7, 3.0, 0.5)
    assert (loss["class_scale"], loss["coord_scale"], loss["rescore"]) == (2.0, 4.0, False)
    crit = load_module_from(ckpt, tmp_path).criterion
    assert (crit.thresh, crit.object_scale, crit.noobject_scale, crit.class_scale, crit.coord_scale) == (
        0.7,
        3.0,
        0.5,
        2.0,
        4.0,
    )
    assert not crit.rescore and not crit.bias_match  # bias_match=0: the network's, from the cfg


def test_net_optimiser_options_are_carried_over(tmp_path: Path) -> None:
    """[net] learning_rate / momentum / decay / burn_in / power / policy=poly: the module's optimiser settings."""
    ckpt = _convert(tmp_path, NET + "policy=poly\n")
    c = ckpt["yolo9000_model_config"]
    assert (c["lr"], c["momentum"], c["weight_decay"], c["burn_in"], c["power"]) == (0.0025, 0.8, 0.001, 7, 3.0)
    assert c["lr_policy"] == "poly"


def test_net_steps_and_scales_are_carried_over(tmp_path: Path) -> None:
    """``steps=100,250.5 scales=.5,.2``: integral steps as ints, the scales as given; an unknown policy (sigmoid)
    keeps the yaml's."""
    c = _convert(tmp_path, NET + "policy=steps\nsteps=100,250.5\nscales=.5,.2\n")["yolo9000_model_config"]
    assert c["lr_policy"] == "steps" and c["steps"] == [100, 250.5] and c["scales"] == [0.5, 0.2]
    assert isinstance(c["steps"][0], int)
    c = _convert(tmp_path, NET + "policy=sigmoid\n")["yolo9000_model_config"]
    assert c["lr_policy"] == "steps"


def test_detector_checkpoint_without_a_size_writes_its_build_size_else_416(tmp_path: Path) -> None:
    """A trained detector checkpoint that records no eval size (neither in its config nor a build record) is
    written with darknet's 416 x 416 [net] (224 is the classifier's default); with a build record, its size."""
    from test_darknet import tiny_trained_detector

    module = tiny_trained_detector()
    config = dict(module.model_config)
    config.pop("eval_size", None)
    path = tmp_path / "nosize.ckpt"
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": config}, path)
    checkpoint_to_darknet(path, tmp_path / "n.weights", tmp_path / "n.cfg")
    net = "[" + (tmp_path / "n.cfg").read_text().replace(" ", "").split("[")[1]
    assert net.startswith("[net]") and "\nwidth=416\n" in net and "\nheight=416\n" in net
    # a training checkpoint's build record (data.img_size) gives the size when the config has none
    hp = {"build_info": {"eval_size": 320}}
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": config, "hyper_parameters": hp}, path)
    checkpoint_to_darknet(path, tmp_path / "n.weights", tmp_path / "n.cfg")
    net = "[" + (tmp_path / "n.cfg").read_text().replace(" ", "").split("[")[1]
    assert "\nwidth=320\n" in net and "\nheight=320\n" in net


def test_convert_argument_checks(capsys: pytest.CaptureFixture[str]) -> None:
    """``--to-darknet`` without ``--ckpt`` and darknet -> checkpoint without ``--cfg`` are usage errors (exit 2)."""
    convert = load_script("convert")
    for argv, said in (
        (["--to-darknet", "--out", "x.weights"], "--to-darknet needs --ckpt"),
        (["--out", "x.ckpt"], "darknet -> checkpoint needs --cfg"),
    ):
        with pytest.raises(SystemExit) as stop:
            convert.parse_args(argv)
        assert stop.value.code == 2 and said in capsys.readouterr().err
    args = convert.parse_args(["--to-darknet", "--ckpt", "a.ckpt", "--out", "b.weights"])
    assert args.to_darknet and args.cfg_out is None


def test_export_trained_size_prefers_the_eval_size() -> None:
    """export.py's default example size: a detector's ``eval_size`` first, else the build record's, else 416."""
    export = load_script("export")
    both = SimpleNamespace(hparams={"eval_size": 320, "build_info": {"eval_size": 224}})
    assert export.trained_size(both) == 320
    assert export.trained_size(SimpleNamespace(hparams={"build_info": {"eval_size": 224}})) == 224
    assert export.trained_size(SimpleNamespace(hparams={})) == 416


# two 1x1 convs (no batch norm): 3 -> 4 -> 1 x (5 + 2); the second one marked dontsave when asked
def _two_conv_cfg(tmp_path: Path, dontsave: bool = False) -> Path:
    cfg = tmp_path / "two.cfg"
    cfg.write_text(
        "[net]\nheight=32\nwidth=32\nchannels=3\n"
        "[convolutional]\nfilters=4\nsize=1\nactivation=leaky\n"
        f"[convolutional]\nfilters=7\nsize=1\nactivation=linear\n{'dontsave=1' if dontsave else ''}\n"
        "[region]\nanchors=1,1\nclasses=2\nnum=1\nsoftmax=1\n"
    )
    return cfg


def _pack(seen: int, n_floats: int) -> bytes:
    head = struct.pack("<3iQ", 0, 2, 0, seen)  # version 0.2: a 64-bit seen
    return head + struct.pack(f"<{n_floats}f", *(0.25 * i for i in range(n_floats)))


def test_dontsave_layer_is_left_out_of_the_written_weights(tmp_path: Path) -> None:
    """A ``dontsave=1`` conv is loaded but not written back (darknet's save_weights): header (20 bytes) + the first
    conv's 4 biases and 4 x 3 weights; ``seen`` above 2^32 survives as 64 bits."""
    cfg = _two_conv_cfg(tmp_path, dontsave=True)
    weights = tmp_path / "two.weights"
    weights.write_bytes(_pack(2**33 + 5, 4 + 12 + 7 + 28))
    ckpt = tmp_path / "two.ckpt"
    torch.save(darknet_to_checkpoint(cfg, weights), ckpt)
    out = tmp_path / "out.weights"
    info = checkpoint_to_darknet(ckpt, out)
    assert info.seen == 2**33 + 5
    assert out.read_bytes() == weights.read_bytes()[: 20 + 4 * 16]


def test_a_weights_file_one_conv_short_is_warned_as_partial(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Weights for all but the last conv: the detector converts with a warning that 1 of the 2 convs was filled."""
    cfg = _two_conv_cfg(tmp_path)
    weights = tmp_path / "one.weights"
    weights.write_bytes(_pack(3, 4 + 12))
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        darknet_to_checkpoint(cfg, weights)
    assert "filled 1 of the 2 conv layers" in caplog.text


def test_weights_with_floats_after_the_last_layer_convert_as_darknet_and_strict_refuses(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """Four floats more than the two convs take: the conversion (library, convert.py, Detector.from_darknet) fills
    both convs from the file's first 51 floats and ignores the rest, warned, as darknet's load_weights; ``strict``
    (``--strict``) refuses the file, naming the counts."""
    from yolo9000 import Detector

    cfg = _two_conv_cfg(tmp_path)
    weights = tmp_path / "long.weights"
    weights.write_bytes(_pack(3, 4 + 12 + 7 + 28 + 4))
    with caplog.at_level(logging.WARNING, logger="yolo9000"):
        state = darknet_to_checkpoint(cfg, weights)["state_dict"]
    assert "expect 51 floats after the header, found 55 (4 trailing)" in caplog.text
    pred = [v for k, v in state.items() if k.endswith("weight") and v.shape[0] == 7][0]
    assert pred.flatten().tolist() == [0.25 * i for i in range(4 + 12 + 7, 4 + 12 + 7 + 28)]  # not shifted
    with pytest.raises(ValueError, match=r"found 55 \(4 trailing\): the network \(its cfg\) does not match"):
        darknet_to_checkpoint(cfg, weights, strict=True)
    with pytest.raises(ValueError, match="4 trailing"):
        Detector.from_darknet(cfg, weights, strict=True)
    assert Detector.from_darknet(cfg, weights).class_names == ["0", "1"]
    convert = load_script("convert")
    convert.main(["--cfg", str(cfg), "--weights", str(weights), "--out", str(tmp_path / "a.ckpt")])
    assert (tmp_path / "a.ckpt").is_file()
    with pytest.raises(SystemExit, match="Error: .*4 trailing"):
        convert.main(["--cfg", str(cfg), "--weights", str(weights), "--out", str(tmp_path / "b.ckpt"), "--strict"])
    assert not (tmp_path / "b.ckpt").exists()
