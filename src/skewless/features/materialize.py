"""The pipeline's materialize step: the feature store from the clean splits, checked.

After writing the repository (:func:`skewless.features.store.build_repository`) the step asks the
offline store for a sample of eval rows' features as of each row's event time and compares them
with the values the rows themselves logged: the point-in-time join must give every row back its
own values. A mismatch is data skew between what training saw and what the store would serve
(two rows of an entity at the same instant, or a join that reads the future); the step reports
the share per feature and fails above :data:`MAX_MISMATCH`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.contract.spec import FeatureSpec
from skewless.data.ingest import IngestedFolder
from skewless.features import location
from skewless.features.offline import point_in_time
from skewless.features.store import (
    FeatureStoreError,
    build_repository,
    entity_views,
    redis_connection,
)

CHECK_ROWS = 2_000
MAX_MISMATCH = 0.01


def mismatch_rates(
    expected: pd.DataFrame, found: pd.DataFrame, names: list[str]
) -> dict[str, float]:
    """Per feature, the share of rows whose found value differs from the expected one (a
    missing value counts as different; numbers compare at float32 precision)."""
    rates = {}
    for name in names:
        want, got = expected[name].to_numpy(), found[name].to_numpy()
        if want.dtype.kind == "f":
            same = np.isclose(want.astype(np.float32), pd.to_numeric(got).astype(np.float32))
        else:
            same = want.astype(object) == got.astype(object)
        rates[name] = float(1.0 - np.mean(same)) if len(want) else 0.0
    return rates


def _sample(split: Path, columns: list[str]) -> pd.DataFrame:
    """:data:`CHECK_ROWS` rows of ``split`` drawn at random (seed 0), in their order there; the
    split is read as Arrow (compact text) and only the sample becomes pandas."""
    import pyarrow.parquet as pq

    table = pq.read_table(split, columns=columns)
    rows = np.random.default_rng(0).permutation(table.num_rows)[:CHECK_ROWS]
    return table.take(np.sort(rows)).to_pandas()


def materialize(
    ingested: str | Path, spec: FeatureSpec, repo: str | Path, online_store: str = ""
) -> dict[str, Any]:
    """Writes the feature store at ``repo`` from ingestion's clean splits, then checks it.

    Args:
        ingested: Ingestion's output folder.
        spec: The feature spec.
        repo: The repository: a folder, or a folder in the object store (then ``online_store``
            must name the Redis every pod reaches; the repository is uploaded once checked).
        online_store: ``redis://HOST:PORT[/DB]``, or "" for SQLite inside the repository.

    Returns:
        The summary; ``materialized`` is 0 with the reason when there is nothing to write.

    Raises:
        FeatureStoreError: The point-in-time check found more than :data:`MAX_MISMATCH` of a
            feature's values differing from the rows' own; an online store that is not Redis
            or SQLite; a remote repository with an online store no other pod can read.
    """
    if not str(repo):
        print("materialize: skipped: no feature_repo given")
        return {"materialized": 0, "reason": "no feature_repo given"}
    try:
        views = entity_views(spec)
    except FeatureStoreError as err:
        print(f"materialize: skipped: {err}")
        return {"materialized": 0, "reason": str(err)}
    redis_connection(online_store)  # a malformed address fails before any work
    if location.is_remote(repo) and not online_store:
        raise FeatureStoreError(
            f"{repo}: a feature repository in an object store needs an online store every pod "
            "reaches: give feature_online_store=redis://HOST:PORT (manifests/feature-store)"
        )
    folder = IngestedFolder(ingested)
    with location.writable(repo) as local:
        summary = build_repository(spec, [folder.train, folder.eval], local, online_store)
        summary["repository"] = str(repo)
        assert spec.event_time is not None
        keys = [view.key for view in views]
        names = [name for view in views for name in view.features]
        sample = _sample(folder.eval, [spec.event_time.name, *keys, *names])
        found = point_in_time(local, sample[[spec.event_time.name, *keys]])
        rates = mismatch_rates(sample.reset_index(drop=True), found, names)
        summary.update(
            materialized=1,
            online_store=online_store or "sqlite",
            point_in_time_rows=len(sample),
            point_in_time_mismatch=rates,
        )
        print(f"materialize: {summary}")
        worst = max(rates, key=rates.__getitem__, default=None)
        if worst is not None and rates[worst] > MAX_MISMATCH:  # nothing is uploaded
            raise FeatureStoreError(
                f"the feature store gives {rates[worst]:.1%} of sampled rows a different "
                f"{worst!r} than the row logged (limit {MAX_MISMATCH:.0%}): two values of one "
                "entity at one instant, or event times that do not order the data"
            )
    return summary
