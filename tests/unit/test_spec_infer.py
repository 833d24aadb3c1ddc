"""`spec infer` drafts a spec from data we did not generate, and ingestion accepts that data."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from support import public_taxi_csv

from skewless.contract.infer import InferError, infer_spec
from skewless.contract.spec import load_spec_text
from skewless.data.ingest import ingest


@pytest.fixture(scope="module")
def taxi(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return public_taxi_csv(tmp_path_factory.mktemp("taxi"))


def test_a_draft_for_the_public_taxi_sample_is_a_valid_spec_that_ingests_every_row(taxi, tmp_path):
    text = infer_spec(taxi, label="big_tipper", exclude=("tips",))
    spec = load_spec_text(text)
    kinds = {name: feature.kind for name, feature in spec.features.items()}
    assert kinds["big_tipper"] == "label"
    assert kinds["fare"] == "numeric" and spec.features["fare"].min_value == 0
    assert kinds["trip_start_hour"] == "categorical"  # whole numbers, 24 values: a code
    assert spec.features["payment_type"].allowed_values is not None
    assert "Credit Card" in spec.features["payment_type"].allowed_values
    company = spec.features["company"]  # a third of the rows have no company
    assert company.kind == "categorical" and not company.required and company.default == ""
    assert "tips" not in spec.features and "pickup_census_tract" not in spec.features
    assert "# left out: pickup_census_tract: a single value" in text

    result = ingest(taxi, spec, tmp_path / "out")
    assert result.summary["rows_in"] == 15_002
    assert result.summary["rows_quarantined"] == 0
    clean = pd.read_parquet(result.files.train)
    assert set(clean["trip_start_hour"]) <= {str(h) for h in range(24)}


def test_integer_ids_blanks_and_free_text_get_kinds_and_defaults(tmp_path):
    rows = 400
    frame = pd.DataFrame(
        {
            "user": [1000 + i for i in range(rows)],
            "item": [f"item-{i % 350}" for i in range(rows)],
            "price": [None if i % 10 == 0 else 2.5 * (i % 40) for i in range(rows)],
            "review": [f"a fine and useful thing number {i}" for i in range(rows)],
            "tags": [f"t{i % 5}|t{i % 7}" for i in range(rows)],
            "label": [i % 2 for i in range(rows)],
        }
    )
    data = tmp_path / "data.parquet"
    frame.to_parquet(data)
    spec = load_spec_text(infer_spec(data, label="label", key="user"))
    kinds = {name: feature.kind for name, feature in spec.features.items()}
    assert kinds == {
        "user": "key",
        "item": "categorical",
        "price": "numeric",
        "review": "text",
        "tags": "tags",
        "label": "label",
    }
    price = spec.features["price"]  # blanks in a tenth of the rows: optional, the median stands in
    assert not price.required and price.default == frame["price"].median()


def test_the_first_time_column_is_the_event_time(tmp_path):
    rows = 60
    start = pd.Timestamp("2026-03-01", tz="UTC")
    frame = pd.DataFrame(
        {
            "seen": [(start + pd.Timedelta(minutes=7 * i)).isoformat() for i in range(rows)],
            "shipped": pd.date_range(start, periods=rows, freq="h"),  # a second time column
            "x": [float(i % 13) for i in range(rows)],
            "label": [i % 2 for i in range(rows)],
        }
    )
    data = tmp_path / "data.csv"
    frame.to_csv(data, index=False)
    draft = infer_spec(data, label="label")
    spec = load_spec_text(draft)
    assert spec.event_time is not None and spec.event_time.name == "seen"
    assert "shipped" not in spec.features
    assert "a second time column (the first is the event time)" in draft


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"label": "nope"}, "--label 'nope' is not a column"),
        ({"label": "a"}, "--label 'a' must hold only 0/1 or true/false"),
        ({"label": "y", "key": "k"}, "--key 'k' is not a column"),
    ],
)
def test_bad_arguments_are_one_clear_error(tmp_path, kwargs, message):
    data = tmp_path / "d.csv"
    data.write_text("a,y\n3.5,1\n4.5,0\n")
    with pytest.raises(InferError, match=message):
        infer_spec(data, **kwargs)


def test_unreadable_files_are_one_clear_error(tmp_path):
    with pytest.raises(InferError, match="data file not found"):
        infer_spec(tmp_path / "missing.csv", label="y")
    gz = tmp_path / "d.csv"
    gz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(InferError, match="gzip-compressed"):
        infer_spec(gz, label="y")
    bad = tmp_path / "d.parquet"
    bad.write_bytes(b"PAR1 not really")
    with pytest.raises(InferError, match="cannot be read"):
        infer_spec(bad, label="y")


def test_the_default_data_drafts_a_spec_that_ingests_every_row(small_parquet, tmp_path):
    spec = load_spec_text(
        infer_spec(small_parquet, label="clicked", key="event_id", exclude=("true_click_prob",))
    )
    kinds = {name: feature.kind for name, feature in spec.features.items()}
    assert kinds["age"] == "numeric" and kinds["hour"] == "categorical"
    assert kinds["history"] == "tags" and not spec.features["history"].required
    assert kinds["event_id"] == "key" and "true_click_prob" not in kinds
    result = ingest(small_parquet, spec, tmp_path / "out")
    assert result.summary["rows_quarantined"] == 0
