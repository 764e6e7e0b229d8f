"""Hydra launchers: a real joblib sweep (local_parallel), and the SLURM config rendered into the
sbatch script submitit would submit (no cluster: submitting is intercepted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

import samt.schema  # noqa: F401  registers the schema's defaults, which conf/ builds on

CLI = [sys.executable, "-c", "from samt.cli import run_main; run_main()"]


@pytest.mark.slow  # real processes, about 10-25 s: make test-slow
def test_local_parallel_launcher_runs_a_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    env = {**os.environ, "JOBS": "2", "OMP_NUM_THREADS": "1", "SAMT_DATA_ROOT": str(tmp_path)}
    out = subprocess.run([*CLI, "-m", "hydra/launcher=local_parallel", "dataset=digits",
                          "epochs=1", "model.hidden=[8]", "device=cpu", "device.threads=1",
                          "progress=false", "optimizer=adam,sgd", f"hydra.sweep.dir={sweep}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Joblib.Parallel(n_jobs=2" in out.stdout + out.stderr
    folders = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert folders == ["0_digits_mlp_adam_s0", "1_digits_mlp_sgd_s0"]
    for name in folders:
        summary = json.loads((sweep / name / "summary.json").read_text())
        assert summary["status"] == "completed"
        assert summary["epochs_completed"] == 1


class _Submitted(Exception):
    """Raised instead of calling sbatch."""


def test_slurm_launcher_renders_the_submitit_parameters(tmp_path, monkeypatch):
    submitit = pytest.importorskip("submitit")
    from submitit.slurm.slurm import SlurmExecutor

    overrides = ["hydra/launcher=slurm", "hydra.launcher.partition=gpu",
                 "hydra.launcher.timeout_min=240", "hydra.launcher.gpus_per_node=1",
                 "hydra.launcher.array_parallelism=2", f"hydra.sweep.dir={tmp_path}",
                 "experiment=mnist_mlp", "device=cuda"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    launcher_cfg = cfg.hydra.launcher
    assert launcher_cfg._target_.endswith("hydra_submitit_launcher.submitit_launcher."
                                          "SlurmLauncher")
    assert (launcher_cfg.partition, launcher_cfg.timeout_min, launcher_cfg.gpus_per_node,
            launcher_cfg.array_parallelism) == ("gpu", 240, 1, 2)
    assert (launcher_cfg.cpus_per_task, launcher_cfg.mem_gb) == (4, 16)  # conf defaults

    # The plugin's own launch(): parameters go through submitit's validation into the sbatch
    # script; only the sbatch call is replaced.
    scripts: list[str] = []

    def submit(self, command):
        scripts.append(self._make_submission_file_text(command, "uid"))
        raise _Submitted

    monkeypatch.setattr(SlurmExecutor, "affinity", classmethod(lambda cls: 2))  # "srun exists"
    monkeypatch.setattr(SlurmExecutor, "_submit_command", submit)
    launcher = instantiate(launcher_cfg)
    launcher.setup(hydra_context=None, task_function=print, config=cfg)
    with pytest.raises(_Submitted):
        launcher.launch([["seed=0"], ["seed=1"], ["seed=2"]], initial_job_idx=0)
    (script,) = scripts
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --array=0-2%2", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=16GB"):
        assert line in script, line
    assert f"{tmp_path}/.submitit" in script
    assert submitit is not None
