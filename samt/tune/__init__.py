"""Tuning protocols: ``samt-reproduce`` runs a paper table's grid, choice and final seeds
(``samt.tune.reproduce``; docs/tuning.md)."""
