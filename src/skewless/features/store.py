"""The feature store: Feast, with its feature views generated from the spec.

The spec already says which features describe the user and which the item (``side: user`` and
``side: item``) and when each row happened (``kind: timestamp``). From that this module builds one
Feast repository (``feature_store.yaml`` beside its ``data/``):

* an entity per side, keyed by the side's ``kind: id`` feature (``user_id``, ``item_id``);
* a feature view per side (``user_features``, ``item_features``) over a Parquet table of the side's
  raw feature values as the rows observed them, with the row's event time (each entity's first
  observation and each change of its values: :mod:`skewless.features.changes`); ``side: context``
  features (hour, weekday) are the request's own and are never looked up;
* the offline store is those Parquet files, the online store SQLite (a Redis on a cluster).

Values are stored raw, exactly as ingestion wrote them to the clean splits, so a looked-up value
goes through the model's own validation and transform like a value the client sent: the store
cannot introduce transformation skew, and :func:`point_in_time` measures the data skew.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skewless.contract.kinds import kind_of
from skewless.contract.spec import FeatureSpec
from skewless.features.changes import changes
from skewless.features.unchecked import unchecked

PROJECT = "skewless"
CONFIG_FILE = "feature_store.yaml"
VIEWS_FILE = "views.json"  # what serving needs to know without the spec or Feast's registry
SPEC_FILE = "spec.yaml"  # the spec the views were generated from
DATA_DIR = "data"
REGISTRY_FILE = f"{DATA_DIR}/registry.db"  # Feast's registry: the views as applied
SIDES = ("user", "item")

REDIS_SCHEME = "redis://"
PUSHED_DIR = "pushed"  # values pushed to a repository in an object store, one file per push


def _config(online_store: str) -> str:
    """``feature_store.yaml``: the online store is SQLite in the repository, or a Redis."""
    connection = redis_connection(online_store)
    online = (
        f"  type: sqlite\n  path: {DATA_DIR}/online.db\n"
        if connection is None
        else f'  type: redis\n  connection_string: "{connection}"\n'
    )
    return (
        "# Written by skewless (src/skewless/features/store.py); `feast -c <this folder> ...` "
        f"reads it.\nproject: {PROJECT}\nprovider: local\nregistry: {REGISTRY_FILE}\n"
        f"online_store:\n{online}offline_store:\n  type: file\n"
        "entity_key_serialization_version: 3\n"
    )


def redis_connection(online_store: str) -> str | None:
    """Feast's Redis ``connection_string`` for ``redis://HOST:PORT[/DB]``; None for "" (SQLite).

    Raises:
        FeatureStoreError: Anything else, named.
    """
    if not online_store:
        return None
    address, _, db = online_store.removeprefix(REDIS_SCHEME).partition("/")
    host, _, port = address.rpartition(":")
    if (
        not online_store.startswith(REDIS_SCHEME)
        or not host
        or not port.isdigit()
        or not 0 < int(port) < 65536
        or not (db == "" or db.isdigit())
        or any(c in address for c in ",@ ")
    ):
        raise FeatureStoreError(
            f"online store {online_store!r}: expected redis://HOST:PORT[/DB] (or nothing, for "
            "SQLite inside the repository)"
        )
    return f"{host}:{int(port)},db={int(db or 0)}"


class FeatureStoreError(ValueError):
    """The spec or the repository cannot make a feature store; the message says why."""


class StoreUnavailable(RuntimeError):
    """The online store cannot be read now (a retry may succeed): serving answers 503."""


@dataclasses.dataclass(frozen=True)
class EntityView:
    """One side's entity and feature view: its key, its features and their kinds."""

    side: str
    key: str
    features: tuple[str, ...]
    numeric: tuple[bool, ...]

    @property
    def name(self) -> str:
        """The Feast feature view's name."""
        return f"{self.side}_features"

    @property
    def push_source(self) -> str:
        """The Feast push source that takes new values of this view."""
        return f"{self.name}_push"

    @property
    def refs(self) -> list[str]:
        """Feast feature references, ``view:feature``."""
        return [f"{self.name}:{feature}" for feature in self.features]

    def table(self, repo: Path) -> Path:
        """The view's offline Parquet table."""
        return repo / DATA_DIR / f"{self.name}.parquet"


