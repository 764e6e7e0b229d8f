"""summary.json: non-finite numbers become null at any depth (docs/outputs.md)."""

from __future__ import annotations

import json
import math

from samt.train.records import write_json


def test_nested_non_finite_numbers_are_written_as_null(tmp_path):
    path = tmp_path / "summary.json"
    write_json(path, {"final": {"test_metric": math.nan, "train_loss": 0.5},
                      "best_test_metric": math.inf, "curve": [1.0, -math.inf], "n": 3})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"final": {"test_metric": None, "train_loss": 0.5},
                                "best_test_metric": None, "curve": [1.0, None], "n": 3}
