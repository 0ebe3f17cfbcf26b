"""The predict API (``from yolo9000 import Detector``): every input kind gives the same detections, boxes come back
in each image's own pixels as the module's predict path puts them, per-call thresholds, names, unreadable files,
``from_darknet`` on a scaled-down cfg. Small random-weight networks (1/8 width), 128 px inputs: seconds."""

from __future__ import annotations

import json
import pickle
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from test_darknet import randomize, scaled_cfg
from yolo9000.api import _pil_rgb
from yolo9000.build import instantiate_module
from yolo9000.checkpoints import darknet_to_checkpoint, load_module
from yolo9000.data.image_io import ImageDecodeError, read_image
from yolo9000.data.predict import ImageFilesDataset, PredictCollate

ROOT = Path(__file__).resolve().parents[1]
IMAGES = sorted((ROOT / "data" / "bccd" / "JPEGImages").glob("*.jpg"))[:2]
BCCD = ["RBC", "WBC", "Platelets"]
SIZE = 128
THREADS = torch.get_num_threads()


@pytest.fixture(scope="module")
def names_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("names") / "bccd.names"
    path.write_text("\n".join(BCCD) + "\n")
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory, names_file: Path) -> Path:
    """A BCCD checkpoint as ``convert.py`` writes it: yolov2-voc.cfg at 1/8 width, random weights that make the
    outputs depend on the image (a default-initialised net's are nearly constant)."""
    tmp = tmp_path_factory.mktemp("ckpt")
    ck = darknet_to_checkpoint(scaled_cfg(tmp, "yolov2-voc.cfg", 0.125, 3), None, names_file)
    module = instantiate_module(ck["yolo9000_model_config"])
    module.load_state_dict(ck["state_dict"])
    randomize(module.model, seed=0)
    ck["state_dict"] = module.state_dict()
    torch.save(ck, tmp / "bccd.ckpt")
    return tmp / "bccd.ckpt"


@pytest.fixture(scope="module")
def detector(ckpt: Path):  # noqa: ANN201 - yolo9000.Detector, imported lazily
    from yolo9000 import Detector

    return Detector.from_checkpoint(ckpt, device="cpu")


def assert_same(a, b, atol: float = 1e-4) -> None:  # noqa: ANN001
    """Same labels; scores within ``atol``, boxes (pixels of a 640 x 480 image) within 10 ``atol``: oneDNN's NHWC
    convolutions round differently at different batch sizes (~2e-4 px seen)."""
    assert torch.equal(a.labels, b.labels) and a.names == b.names
    assert torch.allclose(a.boxes, b.boxes, atol=10 * atol) and torch.allclose(a.scores, b.scores, atol=atol)


def test_every_input_kind_gives_the_same_detections(detector) -> None:  # noqa: ANN001
    path = IMAGES[0]
    arr = read_image(path)  # the pixels the path is decoded to (PIL's own JPEG decoder may differ slightly)
    chw = torch.from_numpy(arr).permute(2, 0, 1)
    inputs = [path, str(path), Image.fromarray(arr), arr, chw, chw.float() / 255]
    res = detector.predict(inputs, size=SIZE, conf=0.0)
    assert len(res) == len(inputs) and [r.index for r in res] == list(range(len(inputs)))
    assert res[0].path == str(path) and res[1].path == str(path) and all(r.path is None for r in res[2:])
    assert len(res[0]) > 10 and all(r.image_size == (480, 640) for r in res)
    for r in res[1:]:
        assert_same(res[0], r)
    (single,) = detector.predict(chw, size=SIZE, conf=0.0)  # one image, not a list
    assert_same(res[0], single)
    batch = detector.predict(torch.stack([chw, chw.flip(-1)]), size=SIZE, conf=0.0)  # 4-D: a batch of 2
    assert len(batch) == 2 and batch[1].image_size == (480, 640)
    assert_same(res[0], batch[0])
    assert not torch.allclose(batch[1].scores[:5], batch[0].scores[:5])  # the outputs depend on the image


def test_the_default_resize_is_the_one_the_checkpoints_run_evaluated_with(tmp_path: Path) -> None:
    """A detector trained with ``data.augment.letterbox=true`` was validated letterboxed: predict without
    ``letterbox`` letterboxes too (on a wide image the two resizes give different detections); one trained
    stretched stretches; ``letterbox=False`` / ``True`` still override."""
    from test_cli_bench_detect_eval import make_checkpoint
    from yolo9000 import Detector

    wide = tmp_path / "wide.png"  # 200 x 120: letterboxing pads it, stretching does not
    Image.fromarray(read_image(IMAGES[0])).resize((200, 120)).save(wide)
    lb_ckpt = make_checkpoint(tmp_path / "lb.ckpt", "data.augment.letterbox=true")
    boxed = Detector.from_checkpoint(lb_ckpt, conf_thresh=0)
    plain = Detector.from_checkpoint(make_checkpoint(tmp_path / "st.ckpt"), conf_thresh=0)
    assert boxed.letterbox is True and plain.letterbox is False
    default, lb, st = (boxed.predict(wide, size=64, letterbox=v)[0] for v in (None, True, False))
    assert len(lb) > 0 and lb.to_dict()["detections"] != st.to_dict()["detections"]  # the resizes differ here
    assert_same(default, lb)
    assert_same(plain.predict(wide, size=64)[0], plain.predict(wide, size=64, letterbox=False)[0])


@pytest.mark.parametrize("letterbox", [False, True])
def test_boxes_in_original_pixels_for_two_sizes(detector, ckpt: Path, letterbox: bool) -> None:  # noqa: ANN001
    """A 640 x 480 file and a 200 x 120 array in one call: the module's predict path (eval transform, decode, map
    back) gives the same boxes, each clipped to its own image."""
    small = np.asarray(Image.fromarray(read_image(IMAGES[1])).resize((200, 120)))
    res = detector.predict([IMAGES[0], small], size=SIZE, conf=0.0, letterbox=letterbox)
    module = load_module(ckpt, conf_thresh=0.0)
    ds = ImageFilesDataset([IMAGES[0], small], SIZE, letterbox=letterbox)
    batch = module.on_after_batch_transfer(PredictCollate()([ds[0], ds[1]]), 0)
    with torch.no_grad():
        want = module.predict_step(batch)["detections"]
    for r, w, (h, wd) in zip(res, want, [(480, 640), (120, 200)], strict=True):
        assert r.image_size == (h, wd) and len(r) > 0
        assert torch.equal(r.labels, w["labels"]) and r.names == w["names"]
        assert torch.allclose(r.boxes, w["boxes"], atol=1e-3) and torch.allclose(r.scores, w["scores"], atol=1e-5)
        assert r.boxes.dtype == torch.float32 and r.labels.dtype == torch.int64
        assert (r.boxes >= 0).all() and (r.boxes[:, 2] <= wd).all() and (r.boxes[:, 3] <= h).all()
        assert (r.boxes[:, 2:] >= r.boxes[:, :2]).all()
    assert float(res[0].boxes[:, 2].max()) > 200  # the big image's boxes are in its pixels, not the network's
    # batched internally: one image per forward pass changes nothing
    one = detector.predict([IMAGES[0], small], size=SIZE, conf=0.0, letterbox=letterbox, batch_size=1)
    for a, b in zip(res, one, strict=True):
        assert_same(a, b)


def test_memory_layout_is_chosen_once_and_changes_no_detection(detector, ckpt: Path) -> None:  # noqa: ANN001
    from yolo9000 import Detector

    assert detector.channels_last  # the CPU default: NHWC (faster oneDNN kernels)
    conv = next(m for m in detector.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    nchw = Detector.from_checkpoint(ckpt, device="cpu", channels_last=False)
    conv = next(m for m in nchw.network.modules() if isinstance(m, torch.nn.Conv2d))
    assert not nchw.channels_last and conv.weight.is_contiguous() and "channels_last=False" in repr(nchw)
    want = detector.predict(IMAGES, size=SIZE, conf=0.0)
    got = nchw.predict(IMAGES, size=SIZE, conf=0.0)
    assert all(len(w) > 10 for w in want)
    for a, b in zip(want, got, strict=True):
        assert_same(a, b)


def test_folded_batch_norms_change_no_detection(detector, ckpt: Path) -> None:  # noqa: ANN001
    from yolo9000 import Detector

    assert detector.fold_bn and "fold_bn=True" in repr(detector)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.network.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in detector.module.model.modules())  # the module keeps its BNs
    plain = Detector.from_checkpoint(ckpt, device="cpu", fold_bn=False)
    assert plain.network is plain.module.model and not plain.fold_bn
    want = plain.predict(IMAGES, size=SIZE, conf=0.0)
    got = detector.predict(IMAGES, size=SIZE, conf=0.0)
    assert all(len(w) > 10 for w in want)
    for a, b in zip(want, got, strict=True):
        assert_same(a, b)
    # a compiled network is run as compiled, not replaced by an eager folded copy
    module = load_module(ckpt)
    module.model.compile(backend="eager")
    compiled = Detector(module, device="cpu")
    assert not compiled.fold_bn and compiled.network is module.model


