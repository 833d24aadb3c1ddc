"""Request validation against the feature spec, before anything reaches TensorFlow.

The serving contract is the ingestion contract, enforced by the same code: each request column goes
through :func:`skewless.contract.validate.check_values`, which applies the feature's kind exactly
as ingestion applies it to a CSV or Parquet column. A value that ingestion would quarantine is
refused here with the same words; a missing optional value (null, an absent field or a blank
string) takes the same default. This module checks the request's shape (rows or columns, known
fields, batch size: :meth:`RequestValidator.shape_rows`, :meth:`RequestValidator.shape_columns`),
then checks the values of one or several requests in one vectorized pass
(:meth:`RequestValidator.check`, which the server's micro-batcher calls on each batch, so the
per-call cost is shared), answering each request with its typed columns or the first failure
naming its row and field; the server maps that to a 400.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from skewless.contract.kinds import kind_of, show
from skewless.contract.spec import FeatureSpec
from skewless.contract.validate import Violations, check_values

# Request admission defaults, here (no KServe import) so the CLI and the server share them.
DEFAULT_MAX_BATCH = 1024  # rows in one request
DEFAULT_MAX_BODY_MB = 16.0  # a request body's size
DEFAULT_UNIT_FIELD = "user_id"  # the feature that assigns a request's user to a canary version
DEFAULT_ITEM_FIELD = "item_id"  # the feature naming the item each row scores (exposure logs)


class RequestError(ValueError):
    """A client sent a request that breaks the contract; the message names the field."""


@dataclasses.dataclass(frozen=True)
class RawRequest:
    """One request's model-input columns as sent (shape checked, values not yet)."""

    columns: Mapping[str, Sequence[Any]]
    rows: int
    where: str
    row_major: bool  # instances[i].field, else inputs.field[i]

    def locate(self, row: int, field: str) -> str:
        """How messages name ``field`` of row ``row``."""
        return f"{self.where}[{row}].{field}" if self.row_major else f"{self.where}.{field}[{row}]"


