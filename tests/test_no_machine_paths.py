"""No committed file names where this checkout lies: results, docs and configs use paths
relative to the checkout (reports and tuning records are written that way)."""

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
