"""The online store as serving reads and writes it: batched lookups by id, and pushes.

The repository may be a local folder or a folder in the object store (a cluster's, whose online
store is a Redis): :mod:`skewless.features.location` makes the local copy Feast opens.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.features import location
from skewless.features.store import (
    EntityView,
    FeatureStoreError,
    StoreUnavailable,
    open_store,
    read_views,
)


class PushRefused(FeatureStoreError):
    """A push the store must not take; the message names the row and why."""


class OnlineFeatures:
    """Reads the online store for serving: one batched call per side and request."""

    def __init__(self, repo: str | Path) -> None:
        """Opens the repository (Feast's registry and online store), copying a remote one.

        Raises:
            FeatureStoreError: ``repo`` is not a repository, or cannot be read.
        """
        self.location = str(repo)
        self._scratch = tempfile.TemporaryDirectory(prefix="skewless-feature-repo-")
        self.repo = location.readable(repo, Path(self._scratch.name), offline=False)
        self.views, self.event_time = read_views(self.repo)
        self.store = open_store(self.repo)
        self.fields = frozenset(name for view in self.views for name in view.features)

    def sample_ids(self) -> dict[str, str]:
        """One id per entity that the store knows (the latest row's), for examples; none from a
        remote repository (its offline tables are not copied)."""
        import pyarrow.parquet as pq

        ids = {}
        for view in self.views:
            if not view.table(self.repo).is_file():
                continue
            keys = pq.read_table(view.table(self.repo), columns=[view.key]).column(0)
            if len(keys):
                ids[view.key] = str(keys[len(keys) - 1])
        return ids

    def _online(
        self, view: EntityView, refs: list[str], ids: Any, *, timestamps: bool = False
    ) -> dict[str, list[Any]]:
        """Feast's online answer for ``refs`` of ``view``'s entities ``ids``, by name (and each
        value's time in seconds, ``<name>__ts``, with ``timestamps``).

        Raises:
            StoreUnavailable: The online store cannot be read (missing, locked, corrupt).
        """
        try:
            answer: dict[str, list[Any]] = self.store.get_online_features(
                features=refs, entity_rows=[{view.key: str(i)} for i in ids]
            ).to_dict(include_event_timestamps=timestamps)
        except Exception as err:  # any failure of the store is an outage to the caller
            raise StoreUnavailable(
                f"the feature store at {self.location} cannot be read: {type(err).__name__}: {err}"
            ) from None
        return answer

    def lookup(
        self, view: EntityView, ids: Sequence[str]
    ) -> tuple[dict[str, list[Any]], np.ndarray]:
        """The latest values of ``view``'s features for ``ids``, and which ids were found.

        Raises:
            StoreUnavailable: The online store cannot be read (missing, locked, corrupt).
        """
        answer = self._online(view, view.refs, ids)
        values = {name: answer[name] for name in view.features}
        found = np.zeros(len(ids), dtype=bool)
        for column in values.values():
            found |= np.array([value is not None for value in column], dtype=bool)
        return values, found

    def older_than_stored(
        self, view: EntityView, frame: pd.DataFrame
    ) -> list[tuple[int, pd.Timestamp]]:
        """Rows of ``frame`` older than their entity's value in the online store, with that
        value's time (Feast answers it in whole seconds: a row in the same second passes)."""
        from feast.online_response import TIMESTAMP_POSTFIX

        answer = self._online(view, view.refs[:1], frame[view.key], timestamps=True)
        stored = answer[f"{view.features[0]}{TIMESTAMP_POSTFIX}"]
        pushed = frame[self.event_time]
        return [
            (row, pd.Timestamp(seconds, unit="s", tz="UTC"))
            for row, seconds in enumerate(stored)
            if seconds and pushed.iloc[row] < pd.Timestamp(seconds, unit="s", tz="UTC")
        ]

    def push(self, view: EntityView, frame: pd.DataFrame) -> None:
        """Writes new values of ``view`` (its key, the event time and every feature) to the
        online store and appends them to the offline record (the table, or for a remote
        repository a pushed file), so serving sees them at once and the next training run's
        point-in-time join sees the same values.

        Raises:
            PushRefused: A row is older than the value the online store holds for its entity
                (Feast's Redis store would skip it, SQLite would serve it over a newer one; the
                offline record would keep it either way).
            StoreUnavailable: The store cannot be written.
        """
        from feast.data_source import PushMode

        older = self.older_than_stored(view, frame)
        if older:
            row, stored = older[0]
            raise PushRefused(
                f"df.{self.event_time}[{row}]: {frame[self.event_time].iloc[row].isoformat()} is "
                f"older than the value the online store holds for {view.key} "
                f"{frame[view.key].iloc[row]!r} (from {stored.isoformat()}); the online store "
                "keeps each entity's latest value, so an older one would reach the offline "
                "record only"
            )
        try:
            if location.is_remote(self.location):  # the record is the store's, not this copy
                location.record_push(self.location, view, frame)
                self.store.push(view.push_source, frame, to=PushMode.ONLINE)
            else:
                self.store.push(view.push_source, frame, to=PushMode.ONLINE_AND_OFFLINE)
        except Exception as err:  # any failure of the store is an outage to the caller
            raise StoreUnavailable(
                f"the feature store at {self.location} cannot be written: "
                f"{type(err).__name__}: {err}"
            ) from None
