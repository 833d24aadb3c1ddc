"""The offline store as training and the skew report read it: each row's features as of its time."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

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
    keys = [view.key for view in views if view.key in rows.columns]
    asked = rows[[time_name, *keys]].astype({key: str for key in keys})
    with tempfile.TemporaryDirectory(prefix="pit-") as narrow:
        return _joined(_of_entities(Path(repo), views, asked, Path(narrow)), rows, asked, keys)


def _of_entities(repo: Path, views: list[Any], asked: pd.DataFrame, into: Path) -> Path:
    """A copy of ``repo`` whose offline tables hold only the entities ``asked`` names.

    Feast's file offline store reads a feature view's whole table for any join; the views never
    expire a value, so an entity's answers depend on its own rows alone, and the copy gives the
    same answers while Feast reads a table the size of the asked entities' rows. The tables are
    filtered a row group at a time.
    """
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    skipped = shutil.ignore_patterns("*.parquet", "online.db")  # the join reads neither
    shutil.copytree(repo, into, dirs_exist_ok=True, ignore=skipped)
    for view in views:
        source = view.table(repo)
        if not source.is_file():
            continue
        wanted = pa.array(asked[view.key].unique() if view.key in asked else [], pa.string())
        with (
            pq.ParquetFile(source) as table,
            pq.ParquetWriter(view.table(into), table.schema_arrow) as out,
        ):
            for group in range(table.num_row_groups):
                rows = table.read_row_group(group)
                key = rows.column(view.key).cast(pa.string())
                out.write_table(rows.filter(pc.is_in(key, value_set=wanted)))
    return into


def _joined(repo: Path, rows: pd.DataFrame, asked: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """:func:`point_in_time`'s answer from ``repo``."""
    views, time_name = read_views(repo)
    store = open_store(repo)
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
