"""Streaming per-feature statistics of a data split, and drift between two such summaries.

Every accumulator here has bounded memory whatever the row count: numeric moments are merged per
chunk (Chan et al.), distinct counts use HyperLogLog, and value counters are Misra-Gries summaries:
exact until they pass a cap, then reduced to their most frequent entries, each count low by at most
``count_error`` (never more than ``value_total / (COUNTER_PRUNE_TO + 1)``).

Every accumulator also merges with another of its kind (``merge``), so the statistics of shards
ingested apart merge into those of the whole (see :mod:`skewless.data.shards`): exactly for counts,
missing counts, min, max and the HyperLogLog registers, up to float rounding for mean and variance,
and within ``count_error`` for value counts once a counter has been reduced.
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from skewless.contract.kinds import tokens_pandas
from skewless.contract.spec import Feature, FeatureSpec

TOP_VALUES_KEPT = 50
COUNTER_CAP = 100_000
COUNTER_PRUNE_TO = 20_000
HLL_PRECISION = 14


class Moments:
    """Count, min, max, mean and variance of a stream of numbers."""

    def __init__(self) -> None:
        """Starts empty."""
        self.count = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.min = math.inf
        self.max = -math.inf

    def update(self, values: np.ndarray) -> None:
        """Merges a chunk of finite values."""
        if values.size == 0:
            return
        chunk = Moments()
        chunk.count = int(values.size)
        chunk.mean = float(values.mean())
        chunk.m2 = float(((values - chunk.mean) ** 2).sum())
        chunk.min, chunk.max = float(values.min()), float(values.max())
        self.merge(chunk)

    def merge(self, other: Moments) -> None:
        """Adds another stream's moments (Chan et al.'s parallel update: exact up to rounding)."""
        if other.count == 0:
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    def to_dict(self) -> dict[str, float | None]:
        """Summary as JSON-ready numbers (None when empty)."""
        if self.count == 0:
            return {"min": None, "max": None, "mean": None, "std": None}
        return {
            "min": self.min,
            "max": self.max,
            "mean": self.mean,
            "std": math.sqrt(self.m2 / self.count),
        }


class HyperLogLog:
    """Approximate distinct count (about 1% standard error at the default precision)."""

    def __init__(self, precision: int = HLL_PRECISION) -> None:
        """Allocates ``2**precision`` registers."""
        self.precision = precision
        self.registers = np.zeros(1 << precision, dtype=np.uint8)

    def update(self, values: np.ndarray) -> None:
        """Adds a chunk of values (any hashable objects)."""
        if values.size == 0:
            return
        hashes = pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)
        index = (hashes >> np.uint64(64 - self.precision)).astype(np.int64)
        rest = (hashes << np.uint64(self.precision)) | np.uint64(1 << (self.precision - 1))
        # Leading zeros of `rest` plus one: 64 minus its bit length.
        bit_length = np.floor(np.log2(rest.astype(np.float64))).astype(np.int64) + 1
        rank = (64 - bit_length + 1).astype(np.uint8)
        np.maximum.at(self.registers, index, rank)

    def merge(self, other: HyperLogLog) -> None:
        """Adds another sketch of the same precision: the union's registers, exactly."""
        np.maximum(self.registers, other.registers, out=self.registers)

    def estimate(self) -> int:
        """The distinct-count estimate, with the small-range correction."""
        m = self.registers.size
        alpha = 0.7213 / (1 + 1.079 / m)
        raw = alpha * m * m / float(np.sum(np.exp2(-self.registers.astype(np.float64))))
        zeros = int((self.registers == 0).sum())
        if raw <= 2.5 * m and zeros:
            return round(m * math.log(m / zeros))
        return round(raw)


class ValueCounter:
    """Counts values; past ``cap`` entries, a Misra-Gries reduction to at most ``keep``.

    A reduction subtracts the ``keep + 1``-th largest count from every count and drops those left
    at zero or below, so each reduction removes at least ``keep + 1`` times what it subtracts from
    any one value: every count is low by at most ``error`` (the sum subtracted), and ``error`` is
    at most ``total / (keep + 1)``, also after merges (Agarwal et al., "Mergeable summaries").
    """

    def __init__(self, cap: int = COUNTER_CAP, keep: int = COUNTER_PRUNE_TO) -> None:
        """Starts empty."""
        self.counts: Counter[str] = Counter()
        self.total = 0
        self.error = 0
        self.cap, self.keep = cap, keep

    @property
    def approximate(self) -> bool:
        """True once a reduction has dropped counts."""
        return self.error > 0

    def update(self, values: pd.Series) -> None:
        """Adds a chunk of values."""
        if values.empty:
            return
        self.total += int(values.size)
        self.counts.update(values.value_counts().to_dict())
        self._reduce()

    def merge(self, other: ValueCounter) -> None:
        """Adds another counter's counts (its error adds to this one's)."""
        self.total += other.total
        self.error += other.error
        self.counts.update(other.counts)
        self._reduce()

    def _reduce(self) -> None:
        if len(self.counts) <= self.cap:
            return
        cut = sorted(self.counts.values(), reverse=True)[self.keep]
        self.counts = Counter({v: n - cut for v, n in self.counts.items() if n > cut})
        self.error += cut

    def top(self) -> list[list[Any]]:
        """The most frequent values with their counts (ties by value, so any order of merges and
        chunks lists the same values)."""
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        return [[value, count] for value, count in ranked[:TOP_VALUES_KEPT]]


