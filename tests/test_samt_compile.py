"""``compile=True`` (``optimizer.compile``): the analytic path's element-wise chains through
``torch.compile`` (``samt.optim.fused``) compute what the eager path computes, up to float
rounding; the key defaults to false, is checked and documented, and a platform where compiling
fails gets one warning and the eager path."""

from __future__ import annotations

import warnings

import pytest
import torch
from helpers import digits_config, random_batches, tanh_mlp
from torch import nn

from samt.optim import SAMT, fused

CE = nn.functional.cross_entropy


def make_model(dtype: torch.dtype, seed: int = 0) -> nn.Sequential:
    return tanh_mlp(6, 8, 5, 3, dtype=dtype, seed=seed)


def batches(dtype: torch.dtype, n: int = 3) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return random_batches(n, 16, 6, dtype=dtype)


def run(compile_: bool, dtype: torch.dtype, steps: int = 3, **options) -> tuple[SAMT, nn.Module]:
    model = make_model(dtype)
    opt = SAMT(model, CE, eta_hidden=6, meta_lr=1e-2, compile=compile_, **options)
    with torch.no_grad():  # break the symmetric init so every path of the eta model matters
        g = torch.Generator().manual_seed(3)
        for p in opt.meta.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    for x, y in batches(dtype, steps):
        opt.step(x, y)
    return opt, model


def assert_close(a: tuple[SAMT, nn.Module], b: tuple[SAMT, nn.Module], rtol: float,
                 atol: float) -> None:
    (opt_a, model_a), (opt_b, model_b) = a, b
    for pa, pb in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol)
    for pa, pb in zip(opt_a.meta.parameters(), opt_b.meta.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=rtol, atol=atol)
    sa, sb = opt_a.epoch_stats(), opt_b.epoch_stats()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert sa[key] == pytest.approx(sb[key], rel=rtol, abs=atol, nan_ok=True), key
    assert (opt_a.param_updates, opt_a.skipped_total) == (opt_b.param_updates,
                                                          opt_b.skipped_total)


@pytest.fixture
def fresh_compile(monkeypatch):
    """A clean compile cache and failure record for the test, dynamo's caches reset after."""
    monkeypatch.setattr(fused, "_CACHE", {})
    monkeypatch.setattr(fused, "_FAILED", [])
    monkeypatch.setattr(fused, "MIN_NUMEL", 0)  # these models are tiny: compile every chain
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


CASES = [
    {"step_type": "element", "meta_mode": "exact"},
    {"step_type": "element", "meta_mode": "hypergradient"},
    {"step_type": "element", "meta_mode": "lookahead", "combine": "learned"},
    {"step_type": "scalar", "meta_mode": "exact"},
    {"step_type": "row", "meta_mode": "exact", "features_per_group": True},
    {"step_type": "column", "meta_mode": "hypergradient"},
]


def test_compile_is_off_by_default_checked_and_documented():
    from pathlib import Path

    from samt.optim.options import DEFAULTS
    from samt.run_folder import ADDED_DEFAULTS
    from samt.validation import ConfigError, _validate_samt_options

    assert DEFAULTS.compile is False
    assert SAMT(make_model(torch.float32), CE).compile is False
    assert ADDED_DEFAULTS["optimizer.compile"] is False
    from samt.train.checkpoint import config_differences

    old = {"optimizer": {"name": "samt", "label": "samt_e"}, "seed": 0}  # before the key existed
    assert config_differences(old, {**old, "optimizer": {**old["optimizer"],
                                                         "compile": False}}) == []
    root = Path(__file__).resolve().parents[1]
    assert "#   compile:" in (root / "conf" / "optimizer" / "samt.yaml").read_text()
    cfg = {"optimizer": {"name": "samt", "step_type": "element", "projection": "sigmoid",
                         "combine": "convex", "meta_mode": "exact", "order": "top_down",
                         "meta_optimizer": "adam", "eta_min": 1e-6, "eta_max": 0.3, "eta0": 0.1,
                         "meta_lr": 1e-3, "meta_interval": 1, "eta_hidden": 32,
                         "group_size": 1, "tanh_c": 4.6, "eta_shared": False,
                         "features_per_group": False, "features": ["mean"], "compile": "yes"}}
    with pytest.raises(ConfigError, match=r"optimizer.compile='yes' is invalid"):
        _validate_samt_options(cfg)