def entity_views(spec: FeatureSpec) -> list[EntityView]:
    """The spec's entities: the user and item sides that have an id and other features.

    Raises:
        FeatureStoreError: The spec has no event time, or no side with an id to look it up by.
    """
    if spec.event_time is None:
        raise FeatureStoreError(
            "the spec has no 'kind: timestamp' feature: the feature store joins each row's "
            "features as of its event time (docs/feature-store.md)"
        )
    views = []
    for side, key in (("user", spec.user_key), ("item", spec.item_key)):
        if key is None:
            continue
        features = [f for f in spec.on_side(side) if f.name != key.name]
        if features:
            views.append(
                EntityView(side, key.name, tuple(f.name for f in features),
                           tuple(kind_of(f).numeric for f in features))
            )  # fmt: skip
    if not views:
        raise FeatureStoreError(
            "no feature has 'side: user' or 'side: item' beside that side's 'kind: id' feature, "
            "so there is nothing to look up by id (docs/feature-store.md)"
        )
    return views


def _feast_objects(views: Sequence[EntityView], event_time: str) -> list[Any]:
    with unchecked():
        from feast import Entity, FeatureView, Field, FileSource, PushSource, ValueType
        from feast.types import Float32, String

    objects: list[Any] = []
    for view in views:
        entity = Entity(name=view.side, join_keys=[view.key], value_type=ValueType.STRING)
        source = FileSource(
            name=f"{view.name}_source",
            path=f"{DATA_DIR}/{view.name}.parquet",  # relative: the repository can move
            timestamp_field=event_time,
        )
        schema = [
            Field(name=name, dtype=Float32 if numeric else String)
            for name, numeric in zip(view.features, view.numeric, strict=True)
        ]
        objects += [
            entity,
            # ttl 0: a value stays valid until the entity's next one (no expiry). The push
            # source takes new values online and offline at once (OnlineFeatures.push).
            FeatureView(name=view.name, entities=[entity], ttl=timedelta(0), schema=schema,
                        source=PushSource(name=view.push_source, batch_source=source),
                        online=True),
        ]  # fmt: skip
    return objects


def open_store(repo: str | Path) -> Any:
    """Feast's ``FeatureStore`` for a repository written by :func:`build_repository`."""
    path = Path(repo)
    if not (path / CONFIG_FILE).is_file():
        raise FeatureStoreError(f"{path} is not a feature repository (no {CONFIG_FILE})")
    # Feast, and the stores' modules its config names, are imported inside the block.
    with unchecked():
        from feast import FeatureStore

        return FeatureStore(repo_path=str(path))


def read_views(repo: str | Path) -> tuple[list[EntityView], str]:
    """The entity views and the event-time column of a repository."""
    path = Path(repo) / VIEWS_FILE
    try:
        meta = json.loads(path.read_text())
        views = [
            EntityView(v["side"], v["key"], tuple(v["features"]), tuple(v["numeric"]))
            for v in meta["views"]
        ]
        return views, str(meta["event_time"])
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise FeatureStoreError(f"{path}: not a skewless feature repository ({err})") from None


def read_spec(repo: str | Path) -> FeatureSpec:
    """The spec a repository's views were generated from."""
    from skewless.contract.spec import load_spec

    path = Path(repo) / SPEC_FILE
    absent = FeatureStoreError(f"{path}: missing; the repository was not written by skewless")
    return load_spec(path, absent=absent)


def pushed_files(root: Path, view: EntityView) -> list[Path]:
    """The values pushed to a repository in an object store (:data:`PUSHED_DIR`), newest first:
    the order in which they win at one entity and instant (their names sort by push)."""
    return sorted((root / PUSHED_DIR / view.name).glob("*.parquet"), reverse=True)


def write_offline(table: pd.DataFrame, path: Path) -> None:
    """Writes an offline table (:func:`skewless.features.changes.changes`' frame) without pandas'
    metadata, which would name the Arrow-backed dtypes: a reader (Feast's offline store) gets the
    types a plain table has."""
    pq.write_table(
        pa.Table.from_pandas(table, preserve_index=False).replace_schema_metadata(None), path
    )