def test_the_fused_network_changes_no_detection(detector, ckpt: Path) -> None:  # noqa: ANN001
    """On the CPU batches of two and more run the folded copy's sibling whose conv + leaky pairs and 2 x 2 pools
    are fused (yolov2-voc.cfg: 22 pairs, 5 pools), with the copy's own weights; a batch of one runs the copy;
    ``fuse=False`` keeps them apart; the two detect the same at batch 2 and batch 1. The forward hooks say which
    network ran."""
    from yolo9000 import Detector
    from yolo9000.models.layers import FusedConvLeaky, MaxPool2x2, _pointwise_conv_op

    if _pointwise_conv_op() is None or platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("the fused layers need oneDNN's fused convolution on an x86 CPU")
    assert detector.fused_layers == 27 and "fused_layers=27" in repr(detector)
    batched = detector.network_for(2)
    assert detector.network_for(1) is detector.network and batched is not detector.network
    assert sum(isinstance(m, FusedConvLeaky) for m in batched.modules()) == 22
    assert sum(isinstance(m, MaxPool2x2) for m in batched.modules()) == 5
    assert not any(isinstance(m, (FusedConvLeaky, MaxPool2x2)) for m in detector.network.modules())
    shared = {p.data_ptr() for p in detector.network.parameters()}
    assert shared and {p.data_ptr() for p in batched.parameters()} == shared  # no second copy of the weights
    apart = Detector.from_checkpoint(ckpt, device="cpu", fuse=False)
    assert apart.fused_layers == 0 and apart.network_for(2) is apart.network
    assert Detector.from_checkpoint(ckpt, device="cpu", fold_bn=False).fused_layers == 0  # the module's own network
    ran: list[int] = []
    hooks = [
        net.register_forward_hook(lambda _m, args, _out, k=k: ran.append(k * 10 + len(args[0])))
        for k, net in ((1, detector.network), (2, batched))
    ]
    for batch_size in (2, 1):
        want = apart.predict(IMAGES, size=SIZE, conf=0.0, batch_size=batch_size)
        got = detector.predict(IMAGES, size=SIZE, conf=0.0, batch_size=batch_size)
        assert all(len(w) > 10 for w in want)
        for a, b in zip(want, got, strict=True):
            assert_same(a, b)
    for h in hooks:
        h.remove()
    assert ran == [22, 11, 11]  # batch 2: the fused sibling; two batches of 1: the copy
    clone = pickle.loads(pickle.dumps(detector))  # the two networks still share one set of weights
    assert clone.fused_layers == 27 and clone.network_for(2) is not clone.network
    weights = {p.data_ptr() for p in clone.network.parameters()}
    assert {p.data_ptr() for p in clone.network_for(2).parameters()} == weights
    replaced = Detector.from_checkpoint(ckpt, device="cpu")
    replaced.network = apart.network  # a network set by hand runs every batch: the old sibling is dropped
    assert replaced.network_for(2) is apart.network and replaced.fused_layers == 0


def test_the_folded_network_is_fed_pixels_and_the_plain_one_fractions(detector, ckpt: Path) -> None:  # noqa: ANN001
    """With ``fold_bn`` the inference copy's input conv has the 1 / 255 folded in: the batch reaches it as 0-255
    floats (the uint8 pixels cast, not divided); without, as pixels / 255; the module's own conv is untouched.
    The detections are the same (test above)."""
    from yolo9000 import Detector

    plain = Detector.from_checkpoint(ckpt, device="cpu", fold_bn=False)
    assert detector.network.folded_input_scale == pytest.approx(1 / 255)
    assert getattr(plain.network, "folded_input_scale", None) is None
    torch.testing.assert_close(
        detector.module.model.input_conv().weight, plain.module.model.input_conv().weight, rtol=0, atol=0
    )
    seen: dict[str, torch.Tensor] = {}
    for name, det in (("folded", detector), ("plain", plain)):
        handle = det.network.register_forward_pre_hook(lambda _m, args, n=name: seen.__setitem__(n, args[0].clone()))
        det.predict(IMAGES[0], size=SIZE, conf=0.5)
        handle.remove()
    assert float(seen["folded"].max()) > 200 and torch.equal(seen["folded"], seen["folded"].round())
    torch.testing.assert_close(seen["plain"], seen["folded"] / 255)


