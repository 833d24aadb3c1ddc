"""Serving by id: the features a request leaves out are read from the feature store.

A client knows a user id, not the user's age and recent history. With ``skewless serve
--feature-store REPO``, a request may carry only the entity ids (``user_id``, ``item_id``) and the
request-time context (hour, weekday); for every row, the user and item features it does not send
(absent or null) are read from the online store in one batched call per side, then the row is
validated and scored exactly as a full raw request (the values are raw, as ingestion stored them,
so the model's own transform applies). A value the request sends wins, blanks included (a blank is
the client's "missing", which takes the spec's default). The answer's ``x-skewless-looked-up``
header names the features that were read.

An id the store does not know leaves its features missing, and the spec's rules decide: a
required one is a 400 naming the id; an optional one takes its default. A store that cannot be
read is a 503 with ``Retry-After`` (:class:`skewless.features.store.StoreUnavailable`), never a
guess.

With ``--allow-push``, new values arrive at ``POST /push`` in the body Feast's own feature server
takes (``{"push_source_name": "user_features_push", "df": {column: [values]}, "to":
"online_and_offline"}``): checked by the contract's validator like any row, then written online
(the next request sees them) and appended offline (the next training run's point-in-time join
sees the same values).
"""

from __future__ import annotations

import dataclasses
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.contract.kinds import show
from skewless.contract.spec import FeatureSpec
from skewless.contract.validate import Violations, check_values
from skewless.experiments.logs import AppendLog
from skewless.features.online import OnlineFeatures, PushRefused
from skewless.serving.validation import RawRequest, RequestError

LOOKED_UP_HEADER = "x-skewless-looked-up"
FEATURE_LOG = "features.jsonl"  # beside the exposure log; `skewless skew-report` reads it
DEFAULT_FEATURE_LOG_SAMPLE = 0.05
PUSH_PATH = "/push"  # Feast's feature server path and body
MAX_PUSH_ROWS = 10_000


