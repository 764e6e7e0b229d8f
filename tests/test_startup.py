"""Fast start: `samt-run --help` and a rejected config import neither torch, torchvision nor
scikit-learn (the heavy imports happen where a run starts). Timing is measured by
scripts/bench_startup.py, not here."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "torchvision", "sklearn", "pandas", "matplotlib", "scipy")


def _heavy_modules_after(code: str, tmp_path) -> list[str]:
    """Run ``code`` in a fresh interpreter; the heavy modules it imported (last stdout line)."""
    probe = code + f"\nprint([m for m in {HEAVY!r} if m in sys.modules])\n"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    return eval(out.stdout.strip().splitlines()[-1])


def test_importing_the_cli_and_validation_imports_nothing_heavy(tmp_path):
    code = "import sys\nimport samt.cli, samt.validation, samt.models, samt.optim, samt.run_folder"
    assert _heavy_modules_after(code, tmp_path) == []


@pytest.mark.parametrize("argv, expected_exit", [
    (["--help"], 0),
    (["epochs=0"], 2),
    (["optimizer.eta0=-1"], 2),
    (["model.dropout=1.5"], 2),
    (["optimizer=adam", "optimizer.lr=0"], 2),
    (["+optimiser=sgd"], 2),
])
def test_help_and_rejected_configs_import_nothing_heavy(tmp_path, argv, expected_exit):
    code = ("import sys\nfrom samt.cli import run_main\n"
            f"sys.argv = ['samt-run', *{argv!r}, 'hydra.run.dir={tmp_path / 'run'}']\n"
            "try:\n    run_main()\nexcept SystemExit as exc:\n"
            f"    assert (exc.code or 0) == {expected_exit}, exc.code\n")
    assert _heavy_modules_after(code, tmp_path) == []
    assert not (tmp_path / "run").exists()


def test_the_lazy_optim_package_still_exports_its_names():
    import samt.optim as optim

    assert optim.SAMT.__name__ == "SAMT" and "samt" in optim.OPTIMIZERS
    assert callable(optim.build_optimizer) and "SAMT" in dir(optim)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        optim.nothing  # noqa: B018


@pytest.mark.slow  # a real process (make test-slow)
def test_a_run_imports_neither_torchvision_nor_scikit_learn_unless_its_dataset_needs_them(
        tmp_path):
    """The runner and the dataset registry load without them (they cost seconds per run and
    per launcher job); loading digits imports scikit-learn, and still not torchvision."""
    code = "import sys\nimport samt.train.runner, samt.data"
    heavy = _heavy_modules_after(code, tmp_path)
    assert "torchvision" not in heavy and "sklearn" not in heavy
    code = ("import sys\nfrom samt.data import load_dataset\n"
            "load_dataset('digits', '.')")
    heavy = _heavy_modules_after(code, tmp_path)
    assert "sklearn" in heavy and "torchvision" not in heavy
