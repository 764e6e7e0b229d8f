"""samt-reproduce's stages as Hydra multiruns (docs/tuning.md, "Stages through Hydra
launchers"): each stage is one ``samt-run -m hydra/sweeper=job_list`` command; the device is
the user's (``device=cuda`` composes for every job); the SLURM launcher renders one sbatch
array per stage. The slow test runs the ``smoke`` preset end to end through Hydra's real
``submitit_local`` launcher and the joblib one (``local_parallel``) and compares the two.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR, REPO
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from test_presets import PRESETS, reproduce

from samt.cli import resolve_config
from samt.validation import validate_config

REPRODUCE = [sys.executable, "-m", "samt.tune.reproduce"]  # samt-reproduce


def test_device_args_leave_the_device_to_the_user():
    assert reproduce.device_args([]) == ["device=cpu", "device.threads=1"]
    assert reproduce.device_args(["device=cuda"]) == []
    assert reproduce.device_args(["device=auto"]) == ["device.threads=1"]
    assert reproduce.device_args(["device=cpu", "device.threads=4"]) == []
    common = reproduce._common("cifar_cnn", ["device=cuda", "epochs=3",
                                             "hydra.launcher.partition=gpu"])
    assert common == ("experiment=cifar_cnn", "progress=false", "device=cuda", "epochs=3")


def _compose(overrides: tuple[str, ...]) -> dict:
    return resolve_config(compose(config_name="config", overrides=list(overrides)))


@pytest.mark.slow  # composes all 80 CIFAR jobs and more: make test-slow
def test_device_cuda_composes_for_every_job(tmp_path, monkeypatch):
    """Compose only (no GPU here): every job of the CIFAR table, and one job per variant of
    every other preset, composes and validates with ``device=cuda``."""
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    planned = {}
    for experiment in PRESETS:
        protocol = reproduce.load_protocol(experiment, ["device=cuda"])
        jobs = reproduce.planned_jobs(experiment, protocol, tmp_path, ["device=cuda"])
        if experiment != "cifar_cnn":  # the others: one job per variant
            jobs = list({tuple(a for a in j.args if a.startswith(
                ("optimizer=", "optimizer.label="))): j for j in jobs}.values())
        else:
            assert len(jobs) == 2 * 4 * 5 + 2 * 4 * 5  # grid + finals, every one
        planned[experiment] = jobs
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for experiment, jobs in planned.items():
            for job in jobs:
                assert not any(a.startswith("device.threads") for a in job.overrides)
                cfg = _compose(job.overrides)
                validate_config(cfg)
                assert cfg["device"] == {"type": "cuda"}, (experiment, job.folder.name)


def test_a_stage_is_one_multirun_over_its_jobs(tmp_path):
    protocol = reproduce.load_protocol("mnist_mlp", [])
    jobs = reproduce.grid_jobs("mnist_mlp", protocol, tmp_path, ["epochs=3"])
    stages = reproduce.Stages(launcher="slurm", hydra=("hydra.launcher.partition=gpu",),
                              records=tmp_path / "stages")
    argv = stages.argv("grid_0", jobs)
    assert argv[:4] == ["-m", "hydra/sweeper=job_list",
                        f"hydra.sweeper.jobs={tmp_path}/stages/grid_0.yaml",
                        "hydra/launcher=slurm"]
    assert f"hydra.sweep.dir={tmp_path}/grid" in argv
    assert argv[-6:] == ["hydra.launcher.partition=gpu", "experiment=mnist_mlp",
                         "progress=false", "device=cpu", "device.threads=1", "epochs=3"]
    job_list = stages.job_list(jobs)
    assert len(job_list) == len(jobs) == 2 * 7 * 5
    for job, entry in zip(jobs, job_list, strict=True):
        assert entry == [*job.args, f"hydra.sweep.subdir={job.folder.name}"]
    local = reproduce.Stages(jobs=3).argv("grid_0", jobs)
    assert "hydra/launcher=local_parallel" in local and "hydra.launcher.n_jobs=3" in local


# Runs samt-run with submitit's sbatch call replaced: the script is written to $SBATCH_OUT.
_RENDER = """
import os, sys
from submitit.slurm.slurm import SlurmExecutor
def submit(self, command):
    open(os.environ["SBATCH_OUT"], "w").write(self._make_submission_file_text(command, "uid"))
    sys.exit(0)
