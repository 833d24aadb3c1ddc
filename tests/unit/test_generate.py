"""The synthetic data: deterministic, streamed in chunks, and carrying a learnable signal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from skewless.data import generate
from skewless.data.ingest import ingest
from skewless.evaluation import metrics


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_same_rows_and_seed_give_the_same_bytes(tmp_path: Path):
    a = generate.write_dataset(2_500, 5, tmp_path / "a.parquet", show_progress=False)
    b = generate.write_dataset(2_500, 5, tmp_path / "b.parquet", show_progress=False)
    c = generate.write_dataset(2_500, 6, tmp_path / "c.parquet", show_progress=False)
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)


def test_csv_and_parquet_hold_the_same_rows(tmp_path: Path):
    parquet = pd.read_parquet(
        generate.write_dataset(1_000, 3, tmp_path / "d.parquet", show_progress=False)
    )
    csv = pd.read_csv(
        generate.write_dataset(1_000, 3, tmp_path / "d.csv", show_progress=False),
        keep_default_na=False,
    )
    pd.testing.assert_frame_equal(parquet, csv, check_dtype=False)


def test_chunks_are_a_prefix_of_longer_runs(monkeypatch):
    # Rows depend only on (seed, chunk index), so a short run is the start of a long one.
    monkeypatch.setattr(generate, "CHUNK_ROWS", 400)
    short = pd.concat(generate.iter_chunks(600, 9))
    long = pd.concat(generate.iter_chunks(1_300, 9))
    pd.testing.assert_frame_equal(short, long.iloc[:600])
    assert long["event_id"].is_unique


def test_generated_data_is_valid_under_the_default_spec(
    tmp_path: Path, small_parquet: Path, default_spec
):
    summary = ingest(small_parquet, default_spec, tmp_path / "out").summary
    assert summary["rows_quarantined"] == 0
    assert summary["rows_clean"] == 3_000


def test_planted_model_has_signal_and_the_oracle_matches_it():
    frame = pd.concat(generate.iter_chunks(20_000, 1))
    labels = frame["clicked"].to_numpy()
    truth = frame["true_click_prob"].to_numpy()
    assert 0.12 < labels.mean() < 0.3
    # The label is drawn from the written probability: rates agree within sampling error.
    assert abs(labels.mean() - truth.mean()) < 0.01
    assert 0.7 < metrics.bayes_optimal_auc(labels, truth) < 0.8
    # Affinity is planted: rows whose history shares the item's category click more.
    shares = [
        bool(set(h.split("|")) & set(t.split("|"))) if h else False
        for h, t in zip(frame["history"], frame["item_tags"], strict=True)
    ]
    shares_arr = np.array(shares)
    assert labels[shares_arr].mean() > labels[~shares_arr].mean() + 0.05


def test_price_sensitivity_falls_with_age():
    ages = np.array([18, 25, 40, 55, 70])
    np.testing.assert_allclose(generate.price_sensitivity(ages), [1.0, 1.0, 0.6, 0.2, 0.2])
