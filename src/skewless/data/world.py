"""The planted world behind the default data: users, a catalogue with popularity skew, and the
click model.

:func:`click_logit` is the click model's single definition (documented in docs/data.md); the
generator (:mod:`skewless.data.generate`) draws impressions from this world, and the simulator
(:mod:`skewless.experiments.simulate`) draws the clicks of live traffic from the same model.
"""

from __future__ import annotations

import dataclasses

import numpy as np

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
