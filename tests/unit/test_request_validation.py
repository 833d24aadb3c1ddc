"""The serving request validator, on a small spec: the same contract as ingestion."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skewless.contract.spec import load_spec_text
from skewless.contract.validate import Violations, check_column, check_values
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
    assert columns["tags"].tolist() == ["a|b", ""]  # optional string: its default, empty
    assert set(columns) == {"age", "score", "tags", "name"}  # label and key ride along, unused


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([{"age": True, "name": "x"}], "instances[0].age: expected a number, got true/false"),
        ([{"age": float("nan"), "name": "x"}], "instances[0].age: not a finite number (nan)"),
        ([{"age": float("inf"), "name": "x"}], "instances[0].age: not a finite number (inf)"),
        ([{"age": 121, "name": "x"}], "instances[0].age: above maximum 120 (121)"),
        ([{"age": 1, "name": "x", "tags": "a|c"}], "instances[0].tags: tag not in allowed_values"),
        ([{"age": 1, "name": "toolong"}], "instances[0].name: longer than max_length 5 (7)"),
        ([{"age": 1, "name": ""}], "instances[0].name: missing required value"),
        ([{"age": 1, "name": None}], "instances[0].name: missing required value"),
        ([{"age": 1}], "instances[0].name: missing required value"),
        ([{"age": 1, "name": 2.5}], "instances[0].name: expected text or a whole number (2.5)"),
        # A missing value beside a number in a text column (found by the HTTP fuzz test: a 500).
        ([{"age": 1}, {"age": 1, "name": 0.0}], "instances[0].name: missing required value"),
        ([{"age": 1, "name": 0.5}, {"age": 1}], "instances[0].name: expected text or a whole"),
        ([{"age": "x", "name": "a"}], "instances[0].age: not a number ('x')"),
        ([{"age": 1, "name": "\ud800"}], "instances[0].name: not valid UTF-8 text"),
        ([{"age": 1, "name": "a"}, {"age": -1, "name": "a"}], "instances[1].age: below minimum 0"),
        ([{"age": -1, "name": ""}] * 2, "instances[0].age: below minimum 0 (-1) (and 3 more)"),
        ([{"age": 1, "name": "x"}, 5], "instances[1]: expected an object, got int"),
        ([{"age": 1, "name": "x"}] * 4, "batch of 4 rows exceeds the maximum of 3"),
    ],
)
def test_row_errors_name_row_and_field(validator, rows, message):
    with pytest.raises(RequestError) as raised:
        validator.from_rows(rows)
    assert message in str(raised.value)


FULL = {"age": 1, "score": 0.1, "tags": "a", "name": "x"}  # every input of SPEC, nothing else


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        # Every input and one more key: the count of keys gives the unknown field away.
        ([FULL, {**FULL, "shoe": 1}], "instances[1]: unknown field 'shoe'"),
        # As many keys as inputs, one of them unknown (an input is absent).
        ([FULL, {"age": 1, "score": 0.1, "tags": "a", "shoe": 1}], "instances[1]: unknown field"),
        # Fewer keys (an optional input left out) beside an unknown one.
        ([{"age": 1, "name": "x", "shoe": 1}], "instances[0]: unknown field 'shoe'"),
        # A known column riding along beside an unknown one.
        ([{**FULL, "y": 1}, {**FULL, "y": 1, "shoe": 1}], "instances[1]: unknown field 'shoe'"),
        ([FULL, [1]], "instances[1]: expected an object, got list"),
    ],
)
def test_an_unknown_field_is_named_with_its_row_whatever_else_the_rows_hold(
    validator, rows, message
):
    with pytest.raises(RequestError) as raised:
        validator.from_rows(rows)
    assert str(raised.value).startswith(message)


def test_rows_with_every_input_or_known_extras_are_accepted(validator):
    columns = validator.from_rows([FULL, {**FULL, "y": 0, "k": "r"}, {"age": 2, "name": "z"}])
    assert columns["age"].tolist() == [1.0, 1.0, 2.0]
    assert columns["score"].tolist() == pytest.approx([0.1, 0.1, 0.5])
    assert columns["name"].tolist() == ["x", "x", "z"]


def test_column_errors(validator):
    with pytest.raises(RequestError, match=r"inputs\.name: missing required field"):
        validator.from_columns({"age": [1]})
    with pytest.raises(RequestError, match=r"inputs\.age: expected a list of values"):
        validator.from_columns({"age": 1, "name": ["x"]})
    with pytest.raises(RequestError, match="empty batch"):
        validator.from_columns({"age": [], "name": []})
    columns = validator.from_columns({"age": [1, 2], "name": ["p", "q"]})
    assert columns["score"].tolist() == [0.5, 0.5]


def test_ids_sent_as_numbers_are_their_decimal_text(validator):
    columns = validator.from_rows([{"age": 1, "name": 19}, {"age": 2, "name": 19.0}])
    assert columns["name"].tolist() == ["19", "19"]


def test_blank_and_null_optional_values_take_the_spec_default(validator):
    columns = validator.from_rows(
        [{"age": 1, "name": "a", "score": None}, {"age": 1, "name": "a", "score": " "}]
    )
    assert columns["score"].tolist() == [0.5, 0.5]


TYPED = load_spec_text(
    """
