"""``tags``: a run's labels, recorded in summary.json, TensorBoard and samt-report's tables;
they change no number, so a run resumes (and groups) across other tags."""

from __future__ import annotations

import csv

import pytest
from helpers import digits_config, read_summary

from samt.report.cli import main as report_main
from samt.train.runner import Run
from samt.validation import ConfigError, validate_config

TAGS = ["baseline", "lr sweep"]


def test_tags_are_recorded_in_the_summary_tensorboard_and_the_report(tmp_path, capsys):
    cfg = digits_config(tmp_path, "optimizer=adam", "model.hidden=[16]", "epochs=1",
                        "tags=[baseline,lr sweep]", "logger=tensorboard")
    validate_config(cfg)
    folder = tmp_path / "runs" / "run"
    Run(cfg, folder).execute()
    assert read_summary(folder)["tags"] == TAGS

    again = Run(digits_config(tmp_path, "optimizer=adam", "model.hidden=[16]", "epochs=1",
                              "tags=[other]", "logger=tensorboard"), folder)
    again.execute()  # other tags: the same config, already finished
    assert again.outcome == "done" and read_summary(folder)["tags"] == TAGS

    assert report_main([str(folder.parent), "--out", str(tmp_path / "report"),
                        "--formats", "csv"]) == 0
    capsys.readouterr()
    with open(tmp_path / "report" / "aggregates.csv") as fh:
        assert [r["tags"] for r in csv.DictReader(fh)] == ["baseline, lr sweep"]
    with open(tmp_path / "report" / "all_runs.csv") as fh:
        assert [r["tags"] for r in csv.DictReader(fh)] == ["[baseline,lr sweep]"]

    pytest.importorskip("tensorboard", reason="logger=tensorboard needs the tensorboard "
                        "package (pip install 'samt[tensorboard]')")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"))
    events.Reload()
    (text,) = events.Tensors("run/tags/text_summary")
    assert text.step == 0
    assert text.tensor_proto.string_val == [b"baseline, lr sweep"]


@pytest.mark.parametrize("override, needle", [
    ("tags=x", "tags='x' is invalid: a list of tags"),
    ("tags=[a,a]", "tags=['a', 'a'] is invalid: lists a more than once"),
    ("tags=['a,b']", "tags=['a,b'] is invalid: a list of tags, e.g. [baseline,lr_sweep]: each 1 "
                     "to 100 characters, without commas or line breaks"),
    ("tags=[1]", "tags=[1] is invalid: a list of tags"),
    ("+tag=x", "tag='x' is invalid: unknown top-level key; did you mean tags?"),
])
def test_bad_tags_are_one_line_naming_the_key(tmp_path, override, needle):
    with pytest.raises(ConfigError) as err:
        validate_config(digits_config(tmp_path, override))
    assert str(err.value).startswith(needle), str(err.value)
