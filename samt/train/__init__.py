"""The runner: epoch loop, evaluation, checkpoints and resume, run-folder records and plots."""

from samt.train.checkpoint import CHECKPOINT, load_checkpoint
from samt.train.runner import USER_ERRORS, Run, run_training

__all__ = ["CHECKPOINT", "USER_ERRORS", "Run", "load_checkpoint", "run_training"]
