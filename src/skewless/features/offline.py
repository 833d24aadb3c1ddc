"""The offline store as training and the skew report read it: each row's features as of its time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from skewless.features.store import open_store, read_views

_ROW = "__skewless_row"  # each asked row's number, through Feast's join


def point_in_time(repo: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's user and item features as of its event time, from the offline store.

    ``rows`` holds at least the event time and the entity keys; the answer has one row per input
    row, in order, with the looked-up features beside the input's other columns. A row whose
    entity had no value yet at its time gets nulls (Feast's file store drops such rows, and
    answers identical rows once; both are put back here, so none is lost).
    """
    views, time_name = read_views(repo)
    store = open_store(repo)
    keys = [view.key for view in views if view.key in rows.columns]
    asked = rows[[time_name, *keys]].astype({key: str for key in keys})
    # Feast answers identical entity rows (same ids, same instant) once; each is asked once here
    # and every input row gets its answer.
    group = asked.groupby([time_name, *keys], sort=False, dropna=False).ngroup().to_numpy()
    _, first = np.unique(group, return_index=True)
    entity_df = asked.iloc[first].copy()
    entity_df[_ROW] = group[first]
    refs = [ref for view in views if view.key in keys for ref in view.refs]
    joined = store.get_historical_features(entity_df=entity_df, features=refs).to_df()
    names = [ref.split(":", 1)[1] for ref in refs]
    found = joined.drop_duplicates(_ROW).set_index(_ROW)[names].reindex(group)
    out = rows.reset_index(drop=True).drop(columns=[n for n in names if n in rows.columns])
    return pd.concat([out, found.reset_index(drop=True)], axis=1)
