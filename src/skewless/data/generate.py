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

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skewless.progress import Progress

CHUNK_ROWS = 100_000
N_USERS = 20_000
N_ITEMS = 50_000  # the default catalogue; ``items=`` sets another size
MAX_HISTORY = 8
# Exposure follows a Zipf-like law over a random popularity rank, as impressions do in real logs:
# the share of item ``r`` (0 = most shown) is proportional to ``(r + POPULARITY_OFFSET) ** -a``.
POPULARITY_EXPONENT = 0.6
POPULARITY_OFFSET = 50
# Most impressions come from browsing: a category drawn from the user's preferences, then an item
# of that category by popularity; the rest are drawn from the whole catalogue by popularity.
BROWSE_SHARE = 0.95

CATEGORIES = (
    "books", "music", "movies", "games", "garden", "kitchen", "sports", "outdoors",
    "toys", "baby", "beauty", "health", "fashion", "shoes", "jewelry", "watches",
    "phones", "laptops", "cameras", "audio", "pets", "office", "auto", "tools",
)  # fmt: skip
COUNTRIES = ("US", "GB", "DE", "FR", "IN", "BR", "JP", "CA", "ES", "MX")
COUNTRY_WEIGHTS = (0.30, 0.10, 0.09, 0.08, 0.12, 0.08, 0.07, 0.06, 0.05, 0.05)
COUNTRY_EFFECT = (0.10, 0.05, -0.05, -0.05, 0.15, 0.10, -0.15, 0.0, -0.05, 0.05)
DEVICES = ("mobile", "desktop", "tablet")
DEVICE_WEIGHTS = (0.6, 0.3, 0.1)
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
ADJECTIVES = ("classic", "modern", "compact", "deluxe", "essential", "smart", "vintage", "pro")
KEYWORDS = {"sale": 0.7, "bestseller": 0.45, "refurbished": -0.6}
KEYWORD_RATES = {"sale": 0.15, "bestseller": 0.10, "refurbished": 0.08}
NOUNS_PER_CATEGORY = 3
# Event time: chunk k of the data is week k after EPOCH (a Monday), and each impression falls in
# its weekday and hour, so the timestamp agrees with the context features.
EPOCH = np.datetime64("2026-01-05T00:00:00", "us")
BASE_LOGIT = -1.6
AFFINITY_WEIGHT = 2.4
PRICE_CENTER = 3.4


@dataclasses.dataclass(frozen=True)
class World:
    """The fixed population of users and items that every chunk samples from."""

    user_age: np.ndarray
    user_country: np.ndarray
    user_device: np.ndarray
    user_pref_cdf: np.ndarray
    item_tags: np.ndarray
    item_n_tags: np.ndarray
    item_price: np.ndarray
    item_quality: np.ndarray
    item_title: np.ndarray
    item_keyword_effect: np.ndarray
    item_exposure_cdf: np.ndarray
    category_items: tuple[np.ndarray, ...]
    category_exposure_cdf: tuple[np.ndarray, ...]

    @property
    def n_items(self) -> int:
        """Size of the catalogue."""
        return len(self.item_price)


