"""samt-report on fixture run folders with known numbers (no training, offline, fast)."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from samt.report.aggregate import build_groups, lr_sweeps
from samt.report.cli import main, parse_targets
from samt.report.collect import load_runs

REPO = Path(__file__).resolve().parent.parent
ADAM = {"name": "adam", "label": "adam", "lr": 1.0e-3, "betas": [0.9, 0.999], "weight_decay": 0.0}
SGD = {"name": "sgd", "label": "sgd", "lr": 0.1, "momentum": 0.0, "weight_decay": 0.0}
SAMT_E = {"name": "samt", "label": "samt_e", "step_type": "element", "eta0": 0.1,
          "combine": "convex", "features": ["mean", "var"]}
UPDATES_PER_EPOCH = 200  # 100 iterations x 2 layers


def write_run(folder: Path, *, dataset: str, optimizer: dict, seed: int, test: list[float],
              train_loss: list[float] | None = None, epoch_time: float = 1.0,
              status: str = "completed", epochs: int | None = None, model: str = "mlp",
              split: int | None = None,
              bookkeeping: dict | None = None, samt_blocks: int = 0,
              val: list[float] | None = None, updates_per_epoch: int | None = None) -> Path:
    """A run folder in the documented format (docs/outputs.md) with the given epoch numbers;
    ``val``: per-epoch validation metrics (``val_loss``/``val_metric`` columns, as a run with
    ``data.val_fraction`` > 0 writes them)."""
    folder.mkdir(parents=True)
    regression = dataset.startswith("uci_")
    cfg = {"dataset": {"name": dataset, **({"split": split} if split is not None else {})},
           "model": {"name": model, "hidden": [400], "activation": "relu"},
           "optimizer": optimizer, "device": {"type": "cpu", "threads": None}, "seed": seed,
           "epochs": epochs or len(test), "batch_size": 128, "eval_batch_size": 4096,
           "progress": False, "max_consecutive_skips": 50,
           "data": {"root": "/data", "download": False}}
    if val is not None:
        cfg["data"].update(val_fraction=0.1, val_seed=12345)
    for key, value in (bookkeeping or {}).items():
        head, _, tail = key.partition(".")
        if tail:
            cfg[head][tail] = value
        else:
            cfg[head] = value
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    train_loss = train_loss or [1.0 / (e + 1) for e in range(len(test))]
    rows = []
    per_epoch = updates_per_epoch or UPDATES_PER_EPOCH
    for e, (metric, loss) in enumerate(zip(test, train_loss, strict=True), start=1):
        row = {"epoch": e, "train_loss": loss, "train_metric": metric, "test_loss": loss,
               "test_metric": metric, "epoch_time_s": epoch_time, "wall_time_s": epoch_time * e,
               "iterations": 100 * e, "param_updates": per_epoch * e, "skipped": 0}
        if val is not None:
            row.update(val_loss=loss, val_metric=val[e - 1])
        for k in range(samt_blocks):
            row.update({f"b{k}_eta_mean": 0.1 * e, f"b{k}_eta_std": 0.01,
                        f"b{k}_beta_mean": 0.5 - 0.05 * e, f"b{k}_grad_norm": 1.0,
                        f"b{k}_meta_loss": loss, f"b{k}_skipped": 0, f"b{k}_clamped": 0.0})
        rows.append(row)
    with open(folder / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    higher = not regression
    best = (max if higher else min)(rows, key=lambda r: r["test_metric"])
    last = rows[-1]
    summary = {
        "status": status, "dataset": dataset, "model": model, "optimizer": optimizer["name"],
        "label": optimizer["label"], "seed": seed, "epochs": epochs or len(test),
        "epochs_completed": len(rows), "error": None if status == "completed" else "boom",
        "task": "regression" if regression else "classification",
        "metric": "rmse" if regression else "accuracy", "higher_is_better": higher,
        "device": "cpu", "num_params": 1000, "train_size": 1000, "test_size": 100,
        "final": {k: last.get(k) for k in ("train_loss", "train_metric", "test_loss",
                                           "test_metric", "val_loss", "val_metric")},
        "best_test_metric": best["test_metric"], "best_epoch": best["epoch"],
        "wall_time_s": last["wall_time_s"], "iterations": last["iterations"],
        "param_updates": last["param_updates"]}
    (folder / "summary.json").write_text(json.dumps(summary, indent=2))
    return folder


def make_runs(root: Path) -> Path:
    """Runs with known numbers: see the asserts below for the values each group must give."""
    # mnist / mlp, adam, 3 seeds: finals 98.0, 98.5, 99.0 -> 98.50 ± 0.50; target 98.0 first
    # reached at epochs 2, 3, 1 (updates 400, 600, 200; seconds 2, 6, 3).
    write_run(root / "sweep/0_adam_s0", dataset="mnist", optimizer=ADAM, seed=0,
              test=[96.0, 98.0, 98.0], train_loss=[0.5, 0.3, 0.1], epoch_time=1.0)
    write_run(root / "sweep/1_adam_s1", dataset="mnist", optimizer=ADAM, seed=1,
              test=[97.0, 97.5, 98.5], train_loss=[0.5, 0.3, 0.2], epoch_time=2.0)
    write_run(root / "sweep/2_adam_s2", dataset="mnist", optimizer=ADAM, seed=2,
              test=[98.2, 98.6, 99.0], train_loss=[0.5, 0.4, 0.3], epoch_time=3.0,
              bookkeeping={"progress": True, "data.root": "/elsewhere", "eval_batch_size": 64})
    # mnist / mlp, sgd: two completed (97.0, 97.4), one failed after an epoch.
    write_run(root / "sweep/3_sgd_s0", dataset="mnist", optimizer=SGD, seed=0,
              test=[90.0, 95.0, 97.0])
    write_run(root / "sweep/4_sgd_s1", dataset="mnist", optimizer=SGD, seed=1,
              test=[91.0, 96.0, 97.4])
    write_run(root / "sweep/5_sgd_s2", dataset="mnist", optimizer=SGD, seed=2, test=[50.0],
              status="failed", epochs=3)
    # fashion_mnist: a single adam run (std undefined) and a SAMT variant that always diverged.
    write_run(root / "fashion/adam", dataset="fashion_mnist", optimizer=ADAM, seed=0,
              test=[85.0, 88.0])
    for seed in (0, 1):
        write_run(root / f"fashion/samt_{seed}", dataset="fashion_mnist", optimizer=SAMT_E,
                  seed=seed, test=[50.0], status="diverged", epochs=2, samt_blocks=2)
    # UCI regression (RMSE, lower is better); splits are replicates like seeds.
    for split, (a, s) in enumerate([(3.0, 2.8), (3.2, 3.0)]):
        write_run(root / f"uci/adam_split{split}", dataset="uci_boston", model="regression_mlp",
                  optimizer=ADAM, seed=0, split=split, test=[4.0, a])
        write_run(root / f"uci/sgd_split{split}", dataset="uci_boston", model="regression_mlp",
                  optimizer=SGD, seed=0, split=split, test=[4.0, s])
    # digits: an SGD learning-rate grid and a SAMT eta0 grid (LR sensitivity).
    for lr, final in ((0.01, 80.0), (0.1, 90.0), (1.0, 85.0)):
        for seed in (0, 1):
            write_run(root / f"grid/sgd_lr{lr}_s{seed}", dataset="digits",
                      optimizer={**SGD, "lr": lr}, seed=seed, test=[70.0, final + seed])
    for eta0, final in ((0.05, 88.0), (0.1, 91.0)):
        write_run(root / f"grid/samt_eta{eta0}", dataset="digits",
                  optimizer={**SAMT_E, "eta0": eta0}, seed=0, test=[75.0, final], samt_blocks=2)
    return root


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> tuple[Path, str]:
    """Run the CLI once on all fixture runs; returns (output folder, stdout)."""
    root = make_runs(tmp_path_factory.mktemp("runs"))
    out = root / "report"
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main([str(root / "sweep"), str(root / "fashion"), str(root / "uci"),
                     str(root / "grid"), "--out", str(out)])
    assert code == 0
    return out, buf.getvalue()


def md_rows(path: Path) -> dict[str, dict[str, str]]:
    """Markdown table -> {first cell: {header: cell}}."""
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = {}
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = dict(zip(header, cells, strict=True))
    return rows


def csv_rows(path: Path) -> list[dict[str, str]]:
    with open(path) as fh:
        return list(csv.DictReader(fh))


def test_columns_and_rows_named_by_differing_knobs(report):
    out, _ = report
    rows = md_rows(out / "final_test_metric.md")
    assert list(rows) == ["digits / mlp", "fashion_mnist / mlp", "mnist / mlp",
                          "uci_boston / regression_mlp"]
    header = list(rows["mnist / mlp"])
    assert header == ["dataset / model", "metric", "sgd lr=0.01", "sgd lr=0.1", "sgd lr=1",
                      "adam", "samt_e eta0=0.05", "samt_e eta0=0.1"]


def test_three_seed_group_exact_mean_std_n(report):
    out, _ = report
    agg = {(r["row"], r["column"]): r for r in csv_rows(out / "aggregates.csv")}
    adam = agg[("mnist / mlp", "adam")]
    assert (int(adam["runs"]), int(adam["completed"]), int(adam["failed"])) == (3, 3, 0)
    assert int(adam["final_test_metric_n"]) == 3
    assert float(adam["final_test_metric_mean"]) == pytest.approx(98.5)
    assert float(adam["final_test_metric_std"]) == pytest.approx(0.5)  # sample std, ddof=1
    assert float(adam["final_train_loss_mean"]) == pytest.approx(0.2)
    assert float(adam["final_train_loss_std"]) == pytest.approx(0.1)
    assert float(adam["epoch_time_s_mean"]) == pytest.approx(2.0)
    assert float(adam["epoch_time_s_std"]) == pytest.approx(1.0)
    assert float(adam["param_updates_mean"]) == pytest.approx(600)
    assert float(adam["best_test_metric_mean"]) == pytest.approx(98.5)
    cells = md_rows(out / "final_test_metric.md")["mnist / mlp"]
    assert cells["adam"] == "**98.50 ± 0.50**"
    assert cells["metric"] == "accuracy"
    assert md_rows(out / "run_counts.md")["mnist / mlp"]["adam"] == "3/3"


def test_single_run_has_blank_std(report):
    out, _ = report
    agg = {(r["row"], r["column"]): r for r in csv_rows(out / "aggregates.csv")}
    single = agg[("fashion_mnist / mlp", "adam")]
    assert (int(single["completed"]), single["final_test_metric_std"]) == (1, "")
    # One value in the row: shown without "±", and nothing to mark as best.
    assert md_rows(out / "final_test_metric.md")["fashion_mnist / mlp"]["adam"] == "88.00"


def test_failed_runs_are_counted_and_shown(report):
    out, stdout = report
    agg = {(r["row"], r["column"]): r for r in csv_rows(out / "aggregates.csv")}
    sgd = agg[("mnist / mlp", "sgd lr=0.1")]
    assert (int(sgd["runs"]), int(sgd["completed"]), int(sgd["failed"])) == (3, 2, 1)
    assert float(sgd["final_test_metric_mean"]) == pytest.approx(97.2)
    samt = agg[("fashion_mnist / mlp", "samt_e eta0=0.1")]
    assert (int(samt["completed"]), int(samt["failed"]), int(samt["diverged"])) == (0, 2, 2)
    rows = md_rows(out / "final_test_metric.md")
    assert rows["mnist / mlp"]["sgd lr=0.1"] == "97.20 ± 0.28 (1/3 failed)"
    assert rows["fashion_mnist / mlp"]["samt_e eta0=0.1"] == "failed (2/2)"
    counts = md_rows(out / "run_counts.md")
    assert counts["mnist / mlp"]["sgd lr=0.1"] == "2/3 (1/3 failed)"
    assert counts["fashion_mnist / mlp"]["samt_e eta0=0.1"] == "0/2 (2/2 failed)"
    statuses = [r["status"] for r in csv_rows(out / "all_runs.csv")]
    assert statuses.count("failed") == 1 and statuses.count("diverged") == 2
    assert "3 failed/diverged/interrupted" in stdout and "21 runs" in stdout


def test_best_entry_respects_direction(report):
    out, _ = report
    acc = md_rows(out / "final_test_metric.md")["mnist / mlp"]
    assert acc["adam"].startswith("**") and not acc["sgd lr=0.1"].startswith("**")
    rmse = md_rows(out / "final_test_metric.md")["uci_boston / regression_mlp"]
    assert rmse["metric"] == "rmse"
    assert rmse["sgd lr=0.1"] == "**2.900 ± 0.141**"  # lower RMSE wins; splits are replicates
    assert rmse["adam"] == "3.100 ± 0.141"
    # Costs: lower is better (sgd runs had 1 s per epoch, adam 2 s on average).
    time = md_rows(out / "epoch_time_s.md")["mnist / mlp"]
    assert time["sgd lr=0.1"].startswith("**") and not time["adam"].startswith("**")
    # A row where every value ties marks nothing.
    assert "**" not in "".join(md_rows(out / "param_updates.md")["mnist / mlp"].values())
    tex = (out / "final_test_metric.tex").read_text()
    assert r"\textbf{2.900 $\pm$ 0.141}" in tex and r"\textbf{98.50 $\pm$ 0.50}" in tex
    assert "98.50 ± 0.50 *" in (out / "final_test_metric.csv").read_text()


def test_time_to_target(report):
    out, stdout = report
    long = {(r["row"], r["column"]): r for r in csv_rows(out / "time_to_target_long.csv")}
    adam = long[("mnist / mlp", "adam")]
    assert (float(adam["target"]), int(adam["reached"]), int(adam["runs"])) == (98.0, 3, 3)
    assert float(adam["epochs_mean"]) == pytest.approx((2 + 3 + 1) / 3)
    assert float(adam["param_updates_mean"]) == pytest.approx((400 + 600 + 200) / 3)
    assert float(adam["seconds_mean"]) == pytest.approx((2 + 6 + 3) / 3)
    assert int(long[("mnist / mlp", "sgd lr=0.1")]["reached"]) == 0
    assert int(long[("fashion_mnist / mlp", "adam")]["reached"]) == 0  # 88 < 89
    assert not any(r.startswith(("digits", "uci")) for r, _ in long)  # no default target
    table = (out / "time_to_target.md").read_text()
    assert "| mnist / mlp | >= 98 | adam | 3/3 | 2 | 400 | 3.667 |" in table
    assert "| mnist / mlp | >= 98 | sgd lr=0.1 | 0/3 | not reached |" in table
    assert "none for digits, uci_boston" in stdout


def test_target_option_overrides_defaults(tmp_path):
    assert parse_targets([]) == {"mnist": 98.0, "fashion_mnist": 89.0}
    assert parse_targets(["digits=90", "mnist=97.5"]) == {"mnist": 97.5, "fashion_mnist": 89.0,
                                                          "digits": 90.0}
    assert parse_targets(["95", "digits=90"]) == {"*": 95.0, "digits": 90.0}
    with pytest.raises(SystemExit) as exc:
        main([str(tmp_path), "--target", "mnist=high"])
    assert exc.value.code == 2


def _tex_rows(text: str) -> tuple[int, list[str]]:
    spec = re.search(r"\\begin\{tabular\}\{([^}]*)\}", text).group(1)
    body = text.split(r"\toprule", 1)[1].split(r"\bottomrule", 1)[0]
    rows = [ln for ln in body.splitlines() if ln.strip() and ln.strip() != r"\midrule"]
    return len(spec), rows


def test_latex_is_structurally_valid(report):
    out, _ = report
    files = sorted(out.glob("*.tex"))
    assert len(files) == 8  # five metrics, run counts, time to target, significance
    for path in files:
        text = path.read_text()
        assert text.count(r"\begin{tabular}") == text.count(r"\end{tabular}") == 1, path
        assert text.index(r"\begin{tabular}") < text.index(r"\end{tabular}")
        assert text.count("{") - text.count(r"\{") == text.count("}") - text.count(r"\}")
        n_cols, rows = _tex_rows(text)
        assert rows, path
        for row in rows:
            assert row.endswith(r"\\"), (path, row)
            cells = re.split(r"(?<!\\)&", row[:-2])
            assert len(cells) == n_cols, (path, row)
        assert "±" not in text and "_" not in text.replace(r"\_", "")


def test_plots_written_png_and_pdf(report):
    out, _ = report
    plots = out / "plots"
    for stem in ("curves_mnist_mlp", "curves_uci_boston_regression_mlp", "curves_digits_mlp",
                 "samt_steps_digits_mlp", "lr_sensitivity_digits_mlp"):
        png, pdf = plots / f"{stem}.png", plots / f"{stem}.pdf"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", png
        assert pdf.read_bytes()[:5] == b"%PDF-", pdf
    # No completed SAMT run on fashion_mnist: no step plot; no LR grid outside digits.
    assert not (plots / "samt_steps_fashion_mnist_mlp.png").exists()
    assert sorted(p.name for p in plots.glob("lr_sensitivity_*")) == [
        "lr_sensitivity_digits_mlp.pdf", "lr_sensitivity_digits_mlp.png"]
    index = (out / "report.md").read_text()
    assert "plots/lr_sensitivity_digits_mlp.png" in index


def test_lr_sweeps_found_from_grid(tmp_path):
    runs, problems = load_runs([make_runs(tmp_path) / "grid"])
    assert not problems
    sweeps = lr_sweeps(build_groups(runs))
    assert [(s.name, s.lr_key, [lr for lr, _ in s.points]) for s in sweeps] == [
        ("sgd", "optimizer.lr", [0.01, 0.1, 1.0]), ("samt_e", "optimizer.eta0", [0.05, 0.1])]
    assert [len(g.runs) for _, g in sweeps[0].points] == [2, 2, 2]


def test_no_runs_exit_code_2(tmp_path, capsys):
    empty = tmp_path / "empty_dir"
    empty.mkdir()
    assert main([str(empty)]) == 2
    assert str(empty) in capsys.readouterr().err
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such path" in capsys.readouterr().err
    result = subprocess.run([sys.executable, "-m", "samt.report.cli", str(empty)],
                            capture_output=True, text=True, cwd=tmp_path, check=False)
    assert result.returncode == 2 and "no run folders" in result.stderr


def test_unreadable_summary_is_reported_not_dropped_silently(tmp_path, capsys):
    write_run(tmp_path / "ok", dataset="digits", optimizer=ADAM, seed=0, test=[90.0])
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "summary.json").write_text("{not json")
    assert main([str(tmp_path), "--out", str(tmp_path / "out"), "--formats", "csv"]) == 0
    captured = capsys.readouterr()
    assert "broken" in captured.err and "1 unreadable" in captured.out
    assert not list((tmp_path / "out").glob("*.md"))


def test_report_never_imports_torch_or_runner(tmp_path):
    write_run(tmp_path / "run", dataset="mnist", optimizer=SAMT_E, seed=0, test=[97.0, 98.5],
              samt_blocks=2)
    code = (
        "import sys\n"
        "from samt.report.cli import main\n"
        f"assert main([{str(tmp_path / 'run')!r}, '--out', {str(tmp_path / 'out')!r}]) == 0\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('torch', 'torchvision', 'hydra', 'omegaconf') or m.startswith("
        "('samt.train', 'samt.cli', 'samt.optim', 'samt.data', 'samt.models')))\n"
        "print('BAD', bad)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert "BAD []" in result.stdout
    for source in (REPO / "samt" / "report").glob("*.py"):
        text = source.read_text()
        assert not re.search(r"^\s*(import|from)\s+(torch|hydra|omegaconf|samt\.(train|cli|optim"
                             r"|data|models))\b", text, re.M), source


def test_per_row_columns_keep_one_column_per_tuned_optimizer(tmp_path):
    sgd = {"name": "sgd", "label": "sgd", "momentum": 0.0}
    for dataset, lr in (("mnist", 0.3), ("fashion_mnist", 0.1)):
        for seed in (0, 1):
            write_run(tmp_path / "runs" / f"{dataset}_{seed}", dataset=dataset,
                      optimizer={**sgd, "lr": lr}, seed=seed, test=[90.0, 91.0 + seed])
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "global")]) in (0, None)
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "rows"),
                 "--columns", "per-row"]) in (0, None)
    global_header = list(md_rows(tmp_path / "global" / "final_test_metric.md")["mnist / mlp"])
    assert global_header[2:] == ["sgd lr=0.1", "sgd lr=0.3"]
    rows = md_rows(tmp_path / "rows" / "final_test_metric.md")
    assert list(rows["mnist / mlp"])[2:] == ["sgd"]
    assert rows["mnist / mlp"]["sgd"].startswith("91.50 ± 0.71")
