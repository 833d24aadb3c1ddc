"""The offline tables keep each entity's first observation and each change of its values."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skewless.features.changes import changes


def _split(path: Path, rows: list[tuple]) -> Path:
    times = [pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(minutes=m) for _, m, _, _ in rows]
    table = pa.table(
        {
            "user_id": [r[0] for r in rows],
            "ts": pa.array(times, pa.timestamp("us", tz="UTC")),
            "country": pa.array([r[2] for r in rows], pa.string()),
            "age": pa.array([r[3] for r in rows], pa.float64()),
            "noise": [1] * len(rows),  # a column the view does not read
        }
    )
    pq.write_table(table, path, row_group_size=2)  # several row groups: several dictionaries
    return path


def test_only_first_observations_and_changes_are_kept_in_time_order(tmp_path: Path):
    train = _split(tmp_path / "train.parquet", [
        ("u1", 5, "GB", 30.0),    # back to GB after DE (rows arrive out of time order)
        ("u1", 1, "GB", 30.0),    # u1 first
        ("u2", 2, "FR", None),    # a missing number
        ("u1", 3, "DE", 30.0),    # u1 changes country
        ("u2", 4, "FR", None),    # missing again: no change
        ("u1", 7, "GB", 30.0),    # unchanged since minute 5
        ("u3", 2, None, 50.0),    # null text
        ("u3", 2, "IT", 50.0),    # same instant: the first row wins
    ])  # fmt: skip
    evaluation = _split(tmp_path / "eval.parquet", [
        ("u2", 6, "FR", 41.0),    # u2's age becomes known
        ("u3", 9, None, 50.0),    # unchanged
        ("u1", 8, "GB", 31.0),    # a birthday
    ])  # fmt: skip
    table = changes("user_id", "ts", ["country", "age"], [train, evaluation])
    assert list(table.columns) == ["user_id", "ts", "country", "age"]
    minutes = (table["ts"] - pd.Timestamp("2026-01-01", tz="UTC")) / pd.Timedelta(minutes=1)
    got = [
        (u, int(m), None if pd.isna(c) else c, None if pd.isna(a) else a)
        for u, m, c, a in zip(table["user_id"], minutes, table["country"], table["age"],
                              strict=True)
    ]  # fmt: skip
    assert got == [
        ("u1", 1, "GB", 30.0),
        ("u2", 2, "FR", None),
        ("u3", 2, None, 50.0),
        ("u1", 3, "DE", 30.0),
        ("u1", 5, "GB", 30.0),
        ("u2", 6, "FR", 41.0),
        ("u1", 8, "GB", 31.0),
    ]


def test_an_as_of_join_on_the_kept_rows_answers_as_on_every_row(tmp_path: Path):
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [
        (f"u{rng.integers(5)}", int(rng.integers(200)), str(rng.choice(["a", "b"])),
         float(rng.choice([1.0, 2.0])))
        for _ in range(400)
    ]  # fmt: skip
    split = _split(tmp_path / "s.parquet", rows)
    every = pd.read_parquet(split).drop_duplicates(["user_id", "ts"])
    kept = changes("user_id", "ts", ["country", "age"], [split])
    assert len(kept) < len(every)

    def as_of(table: pd.DataFrame, user: str, at: pd.Timestamp) -> tuple:
        seen = table[(table["user_id"] == user) & (table["ts"] <= at)]
        if seen.empty:
            return ()
        last = seen.sort_values("ts", kind="stable").iloc[-1]
        return (last["country"], float(last["age"]))

    start = pd.Timestamp("2026-01-01", tz="UTC")
    for minute in range(-1, 201, 7):
        at = start + pd.Timedelta(minutes=minute)
        for user in ("u0", "u1", "u2", "u3", "u4"):
            assert as_of(kept, user, at) == as_of(every, user, at), (user, minute)
