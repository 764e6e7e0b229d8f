"""``samt.atomic``: the one atomic-write helper (whole new file or the old one, no temporary
file left behind)."""

from __future__ import annotations

import os

import pytest

from samt.atomic import atomic_file, move_atomic, write_atomic


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


def test_unique_temporaries_let_two_writers_of_one_file_finish_whole(tmp_path):
    """``unique=True`` (a dataset prepared by parallel jobs): each writer has a temporary file
    of its own, so the file ends as one writer's whole content, never a mix."""
    path = tmp_path / "data.bin"
    with atomic_file(path, unique=True) as a, atomic_file(path, unique=True) as b:
        a.write(b"a" * 1000)
        b.write(b"b" * 10)
        assert len([p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]) == 2
    assert path.read_bytes() == b"a" * 1000  # the last to finish wins (a: the outer block)
    assert sorted(os.listdir(tmp_path)) == ["data.bin"]


def test_a_unique_temporary_has_a_plain_files_mode_and_goes_on_failure(tmp_path):
    with atomic_file(tmp_path / "a.bin", unique=True) as fh:
        fh.write(b"x")
    (tmp_path / "b.bin").write_bytes(b"x")
    assert (tmp_path / "a.bin").stat().st_mode == (tmp_path / "b.bin").stat().st_mode
    with pytest.raises(RuntimeError), atomic_file(tmp_path / "c.bin", unique=True) as fh:
        fh.write(b"half")
        raise RuntimeError("interrupted")
    assert sorted(os.listdir(tmp_path)) == ["a.bin", "b.bin"]


def test_move_atomic_puts_a_finished_file_in_place(tmp_path):
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "f").write_bytes(b"new")
    (tmp_path / "f").write_bytes(b"old")
    move_atomic(tmp_path / "work" / "f", tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == b"new" and not (tmp_path / "work" / "f").exists()
