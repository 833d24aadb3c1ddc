"""Shards ingested apart merge their statistics into exactly what ingesting the whole gives."""

from __future__ import annotations

import gzip
import itertools
import json
import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skewless.cli import main
from skewless.contract.spec import load_spec_text
from skewless.data.folder import IngestedFolder
from skewless.data.ingest import IngestError, ingest
from skewless.data.shards import ShardMergeError, merge_stats
from skewless.data.stats import ValueCounter

SPEC = load_spec_text(
    """
features:
  id: {kind: key}
  user: {kind: id, hash_buckets: 100}
  age: {kind: numeric, min: 13, max: 120}
  country: {kind: categorical, allowed_values: [US, GB, DE]}
  tags: {kind: tags, allowed_values: [a, b, c], required: false}
  title: {kind: text}
  score: {kind: numeric, required: false, default: 0.5}
  clicked: {kind: label}
"""
)

COLUMNS = ["user", "age", "country", "tags", "title", "score", "clicked"]
ROW = st.fixed_dictionaries(
    {
        "user": st.sampled_from(["u1", "u2", "u3", "u4", "u5"]),
        # A few rows fail validation (age out of range, not a number): they are not counted.
        "age": st.one_of(st.integers(13, 120).map(str), st.sampled_from(["7", "abc"])),
        "country": st.sampled_from(["US", "GB", "DE"]),
        "tags": st.sampled_from(["", "a", "a|b", "c|a|b", "b"]),
        "title": st.sampled_from(["red shoe", "Blue hat sale", "shoe", "hat hat"]),
        "score": st.one_of(st.just(""), st.floats(-1e3, 1e3, allow_nan=False).map(repr)),
        "clicked": st.sampled_from(["0", "1"]),
    }
)


def _write(path: Path, rows: list[dict[str, str]], first_id: int) -> Path:
    frame = pd.DataFrame(rows, columns=COLUMNS, dtype=object)
    frame.insert(0, "id", [f"r{first_id + i}" for i in range(len(rows))])
    frame.to_parquet(path)
    return path


def _ingest(path: Path, out: Path, chunk_rows: int = 100_000) -> Path:
    """Ingests ``path``; a shard with no rows, or none clean for training, still has statistics
    (ingestion writes every output before it fails)."""
    try:
        ingest(path, SPEC, out, max_quarantine_fraction=1.0, chunk_rows=chunk_rows)
    except IngestError as err:
        assert "no rows to ingest" in str(err) or "no clean training rows" in str(err)
    return out


def _same(merged: Any, whole: Any, where: str = "") -> None:
    """Equal, floats up to rounding (a mean over other chunks sums in another order)."""
    if isinstance(whole, dict):
        assert merged.keys() == whole.keys(), where
        for key in whole:
            _same(merged[key], whole[key], f"{where}.{key}")
    elif isinstance(whole, list):
        assert len(merged) == len(whole), where
        for i, (m, w) in enumerate(zip(merged, whole, strict=True)):
            _same(m, w, f"{where}[{i}]")
    elif isinstance(whole, float):
        assert math.isclose(merged, whole, rel_tol=1e-9, abs_tol=1e-9), (where, merged, whole)
    else:
        assert merged == whole, (where, merged, whole)


@settings(max_examples=25, deadline=None)
@given(rows=st.lists(ROW, min_size=1, max_size=60), data=st.data())
def test_merging_the_shards_statistics_gives_the_wholes(tmp_path_factory, rows, data):
    tmp = tmp_path_factory.mktemp("shards")
    cuts = sorted(data.draw(st.lists(st.integers(0, len(rows)), max_size=3)))
    bounds = [0, *cuts, len(rows)]
    shards = []
    for i, (start, end) in enumerate(itertools.pairwise(bounds)):
        path = _write(tmp / f"shard-{i}.parquet", rows[start:end], start)
        shards.append(_ingest(path, tmp / f"shard-{i}"))
    # The whole in small chunks, so its own statistics are merged chunk by chunk too.
    _ingest(_write(tmp / "whole.parquet", rows, 0), tmp / "whole", chunk_rows=7)

    merged = merge_stats(shards, SPEC, tmp / "merged")

    expected = json.loads((tmp / "whole" / "stats.json").read_text())
    _same(json.loads((tmp / "merged" / "stats.json").read_text()), expected)
    assert merged["shards"] == [str(shard) for shard in shards]
    # The shards' counts and quarantine reasons add up to the whole's.
    whole = json.loads((tmp / "whole" / "ingest_summary.json").read_text())
    counts = ("rows_in", "rows_clean", "rows_quarantined", "rows_train", "rows_eval",
              "quarantined_fraction", "reason_counts")  # fmt: skip
    assert {k: merged[k] for k in counts} == {k: whole[k] for k in counts}
    assert merged["rows_train"] == expected["train"]["rows"]
    # The merged folder is a shard like any other: merging it with nothing changes nothing.
    merge_stats([tmp / "merged"], SPEC, tmp / "again")
    _same(json.loads((tmp / "again" / "stats.json").read_text()), expected)