def _write_table(
    view: EntityView, time_name: str, splits: Sequence[str | Path], root: Path
) -> tuple[Any, Any, pd.DataFrame, dict[str, Any]]:
    """Writes one view's offline table; returns its first and last event time (None when
    empty), each entity's latest row (plain pandas types) and its summary (rows, entities,
    features)."""
    # Keep what is there: pushed values exist only in the offline table (or, for a repository in
    # an object store, in the pushed files). At one entity and instant a pushed value wins (the
    # newest first), then the rows just ingested, then the table (include_pushed keeps the same
    # order); the compression runs over all of them together.
    existing = [view.table(root)] if view.table(root).is_file() else []
    newest_first = pushed_files(root, view)
    table = changes(view.key, time_name, view.features, splits, before=newest_first, after=existing)
    write_offline(table, view.table(root))
    if not len(table):
        low = high = None
    else:  # an Arrow-backed column's min is a datetime: as a Timestamp, like a NumPy one's
        low, high = pd.Timestamp(table[time_name].min()), pd.Timestamp(table[time_name].max())
    # Sorted by time, and one row per entity and instant: the last row of each key is its latest.
    newest = table.drop_duplicates(view.key, keep="last")
    newest = pa.Table.from_pandas(newest, preserve_index=False).to_pandas()
    summary = {"rows": len(table), "entities": int(table[view.key].nunique()),
               "features": list(view.features)}  # fmt: skip
    return low, high, newest, summary


def build_repository(
    spec: FeatureSpec, splits: Sequence[str | Path], repo: str | Path, online_store: str = ""
) -> dict[str, Any]:
    """Writes the offline tables, applies the feature views and fills the online store.

    A repository that exists is refreshed: the offline tables are an append-only record, so the
    rows already there (earlier runs' and pushed values) are kept beside the new ones, and every
    entity's latest value is written online again (what Feast's ``materialize`` would write, from
    the tables as they are written: ``write_to_online_store``).

    Args:
        spec: The feature spec (with an event time and sides).
        splits: Clean splits (Parquet) from ingestion.
        repo: The repository folder.
        online_store: ``redis://HOST:PORT[/DB]`` for a Redis online store (a cluster's), or
            "" for SQLite inside the repository.

    Returns:
        The summary: rows and entities per view, the time range and the seconds taken.
    """
    started = time.perf_counter()
    views = entity_views(spec)
    assert spec.event_time is not None
    time_name = spec.event_time.name
    root = Path(repo)
    (root / DATA_DIR).mkdir(parents=True, exist_ok=True)
    (root / CONFIG_FILE).write_text(_config(online_store))
    (root / VIEWS_FILE).write_text(
        json.dumps(
            {"event_time": time_name, "views": [dataclasses.asdict(v) for v in views]}, indent=1
        )
    )
    (root / SPEC_FILE).write_text(spec.source_text)
    summary: dict[str, Any] = {"repository": str(root), "views": {}}
    first, last = None, None
    latest: dict[str, pd.DataFrame] = {}
    for view in views:  # one table in memory at a time
        low, high, latest[view.name], summary["views"][view.name] = _write_table(
            view, time_name, splits, root
        )
        if low is not None and high is not None:
            first = low if first is None else min(first, low)
            last = high if last is None else max(last, high)
    store = open_store(root)
    store.apply(_feast_objects(views, time_name))
    # What Feast's materialize would write online, each entity's latest values, taken from the
    # tables as they were written: materialize reads a view's whole offline table (at 10M rows,
    # GBs), these frames hold one row per entity.
    for view in views:
        values = latest[view.name]
        if not len(values):
            continue
        if values[list(view.features)].isna().all(axis=None) and first and last:
            # Feast skips a frame whose features are all null (with a warning); its materialize
            # writes the nulls, so it does here (the one view's table, read back).
            end = last + pd.Timedelta(seconds=1)  # Feast's end: one second past the last value
            store.materialize(first.to_pydatetime(), end.to_pydatetime(), feature_views=[view.name])
        else:
            store.write_to_online_store(view.name, values)
    if first is not None and last is not None:
        summary["time_range"] = [first.isoformat(), last.isoformat()]
    summary["seconds"] = round(time.perf_counter() - started, 3)
    return summary
