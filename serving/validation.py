"""Request validation against the feature spec, before anything reaches TensorFlow.

The serving contract is the ingestion contract: the same spec decides which fields exist, their
types, ranges, domains and lengths, and what stands in for a missing optional value. Every problem
raises :class:`RequestError` with a message that names the field (and row) and the problem; the
server maps it to a 4xx.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from skewless.contract.spec import Feature, FeatureSpec

DEFAULT_MAX_BATCH = 1024


class RequestError(ValueError):
    """A client sent a request that breaks the contract; the message names the field."""


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )


def _check_value(feature: Feature, value: Any, where: str) -> Any:
    """Returns the value to feed (the default for a missing optional one) or raises."""
    if value is None:
        if feature.required:
            raise RequestError(f"{where}: missing required value")
        return feature.default
    if feature.kind == "numeric":
        if not _is_number(value):
            raise RequestError(f"{where}: expected a number, got {type(value).__name__} {value!r}")
        number = float(value)
        if not math.isfinite(number):
            raise RequestError(f"{where}: expected a finite number, got {number}")
        if feature.min_value is not None and number < feature.min_value:
            raise RequestError(f"{where}: {number:g} is below the minimum {feature.min_value:g}")
        if feature.max_value is not None and number > feature.max_value:
            raise RequestError(f"{where}: {number:g} is above the maximum {feature.max_value:g}")
        return number
    if not isinstance(value, str):
        raise RequestError(f"{where}: expected a string, got {type(value).__name__} {value!r}")
    if feature.max_length is not None and len(value) > feature.max_length:
        raise RequestError(
            f"{where}: string of {len(value)} characters exceeds max_length {feature.max_length}"
        )
    if feature.allowed_values is not None and value.strip():
        parts = value.split(feature.delimiter) if feature.kind == "tags" else [value]
        unknown = [p for p in parts if p and p not in feature.allowed_values]
        if unknown:
            raise RequestError(f"{where}: {unknown[0]!r} is not one of the allowed values")
    if not value.strip() and feature.required and feature.kind not in ("tags", "text"):
        raise RequestError(f"{where}: missing required value (empty string)")
    return value


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
        self.ignored = {name for name in spec.column_names if name not in self.inputs}

    def _check_fields(self, names: Sequence[str], where: str) -> None:
        unknown = sorted(set(names) - set(self.inputs) - self.ignored)
        if unknown:
            raise RequestError(
                f"{where}: unknown field {unknown[0]!r}; expected fields: {sorted(self.inputs)}"
            )

    def _check_size(self, rows: int) -> None:
        if rows == 0:
            raise RequestError("empty batch: the request has no rows")
        if rows > self.max_batch:
            raise RequestError(f"batch of {rows} rows exceeds the maximum of {self.max_batch}")

    def _typed(self, columns: dict[str, list[Any]]) -> dict[str, np.ndarray]:
        out = {}
        for name, feature in self.inputs.items():
            dtype = np.float32 if feature.kind == "numeric" else object
            out[name] = np.asarray(columns[name], dtype=dtype)
        return out

    def from_rows(self, rows: Any, where: str = "instances") -> dict[str, np.ndarray]:
        """Validates row-oriented input: a list of objects, one per row (KServe V1)."""
        if not isinstance(rows, list):
            raise RequestError(f"{where}: expected a list of objects, got {type(rows).__name__}")
        self._check_size(len(rows))
        columns: dict[str, list[Any]] = {name: [] for name in self.inputs}
        for index, row in enumerate(rows):
            if not isinstance(row, Mapping):
                raise RequestError(
                    f"{where}[{index}]: expected an object, got {type(row).__name__}"
                )
            self._check_fields(list(row), f"{where}[{index}]")
            for name, feature in self.inputs.items():
                value = _check_value(feature, row.get(name), f"{where}[{index}].{name}")
                columns[name].append(value)
        return self._typed(columns)

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
        columns: dict[str, list[Any]] = {}
        for name, feature in self.inputs.items():
            values = data.get(name)
            if values is None and feature.required:
                raise RequestError(f"{where}.{name}: missing required field")
            values = [None] * rows if values is None else list(values)
            columns[name] = [
                _check_value(feature, v, f"{where}.{name}[{i}]") for i, v in enumerate(values)
            ]
        return self._typed(columns)
