"""The runner: the epoch loop (``Run``) and the run folder it writes (``RunFolder``: metrics,
summary, checkpoints and resume, plots, the SAMT meta file)."""

from samt.train.checkpoint import CHECKPOINT, load_checkpoint
from samt.train.folder import RunFolder
from samt.train.runner import USER_ERRORS, Run, run_training

__all__ = ["CHECKPOINT", "USER_ERRORS", "Run", "RunFolder", "load_checkpoint", "run_training"]
