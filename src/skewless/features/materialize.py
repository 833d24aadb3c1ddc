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
from skewless.features.store import (
    FeatureStoreError,
    build_repository,
    entity_views,
    point_in_time,
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


def materialize(ingested: str | Path, spec: FeatureSpec, repo: str | Path) -> dict[str, Any]:
    """Writes the feature store at ``repo`` from ingestion's clean splits, then checks it.

    Returns:
        The summary; ``materialized`` is 0 with the reason when there is nothing to write.

    Raises:
        FeatureStoreError: The point-in-time check found more than :data:`MAX_MISMATCH` of a
            feature's values differing from the rows' own.
    """
    if not str(repo):
        print("materialize: skipped: no feature_repo given")
        return {"materialized": 0, "reason": "no feature_repo given"}
    try:
        views = entity_views(spec)
    except FeatureStoreError as err:
        print(f"materialize: skipped: {err}")
        return {"materialized": 0, "reason": str(err)}
    folder = IngestedFolder(ingested)
    summary = build_repository(spec, [folder.train, folder.eval], repo)
    assert spec.event_time is not None
    keys = [view.key for view in views]
    names = [name for view in views for name in view.features]
    rows = pd.read_parquet(folder.eval, columns=[spec.event_time.name, *keys, *names])
    sample = rows.sample(n=min(CHECK_ROWS, len(rows)), random_state=0) if len(rows) else rows
    found = point_in_time(repo, sample[[spec.event_time.name, *keys]])
    rates = mismatch_rates(sample.reset_index(drop=True), found, names)
    summary.update(
        materialized=1,
        point_in_time_rows=len(sample),
        point_in_time_mismatch=rates,
    )
    print(f"materialize: {summary}")
    worst = max(rates, key=rates.__getitem__, default=None)
    if worst is not None and rates[worst] > MAX_MISMATCH:
        raise FeatureStoreError(
            f"the feature store gives {rates[worst]:.1%} of sampled rows a different {worst!r} "
            f"than the row logged (limit {MAX_MISMATCH:.0%}): two values of one entity at one "
            "instant, or event times that do not order the data"
        )
    return summary
