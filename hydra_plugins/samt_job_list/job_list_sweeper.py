"""``JobListSweeper``: one Hydra multirun over an explicit list of jobs.

Hydra's basic sweeper runs the cartesian product of comma-separated values. A stage of a
tuning protocol is not a product (each optimizer has its own step-size key, tied values and
run folder), so this sweeper reads the jobs from a yaml file instead: a list whose items are
each one job's overrides. Every job gets its own overrides first, then the command line's
(``samt-run -m hydra/sweeper=job_list hydra.sweeper.jobs=FILE experiment=... epochs=3``),
and all of them go to the configured launcher (joblib, submitit, basic) as one batch: one
joblib pool, one SLURM array. A job may set its folder with ``hydra.sweep.subdir=NAME``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.plugins import Plugins
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf


def read_jobs(path: str | Path) -> list[list[str]]:
    """The job list of ``path``: a yaml list of lists of override strings (checked)."""
    jobs = OmegaConf.load(path)
    if not isinstance(jobs, ListConfig) or not all(
            isinstance(job, ListConfig) and all(isinstance(o, str) for o in job)
            for job in jobs):
        raise ValueError(f"hydra.sweeper.jobs={str(path)!r}: expected a yaml list of jobs, "
                         "each a list of override strings")
    return [list(job) for job in jobs]


class JobListSweeper(Sweeper):
    """Runs the jobs of ``hydra.sweeper.jobs`` (a yaml file) through the launcher."""

    def __init__(self, jobs: str | None = None) -> None:
        self.jobs = jobs
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction,
              config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config)

    def sweep(self, arguments: list[str]) -> Sequence[Any]:
        assert self.config is not None and self.launcher is not None
        if not self.jobs:
            raise ValueError("hydra/sweeper=job_list needs hydra.sweeper.jobs=<yaml file>")
        batch = [[*job, *arguments] for job in read_jobs(self.jobs)]
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        if not batch:
            return []
        self.validate_batch_is_legal(batch)  # every job composes, before any starts
        return [self.launcher.launch(batch, initial_job_idx=0)]

    def validate_batch_is_legal(self, batch: Sequence[Sequence[str]]) -> None:
        """Compose every job, unless samt-run's sweep check (``samt.cli.validate_sweep``)
        already composed and validated this very batch."""
        from samt.cli import VALIDATED_JOBS

        if [list(job) for job in batch] != VALIDATED_JOBS:
            super().validate_batch_is_legal(batch)
