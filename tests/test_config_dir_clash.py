"""A user's ``--config-dir`` adds configs; a file named like a shipped one (which Hydra finds
first, so it would be silently ignored) is refused with one line, before anything is written."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import CONF_DIR, run_cli
from helpers import error_lines

from samt.config_dirs import shadowed_configs

MY_ADAM = ("_target_: torch.optim.Adam\n_partial_: true\nname: adam\nlabel: my_adam\n"
           "lr: 0.005\nschedule: constant\n")


def _conf(tmp_path: Path, files: dict[str, str]) -> Path:
    conf = tmp_path / "myconf"
    for name, text in files.items():
        (conf / name).parent.mkdir(parents=True, exist_ok=True)
        (conf / name).write_text(text)
    return conf


def _args(tmp_path: Path, conf: Path, *extra: str) -> list[str]:
    return ["--config-dir", str(conf), "dataset=digits", "model.hidden=[8]", "epochs=1",
            "device=cpu", "progress=false", f"data.root={tmp_path}", *extra]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch):
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


@pytest.mark.parametrize("multirun", [False, True])
def test_a_preset_with_a_shipped_name_is_refused(tmp_path, capsys, multirun):
    conf = _conf(tmp_path, {"optimizer/adam.yaml": MY_ADAM})
    out = tmp_path / "out"
    where = [f"hydra.sweep.dir={out}", "seed=0,1"] if multirun else [f"hydra.run.dir={out}"]
    args = _args(tmp_path, conf, "optimizer=adam", *where)
    assert run_cli(["-m", *args] if multirun else args) == 2
    (error,) = error_lines(capsys.readouterr().err)
    assert f"--config-dir {conf}: optimizer/adam.yaml has the name of a shipped config" in error
    assert "silently ignored" in error and "optimizer=my_adam" in error
    assert not out.exists()


def test_an_identical_copy_of_a_shipped_config_is_harmless(tmp_path):
    conf = _conf(tmp_path, {"optimizer/adam.yaml": (CONF_DIR / "optimizer" / "adam.yaml")
                            .read_text()})
    assert run_cli(_args(tmp_path, conf, "optimizer=adam",
                         f"hydra.run.dir={tmp_path / 'run'}")) is None


def test_only_folders_searched_after_the_shipped_configs_are_checked(tmp_path):
    conf = _conf(tmp_path, {"optimizer/adam.yaml": MY_ADAM, "optimizer/mine.yaml": MY_ADAM,
                            "config.yaml": "epochs: 3\n"})
    main = {"path": str(CONF_DIR), "schema": "file", "provider": "main"}
    mine = {"path": str(conf), "schema": "file", "provider": "command-line"}
    assert [str(c[2]) for c in shadowed_configs([main, mine])] == ["config.yaml",
                                                                   "optimizer/adam.yaml"]
    assert shadowed_configs([mine, main]) == []  # searched first: it wins, nothing is hidden