def test_conf_nms_max_det_override_per_call(detector) -> None:  # noqa: ANN001
    all_ = detector.predict(IMAGES[0], size=SIZE, conf=0.0)[0]
    conf = float(all_.scores[len(all_) // 2])
    some = detector.predict(IMAGES[0], size=SIZE, conf=conf)[0]
    assert 0 < len(some) < len(all_) and (some.scores > conf).all()
    assert detector.conf == 0.25  # the per-call value changed no setting (darknet detect's default)
    default = detector.predict(IMAGES[0], size=SIZE)[0]
    assert (default.scores > 0.25).all() and len(default) < len(all_)
    no_nms = detector.predict(IMAGES[0], size=SIZE, conf=conf, nms=1.0)[0]
    assert len(no_nms) > len(some)
    assert len(detector.predict(IMAGES[0], size=SIZE, conf=0.0, max_det=5)[0]) == 5


def test_names_come_from_class_names_and_to_dict(detector) -> None:  # noqa: ANN001
    assert detector.class_names == BCCD and detector.size == 416
    (r,) = detector.predict([IMAGES[0]], size=SIZE, conf=0.0)
    assert r.names == [BCCD[int(c)] for c in r.labels] and set(r.names) <= set(BCCD)
    d = json.loads(json.dumps(r.to_dict()))
    assert d["file"] == str(IMAGES[0]) and (d["width"], d["height"]) == (640, 480) and "error" not in d
    assert len(d["detections"]) == len(r)
    first = d["detections"][0]
    assert first["class"] == r.names[0] and first["label"] == int(r.labels[0]) and len(first["box"]) == 4
    r.boxes[:, :2] += 1  # ordinary tensors (no inference-mode tensors that refuse in-place edits)


def test_unreadable_file_raises_or_is_skipped(detector, tmp_path: Path) -> None:  # noqa: ANN001
    from yolo9000 import UnreadableImageError

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    missing = tmp_path / "missing.png"
    with pytest.raises(UnreadableImageError, match="broken.jpg") as err:
        detector.predict([IMAGES[0], broken], size=SIZE)
    assert isinstance(err.value, ImageDecodeError) and err.value.path == str(broken)
    res = detector.predict([broken, IMAGES[0], missing], size=SIZE, conf=0.0, skip_unreadable=True, batch_size=2)
    assert [r.index for r in res] == [0, 1, 2] and [r.path for r in res] == [str(broken), str(IMAGES[0]), str(missing)]
    assert res[0].error and "missing image file" in (res[2].error or "") and res[1].error is None
    assert len(res[0]) == len(res[2]) == 0 and len(res[1]) > 0 and res[0].to_dict()["error"] == res[0].error


def test_reading_threads_give_the_single_thread_results_in_input_order(
    detector,
    ckpt: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """``read_threads`` threads read and resize a batch, each image straight into its slot of the batch buffer;
    the results, the input order and the unreadable file's place are those of one thread."""
    from yolo9000 import Detector

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    arr = read_image(IMAGES[1])
    inputs = [IMAGES[0], arr[:300], broken, IMAGES[1], arr[:, ::-1], np.zeros((40, 90, 3), np.uint8), IMAGES[0]]
    import threading

    seen: list[tuple[str, int]] = []
    read = ImageFilesDataset.read
    # the first two reads of the threaded call wait for each other: two threads must run them (on a loaded machine
    # one pool thread could otherwise finish its part before the next was handed out, and run them all)
    meet = {"barrier": None}

    def spy(self, index, out=None):  # noqa: ANN001, ANN202
        seen.append((threading.current_thread().name, out.__array_interface__["data"][0] - out.base.ctypes.data))
        if meet["barrier"] is not None and len(seen) <= 2:
            meet["barrier"].wait()
        return read(self, index, out)

    monkeypatch.setattr(ImageFilesDataset, "read", spy)
    one = Detector.from_checkpoint(ckpt, device="cpu", read_threads=1)
    three = Detector.from_checkpoint(ckpt, device="cpu", read_threads=3)
    kw = {"size": SIZE, "conf": 0.0, "skip_unreadable": True, "batch_size": 5}
    ref = one.predict(inputs, **kw)
    assert {name for name, _ in seen} == {"MainThread"}
    seen.clear()
    meet["barrier"] = threading.Barrier(2, timeout=60)
    got = three.predict(inputs, **kw)
    assert len(seen) == len(inputs) and all(name.startswith("yolo9000-read") for name, _ in seen)
    assert 1 < len({name for name, _ in seen}) <= 3
    slot = SIZE * SIZE * 3  # batches of 5 and 2: image j of a batch goes to byte j * slot of its buffer
    assert sorted(offset for _, offset in seen) == sorted([j * slot for j in range(5)] + [0, slot])
    assert [r.index for r in got] == list(range(len(inputs))) and got[2].error and len(got[2]) == 0
    assert [r.image_size for r in got] == [r.image_size for r in ref] and [r.path for r in got] == [r.path for r in ref]
    for a, b in zip(ref, got, strict=True):
        assert_same(a, b)
    assert not torch.equal(got[3].scores, got[4].scores)  # a mirrored image: other detections in other places
    with pytest.raises(ValueError, match="read_threads must be >= 1"):
        Detector(detector.module, device="cpu", read_threads=0)


def test_the_default_reads_decoded_pixels_in_the_calling_thread_and_files_in_threads(
    ckpt: Path,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
) -> None:
    """``read_threads=None``: a batch of decoded pixels is resized by the calling thread (OpenCV's own threads split
    each resize), a batch holding a file by torch's thread count of pool threads (decoding is where they pay)."""
    import threading

    from yolo9000 import Detector

    names: list[str] = []
    read = ImageFilesDataset.read

    def spy(self, index, out=None):  # noqa: ANN001, ANN202
        names.append(threading.current_thread().name)
        return read(self, index, out)

    monkeypatch.setattr(ImageFilesDataset, "read", spy)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    det = Detector.from_checkpoint(ckpt, device="cpu")
    arr = read_image(IMAGES[1])
    det.predict([arr, arr[:, ::-1], arr[:200]], size=SIZE, batch_size=3)
    assert names == ["MainThread"] * 3
    names.clear()
    det.predict([arr, IMAGES[0], arr[:200]], size=SIZE, batch_size=3)
    assert len(names) == 3 and all(n.startswith("yolo9000-read") for n in names)


def test_read_ahead_reads_the_next_batch_in_the_background(
    ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``read_ahead`` (a GPU's default; forced here on the CPU): batches after the first are read by the background
    thread while the caller detects the one before, with the sequential reader's results, order and unreadable
    file; an unreadable file that raises stops the reading ahead with the call."""
    from yolo9000 import Detector, UnreadableImageError

    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    arr = read_image(IMAGES[1])
    inputs = [IMAGES[0], arr[:300], broken, IMAGES[1], arr[:, ::-1], np.zeros((40, 90, 3), np.uint8), IMAGES[0]]
    readers: list[str] = []
    read = Detector._read

    def spy(self, dataset, indices):  # noqa: ANN001, ANN202
        import threading

        readers.append(threading.current_thread().name)
        return read(self, dataset, indices)

    monkeypatch.setattr(Detector, "_read", spy)
    kw = {"size": SIZE, "conf": 0.0, "skip_unreadable": True, "batch_size": 2}
    ahead = Detector.from_checkpoint(ckpt, device="cpu", read_ahead=True)
    plain = Detector.from_checkpoint(ckpt, device="cpu")
    assert not plain.read_ahead and ahead.read_ahead
    ref = plain.predict(inputs, **kw)
    assert readers == ["MainThread"] * 4
    readers.clear()
    got = ahead.predict(inputs, **kw)
    assert len(readers) == 4 and all(name.startswith("yolo9000-ahead") for name in readers)
    assert [r.index for r in got] == list(range(len(inputs))) and got[2].error and len(got[2]) == 0
    for a, b in zip(ref, got, strict=True):
        assert_same(a, b)
    with pytest.raises(UnreadableImageError, match="broken.jpg"):
        ahead.predict(inputs, size=SIZE, batch_size=2)


def test_decode_runs_where_decode_on_says(ckpt: Path) -> None:
    """``decode_on``: after a GPU forward pass (the device pretended here: the choice is host logic) ``auto``
    decodes batches of fewer than 4 images on the host, larger ones on the device; ``host`` / ``device`` always
    there; on the CPU everything is the CPU."""
    from yolo9000 import Detector

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    dets = {mode: Detector.from_checkpoint(ckpt, device="cpu", decode_on=mode) for mode in ("auto", "host", "device")}
    assert all(d.decode_device(1) == cpu and d.decode_device(64) == cpu for d in dets.values())
    for d in dets.values():
        d.device = gpu  # what the decision reads: nothing runs on it here
    assert [dets["auto"].decode_device(n) for n in (1, 3, 4, 64)] == [cpu, cpu, gpu, gpu]
    assert [dets["host"].decode_device(n) for n in (1, 64)] == [cpu, cpu]
    assert [dets["device"].decode_device(n) for n in (1, 64)] == [gpu, gpu]
    with pytest.raises(ValueError, match="decode_on must be auto, device or host"):
        Detector.from_checkpoint(ckpt, device="cpu", decode_on="gpu")


def test_a_head_output_on_the_host_decodes_with_the_host_priors(detector) -> None:  # noqa: ANN001
    """``predict_raw`` of a head output on the host while the network's priors live elsewhere (a GPU; a meta
    tensor here) uses the module's host copy of the priors: the detections of the all-host decode."""
    import copy

    module = copy.deepcopy(detector.module)
    x = torch.rand(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        raw = module(x)
    ref = module.predict_raw(raw, (SIZE, SIZE), None, None, 0.0)
    module._anchors_host = module.model.anchors.clone()  # the host copy a GPU module keeps
    module.model.anchors = torch.empty_like(module.model.anchors, device="meta")  # the priors elsewhere
    got = module.predict_raw(raw, (SIZE, SIZE), None, None, 0.0)
    assert sum(len(r["scores"]) for r in ref) > 0
    for a, b in zip(ref, got, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("boxes", "scores", "labels"))


def test_a_detector_is_shared_by_threads_and_pickled(detector) -> None:  # noqa: ANN001
    """Several threads may call one Detector at once (one reading pool, stateless resizes); a pickled copy
    (e.g. for spawned worker processes) predicts the same without the thread pool."""
    import pickle
    from concurrent.futures import ThreadPoolExecutor

    arr = read_image(IMAGES[0])
    batches = [[IMAGES[0], arr[::-1]], [arr[:, ::-1], IMAGES[1], arr], [IMAGES[1]]] * 2
    ref = [detector.predict(b, size=SIZE, conf=0.0) for b in batches]
    with ThreadPoolExecutor(3) as callers:
        got = list(callers.map(lambda b: detector.predict(b, size=SIZE, conf=0.0), batches))
    for rs, gs in zip(ref, got, strict=True):
        for r, g in zip(rs, gs, strict=True):
            assert_same(r, g)
    copy = pickle.loads(pickle.dumps(detector))
    for r, g in zip(ref[1], copy.predict(batches[1], size=SIZE, conf=0.0), strict=True):
        assert_same(r, g)


def test_the_eval_warp_is_the_default_and_a_switch(detector, ckpt: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """The Detector resizes by the warp by default (within one grey level of cv2.resize, another path on noise),
    ``warp=False`` by cv2.resize exactly (for both resizes); a Detector pickled before the switch keeps cv2.resize;
    a non-bool is refused."""
    import cv2

    from yolo9000 import Detector
    from yolo9000.data.resize import warp_matches_resize

    arr = np.random.default_rng(0).integers(0, 256, (470, 630, 3), np.uint8)  # noise, no whole scale: paths differ
    batches = []
    real = Detector._read
    monkeypatch.setattr(Detector, "_read", lambda self, ds, idx: batches.append(real(self, ds, idx)) or batches[-1])
    plain = Detector.from_checkpoint(ckpt, device="cpu", warp=False)
    assert detector.warp and not plain.warp
    for det in (detector, plain):
        for letterbox in (False, True):
            det.predict([arr], size=SIZE, letterbox=letterbox)
    fast, fast_lb, slow, slow_lb = (b["images"][0].permute(1, 2, 0).numpy() for b in batches)
    np.testing.assert_array_equal(slow, cv2.resize(arr, (SIZE, SIZE), interpolation=cv2.INTER_LINEAR))
    for a, b in ((fast, slow), (fast_lb, slow_lb)):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
        assert np.array_equal(a, b) != warp_matches_resize()  # the warp ran where this OpenCV's warp is close
    state = plain.__getstate__()
    del state["_warp"]  # as pickled before session 42
    old = Detector.__new__(Detector)
    old.__setstate__({**state, "_transforms": None})
    assert old.warp is False and not old._transforms[False].warp
    with pytest.raises(AttributeError):
        detector.warp = False  # fixed at construction: the resizes were made with it
    with pytest.raises(TypeError, match="warp must be true or false"):
        Detector.from_checkpoint(ckpt, device="cpu", warp="no")


def test_device_results_come_to_the_host_in_one_copy_per_field() -> None:
    """``_to_host`` (the path of a GPU detector): per-image results equal to each image's own copy, empty images
    kept in place."""
    from yolo9000.api import _to_host

    g = torch.Generator().manual_seed(0)
    preds = [
        {"boxes": torch.rand(n, 4, generator=g), "scores": torch.rand(n, generator=g), "labels": torch.arange(n) % 3}
        for n in (3, 0, 5)
    ]
    got = _to_host(preds)
    assert len(got) == 3 and [len(p["scores"]) for p in got] == [3, 0, 5]
    for p, q in zip(preds, got, strict=True):
        assert all(torch.equal(p[k], q[k]) and q[k].device.type == "cpu" for k in ("boxes", "scores", "labels"))


def test_the_checkpoints_malloc_setting_is_applied(detector, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    """A module whose ``model.fast.keep_freed_memory`` is on (the CPU models) applies it when a Detector is built
    (a batch-32 forward of the CPU model took 143 ms instead of 109 without it); off, nothing is changed; the
    caller's ``keep_freed_memory`` overrides the checkpoint's either way (a service may want memory given back)."""
    import dataclasses

    import yolo9000.api as api

    calls: list[int] = []
    monkeypatch.setattr(api, "apply_keep_freed_memory", lambda: calls.append(1) or True)
    module = detector.module
    monkeypatch.setattr(module, "fast", dataclasses.replace(module.fast, keep_freed_memory=False))
    api.Detector(module, device="cpu")
    assert calls == []
    api.Detector(module, device="cpu", keep_freed_memory=True)
    assert calls == [1]
    monkeypatch.setattr(module, "fast", dataclasses.replace(module.fast, keep_freed_memory=True))
    api.Detector(module, device="cpu")
    assert calls == [1, 1]
    api.Detector(module, device="cpu", keep_freed_memory=False)
    assert calls == [1, 1]


def test_bad_inputs_and_settings(detector, ckpt: Path) -> None:  # noqa: ANN001
    from yolo9000 import Detector

    with pytest.raises(ValueError, match=r"image 1: float images must lie in \[0, 1\]"):
        detector.predict([IMAGES[0], np.full((8, 8, 3), 255.0, np.float32)], size=SIZE)
    with pytest.raises(ValueError, match="image 0: expected a"):
        detector.predict(np.zeros((8, 8, 5), np.uint8))
    with pytest.raises(TypeError, match="image 0"):
        detector.predict([3])
    with pytest.raises(ValueError, match="multiple of 32"):
        detector.predict(IMAGES[0], size=100)
    with pytest.raises(ValueError, match="float16 autocast needs CUDA"):
        Detector(detector.module, device="cpu", dtype="float16")
    grey = detector.predict(np.zeros((50, 70), np.uint8), size=64, conf=0.0)[0]  # grey (H, W) is converted
    assert grey.image_size == (50, 70)
    bf16 = Detector.from_checkpoint(ckpt, device="cpu", dtype="bfloat16", conf_thresh=None)
    assert bf16.conf == 0.005 and bf16.dtype == torch.bfloat16  # conf_thresh=None: the checkpoint's
    r = bf16.predict(IMAGES[0], size=64)[0]
    assert len(r) > 0 and r.boxes.dtype == torch.float32


def test_16_bit_and_float_pil_images_give_the_file_detections(detector, tmp_path: Path) -> None:  # noqa: ANN001
    """A 16-bit grey image gives the same detections as a PIL image (mode I;16 or I), a uint16 array or the PNG file
    (PIL's RGB conversion would clip it to white); a float (mode F) image in [0, 1] as the same uint8 pixels."""
    grey = read_image(IMAGES[0])[..., 1]  # (H, W) uint8
    deep = grey.astype(np.uint16) * 257 + 3  # 16-bit: >> 8 gives the 8-bit grey back
    Image.fromarray(deep).save(tmp_path / "deep.png")
    want = detector.predict(np.repeat(grey[..., None], 3, axis=2), size=SIZE, conf=0.0)[0]
    pil16 = Image.fromarray(deep)
    pil32 = Image.fromarray(deep.astype(np.int32))  # mode I: how PIL opens some 16-bit PNGs
    fimg = Image.fromarray(grey.astype(np.float32) / 255.0)  # mode F
    widened = Image.fromarray(grey).convert("I")  # mode I of 8-bit values: taken as they are (shifted: black)
    assert (pil16.mode, pil32.mode, fimg.mode, widened.mode) == ("I;16", "I", "F", "I")
    got = detector.predict([tmp_path / "deep.png", pil16, pil32, deep, fimg, widened], size=SIZE, conf=0.0)
    assert len(want) > 10
    for r in got:
        assert_same(want, r)


def test_an_animated_gif_gives_its_first_frame(detector, tmp_path: Path) -> None:  # noqa: ANN001
    """An animated GIF (torchvision decodes every frame) reads as its first frame, as PIL and darknet's stb_image
    read it, with a note; it was refused as corrupt ((frames, 3, H, W) is no image)."""
    from yolo9000.data.image_io import ANIMATED_FIRST_FRAME, read_image_notes

    first = read_image(IMAGES[0])
    frames = [Image.fromarray(first).quantize(256), Image.fromarray(255 - first).quantize(256)]
    gif = tmp_path / "anim.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    still = tmp_path / "still.gif"
    frames[0].save(still)
    got, notes = read_image_notes(gif)
    assert np.array_equal(got, read_image(still))  # the first frame, not the inverted second
    assert (ANIMATED_FIRST_FRAME, "2 frames") in notes
    assert not [n for n in read_image_notes(still)[1] if n[0] == ANIMATED_FIRST_FRAME]
    (a,), (b,) = detector.predict(gif, size=SIZE), detector.predict(still, size=SIZE)
    assert torch.equal(a.boxes, b.boxes) and a.image_size == (480, 640)


def test_16_bit_and_float_files_read_as_their_pil_images(detector, tmp_path: Path) -> None:  # noqa: ANN001
    """Files PIL decodes (TIFF, BMP) give the pixels of the same image in memory: a 32-bit integer (mode I) TIFF of
    16-bit values shifted to 8 bits and a float (mode F) TIFF in [0, 1] scaled (PIL's RGB conversion clipped both
    to white or black); pixels outside those ranges are an unreadable file naming the reason; a decoded BMP is an
    ordinary writable array (no read-only warning)."""
    import warnings

    from yolo9000.data.image_io import read_image_notes

    grey = read_image(IMAGES[0])[..., 1]
    deep = grey.astype(np.int32) * 256 + 77  # >> 8: the 8-bit grey
    images = {
        "i16.tif": Image.fromarray(deep.astype(np.uint16)),
        "i32.tif": Image.fromarray(deep),
        "f32.tif": Image.fromarray(grey.astype(np.float32) / 255.0),
        "rgb.bmp": Image.fromarray(read_image(IMAGES[0])),
    }
    rgb_grey = np.repeat(grey[..., None], 3, axis=2)
    for name, im in images.items():
        im.save(tmp_path / name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # torch.from_numpy of PIL's read-only buffer used to warn
            got, notes = read_image_notes(tmp_path / name)
        assert got.flags.writeable and np.array_equal(got, _pil_rgb(Image.open(tmp_path / name), 0)), name
        assert np.array_equal(got, read_image(IMAGES[0]) if name == "rgb.bmp" else rgb_grey), name
    said = read_image_notes(tmp_path / "i32.tif")[1]
    assert (
        "32-bit greyscale image converted to 8-bit RGB (as 16-bit, or as 8-bit when no value exceeds 255)",
        "",
    ) in said
    Image.fromarray(deep * 4).save(tmp_path / "wide.tif")  # values up to 4 * 65535
    Image.fromarray(grey.astype(np.float32)).save(tmp_path / "f255.tif")  # floats 0..255
    res = detector.predict([tmp_path / "wide.tif", tmp_path / "f255.tif"], size=SIZE, skip_unreadable=True)
    assert "unsupported pixel values" in (res[0].error or "") and "outside 0..65535" in (res[0].error or "")
    assert "unsupported pixel values" in (res[1].error or "") and "must lie in [0, 1]" in (res[1].error or "")
    with pytest.raises(ValueError, match="image 0: a PIL image of mode I: mode I pixels outside 0..65535"):
        detector.predict(Image.fromarray(deep * 4))


def test_inputs_kept_as_given_and_iterables(detector) -> None:  # noqa: ANN001
    """A path comes back as the caller's string (no normalisation); generators and bf16 tensors are accepted."""
    dotted = str(IMAGES[0].parent) + "/./" + IMAGES[0].name
    (r,) = detector.predict([dotted], size=SIZE)
    assert r.path == dotted
    chw = torch.from_numpy(read_image(IMAGES[0])).permute(2, 0, 1)
    res = detector.predict((x for x in [IMAGES[0], chw.bfloat16() / 255]), size=SIZE, conf=0.0)
    assert len(res) == 2 and res[0].path == str(IMAGES[0]) and len(res[1]) > 10


def test_detections_compare_by_value(detector) -> None:  # noqa: ANN001
    """``a == b``, ``d in results``, ``results.index(d)`` between the results of two calls on the same images (the
    dataclass's own __eq__ compared tensors with ``==``: "Boolean value of Tensor ... is ambiguous")."""
    import pickle

    from yolo9000 import Detections

    a = detector.predict(IMAGES, size=SIZE, conf=0.0)
    b = detector.predict(IMAGES, size=SIZE, conf=0.0)
    assert len(a[0]) > 1 and a == b and a[1] in b and b.index(a[1]) == 1
    assert a[0] != a[1] and a[0] != "a string"
    assert pickle.loads(pickle.dumps(a[0])) == a[0]
    assert Detections.empty(0) == Detections.empty(0) != Detections.empty(0, error="unreadable")
    fewer = detector.predict(IMAGES[0], size=SIZE, conf=0.0, max_det=1)[0]
    assert fewer != a[0] and len(fewer) == 1
    with pytest.raises(TypeError, match="unhashable"):
        hash(a[0])


def _predict_in_child(detector, queue) -> None:  # noqa: ANN001
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = detector.predict(IMAGES, size=SIZE, conf=0.0)
    dets = [(r.boxes.tolist(), r.labels.tolist()) for r in res]  # plain lists: tensors travel by shared memory
    queue.put((dets, [str(w.message) for w in caught], torch.get_num_threads()))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_predicts_instead_of_hanging(detector, monkeypatch) -> None:  # noqa: ANN001
    """A Detector used in a process forked from the one that ran it (multiprocessing's default on Linux, a
    pre-forking server) hung in its first forward pass (torch's OpenMP threads stay in the parent) and, with
    ``read_threads`` > 1, on the parent's reading pool: the child now runs torch with one thread, warned, and its
    own pool; the detections are the parent's."""
    import multiprocessing

    torch.set_num_threads(2)  # restored below: OpenMP's pool of more than one thread, started by the parent's pass
    monkeypatch.setattr(detector, "read_threads", 2)
    try:
        ref = detector.predict(IMAGES, size=SIZE, conf=0.0)
        ctx = multiprocessing.get_context("fork")
        queue = ctx.Queue()
        child = ctx.Process(target=_predict_in_child, args=(detector, queue))
        child.start()
        child.join(60)
        hung = child.is_alive()
        if hung:
            child.kill()
        assert not hung, "the forked child hung"
        got, warned, threads = queue.get(timeout=10)
    finally:
        torch.set_num_threads(THREADS)
    assert threads == 1 and any("forked from process" in w and "set_num_threads(1)" in w for w in warned)
    for (boxes, labels), r in zip(got, ref, strict=True):
        assert labels == r.labels.tolist() and torch.allclose(torch.tensor(boxes).view(-1, 4), r.boxes, atol=1e-3)
    assert detector.predict(IMAGES[0], size=SIZE)[0].image_size == (480, 640)  # the parent's pool still works


def test_urls_are_refused_naming_them(detector) -> None:  # noqa: ANN001
    """A URL is no file predict reads (it was "missing image file"): refused naming it (a password hidden), a stream
    pointed to predict_video; ``skip_unreadable`` does not turn the mistake into an empty result."""
    for url, video in [
        ("https://example.com/cells.jpg", True),
        ("rtsp://admin:secret@cam/live", True),
        ("s3://bucket/cells.jpg", False),
    ]:
        with pytest.raises(ValueError, match=r"image 1: .* is a URL: predict reads local image files") as err:
            detector.predict([IMAGES[0], url], skip_unreadable=True)
        assert "secret" not in str(err.value) and ("predict_video" in str(err.value)) == video
    with pytest.raises(ValueError, match=r"image 0: rtsp://admin:\*\*\*@cam/live is a URL"):
        detector.predict("rtsp://admin:secret@cam/live")


def test_file_objects_are_refused_naming_them(detector, tmp_path: Path) -> None:  # noqa: ANN001
    """An upload stream or open file (io.BytesIO, open(path, "rb")) is no image input: refused naming its type and
    how to decode it (it was iterated line by line, its chunks of JPEG bytes reported as "got bytes", the stream
    consumed); the decoded image is detected."""
    import io

    data = IMAGES[0].read_bytes()
    for given in (io.BytesIO(data), IMAGES[0].open("rb")):
        with given:
            name = type(given).__name__
            with pytest.raises(TypeError, match=rf"images: a file object \({name}\) given; .*PIL\.Image\.open"):
                detector.predict(given)
            assert given.tell() == 0  # not read
            with pytest.raises(TypeError, match=rf"image 1: .*got {name}; .*PIL\.Image\.open"):
                detector.predict([IMAGES[0], given])
    with pytest.raises(TypeError, match=r"image 0: .*got bytes; .*io\.BytesIO\(data\)"):
        detector.predict([data])
    with pytest.raises(TypeError, match="images: bytes given"):
        detector.predict(memoryview(data))
    from PIL import ImageOps

    decoded = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    (r,) = detector.predict(decoded, size=SIZE, conf=0.0)
    assert r.image_size == (480, 640) and r.path is None and len(r) > 0


def test_bad_call_arguments_are_refused(detector) -> None:  # noqa: ANN001
    """Thresholds outside [0, 1] (nan too), a negative max_det, a fractional size or an empty path are errors, not
    silently clipped; an HWC tensor's error shows the shape passed; bytes are not a path; nan pixels are refused."""
    for kw, what in [
        ({"conf": 2.0}, "conf must lie in"),
        ({"conf": float("nan")}, "conf must lie in"),
        ({"nms": -1}, "nms must lie in"),
        ({"max_det": -1}, "max_det must be >= 0"),
        ({"size": 320.5}, "size must be a positive multiple"),
        ({"batch_size": 0}, "batch_size must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=what):
            detector.predict(IMAGES[0], **kw)
    with pytest.raises(ValueError, match=r"got shape \(40, 60, 3\)"):
        detector.predict(torch.zeros(40, 60, 3, dtype=torch.uint8))
    with pytest.raises(TypeError, match="bytes given"):
        detector.predict(str(IMAGES[0]).encode())
    with pytest.raises(ValueError, match="image 0: an empty path"):
        detector.predict([""])
    with pytest.raises(ValueError, match="nan or inf"):
        detector.predict(np.full((8, 8, 3), np.nan, np.float32))
    with pytest.raises(TypeError, match="uint8 .0..255., uint16"):
        detector.predict(np.zeros((8, 8, 3), np.int64))
    with pytest.raises(ValueError, match=r"image 0: an empty image \(no pixels\): shape \(0, 0, 3\)"):
        detector.predict(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        detector.predict(IMAGES[0], num_workers=-1)
    # another type is no value: a string threshold, a fractional or boolean cap, a string batch, "no" for a flag
    # (truthy to Python) were taken as they came
    for kw, what in [
        ({"conf": "0.3"}, "conf must be a number in"),
        ({"nms": True}, "nms must be a number in"),
        ({"max_det": 2.5}, "max_det must be a whole number"),
        ({"max_det": True}, "max_det must be a whole number"),
        ({"batch_size": "4"}, "batch_size must be a whole number >= 1"),
        ({"num_workers": 1.0}, "num_workers must be a whole number >= 0"),
        ({"letterbox": "no"}, "predict: letterbox must be true or false, got 'no'"),
        ({"skip_unreadable": 1}, "skip_unreadable must be true or false"),
    ]:
        with pytest.raises(TypeError, match=what):
            detector.predict(IMAGES[0], **kw)
    assert len(detector.predict(IMAGES[0], max_det=np.int64(2), conf=np.float32(0.1), letterbox=np.bool_(True))) == 1
    with pytest.raises(ValueError, match=r"image 1: .*clip\.avi is a video: .*Detector\.predict_video"):
        detector.predict([IMAGES[0], "clip.avi"])  # named, not read as a "corrupt" image


def test_a_file_of_no_image_format_says_so_without_a_memory_address(detector, tmp_path: Path) -> None:  # noqa: ANN001
    """PIL's message for bytes of no image format names its in-memory buffer (``<_io.BytesIO object at 0x...>``):
    the reason changed from run to run (in ``Detections.error`` and results files); it says what it is."""
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"hello, this is not an image at all" * 8)
    (r,) = detector.predict(garbage, skip_unreadable=True)
    assert r.error is not None and "no image format PIL or torchvision knows" in r.error
    assert "0x" not in r.error and "BytesIO" not in r.error
    from yolo9000 import UnreadableImageError

    folder = str(IMAGES[0].parent)
    with pytest.raises(UnreadableImageError, match=r"a folder, not an image file .*list_images\(folder\)"):
        detector.predict(folder)
    with pytest.raises(TypeError, match=r"size must be one side or \(height, width\)"):
        detector.predict(IMAGES[0], size=(256, 320, 3))
    with pytest.raises(ValueError, match=r"a positive multiple of 32, or \(height, width\) of them, got \(256, 300\)"):
        detector.predict(IMAGES[0], size=(256, 300))
    with Image.open(IMAGES[0]) as closed:
        pass  # PIL reads the pixels lazily: the block closed the file first (PIL asserted, no message)
    with pytest.raises(ValueError, match=r"image 0: a closed PIL image .* call im.load\(\) inside the block"):
        detector.predict(closed)
    cut = tmp_path / "cut.jpg"  # a JPEG cut in half, opened lazily (PIL reads only the header): the raw OSError
    cut.write_bytes(IMAGES[0].read_bytes()[: IMAGES[0].stat().st_size // 2])
    with Image.open(cut) as lazy, pytest.raises(ValueError, match=r"image 1: .* could not be read from .*cut.jpg"):
        detector.predict([IMAGES[0], lazy])


def test_list_images_leaves_out_hidden_files_and_folders(tmp_path: Path) -> None:
    """macOS's ``._*`` resource forks and Jupyter's ``.ipynb_checkpoints`` copies are not images of the folder (a
    ``._x.jpg`` made ``predict(list_images(folder))`` raise); a hidden file named on its own is read."""
    from yolo9000.data.predict import list_images

    for rel in ("a.jpg", "sub/b.png", "._a.jpg", ".ipynb_checkpoints/a-checkpoint.jpg", ".hidden.jpg", "sub/.c.jpg"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(IMAGES[0], tmp_path / rel)
    assert list_images(tmp_path) == [tmp_path / "a.jpg", tmp_path / "sub" / "b.png"]
    assert list_images(tmp_path / "._a.jpg") == [tmp_path / "._a.jpg"]
    hidden_root = tmp_path / ".cache" / "imgs"  # a source folder inside a hidden one is still listed
    hidden_root.mkdir(parents=True)
    shutil.copy(IMAGES[0], hidden_root / "d.jpg")
    assert list_images(hidden_root) == [hidden_root / "d.jpg"]


def test_from_checkpoint_names_what_the_file_is(tmp_path: Path) -> None:
    """A folder, a file that is no checkpoint, a classifier checkpoint: each error names the file and what it is."""
    from yolo9000 import Detector

    with pytest.raises(FileNotFoundError, match="is a folder: pass a checkpoint file in it"):
        Detector.from_checkpoint(tmp_path)
    (tmp_path / "broken.ckpt").write_bytes(b"\x80\x04 not a pickle")
    with pytest.raises(ValueError, match=r"broken.ckpt: not a readable PyTorch checkpoint"):
        Detector.from_checkpoint(tmp_path / "broken.ckpt")
    target = "yolo9000.modules.classifier.ClassifierModule"
    torch.save({"yolo9000_model_config": {"_target_": target}, "state_dict": {}}, tmp_path / "cls.ckpt")
    with pytest.raises(TypeError, match="cls.ckpt: a ClassifierModule checkpoint, not a DetectorModule"):
        Detector.from_checkpoint(tmp_path / "cls.ckpt")
    # in a run's folder: the hint is that run's own command (its experiment and data), not another experiment's
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "launch_overrides.txt").write_text("experiment=wordtree_digits seed=2\n")
    shutil.copy(tmp_path / "cls.ckpt", run / "checkpoints" / "last.ckpt")
    last = run / "checkpoints" / "last.ckpt"
    said = f"python src/train.py experiment=wordtree_digits seed=2 train=false ckpt_path={last}"
    with pytest.raises(TypeError, match=re.escape(said)):
        Detector.from_checkpoint(run / "checkpoints" / "last.ckpt")
    # convert.py of a darknet classifier cfg: a network to start from, not a module to run
    torch.save({"yolo9000_classifier_config": {"_target_": "x"}, "state_dict": {}}, tmp_path / "darknet19.ckpt")
    with pytest.raises(TypeError, match=r"darknet19.ckpt: a classifier network converted .* model.backbone_ckpt"):
        Detector.from_checkpoint(tmp_path / "darknet19.ckpt")


def test_a_mistyped_setting_names_the_accepted_ones(ckpt: Path) -> None:
    """A setting the module does not have lists the ones it has; a setting no detection can satisfy is refused as
    the checkpoint is loaded (detect.py and eval.py load it so), as predict refuses it per call."""
    from yolo9000 import Detector

    with pytest.raises(TypeError, match=r"conf is no setting of a DetectorModule; its settings: .*conf_thresh"):
        Detector.from_checkpoint(ckpt, conf=0.3)  # predict's name, not the checkpoint's setting
    for kw, what in [
        # the caller's value is named as theirs, beside the checkpoint's own (not the file's fault)
        (
            {"conf_thresh": 2.0},
            r"^conf_thresh must lie in \[0, 1\], got 2.0 \(given for .*\.ckpt, whose saved "
            r"setting is conf_thresh=0\.\d+\)$",
        ),
        ({"conf_thresh": -1}, "conf_thresh must lie in"),
        ({"nms_thresh": 5}, "nms_thresh must lie in"),
        ({"max_det": -1}, "max_det must be >= 0"),
        ({"eval_size": 100}, "eval_size must be a positive multiple of 32, got 100"),
        ({"tree_decode": "foo"}, "tree_decode must be 'darknet' or 'paper', got 'foo'"),  # was found at the first batch
    ]:
        with pytest.raises(ValueError, match=what):
            Detector.from_checkpoint(ckpt, **kw)
    assert Detector.from_checkpoint(ckpt, conf_thresh=1.0, nms_thresh=0.0, max_det=0).conf == 1.0  # the bounds


def test_from_darknet_scaled_cfg(tmp_path: Path, names_file: Path) -> None:
    from yolo9000 import Detector

    det = Detector.from_darknet(scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3), names=names_file)
    assert det.class_names == BCCD and det.size == 416 and det.device == torch.device("cpu")
    (r,) = det.predict(IMAGES[:1], size=SIZE, conf=0.0, nms=0.45)
    assert len(r) > 0 and set(r.names) <= set(BCCD) and r.image_size == (480, 640)
    assert (r.boxes[:, 2] <= 640).all() and (r.boxes[:, 3] <= 480).all()
    numbered = Detector.from_darknet(scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 4))  # no names: "0".."3"
    assert numbered.class_names == ["0", "1", "2", "3"]
    with pytest.raises(TypeError, match="classifier"):
        Detector.from_darknet(scaled_cfg(tmp_path, "darknet19.cfg", 0.125, 7))
    with pytest.raises(FileNotFoundError, match=r"class names file not found: .*nope.names \(one class name a line"):
        Detector.from_darknet(scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3), names=tmp_path / "nope.names")
    with pytest.raises(ValueError, match=r"nms_thresh must lie in \[0, 1\], got 2 \(given for .*yolov2-tiny-voc"):
        Detector.from_darknet(scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3), nms_thresh=2)


def test_converted_darknet_weights_keep_every_candidate_as_darknet(tmp_path: Path) -> None:
    """darknet sends every (box, class) pair above the threshold to NMS: converted weights have no pre-NMS cap (a
    trained module keeps its 1000 best). 13 x 13 x 5 boxes x 3 classes = 2535 pairs all pass conf 0; NMS at IoU
    1.0 suppresses none."""
    from yolo9000 import Detector

    cfg = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3)
    assert darknet_to_checkpoint(cfg)["yolo9000_model_config"]["pre_nms_topk"] is None
    (r,) = Detector.from_darknet(cfg).predict(IMAGES[:1], size=416, conf=0.0, nms=1.0)
    assert len(r) == 13 * 13 * 5 * 3
    (capped,) = Detector.from_darknet(cfg, pre_nms_topk=1000).predict(IMAGES[:1], size=416, conf=0.0, nms=1.0)
    assert len(capped) == 1000


def test_from_darknet_files_written_on_windows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A cfg and a names file with a UTF-8 byte-order mark, or a Latin-1 byte in a comment (darknet reads bytes):
    the same network, weights and names as the plain files, and converted back to darknet with the cfg's bytes as
    they were (the stored cfg text was decoded without dropping the mark: the tiny networks failed to build)."""
    from yolo9000 import Detector
    from yolo9000.checkpoints import checkpoint_to_darknet
    from yolo9000.darknet import build_darknet, save_weights

    plain = scaled_cfg(tmp_path, "yolov2-tiny-voc.cfg", 0.125, 3)
    weights = tmp_path / "tiny.weights"
    save_weights(randomize(build_darknet(plain), seed=5), weights)
    names = tmp_path / "plain.names"
    names.write_text("\n".join(BCCD) + "\n")
    bom_cfg, latin_cfg, bom_names = tmp_path / "bom.cfg", tmp_path / "latin.cfg", tmp_path / "bom.names"
    bom_cfg.write_bytes(b"\xef\xbb\xbf" + plain.read_bytes())
    latin_cfg.write_bytes(b"# r\xe9seau tiny\n" + plain.read_bytes())
    bom_names.write_bytes(b"\xef\xbb\xbf" + names.read_bytes())
    want = Detector.from_darknet(plain, weights, names).predict(IMAGES[:1], size=SIZE, conf=0.01)[0]
    for cfg, nm in ((bom_cfg, bom_names), (latin_cfg, names)):
        with caplog.at_level("WARNING", logger="yolo9000"):
            det = Detector.from_darknet(cfg, weights, nm)
        assert det.class_names == BCCD
        got = det.predict(IMAGES[:1], size=SIZE, conf=0.01)[0]
        assert len(want) > 0 and torch.equal(got.boxes, want.boxes) and got.names == want.names
        ckpt = tmp_path / f"{cfg.stem}.ckpt"
        torch.save(darknet_to_checkpoint(cfg, weights, nm), ckpt)
        checkpoint_to_darknet(ckpt, tmp_path / f"{cfg.stem}.rt.weights", tmp_path / f"{cfg.stem}.rt.cfg")
        assert (tmp_path / f"{cfg.stem}.rt.cfg").read_bytes() == cfg.read_bytes()
        assert (tmp_path / f"{cfg.stem}.rt.weights").read_bytes() == weights.read_bytes()
    assert f"{latin_cfg}: not UTF-8 (byte 0xe9 at offset 3): read as Windows-1252" in caplog.text


# what the predict API and convert.py's argument parsing need none of (Lightning, Hydra and the trainer's loggers
# and metrics: ~2.5 s of the first import here); a module is built (from_checkpoint) with Lightning
TRAINING_ONLY = ("pytorch_lightning", "lightning", "lightning_fabric", "hydra", "omegaconf", "wandb", "matplotlib")


def _loaded(names: tuple[str, ...] = TRAINING_ONLY) -> str:
    """Python source: the sorted top-level packages of ``names`` in ``sys.modules``."""
    return f"sorted({{m.split('.')[0] for m in sys.modules}} & {set(names)!r})"


def test_import_stays_light(ckpt: Path) -> None:
    """``import yolo9000`` and ``yolo9000.darknet`` load no Lightning; ``yolo9000.Detector`` is imported on use and
    loads no Lightning, Hydra, W&B or matplotlib either (they come with the module ``from_checkpoint`` builds), and
    a fresh interpreter's first ``from_checkpoint(...).predict(...)`` works from there."""
    code = (
        "import sys, yolo9000, yolo9000.darknet\n"
        "assert not [m for m in sys.modules if m.startswith(('pytorch_lightning', 'lightning.'))]\n"
        "assert 'yolo9000.api' not in sys.modules\n"
        "from yolo9000 import Detector\n"
        "assert Detector.__module__ == 'yolo9000.api' and 'Detector' in dir(yolo9000)\n"
        f"assert not {_loaded()}, {_loaded()}\n"
        f"(d,) = Detector.from_checkpoint({str(ckpt)!r}, device='cpu').predict({str(IMAGES[0])!r}, size={SIZE}, "
        "conf=0.0)\n"
        "assert len(d) > 0 and d.image_size == (480, 640) and set(d.names) <= {'RBC', 'WBC', 'Platelets'}\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_predict_path_needs_no_albumentations(ckpt: Path) -> None:
    """The predict path resizes with :mod:`yolo9000.data.resize` alone: importing ``yolo9000.api``, building a
    Detector (a small random network) and predicting on an in-memory image load no albumentations (~0.5 s, the
    training augmentations of :mod:`yolo9000.data.transforms`); ``yolo9000.data``'s training names still resolve."""
    code = (
        "import sys, numpy as np, yolo9000.api\n"
        f"assert not {_loaded(('albumentations',))}, {_loaded(('albumentations',))}\n"
        f"det = yolo9000.api.Detector.from_checkpoint({str(ckpt)!r}, device='cpu')\n"
        "image = np.random.default_rng(0).integers(0, 256, (48, 80, 3), np.uint8)\n"
        "for letterbox in (False, True):\n"
        "    (d,) = det.predict(image, size=64, conf=0.0, letterbox=letterbox)\n"
        "    assert d.image_size == (48, 80)\n"
        f"assert not {_loaded(('albumentations',))}, {_loaded(('albumentations',))}\n"
        "from yolo9000.data import AugmentConfig, DetectionTransform\n"
        "assert DetectionTransform.__module__ == 'yolo9000.data.transforms' and 'albumentations' in sys.modules\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]


def test_convert_script_imports_light() -> None:
    """``src/convert.py`` imports the checkpoint code when it converts, not before parsing its arguments (``--help``
    and a usage error need no Lightning or Hydra)."""
    code = f"import sys; sys.path.insert(0, 'src'); import convert; assert not {_loaded()}, {_loaded()}"
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]


@pytest.mark.parametrize("case", ["help", "unknown key", "missing source"])
def test_detect_script_parses_before_lightning(case: str, tmp_path: Path) -> None:
    """``src/detect.py`` imports the checkpoint code (and with it Lightning) after Hydra parsed its arguments and
    the settings were checked: ``--help``, an unknown key and a source that is not there exit without it."""
    argv = {
        "help": ["--help"],
        "unknown key": ["no_such_key=1"],
        "missing source": [f"hydra.run.dir={tmp_path}", "ckpt_path=none.ckpt", f"source={tmp_path / 'none.jpg'}"],
    }[case]
    lightning = ("pytorch_lightning", "lightning", "lightning_fabric")
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['src/detect.py', *{argv!r}]\n"
        "try:\n"
        "    runpy.run_path('src/detect.py', run_name='__main__')\n"
        "except SystemExit as e:\n"
        "    print('exit', repr(e.code))\n"
        f"print('loaded', {_loaded(lightning)})\n"
    )
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    lines = res.stdout.splitlines()
    exit_code = {"help": "exit 0", "unknown key": "exit 1", "missing source": "exit 'Error: "}[case]
    assert any(line.startswith(exit_code) for line in lines), res.stdout[-2000:] + res.stderr[-2000:]
    assert lines[-1] == "loaded []", res.stdout[-2000:]


def _input_shapes(detector) -> list[tuple[int, ...]]:  # noqa: ANN001
    """The shapes of the inputs the detector's network sees from now on (a forward pre-hook records them)."""
    seen: list[tuple[int, ...]] = []
    detector.network.register_forward_pre_hook(lambda _m, args: seen.append(tuple(args[0].shape)))
    return seen


def test_rectangular_input_size(ckpt: Path, names_file: Path, tmp_path: Path) -> None:
    """``size=(height, width)``: the network runs at 64 x 96 and the boxes come back in the image's pixels, each
    axis by its own scale: the same boxes as the network run on the image stretched by hand (cv2) and its boxes
    scaled back by hand. An image of the input's aspect is not padded by the letterbox (the same detections)."""
    import cv2

    from yolo9000 import Detector

    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.0, warp=False)  # cv2.resize, as by hand
    shapes = _input_shapes(det)
    image = read_image(IMAGES[0])  # 480 x 640
    got = det.predict(image, size=(64, 96))[0]
    assert shapes[-1] == (1, 3, 64, 96)
    x = torch.from_numpy(cv2.resize(image, (96, 64), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)[None] / 255.0
    with torch.no_grad():
        raw = det.module(x)
        net = det.module.predict_raw(raw, (64, 96), None, None)[0]  # boxes in network pixels, unclipped
    want = (net["boxes"] * torch.tensor([640 / 96, 480 / 64] * 2)).clamp_min(0)
    want = torch.minimum(want, torch.tensor([640.0, 480.0] * 2))
    assert len(got) > 0 and torch.equal(got.labels, net["labels"])
    assert torch.allclose(got.boxes, want, atol=2e-3) and torch.allclose(got.scores, net["scores"], atol=1e-5)
    square = det.predict(image, size=96)[0]
    assert not (len(square) == len(got) and torch.allclose(square.boxes, got.boxes))  # the size is applied
    same_aspect = np.ascontiguousarray(cv2.resize(image, (192, 128)))  # 3:2, as 96 x 64
    a, b = (det.predict(same_aspect, size=(64, 96), letterbox=lb)[0] for lb in (False, True))
    assert_same(a, b)


def test_rectangular_darknet_net_runs_as_darknet_does(tmp_path: Path, names_file: Path) -> None:
    """A darknet cfg whose [net] is 64 high and 96 wide: the predict API (detect.py) runs it 64 x 96 by default,
    as darknet's detector test does (it ran square before); its square side (a trade-off's default) is the height."""
    from yolo9000 import Detector

    cfg = scaled_cfg(tmp_path, "yolov2-voc.cfg", 0.125, 3)
    rect = tmp_path / "rect.cfg"
    rect.write_text(re.sub(r"width=\d+", "width=96", re.sub(r"height=\d+", "height=64", cfg.read_text()), count=1))
    det = Detector.from_darknet(rect, None, names_file, device="cpu")
    assert det.input_hw == (64, 96) and det.size == 64 and "size=64x96" in repr(det)
    shapes = _input_shapes(det)
    det.predict(IMAGES[0])
    assert shapes[-1] == (1, 3, 64, 96)
    square = Detector.from_darknet(cfg, None, names_file, device="cpu")
    assert square.input_hw == (416, 416) and "predict_hw" not in square.module.model_config  # as before


# ---- cases a mutation audit found untested -------------------------------------------------------------------
def _same(a, b) -> bool:  # noqa: ANN001
    return torch.equal(a.labels, b.labels) and torch.equal(a.boxes, b.boxes) and torch.equal(a.scores, b.scores)


def test_per_call_thresholds_do_not_leak_into_later_calls(ckpt: Path) -> None:
    """``nms`` / ``conf`` / ``max_det`` of one call leave the detector's defaults as they were: a later call
    without them gives what it gave before."""
    from yolo9000 import Detector

    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.0)
    before = det.predict(IMAGES[0], size=SIZE)[0]
    assert len(before) > 5
    det.predict(IMAGES[0], size=SIZE, nms=1.0)
    det.predict(IMAGES[0], size=SIZE, conf=0.5, max_det=2)
    assert (det.conf, det.nms) == (0.0, 0.45)
    assert _same(det.predict(IMAGES[0], size=SIZE)[0], before)


def test_float_images_are_rounded_to_8_bits(ckpt: Path) -> None:
    """Floats in [0, 1] are scaled by 255 and rounded: ``(u - 0.45) / 255`` is the uint8 image ``u`` (truncating
    would give ``u - 1``): the same detections, bit for bit, for a numpy HWC and a torch CHW float image."""
    from yolo9000 import Detector

    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.0)
    u = np.asarray(Image.fromarray(read_image(IMAGES[0])).resize((160, 120)))
    f = (np.maximum(u.astype(np.float32), 0.45) - 0.45) / 255  # 0 stays 0
    want = det.predict(u, size=SIZE)[0]
    assert len(want) > 5
    assert _same(det.predict(f, size=SIZE)[0], want)
    assert _same(det.predict(torch.from_numpy(f).permute(2, 0, 1), size=SIZE)[0], want)


def test_an_unreadable_file_takes_no_other_images_slot(ckpt: Path, tmp_path: Path) -> None:
    """An unreadable file first in a batch: the readable image after it is detected on its own pixels (the
    detections it has alone), in its own place."""
    from yolo9000 import Detector

    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.0, read_threads=1)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    small = np.asarray(Image.fromarray(read_image(IMAGES[1])).resize((160, 120)))
    res = det.predict([broken, IMAGES[0], small], size=SIZE, batch_size=3, skip_unreadable=True)
    alone = det.predict([IMAGES[0], small], size=SIZE, batch_size=2)
    assert res[0].error and [r.index for r in res] == [0, 1, 2]
    assert len(res[1]) > 5 and res[1].image_size == (480, 640) and res[2].image_size == (120, 160)
    for got, want in zip(res[1:], alone, strict=True):
        assert torch.equal(got.labels, want.labels) and torch.allclose(got.boxes, want.boxes, atol=1e-3)


# ---------------------------------------------------------------------------------------------- detect.py
def test_detect_json_and_drawings_are_the_apis_detections(tmp_path: Path) -> None:
    """detect.py on a checkpoint trained (and evaluated) letterboxed, no letterbox= given: detections.json holds each
    image's width and height and the predict API's letterboxed detections (rounded as ``to_dict``), the unreadable
    file under ``failed`` with its path, and a drawing with the boxes drawn (not the bare image)."""
    from test_cli_bench_detect_eval import make_checkpoint, run
    from yolo9000 import Detector

    ckpt = make_checkpoint(tmp_path / "bccd.ckpt", "data.augment.letterbox=true")
    src = tmp_path / "images"
    src.mkdir()
    wide = src / "wide.png"  # 200 x 120: letterboxing pads it, stretching does not
    Image.fromarray(read_image(IMAGES[0])).resize((200, 120)).save(wide)
    (src / "broken.jpg").write_bytes(b"not an image")
    overrides = ["img_size=64", "conf_thresh=0.0"]  # letterbox: null, the checkpoint's
    res = run("detect.py", tmp_path / "out", f"ckpt_path={ckpt}", f"source={src}", *overrides)
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads((tmp_path / "out" / "detections.json").read_text())
    assert got["letterbox"] is True and "letterboxed" in res.stdout + res.stderr
    assert [f["file"] for f in got["failed"]] == [str(src / "broken.jpg")]
    (rec,) = got["images"]
    assert rec["file"] == str(wide) and (rec["width"], rec["height"]) == (200, 120)
    det = Detector.from_checkpoint(ckpt, device="cpu", conf_thresh=0.0)
    want = det.predict(wide, size=64, letterbox=True)[0]
    stretched = det.predict(wide, size=64, letterbox=False)[0]
    assert len(want) > 0 and want.to_dict()["detections"] != stretched.to_dict()["detections"]
    assert len(rec["detections"]) == len(want)
    for g, w in zip(rec["detections"], want.to_dict()["detections"], strict=True):
        assert g["class"] == w["class"] and g["label"] == w["label"]
        assert g["box"] == pytest.approx(w["box"], abs=0.05) and g["score"] == pytest.approx(w["score"], abs=2e-4)
    drawing = read_image(tmp_path / "out" / rec["drawing"]).astype(np.int16)
    bare = read_image(wide).astype(np.int16)
    assert drawing.shape == bare.shape and np.abs(drawing - bare).max() > 100  # box outlines, not JPEG noise