@settings(max_examples=50, deadline=None)
@given(parts=st.lists(st.lists(st.sampled_from("abcdefghij"), max_size=40), min_size=1, max_size=4))
def test_reduced_value_counts_are_low_by_at_most_their_stated_error(parts):
    true = Counter(v for part in parts for v in part)
    merged = ValueCounter(cap=4, keep=2)
    for part in parts:
        counter = ValueCounter(cap=4, keep=2)
        counter.update(pd.Series(part, dtype=object))
        merged.merge(counter)
    assert merged.total == sum(true.values())
    assert len(merged.counts) <= 4
    assert merged.error <= merged.total / 3  # total / (keep + 1): Misra-Gries' bound
    for value, count in true.items():
        assert count - merged.error <= merged.counts.get(value, 0) <= count, value
    assert merged.approximate == (merged.error > 0)


def test_a_shard_of_another_spec_or_without_state_is_one_clear_line(tmp_path: Path, capsys):
    rows = [{"user": "u1", "age": "30", "country": "US", "tags": "a", "title": "hat",
             "score": "", "clicked": "1"}]  # fmt: skip
    ingest(_write(tmp_path / "a.parquet", rows, 0), SPEC, tmp_path / "a")
    other = load_spec_text(SPEC.source_text.replace("max: 120", "max: 121"))
    with pytest.raises(ShardMergeError, match="was ingested under another spec"):
        merge_stats([tmp_path / "a"], other, tmp_path / "out")
    with pytest.raises(ShardMergeError, match="no shard folders"):
        merge_stats([], SPEC, tmp_path / "out")

    (tmp_path / "spec.yaml").write_text(SPEC.source_text)
    shards = [str(tmp_path / "a"), str(tmp_path / "nothing")]
    spec = str(tmp_path / "spec.yaml")
    assert main(["stats", "merge", *shards, "--spec", spec, "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing: no stats_state.json.gz" in err[0], err


def test_a_shard_twice_an_out_among_the_shards_or_a_damaged_file_is_refused(tmp_path: Path):
    rows = [{"user": "u1", "age": "30", "country": "US", "tags": "a", "title": "hat",
             "score": "", "clicked": "1"}]  # fmt: skip
    ingest(_write(tmp_path / "a.parquet", rows, 0), SPEC, tmp_path / "a")
    ingest(_write(tmp_path / "b.parquet", rows, 1), SPEC, tmp_path / "b")
    with pytest.raises(ShardMergeError, match="given twice would count twice"):
        merge_stats([tmp_path / "a", tmp_path / "b", tmp_path / "a" / "."], SPEC, tmp_path / "o")
    with pytest.raises(ShardMergeError, match="is one of the shards"):
        merge_stats([tmp_path / "a", tmp_path / "b"], SPEC, tmp_path / "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(ShardMergeError, match="is a file, not a folder"):
        merge_stats([tmp_path / "a", tmp_path / "b"], SPEC, tmp_path / "file")
    summary = IngestedFolder(tmp_path / "b").summary
    summary.write_text('{"rows_in": 1}')
    with pytest.raises(ShardMergeError, match="not an ingestion summary"):
        merge_stats([tmp_path / "a", tmp_path / "b"], SPEC, tmp_path / "o")
    with gzip.open(IngestedFolder(tmp_path / "a").stats_state, "wt") as out:
        json.dump({"format": 1, "spec_sha256": SPEC.source_sha256, "splits": {}}, out)
    with pytest.raises(ShardMergeError, match="damaged state"):
        merge_stats([tmp_path / "a"], SPEC, tmp_path / "o")
    assert not (tmp_path / "o").exists()  # nothing written by a refused merge