SlurmExecutor.affinity = classmethod(lambda cls: 2)
SlurmExecutor._submit_command = submit
from samt.cli import run_main
run_main()
"""


@pytest.mark.slow  # a real process (make test-slow)
def test_slurm_stage_renders_one_sbatch_array(tmp_path):
    """The grid stage of the CIFAR table on SLURM with ``device=cuda``: the real ``samt-run
    -m`` command of the stage, through the job-list sweeper and Hydra's submitit plugin, up to
    the sbatch script (submitting is intercepted): one array of the stage's 40 jobs."""
    pytest.importorskip("submitit")
    overrides = ["device=cuda", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=240",
                 "hydra.launcher.array_parallelism=8"]
    protocol = reproduce.load_protocol("cifar_cnn", overrides)
    jobs = reproduce.grid_jobs("cifar_cnn", protocol, tmp_path / "runs", overrides)
    stages = reproduce.Stages(launcher="slurm", hydra=tuple(overrides[1:]),
                              records=tmp_path / "stages")
    stages.records.mkdir()
    stages.jobs_file("grid_0").write_text(OmegaConf.to_yaml(stages.job_list(jobs)))
    env = {**os.environ, "SBATCH_OUT": str(tmp_path / "sbatch.sh"),
           "SAMT_DATA_ROOT": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", _RENDER, *stages.argv("grid_0", jobs)],
                         capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert (tmp_path / "sbatch.sh").is_file(), out.stdout + out.stderr
    script = (tmp_path / "sbatch.sh").read_text()
    for line in ("#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --array=0-39%8"):
        assert line in script, line
    assert f"{tmp_path}/runs/grid/.submitit" in script
    assert "#39 : " in out.stdout and "#40 : " not in out.stdout  # one batch of 40


def test_dry_run_prints_the_stages_and_the_launcher(tmp_path):
    out = subprocess.run(
        [*REPRODUCE, "smoke", "--dry-run",
         "--launcher", "slurm", "hydra.launcher.partition=gpu", "device=cuda",
         "--runs", str(tmp_path / "runs")],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
        env={**os.environ, "SAMT_DATA_ROOT": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.count("samt-run -m hydra/sweeper=job_list") == 2  # grid round 0, finals
    assert "hydra/launcher=slurm" in text and "device=cuda" in text
    assert "device.threads" not in text
    assert "partition: gpu" in text and "gpus_per_node: 1" in text
    assert not (tmp_path / "runs").exists()  # nothing written


def _table(out: Path) -> dict[str, str]:
    """The parts of a report that must not depend on the launcher (no wall times)."""
    tuning = (out / "tuning.md").read_text()
    grid = tuning[tuning.index("## Grid"):tuning.index("## Commands")]
    return {"tuning": grid, **{name: (out / name).read_text() for name in (
        "final_test_metric.md", "best_test_metric.md", "final_train_loss.md",
        "param_updates.md", "significance.md")}}


def _metrics(folder: Path) -> list[dict[str, str]]:
    with open(folder / "metrics.csv") as f:
        return [{k: v for k, v in row.items() if "time" not in k} for row in csv.DictReader(f)]


@pytest.mark.slow
def test_smoke_table_is_the_same_through_submitit_local_and_joblib(tmp_path):
    """``make test-launchers``: the whole protocol (grid, one edge-extension round, finals,
    report) of the ``smoke`` preset through Hydra's real submitit_local launcher and the
    joblib one: identical choices, tables and per-epoch metrics; then a rerun through the
    basic launcher finds every run finished and launches nothing."""
    env = {**os.environ, "SAMT_DATA_ROOT": str(tmp_path / "data")}
    results = {}
    for launcher in ("submitit_local", "local_parallel"):
        root = tmp_path / launcher
        out = subprocess.run(
            [*REPRODUCE, "smoke", "--launcher",
             launcher, "--jobs", "2", "--runs", str(root / "runs"), "--out", str(root / "out")],
            capture_output=True, text=True, cwd=tmp_path, env=env, timeout=900)
        assert out.returncode == 0, out.stdout + out.stderr
        commands = {f.stem: f.read_text() for f in (root / "runs" / "stages").glob("*.command")}
        assert sorted(commands) == ["final", "grid_0", "grid_1"]  # one multirun per stage
        assert all(f"hydra/launcher={launcher}" in c for c in commands.values())
        results[launcher] = _table(root / "out")
        tuning = (root / "out" / "tuning.md").read_text()
        assert tuning.count("samt-run -m hydra/sweeper=job_list") == 3
        # the command to repeat the table names where its runs and report went
        assert (f"Reproduce: `samt-reproduce smoke --runs {launcher}/runs --out {launcher}/out`"
                in tuning)
        assert tuning.count("samt-run dataset=digits") == 6 + 4  # every run's command
        summaries = list((root / "runs").rglob("summary.json"))
        assert len(summaries) == 10
        assert all(json.loads(s.read_text())["status"] == "completed" for s in summaries)
    assert results["submitit_local"] == results["local_parallel"]
    assert "added" in results["local_parallel"]["tuning"]  # the extension round ran
    a, b = (tmp_path / name / "runs" for name in ("submitit_local", "local_parallel"))
    for folder in sorted((a / "final").iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            assert _metrics(folder) == _metrics(b / "final" / folder.name), folder.name
    assert (a / "grid" / ".submitit").is_dir()  # submitit's own job logs

    again = subprocess.run(
        [*REPRODUCE, "smoke", "--launcher", "basic",
         "--runs", str(b), "--out", str(tmp_path / "again")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "samt-run -m" not in again.stdout  # nothing launched
    assert again.stdout.count("finished before") == 3
    assert _table(tmp_path / "again") == results["local_parallel"]
