"""``samt.atomic``: the one atomic-write helper (whole new file or the old one, no temporary
file left behind)."""

from __future__ import annotations

import os

import pytest

from samt.atomic import atomic_file, write_atomic


def test_a_streamed_write_replaces_the_file_whole(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with atomic_file(path) as fh:
        fh.write(b"new ")
        assert path.read_bytes() == b"old"  # not there until the block ends
        fh.write(b"content")
    assert path.read_bytes() == b"new content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.bin"]


def test_a_failure_while_writing_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_file(path) as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    assert path.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["data.bin"]


def test_text_is_written_as_utf8_with_a_plain_files_mode(tmp_path):
    write_atomic(tmp_path / "a.txt", "é\n")
    (tmp_path / "b.txt").write_text("x")
    assert (tmp_path / "a.txt").read_bytes() == "é\n".encode()
    assert (tmp_path / "a.txt").stat().st_mode == (tmp_path / "b.txt").stat().st_mode