def test_a_platform_that_cannot_compile_gets_one_warning_and_the_eager_path(fresh_compile,
                                                                             monkeypatch):
    """Compiling fails (here: a backend that raises, as inductor does without a C compiler):
    one ``RuntimeWarning`` naming ``optimizer.compile``, then the eager path, bit for bit."""
    calls = []

    def broken(gm, example_inputs):
        calls.append(1)
        raise RuntimeError("No working C compiler found")

    monkeypatch.setitem(fused.COMPILE_OPTIONS, "backend", broken)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        compiled = run(True, torch.float64)
    messages = [str(w.message) for w in caught if issubclass(w.category, fused.CompileWarning)]
    assert messages == ["SAMT(compile=True): torch.compile failed: RuntimeError: No working C "
                        "compiler found; running eager instead"]
    assert len(calls) == 1 and compiled[0].compile is False
    assert compiled[0].compile_error == ("torch.compile failed: RuntimeError: No working C "
                                         "compiler found")
    assert_close(compiled, run(False, torch.float64), rtol=0.0, atol=0.0)
    with pytest.raises(fused.CompileUnavailable, match="No working C compiler"):
        fused.compiled("step")  # later optimizers in this process fail at once, and warn


def test_a_run_that_cannot_compile_says_so_once_naming_the_key(fresh_compile, monkeypatch,
                                                               tmp_path, capsys):
    from samt.train import run_training

    def broken(gm, example_inputs):
        raise RuntimeError("No working C compiler found")

    monkeypatch.setitem(fused.COMPILE_OPTIONS, "backend", broken)
    cfg = digits_config(tmp_path, "optimizer=samt_e", "optimizer.compile=true", "epochs=2",
                        "model.hidden=[16]")
    with warnings.catch_warnings():
        warnings.simplefilter("error", fused.CompileWarning)  # the runner says it instead
        summary = run_training(cfg, tmp_path / "run")
    assert summary["status"] == "completed"
    err = capsys.readouterr().err
    assert "CompileWarning" not in err
    lines = [line for line in err.splitlines() if line.startswith("samt-run: warning")]
    assert lines == ["samt-run: warning: optimizer.compile=true: torch.compile failed: "
                     "RuntimeError: No working C compiler found; the run continues eager (the "
                     "same numbers up to float rounding; set optimizer.compile=false)"]


@pytest.mark.parametrize("options", [CASES[0], CASES[1], CASES[4]], ids=lambda o: "-".join(
    str(v) for v in o.values()))
def test_traced_chains_equal_eager(fresh_compile, monkeypatch, options):
    """The compiled functions traced by dynamo and run by its ``eager`` backend (no inductor:
    fast) give the eager path's numbers in float64 up to rounding."""
    monkeypatch.setitem(fused.COMPILE_OPTIONS, "backend", "eager")
    assert_close(run(True, torch.float64, **options), run(False, torch.float64, **options),
                 rtol=1e-10, atol=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("options", CASES, ids=lambda o: "-".join(str(v) for v in o.values()))
def test_compiled_equals_eager_up_to_rounding(fresh_compile, options):
    """Inductor, over 3 steps: float32 within 1e-5 (relative and absolute: Adam turns a
    rounding difference in a meta-gradient near 0 into a difference of order 1e-6 in the
    meta-parameter), float64 within 1e-10."""
    for dtype, rtol, atol in ((torch.float32, 1e-5, 1e-5), (torch.float64, 1e-10, 1e-12)):
        compiled = run(True, dtype, **options)
        assert compiled[0].compile is True and fused._CACHE
        assert_close(compiled, run(False, dtype, **options), rtol=rtol, atol=atol)
