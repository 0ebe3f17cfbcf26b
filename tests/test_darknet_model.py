"""model=darknet: any darknet detector cfg set to the data's classes and priors (as darknet's users edit a cfg), its
start from darknet weights, the build that records the cfg in the checkpoint, and a training run end to end."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from hydra.errors import InstantiationException
from omegaconf import OmegaConf

from conftest import compose_config, run_script
from test_darknet import CFG, randomize, scaled_cfg
from yolo9000.build import build
from yolo9000.checkpoints import checkpoint_to_darknet, load_module
from yolo9000.darknet import (
    DarknetNet,
    darknet_detector,
    detector_cfg_text,
    net_augment_options,
    parse_cfg,
    parse_cfg_text,
    region_meta,
    save_weights,
)

HEAD = (
    "[net]\nheight=64\nwidth=64\nchannels=3\n\n[convolutional]\nfilters=8\nsize=3\nstride=32\npad=1\nactivation=leaky\n"
)


def test_detector_cfg_text_sets_classes_priors_and_head_filters() -> None:
    """classes=3 and two anchors: [region] classes / num / anchors set and the conv before it gets 2 * (4 + 1 + 3) =
    16 filters; an option the cfg leaves out (num) is added under the header; every other line stays as written."""
    text = (
        HEAD + "# keep me\n[convolutional]\nfilters=125\nsize=1\nactivation=linear\n\n[region]\nclasses=20\ncoords=4\n"
    )
    text += "anchors = 1,1, 2,2, 3,3, 4,4, 5,5\nsoftmax=1\n"
    out = detector_cfg_text(text, 3, [[1.5, 2.0], [3.25, 4.0]])
    assert "filters=16\nsize=1" in out and "filters=8\nsize=3" in out
    assert "[region]\nnum=2\nclasses=3\ncoords=4\nanchors=1.5, 2, 3.25, 4\nsoftmax=1\n" in out
    assert "# keep me" in out and out.count("\n") == text.count("\n") + 1
    net = DarknetNet(parse_cfg_text(out))
    assert net.out_channels == 16 and net.num_classes == 3 and net.anchors.tolist() == [[1.5, 2.0], [3.25, 4.0]]
    whole = text.replace("coords=4\n", "coords=4\nnum=5\n")
    assert detector_cfg_text(whole, None, None) == whole  # nothing given: the cfg's own classes and num


def test_detector_cfg_text_refuses_what_it_cannot_set() -> None:
    """No [region]: not a detector; a [region] after a maxpool: no conv to set to the classes."""
    with pytest.raises(ValueError, match="no \\[region\\] layer"):
        detector_cfg_text(HEAD, 3, None, "a.cfg")
    with pytest.raises(ValueError, match="a.cfg:15: the layer before \\[region\\] is \\[maxpool\\]"):
        detector_cfg_text(HEAD + "[maxpool]\nsize=1\nstride=1\n[region]\nclasses=2\n", 3, None, "a.cfg")


def test_a_whole_detector_file_fills_all_but_a_reshaped_head(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A 2-class detector's .weights into the same cfg at 3 classes: every layer but the prediction conv equals the
    file's, the prediction conv starts fresh, and nothing is reported as ignored; at 2 classes every layer."""
    cfg = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 2)
    source = randomize(darknet_detector(cfg), seed=4)
    weights = tmp_path / "tiny.weights"
    save_weights(source, weights)
    want = [c.weight.detach().clone() for c, _ in source.conv_pairs()]
    with caplog.at_level(logging.INFO, "yolo9000"):
        net = darknet_detector(cfg, num_classes=3, weights=weights)
    got = [c.weight for c, _ in net.conv_pairs()]
    assert all(torch.equal(a, b) for a, b in zip(got[:-1], want[:-1], strict=True))
    assert got[-1].shape[0] == 5 * 8 and want[-1].shape[0] == 5 * 7
    assert "starts fresh" in caplog.text and "ignored" not in caplog.text
    whole = darknet_detector(cfg, num_classes=2, weights=weights)
    assert all(torch.equal(c.weight, w) for (c, _), w in zip(whole.conv_pairs(), want, strict=True))


