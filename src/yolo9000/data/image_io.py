"""Image decoding (with a note of every conversion made) and header-only size reading."""

from __future__ import annotations

import base64
import binascii
import functools
import io
import json
import warnings
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import get_worker_info
from torchvision.io import ImageReadMode, decode_image

from .records import DetectionRecord, Issue

# what PIL raises for a file it cannot read; DecompressionBombError (an image over twice Image.MAX_IMAGE_PIXELS,
# ~179 M pixels by default) is no OSError: it would escape as a crash instead of an unreadable image
_PIL_ERRORS = (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError)
_TOO_LARGE = "PIL.Image.MAX_IMAGE_PIXELS = None (or a larger limit) reads it"

__all__ = [
    "CONVERTED",
    "ISSUE_FLAGS",
    "LOAD_FAILED",
    "NOTED",
    "SIZE_MISMATCH",
    "ImageDecodeError",
    "conversion_issue",
    "image_conversions",
    "image_size",
    "images_under",
    "load_time_issues",
    "pil_rgb",
    "read_image",
    "read_image_notes",
    "read_record_image",
    "rgb_uint8",
]

# per-image flags the datasets set at load time (in shared memory, so DataLoader workers' findings reach the main
# process); :func:`load_time_issues` turns them back into named issues
LOAD_FAILED, CONVERTED, SIZE_MISMATCH = 1, 2, 4
ISSUE_FLAGS = LOAD_FAILED | CONVERTED | SIZE_MISMATCH
NOTED = 8  # not an issue: the image's conversions were checked (by its first load), later loads skip the check

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")  # image files the readers take


def images_under(folder: Path, suffixes: Collection[str] = IMAGE_SUFFIXES) -> list[Path]:
    """The image files (:data:`IMAGE_SUFFIXES`, any case; or the files of other ``suffixes``, lower case with the
    dot) under ``folder`` and its subfolders, sorted; hidden files and folders (a name starting with a dot below
    ``folder``: macOS's ``._*`` resource forks, Jupyter's ``.ipynb_checkpoints`` copies) left out."""
    folder = Path(folder)
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in suffixes
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
        and p.is_file()
    )


SIZE_MISMATCH_REASON = "annotation size differs from the image, boxes rescaled"

# PIL format names expected for a file extension (content that differs is decoded anyway, and noted)
_EXT_FORMATS = {
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".jfif": "JPEG",
    ".png": "PNG",
    ".bmp": "BMP",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".ppm": "PPM",
    ".pgm": "PPM",
    ".pbm": "PPM",
}
# PIL mode -> the conversion read_image makes to get RGB
_MODE_NOTES = {
    "1": "1-bit image converted to RGB",
    "L": "greyscale image converted to RGB",
    "LA": "greyscale+alpha image converted to RGB (alpha dropped)",
    "I": "32-bit greyscale image converted to 8-bit RGB (as 16-bit, or as 8-bit when no value exceeds 255)",
    "I;16": "16-bit greyscale image converted to 8-bit RGB",
    "I;16B": "16-bit greyscale image converted to 8-bit RGB",
    "I;16L": "16-bit greyscale image converted to 8-bit RGB",
    "F": "floating-point greyscale image converted to 8-bit RGB (from [0, 1])",
    "P": "palette image converted to RGB",
    "PA": "palette+alpha image converted to RGB (alpha dropped)",
    "RGBA": "RGBA image converted to RGB (alpha dropped)",
    "RGBa": "RGBA image converted to RGB (alpha dropped)",
    "CMYK": "CMYK image converted to RGB",
    "YCbCr": "YCbCr image converted to RGB",
    "LAB": "Lab image converted to RGB",
    "HSV": "HSV image converted to RGB",
}


