"""No committed file names where this checkout lies (results, docs and configs use paths
relative to the checkout; reports and tuning records are written that way) or a tracker's
issue number."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from conftest import REPO


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and a git checkout")
def test_no_tracked_file_names_the_checkouts_absolute_path():
    out = subprocess.run(["git", "grep", "-l", "-F", f"{REPO}/"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr  # 1: no match
    assert out.stdout.split() == []


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(),
                    reason="needs git and a git checkout")
def test_no_tracked_file_names_a_tracker_issue_number():
    """Say what is meant ("our variant", "before the batched meta step"), not a tracker's
    number, which means nothing to a reader of the project."""
    pattern = r"\b[Ii]ssues? #?[0-9]+"
    out = subprocess.run(["git", "grep", "-n", "-E", pattern], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode in (0, 1), out.stderr
    assert out.stdout.splitlines() == []
