"""Validated ingestion: exact quarantine counts and reasons, deterministic splits, no row lost."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from object_store import ObjectStore
from support import public_taxi_csv

from skewless.contract.spec import load_spec_text
from skewless.data.ingest import IngestError, QuarantineLimitError, ingest

SPEC = load_spec_text(
    """
features:
  id: {kind: key, max_length: 8}
  age: {kind: numeric, min: 13, max: 120}
  country: {kind: categorical, allowed_values: [US, GB, DE]}
  tags: {kind: tags, allowed_values: [a, b, c], required: false}
  title: {kind: text, max_length: 20}
  score: {kind: numeric, required: false, default: 0.5}
  clicked: {kind: label}
"""
)
HEADER = ["id", "age", "country", "tags", "title", "score", "clicked"]
GOOD = ["r{i}", "30", "US", "a|b", "nice thing", "0.7", "1"]


def _write_csv(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue())
    return path


def _good_rows(n: int) -> list[list[str]]:
    return [[v.format(i=i) for v in GOOD] for i in range(n)]


def _with(row: list[str], column: str, value: str) -> list[str]:
    row = list(row)
    row[HEADER.index(column)] = value
    return row


def test_each_corruption_is_quarantined_with_its_reason(tmp_path: Path):
    rows = _good_rows(20)
    rows[1] = _with(rows[1], "age", "abc")  # wrong type
    rows[2] = _with(rows[2], "age", "")  # missing required
    rows[3] = _with(rows[3], "age", "nan")  # NaN
    rows[4] = _with(rows[4], "age", "inf")  # inf
    rows[5] = _with(rows[5], "age", "7")  # below range
    rows[6] = _with(rows[6], "age", "300")  # above range
    rows[7] = _with(rows[7], "country", "XX")  # outside domain
    rows[8] = _with(rows[8], "tags", "a|zzz")  # a tag outside domain
    rows[9] = _with(rows[9], "title", "x" * 21)  # oversized string
    rows[10] = _with(rows[10], "clicked", "2")  # label not binary
    rows[11] = _with(rows[11], "id", "r_toolong")  # key too long
    rows[12] = rows[12] + ["surplus"]  # malformed line: too many columns
    rows[13] = _with(_with(rows[13], "age", "x"), "country", "")  # two failures in one row
    rows[14] = _with(rows[14], "tags", "")  # optional, missing: kept
    rows[15] = _with(rows[15], "score", "")  # optional numeric, missing: default
    path = _write_csv(tmp_path / "raw.csv", rows)

    summary = ingest(path, SPEC, tmp_path / "out", max_quarantine_fraction=1.0).summary

    assert summary["rows_in"] == 20
    assert summary["rows_quarantined"] == 13
    assert summary["rows_clean"] == 7
    assert summary["rows_in"] == summary["rows_clean"] + summary["rows_quarantined"]
    assert summary["reason_counts"] == {
        "age: not a number": 2,
        "age: missing required value": 1,
        "age: not a finite number": 2,
        "age: below minimum 13": 1,
        "age: above maximum 120": 1,
        "country: not in allowed_values": 1,
        "country: missing required value": 1,
        "tags: tag not in allowed_values": 1,
        "title: longer than max_length 20": 1,
        "clicked: label must be 0 or 1": 1,
        "id: longer than max_length 8": 1,
        "<row>: malformed CSV line": 1,
    }
    quarantine = pd.read_parquet(tmp_path / "out" / "quarantine.parquet")
    reasons = dict(zip(quarantine["id"].fillna("<malformed>"), quarantine["reason"], strict=True))
    assert reasons["r1"] == "age: not a number ('abc')"
    assert reasons["r3"] == "age: not a finite number ('nan')"
    assert reasons["r5"] == "age: below minimum 13 (7)"
    assert reasons["r7"] == "country: not in allowed_values ('XX')"
    assert reasons["r8"] == "tags: tag not in allowed_values ('zzz')"
    assert reasons["r13"] == "age: not a number ('x'); country: missing required value"
    assert reasons["<malformed>"] == "<row>: malformed CSV line: expected 7 columns, got 8"
    malformed = quarantine[quarantine["id"].isna()].iloc[0]
    assert malformed["line_number"] == 14 and malformed["raw_line"].endswith(",surplus")
    # Raw values are kept as text, so a quarantined row can be fixed and replayed.
    assert quarantine.set_index("id").loc["r9", "title"] == "x" * 21

    clean = pd.concat(
        [pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "eval")]
    ).set_index("id")
    assert sorted(clean.index) == ["r0", "r14", "r15", "r16", "r17", "r18", "r19"]
    assert clean.loc["r14", "tags"] == ""
    assert clean.loc["r15", "score"] == 0.5
    assert clean["age"].dtype == np.float32 and clean["clicked"].dtype == np.int64


def test_event_times_are_parsed_to_utc_and_bad_ones_quarantined(tmp_path: Path):
    spec = load_spec_text(
        "features:\n  id: {kind: key}\n  at: {kind: timestamp}\n  x: {kind: numeric}\n"
        "  y: {kind: label}\n"
    )
    raw = pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e", "f", "g"],
            "at": ["2026-01-05T14:03:00Z", "2026-01-05 16:03:00+02:00", "2026-01-05T14:03:00",
                   "1767621780", "yesterday", "", "1e12"],
            "x": [1.0] * 7,
            "y": [0, 1, 0, 1, 0, 1, 0],
        }
    )  # fmt: skip
    raw.to_csv(tmp_path / "raw.csv", index=False)
    summary = ingest(tmp_path / "raw.csv", spec, tmp_path / "out", max_quarantine_fraction=1.0)
    assert summary.summary["reason_counts"] == {
        "at: not an ISO 8601 time or seconds since the epoch": 1,
        "at: missing required value": 1,
        "at: not a finite number of seconds": 1,
    }
    # Numeric text follows the number column's rule, in the same words.
    numbers = pd.DataFrame({"id": list("hijklmnopq"), "at": [1e12] + [1767621780.0] * 9,
                            "x": [1.0] * 10, "y": [0, 1] * 5})  # fmt: skip
    numbers.to_parquet(tmp_path / "numbers.parquet")
    as_number = ingest(
        tmp_path / "numbers.parquet", spec, tmp_path / "n", max_quarantine_fraction=1.0
    )
    assert as_number.summary["reason_counts"] == {"at: not a finite number of seconds": 1}
    clean = pd.concat(
        [pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "eval")]
    ).set_index("id")
    assert str(clean["at"].dtype) == "datetime64[us, UTC]"
    # An offset, no offset (UTC) and epoch seconds all name the same instant.
    assert set(clean["at"]) == {pd.Timestamp("2026-01-05T14:03:00Z")}


def test_the_public_taxi_samples_epoch_seconds_are_event_times(tmp_path: Path):
    """Data we did not generate: the Chicago taxi sample's trip_start_timestamp (epoch seconds,
    read from CSV as numbers) as the event time: every row ingests, at the instant it names."""
    spec = load_spec_text(
        "features:\n  trip_start_timestamp: {kind: timestamp}\n"
        "  trip_miles: {kind: numeric, min: 0}\n  big_tipper: {kind: label}\n"
    )
    taxi = public_taxi_csv(tmp_path)
    summary = ingest(taxi, spec, tmp_path / "out").summary
    assert (summary["rows_in"], summary["rows_quarantined"]) == (15_002, 0)
    clean = pd.concat(
        [pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "eval")]
    )
    raw = pd.read_csv(taxi, usecols=["trip_start_timestamp"])["trip_start_timestamp"]
    want = pd.to_datetime(raw, unit="s", utc=True).astype("datetime64[us, UTC]")
    assert sorted(clean["trip_start_timestamp"]) == sorted(want)
    assert clean["trip_start_timestamp"].min() >= pd.Timestamp("2013-01-01", tz="UTC")


def test_parquet_nulls_nan_and_wrong_types(tmp_path: Path):
    good = 12
    table = pa.table(
        {
            "id": ["a", "b", "c", "d", *(f"g{i}" for i in range(good))],
            "age": pa.array([30.0, None, float("nan"), 40.0, *([35.0] * good)]),
            "country": ["US", "GB", "DE", "US", *(["GB"] * good)],
            "tags": ["a", None, "b", "c", *(["c"] * good)],
            "title": ["t"] * (4 + good),
            "score": pa.array([None, 1.0, 2.0, 3.0, *([1.0] * good)]),
            "clicked": pa.array(["1", "0", "1", "yes", *(["0"] * good)]),
        }
    )
    pq.write_table(table, tmp_path / "raw.parquet")
    summary = ingest(
        tmp_path / "raw.parquet", SPEC, tmp_path / "out", max_quarantine_fraction=1.0
    ).summary
    assert summary["reason_counts"] == {
        "age: missing required value": 1,
        "age: not a finite number": 1,
        "clicked: not a number": 1,
    }
    assert summary["rows_clean"] == 1 + good
    clean = pd.concat(
        [pd.read_parquet(tmp_path / "out" / f"{s}.parquet") for s in ("train", "eval")]
    ).set_index("id")
    assert clean.loc["a", "score"] == 0.5  # a null optional number takes the spec default


def test_split_is_deterministic_and_independent_of_chunking(
    tmp_path: Path, small_parquet: Path, default_spec
):
    first = ingest(small_parquet, default_spec, tmp_path / "a").summary
    second = ingest(small_parquet, default_spec, tmp_path / "b", chunk_rows=777).summary
    assert first["rows_eval"] == second["rows_eval"]
    for split in ("train", "eval"):
        ids_a = pd.read_parquet(tmp_path / "a" / f"{split}.parquet")["event_id"]
        ids_b = pd.read_parquet(tmp_path / "b" / f"{split}.parquet")["event_id"]
        assert ids_a.tolist() == ids_b.tolist()
    # 20% eval by the spec; a stable hash of 3,000 keys lands close to it.
    assert 0.17 < first["rows_eval"] / first["rows_in"] < 0.23


def test_quarantine_limit_fails_after_writing_everything(tmp_path: Path):
    rows = _good_rows(10)
    rows[0] = _with(rows[0], "age", "old")
    rows[1] = _with(rows[1], "age", "older")
    path = _write_csv(tmp_path / "raw.csv", rows)
    with pytest.raises(QuarantineLimitError) as raised:
        ingest(path, SPEC, tmp_path / "out", max_quarantine_fraction=0.1)
    assert "quarantined 20.0% of rows (2 of 10), above the limit 10.0%" in str(raised.value)
    assert "age: not a number x2" in str(raised.value)
    summary = json.loads((tmp_path / "out" / "ingest_summary.json").read_text())
    assert summary["rows_quarantined"] == 2
    assert len(pd.read_parquet(tmp_path / "out" / "quarantine.parquet")) == 2


def test_missing_column_and_bad_files_are_clear_errors(tmp_path: Path):
    path = _write_csv(tmp_path / "raw.csv", [r[:-1] for r in _good_rows(3)], HEADER[:-1])
    with pytest.raises(IngestError, match=r"column\(s\) \['clicked'\] declared in the spec"):
        ingest(path, SPEC, tmp_path / "out")
    with pytest.raises(IngestError, match="data file not found"):
        ingest(tmp_path / "none.csv", SPEC, tmp_path / "out")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(IngestError, match=r"unsupported file type '\.json'"):
        ingest(tmp_path / "x.json", SPEC, tmp_path / "out")
    (tmp_path / "empty.csv").write_text("")
    with pytest.raises(IngestError, match="CSV file is empty"):
        ingest(tmp_path / "empty.csv", SPEC, tmp_path / "out")


def test_statistics_and_drift(tmp_path: Path):
    base = _write_csv(tmp_path / "base.csv", _good_rows(50))
    ingest(base, SPEC, tmp_path / "base")
    stats = json.loads((tmp_path / "base" / "stats.json").read_text())
    rows_total = stats["train"]["rows"] + stats["eval"]["rows"]
    assert rows_total == 50
    age = stats["train"]["features"]["age"]
    assert age["min"] == age["max"] == age["mean"] == 30.0 and age["std"] == 0.0
    tags = stats["train"]["features"]["tags"]
    assert dict(map(tuple, tags["top_values"])) == {
        "a": stats["train"]["rows"],
        "b": stats["train"]["rows"],
    }
    assert stats["train"]["features"]["id"]["distinct"] == stats["train"]["rows"]

    shifted = [_with(_with(r, "age", "60"), "country", "GB") for r in _good_rows(50)]
    new = _write_csv(tmp_path / "new.csv", shifted)
    summary = ingest(new, SPEC, tmp_path / "new", baseline_stats=tmp_path / "base").summary
    assert summary["drifted_features"] == ["age", "country"]
    drift = json.loads((tmp_path / "new" / "drift.json").read_text())
    assert drift["features"]["country"]["value"] == pytest.approx(1.0)
    assert drift["features"]["tags"]["drifted"] is False


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_data_in_the_pipelines_object_store_ingests_exactly_as_a_local_file(
    tmp_path: Path, minio: ObjectStore, fmt: str
):
    rows = _good_rows(40)
    rows[3] = _with(rows[3], "age", "abc")
    rows[7] = _with(rows[7], "country", "XX")
    if fmt == "csv":
        rows[9] = rows[9] + ["surplus"]  # a malformed line, read from the stream too
        local = _write_csv(tmp_path / "raw.csv", rows)
    else:
        local = tmp_path / "raw.parquet"
        pd.DataFrame(rows, columns=HEADER).to_parquet(local)
    uri = minio.upload(local, f"data/raw.{fmt}")

    from_disk = ingest(local, SPEC, tmp_path / "disk", max_quarantine_fraction=1.0).summary
    from_store = ingest(uri, SPEC, tmp_path / "store", max_quarantine_fraction=1.0).summary

    assert from_store["data"] == f"minio://mlpipeline/data/raw.{fmt}"
    ignore = {"data", "seconds", "rows_per_second"}
    assert {k: v for k, v in from_store.items() if k not in ignore} == {
        k: v for k, v in from_disk.items() if k not in ignore
    }
    assert from_store["rows_quarantined"] == (3 if fmt == "csv" else 2)
    for name in ("train", "eval", "quarantine"):
        pd.testing.assert_frame_equal(
            pd.read_parquet(tmp_path / "store" / f"{name}.parquet"),
            pd.read_parquet(tmp_path / "disk" / f"{name}.parquet"),
        )
    with pytest.raises(
        IngestError, match=r"data file not found: minio://mlpipeline/data/none\.csv"
    ):
        ingest("minio://mlpipeline/data/none.csv", SPEC, tmp_path / "none")


def test_object_store_data_without_credentials_names_what_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID", raising=False)
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    with pytest.raises(IngestError, match="AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        ingest("minio://mlpipeline/data/raw.csv", SPEC, tmp_path / "out")


def test_files_that_are_not_utf8_csv_or_readable_parquet_are_one_clear_error(tmp_path: Path):
    """Issue 12 item 9: each of these was a UnicodeDecodeError, KeyError or Arrow error."""
    import gzip

    text = _write_csv(tmp_path / "good.csv", _good_rows(40)).read_text()
    cases = {
        "gz.csv": (gzip.compress(text.encode()), "file is gzip-compressed; decompress it"),
        "utf16.csv": (text.encode("utf-16"), "file is not UTF-8 text (UTF-16 or binary?)"),
        "latin1.csv": (
            text.replace("title", "títle", 1).encode("latin-1"),
            "header line is not UTF-8 text (byte 21); save the file as UTF-8",
        ),
        "twice.csv": (
            text.replace("score", "age", 1).encode(),
            "duplicate column name(s) in the header: ['age']",
        ),
    }
    good_parquet = tmp_path / "good.parquet"
    pd.read_csv(tmp_path / "good.csv", dtype=str).to_parquet(good_parquet)
    whole = good_parquet.read_bytes()
    cases["cut.parquet"] = (whole[: len(whole) // 2], "cannot be read as Parquet")
    for name, (data, message) in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(IngestError) as raised:
            ingest(tmp_path / name, SPEC, tmp_path / f"out-{name}")
        assert str(raised.value).startswith(f"{tmp_path / name}: ") and message in str(raised.value)

    # A cell (not the header) that is not UTF-8 fails its row, not the file.
    rows = _good_rows(40)
    rows[3] = _with(rows[3], "title", "caf\xe9")
    (tmp_path / "cell.csv").write_bytes(
        _write_csv(tmp_path / "cell-text.csv", rows).read_text().encode("latin-1")
    )
    summary = ingest(tmp_path / "cell.csv", SPEC, tmp_path / "out-cell").summary
    assert summary["rows_quarantined"] == 1
    assert summary["reason_counts"] == {"title: not valid UTF-8 text": 1}

    # A Parquet list column where the spec wants a value: each row is quarantined naming it.
    frame = pd.read_csv(tmp_path / "good.csv", dtype=str)
    frame["country"] = [["US", "GB"]] * len(frame)
    frame.to_parquet(tmp_path / "lists.parquet")
    with pytest.raises(QuarantineLimitError, match="country: expected text, got a list x40"):
        ingest(tmp_path / "lists.parquet", SPEC, tmp_path / "out-lists")
