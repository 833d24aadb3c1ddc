"""The serving request validator, on a small spec: the same contract as ingestion."""

from __future__ import annotations

import numpy as np
import pytest

from skewless.contract.spec import load_spec_text
from skewless.serving.validation import RequestError, RequestValidator

SPEC = load_spec_text(
    """
features:
  age: {kind: numeric, min: 0, max: 120}
  score: {kind: numeric, required: false, default: 0.5}
  tags: {kind: tags, allowed_values: [a, b], required: false}
  name: {kind: categorical, max_length: 5}
  y: {kind: label}
  k: {kind: key}
"""
)


@pytest.fixture
def validator() -> RequestValidator:
    return RequestValidator(SPEC, max_batch=3)


def test_rows_become_typed_columns_with_defaults(validator):
    columns = validator.from_rows(
        [{"age": 30, "name": "x", "tags": "a|b"}, {"age": 40.5, "name": "yy", "y": 1, "k": "r2"}]
    )
    assert columns["age"].dtype == np.float32 and columns["age"].tolist() == [30.0, 40.5]
    assert columns["score"].tolist() == [0.5, 0.5]  # optional numeric: the spec default
    assert columns["tags"].tolist() == ["a|b", ""]  # optional string: empty
    assert set(columns) == {"age", "score", "tags", "name"}  # label and key ride along, unused


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"age": True, "name": "x"}], "instances[0].age: expected a number, got bool True"),
        ([{"age": float("nan"), "name": "x"}], "instances[0].age: expected a finite number"),
        ([{"age": float("inf"), "name": "x"}], "instances[0].age: expected a finite number"),
        ([{"age": 121, "name": "x"}], "instances[0].age: 121 is above the maximum 120"),
        ([{"age": 1, "name": "x", "tags": "a|c"}], "instances[0].tags: 'c' is not one of"),
        ([{"age": 1, "name": "toolong"}], "string of 7 characters exceeds max_length 5"),
        ([{"age": 1, "name": ""}], "instances[0].name: missing required value (empty string)"),
        ([{"age": 1, "name": None}], "instances[0].name: missing required value"),
        ([{"age": 1, "name": "x"}, 5], "instances[1]: expected an object, got int"),
        ([{"age": 1, "name": "x"}] * 4, "batch of 4 rows exceeds the maximum of 3"),
    ],
)
def test_row_errors_name_row_and_field(validator, rows, message):
    with pytest.raises(RequestError) as raised:
        validator.from_rows(rows)
    assert message in str(raised.value)


def test_column_errors(validator):
    with pytest.raises(RequestError, match=r"inputs\.name: missing required field"):
        validator.from_columns({"age": [1]})
    with pytest.raises(RequestError, match=r"inputs\.age: expected a list of values"):
        validator.from_columns({"age": 1, "name": ["x"]})
    with pytest.raises(RequestError, match="empty batch"):
        validator.from_columns({"age": [], "name": []})
    columns = validator.from_columns({"age": [1, 2], "name": ["p", "q"]})
    assert columns["score"].tolist() == [0.5, 0.5]
