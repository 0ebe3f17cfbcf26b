"""bench.py on the default config, detect.py's exit status, eval.py's class-mismatch advice: as a user runs them,
with small random-weight checkpoints written here (no training)."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser

from conftest import compose_config, load_script
from yolo9000.build import build
from yolo9000.environment import setup_environment

ROOT = Path(__file__).resolve().parents[1]
BCCD = ["RBC", "WBC", "Platelets"]


def run(script: str, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    """Run ``src/<script>`` with its Hydra run folder at ``out``; the caller checks the exit status."""
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": str(ROOT / "src")}
    cmd = [sys.executable, str(ROOT / "src" / script), f"hydra.run.dir={out}", *overrides]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


def make_checkpoint(path: Path, *overrides: str) -> Path:
    """A random-weight BCCD detector checkpoint as train.py builds and saves it (1/8 width, 64 px; ``overrides``:
    more of train.py's)."""
    setup_environment()  # the config resolvers
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        cfg = compose(
            "train.yaml",
            overrides=[
                "model.net.backbone.width=0.125",
                "data.max_images=8",
                "data.num_workers=0",
                "data.img_size=64",
                *overrides,
            ],
        )
    module = build(cfg).module
    assert list(module.class_names) == BCCD
    torch.save({"state_dict": module.state_dict(), "yolo9000_model_config": module.model_config}, path)
    return path


@pytest.fixture(scope="module")
def bccd_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "bccd.ckpt")


def load_eval_script() -> ModuleType:
    return load_script("eval")


# ---------------------------------------------------------------- bench
def test_bench_runs_on_the_default_config(tmp_path: Path) -> None:
    """The default config (k-means priors, which crashed the bench's own build) builds as in training; the table
    and bench.json carry every number (bare loop, loss, Lightning step, inference, loader, decode + NMS figures for
    the default head and an untrained 80-class one, the CPU targets)."""
    res = run(
        "bench.py",
        tmp_path,
        "bench.steps=1",
        "bench.warmup=0",
        "bench.batch_size=2",
        "bench.size=64",
        "bench.loader_batches=1",
        "bench.loss_protocol.rounds=1",
        "bench.loss_protocol.compiled_backend=null",  # (test_bench times the compiled loss's row)
        "data.max_images=8",
        "data.num_workers=0",
        "model.net.backbone.width=0.125",
    )
    assert res.returncode == 0, f"bench.py failed:\n{res.stdout[-3000:]}\n{res.stderr[-5000:]}"
    got = json.loads((tmp_path / "bench.json").read_text())
    post = got["postprocess"]
    for head in ("3cls", "80cls_untrained"):
        assert post[f"postprocess_{head}_ms_per_img"] > 0 and post[f"postprocess_{head}_share_of_forward"] > 0
        assert post[f"postprocess_{head}_conf"] == 0.005
        assert 0 < post[f"postprocess_{head}_dets_per_img"] <= 1000  # pre_nms_topk (no max_det cap: darknet)
        assert f"postprocess_{head}_ms_per_img" in res.stdout
    row = got["variants"]["default"]
    for key in (
        "bare_img_per_s",
        "loss_img_per_s",
        "lightning_img_per_s",
        "real_over_bare",
        "loss_share_of_step",
        "infer_b1_e2e_img_per_s",
        "infer_b32_e2e_img_per_s",
        "infer_b32_forward_img_per_s",
        "peak_mem_mb",
        *(f"lightning_{phase}_ms" for phase in ("fetch", "forward", "backward", "step")),
        *(f"paired_bare_{phase}_ms" for phase in ("forward", "backward", "step")),
    ):
        assert row[key] > 0, key
        assert key in res.stdout
    # the phases of the Lightning batch cover it (their sum is one batch's time, the median of each aside)
    phases = sum(row[f"lightning_{p}_ms"] for p in ("fetch", "forward", "backward", "step"))
    assert phases == pytest.approx(2e3 / row["lightning_img_per_s"], rel=0.5)
    assert row["precision"] == row["lightning_precision"] == "32-true"
    assert got["setup"] == {**got["setup"], "batch": 2, "size": 64, "classes": 3}
    assert got["machine"]["cpu_bf16"] in ("amx_bf16", "smeb16f32", "avx512_bf16", "svebf16", "bf16", "none", "unknown")
    assert got["data_loader"]["loader_img_per_s"] > 0 and got["data_loader"]["loader_img_per_s_per_worker"] > 0
    targets = {
        "real_over_bare",
        "loss_share_of_step",
        "e2e_over_forward_b1",
        "e2e_over_forward_b32",
        "loss_over_conv1x1",
    }
    assert set(got["targets"]) == targets
    assert "target real_over_bare" in res.stdout