class SharedArray:
    """A zero-filled tensor in shared memory (``tensor``: DataLoader workers, forked or spawned, write the main
    process's memory) and ``array``, a NumPy view of it made once per process to read and write elements (an element
    of the tensor costs ~5 us, of the view ~0.1 us). A pickled copy leaves the view out (it would be a private copy of
    the memory) and makes its own of the tensor it receives."""

    def __init__(self, shape: tuple[int, ...], dtype: torch.dtype) -> None:
        self.tensor = torch.zeros(shape, dtype=dtype).share_memory_()

    @property
    def array(self) -> np.ndarray:
        view = self.__dict__.get("_view")
        if view is None:
            view = self._view = self.tensor.numpy()
        return view

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_view", None)
        return state


class LoadCounters(SharedArray):
    """A dataset's named load counters, shared by its processes: a row per process (row 0 the main process, 1 + the
    worker id a DataLoader worker's, up to 128), summed by :meth:`totals`."""

    SLOTS = 129

    def __init__(self, keys: Collection[str]) -> None:
        super().__init__((self.SLOTS, len(keys)), torch.int64)
        self.keys = tuple(keys)

    def add(self, key: str, n: int = 1) -> None:
        """Count ``n`` more ``key`` in this process's row."""
        info = get_worker_info()
        row = 0 if info is None else 1 + info.id % (self.SLOTS - 1)
        self.array[row, self.keys.index(key)] += n

    def totals(self) -> dict[str, int]:
        """Each counter over all processes."""
        return dict(zip(self.keys, self.tensor.sum(0).tolist(), strict=True))


class LoadFlags(SharedArray):
    """Per-image load-time flags (``LOAD_FAILED``, ``CONVERTED``, ...) in shared memory, so DataLoader workers' findings
    reach the main process, which re-derives the issues (with file names) from them (``flags``: the uint8 tensor)."""

    def __init__(self, n: int) -> None:
        super().__init__((max(1, n),), torch.uint8)

    @property
    def flags(self) -> torch.Tensor:
        return self.tensor

    def set(self, index: int, bit: int) -> bool:
        """Set a flag of image ``index`` (visible to every process); True when it was not set before."""
        flags = self.array
        old = int(flags[index])
        if old & bit:
            return False
        flags[index] = old | bit
        return True


class ImageDecodeError(RuntimeError):
    """The image file cannot be read or decoded (missing, empty, corrupt, truncated, unknown format).

    Attributes:
        reason: short reason (``"corrupt or unreadable image"``); detail: what the decoder said.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason} ({detail})" if detail else reason)
        self.reason = reason
        self.detail = detail


_LFS_POINTER = b"version https://git-lfs.github.com/spec/"  # a file Git LFS left in place of an image
_TRANSPOSED = (5, 6, 7, 8)  # EXIF orientations that swap width and height


def _exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright; 0 when absent or unreadable)."""
    try:
        return int(im.getexif().get(0x0112, 0) or 0)
    except Exception:  # a broken EXIF block is not an unreadable image
        return 0


@functools.cache
def _opens_upright(fmt: str) -> bool:
    """Whether Pillow's plugin for ``fmt`` already reports the upright size of an image whose EXIF orientation
    transposes it (its TIFF plugin does, and rotates the pixels at load): tried once on a 2 x 1 image."""
    if fmt != "TIFF":
        return False
    buf, exif = io.BytesIO(), Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (2, 1)).save(buf, format="TIFF", exif=exif)
    with Image.open(buf) as im:
        return im.size == (1, 2)


EMBEDDED_SUFFIX = ".json"  # an image "file" that is a LabelMe JSON: the image its imageData embeds (base64)


