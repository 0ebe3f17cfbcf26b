"""The entry scripts end to end, as a user runs them, on a few real BCCD images with a tiny network."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import ROOT, TINY, run_script

run = run_script


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train")
    res = run("train.py", out, *TINY)
    out.with_name(out.name + "_console.txt").write_text(res.stdout + res.stderr)
    return out


def test_train_writes_run_dir(trained: Path) -> None:
    metrics = json.loads((trained / "metrics.json").read_text())
    for key in ("map_50", "map", "map_75", "voc07_map_50", "per_class", "seen", "data_issues"):
        assert key in metrics
    assert metrics["headline_metric"] == "map_50"  # BCCD: both reported, COCO-style AP@0.5 heads
    assert set(metrics["per_class"]) == {"RBC", "WBC", "Platelets"}
    assert 0.0 <= metrics["map_50"] <= 1.0
    assert metrics["seen"] == 8  # one epoch of 8 images
    assert (metrics["split"], metrics["img_size"]) == ("test", 64)  # as eval.py's: pr_curves.png's title names them
    assert (trained / "checkpoints" / "last.ckpt").is_file()
    assert (trained / "config.yaml").is_file() and (trained / "per_class.md").is_file()
    assert len(list((trained / "predictions").glob("*.jpg"))) == 2
    assert list((trained / "wandb").glob("offline-run-*")), "no offline W&B run folder"
    assert (trained / "csv" / "metrics.csv").is_file()


def test_train_log_holds_the_tables_the_console_shows(trained: Path) -> None:
    """The model summary and the test metrics reach the console as Rich tables only; train.log has them as text,
    and the console does not show them twice."""
    log = (trained / "train.log").read_text()
    console = trained.with_name(trained.name + "_console.txt").read_text()
    assert "model summary:" in log and "| model.backbone | Darknet19" in log and "Trainable params" in log
    assert "| Test metric | DataLoader 0 |" in log and "| test/map_50 |" in log
    assert "Trainable params" in console and "Test metric" in console  # Lightning's Rich tables
    assert "model summary:" not in console and "| Test metric |" not in console


@pytest.mark.slow  # ~12 s; exact resumes stay in the default suite (tests/test_resume.py: SIGKILL and SIGTERM)
def test_resume_continues_exactly(trained: Path, tmp_path: Path) -> None:
    ckpt = torch.load(trained / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert int(ckpt["state_dict"]["seen"]) == 8
    position = {k: ckpt["DetectionDataModule"][k] for k in ("epoch", "batch")}
    assert ckpt["epoch"] == 0 and position == {"epoch": 1, "batch": 0}  # next: epoch 1, batch 0
    run(
        "train.py",
        tmp_path,
        *TINY,
        "trainer.max_epochs=2",
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
    )
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert resumed["epoch"] == 1 and resumed["global_step"] == 2 * ckpt["global_step"]
    state = resumed["DetectionDataModule"]
    assert (state["epoch"], state["batch"]) == (2, 0)  # the multi-scale schedule continued
    # the data counters (metrics.json's augmentation) cover both processes: 8 training loads each
    assert ckpt["DetectionDataModule"]["stats"]["train"]["loaded"] == 8 and state["stats"]["train"]["loaded"] == 16
    assert json.loads((tmp_path / "metrics.json").read_text())["augmentation"]["train"]["samples_loaded"] == 16
    assert int(resumed["state_dict"]["seen"]) == 16
    assert resumed["optimizer_states"][0]["state"], "optimizer state not carried over"
    # metrics.json's train_img_per_s covers both processes: each timed its batches after its first (warm-up)
    speed = [next(v for k, v in c["callbacks"].items() if k.startswith("SpeedMonitor")) for c in (ckpt, resumed)]
    assert [s["train_images"] for s in speed] == [4, 8] and speed[1]["train_time"] > speed[0]["train_time"] > 0


def test_eval_reproduces_test_metrics(trained: Path, tmp_path: Path) -> None:
    best = json.loads((trained / "metrics.json").read_text())["checkpoint"]
    run("eval.py", tmp_path, f"ckpt_path={best}", *TINY[:5], "draw=1")
    got = json.loads((tmp_path / "metrics.json").read_text())
    want = json.loads((trained / "metrics.json").read_text())
    assert got["map_50"] == pytest.approx(want["map_50"], abs=1e-9)
    assert (tmp_path / "per_class.md").read_text().startswith("| class")


def test_detect_on_folder_with_a_bad_file(trained: Path, tmp_path: Path) -> None:
    src = tmp_path / "images"
    src.mkdir()
    for name in ("BloodImage_00000.jpg", "BloodImage_00001.jpg"):
        shutil.copy(ROOT / "data" / "bccd" / "JPEGImages" / name, src / name)
    (src / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    run(
        "detect.py",
        out,
        f"ckpt_path={trained / 'checkpoints' / 'last.ckpt'}",
        f"source={src}",
        "conf_thresh=0.0",
    )
    det = json.loads((out / "detections.json").read_text())
    assert [Path(r["file"]).name for r in det["images"]] == ["BloodImage_00000.jpg", "BloodImage_00001.jpg"]
    assert det["images"][0]["width"] == 640 and det["images"][0]["height"] == 480
    assert [Path(f["file"]).name for f in det["failed"]] == ["broken.jpg"]
    assert len(list((out / "detections").glob("*.jpg"))) == 2
    for d in det["images"][0]["detections"]:
        x0, y0, x1, y1 = d["box"]
        assert 0 <= x0 <= x1 <= 640 and 0 <= y0 <= y1 <= 480 and d["class"] in {"RBC", "WBC", "Platelets"}


def test_anchors_cli_on_a_split_of_fewer_box_shapes_than_its_ks(tmp_path: Path) -> None:
    """A small split (one BCCD image, its boxes of fewer distinct shapes than ks' 40): the table leaves the ks
    beyond them out, warned, and the anchors are written (it crashed in the sweep: "k=... must be between 1 and
    the number of distinct box shapes")."""
    res = run("anchors.py", tmp_path, "ks=[1,2,40]", "k=2", "restarts=1", "data.max_images=1", "data.num_workers=0")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "ks [40] left out of the table" in res.stdout + res.stderr
    rows = (tmp_path / "avg_iou.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows] == ["k", "1", "2"]
    assert yaml_anchors(tmp_path / "anchors.yaml") == 2


def yaml_anchors(path: Path) -> int:
    import yaml

    return len(yaml.safe_load(path.read_text())["anchors"])


@pytest.mark.slow  # ~9 s, a subprocess; k-means itself is test_anchors.py's, in the default suite
def test_anchors_cli(tmp_path: Path) -> None:
    res = run("anchors.py", tmp_path, "ks=[1,2,3]", "k=3", "restarts=1", "data.max_images=20", "data.num_workers=0")
    text = (tmp_path / "anchors.yaml").read_text()
    assert "anchors: [[" in text and text.count("], [") == 2
    rows = (tmp_path / "avg_iou.csv").read_text().splitlines()
    assert rows[0] == "k,avg_iou_iou,avg_iou_sse" and len(rows) == 4
    assert (tmp_path / "kmeans_avg_iou.png").stat().st_size > 0
    assert "Average IoU" in res.stdout
    # the anchors written are those training computes on the same data with model.priors.anchors=kmeans
    import hydra
    import yaml

    from conftest import compose_config
    from yolo9000.build import build_info

    cfg = compose_config(
        "train", "model.priors.anchors=kmeans", "model.priors.k=3", "data.max_images=20", "data.num_workers=0"
    )
    dm = hydra.utils.instantiate(cfg.data)
    dm.setup("fit")
    written, trained = yaml.safe_load(text)["anchors"], build_info(cfg, dm).anchors
    assert torch.allclose(torch.tensor(written), torch.tensor(trained), atol=1e-4), (written, trained)


@pytest.mark.slow  # ~13-20 s of subprocesses; kept out of the default suite
def test_export_cli(trained: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    out = tmp_path / "model.onnx"
    cmd = [
        sys.executable,
        str(ROOT / "src" / "export.py"),
        "--ckpt",
        str(trained / "checkpoints" / "last.ckpt"),
        "--out",
        str(out),
    ]
    res = subprocess.run(
        cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}
    )
    assert res.returncode == 0, res.stderr[-3000:]
    assert out.stat().st_size > 0 and "max abs difference" in res.stderr
    said = (res.stdout + res.stderr).strip().splitlines()  # the file written and the check, not the exporter's steps
    assert len(said) == 2 and said[0].startswith("wrote "), said


@pytest.mark.slow  # ~24 s; its steps are in the default suite (test_classifier: fit, fine-tune, backbone hand-off)
def test_classifier_chain_pretrain_finetune_detect(tmp_path: Path) -> None:
    """The paper's path on real crops: 224-analog pretraining -> 448-analog fine-tune -> detector backbone."""
    voc = tmp_path / "voc"
    ids = {
        "train": ["BloodImage_00000", "BloodImage_00001", "BloodImage_00002"],
        "val": ["BloodImage_00003"],
        "test": ["BloodImage_00004"],
    }
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for sub in ("Annotations", "JPEGImages"):
        (voc / sub).mkdir()
    for split, names in ids.items():
        (voc / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
        for n in names:
            shutil.copy(ROOT / "data" / "bccd" / "Annotations" / f"{n}.xml", voc / "Annotations")
            shutil.copy(ROOT / "data" / "bccd" / "JPEGImages" / f"{n}.jpg", voc / "JPEGImages")
    common = [
        "data.num_workers=0",
        "data.batch_size=8",
        "model.net.backbone.width=0.125",
        "trainer.max_epochs=1",
        f"data.root={tmp_path / 'crops'}",
        f"data.build_from={voc}",
    ]
    run("train.py", tmp_path / "pre", "experiment=pretrain_darknet19", "data.img_size=32", "logger=csv", *common)
    pre = json.loads((tmp_path / "pre" / "metrics.json").read_text())
    assert 0.0 <= pre["top1"] <= 1.0 and (tmp_path / "crops" / "train" / "WBC").is_dir()
    from yolo9000.checkpoints import checkpoint_to_darknet

    checkpoint_to_darknet(pre["checkpoint"], tmp_path / "pre.weights", tmp_path / "pre.cfg")
    net_section = (tmp_path / "pre.cfg").read_text().split("[convolutional]")[0]
    assert "height=32" in net_section and "width=32" in net_section  # the size it was trained at, not 416
    res = run(  # without loggers (~logger): Lightning's learning-rate monitor would refuse to start
        "train.py",
        tmp_path / "ft",
        "experiment=finetune_448",
        "data.img_size=64",
        f"model.init_ckpt={pre['checkpoint']}",
        "~logger",
        *common,
    )
    assert "no logger (~logger): the learning rate is not logged" in res.stdout + res.stderr
    ft = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    res = run("train.py", tmp_path / "det", *TINY, "logger=csv", f"model.backbone_ckpt={ft['checkpoint']}")
    assert "backbone initialised from" in res.stdout + res.stderr
    det = torch.load(tmp_path / "det" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    src = torch.load(ft["checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    # the detector's backbone started from the fine-tuned classifier's: same shapes, every tensor present
    backbone = {k.split("backbone.", 1)[1]: v for k, v in src.items() if "backbone." in k}
    det_backbone = {k.split("backbone.", 1)[1]: v for k, v in det["state_dict"].items() if "backbone." in k}
    assert backbone.keys() == det_backbone.keys()


@pytest.mark.slow
def test_default_run_reaches_target(tmp_path: Path) -> None:
    """The README's main job as is (BCCD, CPU, ~12 min on 2 cores): test mAP@0.5 of at least 0.5."""
    run("train.py", tmp_path, "logger=csv")
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["map_50"] >= 0.5, metrics["per_class"]
    assert metrics["per_class"]["WBC"]["ap50"] >= 0.8
