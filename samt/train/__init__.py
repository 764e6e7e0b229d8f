"""The runner: epoch loop, evaluation, run-folder records and plots."""

from samt.train.runner import Run, run_training

__all__ = ["Run", "run_training"]
