"""``skewless skew-report``: the features served, against the offline store at the same instants.

The transform graph inside the model removes transformation skew; what is left is data skew: the
value the online store handed the model for a user at 14:03 is not the value the offline store
(what the next training run joins) holds for that user as of 14:03 — a push that reached only one
store, a materialization that lags or failed, a client that sends its own stale copy. The server
logs a sample of the entity feature values it scored with (:class:`skewless.serving.lookup.
FeatureLog`); this module asks the offline store for the same entities as of the same times
(:func:`skewless.features.store.point_in_time`) and reports, per feature, the share of rows whose
values differ and the distance between the two distributions (ingestion's own drift measures,
:func:`skewless.data.stats.drift`). A feature is skewed when either is above its threshold.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from skewless.contract.spec import FeatureSpec
from skewless.data.stats import FeatureStats, drift
from skewless.experiments.logs import read_records
from skewless.features.materialize import mismatch_rates
from skewless.features.offline import point_in_time
from skewless.features.store import FeatureStoreError, read_spec, read_views

DEFAULT_MAX_MISMATCH = 0.01


def _stats(spec: FeatureSpec, frame: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    features = {}
    for name in names:
        stats = FeatureStats(spec.features[name])
        stats.update(frame[name].dropna().reset_index(drop=True), 0)
        features[name] = stats.to_dict()
    return {"features": features}


def skew_report(
    feature_log: str | Path, repo: str | Path, *, max_mismatch: float = DEFAULT_MAX_MISMATCH
) -> dict[str, Any]:
    """Compares the logged served values with the offline store's as of the same times.

    Returns:
        ``{"rows", "features": {name: {mismatch, missing_offline, metric, value, threshold,
        skewed}}, "skewed": [names]}``.

    Raises:
        FeatureStoreError: The log has no usable record, or the repository cannot be read.
    """
    spec = read_spec(repo)
    views, event_time = read_views(repo)
    records = list(read_records(feature_log, what="a feature log record"))
    rows = [r["features"] | {event_time: r["time"]} for r in records if "features" in r]
    if not rows:
        raise FeatureStoreError(f"{feature_log}: no logged rows to compare")
    served = pd.DataFrame(rows)
    served[event_time] = pd.to_datetime(served[event_time], utc=True, format="ISO8601")
    keys = [view.key for view in views if view.key in served.columns]
    names = [n for view in views if view.key in keys for n in view.features if n in served]
    offline = point_in_time(repo, served[[event_time, *keys]])
    rates = mismatch_rates(served, offline, names)
    distances = drift(_stats(spec, offline, names), _stats(spec, served, names))["features"]
    features: dict[str, Any] = {}
    for name in names:
        distance = distances.get(name, {})
        drifted = bool(distance.get("drifted", False))
        features[name] = {
            "mismatch": round(rates[name], 6),
            "missing_offline": round(float(offline[name].isna().mean()), 6),
            **{k: distance[k] for k in ("metric", "value", "threshold") if k in distance},
            "skewed": rates[name] > max_mismatch or drifted,
        }
    return {
        "rows": len(served),
        "max_mismatch": max_mismatch,
        "features": features,
        "skewed": sorted(name for name, f in features.items() if f["skewed"]),
    }