class FeatureStats:
    """Accumulates the statistics of one feature over the clean rows of one split."""

    def __init__(self, feature: Feature) -> None:
        """Chooses accumulators by the feature's kind."""
        self.feature = feature
        self.count = 0
        self.imputed = 0
        self.moments = Moments() if feature.is_numeric_raw else None
        self.lengths = Moments() if feature.kind in ("tags", "text") else None
        self.distinct = HyperLogLog() if not feature.is_numeric_raw else None
        keeps_values = feature.kind in ("categorical", "tags", "text", "id", "label")
        self.values = ValueCounter() if keeps_values else None

    def update(self, column: pd.Series, imputed: int) -> None:
        """Adds a chunk of clean values; ``imputed`` of them stood in for missing ones."""
        self.count += len(column)
        self.imputed += imputed
        if self.moments is not None:
            self.moments.update(column.to_numpy(dtype=np.float64))
        if self.feature.kind in ("tags", "text"):
            tokens = tokens_pandas(self.feature, column)
            assert self.lengths is not None
            self.lengths.update(
                tokens.groupby(level=0)
                .size()
                .reindex(column.index, fill_value=0)
                .to_numpy(dtype=np.float64)
            )
            values = tokens
        else:
            values = column.astype(str) if self.feature.kind == "label" else column
        if self.distinct is not None:
            self.distinct.update(values.to_numpy())
        if self.values is not None:
            self.values.update(values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        out: dict[str, Any] = {
            "kind": self.feature.kind,
            "count": self.count,
            "missing": self.imputed,
        }
        if self.moments is not None:
            out.update(self.moments.to_dict())
        if self.lengths is not None:
            out["length"] = self.lengths.to_dict()
        if self.distinct is not None:
            out["distinct"] = self.distinct.estimate()
        if self.values is not None:
            out["top_values"] = self.values.top()
            out["value_total"] = self.values.total
            out["approximate"] = self.values.approximate
            out["count_error"] = self.values.error
        return out

    def merge(self, other: FeatureStats) -> None:
        """Adds the statistics of the same feature over other rows."""
        self.count += other.count
        self.imputed += other.imputed
        # The same feature has the same accumulators on both sides.
        if self.moments is not None and other.moments is not None:
            self.moments.merge(other.moments)
        if self.lengths is not None and other.lengths is not None:
            self.lengths.merge(other.lengths)
        if self.distinct is not None and other.distinct is not None:
            self.distinct.merge(other.distinct)
        if self.values is not None and other.values is not None:
            self.values.merge(other.values)


class SplitStats:
    """Statistics of every spec feature over one split."""

    def __init__(self, spec: FeatureSpec, split: str) -> None:
        """One :class:`FeatureStats` per spec column."""
        self.split = split
        self.rows = 0
        self.features = {f.name: FeatureStats(f) for f in spec.features.values()}

    def update(self, frame: pd.DataFrame, imputed: dict[str, np.ndarray]) -> None:
        """Adds a chunk of clean rows; ``imputed`` maps a column to its stand-in mask."""
        self.rows += len(frame)
        for name, stats in self.features.items():
            mask = imputed.get(name)
            stats.update(frame[name], int(mask.sum()) if mask is not None else 0)

    def merge(self, other: SplitStats) -> None:
        """Adds the statistics of the same split over other rows (another shard's)."""
        self.rows += other.rows
        for name, stats in self.features.items():
            stats.merge(other.features[name])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary."""
        return {
            "split": self.split,
            "rows": self.rows,
            "features": {name: s.to_dict() for name, s in self.features.items()},
        }


def _frequencies(summary: dict[str, Any]) -> dict[str, float]:
    total = summary.get("value_total") or 0
    if not total:
        return {}
    return {str(value): count / total for value, count in summary.get("top_values", [])}


def drift(
    current: dict[str, Any],
    baseline: dict[str, Any],
    *,
    linf_threshold: float = 0.1,
    mean_shift_threshold: float = 0.25,
) -> dict[str, Any]:
    """Compares two split summaries feature by feature.

    Numeric features use the standardized mean shift ``|mean - mean0| / std0``; categorical, tags
    and text features the L-infinity distance between value frequencies (over the values each side
    kept). Ids, keys and the label are not compared: ids are too many to compare this way, keys are
    unique by design, and label shift is a modelling signal rather than data drift.

    Args:
        current: ``SplitStats.to_dict()`` of the new data.
        baseline: The same for the reference data.
        linf_threshold: L-infinity distance above which a categorical feature is flagged.
        mean_shift_threshold: Standardized mean shift above which a numeric feature is flagged.

    Returns:
        ``{"features": {name: {metric, value, threshold, drifted}}, "drifted": [names]}``.
    """
    report: dict[str, Any] = {}
    for name, now in current["features"].items():
        before = baseline["features"].get(name)
        if before is None:
            report[name] = {"metric": None, "note": "not in baseline"}
            continue
        kind = now["kind"]
        if kind == "numeric" or (kind == "passthrough" and "mean" in now):
            mean0, std0, mean1 = before.get("mean"), before.get("std"), now.get("mean")
            if mean0 is None or mean1 is None:
                continue
            shift = abs(mean1 - mean0) / std0 if std0 else (0.0 if mean1 == mean0 else math.inf)
            report[name] = {
                "metric": "standardized_mean_shift",
                "value": shift,
                "threshold": mean_shift_threshold,
                "drifted": shift > mean_shift_threshold,
            }
        elif kind in ("categorical", "tags", "text"):
            p, q = _frequencies(now), _frequencies(before)
            distance = max((abs(p.get(v, 0.0) - q.get(v, 0.0)) for v in set(p) | set(q)), default=0)
            report[name] = {
                "metric": "linf",
                "value": distance,
                "threshold": linf_threshold,
                "drifted": distance > linf_threshold,
            }
    return {
        "features": report,
        "drifted": sorted(n for n, r in report.items() if r.get("drifted")),
    }