class RequestValidator:
    """Turns request payloads into validated, typed columns for the raw-feature signature."""

    def __init__(
        self,
        spec: FeatureSpec,
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        lookup: frozenset[str] = frozenset(),
    ) -> None:
        """Reads the model inputs from ``spec``.

        Args:
            spec: The feature spec the model was trained with.
            max_batch: Largest accepted number of rows in one request.
            lookup: Features a feature store supplies, so a request may leave them out
                (:mod:`skewless.serving.lookup` fills them before the values are checked).
        """
        self.spec = spec
        self.max_batch = max_batch
        self.lookup = lookup
        self.inputs = {f.name: f for f in spec.model_inputs}
        # Label, key and passthrough columns may ride along (clients often send whole rows).
        self.known = set(spec.column_names)
        names = list(self.inputs)
        # Each row's inputs as a tuple (itemgetter of one name would return the bare value).
        self._getter: Callable[[Any], tuple[Any, ...]] = (
            operator.itemgetter(*names) if len(names) > 1 else lambda row: (row[names[0]],)
        )

    def _check_fields(self, names: Sequence[str], where: str) -> None:
        unknown = [name for name in names if name not in self.known]
        if unknown:
            raise RequestError(
                f"{where}: unknown field {show(unknown[0])}; expected fields: {sorted(self.inputs)}"
            )

    def _check_size(self, rows: int) -> None:
        if rows == 0:
            raise RequestError("empty batch: the request has no rows")
        if rows > self.max_batch:
            raise RequestError(f"batch of {rows} rows exceeds the maximum of {self.max_batch}")

    def check(
        self, requests: Sequence[RawRequest]
    ) -> tuple[dict[str, np.ndarray], list[str | None]]:
        """Checks the values of ``requests`` together, in one pass of the contract's validator.

        Returns:
            ``(columns, errors)``: the typed columns of the requests that passed, concatenated in
            order, and per request ``None`` or its first failure (with how many more it has).
        """
        total = sum(request.rows for request in requests)
        violations = Violations(total)
        merged = {
            name: check_values(
                feature,
                list(itertools.chain.from_iterable(r.columns[name] for r in requests)),
                violations,
            )
            for name, feature in self.inputs.items()
        }
        failing = sorted(violations.failures)
        errors: list[str | None] = []
        keep = np.ones(total, dtype=bool)
        start = 0
        for request in requests:
            end = start + request.rows
            first, last = bisect.bisect_left(failing, start), bisect.bisect_left(failing, end)
            if first == last:
                errors.append(None)
            else:
                row = failing[first]
                field, problem = violations.failures[row][0]
                more = sum(len(violations.failures[r]) for r in failing[first:last]) - 1
                suffix = f" (and {more} more)" if more else ""
                errors.append(f"{request.locate(row - start, field)}: {problem}{suffix}")
                keep[start:end] = False
            start = end
        every = bool(keep.all())  # the usual case: no copy
        columns = {
            name: np.asarray(
                values if every else values[keep],
                dtype=np.float32 if kind_of(self.inputs[name]).numeric else object,
            )
            for name, values in merged.items()
        }
        return columns, errors

    def _checked(self, request: RawRequest) -> dict[str, np.ndarray]:
        columns, (error,) = self.check([request])
        if error is not None:
            raise RequestError(error)
        return columns

    def shape_rows(self, rows: Any, where: str = "instances") -> RawRequest:
        """Checks row-oriented input (a list of objects, KServe V1) and pivots it to columns."""
        if not isinstance(rows, list):
            raise RequestError(f"{where}: expected a list of objects, got {type(rows).__name__}")
        self._check_size(len(rows))
        # C-level passes for the usual case (JSON objects holding every input); a row-by-row pass
        # finds the culprit otherwise.
        if set(map(type, rows)) != {dict}:
            self._check_rows(rows, where)
        try:  # every row has every input (the usual case): one C-level pivot
            pivoted = zip(*map(self._getter, rows), strict=True)
            columns = dict(zip(self.inputs, map(list, pivoted), strict=True))
            # Rows holding every input and no more keys than that hold no unknown field.
            exact = set(map(len, rows)) == {len(self.inputs)}
        except KeyError:  # absent optional fields read as missing
            columns = {name: [row.get(name) for row in rows] for name in self.inputs}
            exact = False
        if not exact and not self.known.issuperset(itertools.chain.from_iterable(rows)):
            self._check_rows(rows, where)
        return RawRequest(columns, len(rows), where, row_major=True)

    def _check_rows(self, rows: list[Any], where: str) -> None:
        """Names the first row that is not an object or holds an unknown field."""
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RequestError(
                    f"{where}[{index}]: expected an object, got {type(row).__name__}"
                )
            if not self.known.issuperset(row):
                self._check_fields(list(row), f"{where}[{index}]")

    def shape_columns(self, data: Any, where: str = "inputs") -> RawRequest:
        """Checks column-oriented input: an object of equal-length lists (TF Serving style)."""
        if not isinstance(data, Mapping):
            raise RequestError(f"{where}: expected an object of lists, got {type(data).__name__}")
        self._check_fields(list(data), where)
        lengths = set()
        for name in self.inputs:
            if name in data:
                if not isinstance(data[name], list | np.ndarray):
                    raise RequestError(f"{where}.{name}: expected a list of values")
                lengths.add(len(data[name]))
        if len(lengths) > 1:
            raise RequestError(f"{where}: fields have different lengths {sorted(lengths)}")
        rows = lengths.pop() if lengths else 0
        self._check_size(rows)
        columns: dict[str, Sequence[Any]] = {}
        for name, feature in self.inputs.items():
            if name not in data and feature.required and name not in self.lookup:
                raise RequestError(f"{where}.{name}: missing required field")
            columns[name] = list(data[name]) if name in data else [None] * rows
        return RawRequest(columns, rows, where, row_major=False)

    def from_rows(self, rows: Any, where: str = "instances") -> dict[str, np.ndarray]:
        """Validates row-oriented input: a list of objects, one per row (KServe V1)."""
        return self._checked(self.shape_rows(rows, where))

    def from_columns(self, data: Any, where: str = "inputs") -> dict[str, np.ndarray]:
        """Validates column-oriented input: an object of equal-length lists (TF Serving style)."""
        return self._checked(self.shape_columns(data, where))
