"""Configs outside the package: the wheel's layout and a user's own config folder."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import REPO, run_cli

from samt.cli import find_conf_dir


def test_the_checkout_reads_its_top_level_conf():
    assert find_conf_dir() == REPO / "conf"


def test_pyproject_ships_every_config_folder():
    """Each folder of conf/ is a package of the wheel (else its yaml files are left out)."""
    import tomllib

    packages = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"])
    folders = {"samt.conf" + "".join(f".{part}" for part in d.relative_to(REPO / "conf").parts)
               for d in (REPO / "conf").rglob("*") if d.is_dir()} | {"samt.conf"}
    assert folders <= packages, f"add to pyproject.toml packages: {sorted(folders - packages)}"


def test_a_users_config_dir_adds_presets(tmp_path: Path):
    """The example of docs/extending.md: presets that extend shipped ones, from --config-dir."""
    conf = tmp_path / "myconf"
    (conf / "optimizer").mkdir(parents=True)
    (conf / "model").mkdir()
    (conf / "optimizer" / "sgd_nesterov.yaml").write_text(
        "defaults:\n  - sgd\n  - _self_\nlabel: sgd_nesterov\nlr: 0.05\nmomentum: 0.9\n"
        "nesterov: true\n")
    (conf / "model" / "mlp_wide.yaml").write_text(
        "defaults:\n  - mlp\n  - _self_\nhidden: [32, 32]\ndropout: 0.2\n")
    run = tmp_path / "run"
    code = run_cli(["--config-dir", str(conf), "optimizer=sgd_nesterov", "model=mlp_wide",
                    "dataset=digits", "epochs=1", "progress=false", "device=cpu",
                    f"hydra.run.dir={run}"])
    assert code in (None, 0)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed"
    config = (run / "config.yaml").read_text()
    assert "label: sgd_nesterov" in config and "nesterov: true" in config
    assert "dropout: 0.2" in config and "- 32" in config
