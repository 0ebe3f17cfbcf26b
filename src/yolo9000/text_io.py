"""Reading the text files datasets and darknet come with (label files, lists, ``.names``, cfgs) whatever tool wrote
them: UTF-8 with or without a byte-order mark (Windows editors write one), UTF-16 / UTF-32 (PowerShell's ``>`` and
``Out-File`` write UTF-16 with a mark; a file without one is recognised by its zero bytes), a UTF-8 file with a few
stray bytes (those replaced), else Windows-1252 / Latin-1 (every byte a character, as darknet's C reads them); each
guess logged with the file's name. :func:`text_lines` splits as darknet does, at ``\n`` only."""

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


def _wide_without_mark(data: bytes) -> str | None:
    """``utf-32-le`` / ``-be`` / ``utf-16-le`` / ``-be`` when ``data`` looks like UTF-32 / UTF-16 of mostly
    ASCII-range text without a byte-order mark (in its first 128 bytes, the zero bytes in the places of the code
    units' high bytes: at least 3 in 4 of them, in the low bytes' places at most 1 in 4), else None."""
    head = data[:128]
    for width, name in ((4, "utf-32"), (2, "utf-16")):
        units = len(head) // width
        if units < 1:
            continue
        low_le = sum(head[k * width] == 0 for k in range(units))  # the first byte of each unit: LE's low byte
        low_be = sum(head[k * width + width - 1] == 0 for k in range(units))
        high_le = sum(all(b == 0 for b in head[k * width + 1 : (k + 1) * width]) for k in range(units))
        high_be = sum(all(b == 0 for b in head[k * width : (k + 1) * width - 1]) for k in range(units))
        if 4 * high_le >= 3 * units and 4 * low_le <= units:
            return f"{name}-le"
        if 4 * high_be >= 3 * units and 4 * low_be <= units:
            return f"{name}-be"
    return None


def _decode_wide(data: bytes, encoding: str) -> str | None:
    """``data`` as UTF-16 / UTF-32 without a mark; a trailing ASCII byte or two that do not fill a code unit (a
    newline appended by another tool) kept as themselves; None when it does not decode."""
    width = 4 if encoding.startswith("utf-32") else 2
    cut = len(data) - len(data) % width
    tail = data[cut:]
    if any(b >= 0x80 for b in tail):
        return None
    try:
        return data[:cut].decode(encoding) + tail.decode("ascii")
    except UnicodeDecodeError:
        return None


def decode_text(data: bytes, source: str) -> str:
    """The text of ``data``, a file's bytes (``source`` names it in messages): by its byte-order mark (UTF-8,
    UTF-16, UTF-32; the mark dropped), else UTF-8, else UTF-16 / UTF-32 when its zero bytes say so (UTF-16 of ASCII
    text is valid UTF-8 with a zero byte after every character), else UTF-8 with its few undecodable bytes replaced
    (U+FFFD) when most of its non-ASCII bytes are UTF-8, else Windows-1252 (Latin-1 for the bytes it leaves
    undefined). The guesses are logged as warnings naming the file.

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
        guess = _wide_without_mark(data)
        wide = _decode_wide(data, guess) if guess is not None else None
        if wide is not None:
            log.warning("%s: read as %s (no byte-order mark; its zero bytes say so)", source, guess.upper())  # type: ignore[union-attr]
            return wide
    if text is not None:
        return text
    assert error is not None
    replaced = data.decode("utf-8", errors="replace")
    bad = replaced.count("\ufffd")
    if sum(ord(c) > 127 for c in replaced) - bad > bad:  # mostly UTF-8: a stray byte or two, not another encoding
        log.warning(
            "%s: UTF-8 with %d undecodable byte%s (the first 0x%02x at offset %d), replaced by U+FFFD",
            source, bad, "" if bad == 1 else "s", data[error.start], error.start,
        )  # fmt: skip
        return replaced
    first = data[error.start]
    log.warning("%s: not UTF-8 (byte 0x%02x at offset %d): read as Windows-1252", source, first, error.start)
    return data.decode("cp1252", errors=_LATIN1)  # the 5 bytes Windows-1252 leaves undefined: Latin-1's


def _latin1_fallback(e: UnicodeError) -> tuple[str, int]:
    """A codec error handler: the bytes a codec cannot decode as their Latin-1 characters."""
    assert isinstance(e, UnicodeDecodeError)
    return e.object[e.start : e.end].decode("latin-1"), e.end


_LATIN1 = "yolo9000-latin1"
codecs.register_error(_LATIN1, _latin1_fallback)


def text_lines(text: str) -> list[str]:
    """``text`` split as darknet and the annotation tools split a file: at ``\n`` (a ``\r`` before it dropped), not
    at the other characters :meth:`str.splitlines` breaks on (``\x1c``-``\x1e``, ``\x85``, U+2028: they are part
    of a name); no empty last line after a final newline."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


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
