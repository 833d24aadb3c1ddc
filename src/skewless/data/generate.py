"""Deterministic synthetic interaction data for the default recommendation-ranking use case.

Each row is one impression: a user (demographics and recent history) sees an item (title, category
tags, price) in a context (hour, weekday) and clicks or not. The click is drawn from a planted
probability model with non-linear structure, and that true probability is written beside the label
(``true_click_prob``) so the Bayes-optimal AUC of any split can be computed. The planted model is
documented in docs/data.md; :func:`click_logit` is its single definition.

Rows are produced in fixed-size chunks, each from its own seeded generator, so the output depends
only on ``(rows, seed)``, a short run is a prefix of a longer one, and memory stays bounded at any
row count.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skewless.data.world import (
    CATEGORIES,
    COUNTRIES,
    DEVICES,
    EPOCH,
    MAX_HISTORY,
    N_ITEMS,
    N_USERS,
    WEEKDAYS,
    World,
    click_logit,
    draw_items,
    make_world,
)
from skewless.progress import Progress

CHUNK_ROWS = 100_000


def generate_chunk(world: World, seed: int, chunk_index: int, rows: int) -> pd.DataFrame:
    """Draws ``rows`` impressions for chunk ``chunk_index``; a pure function of its arguments."""
    rng = np.random.default_rng([seed, chunk_index])
    first_row = chunk_index * CHUNK_ROWS
    # Heavy users: a power law over user indices, as in real interaction logs.
    user = np.minimum((N_USERS * rng.power(0.6, rows)).astype(np.int64), N_USERS - 1)
    item = draw_items(world, rng, user)
    own_device = rng.random(rows) < 0.85
    device = np.where(own_device, world.user_device[user], rng.choice(len(DEVICES), rows))
    hour = rng.integers(0, 24, rows)
    weekday = rng.integers(0, 7, rows)

    history_len = rng.integers(0, MAX_HISTORY + 1, rows)
    draws = rng.random((rows, MAX_HISTORY))
    history = (world.user_pref_cdf[user][:, None, :] < draws[:, :, None]).sum(axis=2)
    history = np.minimum(history, len(CATEGORIES) - 1)
    features, logit = impressions(world, user, item, device, hour, weekday, history, history_len)
    prob = 1.0 / (1.0 + np.exp(-logit))
    clicked = (rng.random(rows) < prob).astype(np.int64)
    features.insert(0, "event_id", [f"e{n:010d}" for n in range(first_row, first_row + rows)])
    features.insert(1, "event_timestamp", event_times(chunk_index, weekday, hour, rng))
    features["clicked"] = clicked
    features["true_click_prob"] = prob.round(6)
    return features


def event_times(
    week: int, weekday: np.ndarray, hour: np.ndarray, rng: np.random.Generator
) -> pd.Series:
    """UTC event times: week ``week`` after :data:`EPOCH`, on each row's weekday and hour, at a
    random microsecond of that hour (drawn after everything else, so the other columns do not
    depend on it)."""
    offset_us = rng.integers(0, 3_600_000_000, len(hour))
    days = week * 7 + np.asarray(weekday, dtype=np.int64)
    times = (
        EPOCH
        + days.astype("timedelta64[D]")
        + np.asarray(hour, dtype=np.int64).astype("timedelta64[h]")
        + offset_us.astype("timedelta64[us]")
    )
    return pd.Series(pd.to_datetime(times, utc=True))


def impressions(
    world: World,
    user: np.ndarray,
    item: np.ndarray,
    device: np.ndarray,
    hour: np.ndarray,
    weekday: np.ndarray,
    history: np.ndarray,
    history_len: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The raw features of impressions and their planted click log-odds.

    The one place that turns the world's indices into the columns a model sees: the generator
    uses it for training data, and the simulator (:mod:`skewless.experiments.simulate`) for live
    requests, so both describe a user and an item the same way.

    Args:
        world: The population.
        user: User index per impression.
        item: Item index per impression.
        device: Device index per impression.
        hour: Hour of day per impression.
        weekday: Weekday index per impression.
        history: Category indices of the user's recent history, ``(rows, MAX_HISTORY)``.
        history_len: How many of those entries are real, per impression.

    Returns:
        The feature columns (``user_id`` ... ``weekday``) and :func:`click_logit` per row.
    """
    rows = len(user)
    in_history = np.arange(MAX_HISTORY)[None, :] < history_len[:, None]
    item_tags = world.item_tags[item]
    hit = (history[:, :, None] == item_tags[:, None, :]).any(axis=2) & in_history
    affinity = hit.sum(axis=1) / np.maximum(history_len, 1)

    age = world.user_age[user]
    price = world.item_price[item]
    country = world.user_country[user]
    logit = click_logit(
        affinity=affinity,
        has_history=history_len > 0,
        age=age,
        price=price,
        keyword_effect=world.item_keyword_effect[item],
        quality=world.item_quality[item],
        device=device,
        hour=hour,
        weekday=weekday,
        country=country,
    )
    names = np.asarray(CATEGORIES, dtype=object)
    history_str = [
        "|".join(names[row[:length]]) for row, length in zip(history, history_len, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "user_id": [f"u{u:06d}" for u in user],
            "age": age,
            "country": np.asarray(COUNTRIES, dtype=object)[country],
            "device": np.asarray(DEVICES, dtype=object)[device],
            "history": history_str,
            "item_id": item_ids(item),
            "title": world.item_title[item],
            "item_tags": tags_text(item_tags),
            "price": price,
            "hour": hour,
            "weekday": np.asarray(WEEKDAYS, dtype=object)[weekday],
        },
        index=pd.RangeIndex(rows),
    )
    return frame, logit