class FeatureLookup:
    """Fills the features a request leaves out from the online store."""

    def __init__(self, repo: str | Path) -> None:
        """Opens the feature repository written by the pipeline's materialize step."""
        self.online = OnlineFeatures(repo)

    @property
    def fields(self) -> frozenset[str]:
        """Features the store can supply (a request may leave them out)."""
        return self.online.fields

    def fill(self, request: RawRequest, spec: FeatureSpec) -> tuple[RawRequest, list[str]]:
        """The request with its left-out entity features filled, and the names filled.

        Args:
            request: The request's columns, shape checked (values not yet).
            spec: The spec of the version that answers (its inputs decide what is needed).

        Raises:
            RequestError: An id the store does not know, on a row that leaves out a required
                feature of its side.
            StoreUnavailable: The store cannot be read.
        """
        columns = {name: list(values) for name, values in request.columns.items()}
        filled: set[str] = set()
        for view in self.online.views:
            names = [name for name in view.features if name in columns]
            if view.key not in columns or not names:
                continue
            rows = [
                row for row in range(request.rows)
                if columns[view.key][row] is not None
                and any(columns[name][row] is None for name in names)
            ]  # fmt: skip
            if not rows:
                continue
            # Ids as the contract reads them (19, 19.0 and "19" are one id); a malformed id is
            # left for validation to refuse with its usual message.
            ids = check_values(
                spec.features[view.key], [columns[view.key][row] for row in rows],
                Violations(len(rows)),
            )  # fmt: skip
            # Each distinct id is read once (a ranking request is one user and many items).
            distinct, position = np.unique(np.asarray([str(i) for i in ids], dtype=object),
                                           return_inverse=True)  # fmt: skip
            once, found_once = self.online.lookup(view, list(distinct))
            values = {name: [column[p] for p in position] for name, column in once.items()}
            found = found_once[position]
            for index, row in enumerate(rows):
                if not found[index]:
                    needed = [
                        name for name in names
                        if columns[name][row] is None and spec.features[name].required
                    ]  # fmt: skip
                    if needed:
                        raise RequestError(
                            f"{request.locate(row, view.key)}: {show(ids[index])} is not in the "
                            f"feature store; send {', '.join(needed)} in the request"
                        )
                    continue
                for name in names:
                    if columns[name][row] is None:
                        columns[name][row] = values[name][index]
                        filled.add(name)
        return dataclasses.replace(request, columns=columns), sorted(filled)

    def push(self, payload: Any, spec: FeatureSpec) -> dict[str, Any]:
        """Checks a push body (Feast's shape) against the spec and writes it online and offline.

        Raises:
            RequestError: The body breaks the contract; the message names the field.
            StoreUnavailable: The store cannot be written.
        """
        if not isinstance(payload, dict):
            raise RequestError("request body must be a JSON object")
        unknown = sorted(set(payload) - {"push_source_name", "df", "to"})
        if unknown:
            raise RequestError(
                f"unknown field {show(unknown[0])}; expected push_source_name, df and to"
            )
        sources = {view.push_source: view for view in self.online.views}
        view = sources.get(payload.get("push_source_name"))  # type: ignore[arg-type]
        if view is None:
            raise RequestError(
                f"push_source_name: {show(payload.get('push_source_name'))} is not one of "
                f"{sorted(sources)}"
            )
        if payload.get("to", "online_and_offline") != "online_and_offline":
            raise RequestError(
                "to: only 'online_and_offline' is accepted: serving and the next training run "
                "must see the same values"
            )
        frame = payload.get("df")
        if not isinstance(frame, dict):
            raise RequestError("df: expected an object of equal-length lists (column -> values)")
        event_time = self.online.event_time
        names = [view.key, event_time, *view.features]
        extra = sorted(set(frame) - set(names))
        if extra:
            raise RequestError(f"df.{extra[0]}: not a column of {view.name}; columns: {names}")
        for name in names:
            if not isinstance(frame.get(name), list):
                raise RequestError(
                    f"df.{name}: missing (a push sends {view.key}, {event_time} and every "
                    f"feature of {view.name}, each a list)"
                )
        rows = {len(frame[name]) for name in names}
        if len(rows) > 1:
            raise RequestError(f"df: columns have different lengths {sorted(rows)}")
        count = rows.pop()
        if not 1 <= count <= MAX_PUSH_ROWS:
            raise RequestError(f"df: {count} rows; a push sends 1 to {MAX_PUSH_ROWS}")
        violations = Violations(count)
        checked = {
            name: check_values(spec.features[name], frame[name], violations) for name in names
        }
        if violations.failures:
            row = min(violations.failures)
            field, problem = violations.failures[row][0]
            raise RequestError(f"df.{field}[{row}]: {problem}")
        table = pd.DataFrame(
            {
                name: (pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
                       if name == event_time
                       else values.astype(np.float32) if numeric else values.astype(object))
                for name, values, numeric in zip(
                    names, checked.values(), (False, False, *view.numeric), strict=True
                )
            }
        )  # fmt: skip
        try:
            self.online.push(view, table)
        except PushRefused as err:
            raise RequestError(str(err)) from None
        return {"pushed": count, "push_source_name": view.push_source}


class FeatureLog:
    """Logs a sample of the entity feature values the server scored with, and when.

    One JSON line per sampled row: ``{"time": ISO 8601, "features": {key and feature values}}``,
    read by ``skewless skew-report``, which asks the offline store for the same rows as of the
    same times (:mod:`skewless.features.skew`).
    """

    def __init__(self, path: str | Path, lookup: FeatureLookup, sample: float, *, max_bytes: int):
        """Appends to ``path``; ``sample`` is the share of rows logged (0 to 1)."""
        self.log = AppendLog(path, max_bytes=max_bytes)
        self.sample = sample
        self.names = [n for v in lookup.online.views for n in (v.key, *v.features)]

    def record(self, request: RawRequest) -> None:
        """Logs the sampled rows of an answered request (its values after the lookup)."""
        rows = [row for row in range(request.rows) if random.random() < self.sample]
        if not rows:
            return
        now = datetime.now(UTC).isoformat()
        names = [name for name in self.names if name in request.columns]
        for row in rows:
            values = {name: _plain(request.columns[name][row]) for name in names}
            self.log.write({"time": now, "features": values})


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value.item() if hasattr(value, "item") else value
