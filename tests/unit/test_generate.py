"""The synthetic data: deterministic, streamed in chunks, and carrying a learnable signal."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from skewless.data import generate
from skewless.data import world as planted
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
    csv["event_timestamp"] = pd.to_datetime(csv["event_timestamp"], utc=True)
    pd.testing.assert_frame_equal(parquet, csv, check_dtype=False)


def test_event_times_agree_with_the_context_and_advance_a_week_per_chunk(monkeypatch):
    monkeypatch.setattr(generate, "CHUNK_ROWS", 500)
    rows = pd.concat(generate.iter_chunks(1_500, 4), ignore_index=True)
    times = rows["event_timestamp"]
    assert str(times.dt.tz) == "UTC"
    assert (times.dt.hour == rows["hour"]).all()
    assert (times.dt.day_name().str[:3] == rows["weekday"]).all()
    week = (times - pd.Timestamp(planted.EPOCH, tz="UTC")).dt.days // 7
    assert week.tolist() == [0] * 500 + [1] * 500 + [2] * 500


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
    np.testing.assert_allclose(planted.price_sensitivity(ages), [1.0, 1.0, 0.6, 0.2, 0.2])


def test_exposure_is_skewed_and_follows_the_users_preferences():
    world = planted.make_world(2)
    frame = pd.concat(generate.iter_chunks(40_000, 2))
    counts = frame["item_id"].value_counts()
    # Popularity: the top 1% of the catalogue gets far more than 1% of the impressions.
    assert counts.head(world.n_items // 100).sum() / len(frame) > 0.05
    # Browsing: an item's primary category is far more often one of the user's history's
    # categories than a draw blind to the user would make it.
    primary = frame["item_tags"].str.split("|").str[0]
    history = frame["history"].str.split("|")
    shown = [p in h for p, h in zip(primary, history, strict=True) if h != [""]]
    blind = [p in h for p, h in zip(primary.sample(frac=1.0, random_state=0), history,
                                    strict=True) if h != [""]]  # fmt: skip
    assert np.mean(shown) > 2.5 * np.mean(blind)


def test_generate_writes_the_catalogue_of_the_asked_size(tmp_path: Path):
    import subprocess
    import sys

    out, catalogue = tmp_path / "d.parquet", tmp_path / "catalogue.parquet"
    completed = subprocess.run(
        [sys.executable, "-m", "skewless.cli", "generate", "--rows", "2000", "--items", "700",
         "--out", str(out), "--catalogue", str(catalogue), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    items = pd.read_parquet(catalogue)
    assert list(items.columns) == ["item_id", "title", "item_tags", "price"]
    assert len(items) == 700 and items["item_id"].is_unique
    shown = pd.read_parquet(out)
    assert set(shown["item_id"]) <= set(items["item_id"])
    # Each shown row carries its item's catalogue features.
    joined = shown.merge(items, on="item_id", suffixes=("", "_catalogue"))
    assert (joined["title"] == joined["title_catalogue"]).all()
    assert np.allclose(joined["price"], joined["price_catalogue"])
    bad = subprocess.run(
        [sys.executable, "-m", "skewless.cli", "generate", "--rows", "10", "--out", str(out),
         "--catalogue", str(tmp_path / "c.csv"), "--quiet"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode != 0 and "--catalogue" in bad.stderr and "Traceback" not in bad.stderr
