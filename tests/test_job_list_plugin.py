"""The job-list sweeper (``hydra/sweeper=job_list``) is found from any folder, whatever the
install: an editable install puts nothing in Hydra's ``hydra_plugins`` folders, so ``samt-run``
registers the sweeper by class (``samt.cli.register_plugins``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent


def _env() -> dict[str, str]:
    """The environment of a user's shell: no PYTHONPATH pointing into the checkout."""
    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}


def test_the_sweeper_plugin_is_found_outside_the_checkout(tmp_path: Path):
    """From a folder outside the checkout, Hydra instantiates the sweeper as ``samt-run -m
    hydra/sweeper=job_list`` asks it to (the step that failed with 'Unknown plugin class')."""
    code = (
        "from hydra.core.plugins import Plugins\n"
        "from omegaconf import OmegaConf\n"
        "from samt.cli import register_plugins\n"
        "register_plugins()\n"
        "target = 'hydra_plugins.samt_job_list.job_list_sweeper.JobListSweeper'\n"
        "sweeper = Plugins.instance()._instantiate(\n"
        "    OmegaConf.create({'_target_': target, 'jobs': 'jobs.yaml'}))\n"
        "print(type(sweeper).__name__, sweeper.jobs)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["JobListSweeper", "jobs.yaml"]


@pytest.mark.slow
def test_a_job_list_sweep_runs_from_another_folder(tmp_path: Path):
    """The stage command that tuning.md records, run by ``samt-run`` from a fresh folder."""
    (tmp_path / "jobs.yaml").write_text("- [seed=0, hydra.sweep.subdir=a]\n"
                                        "- [seed=1, hydra.sweep.subdir=b]\n")
    out = subprocess.run(
        [str(BIN / "samt-run"), "-m", "hydra/sweeper=job_list", "hydra.sweeper.jobs=jobs.yaml",
         "hydra.sweep.dir=sweep", "dataset=digits", "epochs=1", "progress=false", "device=cpu",
         "model.hidden=[16]"],
        cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    for name, seed in (("a", 0), ("b", 1)):
        summary = json.loads((tmp_path / "sweep" / name / "summary.json").read_text())
        assert summary["status"] == "completed" and summary["seed"] == seed