def make_world(seed: int, items: int = N_ITEMS) -> World:
    """Draws the user population and a catalogue of ``items`` items for ``seed``."""
    if items < 1:
        raise ValueError(f"items must be at least 1, got {items}")
    rng = np.random.default_rng([seed, 0xC0FFEE])
    n_cat = len(CATEGORIES)
    age = np.clip(rng.normal(36, 13, N_USERS), 16, 85).round().astype(np.int64)
    country = rng.choice(len(COUNTRIES), N_USERS, p=COUNTRY_WEIGHTS)
    device = rng.choice(len(DEVICES), N_USERS, p=DEVICE_WEIGHTS)
    prefs = rng.dirichlet(np.full(n_cat, 0.25), N_USERS)
    pref_cdf = np.cumsum(prefs, axis=1)
    pref_cdf[:, -1] = 1.0

    n_tags = rng.choice([1, 2, 3], items, p=[0.5, 0.35, 0.15])
    tags = np.full((items, 3), -1, dtype=np.int64)
    primary = rng.integers(0, n_cat, items)
    tags[:, 0] = primary
    for slot in (1, 2):
        extra = (primary + rng.integers(1, n_cat, items)) % n_cat
        tags[:, slot] = np.where(n_tags > slot, extra, -1)
    category_price = rng.normal(PRICE_CENTER, 0.6, n_cat)
    price = np.exp(rng.normal(category_price[primary], 0.7)).round(2).clip(0.99, 5000)
    quality = rng.normal(0.0, 0.25, items)

    adjective = rng.integers(0, len(ADJECTIVES), items)
    noun = rng.integers(0, NOUNS_PER_CATEGORY, items)
    has_keyword = rng.random((items, len(KEYWORDS))) < np.array(list(KEYWORD_RATES.values()))
    keyword_effect = has_keyword @ np.array([KEYWORDS[k] for k in KEYWORD_RATES])
    keywords = list(KEYWORD_RATES)
    titles = [
        " ".join(
            [ADJECTIVES[a], f"{CATEGORIES[c]}{n}", CATEGORIES[c]]
            + [k for k, has in zip(keywords, row, strict=True) if has]
        ).capitalize()
        for a, c, n, row in zip(adjective, primary, noun, has_keyword, strict=True)
    ]
    rank = rng.permutation(items)
    exposure = (rank + POPULARITY_OFFSET) ** -POPULARITY_EXPONENT
    exposure_cdf = _cdf(exposure)
    category_items = tuple(np.flatnonzero(primary == c) for c in range(n_cat))
    category_cdf = tuple(_cdf(exposure[members]) for members in category_items)
    return World(
        user_age=age,
        user_country=country,
        user_device=device,
        user_pref_cdf=pref_cdf,
        item_tags=tags,
        item_n_tags=n_tags,
        item_price=price,
        item_quality=quality,
        item_title=np.array(titles, dtype=object),
        item_keyword_effect=keyword_effect,
        item_exposure_cdf=exposure_cdf,
        category_items=category_items,
        category_exposure_cdf=category_cdf,
    )


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(weights / max(weights.sum(), 1e-300))
    if len(cdf):
        cdf[-1] = 1.0
    return cdf


def draw_items(world: World, rng: np.random.Generator, user: np.ndarray) -> np.ndarray:
    """Which item each impression of ``user`` shows: browsing (:data:`BROWSE_SHARE`) or global.

    Browsing draws a category from the user's preferences, then an item of it by popularity;
    a category with no items (a tiny catalogue) falls back to the global draw.
    """
    rows = len(user)
    item = np.minimum(np.searchsorted(world.item_exposure_cdf, rng.random(rows)), world.n_items - 1)
    browse = rng.random(rows) < BROWSE_SHARE
    category = (world.user_pref_cdf[user] < rng.random(rows)[:, None]).sum(axis=1)
    category = np.minimum(category, len(CATEGORIES) - 1)
    pick = rng.random(rows)
    for c, members in enumerate(world.category_items):
        rows_c = browse & (category == c)
        if len(members) and rows_c.any():
            at = np.searchsorted(world.category_exposure_cdf[c], pick[rows_c])
            item[rows_c] = members[np.minimum(at, len(members) - 1)]
    return item


def price_sensitivity(age: np.ndarray) -> np.ndarray:
    """Planted price sensitivity: 1.0 at 25 or younger, 0.2 at 55 or older, linear between."""
    return np.interp(age, [25, 55], [1.0, 0.2])


def click_logit(
    *,
    affinity: np.ndarray,
    has_history: np.ndarray,
    age: np.ndarray,
    price: np.ndarray,
    keyword_effect: np.ndarray,
    quality: np.ndarray,
    device: np.ndarray,
    hour: np.ndarray,
    weekday: np.ndarray,
    country: np.ndarray,
) -> np.ndarray:
    """The planted model: log-odds of a click. See docs/data.md for the reasoning per term.

    Args:
        affinity: Share of the user's history entries that fall in one of the item's categories.
        has_history: Whether the user has any history (cold-start users get no affinity term).
        age: User age in years.
        price: Item price.
        keyword_effect: Sum of the title keywords' planted effects.
        quality: Latent per-item quality (learnable only through the item id).
        device: Index into :data:`DEVICES`.
        hour: Hour of day, 0-23.
        weekday: Index into :data:`WEEKDAYS`.
        country: Index into :data:`COUNTRIES`.

    Returns:
        The log-odds of a click for each row.
    """
    affinity_term = np.where(has_history, AFFINITY_WEIGHT * np.sqrt(affinity) - 0.6, 0.0)
    price_term = -price_sensitivity(age) * (np.log(price) - PRICE_CENTER)
    evening_mobile = (device == DEVICES.index("mobile")) & (hour >= 19)
    office_desktop = (
        (device == DEVICES.index("desktop")) & (hour >= 9) & (hour <= 17) & (weekday < 5)
    )
    context_term = 0.6 * evening_mobile + 0.35 * office_desktop
    return (
        BASE_LOGIT
        + affinity_term
        + price_term
        + keyword_effect
        + quality
        + context_term
        + np.asarray(COUNTRY_EFFECT)[country]
    )


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
