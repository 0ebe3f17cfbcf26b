"""Reading the text files datasets and darknet come with (label files, lists, ``.names``, cfgs) whatever tool wrote
them: UTF-8 with or without a byte-order mark (Windows editors write one), UTF-16 / UTF-32 (PowerShell's ``>`` and
``Out-File`` write UTF-16 with a mark; a file without one is recognised by its zero bytes), else Latin-1 (every byte
a character, as darknet's C reads them), logged with the file's name."""

from __future__ import annotations

import codecs
import logging
from pathlib import Path

log = logging.getLogger("yolo9000")

# longest first: UTF-32 LE's mark starts with UTF-16 LE's
_BOMS: tuple[tuple[bytes, str], ...] = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)


def _utf16_without_mark(data: bytes) -> str | None:
    """``utf-16-le`` / ``-be`` when ``data`` looks like UTF-16 of mostly ASCII-range text without a byte-order mark
    (zero bytes in the odd / even places of at least 3 in 4 of its first 64 code units, in the others at most 1 in
    4), else None."""
    head = data[:128]
    if len(head) < 2 or len(data) % 2:
        return None
    units = len(head) // 2
    zero_even, zero_odd = sum(b == 0 for b in head[0::2]), sum(b == 0 for b in head[1::2])
    if 4 * zero_odd >= 3 * units and 4 * zero_even <= units:
        return "utf-16-le"
    if 4 * zero_even >= 3 * units and 4 * zero_odd <= units:
        return "utf-16-be"
    return None


def decode_text(data: bytes, source: str) -> str:
    """The text of ``data``, a file's bytes (``source`` names it in messages): by its byte-order mark (UTF-8,
    UTF-16, UTF-32; the mark dropped), else UTF-8, else UTF-16 when its zero bytes say so (UTF-16 of ASCII text is
    valid UTF-8 with a zero byte after every character), else Latin-1. The guesses are logged as warnings naming
    the file.

    Raises:
        ValueError: bytes whose byte-order mark says UTF-16 / UTF-32 but that do not decode as such, naming
            ``source`` and the encoding.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return data.decode(encoding)
            except UnicodeDecodeError as e:
                raise ValueError(f"{source}: starts with a {encoding} byte-order mark but does not decode: {e}") from e
    error: UnicodeDecodeError | None = None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        text, error = None, e
    if text is None or "\x00" in text:
        guess = _utf16_without_mark(data)
        if guess is not None:
            try:
                utf16 = data.decode(guess)
            except UnicodeDecodeError:
                pass
            else:
                log.warning("%s: read as %s (no byte-order mark; its zero bytes say so)", source, guess.upper())
                return utf16
    if text is not None:
        return text
    assert error is not None
    log.warning("%s: not UTF-8 (byte 0x%02x at offset %d): read as Latin-1", source, data[error.start], error.start)
    return data.decode("latin-1")


def read_text(path: str | Path) -> str:
    """:func:`decode_text` of a file's bytes."""
    return decode_text(Path(path).read_bytes(), str(path))


def printable(text: str) -> str:
    """``text`` with the undecodable bytes of a file name (``os.listdir`` gives a name that is not UTF-8 as
    surrogate escapes, ``\\udcfc``) written as ``\\xfc``: text any UTF-8 file can hold (a strict write failed on
    them, after a whole training run)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:
            return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:  # a lone surrogate of another origin
            return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8, file names that are not UTF-8 escaped (:func:`printable`)."""
    Path(path).write_text(printable(text), encoding="utf-8")
