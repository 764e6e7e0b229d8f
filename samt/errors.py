"""The error of a bad config value, shared by the checks (``samt.validation``), the optimizer's
``_target_`` (``samt.targets``) and the runner; imports nothing of samt (no cycle can form)."""

from __future__ import annotations


class ConfigError(ValueError):
    """A config value is invalid; the message names the key, the value and what is allowed."""
