"""The predict API for code that embeds the detector: ``from yolo9000 import Detector``.

>>> det = Detector.from_checkpoint("runs/.../checkpoints/last.ckpt")          # or Detector.from_darknet(cfg, weights)
>>> for d in det.predict(["a.jpg", pil_image, hwc_uint8_array, chw_tensor], conf=0.3):
...     print(d.path or d.index, d.names, d.boxes)                             # boxes: xyxy in the image's pixels
>>> for frame, d in det.predict_video("clip.mp4"):                            # every frame of a video, in order
...     print(d.index, d.names)                                                # (or a camera: 0, a stream: "rtsp://...")

Application layer over :func:`yolo9000.checkpoints.load_module` / :func:`~yolo9000.checkpoints.darknet_to_checkpoint`
(the network), :class:`yolo9000.data.predict.ImageFilesDataset` (reading, and the eval resize of
:class:`~yolo9000.data.resize.EvalResize`, whose parameters map the boxes back) and
:func:`yolo9000.postprocess.postprocess` (decode, threshold, NMS). ``src/detect.py`` is a CLI over it.

Decisions:

* the confidence threshold defaults to 0.25 (darknet's ``detect`` and ``detect.py``), not the checkpoint's
  evaluation threshold (0.005, right for mAP, hundreds of boxes per image for a user); ``conf_thresh=None`` keeps
  the checkpoint's. ``conf`` / ``nms`` / ``max_det`` of one :meth:`Detector.predict` call override it for that call.
* an unreadable file raises :class:`UnreadableImageError` naming it (after the images before it were processed);
  ``skip_unreadable=True`` returns an empty :class:`Detections` with ``error`` set in its place instead.
* one :class:`Detections` per input, in input order; a 4-D tensor / array (B, ...) counts as B inputs.
"""

from __future__ import annotations

import contextlib
import io
import numbers
import os
import platform
import re
import threading
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from yolo9000.data.image_io import ImageDecodeError, pil_rgb, rgb_uint8
from yolo9000.data.predict import ImageFilesDataset, PredictCollate
from yolo9000.data.resize import EvalResize, check_input_size, size_text
from yolo9000.data.video import VideoError, VideoFrames, is_video, source_name, stream_source
from yolo9000.models import check_flags
from yolo9000.models.layers import fold_batch_norms, fold_input_scale, fused_layer_count, fused_sibling
from yolo9000.postprocess import DecodeOn, check_decode_settings, decode_device
from yolo9000.speed import (
    compile_network,
    dtype_name,
    float_images,
    inference_compile_options,
    is_compiled,
    set_channels_last,
)
from yolo9000.speed import keep_freed_memory as apply_keep_freed_memory

if TYPE_CHECKING:
    from yolo9000.modules.detector import DetectorModule

__all__ = [
    "DETECT_CONF",
    "Detections",
    "Detector",
    "ImageInput",
    "UnreadableImageError",
    "VideoError",
    "VideoFrames",
    "check_input_size",
]

DETECT_CONF = 0.25  # darknet detect's default threshold (conf/detect.yaml)

ImageInput: TypeAlias = "str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor"
"""One image: a file path; a PIL image (any mode: 16-bit grey shifted to 8 bits, float in [0, 1]); a numpy
(H, W, 3) RGB array (uint8, uint16 (16 bit), or float in [0, 1]; (H, W) and (H, W, 1) grey and (H, W, 4) RGBA are
converted); a torch (3, H, W) tensor (the same dtypes and bfloat16 / float16; (1, H, W), (4, H, W) and (H, W)
likewise). A 4-D array / tensor is a batch of such images. A file is decoded upright (its EXIF orientation
applied, as viewers show it); an in-memory image is used as it is (``PIL.ImageOps.exif_transpose`` it for the
file's frame)."""

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
}


class UnreadableImageError(ImageDecodeError):
    """An input file that cannot be read or decoded (missing, empty, corrupt, unknown format).

    Attributes:
        path: the file as given; reason: why (the decoder's words).
    """

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(reason)
        self.path = path
        self.args = (f"cannot read image {path}: {reason}",)


@dataclass(eq=False)  # the generated __eq__ compares tensors with ``==``: "Boolean value of Tensor ... is ambiguous"
class Detections:
    """The detections of one input image.

    Attributes:
        boxes: float32 (N, 4) xyxy in the original image's pixels (clipped to it), on the CPU.
        scores: float32 (N,), decreasing.
        labels: int64 (N,) class ids (WordTree node ids for a 9k model) indexing the detector's ``class_names``.
        names: the N class names (WordTree names for a 9k model).
        index: position of the image among the inputs of the call.
        path: the file, for a path input; None for an in-memory image.
        image_size: original ``(height, width)``; None when unreadable.
        error: why the file could not be read (``skip_unreadable=True``), else None.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    names: list[str]
    index: int
    path: str | None = None
    image_size: tuple[int, int] | None = None
    error: str | None = field(default=None)

    def __len__(self) -> int:
        return len(self.scores)

    def __eq__(self, other: object) -> bool:
        """The same detections (boxes, scores and labels exactly equal, as their dtypes), names, index, path,
        image size and error: ``a == b``, ``d in results`` and ``results.index(d)`` work."""
        if not isinstance(other, Detections):
            return NotImplemented
        tensors = ("boxes", "scores", "labels")
        plain = ("names", "index", "path", "image_size", "error")
        return all(getattr(self, k) == getattr(other, k) for k in plain) and all(
            a.dtype == b.dtype and a.shape == b.shape and torch.equal(a.cpu(), b.cpu())
            for a, b in ((getattr(self, k), getattr(other, k)) for k in tensors)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable: no hash (as a dataclass with eq)

    @classmethod
    def empty(cls, index: int, path: str | None = None, error: str | None = None) -> Detections:
        """No detections (the result of an unreadable input when ``error`` is set)."""
        return cls(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), [], index, path, None, error)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"index", "file", "width", "height", "detections": [{"box": [x0, y0, x1, y1], "class",
        "label", "score"}], "error"?}`` (boxes rounded to 0.01 px, scores to 4 decimals; ``error`` only when set)."""
        h, w = self.image_size if self.image_size is not None else (None, None)
        boxes = [[round(float(v), 2) for v in b] for b in self.boxes.tolist()]
        dets = [
            {"box": b, "class": n, "label": int(c), "score": round(float(s), 4)}
            for b, n, c, s in zip(boxes, self.names, self.labels.tolist(), self.scores.tolist(), strict=True)
        ]
        out: dict[str, Any] = {"index": self.index, "file": self.path, "width": w, "height": h, "detections": dets}
        if self.error is not None:
            out["error"] = self.error
        return out