def item_ids(items: np.ndarray) -> list[str]:
    """The item id strings of item indices (``i00042``)."""
    return [f"i{i:05d}" for i in items]


def tags_text(tags: np.ndarray) -> list[str]:
    """Category tag strings (``books|music``) of rows of tag indices (-1 is no tag)."""
    names = np.asarray(CATEGORIES, dtype=object)
    return ["|".join(names[row[row >= 0]]) for row in tags]


def iter_chunks(rows: int, seed: int, items: int = N_ITEMS) -> Iterator[pd.DataFrame]:
    """Yields the data for ``(rows, seed, items)`` in chunks of at most :data:`CHUNK_ROWS` rows."""
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    world = make_world(seed, items)
    for chunk_index, start in enumerate(range(0, rows, CHUNK_ROWS)):
        # Always draw a whole chunk and cut the last one, so that the rows of a short run are
        # exactly the first rows of any longer run with the same seed.
        chunk = generate_chunk(world, seed, chunk_index, CHUNK_ROWS)
        yield chunk.iloc[: rows - start] if rows - start < CHUNK_ROWS else chunk


def catalogue(world: World) -> pd.DataFrame:
    """The whole catalogue: one row per item with the item features the data carries."""
    return pd.DataFrame(
        {
            "item_id": item_ids(np.arange(world.n_items)),
            "title": world.item_title,
            "item_tags": tags_text(world.item_tags),
            "price": world.item_price,
        }
    )


def write_catalogue(seed: int, out: str | Path, items: int = N_ITEMS) -> Path:
    """Writes the catalogue of ``(seed, items)`` as Parquet (every item, shown or not)."""
    path = Path(out)
    if path.suffix.lower() != ".parquet":
        raise ValueError(f"{path}: name the catalogue file .parquet")
    path.parent.mkdir(parents=True, exist_ok=True)
    catalogue(make_world(seed, items)).to_parquet(path, index=False, compression="zstd")
    return path


def write_dataset(
    rows: int, seed: int, out: str | Path, *, items: int = N_ITEMS, show_progress: bool = True
) -> Path:
    """Writes generated data to ``out``: CSV when the name ends in ``.csv``, else ``.parquet``.

    Raises:
        ValueError: ``out`` ends in neither.

    Args:
        rows: Number of rows.
        seed: Seed; the same ``(rows, seed, items)`` always gives the same bytes.
        out: Output file path; parent folders are created.
        items: Size of the item catalogue.
        show_progress: Print a progress bar to stderr.

    Returns:
        The path written.
    """
    path = Path(out)
    if path.suffix.lower() not in (".csv", ".parquet"):
        raise ValueError(f"{path}: name the file .parquet or .csv (its format follows the name)")
    path.parent.mkdir(parents=True, exist_ok=True)
    is_csv = path.suffix.lower() == ".csv"
    writer: pq.ParquetWriter | pacsv.CSVWriter | None = None
    progress = Progress("generate", total=rows, enabled=show_progress)
    try:
        for frame in iter_chunks(rows, seed, items):
            table = pa.Table.from_pandas(frame, preserve_index=False)
            if writer is None:
                writer = (
                    pacsv.CSVWriter(path, table.schema)
                    if is_csv
                    else pq.ParquetWriter(path, table.schema, compression="zstd")
                )
            writer.write_table(table)
            progress.advance(len(frame))
    finally:
        if writer is not None:
            writer.close()
        progress.close()
    return path