features:
  age: {kind: numeric}
  name: {kind: categorical}
  seen: {kind: timestamp}
  y: {kind: label}
"""
)


@pytest.mark.parametrize(
    ("name", "expected"),
    [("age", "a number"), ("name", "text"), ("seen", "a time"), ("y", "a number")],
)
def test_a_column_of_a_type_a_kind_does_not_take_fails_each_value_given(name, expected):
    """The one rule for every kind (``kinds.base._refused``): values given fail, nulls are missing;
    a column of Arrow's null type is all missing and fails nothing."""
    import pyarrow as pa

    from skewless.contract.kinds import KINDS
    from skewless.contract.validate import Violations

    feature = TYPED.features[name]
    kind = KINDS[feature.kind]
    v = Violations(3)
    _, missing = kind.parse(feature, pa.array([[1], None, [2, 3]]), v)
    assert missing.tolist() == [False, True, False]
    assert v.failures == {
        0: [(name, f"expected {expected}, got a list")],
        2: [(name, f"expected {expected}, got a list")],
    }
    v = Violations(2)
    _, missing = kind.parse(feature, pa.nulls(2), v)
    assert missing.tolist() == [True, True] and v.failures == {}


def test_repeated_values_are_checked_once_with_every_row_named():
    """A ranking request repeats the user's values on every row: each distinct value is checked
    once, and its verdict reaches every row that holds it, counted per row."""
    validator = RequestValidator(SPEC, max_batch=200)
    rows = [{"age": 30, "name": "x"} for _ in range(100)]
    rows[10]["name"] = rows[50]["name"] = "toolong"
    rows[70]["name"] = None
    with pytest.raises(RequestError) as raised:
        validator.from_rows(rows)
    assert str(raised.value) == "instances[10].name: longer than max_length 5 (7) (and 2 more)"
    name = SPEC.features["name"]
    values = [row["name"] for row in rows]
    violations = Violations(100)
    checked = check_values(name, values, violations)
    assert sorted(violations.failures) == [10, 50, 70]
    assert violations.failures[70] == [("name", "missing required value")]
    assert dict(violations.reason_counts) == {
        "name: longer than max_length 5": 2,
        "name: missing required value": 1,
    }
    assert np.flatnonzero(violations.failed("name")).tolist() == [10, 50, 70]
    # The same verdicts and values as checking every row's value in one Arrow column.
    whole = Violations(100)
    values_whole, _ = check_column(name, pa.array(values), whole)
    assert whole.failures == violations.failures
    assert whole.reason_counts == violations.reason_counts
    assert checked.tolist() == values_whole.tolist()


def test_a_default_fills_every_row_of_a_repeated_missing_value():
    validator = RequestValidator(SPEC, max_batch=200)
    rows = [{"age": 1, "name": "abc", "tags": None if i % 2 else "a|b"} for i in range(80)]
    rows[1]["tags"] = ""
    columns = validator.from_rows(rows)
    assert columns["tags"].tolist() == ["a|b", ""] * 40
    assert columns["name"].tolist() == ["abc"] * 80


POOL = ["x", "abc", "toolong", "", "  ", None, "a|b", "a|c", "19", " 7 ", "nan", "1e3", "é", "b|"]


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from(["age", "score", "tags", "name", "k"]),
    st.lists(st.sampled_from(POOL), min_size=64, max_size=160),
)
def test_checking_distinct_values_gives_each_row_the_verdict_of_its_own_value(name, values):
    """The distinct-value pass against the plain pass over the whole column: the same failures
    per row, the same reason counts, the same canonical values."""
    feature = SPEC.features[name]
    spread = Violations(len(values))
    checked = check_values(feature, values, spread)
    whole = Violations(len(values))
    plain, _ = check_column(feature, pa.array(values, type=pa.string()), whole)
    assert spread.failures == whole.failures
    assert spread.reason_counts == whole.reason_counts
    assert (spread.bad_mask() == whole.bad_mask()).all()
    ok = ~whole.bad_mask()
    assert checked[ok].tolist() == plain[ok].tolist()