class Detector:
    """A trained YOLOv2 / YOLO9000 detector for inference, on one device at one precision chosen here.

    Build one with :meth:`from_checkpoint` or :meth:`from_darknet` (or around a loaded
    :class:`~yolo9000.modules.detector.DetectorModule`), then call :meth:`predict`. A module whose
    ``model.fast.keep_freed_memory`` is on (the CPU models) applies it here as training does, for the whole process
    (:func:`~yolo9000.speed.keep_freed_memory`: a batch-32 forward of the CPU model at 256 took 143 ms without it,
    109 ms with it, on a 2-core Xeon VM).

    Args:
        module: the detection module (put in eval mode and moved to ``device``).
        device: ``"cpu"``, ``"cuda"`` (``"cuda:1"``, a :class:`torch.device`), or None / ``"auto"`` (CUDA when
            available); ``"cuda"`` without CUDA: ValueError.
        dtype: ``float32`` (default), or ``bfloat16`` / ``float16`` autocast of the forward pass (float16 on CUDA
            only); a :class:`torch.dtype` or its name. Weights stay float32; decode and NMS run in float32.
        channels_last: NHWC weights and inputs. None (default): on the CPU (oneDNN's NHWC convolutions and max
            pooling: the CPU model's batch-1 forward at 256 takes 8.5 ms instead of 15 ms on a 2-core EPYC), elsewhere
            the module's ``model.fast.channels_last``. The same detections up to float rounding.
        fold_bn: run an inference copy of the network whose batch norms are folded into their convs
            (:func:`~yolo9000.models.layers.fold_batch_norms`: one op fewer per layer; the module's own network
            keeps its BNs and can go on training) and whose input conv has the pixels' 1 / 255 folded in
            (:func:`~yolo9000.models.layers.fold_input_scale`: the uint8 batch is only cast to float, one pass over
            it fewer; 32 images at 256: ~1.7 ms of a 125 ms ``predict`` on a 2-core Xeon VM). The same detections
            up to float rounding; costs one copy of the weights. False, or a compiled network
            (``model.fast.compile``): the module's network as it is.
        fuse: with ``fold_bn``, on an x86 CPU in float32, NHWC and not compiled, batches of two images and more
            run the copy with its conv + leaky ReLU pairs as one oneDNN call each and its 2 x 2 stride-2 max pools
            as two element-wise maxima (:func:`~yolo9000.models.layers.fused_sibling`, the same weights;
            :attr:`fused_layers` counts the layers; :meth:`network_for` gives the network a batch runs): one pass
            over the activations fewer per layer. The default model at 256 on a 2-core Xeon VM: the batch-32
            forward 11-12 % faster, batch 4 4-6 %; a batch of one runs the copy as it is (the fused forms were
            slower there). The same outputs up to float rounding.
        compile: ``torch.compile`` the network it runs (:func:`~yolo9000.speed.inference_compile_options`): False
            (default), True, a mode (``"reduce-overhead"``: CUDA graphs, for batch-1 latency on a GPU;
            ``"max-autotune"``), or a mapping of ``torch.compile`` keywords (``backend``, ``mode``, ``dynamic``,
            ``fullgraph``, ``options``). One static graph per input shape (size x batch), compiled at its first call:
            10-15 s each on a 2-core CPU (kept in torch's on-disk cache: a later process loads it in ~2 s), a last
            smaller batch of a ``predict`` being a shape of its own. On that CPU (AMD EPYC VM) the default model's
            forward pass at 256 was 11-15 % faster (batch 1: 7.2-8.3 ms against 8.1-9.5) and ``predict`` end to end
            9-12 %, with outputs identical to the eager network's. The module's own network stays eager; a network
            compiled already (``model.fast.compile``) is run as it is. On a GPU each call's output is copied (CUDA
            graphs would overwrite it at the next call; video averaging keeps several).
        read_threads: threads of this process that read and resize the images of a batch (``predict`` with
            ``num_workers=0``; OpenCV's resize and the image decoders release the GIL), each straight into its
            images' slots of the batch. None (default): torch's CPU thread count (:func:`torch.get_num_threads`,
            read at each call) for a batch with files to decode, the calling thread for decoded pixels (arrays,
            PIL images, tensors: OpenCV spreads each resize over its own threads). On a 2-core Xeon VM right after
            a forward pass, 32 decoded BCCD photos (640 x 480) to 256 took 6.2 ms in one thread against 7.4-7.7
            in two (``predict`` at batch 32 1-1.3 ms faster), while 32 of their files took 10-13 ms longer in one.
        read_ahead: read and resize the next batch in a background thread while this one is detected (``predict``
            with ``num_workers=0`` and more than one batch), on a GPU into pinned memory copied asynchronously: the
            host reads while the device computes. None (default): on a GPU only (on the CPU the forward pass
            already uses every core: reading beside it only slows it down).
        decode_on: where decode + NMS run after a GPU forward pass (:func:`~yolo9000.postprocess.decode_device`):
            ``auto`` (default: on the host for batches of 1-3 images, else on the GPU), ``device`` or ``host``. The
            same detections up to float rounding.
        keep_freed_memory: ask glibc's malloc to keep freed memory for reuse (:func:`~yolo9000.speed.keep_freed_memory`:
            no page faults re-mapping large activations every call; a batch-32 CPU forward pass of the default
            model 109 ms instead of 143), process-wide and for the rest of the process: its resident memory then
            stays at its peak (after 8 predictions on 4000 x 3000 photos: 1.37 GB against 0.89 GB). None
            (default): as the checkpoint's ``model.fast.keep_freed_memory`` (on for the CPU model, as its training
            ran); False for a long-lived service that should give memory back.
        warp: the resize to the network input by one ``cv2.warpAffine`` sampling ``cv2.resize``'s points
            (:class:`~yolo9000.data.resize.EvalResize`'s ``warp``, as the evaluation's ``data.augment.eval_warp``,
            whose default it shares; not read from the checkpoint): within one grey level, 32 BCCD photos to 256 in
            2.9 ms instead of 4.3 on a 2-core Xeon VM. False: ``cv2.resize``, the pixels of evaluations before
            session 42.
    """

    def __init__(
        self,
        module: DetectorModule,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        channels_last: bool | None = None,
        fold_bn: bool = True,
        fuse: bool = True,
        compile: bool | str | Mapping[str, Any] = False,
        read_threads: int | None = None,
        read_ahead: bool | None = None,
        decode_on: DecodeOn = "auto",
        keep_freed_memory: bool | None = None,
        warp: bool = True,
    ) -> None:
        from yolo9000.modules.detector import DetectorModule  # Lightning: imported with the first module, not here

        if not isinstance(module, DetectorModule):
            raise TypeError(f"Detector needs a DetectorModule (a detection checkpoint), got {type(module).__name__}")
        check_flags("Detector", warp=warp)  # before any copy of the network is made
        self.device = _resolve_device(device)
        self.dtype = _resolve_dtype(dtype, self.device)
        if channels_last is None:
            channels_last = self.device.type == "cpu" or module.fast.channels_last
        self.channels_last = bool(channels_last)
        if module.fast.keep_freed_memory if keep_freed_memory is None else keep_freed_memory:
            apply_keep_freed_memory()  # process-wide, for the rest of the process (as the checkpoint's training)
        self.module = module.eval().to(self.device)
        has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in module.model.modules())
        # a compiled network (model.fast.compile) is kept as it is: a copy would run eagerly
        compiled = is_compiled(module.model)
        self.fold_bn = bool(fold_bn) and has_bn and not compiled
        # the network predict runs: (B, 3, S, S) in [0, 1] (0-255 when its ``folded_input_scale`` is set) -> raw
        # head output (B, A * (5 + C), S / 32, S / 32)
        self.network = fold_batch_norms(module.model) if self.fold_bn else module.model
        if self.fold_bn:  # the copy's input conv takes 0-255 pixels: the uint8 -> float conversion divides nothing
            fold_input_scale(self.network, 1.0 / 255.0)
        # torch.compile keywords (None: eager); a network compiled already is run as it is
        self.compile_options = None if compiled else inference_compile_options(compile)
        set_channels_last(self.network, self.channels_last)
        # batches of 2 and more run a sibling of the copy (the same weights) whose conv + leaky ReLU pairs and 2 x 2
        # pools take their CPU inference forms: an eager float32 NHWC forward on an x86 CPU only (where it was
        # measured; a compiled network fuses its own way)
        eager_cpu = self.device.type == "cpu" and self.dtype == torch.float32 and self.compile_options is None
        if fuse and self.fold_bn and eager_cpu and self.channels_last and platform.machine().lower() in _X86:
            sibling, count = fused_sibling(self.network)
            self._batch_network = sibling if count else None
        if self.compile_options is not None:
            try:
                self.network = compile_network(self.network, self.compile_options)
            except RuntimeError as e:  # torch's refusal of a mode or backend, e.g. "Unrecognized mode=..."
                raise ValueError(f"compile={compile!r}: {e}") from e
        # CUDA graphs (reduce-overhead, max-autotune) overwrite a call's outputs at the next call: each is copied
        self._copy_outputs = self.device.type == "cuda" and (compiled or self.compile_options is not None)
        if read_threads is not None and (isinstance(read_threads, bool) or int(read_threads) < 1):
            raise ValueError(f"read_threads must be >= 1 (or None: torch's thread count), got {read_threads!r}")
        self.read_threads = None if read_threads is None else int(read_threads)
        self.read_ahead = self.device.type != "cpu" if read_ahead is None else bool(read_ahead)
        decode_device(self.device, 1, decode_on)  # a wrong value raises here
        self.decode_on: DecodeOn = decode_on
        # the eval resizes (stretch, letterbox): stateless, shared by the calling and reading threads
        self._warp = warp
        self._transforms = {lb: EvalResize(letterbox=lb, warp=warp) for lb in (False, True)}
        self._init_threads()

    def _init_threads(self) -> None:
        """The reading pool (made at the first batch that uses it)."""
        self._pool: ThreadPoolExecutor | None = None
        self._pool_size = 0
        self._pool_lock = threading.Lock()
        self._pid = os.getpid()  # the process whose threads these are (a forked child has none of them)

    def _check_process(self) -> None:
        """In a child forked from the process that used this Detector (``multiprocessing``'s default ``fork`` on
        Linux, a pre-forking server): torch's OpenMP worker threads and the reading pool's threads stayed in the
        parent, and a forward pass with more than one torch thread hangs there. The child makes its own pool and,
        as DataLoader workers do, runs torch with one thread (warned: a process-wide setting)."""
        pid = os.getpid()
        if pid == self._pid:
            return
        parent, self._pid = self._pid, pid
        self._pool, self._pool_size, self._pool_lock = None, 0, threading.Lock()  # the parent's threads are gone
        if torch.get_num_threads() > 1:
            warnings.warn(
                f"Detector: used in process {pid}, forked from process {parent} where it ran: torch's CPU threads "
                "(OpenMP) hang a forked process, so this one now runs torch with one thread "
                "(torch.set_num_threads(1), as DataLoader workers do); a pool started with "
                "multiprocessing.get_context('spawn') keeps its threads",
                RuntimeWarning,
                stacklevel=3,
            )
            torch.set_num_threads(1)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the thread pool (remade on first use), a network compiled here as its eager self
        (compiled again when unpickled: compiled code does not travel)."""
        state = self.__dict__.copy()
        for key in ("_pool", "_pool_size", "_pool_lock", "_pid"):
            state.pop(key)
        if self.compile_options is not None:
            state["_network"] = self._network._orig_mod
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if "network" in state:  # pickled before the fused sibling (session 40): no sibling
            state["_network"] = state.pop("network")
        state.setdefault("_batch_network", None)
        state.setdefault("_warp", False)  # pickled before the eval warp (session 42): cv2.resize, as it ran
        self.__dict__.update(state)
        self._transforms = {lb: EvalResize(letterbox=lb, warp=self._warp) for lb in (False, True)}
        if self.compile_options is not None:
            self.network = compile_network(self.network, self.compile_options)
        self._init_threads()

    # ---------------------------------------------------------------- construction
    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        channels_last: bool | None = None,
        fold_bn: bool = True,
        fuse: bool = True,
        compile: bool | str | Mapping[str, Any] = False,
        read_threads: int | None = None,
        read_ahead: bool | None = None,
        decode_on: DecodeOn = "auto",
        keep_freed_memory: bool | None = None,
        warp: bool = True,
        **settings: Any,
    ) -> Detector:
        """A checkpoint written by ``train.py`` or ``convert.py``.

        Args:
            path: the ``.ckpt`` file.
            device, dtype, channels_last, fold_bn, fuse, compile, read_threads, read_ahead, decode_on,
                keep_freed_memory, warp: see :class:`Detector`.
            **settings: module settings replacing the checkpoint's (:func:`~yolo9000.checkpoints.load_module`):
                ``conf_thresh`` (default :data:`DETECT_CONF`; None = the checkpoint's), ``nms_thresh``,
                ``max_det``, ``pre_nms_topk``, ``tree_decode``, ``tree_thresh``, ``eval_map`` (WordTree heads).
        Raises:
            FileNotFoundError / ValueError naming the file; TypeError for a classifier checkpoint.
        """
        from yolo9000.checkpoints import load_module
        from yolo9000.modules.detector import DetectorModule

        settings = {"conf_thresh": DETECT_CONF, **settings}
        module = load_module(path, expect=DetectorModule, **settings)
        return cls(module, **_options(locals()))

    @classmethod
    def from_darknet(
        cls,
        cfg: str | os.PathLike[str],
        weights: str | os.PathLike[str] | None = None,
        names: str | os.PathLike[str] | None = None,
        *,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
        channels_last: bool | None = None,
        fold_bn: bool = True,
        fuse: bool = True,
        compile: bool | str | Mapping[str, Any] = False,
        read_threads: int | None = None,
        read_ahead: bool | None = None,
        decode_on: DecodeOn = "auto",
        keep_freed_memory: bool | None = None,
        warp: bool = True,
        strict: bool = False,
        **settings: Any,
    ) -> Detector:
        """A darknet detector cfg (``yolov2-voc.cfg``, ``yolo9000.cfg``, ...) and its ``.weights``, converted in
        memory (:func:`~yolo9000.checkpoints.darknet_to_checkpoint`; no file written).

        Args:
            cfg: the darknet cfg (with a ``[region]`` layer).
            weights: darknet ``.weights``; None = random weights (tests, timing).
            names: class names, one a line (default: 9k.names for a 9418-node WordTree, else "0", "1", ...).
            strict: refuse a weights file with more floats than the cfg's layers take (default: the rest is ignored
                with a warning, as darknet does).
            device, dtype, channels_last, fold_bn, fuse, compile, read_threads, read_ahead, decode_on,
                keep_freed_memory, warp, **settings: as :meth:`from_checkpoint`.
        """
        from yolo9000.checkpoints import darknet_to_checkpoint, module_from_checkpoint
        from yolo9000.modules.detector import DetectorModule

        ckpt = darknet_to_checkpoint(cfg, weights, names, strict=strict)
        if ckpt.get("yolo9000_model_config") is None:
            raise TypeError(f"{cfg}: a classifier cfg (no [region] layer), not a detector")
        module = module_from_checkpoint(ckpt, cfg, DetectorModule, **{"conf_thresh": DETECT_CONF, **settings})
        return cls(module, **_options(locals()))

    # ---------------------------------------------------------------- properties
    @property
    def class_names(self) -> list[str]:
        """Names indexed by label (the 9418 WordTree names for a 9k model)."""
        return list(self.module.class_names)

    @property
    def size(self) -> int:
        """Default network input side: the size the checkpoint was evaluated at (``eval_size``)."""
        return int(self.module.hparams.get("eval_size") or 416)

    @property
    def input_hw(self) -> tuple[int, int]:
        """Default network input (height, width) of :meth:`predict`: a converted darknet cfg's rectangular ``[net]``
        (``predict_hw``), else :attr:`size` square (the module's :attr:`~DetectorModule.input_hw`)."""
        return self.module.input_hw

    @property
    def warp(self) -> bool:
        """Whether the resize to the network input is one ``cv2.warpAffine`` (the constructor's ``warp``; fixed)."""
        return self._warp

    @property
    def letterbox(self) -> bool:
        """Default resize of :meth:`predict`: the evaluation's of the checkpoint's training run
        (``data.augment.letterbox``: aspect ratio kept, grey padding), else stretched (darknet's weights, checkpoints
        from before it was recorded)."""
        return bool(self.module.hparams.get("letterbox", False))

    @property
    def conf(self) -> float:
        """Default confidence threshold of :meth:`predict`."""
        return float(self.module.hparams.conf_thresh)

    @property
    def nms(self) -> float:
        """Default NMS IoU threshold of :meth:`predict`."""
        return float(self.module.hparams.nms_thresh)

    def __repr__(self) -> str:
        return (
            f"Detector({len(self.class_names)} classes, size={size_text(self.input_hw)}, conf={self.conf}, "
            f"nms={self.nms}, "
            f"device={self.device}, dtype={dtype_name(self.dtype)}, "
            f"channels_last={self.channels_last}, fold_bn={self.fold_bn}"
            + (f", fused_layers={self.fused_layers}" if self.fused_layers else "")
            + (f", compile={self.compile_options}" if self.compile_options is not None else "")
            + ")"
        )

    # ---------------------------------------------------------------- inference
    def predict(
        self,
        images: ImageInput | Sequence[ImageInput],
        *,
        size: int | tuple[int, int] | None = None,
        conf: float | None = None,
        nms: float | None = None,
        batch_size: int = 16,
        letterbox: bool | None = None,
        max_det: int | None = None,
        skip_unreadable: bool = False,
        num_workers: int = 0,
    ) -> list[Detections]:
        """Detect objects in images of any sizes.

        Images are read lazily and run ``batch_size`` at a time, each resized to the network input by the eval
        transform (stretched, or ``letterbox``-ed with grey padding as darknet's HEAD); the boxes are mapped back
        to every image's own pixels. Floats are quantised to 8 bits first, so the same pixels give the same
        detections as a file, PIL image, array or tensor (a file is decoded upright: see :data:`ImageInput`).

        Args:
            images: one :data:`ImageInput` or a sequence of them (a folder: pass
                ``yolo9000.data.predict.list_images(folder)``).
            size: network input side, or (height, width), multiples of 32 (default :attr:`input_hw`: the
                checkpoint's evaluation size, a converted darknet cfg's [net] height x width).
            conf: score threshold of this call (default :attr:`conf`).
            nms: NMS IoU threshold of this call (default :attr:`nms`).
            batch_size: images per forward pass.
            letterbox: keep the aspect ratio (grey padding) instead of stretching (default :attr:`letterbox`: as the
                checkpoint's run evaluated).
            max_det: detections kept per image (default: the checkpoint's; converted darknet weights: no cap).
            skip_unreadable: an unreadable file gives an empty result with ``error`` set instead of raising.
            num_workers: DataLoader processes reading and resizing the images (0 = this process).
        Returns:
            one :class:`Detections` per input, in input order.
        Raises:
            UnreadableImageError: naming the file, unless ``skip_unreadable``.
            TypeError / ValueError: an input that is not an image (naming its index), a bad ``size``, ``conf`` or
                ``nms`` outside [0, 1], a negative ``max_det``, ``batch_size`` below 1; an argument of another type
                (``conf="0.3"``, ``max_det=2.5``, ``letterbox="no"``: TypeError).
        """
        items = _as_items(images)
        hw = self.input_hw if size is None else check_input_size(size)
        check_decode_settings(conf=conf, nms=nms, max_det=max_det)
        _check_whole("batch_size", batch_size, 1)
        _check_whole("num_workers", num_workers, 0, " (0: this process reads)")
        letterbox = self.letterbox if letterbox is None else letterbox
        check_flags("predict", letterbox=letterbox, skip_unreadable=skip_unreadable)
        dataset = _IndexedImages(items, hw, transform=self._transforms[bool(letterbox)])
        bs = int(batch_size)
        if int(num_workers) > 0:
            pin = self.device.type == "cuda"
            loader = DataLoader(
                dataset, batch_size=bs, num_workers=int(num_workers), collate_fn=_collate, pin_memory=pin
            )
        else:  # this process: no loader machinery per call (it costs about a millisecond at batch 1)
            loader = self._batches(dataset, [range(j, min(j + bs, len(items))) for j in range(0, len(items), bs)])
        results: list[Detections | None] = [None] * len(items)
        for batch in loader:
            for i, f in zip(batch["failed_index"], batch["failed"], strict=True):
                if not skip_unreadable:
                    raise UnreadableImageError(f["file"], f["reason"])
                results[i] = Detections.empty(i, f["file"], f["reason"])
            if not batch["ok_index"]:
                continue
            preds = self.detect_batch(batch["images"], batch["transforms"], batch["orig_sizes"], conf, nms, max_det)
            preds = _to_host(preds)  # ordinary host tensors: the callers may edit them in place
            for i, path, hw, p in zip(
                batch["ok_index"], batch["image_paths"], batch["orig_sizes"].tolist(), preds, strict=True
            ):
                results[i] = self._detections(p, i, None if isinstance(items[i], np.ndarray) else path, hw)
        assert all(r is not None for r in results)
        return results  # type: ignore[return-value]

    def _detections(self, p: dict[str, torch.Tensor], index: int, path: str | None, hw: Sequence[int]) -> Detections:
        """One image's :class:`Detections` from its decoded ``boxes`` / ``scores`` / ``labels`` (any device)."""
        labels = p["labels"].cpu()
        return Detections(
            boxes=p["boxes"].float().cpu(),
            scores=p["scores"].float().cpu(),
            labels=labels,
            names=[self.module.class_names[c] for c in labels.tolist()],
            index=index,
            path=path,
            image_size=(int(hw[0]), int(hw[1])),
        )

    def predict_video(
        self,
        video: str | os.PathLike[str] | int | VideoFrames,
        *,
        size: int | tuple[int, int] | None = None,
        conf: float | None = None,
        nms: float | None = None,
        batch_size: int = 8,
        letterbox: bool | None = None,
        max_det: int | None = None,
        average: int = 1,
    ) -> Iterator[tuple[np.ndarray, Detections]]:
        """Detect objects in every frame of a video file, camera or stream, in order (darknet's ``detector demo``).

        Frames run ``batch_size`` at a time through the same resize, forward, decode and NMS as :meth:`predict`'s.
        A live source (a camera, a stream without a frame count) runs on the newest frame each time, one at a time,
        until it ends or the caller stops iterating (see :class:`~yolo9000.data.video.VideoFrames`).

        Args:
            video: a video file (:data:`~yolo9000.data.video.VIDEO_SUFFIXES`), a camera index (``0``), a stream URL
                (``rtsp://...``, ``http://...``: :data:`~yolo9000.data.video.STREAM_SCHEMES`), or their
                :class:`~yolo9000.data.video.VideoFrames` (whose ``info`` gives the frame rate and size; its own
                ``batch_size``, ``latest`` and ``max_frames`` then apply).
            size, conf, nms, letterbox, max_det: as :meth:`predict`.
            batch_size: frames per forward pass (for a path or URL of a file; a live source's is 1).
            average: frames whose network outputs are averaged for each frame's detections, darknet's ``detector
                demo`` (3 there): the activated outputs (:func:`yolo9000.postprocess.average_outputs`) of the frame,
                the ``(average - 1) // 2`` before it and the ``average // 2`` after it (those that exist: fewer at
                the ends), so a frame's detections come once the frames after it are read; 1: each frame on its own.
        Yields:
            (frame, detections) per frame: the uint8 (H, W, 3) RGB frame and its :class:`Detections` (``index``:
            the frame's index from 0 in the source, gaps where a live source's frames were dropped; ``path``: the
            video file, URL or ``camera <index>``; boxes in the frame's pixels).
        Raises:
            VideoError: a source that cannot be opened or gives no frame, naming it (before any frame).
        """
        if isinstance(average, bool) or not isinstance(average, int) or average < 1:
            raise ValueError(f"average must be an integer >= 1 (frames whose outputs are averaged), got {average!r}")
        _check_whole("batch_size", batch_size, 1)
        letterbox = self.letterbox if letterbox is None else letterbox
        check_flags("predict_video", letterbox=letterbox)
        frames = video if isinstance(video, VideoFrames) else VideoFrames(video, batch_size)
        with frames:
            if average > 1:
                yield from self._averaged(frames, average, size, conf, nms, letterbox, max_det)
                return
            for first, batch in frames:
                settings = {"size": size, "conf": conf, "nms": nms, "letterbox": letterbox, "max_det": max_det}
                dets = self.predict(batch, batch_size=len(batch), **settings)
                for k, (frame, d) in enumerate(zip(batch, dets, strict=True)):
                    d.index, d.path = first + k, str(frames.path)
                    yield frame, d

    def _averaged(
        self,
        frames: VideoFrames,
        average: int,
        size: int | tuple[int, int] | None,
        conf: float | None,
        nms: float | None,
        letterbox: bool,
        max_det: int | None,
    ) -> Iterator[tuple[np.ndarray, Detections]]:
        """:meth:`predict_video` with ``average`` > 1: every frame's raw output kept while it is in a window."""
        hw = self.input_hw if size is None else check_input_size(size)
        check_decode_settings(conf=conf, nms=nms, max_det=max_det)
        after = average // 2
        before = average - 1 - after
        entries: list[dict[str, Any]] = []  # the frames still to give and the ``before`` given ones before them
        given = 0  # position in ``entries`` of the next frame to give

        def detect(start: int, stop: int) -> Iterator[tuple[np.ndarray, Detections]]:
            """The frames at positions ``start`` .. ``stop`` - 1, their averaged outputs decoded as one batch."""
            ready = entries[start:stop]
            windows = [entries[max(0, t - before) : t + after + 1] for t in range(start, stop)]
            raw = torch.cat([self.module.average_outputs(torch.stack([e["raw"] for e in w])) for w in windows])
            dev = raw.device
            transforms = torch.stack([e["transform"] for e in ready]).to(dev)
            orig = torch.stack([e["orig"] for e in ready]).to(dev)
            with torch.no_grad():
                preds = self.module.predict_raw(raw, hw, transforms, orig, conf, nms, max_det)
            if preds and preds[0]["scores"].device.type != "cpu":
                preds = _to_host(preds)
            for e, p in zip(ready, preds, strict=True):
                yield e["frame"], self._detections(p, e["index"], str(frames.path), e["orig"].tolist())

        for first, batch in frames:
            dataset = _IndexedImages(batch, hw, transform=self._transforms[bool(letterbox)])
            read = self._read(dataset, range(len(batch)))
            raws = self._forward(read["images"])
            for k, frame in enumerate(batch):
                entries.append(
                    {
                        "index": first + k,
                        "frame": frame,
                        "raw": raws[k],
                        "transform": read["transforms"][k],
                        "orig": read["orig_sizes"][k],
                    }
                )
            if given + after < len(entries):  # the frames whose windows are complete
                stop = len(entries) - after
                yield from detect(given, stop)
                given = stop
            drop = max(0, given - before)
            entries, given = entries[drop:], given - drop
        if given < len(entries):  # the last frames: fewer after them
            yield from detect(given, len(entries))

    def _batches(self, dataset: _IndexedImages, parts: list[range]) -> Iterator[dict[str, Any]]:
        """The collated batches of ``parts`` in order (:meth:`_read`); with :attr:`read_ahead` the next one is read
        in a background thread while the caller detects the current one."""
        if not self.read_ahead or len(parts) < 2:
            yield from (self._read(dataset, part) for part in parts)
            return
        with ThreadPoolExecutor(1, thread_name_prefix="yolo9000-ahead") as ahead:
            pending = ahead.submit(self._read, dataset, parts[0])
            for k in range(len(parts)):
                batch = pending.result()
                if k + 1 < len(parts):
                    pending = ahead.submit(self._read, dataset, parts[k + 1])
                yield batch

    def _read(self, dataset: _IndexedImages, indices: range) -> dict[str, Any]:
        """The collated batch of ``dataset``'s samples ``indices``, read by :attr:`read_threads` threads, each
        resizing straight into its images' slots of one uint8 (B, h, w, 3) buffer (no per-image arrays to stack;
        pinned for a GPU: its copy to the device is asynchronous)."""
        self._check_process()  # predict_video's reads: a forked child's own pool
        h, w = dataset.size
        pin = self.device.type == "cuda"  # torch's pinned-memory cache makes the same sizes cheap to allocate again
        buffer = torch.empty(len(indices), h, w, 3, dtype=torch.uint8, pin_memory=pin)  # NHWC
        slots = buffer.numpy()

        def read(part: range) -> list[dict[str, Any]]:  # one task per thread: a future per image costs more
            return [dataset.read(indices[j], out=slots[j]) for j in part]

        files = any(not isinstance(dataset.images[j], np.ndarray) for j in indices)  # to decode: threads pay
        threads = min(len(indices), self.read_threads or (torch.get_num_threads() if files else 1))
        if threads <= 1:
            samples = read(range(len(indices)))
        else:
            with self._pool_lock:  # calls from several threads share one pool; a call using a smaller one keeps it
                if self._pool is None or self._pool_size < threads:
                    self._pool = ThreadPoolExecutor(threads, thread_name_prefix="yolo9000-read")
                    self._pool_size = threads
                pool = self._pool
            parts = list(pool.map(read, [range(t, len(indices), threads) for t in range(threads)]))
            samples = [parts[j % threads][j // threads] for j in range(len(indices))]  # input order
        ok = [j for j, s in enumerate(samples) if "error" not in s]
        images = buffer.permute(0, 3, 1, 2)  # (B, 3, S, S) with NHWC strides
        return _collate(samples, images if len(ok) == len(samples) else images[ok])

    @torch.inference_mode()  # the decode's small operations without autograd's bookkeeping (~0.1 ms at batch 1, CPU)
    def detect_batch(
        self,
        images: torch.Tensor,
        transforms: torch.Tensor,
        orig_sizes: torch.Tensor,
        conf: float | None = None,
        nms: float | None = None,
        max_det: int | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """The detections of a batch already resized by the eval transform (what :meth:`predict` runs after reading,
        and what the speed / accuracy trade-off times): copy to the device, forward pass, decode, NMS.

        Args:
            images: uint8 (B, 3, h, w) resized images (any memory layout; on the host).
            transforms: (B, 4) their eval transforms ``(scale_x, scale_y, pad_x, pad_y)``.
            orig_sizes: (B, 2) original (H, W) of each.
            conf, nms, max_det: this call's thresholds and cap (None: the module's).
        Returns:
            per image ``boxes`` (N, 4) xyxy original pixels, ``scores`` (N,), ``labels`` (N,), on
            :meth:`decode_device`: inference tensors (``torch.inference_mode``), to read; edited in place only
            inside that mode (:meth:`predict` returns ordinary copies).
        """
        raw = self._forward(images)
        dev = raw.device
        return self.module.predict_raw(
            raw, images.shape[-2:], transforms.to(dev), orig_sizes.to(dev), conf, nms, max_det
        )

    @torch.inference_mode()  # one grad mode wherever it is called from: a compiled network's guards see one
    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (B, 3, h, w) resized images -> the network's float32 (B, A * (5 + C), h / 32, w / 32) raw output,
        contiguous, on the device the decode runs on (:meth:`decode_device`); an inference tensor."""
        self._check_process()  # detect_batch, predict_video: a forked child's torch threads first
        # 0-255 floats for a network whose input conv has the 1 / 255 folded in (fold_bn), else [0, 1]
        pixels = getattr(self.network, "folded_input_scale", None) is not None
        x = float_images(images.to(self.device, non_blocking=True), self.channels_last, pixels=pixels)
        fp32 = self.dtype == torch.float32  # no autocast context at all (entering one costs ~0.1 ms a call on a CPU)
        with contextlib.nullcontext() if fp32 else torch.autocast(self.device.type, dtype=self.dtype):
            raw = self.network_for(x.shape[0])(x)
        out = raw.float().contiguous().to(self.decode_device(x.shape[0]))
        # CUDA graphs' memory: copied unless the conversion or the move to the host made a copy already
        shared = out.device == raw.device and out.data_ptr() == raw.data_ptr()
        return out.clone() if self._copy_outputs and shared else out

    @property
    def network(self) -> torch.nn.Module:
        """The network :meth:`predict` runs (a batch of one; :meth:`network_for` gives a batch's): the folded
        inference copy, the module's own network, or its compiled form."""
        return self._network

    @network.setter
    def network(self, net: torch.nn.Module) -> None:
        """Replace the network run (a stub, an own copy): the fused sibling made from the one replaced is dropped,
        so every batch runs ``net``."""
        self._network = net
        self._batch_network: torch.nn.Module | None = None

    @property
    def fused_layers(self) -> int:
        """Layers in their fused CPU forms in the network batches of two and more run (``fuse``); 0: none."""
        return 0 if self._batch_network is None else fused_layer_count(self._batch_network)

    def network_for(self, batch_size: int) -> torch.nn.Module:
        """The network a batch of ``batch_size`` images runs: :attr:`network`, or for two images and more its
        fused sibling where there is one (``fuse``); the same outputs up to float rounding."""
        return self._batch_network if self._batch_network is not None and batch_size > 1 else self.network

    def decode_device(self, num_images: int) -> torch.device:
        """Where decode + NMS of a batch of ``num_images`` run (``decode_on``)."""
        return decode_device(self.device, num_images, self.decode_on)


# ---------------------------------------------------------------- inputs
class _IndexedImages(ImageFilesDataset):
    """:class:`ImageFilesDataset` whose samples also carry their ``index`` (results go back in input order)."""

    def read(self, index: int, out: np.ndarray | None = None) -> dict[str, Any]:
        return {**super().read(index, out), "index": index}


def _collate(samples: Sequence[dict[str, Any]], images: torch.Tensor | None = None) -> dict[str, Any]:
    """:class:`PredictCollate` plus ``ok_index`` / ``failed_index``: the input positions of both lists."""
    out = PredictCollate()(samples, images)
    out["ok_index"] = [s["index"] for s in samples if "error" not in s]
    out["failed_index"] = [s["index"] for s in samples if "error" in s]
    return out


def _to_host(preds: list[dict[str, torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    """Per-image ``boxes`` / ``scores`` / ``labels`` on the host, ordinary tensors (called outside inference mode:
    views of one new tensor per field for the whole batch; a copy per image and field waits for a GPU each time:
    192 of them at batch 64)."""
    counts = [len(p["scores"]) for p in preds]
    flat = {k: torch.cat([p[k] for p in preds]).cpu().split(counts) for k in ("boxes", "scores", "labels")}
    return [{k: v[j] for k, v in flat.items()} for j in range(len(preds))]


_X86 = frozenset({"x86_64", "amd64", "i686", "x86"})  # platform.machine() of the CPUs the fused layers were timed on
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")  # scheme://...: http(s), rtsp, s3, file, ...

_ENCODED_HINT = (
    "pass a file path as str or os.PathLike, or decoded pixels: for encoded image data (a JPEG's bytes, an upload "
    "stream) PIL.ImageOps.exif_transpose(PIL.Image.open(io.BytesIO(data))) or PIL.Image.open(stream)"
)


def _is_file_object(x: Any) -> bool:
    """An open file or in-memory stream (``io.BytesIO``, ``open(path, "rb")``, an upload's stream): no image input."""
    return isinstance(x, io.IOBase) or (callable(getattr(x, "read", None)) and not isinstance(x, Image.Image))


def _as_items(images: Any) -> list[str | np.ndarray]:
    """The inputs as file paths (as given; read later, in the loader) or uint8 (H, W, 3) RGB arrays."""
    if isinstance(images, bytes | bytearray | memoryview):
        raise TypeError(f"images: bytes given; {_ENCODED_HINT}")
    if _is_file_object(images):  # iterable, line by line: its "lines" of bytes were taken for images
        raise TypeError(f"images: a file object ({type(images).__name__}) given; {_ENCODED_HINT}")
    if isinstance(images, str | os.PathLike | Image.Image):
        images = [images]
    elif isinstance(images, np.ndarray | torch.Tensor):
        images = list(images) if images.ndim == 4 else [images]
    elif isinstance(images, Iterable) and not isinstance(images, Sequence | dict):
        images = list(images)  # a generator, an iterator, a set of paths
    elif not isinstance(images, Sequence):
        raise TypeError(f"images: an image or a sequence of images expected, got {type(images).__name__}")
    out: list[str | np.ndarray] = []
    for i, x in enumerate(images):
        if isinstance(x, str | os.PathLike):
            path = os.fspath(x)  # as given: results and errors name the caller's string
            if not path:
                raise ValueError(f"image {i}: an empty path")
            if isinstance(path, str) and _URL.match(path):  # read as a local file it was a "missing image file"
                stream = "; a video stream goes to Detector.predict_video" if stream_source(path) is not None else ""
                raise ValueError(
                    f"image {i}: {source_name(path)} is a URL: predict reads local image files (fetch the image and "
                    f"pass its decoded pixels or a saved file){stream}"
                )
            if is_video(path):  # decoded as an image it was "corrupt or unreadable"
                raise ValueError(f"image {i}: {path} is a video: detect its frames with Detector.predict_video")
            out.append(path)
        elif isinstance(x, Image.Image):
            out.append(_pil_rgb(x, i))
        elif isinstance(x, np.ndarray):
            out.append(_hwc_uint8(x, i, channels_last=True))
        elif isinstance(x, torch.Tensor):
            t = x.detach().cpu()
            out.append(_hwc_uint8((t.float() if t.is_floating_point() else t).numpy(), i, channels_last=False))
        else:
            encoded = isinstance(x, bytes | bytearray | memoryview) or _is_file_object(x)
            hint = f"; {_ENCODED_HINT}" if encoded else ""
            raise TypeError(
                f"image {i}: a path, PIL image, numpy array or torch tensor expected, got {type(x).__name__}{hint}"
            )
    return out


def _pil_rgb(im: Image.Image, index: int) -> np.ndarray:
    """:func:`~yolo9000.data.image_io.pil_rgb` (a PIL image as a file of its mode is read), errors naming the
    input. The pixels as they are (an EXIF orientation is not applied: a file path's is)."""
    if getattr(im, "tile", None) and getattr(im, "fp", None) is None:  # pixels still to read, from a closed file
        # (PIL itself fails on it with no message: an AssertionError, or an AttributeError in Pillow 10 and 11.0)
        raise ValueError(
            f"image {index}: a closed PIL image (used after its `with Image.open(...)` block ended, which closed the "
            "file before the pixels were read): call im.load() inside the block, or pass the path"
        )
    try:
        return pil_rgb(im)
    except ValueError as e:
        raise ValueError(f"image {index}: a PIL image of mode {im.mode}: {e}") from None
    except OSError as e:  # a lazily opened file whose pixels do not decode (truncated, corrupt)
        name = getattr(im, "filename", "") or "its file"
        raise ValueError(f"image {index}: a PIL image whose pixels could not be read from {name}: {e}") from None


def _hwc_uint8(a: np.ndarray, index: int, channels_last: bool) -> np.ndarray:
    """:func:`~yolo9000.data.image_io.rgb_uint8`, errors naming the input."""
    try:
        return rgb_uint8(a, channels_last)
    except (ValueError, TypeError) as e:
        raise type(e)(f"image {index}: {e}") from None


_DETECTOR_OPTIONS = (
    "device",
    "dtype",
    "channels_last",
    "fold_bn",
    "fuse",
    "compile",
    "read_threads",
    "read_ahead",
    "decode_on",
    "keep_freed_memory",
    "warp",
)


def _options(given: Mapping[str, Any]) -> dict[str, Any]:
    """The :class:`Detector` keywords the ``from_*`` constructors pass on, picked from their arguments."""
    return {key: given[key] for key in _DETECTOR_OPTIONS}


# ---------------------------------------------------------------- device and precision
def _check_whole(name: str, value: Any, least: int, note: str = "") -> None:
    """A whole-number argument (``batch_size``, ``num_workers``): TypeError for another type (a bool, ``"4"``,
    2.5), ValueError below ``least``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number >= {least}{note}, got {value!r}")
    if value < least:
        raise ValueError(f"{name} must be >= {least}{note}, got {value!r}")


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device("cuda" if device == "gpu" else device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r}: CUDA is not available here (use device='cpu' or 'auto')")
    return dev


def dtype_from_name(dtype: str | torch.dtype | None) -> torch.dtype:
    """The inference dtype a name (``float32``, ``bf16``, ``torch.bfloat16``, ...), a torch dtype or None (float32)
    stands for; ValueError naming the choices for anything else (whatever the device: :class:`Detector` then refuses
    float16 off CUDA)."""
    if dtype is None:
        return torch.float32
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")  # BF16, Float32 too
        if name not in _DTYPES:
            raise ValueError(f"dtype={dtype!r}: one of {', '.join(_DTYPES)}")
        dtype = _DTYPES[name]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"dtype={dtype}: float32, bfloat16 or float16")
    return dtype


def _resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    dtype = dtype_from_name(dtype)
    if dtype == torch.float16 and device.type != "cuda":
        raise ValueError(f"dtype=float16 autocast needs CUDA (device is {device}); use bfloat16 or float32")
    return dtype