def test_model_darknet_builds_from_the_cfg_and_its_checkpoint_needs_no_file(tmp_path: Path) -> None:
    """The build sets the cfg to BCCD's 3 classes with the cfg's own anchors (priors.anchors=cfg) and keeps the cfg's
    text in the model config; the module rebuilt from a checkpoint runs with the cfg and weights files gone, and
    goes back to darknet files (the adapted cfg)."""
    cfg_path = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 20)
    start = tmp_path / "start.weights"
    save_weights(randomize(darknet_detector(cfg_path), seed=5), start)
    cfg = compose_config(
        "train",
        "model=darknet",
        f"model.net.cfg={cfg_path}",
        f"model.net.weights={start}",
        "data.max_images=4",
        "data.num_workers=0",
        "data.img_size=64",
    )
    built = build(cfg)
    net = built.module.model
    assert isinstance(net, DarknetNet) and net.num_classes == 3 and net.out_channels == 5 * 8
    assert built.info.prior_source == "cfg" and built.info.anchors[0] == [1.08, 1.19]
    assert built.module.model_config["net"]["cfg_text"] == cfg_path.read_text()  # set to the data again when rebuilt
    assert "classes=3" in net.cfg_text
    ckpt = tmp_path / "m.ckpt"
    torch.save({"state_dict": built.module.state_dict(), "yolo9000_model_config": built.module.model_config}, ckpt)
    cfg_path.unlink()
    start.unlink()
    module = load_module(ckpt).eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(module(x), built.module.eval()(x))
    checkpoint_to_darknet(ckpt, tmp_path / "back.weights", tmp_path / "back.cfg")
    # the cfg it was built from, its [net] at the size the checkpoint runs at (64: the cfg's 416 made darknet's and
    # Detector.from_darknet's default input another than the checkpoint's), every other line as it was
    back = (tmp_path / "back.cfg").read_text().splitlines()
    orig = net.cfg_text.splitlines()
    assert [line for line in back if not line.startswith(("width=", "height="))] == [
        line for line in orig if not line.replace(" ", "").startswith(("width=", "height="))
    ]
    net_section = parse_cfg(tmp_path / "back.cfg")[0]["options"]
    assert (net_section["height"], net_section["width"]) == ("64", "64")
    assert DarknetNet(parse_cfg(tmp_path / "back.cfg")).num_classes == 3


def test_a_backbone_checkpoint_for_a_network_without_one_is_refused(tmp_path: Path) -> None:
    """model.backbone_ckpt names Darknet-19's backbone: a darknet cfg's network is pointed to model.net.weights."""
    cfg_path = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3)
    cfg = compose_config(
        "train", "model=darknet", f"model.net.cfg={cfg_path}", "model.backbone_ckpt=x.weights", "data.max_images=4"
    )
    with pytest.raises(InstantiationException, match="has no Darknet-19 backbone.*model.net.weights"):
        build(cfg)


@pytest.mark.slow  # two training runs and an evaluation (~40 s): the parts are in the default suite above
def test_train_py_trains_a_darknet_cfg(tmp_path: Path) -> None:
    """`train.py model=darknet` end to end on BCCD at 64 px (k-means priors: num=3 in the cfg) from darknet weights,
    resumed for a second epoch after the weights file is gone (the checkpoint holds the weights), then eval.py on its
    checkpoint."""
    cfg_path = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 20)
    start = tmp_path / "start.weights"
    save_weights(randomize(darknet_detector(cfg_path), seed=6), start, cutoff=6)  # a partial file, as .conv.13
    out = tmp_path / "run"
    tiny = ["data.max_images=8", "data.batch_size=4", "data.num_workers=0", "data.img_size=64"]
    tiny += ["data.multiscale.min_size=64", "data.multiscale.max_size=96"]
    given = ["model=darknet", f"model.net.cfg={cfg_path}", f"model.net.weights={start}", "model.priors.anchors=kmeans"]
    given += ["model.priors.k=3", *tiny]
    run_script("train.py", out, *given, "trainer.max_epochs=1")
    start.unlink()
    res = run_script("train.py", None, f"resume={out}", *given, "trainer.max_epochs=2")
    assert "resuming the run" in res.stdout + res.stderr
    assert torch.load(out / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)["epoch"] == 1
    ckpt = out / "checkpoints" / "last.ckpt"
    net = load_module(ckpt).model
    assert net.num_anchors == 3 and net.num_classes == 3 and net.out_channels == 3 * 8
    assert "num=3" in net.cfg_text and "classes=3" in net.cfg_text and f"filters={3 * 8}" in net.cfg_text
    res = run_script("eval.py", tmp_path / "eval", f"ckpt_path={ckpt}", "data.max_images=8", "data.num_workers=0")
    assert "mAP@0.5" in res.stdout + res.stderr


