"""Text files as Windows tools write them (PowerShell's ``>``: UTF-16 with a byte-order mark; Notepad: UTF-8 with
one; old editors: Latin-1; a converter: UTF-16 without a mark): label files, class names and list files read as
their text, not as a crash ("'utf-8' codec can't decode byte 0xff") or names full of NUL characters."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from yolo9000.darknet.cfg import read_names
from yolo9000.data.records import IssueLog
from yolo9000.data.yolo_labels import read_label_rows
from yolo9000.text_io import decode_text

LABELS = "0 0.5 0.5 0.25 0.5\r\n1 0.125 0.25 0.1 0.2\r\n"
NAMES = "RBC\nWBC\nPlättchen\n"  # a non-ASCII name: Latin-1 and UTF-8 differ there


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32"])
def test_every_unicode_encoding_gives_the_text_back(encoding: str) -> None:
    assert decode_text(NAMES.encode(encoding), "n.names") == NAMES
    assert decode_text(LABELS.encode(encoding), "a.txt") == LABELS


def test_the_two_guesses_are_named_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    """Latin-1 (byte 0xe4 is no UTF-8) and UTF-16 without a mark (ASCII with a zero byte after each character, valid
    UTF-8 that would give names with NUL characters) are read as such, each with a warning naming the file."""
    with caplog.at_level(logging.WARNING, "yolo9000"):
        assert decode_text(NAMES.encode("latin-1"), "old.names") == NAMES
        assert decode_text(NAMES.encode("utf-16-le"), "ps.names") == NAMES
    assert "old.names: not UTF-8 (byte 0xe4 at offset 10): read as Windows-1252" in caplog.text
    assert "ps.names: read as UTF-16-LE" in caplog.text


def test_a_broken_file_behind_a_utf16_mark_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="x.txt: starts with a utf-16 byte-order mark but does not decode"):
        decode_text(b"\xff\xfe" + b"\x00\xd8", "x.txt")  # a lone high surrogate


@pytest.mark.parametrize("encoding", ["utf-16", "utf-8-sig", "latin-1"])
def test_label_files_and_names_in_windows_encodings(tmp_path: Path, encoding: str) -> None:
    """The same boxes and names as from the UTF-8 files, and no data problem recorded."""
    ref, other = tmp_path / "ref", tmp_path / encoding
    for folder, enc in ((ref, "utf-8"), (other, encoding)):
        folder.mkdir()
        (folder / "a.txt").write_bytes(LABELS.encode(enc))
        (folder / "obj.names").write_bytes(NAMES.encode(enc))
    issues = IssueLog("error")
    want = read_label_rows(ref / "a.txt", ref / "a.jpg", 2, issues)
    assert want == [[0.0, 0.5, 0.5, 0.25, 0.5], [1.0, 0.125, 0.25, 0.1, 0.2]]
    assert read_label_rows(other / "a.txt", other / "a.jpg", 2, issues) == want
    assert len(issues) == 0
    assert read_names(other / "obj.names") == read_names(ref / "obj.names") == ["RBC", "WBC", "Plättchen"]


def test_file_names_that_are_not_utf8_are_written_escaped(tmp_path: Path) -> None:
    """A class folder or image named in Latin-1 bytes (``z\\xfcrich``) reaches Python as a surrogate escape; the
    data-problem report and the per-class table of the run's end failed on it ("'utf-8' codec can't encode"), after
    the whole training. They are written with the byte escaped."""
    from yolo9000.data.records import write_issue_report
    from yolo9000.text_io import printable, write_text

    name = b"z\xfcrich".decode("utf-8", "surrogateescape")
    assert printable(name) == "z\\xfcrich" and printable("Plättchen") == "Plättchen"
    issues = IssueLog("skip")
    issues.report(tmp_path / name / "a.jpg", "unreadable image")
    write_issue_report(tmp_path / "data_issues.txt", issues)
    assert "z\\xfcrich/a.jpg" in (tmp_path / "data_issues.txt").read_text(encoding="utf-8")
    write_text(tmp_path / "t.md", f"| {name} | 0.5 |\n")
    assert (tmp_path / "t.md").read_text(encoding="utf-8") == "| z\\xfcrich | 0.5 |\n"


def test_the_guesses_at_their_edges(caplog: pytest.LogCaptureFixture) -> None:
    """UTF-16 without a mark of odd length (a newline appended by another tool) and UTF-32 without a mark were read
    as UTF-8 full of NUL characters; a Windows-1252 '…' (0x85) split a name in two with ``splitlines``; a UTF-8 file
    with one stray byte became Latin-1 mojibake throughout ('cafÃ©')."""
    from yolo9000.text_io import text_lines

    assert decode_text(NAMES.encode("utf-16-le") + b"\n", "a") == NAMES + "\n"
    assert decode_text(NAMES.encode("utf-32-le"), "b") == decode_text(NAMES.encode("utf-32-be"), "c") == NAMES
    assert text_lines(decode_text(b"caf\xe9\r\nwait\x85done\n", "d")) == ["café", "wait…done"]
    with caplog.at_level(logging.WARNING, "yolo9000"):
        assert decode_text("café\nthé\n".encode() + b"\xff\n", "e") == "café\nthé\n\ufffd\n"
    assert "e: UTF-8 with 1 undecodable byte (the first 0xff at offset 11), replaced by U+FFFD" in caplog.text
    assert text_lines("a\r\nb\n\nc") == ["a", "b", "", "c"] and text_lines("") == []
