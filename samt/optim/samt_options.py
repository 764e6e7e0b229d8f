"""Checks of SAMT's keyword options (``SAMT.__init__`` calls ``check_options`` first).

The defaults are in ``samt.optim.options``, the allowed values of the choice options in
``samt.optim.choices``; each check raises one ``ValueError`` naming the option.
"""

from __future__ import annotations

from collections.abc import Sequence

from samt.optim.choices import (
    COMBINES,
    META_MODES,
    META_OPTIMIZERS,
    ORDERS,
    PROJECTIONS,
    STEP_TYPES,
)


def check_options(*, step_type: str, projection: str, combine: str, meta_mode: str, order: str,
                  meta_optimizer: str, eta0: float, eta_min: float, eta_max: float,
                  meta_interval: int, features_per_group: bool) -> None:
    """Raise ``ValueError`` for the first option SAMT cannot take."""
    for key, value, allowed in (("step_type", step_type, STEP_TYPES),
                                ("projection", projection, PROJECTIONS),
                                ("combine", combine, COMBINES),
                                ("meta_mode", meta_mode, META_MODES),
                                ("order", order, ORDERS),
                                ("meta_optimizer", meta_optimizer, META_OPTIMIZERS)):
        check_choice(key, value, allowed)
    if not 0.0 <= eta_min < eta_max:
        raise ValueError(
            f"need 0 <= eta_min < eta_max, got eta_min={eta_min}, eta_max={eta_max}")
    if not eta_min <= eta0 <= eta_max or (projection == "sigmoid" and eta0 >= eta_max):
        raise ValueError(f"eta0={eta0} must lie in [eta_min, eta_max] = [{eta_min}, {eta_max}]"
                         + (" and below eta_max for projection=sigmoid"
                            if projection == "sigmoid" else ""))
    if meta_interval < 1:
        raise ValueError(f"meta_interval must be >= 1, got {meta_interval}")
    if features_per_group and step_type not in ("row", "column"):
        raise ValueError("features_per_group=true needs step_type row or column, "
                         f"got {step_type!r}")


def check_choice(key: str, value: str, allowed: Sequence[str]) -> None:
    """``ValueError`` naming ``key`` and the allowed values unless ``value`` is one of them."""
    if value not in allowed:
        raise ValueError(f"{key}={value!r} is not allowed; choose one of {list(allowed)}")
