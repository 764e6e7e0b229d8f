"""Experiment presets and ``samt-reproduce``'s job planning (no runs), and ``--help``.

The presets themselves run with e.g. (a few seconds each, not part of the suite)::

    samt-reproduce features epochs=1 'tuning.datasets=[digits]' 'tuning.seeds=[0]' \
        'model.hidden=[8]' --runs /tmp/r --out /tmp/o
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir

from samt.cli import resolve_config
from samt.report.aggregate import build_groups
from samt.report.collect import Run as ReportRun
from samt.tune import reproduce
from samt.validation import validate_config

PRESETS = sorted(p.stem for p in (CONF_DIR / "experiment").glob("*.yaml"))


def test_the_new_presets_exist():
    assert {"transfer", "features", "grouped_blocks", "mnist_mlp"} <= set(PRESETS)


@pytest.mark.parametrize("experiment", PRESETS)
def test_preset_composes_and_plans_unique_valid_runs(experiment, tmp_path, monkeypatch):
    monkeypatch.setenv("SAMT_DATA_ROOT", str(tmp_path))
    protocol = reproduce.load_protocol(experiment, [])
    runs = tmp_path / "runs"
    jobs = reproduce.planned_jobs(experiment, protocol, runs, [])
    folders = [job.folder for job in jobs]
    assert len(folders) == len(set(folders))
    # Every choice a grid could make gives other folders than every other choice.
    every_choice = [job.folder for v in reproduce.variants(protocol) for value in v.grid
                    for job in reproduce.final_jobs(
                        experiment, protocol, runs, [],
                        {(d, v.name): value for d in protocol["datasets"]})]
    assert len(every_choice) == len(set(every_choice))
    # One run per variant composes with its overrides, validates, and is labelled by name.
    source = reproduce.source_folder(runs, protocol)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        for v in reproduce.variants(protocol):
            job = reproduce.job(runs / "final", experiment, protocol["datasets"][0], v,
                                v.grid[0], protocol["seeds"][0], [], source)
            assert not any(a.startswith("hydra.") for a in job.overrides)
            cfg = resolve_config(compose(config_name="config", overrides=list(job.overrides)))
            validate_config(cfg)
            assert cfg["optimizer"]["label"] == v.name
            assert (f"optimizer.label={v.name}" in job.args) == v.is_variant


def test_plain_entries_plan_the_documented_runs(tmp_path):
    """Folder names and arguments of a grid run (docs/tuning.md: SAMT tunes eta_max, eta0 tied
    below it at 0.3 x eta_max; reruns of the same protocol resume in the same folders)."""
    protocol = reproduce.load_protocol("mnist_mlp", [])
    jobs = reproduce.grid_jobs("mnist_mlp", protocol, tmp_path, ["epochs=3"])
    job = next(j for j in jobs if j.folder.name == "mnist_samt_e_eta_max0.316_s100")
    assert job.args == ("dataset=mnist", "optimizer=samt_e", "optimizer.eta_max=0.316",
                        "optimizer.eta0=0.0948", "seed=100")
    # Shared by every job of a stage: the multirun's command line (device: one CPU thread).
    assert job.common == ("experiment=mnist_mlp", "progress=false", "device=cpu",
                          "device.threads=1", "epochs=3")
    assert job.folder == tmp_path / "grid" / "mnist_samt_e_eta_max0.316_s100"
    assert {"schedulefree_adamw", "prodigy", "hypergradient_sgd"} <= set(protocol["optimizers"])
    assert all(len(spec["grid"]) == 5 for spec in protocol["optimizers"].values())


def test_variant_presets_set_what_they_ablate(tmp_path):
    features = reproduce.load_protocol("features", [])
    overrides = {v.name: v.overrides for v in reproduce.variants(features)}
    assert len(overrides) == 6
    for name in ("mean", "var", "max", "min", "norm"):
        (override,) = overrides[f"samt_e_no_{name}"]
        kept = override.split("=", 1)[1].strip("[]").split(",")
        assert len(kept) == 4 and name not in kept
    groups = reproduce.load_protocol("grouped_blocks", [])
    assert [v.overrides for v in reproduce.variants(groups)] == [
        ("optimizer.group_size=1",), ("optimizer.group_size=2",), ("optimizer.group_size=0",)]

    transfer = reproduce.load_protocol("transfer", ["tuning.source.dataset=digits"])
    runs = tmp_path / "runs"
    source = reproduce.source_job("transfer", transfer, runs, ["epochs=2"])
    assert source.folder == runs / "source" / "digits_samt_e_s100"
    assert "dataset=digits" in source.args and "epochs=2" in source.overrides
    finals = reproduce.final_jobs("transfer", transfer, runs, [])
    moved = [j for j in finals if "optimizer.label=samt_e_transfer" in j.args]
    assert moved and all(f"optimizer.meta_init={source.folder}" in j.args for j in moved)
    assert all(not any("meta_init" in a for a in j.args) for j in finals if j not in moved)


def test_source_paths_are_quoted_for_hydra():
    assert reproduce._override_value(Path("/a/b-c_1.2/s100")) == "/a/b-c_1.2/s100"
    assert reproduce._override_value(Path("/a b/c,d")) == "'/a b/c,d'"


def test_report_groups_ignore_tuning_blocks_and_null_keys(tmp_path):
    """Runs of one sweep started before and after a preset gained entries (or the optimizer a
    null-default key) stay one group: same seeds, one table cell."""
    def run(seed: int, **extra) -> ReportRun:
        config = {"dataset.name": "mnist", "model.name": "mlp", "optimizer.name": "samt",
                  "optimizer.label": "samt_s", "optimizer.eta0": 0.1, "seed": seed, **extra}
        return ReportRun(path=tmp_path / str(seed), config=config,
                         summary={"status": "completed"}, metrics=None)

    runs = [run(0, **{"tuning.optimizers": ("adam",)}),
            run(1, **{"tuning.optimizers": ("adam", "prodigy"), "optimizer.meta_init": None})]
    assert len(build_groups(runs)) == 1
    assert len(build_groups([*runs, run(2, **{"optimizer.meta_init": "/src"})])) == 2


def test_help_lists_groups_and_choices(tmp_path):
    out = subprocess.run([sys.executable, "-c", "from samt.cli import run_main; run_main()",
                          "--help"], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert text.startswith("samt-run: train one config of SAMT")
    optimizer_line = next(line for line in text.splitlines() if line.startswith("optimizer: "))
    assert "samt_e," in optimizer_line and "schedulefree_adamw" in optimizer_line
    for group in ("dataset: ", "model: ", "device: ", "experiment: "):
        assert any(line.startswith(group) for line in text.splitlines()), group
    assert "transfer" in next(line for line in text.splitlines() if line.startswith("experiment"))
    assert "meta_init: null" in text and "README.md" in text


def test_runs_from_before_target_keys_group_and_resume_with_new_ones(tmp_path):
    """Run folders written before optimizers were built by ``_target_`` lack the build keys: they
    group with (and resume as) new runs of the same optimizer; a different class still differs."""
    from samt.train.checkpoint import config_differences

    old = {"dataset.name": "mnist", "optimizer.name": "adam", "optimizer.label": "adam",
           "optimizer.lr": 1e-3, "seed": 0}
    new = {**old, "seed": 1, "optimizer._target_": "torch.optim.Adam",
           "optimizer._partial_": True}
    runs = [ReportRun(path=tmp_path / str(i), config=c, summary={"status": "completed"},
                      metrics=None) for i, c in enumerate((old, new))]
    assert len(build_groups(runs)) == 1

    def nested(flat: dict) -> dict:
        out: dict = {}
        for key, value in flat.items():
            *parents, leaf = key.split(".")
            node = out
            for p in parents:
                node = node.setdefault(p, {})
            node[leaf] = value
        return out

    assert config_differences(nested(old), nested({**new, "seed": 0})) == []
    other = {**new, "seed": 0, "optimizer._target_": "torch.optim.AdamW"}
    assert config_differences(nested({**new, "seed": 0}), nested(other)) == [
        "optimizer._target_: 'torch.optim.Adam' -> 'torch.optim.AdamW'"]


def test_options_added_later_count_as_their_default_in_old_run_folders(tmp_path):
    """A run folder from before ``optimizer.meta_normalize`` existed equals one with its default
    (false) for resuming and grouping; one with true differs."""
    from samt.train.checkpoint import config_differences

    old = {"optimizer": {"name": "samt", "label": "samt_e", "eta0": 0.1}, "seed": 0}
    off = {"optimizer": {**old["optimizer"], "meta_normalize": False}, "seed": 0}
    on = {"optimizer": {**old["optimizer"], "meta_normalize": True}, "seed": 0}
    assert config_differences(old, off) == []
    assert config_differences(old, on) == ["optimizer.meta_normalize: '<absent>' -> True"]

    def run(seed: int, **extra) -> ReportRun:
        config = {"dataset.name": "mnist", "optimizer.name": "samt", "optimizer.label": "samt_e",
                  "optimizer.eta0": 0.1, "seed": seed, **extra}
        return ReportRun(path=tmp_path / str(seed), config=config,
                         summary={"status": "completed"}, metrics=None)

    assert len(build_groups([run(0), run(1, **{"optimizer.meta_normalize": False})])) == 1
    assert len(build_groups([run(0), run(1, **{"optimizer.meta_normalize": True})])) == 2
    # data.augment came later too: absent = none (no augmentation)
    assert len(build_groups([run(0), run(1, **{"data.augment": "none"})])) == 1
    assert len(build_groups([run(0), run(1, **{"data.augment": "crop_flip"})])) == 2
