"""``samt-report``: aggregate run folders (seeds, sweeps) into paper tables and plots.

Reads only what the runner leaves in a run folder (``config.yaml``, ``metrics.csv``,
``summary.json``; see docs/outputs.md) and never imports the runner, torch or Hydra.
"""
