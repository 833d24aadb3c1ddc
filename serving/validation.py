"""Request validation against the feature spec, before anything reaches TensorFlow.

The serving contract is the ingestion contract, enforced by the same code: each request column goes
through :func:`skewless.contract.validate.check_values`, which applies the feature's kind exactly
as ingestion applies it to a CSV or Parquet column. A value that ingestion would quarantine is
refused here with the same words; a missing optional value (null, an absent field or a blank
string) takes the same default. This module only checks the request's shape (rows or columns,
known fields, batch size) and turns the first failure into a :class:`RequestError` naming the row
and field; the server maps it to a 400.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from skewless.contract.kinds import kind_of, show
from skewless.contract.spec import FeatureSpec
from skewless.contract.validate import Violations, check_values

DEFAULT_MAX_BATCH = 1024


class RequestError(ValueError):
    """A client sent a request that breaks the contract; the message names the field."""


class RequestValidator:
    """Turns request payloads into validated, typed columns for the raw-feature signature."""

    def __init__(self, spec: FeatureSpec, *, max_batch: int = DEFAULT_MAX_BATCH) -> None:
        """Reads the model inputs from ``spec``.

        Args:
            spec: The feature spec the model was trained with.
            max_batch: Largest accepted number of rows in one request.
        """
        self.spec = spec
        self.max_batch = max_batch
        self.inputs = {f.name: f for f in spec.model_inputs}
        # Label, key and passthrough columns may ride along (clients often send whole rows).
        self.known = set(spec.column_names)

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

    def _checked(
        self, columns: Mapping[str, Any], rows: int, locate: Callable[[int, str], str]
    ) -> dict[str, np.ndarray]:
        """Every column through the contract; the first failure (and how many more) raised."""
        violations = Violations(rows)
        out = {
            name: check_values(feature, columns[name], violations)
            for name, feature in self.inputs.items()
        }
        if violations.failures:
            row = min(violations.failures)
            field, problem = violations.failures[row][0]
            more = sum(len(items) for items in violations.failures.values()) - 1
            suffix = f" (and {more} more)" if more else ""
            raise RequestError(f"{locate(row, field)}: {problem}{suffix}")
        return {
            name: np.asarray(values, dtype=np.float32 if kind_of(feature).numeric else object)
            for (name, values), feature in zip(out.items(), self.inputs.values(), strict=True)
        }

    def from_rows(self, rows: Any, where: str = "instances") -> dict[str, np.ndarray]:
        """Validates row-oriented input: a list of objects, one per row (KServe V1)."""
        if not isinstance(rows, list):
            raise RequestError(f"{where}: expected a list of objects, got {type(rows).__name__}")
        self._check_size(len(rows))
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RequestError(
                    f"{where}[{index}]: expected an object, got {type(row).__name__}"
                )
            if not self.known.issuperset(row):
                self._check_fields(list(row), f"{where}[{index}]")
        columns = {name: [row.get(name) for row in rows] for name in self.inputs}
        return self._checked(columns, len(rows), lambda i, name: f"{where}[{i}].{name}")

    def from_columns(self, data: Any, where: str = "inputs") -> dict[str, np.ndarray]:
        """Validates column-oriented input: an object of equal-length lists (TF Serving style)."""
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
        columns: dict[str, Any] = {}
        for name, feature in self.inputs.items():
            if name not in data and feature.required:
                raise RequestError(f"{where}.{name}: missing required field")
            columns[name] = data[name] if name in data else [None] * rows
        return self._checked(columns, rows, lambda i, name: f"{where}.{name}[{i}]")