def embedded_image(data: bytes) -> bytes:
    """The image file's bytes a LabelMe JSON embeds (its ``imageData``, base64). Raises ImageDecodeError when the
    JSON does not parse or embeds no image."""
    try:
        text = json.loads(data).get("imageData")
    except (ValueError, AttributeError) as e:
        raise ImageDecodeError("unreadable JSON holding the image", str(e)) from e
    if not isinstance(text, str) or not text:
        raise ImageDecodeError("no image embedded in the JSON", "its imageData is empty")
    try:
        return base64.b64decode(text, validate=False)
    except (ValueError, binascii.Error) as e:
        raise ImageDecodeError("corrupt image embedded in the JSON", f"imageData: {e}") from e


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the image header, without decoding the pixels: the size the image is decoded at
    (upright, its EXIF orientation applied). A LabelMe JSON: the image its ``imageData`` embeds."""
    if Path(path).suffix.lower() == EMBEDDED_SUFFIX:
        try:
            path = io.BytesIO(embedded_image(Path(path).read_bytes()))  # type: ignore[assignment]
        except OSError as e:
            raise ImageDecodeError("unreadable image header", _pil_detail(e)) from e
    try:
        with Image.open(path) as im:
            w, h = im.size
            # decoded upright (see read_image_notes): w and h swap, unless the plugin has swapped them already
            if _exif_orientation(im) in _TRANSPOSED and not _opens_upright(str(im.format)):
                w, h = h, w
    except _PIL_ERRORS as e:  # FileNotFoundError is an OSError
        raise ImageDecodeError("unreadable image header", _pil_detail(e)) from e
    if w <= 0 or h <= 0:
        raise ImageDecodeError("invalid image size in the header", f"{w}x{h}")
    return int(w), int(h)


def image_conversions(path: str | Path, data: bytes | None = None) -> list[tuple[str, str]]:
    """What :func:`read_image` changes to get 8-bit RGB from this file, as ``(reason, detail)`` pairs: content
    in another format than the extension says (``"PNG data in a .jpg file"``), and grey / grey+alpha / palette /
    RGBA / CMYK / 16-bit images converted. Reads the header only (of ``data`` when given); [] when unreadable."""
    path = Path(path)
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as im:
            fmt, mode = str(im.format or ""), str(im.mode)
            orientation = _exif_orientation(im)
    except _PIL_ERRORS:
        return []
    notes = []
    if orientation not in (0, 1):
        notes.append((EXIF_APPLIED, f"orientation {orientation}"))
    expected = _EXT_FORMATS.get(path.suffix.lower())
    if fmt and fmt != expected and path.suffix.lower() != EMBEDDED_SUFFIX:  # a JSON's embedded image has no extension
        notes.append((f"{fmt} data in a {path.suffix or 'extension-less'} file, decoded as {fmt}", ""))
    if mode in _MODE_NOTES:
        notes.append((_MODE_NOTES[mode], ""))  # the reason names the mode
    return notes


ANIMATED_FIRST_FRAME = "animated image: its first frame read"
EXIF_APPLIED = "EXIF orientation applied (image rotated / flipped upright, as viewers and labelling tools show it)"
EXIF_NOT_APPLIED = "EXIF orientation not applied: the annotation's size is the stored image's (labelled unrotated)"
# conversions every reader makes (darknet's, ultralytics'): notes, not problems; content in another format than its
# extension says is a problem of the file, repaired ("fixed")
CONVERSION_NOTES = frozenset({*_MODE_NOTES.values(), EXIF_APPLIED})


def conversion_issue(path: str | Path, reason: str, detail: str = "") -> Issue:
    """The issue of one conversion a load made (:func:`read_image_notes`): a ``note`` for those in
    :data:`CONVERSION_NOTES`, else ``fixed`` (a file repaired: another format than its extension, a rotation
    undone)."""
    return Issue(str(path), reason, "note" if reason in CONVERSION_NOTES else "fixed", detail)


def _decode_torchvision(data: bytes, exif: bool = True) -> torch.Tensor:
    with warnings.catch_warnings():
        # torchvision >= 0.29 deprecates its decoders in favour of torchcodec; they still work.
        warnings.filterwarnings("ignore", message=".*decoding and encoding capabilities of TorchVision.*")
        warnings.filterwarnings("ignore", message=".*non-writable.*")  # frombuffer over immutable bytes
        img = decode_image(
            torch.frombuffer(data, dtype=torch.uint8), mode=ImageReadMode.RGB, apply_exif_orientation=exif
        )
    if img.dtype == torch.uint16:  # 16-bit PNG
        img = (img.to(torch.int32) >> 8).to(torch.uint8)
    return img


def _webp_with_orientation(data: bytes) -> bool:
    """A WebP whose EXIF orientation is not 1: torchvision's WebP decoder ignores the tag, PIL's path applies it."""
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        return False
    try:
        with Image.open(io.BytesIO(data)) as im:
            return _exif_orientation(im) not in (0, 1)
    except _PIL_ERRORS:  # torchvision's decoder says what is wrong with it
        return False


def _pil_detail(e: Exception) -> str:
    """The detail of an :class:`ImageDecodeError` from PIL's exception (an image over PIL's pixel limit: how to
    lift it)."""
    if isinstance(e, UnidentifiedImageError):  # its message names the in-memory buffer (<_io.BytesIO at 0x...>)
        return "no image format PIL or torchvision knows (UnidentifiedImageError)"
    detail = f"{type(e).__name__}: {e}"
    return f"{detail}; {_TOO_LARGE}" if isinstance(e, Image.DecompressionBombError) else detail


def rgb_uint8(a: np.ndarray, channels_last: bool = True) -> np.ndarray:
    """An image array as contiguous uint8 (H, W, 3) RGB: grey is repeated, alpha dropped, floats in [0, 1] scaled
    by 255 and rounded, uint16 shifted to 8 bits (as 16-bit files are read).

    Args:
        a: (H, W), (H, W, C) with ``channels_last`` or (C, H, W) without, C in 1, 3, 4; uint8, uint16 or float.
    Raises:
        ValueError: another shape, an empty image, float pixels outside [0, 1] or not finite.
        TypeError: another dtype.
    """
    layout = "(H, W, 3)" if channels_last else "(3, H, W)"
    shape = a.shape
    if a.ndim == 2:
        a = a[..., None] if channels_last else a[None]
    if a.ndim != 3:
        raise ValueError(f"expected a {layout} image, got shape {tuple(shape)}")
    if a.shape[2 if channels_last else 0] not in (1, 3, 4):
        raise ValueError(f"expected a {layout} image (1, 3 or 4 channels), got shape {tuple(shape)}")
    if min(a.shape[:2] if channels_last else a.shape[1:]) == 0:
        raise ValueError(f"an empty image (no pixels): shape {tuple(shape)}")
    if not channels_last:
        a = a.transpose(1, 2, 0)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    a = a[..., :3]
    if a.dtype == np.uint8:
        return np.ascontiguousarray(a)
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ValueError("the float pixels hold nan or inf")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise ValueError(
                f"float images must lie in [0, 1], got values in [{lo:.3g}, {hi:.3g}] (pass uint8 for 0..255)"
            )
        return np.ascontiguousarray(np.rint(np.clip(a, 0, 1) * 255.0).astype(np.uint8))
    if a.dtype == np.uint16:
        return np.ascontiguousarray((a >> 8).astype(np.uint8))
    raise TypeError(f"uint8 (0..255), uint16 (16 bit) or float ([0, 1]) pixels expected, got {a.dtype}")


def pil_rgb(im: Image.Image) -> np.ndarray:
    """A PIL image's pixels as uint8 (H, W, 3) RGB (a writable array): 16-bit grey (modes ``I;16*``, and ``I``
    with values in 0..65535: PIL opens some 16-bit files so) shifted to 8 bits, except ``I`` whose values all lie
    in 0..255 (``convert("I")`` of an 8-bit image; PIL's own conversion reads them so), taken as they are; float
    grey (``F``) in [0, 1] scaled by 255 (:func:`rgb_uint8`); every other mode through PIL's RGB conversion
    (which would clip 16-bit and float grey to white and black).

    Raises:
        ValueError: ``I`` pixels outside 0..65535, ``F`` pixels outside [0, 1] (see :func:`rgb_uint8`).
    """
    if im.mode.startswith("I;16") or im.mode == "I":
        a = np.asarray(im)
        if a.size and (a.min() < 0 or a.max() > 65535):
            raise ValueError(f"mode {im.mode} pixels outside 0..65535 (16-bit grey expected)")
        eight_bit = im.mode == "I" and (not a.size or a.max() <= 255)  # 8-bit values widened: black if shifted
        return rgb_uint8(a.astype(np.uint8 if eight_bit else np.uint16))
    if im.mode == "F":
        return rgb_uint8(np.asarray(im))
    return np.array(im.convert("RGB"))  # a copy: PIL's buffer is read-only


def _decode_pil(source: Path | io.BytesIO, exif: bool = True) -> torch.Tensor:
    with Image.open(source) as im:
        im.load()  # raises OSError on truncated files (LOAD_TRUNCATED_IMAGES is False)
        im = ImageOps.exif_transpose(im) if exif else im
        try:
            arr = pil_rgb(im)
        except (ValueError, TypeError) as e:
            raise ImageDecodeError("unsupported pixel values", str(e)) from e
    return torch.from_numpy(arr).permute(2, 0, 1)


def read_image(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB (see :func:`read_image_notes`, which also says what was converted)."""
    return read_image_notes(path)[0]


def read_image_notes(
    path: str | Path, notes: bool = True, exif: bool = True
) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """Decode an image file to RGB, noting every conversion (:func:`image_conversions`; ``notes=False`` skips that
    header parse, about 1 ms of a 4 ms load, and returns no notes: for an image already checked).

    An EXIF orientation is applied (``exif=False``: the stored pixels), as image viewers, ultralytics and the
    labelling tools that export YOLO / COCO files show the image; darknet's stb_image ignores it, which only
    matters for photos carrying the tag (phone cameras), never for VOC or BCCD.

    JPEG / PNG / WebP / GIF are decoded by ``torchvision.io.decode_image`` (by content, so a PNG named
    ``.jpg`` works; grey, grey+alpha, RGBA and palette images are converted to RGB, 16-bit PNG to 8 bit; an
    animated GIF or WebP gives its first frame, as PIL and darknet's stb_image); other formats (BMP, TIFF, ...)
    by PIL.

    Returns:
        (uint8 (H, W, 3) RGB array (contiguous), [(reason, detail), ...] of the conversions made).

    Raises:
        ImageDecodeError: missing, empty, corrupt or truncated file, or unknown format.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except IsADirectoryError as e:
        raise ImageDecodeError(
            "a folder, not an image file", "its images: yolo9000.data.predict.list_images(folder)"
        ) from e
    except OSError as e:
        reason = "missing image file" if isinstance(e, FileNotFoundError) else "unreadable image file"
        raise ImageDecodeError(reason, f"{type(e).__name__}: {e.strerror or e}") from e
    if not data:
        raise ImageDecodeError("corrupt or unreadable image", "empty file")
    if data.startswith(_LFS_POINTER):
        raise ImageDecodeError(
            "a Git LFS pointer, not an image", "the repository was cloned without its LFS files: `git lfs pull`"
        )
    if path.suffix.lower() == EMBEDDED_SUFFIX:  # a LabelMe JSON whose image file is missing: the image it embeds
        data = embedded_image(data)
    by_pil = exif and _webp_with_orientation(data)  # PIL's path applies the tag (torchvision's WebP decoder not)
    if not by_pil:
        try:
            img = _decode_torchvision(data, exif)
        except (RuntimeError, OSError) as e:
            msg = str(e)
            if "Unsupported image file" not in msg:
                detail = msg.strip().splitlines()[-1].split(", ")[-1] if msg.strip() else type(e).__name__
                raise ImageDecodeError("corrupt or unreadable image", detail) from e
            by_pil = True
    if by_pil:
        try:
            img = _decode_pil(io.BytesIO(data), exif)  # the bytes read (an embedded image's too)
        except _PIL_ERRORS as e2:
            raise ImageDecodeError("corrupt or unreadable image", _pil_detail(e2)) from e2
    frames = 1
    if img.ndim == 4 and len(img):  # an animated GIF / WebP: (frames, 3, H, W); its first frame, as PIL and stb_image
        frames, img = len(img), img[0]
    if img.ndim != 3 or img.shape[0] != 3 or img.shape[1] == 0 or img.shape[2] == 0:
        raise ImageDecodeError("corrupt or unreadable image", f"decoded image has shape {tuple(img.shape)}")
    found = image_conversions(path, data) if notes else []
    if frames > 1 and notes:
        found.append((ANIMATED_FIRST_FRAME, f"{frames} frames"))
    if not exif:
        found = [n for n in found if n[0] != EXIF_APPLIED]
    return np.ascontiguousarray(img.permute(1, 2, 0).numpy()), found


def read_record_image(rec: DetectionRecord, notes: bool = True) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The image of a record, upright as its EXIF orientation says (:func:`read_image_notes`), unless the
    annotation's size is the stored image's with width and height swapped: then the boxes were drawn on the
    stored pixels (labelImg and other tools that ignore EXIF write VOC files so) and those pixels are returned,
    noted. YOLO labels carry no size: upright, as ultralytics reads them."""
    image, conv = read_image_notes(rec.image_path, notes=notes)
    h, w = image.shape[:2]
    if rec.width and rec.height and w != h and (w, h) == (rec.height, rec.width):
        raw, raw_conv = read_image_notes(rec.image_path, notes=notes, exif=False)
        if raw.shape[:2] == (rec.height, rec.width):  # the tag rotated it: the annotation fits the stored pixels
            return raw, [*raw_conv, (EXIF_NOT_APPLIED, f"{rec.width}x{rec.height}")] if notes else []
    return image, conv


def load_time_issues(
    path: str | Path, flags: int, annotated_size: tuple[int | None, int | None] | None = None
) -> list[Issue]:
    """The issues behind an image's load-time ``flags`` (:data:`LOAD_FAILED`, :data:`CONVERTED`,
    :data:`SIZE_MISMATCH`), re-derived from the file (header only, except for a failed load): the same file,
    reason and detail the loading process reported, so they can be merged into the main process's log."""
    path = Path(path)
    out = []
    if flags & LOAD_FAILED:
        try:
            read_image(path)
        except ImageDecodeError as e:
            out.append(Issue(str(path), e.reason, "skip_image", e.detail))
        else:
            out.append(Issue(str(path), "image failed to load", "skip_image", "readable again afterwards"))
    if flags & CONVERTED:
        found = image_conversions(path)
        if annotated_size is not None and all(annotated_size) and any(r == EXIF_APPLIED for r, _ in found):
            try:
                w, h = image_size(path)  # upright
            except ImageDecodeError:
                w = h = 0
            if w != h and (h, w) == tuple(annotated_size):  # read_record_image kept the stored pixels: say that
                aw, ah = annotated_size
                found = [*(c for c in found if c[0] != EXIF_APPLIED), (EXIF_NOT_APPLIED, f"{aw}x{ah}")]
        out += [conversion_issue(path, reason, detail) for reason, detail in found]
    if flags & SIZE_MISMATCH and annotated_size is not None and all(annotated_size):
        try:
            w, h = image_size(path)
        except ImageDecodeError:
            pass
        else:
            detail = f"{annotated_size[0]}x{annotated_size[1]} vs {w}x{h}"
            out.append(Issue(str(path), SIZE_MISMATCH_REASON, "fixed", detail))
    return out