# ---------------------------------------------------------------- detect
def _broken(path: Path) -> Path:
    path.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return path


def test_detect_fails_when_no_input_is_readable(bccd_ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "images"
    src.mkdir()
    _broken(src / "a.jpg"), _broken(src / "b.png")
    res = run("detect.py", tmp_path / "out", f"ckpt_path={bccd_ckpt}", f"source={src}", "img_size=64")
    assert res.returncode != 0
    assert "no input could be read" in res.stderr
    assert str(src / "a.jpg") in res.stderr and str(src / "b.png") in res.stderr
    det = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert det["images"] == [] and len(det["failed"]) == 2
    # a stream that cannot be opened: its password stays out of the message and the log (the first line had it)
    url = "rtsp://u:s3cret@127.0.0.1:9/live"
    res = run("detect.py", tmp_path / "url", f"ckpt_path={bccd_ckpt}", f"source='{url}'", "img_size=64")
    assert res.returncode != 0 and "source=rtsp://u:***@127.0.0.1:9/live" in res.stderr
    assert "s3cret" not in res.stderr + (tmp_path / "url" / "detect.log").read_text()


def test_detect_succeeds_and_lists_unreadable_inputs(bccd_ckpt: Path, tmp_path: Path) -> None:
    src = tmp_path / "images"
    src.mkdir()
    shutil.copy(ROOT / "data" / "bccd" / "JPEGImages" / "BloodImage_00000.jpg", src / "good.jpg")
    _broken(src / "broken.jpg")
    out = tmp_path / "out"
    res = run("detect.py", out, f"ckpt_path={bccd_ckpt}", f"source={src}", "img_size=64", "draw=false", "results=voc")
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert "1 of 2 inputs unreadable" in log and str(src / "broken.jpg") in log
    det = json.loads((out / "detections.json").read_text())
    assert [Path(r["file"]).name for r in det["images"]] == ["good.jpg"]
    # results=voc: darknet's comp4 files at darknet valid's threshold (0.005): the detections.json boxes, 1-based
    dets = det["images"][0]["detections"]
    assert dets and min(d["score"] for d in dets) < 0.25  # below detect's default: the valid threshold applied
    w, h = det["images"][0]["width"], det["images"][0]["height"]
    for name in ("RBC", "WBC", "Platelets"):
        rows = [ln.split() for ln in (out / "results" / f"comp4_det_test_{name}.txt").read_text().splitlines()]
        assert all(r[0] == "good" for r in rows)
        got = [[float(v) for v in r[2:]] + [float(r[1])] for r in rows]
        mine = [[*(v + 1 for v in d["box"][:2]), min(d["box"][2] + 1, w), min(d["box"][3] + 1, h), d["score"]]
                for d in dets if d["class"] == name]  # fmt: skip
        assert len(got) == len(mine)
        for row in got:  # each file row is one JSON detection (rounded there: 0.01 px, 4 decimals); ties abound
            match = next(i for i, m in enumerate(mine) if all(abs(a - b) <= 0.006 for a, b in zip(row, m, strict=True)))
            mine.pop(match)


def test_detect_dtype_runs_bfloat16_and_refuses_float16_on_a_cpu(bccd_ckpt: Path, tmp_path: Path) -> None:
    """dtype=bfloat16 reaches the Detector (its autocast: the detections of the float32 run within bf16's rounding);
    float16 on a CPU is refused with the reason, and float32 stays the default."""
    src = ROOT / "data" / "bccd" / "JPEGImages" / "BloodImage_00000.jpg"
    common = (f"ckpt_path={bccd_ckpt}", f"source={src}", "img_size=64", "draw=false", "conf_thresh=0.01")
    runs = {dt: run("detect.py", tmp_path / dt, *common, f"dtype={dt}") for dt in ("float32", "bfloat16")}
    for dt, res in runs.items():
        assert res.returncode == 0, res.stderr[-3000:]
        assert f"dtype={dt}" in res.stdout + res.stderr  # the Detector's line names the dtype it runs
    found = {dt: json.loads((tmp_path / dt / "detections.json").read_text()) for dt in runs}
    assert {dt: f["dtype"] for dt, f in found.items()} == {"float32": "float32", "bfloat16": "bfloat16"}  # recorded
    dets = {dt: f["images"][0]["detections"] for dt, f in found.items()}
    assert dets["float32"], "random weights at conf 0.01 detect something"
    top32, top16 = (max(d["score"] for d in dets[dt]) for dt in ("float32", "bfloat16"))
    assert top16 == pytest.approx(top32, abs=0.03) and dets["bfloat16"] != dets["float32"]  # bf16's own rounding
    bad = run("detect.py", tmp_path / "f16", *common, "dtype=float16", "device=cpu")
    assert bad.returncode != 0 and "float16" in bad.stderr and "CUDA" in bad.stderr, bad.stderr[-2000:]
    assert "Traceback" not in bad.stderr
    # a name that is no dtype is refused with the choices before the checkpoint is read (a missing one here)
    bad = run("detect.py", tmp_path / "i8", *common[1:], "ckpt_path=/nowhere.ckpt", "dtype=int8")
    assert bad.returncode != 0 and "dtype='int8': one of float32" in bad.stderr and "nowhere" not in bad.stderr


def test_detect_sources_lists_globs_and_user_errors(bccd_ckpt: Path, tmp_path: Path) -> None:
    """source= a list, a quoted glob, a .txt list of paths (from the list's folder); a missing source, an empty
    folder or a bad img_size stop before the checkpoint is loaded (a missing checkpoint here is never reached) with
    the reason alone (no traceback)."""
    detect = load_script("detect")
    jpgs = sorted((ROOT / "data" / "bccd" / "JPEGImages").glob("*.jpg"))[:3]
    src = tmp_path / "imgs"
    (src / "sub").mkdir(parents=True)
    for j, rel in zip(jpgs, ("a.jpg", "b.jpg", "sub/c.jpg"), strict=True):
        shutil.copy(j, src / rel)
    (src / "list.txt").write_text("# darknet valid list\na.jpg\n\nsub/c.jpg\n")
    assert detect.source_files(f"{src}/*.jpg") == [src / "a.jpg", src / "b.jpg"]
    assert detect.source_files(str(src / "list.txt")) == [src / "a.jpg", src / "sub" / "c.jpg"]
    assert detect.source_files([str(src / "b.jpg"), str(src / "sub")]) == [src / "b.jpg", src / "sub" / "c.jpg"]
    list_run = (f"ckpt_path={bccd_ckpt}", f"source={src / 'list.txt'}", "img_size=[64,96]")  # height x width
    ann = tmp_path / "image_info.json"  # results=coco: ids by file name and class name
    cats = [{"id": 10 + i, "name": n} for i, n in enumerate(("RBC", "WBC", "Platelets"))]
    ann.write_text(
        json.dumps({"images": [{"id": 5, "file_name": "a.jpg"}, {"id": 9, "file_name": "c.jpg"}], "categories": cats})
    )
    res = run("detect.py", tmp_path / "out", *list_run, "results=coco", f"coco_json={ann}", "conf_thresh=0.25")
    assert res.returncode == 0, res.stderr[-3000:]
    det = json.loads((tmp_path / "out" / "detections.json").read_text())
    coco = json.loads((tmp_path / "out" / "results" / "coco_results.json").read_text())
    ids = {"a.jpg": 5, "c.jpg": 9}
    want = sorted(
        (ids[Path(r["file"]).name], 10 + d["label"], d["score"]) for r in det["images"] for d in r["detections"]
    )
    got = sorted((c["image_id"], c["category_id"], c["score"]) for c in coco)
    assert [g[:2] for g in got] == [w[:2] for w in want] and [g[2] for g in got] == pytest.approx(
        [w[2] for w in want], abs=6e-5
    )
    assert all(d["score"] > 0.25 for r in det["images"] for d in r["detections"])  # conf_thresh given: kept
    assert [r["drawing"] for r in det["images"]] == ["detections/a.jpg", "detections/sub/c.jpg"]  # common folder
    assert det["input_hw"] == [64, 96] and det["letterbox"] is False and det["checkpoint"] == str(bccd_ckpt)
    assert "input 64 x 96 (height x width, stretched)" in res.stdout + res.stderr  # the size it ran, said
    assert detect.input_size(64) == 64 and detect.input_size([64, 96]) == (64, 96) and detect.input_size(None) is None
    (tmp_path / "empty").mkdir()
    for bad, want in (
        (tmp_path / "empty", "no images"),
        (f"{tmp_path}/*.png", "no image or video file matches"),
        (tmp_path / "empty.txt", "the list names no image"),
    ):
        (tmp_path / "empty.txt").write_text("# nothing\n")
        with pytest.raises((FileNotFoundError, ValueError), match=want):
            detect.source_files(str(bad))
    for bad, want in (
        ("results=pascal", "results must be voc, coco or null"),
        ("img_size=250", "img_size must be a positive multiple of 32"),
        ("img_size=[64,100]", "img_size must be a positive multiple of 32, [height, width] of them"),
    ):
        with pytest.raises(ValueError, match=re.escape(want)):
            detect.check_settings(compose_config("detect", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"source={src}", bad))
    with pytest.raises(FileNotFoundError, match="source not found"):
        detect.source_files(str(tmp_path / "missing"))
    # as a user meets one: the reason alone, exit status 1, before the (missing) checkpoint is read
    res = run("detect.py", tmp_path / "bad", f"ckpt_path={tmp_path / 'nope.ckpt'}", f"source={tmp_path / 'missing'}")
    assert res.returncode == 1 and "Error: " in res.stderr and "source not found" in res.stderr, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "nope.ckpt" not in res.stderr


def test_detect_list_paths_from_the_lists_folder_else_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A list's relative path is read from the list's folder where it exists there, else from the working
    directory (darknet reads its lists' paths from where it runs)."""
    detect = load_script("detect")
    (tmp_path / "lists").mkdir()
    (tmp_path / "imgs").mkdir()
    (tmp_path / "lists" / "here.jpg").write_bytes(b"x")
    (tmp_path / "imgs" / "there.jpg").write_bytes(b"x")
    (tmp_path / "lists" / "valid.txt").write_text("here.jpg\nimgs/there.jpg\nnowhere.jpg\n")
    monkeypatch.chdir(tmp_path)
    assert detect.source_files(str(tmp_path / "lists" / "valid.txt")) == [
        tmp_path / "lists" / "here.jpg",
        Path("imgs/there.jpg"),
        tmp_path / "lists" / "nowhere.jpg",  # found nowhere: named from the list's folder, reported unreadable
    ]


def test_detect_reads_a_voc_image_set_as_its_images(tmp_path: Path) -> None:
    """``source=<devkit>/ImageSets/Main/test.txt`` (VOC's image ids, ``<id>`` or ``<id> <flag>``): each id is its
    image in the devkit's JPEGImages (every line was a missing file named ``ImageSets/Main/<id>``)."""
    detect = load_script("detect")
    main = tmp_path / "ImageSets" / "Main"
    main.mkdir(parents=True)
    (tmp_path / "JPEGImages").mkdir()
    for i in ("000001", "000002"):
        (tmp_path / "JPEGImages" / f"{i}.jpg").write_bytes(b"x")
    (main / "test.txt").write_text("000001\n000002 -1\n000003\n")
    assert detect.source_files(str(main / "test.txt")) == [
        tmp_path / "JPEGImages" / "000001.jpg",
        tmp_path / "JPEGImages" / "000002.jpg",
        main / "000003",  # no such image: named, reported unreadable with the others
    ]


def test_drawing_names_keep_a_links_own_name(tmp_path: Path) -> None:
    """A folder of links (DVC / git-annex) draws each image under the link's name, not its target's hash."""
    detect = load_script("detect")
    store = tmp_path / "store"
    store.mkdir()
    (store / "3f9a2c").write_bytes(b"x")
    src = tmp_path / "links"
    src.mkdir()
    (src / "patient1.jpg").symlink_to(store / "3f9a2c")
    names = detect.drawing_names([str(src / "patient1.jpg")], str(src))
    assert names == {str(src / "patient1.jpg"): Path("patient1.jpg")}


# ---------------------------------------------------------------- eval
@pytest.mark.slow  # ~13-20 s of subprocesses; kept out of the default suite
def test_eval_class_mismatch_names_the_fitting_data_config(bccd_ckpt: Path, tmp_path: Path) -> None:
    """A BCCD checkpoint evaluated with data=voc: the error names data=bccd and a command that then works."""
    small = ["data.max_images=4", "data.num_workers=0", "data.img_size=64", "draw=0"]
    res = run("eval.py", tmp_path / "wrong", f"ckpt_path={bccd_ckpt}", "data=voc", *small)
    assert res.returncode != 0
    err = res.stderr
    assert "data=?" not in err and "conf/data/bccd.yaml lists the checkpoint's classes" in err
    # a user's mistake: the reason and the log holding the traceback, no traceback on the console
    assert res.returncode == 1 and "Traceback" not in err and err.startswith("Error: the checkpoint")
    assert f"(the traceback: {tmp_path / 'wrong' / 'eval.log'})" in err
    assert "Traceback (most recent call last)" in (tmp_path / "wrong" / "eval.log").read_text()
    line = next(s.strip() for s in err.splitlines() if s.strip().startswith("python src/eval.py"))
    argv = shlex.split(line)
    assert f"ckpt_path={bccd_ckpt}" in argv and argv[-1] == "data=bccd" and "data=voc" not in argv
    assert all(o in argv for o in small)  # the user's other overrides are kept
    assert argv[:2] == ["python", "src/eval.py"]
    res = run("eval.py", tmp_path / "right", *argv[2:])  # the suggested command works
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((tmp_path / "right" / "metrics.json").read_text())
    assert got["split"] == "test" and got["img_size"] == 64
    # other data without data.img_size: the checkpoint's evaluation size (not the data config's default), logged
    eval_size = torch.load(bccd_ckpt, weights_only=False)["yolo9000_model_config"]["eval_size"]
    res = run("eval.py", tmp_path / "own", f"ckpt_path={bccd_ckpt}", "data=bccd", *small[:2], "draw=0")
    assert res.returncode == 0, res.stderr[-3000:]
    assert json.loads((tmp_path / "own" / "metrics.json").read_text())["img_size"] == eval_size
    assert f"input size: {eval_size}" in res.stdout + res.stderr
    res = run("eval.py", tmp_path / "train", f"ckpt_path={bccd_ckpt}", "split=train", *small)
    assert res.returncode != 0 and "split=train: val or test" in res.stderr and "data.test.split=train" in res.stderr


def test_class_mismatch_message_without_a_fitting_config() -> None:
    ev = load_eval_script()
    configs = ev.detection_data_configs()
    assert configs["bccd"] == BCCD and configs["coco"] is None and "bccd_crops" not in configs  # detection only
    classes = ["cat", "traffic light", "null", 'a"b']
    msg = ev.class_mismatch_message(classes, BCCD, "/x/c.ckpt", "bccd", ["ckpt_path=/x/c.ckpt", "split=val"])
    assert "data=bccd has 3 classes [RBC, WBC, Platelets]" in msg and "No data config" in msg
    assert "python src/eval.py ckpt_path=/x/c.ckpt split=val data=coco" in msg  # configs reading the dataset's
    argv = shlex.split(msg.splitlines()[-1])
    assert argv[:4] == ["python", "src/eval.py", "ckpt_path=/x/c.ckpt", "split=val"]
    assert argv[-1] == "data.root=<dataset folder>"
    parsed = OverridesParser.create().parse_override(argv[-2])
    assert parsed.key_or_group == "data.class_names" and parsed.value() == classes  # exact, quoting included
    # a data config that fits is named, with the command
    msg = ev.class_mismatch_message(BCCD, classes, "/x/c.ckpt", "voc", ["ckpt_path=/x/c.ckpt", "data=voc"])
    assert msg.splitlines()[-1].strip() == "python src/eval.py ckpt_path=/x/c.ckpt data=bccd"
    # the same classes in another order: the data stays, listed in the checkpoint's order (not another config)
    over = ["ckpt_path=/x/c.ckpt", "data=yolo", "data.root=/d"]
    msg = ev.class_mismatch_message(BCCD, ["Platelets", "RBC", "WBC"], "/x/c.ckpt", "yolo", over)
    argv = shlex.split(msg.splitlines()[-1])
    assert argv[2:5] == over and argv[-1] == "data.class_names=[RBC,WBC,Platelets]" and "data=bccd" not in msg
    # numbered classes (darknet weights converted without names): convert again with them first
    msg = ev.class_mismatch_message(["0", "1", "2"], BCCD, "/x/c.ckpt", "bccd", ["ckpt_path=/x/c.ckpt"])
    assert msg.index("src/convert.py --cfg <cfg> --weights <weights> --names") < msg.index("data.class_names=")
    # a WordTree head: data through the tree; a long list is not written out (a 9418-node tree made 100 KB)
    nodes = [f"n{i:08d}" for i in range(9418)]
    msg = ev.class_mismatch_message(nodes, BCCD, "/x/c.ckpt", "bccd", ["ckpt_path=/x/c.ckpt"], tree=True)
    assert msg.splitlines()[-1].strip().endswith("data=coco9k eval_map=data/darknet/wordtree/coco9k.map")
    msg = ev.class_mismatch_message(nodes, BCCD, "/x/c.ckpt", "bccd", ["ckpt_path=/x/c.ckpt"])
    assert len(msg) < 2000 and "'data.class_names=<its 9418 names>'" in msg


def test_class_mismatch_message_on_the_users_own_dataset_keeps_its_data_config() -> None:
    """A checkpoint of many classes evaluated on the user's YOLO folder naming some of them: the command keeps
    data=yolo and adds the checkpoint's classes (taken by name); it does not send a YOLO folder to data=coco."""
    ev = load_eval_script()
    ckpt = ["RBC", "cls1", "WBC", "Platelets"]
    over = ["ckpt_path=/x/c.ckpt", "data=yolo", "data.root=/d"]
    msg = ev.class_mismatch_message(ckpt, ["WBC"], "/x/c.ckpt", "yolo", over)
    assert "data=coco" not in msg and "1 of the dataset's 1 classes are the checkpoint's" in msg
    argv = shlex.split(msg.splitlines()[-1])
    assert argv[:5] == ["python", "src/eval.py", "ckpt_path=/x/c.ckpt", "data.root=/d", "data=yolo"]
    assert argv[-1] == "data.class_names=[RBC,cls1,WBC,Platelets]"
    # no class in common: by name would drop every box; the general advice stays
    msg = ev.class_mismatch_message(ckpt, ["cat"], "/x/c.ckpt", "yolo", over)
    assert "If it was trained on" in msg


def test_eval_uses_the_data_of_the_checkpoints_run(bccd_ckpt: Path, tmp_path: Path) -> None:
    """``eval.py ckpt_path=<run>/checkpoints/x.ckpt`` without data overrides evaluates on the run's data (its
    config.yaml), not on eval.yaml's default; any data override chooses the composed data instead."""
    from omegaconf import OmegaConf

    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    shutil.copy(bccd_ckpt, ckpt)
    trained = compose_config("train", "data.max_images={train: 2, val: 2, test: 3}", "data.num_workers=0")
    data = OmegaConf.to_container(trained.data, resolve=True)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml({"data": {**data, "img_size": 64}}))
    res = run("eval.py", tmp_path / "eval", f"ckpt_path={ckpt}", "draw=0")
    assert res.returncode == 0, res.stderr[-3000:]
    log = res.stdout + res.stderr
    assert f"data: the training run's ({run_dir / 'config.yaml'}" in log
    assert "test: 3 images" in log  # the run's data (the default: all 72 of BCCD's test split)
    eval_script = load_eval_script()
    cfg = compose_config("eval", f"ckpt_path={ckpt}", "data.img_size=96")
    chosen, source = eval_script.eval_data_config(cfg, [f"ckpt_path={ckpt}", "data.img_size=96"])
    assert (chosen.img_size, chosen.max_images.test) == (96, 3)  # the run's data at another size
    assert "with data.img_size from the command line" in source
    # the saved config is resolved (each split's root: ${..root} is the path itself): data.root moves every split
    # parser's root, and paths under it; a parser's own value stays
    saved = {**data, "img_size": 64}
    saved["test"] = {**saved["test"], "ann_dir": "Annotations", "image_dir": f"{saved['root']}/JPEGImages"}
    saved["val"] = [{**saved["val"], "root": "/elsewhere"}, {**saved["val"]}]  # a list of parsers (concatenated)
    (run_dir / "config.yaml").write_text(OmegaConf.to_yaml({"data": saved}))
    over = [f"ckpt_path={ckpt}", "data.root=/moved/bccd", "data.ann_dir=Notes"]
    chosen, source = eval_script.eval_data_config(compose_config("eval", *over), over)
    assert chosen.root == chosen.train.root == chosen.test.root == chosen.val[1].root == "/moved/bccd"
    assert chosen.val[0].root == "/elsewhere" and chosen.test.image_dir == "/moved/bccd/JPEGImages"
    assert chosen.ann_dir == chosen.train.ann_dir == chosen.test.ann_dir == "Notes"
    assert "with data.root, data.ann_dir from the command line" in source
    cfg = compose_config("eval", f"ckpt_path={ckpt}", "data=voc")
    chosen, source = eval_script.eval_data_config(cfg, [f"ckpt_path={ckpt}", "data=voc"])
    assert chosen.root.endswith("VOCdevkit") or "voc" in str(chosen.root).lower()
    assert "command line" in source
    # other data is resized as the checkpoint's run evaluated (letterboxed there), unless the command line says
    assert chosen.augment.letterbox is False
    chosen, _ = eval_script.eval_data_config(cfg, [f"ckpt_path={ckpt}", "data=voc"], letterbox=True)
    assert chosen.augment.letterbox is True
    over = [f"ckpt_path={ckpt}", "data=voc", "data.augment.letterbox=false"]
    chosen, _ = eval_script.eval_data_config(compose_config("eval", *over), over, letterbox=True)
    assert chosen.augment.letterbox is False


@pytest.mark.slow  # ~8 s, an eval.py launch; eval.py runs its test split in the default suite
def test_eval_split_val_reports_val_metrics(bccd_ckpt: Path, tmp_path: Path) -> None:
    """``eval.py split=val`` evaluates the val split and names its metrics ``val/...`` in the console table (they
    were printed as ``test/...``), and records the split in metrics.json."""
    import json

    res = run(
        "eval.py",
        tmp_path / "eval",
        f"ckpt_path={bccd_ckpt}",
        "split=val",
        "draw=0",
        "data.max_images={train: 2, val: 3, test: 2}",
        "data.num_workers=0",
        "data.img_size=64",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    console = res.stdout + res.stderr
    assert "val/map_50" in console and "test/map_50" not in console
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert metrics["split"] == "val"


def test_detect_drawing_names_never_collide(tmp_path: Path) -> None:
    """detections/ keeps sub folders and the extension of inputs that share a stem: one picture per input."""
    detect = load_script("detect")
    src = tmp_path / "src"
    paths = [src / "a.jpg", src / "a.png", src / "b.JPG", src / "sub" / "b.jpg", tmp_path / "far" / "c.jpg"]
    for p in paths:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.touch()
    names = detect.drawing_names([str(p) for p in paths[:4]], str(src))
    assert names == {
        str(src / "a.jpg"): Path("a_jpg.jpg"),
        str(src / "a.png"): Path("a_png.jpg"),
        str(src / "b.JPG"): Path("b.jpg"),
        str(src / "sub" / "b.jpg"): Path("sub/b.jpg"),
    }
    assert detect.drawing_names([str(paths[4])], str(paths[4])) == {str(paths[4]): Path("c.jpg")}  # one file
    (src / "a_jpg.jpg").touch()  # an input named like a.jpg's renamed picture
    three = detect.drawing_names([str(src / "a.jpg"), str(src / "a.png"), str(src / "a_jpg.jpg")], str(src))
    assert len(set(three.values())) == 3


def test_eval_summary_line_gives_the_voc07_map_when_computed() -> None:
    """``eval.py voc07=true`` (data=voc's headline, the paper's VOC metric) closed with "mAP@0.5 <101-point>
    mAP@[.5:.95] ..." alone: the VOC2007 11-point number was only in the console table."""
    summary_line = load_eval_script().summary_line
    line = summary_line({"map_50": 0.5335, "map": 0.2, "voc07_map_50": 0.5763})
    assert line == "mAP@0.5 0.5335  mAP@[.5:.95] 0.2000  VOC07 11-point mAP@0.5 0.5763"
    assert summary_line({"map_50": 0.5, "map": 0.2}) == "mAP@0.5 0.5000  mAP@[.5:.95] 0.2000"