def test_model_darknet_without_its_cfg_says_so_before_reading_data(tmp_path: Path) -> None:
    """No model.net.cfg (k-means priors too), or one that is not there: the error names model.net.cfg, raised before
    the data is read (data.root points nowhere here)."""
    base = ["model=darknet", f"data.root={tmp_path / 'no_data'}"]
    with pytest.raises(ValueError, match=r"model=darknet needs a darknet detector cfg: model\.net\.cfg="):
        build(compose_config("train", *base, "model.priors.anchors=kmeans"))
    with pytest.raises(FileNotFoundError, match=r"darknet cfg not found: .*nope\.cfg \(model\.net\.cfg\)"):
        build(compose_config("train", *base, f"model.net.cfg={tmp_path / 'nope.cfg'}"))


def test_the_cfg_set_to_the_data_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Setting a 20-class, 5-prior cfg to 3 classes and 2 priors says what it set; the cfg's own setting says
    nothing."""
    cfg = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 20)
    with caplog.at_level(logging.INFO, "yolo9000"):
        darknet_detector(cfg)
        assert "set to" not in caplog.text
        darknet_detector(cfg, num_classes=3, anchors=[[1.0, 1.0], [2.0, 2.0]])
    assert "[region] set to 3 classes and 2 priors, the conv before it to 16 filters" in caplog.text


def test_a_cfg_with_a_size_bound_connected_layer_trains_at_its_size_only(tmp_path: Path) -> None:
    """A [connected] layer fed a 2 x 2 x 8 map (a 64 input, stride 32) ties the network to 64 x 64: multi-scale, or
    another size, is refused at the start naming the cfg and the keys; at 64 without multi-scale it passes. After
    a global [avgpool] (1 x 1 at any size), or with no [connected] layer, any size goes."""
    from yolo9000.build import check_config
    from yolo9000.darknet import fixed_input_size

    region = "[region]\nanchors=1,1\nclasses=3\nnum=1\ncoords=4\n"
    bound = HEAD + "[connected]\noutput=8\nactivation=leaky\n" + region
    pooled = HEAD + "[avgpool]\n[connected]\noutput=8\nactivation=leaky\n" + region
    assert fixed_input_size(parse_cfg_text(bound)) == (64, 64)
    assert fixed_input_size(parse_cfg_text(bound.replace("width=64", "width=96"))) == (64, 96)
    assert fixed_input_size(parse_cfg_text(pooled)) is None
    conv = "[convolutional]\nfilters=8\nsize=3\nstride=32\npad=1\nactivation=leaky\n"
    cropped = "[net]\nheight=64\nwidth=64\nchannels=3\n[crop]\ncrop_height=32\ncrop_width=32\n" + conv
    cropped += "[connected]\noutput=8\nactivation=leaky\n" + region  # 1 x 1 into it at 64, 2 x 2 at 128
    assert fixed_input_size(parse_cfg_text(cropped)) == (64, 64)  # the window grows with the input, as darknet's
    assert fixed_input_size(parse_cfg_text(HEAD + "[convolutional]\nfilters=8\nsize=1\nactivation=linear\n")) is None
    # the [region]'s classes await the data: a cfg whose head does not fit them yet is still sized
    assert fixed_input_size(parse_cfg_text(bound.replace("classes=3", "classes=20"))) == (64, 64)
    # the built network carries it (export.py exports such a network at that size)
    from yolo9000.darknet.net import DarknetNet

    assert DarknetNet(parse_cfg_text(bound.replace("width=64", "width=96"))).fixed_hw == (64, 96)
    assert DarknetNet(parse_cfg_text(pooled)).fixed_hw is None

    path = tmp_path / "bound.cfg"
    path.write_text(bound)
    base = ["model=darknet", f"model.net.cfg={path}", f"data.root={tmp_path / 'no_data'}"]
    for extra in (
        ["data.img_size=64", "data.multiscale.enabled=true"],
        ["data.img_size=96", "data.multiscale.enabled=false"],
    ):
        with pytest.raises(
            ValueError,
            match=r"bound\.cfg: its \[connected\] layer takes .* 64 x 64 input .*"
            r"data\.img_size=64 with data\.multiscale\.enabled=false",
        ):
            check_config(compose_config("train", *base, *extra))
    check_config(compose_config("train", *base, "data.img_size=64", "data.multiscale.enabled=false"))
    path.write_text(pooled)
    check_config(compose_config("train", *base, "data.img_size=96", "data.multiscale.enabled=true"))


REGION_CFG = HEAD + (
    "[convolutional]\nfilters=7\nsize=1\nactivation=linear\n"
    "[region]\nanchors=1,1\nclasses=2\nnum=1\ncoords=4\nbias_match=1\nthresh=.7\nobject_scale=2\nnoobject_scale=.5\n"
    "class_scale=3\ncoord_scale=4\nrescore=0\n"  # no softmax line: darknet's default softmax=0, logistic classes
)


def _built_loss(tmp_path: Path, *overrides: str) -> tuple[object, str]:
    cfg_path = tmp_path / "region.cfg"
    cfg_path.write_text(REGION_CFG)
    cfg = compose_config(
        "train", "model=darknet", f"model.net.cfg={cfg_path}", "data.max_images=4", "data.num_workers=0",
        "data.img_size=64", *overrides,
    )  # fmt: skip
    module = build(cfg).module
    return module.criterion, module.model.cfg_text


def test_model_darknet_trains_with_the_cfgs_region_settings_by_default(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """region_options=cfg (darknet's): the loss takes the [region]'s thresh .7, scales 2 / .5 / 3 / 4, rescore=0
    and, with no softmax line, logistic classes (darknet's default), logging what differs from model.loss.*;
    region_options=keys keeps model.loss.* (yolov2-voc.cfg's 0.6, 5 / 1 / 1 / 1, rescore, softmax) and writes them
    into the cfg's [region], so the cfg the checkpoint keeps reads back as the loss that trained."""
    with caplog.at_level(logging.INFO, "yolo9000"):
        loss, text = _built_loss(tmp_path)
    got = (loss.thresh, loss.object_scale, loss.noobject_scale, loss.class_scale, loss.coord_scale, loss.rescore)
    assert got == pytest.approx((0.7, 2.0, 0.5, 3.0, 4.0, False)) and loss.class_activation == "logistic"
    assert "region.cfg: the loss takes the cfg's [region]" in caplog.text and "object_scale 5.0 -> 2.0" in caplog.text
    assert "class_activation softmax -> logistic" in caplog.text
    loss, text = _built_loss(tmp_path, "model.net.region_options=keys")
    got = (loss.thresh, loss.object_scale, loss.noobject_scale, loss.class_scale, loss.coord_scale, loss.rescore)
    assert got == pytest.approx((0.6, 5.0, 1.0, 1.0, 1.0, True)) and loss.class_activation == "softmax"
    written = region_meta(parse_cfg_text(text), search=None)
    assert written is not None
    assert written.loss_options() == pytest.approx(
        {"thresh": 0.6, "object_scale": 5.0, "noobject_scale": 1.0, "class_scale": 1.0, "coord_scale": 1.0,
         "rescore": True, "class_activation": "softmax"}
    )  # fmt: skip
    with pytest.raises(ValueError, match="model.net.region_options must be cfg or keys, got 'both'"):
        _built_loss(tmp_path, "model.net.region_options=both")


def test_model_darknet_of_a_cfg_naming_a_tree_exports_a_cfg_darknet_reads(tmp_path: Path) -> None:
    """``model=darknet`` with a cfg whose [region] names ``tree=`` / ``map=`` (yolo9000.cfg's) trains a flat head
    over the data's classes: ``--to-darknet`` writes a cfg without them, which ``from_darknet`` reads back into the
    same network (it failed: the data's 4 classes over a tree file the cfg named, 9418 nodes expected)."""
    from yolo9000 import Detector

    cfg_path = tmp_path / "region.cfg"
    cfg_path.write_text(REGION_CFG + "tree=data/9k.tree\nmap=data/coco9k.map\n")
    cfg = compose_config(
        "train", "model=darknet", f"model.net.cfg={cfg_path}", "data.max_images=4", "data.num_workers=0",
        "data.img_size=64",
    )  # fmt: skip
    module = build(cfg).module
    kept = module.model_config["net"]["cfg_text"]
    assert "tree=" not in kept and "map=" not in kept  # the checkpoint's cfg
    x = torch.rand(1, 3, 64, 64)
    # and a checkpoint of an earlier version, whose cfg kept the lines: the export leaves them out
    old = {**module.model_config, "net": {**module.model_config["net"], "cfg_text": REGION_CFG + "tree=a\nmap=b\n"}}
    for k, config in enumerate((module.model_config, old)):
        ckpt = tmp_path / f"m{k}.ckpt"
        torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": config}, ckpt)
        out = {s: tmp_path / f"m{k}.{s}" for s in ("weights", "cfg", "names")}
        checkpoint_to_darknet(ckpt, out["weights"], out["cfg"], out["names"])
        region = parse_cfg_text(out["cfg"].read_text())[-1]
        assert "tree" not in region["options"] and "map" not in region["options"]
        det = Detector.from_darknet(out["cfg"], out["weights"], out["names"], device="cpu")
        with torch.no_grad():  # up to the batch norm written for darknet's sqrt(var) + 1e-6
            torch.testing.assert_close(det.module.model(x), module.eval().model(x), rtol=1e-4, atol=1e-5)


def test_model_darknet_trains_with_the_cfgs_augmentation(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """darknet's train_detector augments with the cfg's [region] jitter / random and [net] hue / saturation /
    exposure (absent lines: .2, 0, 0, 1, 1): the data module trains with them, not the data file's (BCCD: jitter .3,
    hue .1, 1.5, 1.5, multi-scale on), and logs them; a data.augment.* / data.multiscale.enabled key given replaces
    the cfg's."""
    path = tmp_path / "aug.cfg"
    path.write_text(
        REGION_CFG.replace("[net]\n", "[net]\nhue=.05\nsaturation=.75\nexposure=1.2\n", 1) + "jitter=.25\nrandom=0\n"
    )
    (tmp_path / "bare").mkdir()
    bare = tmp_path / "bare" / "aug.cfg"
    bare.write_text(REGION_CFG)
    base = ["model=darknet", "data.max_images=4", "data.num_workers=0", "data.img_size=64"]
    with caplog.at_level(logging.INFO, "yolo9000"):
        dm = build(compose_config("train", *base, f"model.net.cfg={path}")).datamodule
    a = dm.augment
    assert (a.jitter, a.hue, a.saturation, a.exposure, dm.multiscale.enabled) == (0.25, 0.05, 0.75, 1.2, False)
    assert "aug.cfg: training augmentation jitter 0.25, hue 0.05, saturation 0.75, exposure 1.2, multi-scale off" in (
        caplog.text
    )
    d = compose_config("train", *base, f"model.net.cfg={bare}").data
    assert (d.augment.jitter, d.augment.hue, d.augment.saturation, d.augment.exposure) == (0.2, 0.0, 1.0, 1.0)
    assert d.multiscale.enabled is False
    given = compose_config(
        "train", *base, f"model.net.cfg={path}", "data.augment.jitter=0.1", "data.multiscale.enabled=true"
    ).data
    assert (given.augment.jitter, given.augment.hue, given.multiscale.enabled) == (0.1, 0.05, True)
    yolo = compose_config("train", "data.img_size=64").data  # the project's own model: the data file's values
    assert (yolo.augment.jitter, yolo.augment.saturation, yolo.multiscale.enabled) == (0.3, 1.5, True)


def test_experiment_yolo9000_augments_as_yolo9000_cfg() -> None:
    """The full-scale YOLO9000 recipe (this project's own model, not model=darknet) trains with yolo9000.cfg's
    augmentation: [region] jitter .2 (not yolov2-voc.cfg's .3), [net] hue .1, saturation and exposure .75, random=1."""
    want = net_augment_options(parse_cfg(CFG / "yolo9000.cfg"))
    assert (want["jitter"], want["saturation"], want["random"]) == (0.2, 0.75, True)  # the vendored file's lines
    d = compose_config("train", "experiment=yolo9000").data
    got = {k: d.augment[k] for k in ("jitter", "hue", "saturation", "exposure")} | {"random": d.multiscale.enabled}
    assert got == want


NET_OPTIONS = "learning_rate=0.02\nmomentum=0.8\ndecay=0.0003\nburn_in=7\nmax_batches=500\n"
SCHEDULE_KEYS = ("lr", "momentum", "weight_decay", "burn_in", "power", "lr_policy", "steps", "scales")


def _net_cfg(tmp_path: Path, lines: str) -> Path:
    """REGION_CFG with ``lines`` added to its [net]."""
    path = tmp_path / "net.cfg"
    path.write_text(REGION_CFG.replace("[net]\n", "[net]\n" + lines, 1))
    return path


def _schedule(path: Path, *overrides: str) -> dict[str, object]:
    model = OmegaConf.to_container(
        compose_config("train", "model=darknet", f"model.net.cfg={path}", *overrides).model, resolve=True
    )
    assert isinstance(model, dict)
    return {k: model[k] for k in SCHEDULE_KEYS}


def test_model_darknet_trains_with_the_cfgs_net_options(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """darknet trains a cfg with its [net]'s learning_rate, momentum, decay, burn_in, policy, steps and scales
    (parse_net_options; absent lines: darknet's defaults 0.001, 0.9, 0.0001, 0, power 4 and the constant policy);
    a key on the command line replaces the cfg's (logged), as does max_batches's note; the module trains with them."""
    steps = _net_cfg(tmp_path, NET_OPTIONS + "policy=steps\nsteps=5,9\nscales=.5,.2\n")
    assert _schedule(steps) == {
        "lr": 0.02, "momentum": 0.8, "weight_decay": 0.0003, "burn_in": 7, "power": 4.0, "lr_policy": "steps",
        "steps": [5, 9], "scales": [0.5, 0.2],
    }  # fmt: skip
    assert _schedule(steps, "model.lr=0.5", "model.steps=[3]", "model.scales=[0.1]")["lr"] == 0.5
    (tmp_path / "bare").mkdir()
    bare = _net_cfg(tmp_path / "bare", "")
    assert _schedule(bare) == {
        "lr": 0.001, "momentum": 0.9, "weight_decay": 0.0001, "burn_in": 0, "power": 4.0, "lr_policy": "steps",
        "steps": [], "scales": [],
    }  # fmt: skip
    poly = _schedule(_net_cfg(tmp_path / "bare", "policy=poly\npower=2\n"))
    assert (poly["lr_policy"], poly["power"], poly["steps"], poly["scales"]) == ("poly", 2.0, [], [])
    with caplog.at_level(logging.INFO, "yolo9000"):
        module = build(
            compose_config(
                "train", "model=darknet", f"model.net.cfg={steps}", "data.max_images=4", "data.num_workers=0",
                "data.img_size=64", "model.momentum=0.7",
            )
        ).module  # fmt: skip
    hp = module.hparams
    assert (hp.lr, hp.momentum, hp.weight_decay, hp.burn_in, list(hp.steps), list(hp.scales)) == (
        0.02, 0.7, 0.0003, 7, [5, 9], [0.5, 0.2]
    )  # fmt: skip
    assert "replaced on the command line: model.momentum=0.7 (the cfg's 0.8)" in caplog.text
    assert "max_batches=500" in caplog.text


def _exported_net(tmp_path: Path, cfg_path: Path, *overrides: str) -> tuple[dict[str, str], str]:
    """The ``[net]`` options (and the text) of the cfg ``checkpoint_to_darknet`` writes for a model=darknet module
    built with ``overrides``, saved as Lightning saves it (its hyper-parameters under ``hyper_parameters``)."""
    module = build(
        compose_config(
            "train", "model=darknet", f"model.net.cfg={cfg_path}", "data.max_images=4", "data.num_workers=0",
            "data.img_size=64", *overrides,
        )
    ).module  # fmt: skip
    ckpt, out = tmp_path / "m.ckpt", tmp_path / "m.cfg"
    state = {"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}
    torch.save({**state, "hyper_parameters": dict(module.hparams)}, ckpt)
    checkpoint_to_darknet(ckpt, tmp_path / "m.weights", out)
    return parse_cfg(out)[0]["options"], out.read_text()


def test_exported_cfg_says_the_net_options_given_on_the_command_line(tmp_path: Path) -> None:
    """``convert.py --to-darknet`` of a model=darknet run wrote the cfg's [net] learning_rate, momentum, decay,
    burn_in, policy, steps and scales even where the command line replaced them (model.lr=...): the exported cfg
    now says what the run trained with; lines nobody replaced stay as written; steps as fractions of the run and
    optimizer=adam, which darknet's [net] cannot say, are comments."""
    path = _net_cfg(tmp_path, NET_OPTIONS + "policy=steps\nsteps=5,9\nscales=.5,.2\n")
    given = ["model.lr=0.25", "model.momentum=0.7", "model.weight_decay=0.002", "model.burn_in=3"]
    net, text = _exported_net(tmp_path, path, *given, "model.steps=[4,8,12]", "model.scales=[0.1,0.2,0.3]")
    want = {"learning_rate": "0.25", "momentum": "0.7", "decay": "0.002", "burn_in": "3", "policy": "steps"}
    assert {k: net[k] for k in want} == want
    assert (net["steps"], net["scales"], net["max_batches"]) == ("4,8,12", "0.1,0.2,0.3", "500")
    assert not text.startswith("#")
    net, text = _exported_net(tmp_path, path, "model.lr_policy=poly", "model.power=2")
    assert (net["policy"], net["power"], net["learning_rate"], net["scales"]) == ("poly", "2", "0.02", ".5,.2")
    net, text = _exported_net(tmp_path, path, "model.steps=[]", "model.scales=[]")
    assert net["policy"] == "constant"  # darknet's steps policy needs its steps
    net, text = _exported_net(tmp_path, path, "model.steps=[0.5]", "model.scales=[0.1]", "model.optimizer=adam")
    assert (net["steps"], net["scales"]) == ("5,9", ".5,.2")  # the cfg's: fractions of a run are no iterations
    assert text.startswith("# trained with steps at fractions [0.5] of the run") and "optimizer=adam" in text
    net, text = _exported_net(tmp_path, path)  # nothing replaced: the [net] as the cfg writes it
    assert [line for line in text.splitlines() if not line.startswith(("width=", "height="))][:9] == [
        line for line in path.read_text().splitlines() if not line.startswith(("width=", "height="))
    ][:9]


def test_model_darknet_names_a_net_policy_it_cannot_run(tmp_path: Path) -> None:
    """darknet's exp / step / sigmoid / random policies are no schedule here: the cfg's file and line and the keys to
    set; given them, the cfg trains; a steps policy without its steps is refused as darknet refuses it."""
    path = _net_cfg(tmp_path, "policy=exp\ngamma=0.9\n")
    with pytest.raises(Exception, match=r"policy=exp \(.*net.cfg:2\).*model.lr_policy=steps\|poly"):
        _schedule(path)
    assert _schedule(path, "model.lr_policy=poly")["lr_policy"] == "poly"
    with pytest.raises(Exception, match=r"policy=steps needs steps and scales of the same count"):
        _schedule(_net_cfg(tmp_path, "policy=steps\nsteps=5,9\nscales=.5\n"))


def test_converted_weights_keep_the_cfgs_schedule(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """darknet_to_checkpoint (convert.py, Detector.from_darknet) reads the same [net] options: a cfg without training
    lines gets darknet's defaults (decay 0.0001, the constant policy: no steps), not conf/model's; a policy that is
    no schedule here keeps conf/model's (warned) and the conversion goes on."""
    from yolo9000.checkpoints import darknet_to_checkpoint

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    bare = darknet_to_checkpoint(_net_cfg(tmp_path / "a", ""))["yolo9000_model_config"]
    assert (bare["lr"], bare["weight_decay"], bare["burn_in"], bare["lr_policy"], bare["steps"]) == (
        0.001, 0.0001, 0, "steps", []
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, "yolo9000"):
        exp = darknet_to_checkpoint(_net_cfg(tmp_path / "b", NET_OPTIONS + "policy=exp\n"))["yolo9000_model_config"]
    assert (exp["lr"], exp["momentum"], exp["lr_policy"], exp["steps"]) == (0.02, 0.8, "steps", [40000, 60000])
    assert "policy=exp" in caplog.text and "keeps conf/model's" in caplog.text
