"""The one validator: raw columns in, canonical columns and per-row failures out.

Ingestion calls :func:`check_table` on each Arrow chunk it reads; the model server calls
:func:`check_values` on each request column. Both end in :func:`check_column`, which applies the
feature's kind (:mod:`skewless.contract.kinds`) and then the spec's required/default rule, so a
value is kept, defaulted or refused the same way, with the same words, wherever it arrives.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from skewless.contract.kinds import kind_of, show
from skewless.contract.spec import Feature, FeatureSpec


class Violations:
    """Per-row failures of one batch of rows, and per-reason counts."""

    def __init__(self, rows: int, weights: np.ndarray | None = None) -> None:
        """An empty record for ``rows`` rows; ``weights[i]`` is how many rows row i stands for
        when the rows are a column's distinct values (each failure counts that many times)."""
        self.rows = rows
        self.weights = weights
        self.failures: dict[int, list[tuple[str, str]]] = {}
        self.reason_counts: Counter[str] = Counter()
        self._failed: dict[str, np.ndarray] = {}

    def fail(self, mask: np.ndarray, field: str, problem: str, detail: Any = None) -> None:
        """Marks the rows in ``mask`` failed on ``field``; ``detail[i]`` is quoted for row i."""
        if not mask.any():  # the usual case, and cheaper than finding no indices
            return
        indices = np.flatnonzero(mask)
        if indices.size == 0:
            return
        count = indices.size if self.weights is None else self.weights[indices].sum()
        self.reason_counts[f"{field}: {problem}"] += int(count)
        failed = self._failed.setdefault(field, np.zeros(self.rows, dtype=bool))
        failed[indices] = True
        for i in indices:
            text = f"{problem} ({show(detail[i])})" if detail is not None else problem
            self.failures.setdefault(int(i), []).append((field, text))

    def failed(self, field: str) -> np.ndarray:
        """Mask of the rows already failed on ``field``."""
        return self._failed.get(field, np.zeros(self.rows, dtype=bool))

    def bad_mask(self) -> np.ndarray:
        """Mask of the rows with any failure."""
        mask = np.zeros(self.rows, dtype=bool)
        if self.failures:
            mask[list(self.failures)] = True
        return mask

    def reason(self, row: int) -> str:
        """Every failure of ``row`` as ``field: problem; field: problem``."""
        return "; ".join(f"{field}: {text}" for field, text in self.failures[row])

    def absorb(self, other: Violations, rows: Sequence[int]) -> None:
        """Adds ``other``'s failures, whose row i is this record's row ``rows[i]``."""
        self.reason_counts.update(other.reason_counts)
        for field, mask in other._failed.items():
            failed = self._failed.setdefault(field, np.zeros(self.rows, dtype=bool))
            failed[np.asarray(rows)[mask]] = True
        for row, items in other.failures.items():
            self.failures.setdefault(int(rows[row]), []).extend(items)

    def spread(self, other: Violations, indices: np.ndarray) -> None:
        """Adds ``other``'s failures, whose row j stands for every row i with ``indices[i] == j``
        (``other`` records a column's distinct values, weighted by how often each occurs)."""
        self.reason_counts.update(other.reason_counts)
        if not other.failures:
            return
        rows = np.flatnonzero(np.isin(indices, np.fromiter(other.failures, dtype=indices.dtype)))
        for field, mask in other._failed.items():
            failed = self._failed.setdefault(field, np.zeros(self.rows, dtype=bool))
            failed[rows[mask[indices[rows]]]] = True
        for row in rows:
            self.failures.setdefault(int(row), []).extend(other.failures[int(indices[row])])


def check_column(
    feature: Feature, column: pa.Array | pa.ChunkedArray, v: Violations
) -> tuple[np.ndarray, np.ndarray]:
    """Checks one raw Arrow column and returns ``(values, missing)``.

    ``values`` holds the canonical value fed to the transform, with the default where an optional
    value is missing; rows that failed hold an arbitrary value (they are quarantined or refused).
    """
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    values, missing = kind_of(feature).parse(feature, column, v)
    if feature.required:
        v.fail(missing & ~v.failed(feature.name), feature.name, "missing required value")
    elif missing.any():
        default = feature.default
        values = values.copy()
        values[missing] = default
    return values, missing


def check_table(
    table: pa.Table, spec: FeatureSpec
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], Violations]:
    """Checks every spec column of a raw chunk.

    Returns:
        ``(columns, imputed, violations)``: canonical values per column, the masks of optional
        values that took their default, and the per-row failures.
    """
    v = Violations(table.num_rows)
    columns: dict[str, np.ndarray] = {}
    imputed: dict[str, np.ndarray] = {}
    for feature in spec.features.values():
        values, missing = check_column(feature, table.column(feature.name), v)
        columns[feature.name] = values
        if not feature.required and missing.any():
            imputed[feature.name] = missing
    return columns, imputed, v


def check_values(feature: Feature, values: Any, v: Violations) -> np.ndarray:
    """Checks one column of a request (a JSON list or a decoded tensor); returns its values.

    A column whose values share one type is checked as one Arrow array; a column that mixes types
    (a number beside a string, say) is checked one type group at a time by the same rules, so each
    value gets the verdict it would get in a column of its own type.
    """
    array = _homogeneous(values)
    if array is not None:
        return _check_distinct(feature, array, v, values)
    items = list(values)
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(_type_group(item), []).append(index)
    out: np.ndarray | None = None
    for group, rows in groups.items():
        sub = Violations(len(rows))
        checked, _ = check_column(feature, _group_array(group, [items[i] for i in rows]), sub)
        v.absorb(sub, rows)
        if out is None:
            out = np.empty(len(items), dtype=checked.dtype)
        out[rows] = checked
    assert out is not None
    return out


def _check_distinct(feature: Feature, array: pa.Array, v: Violations, values: Any) -> np.ndarray:
    """:func:`check_column` on each distinct text value once, its verdict and canonical value
    spread over the rows that hold it (every rule is a rule on one value). A ranking request
    repeats the user's and the context's values on each of its hundreds of candidate rows; a
    column of mostly distinct values (a sample of its first rows tells) is checked as it is."""
    text = pa.types.is_string(array.type) or pa.types.is_binary(array.type)
    if not text or len(array) < _DISTINCT_MIN_ROWS or _mostly_distinct(values):
        return check_column(feature, array, v)[0]
    encoded = array.dictionary_encode(null_encoding="encode")
    indices = encoded.indices.to_numpy(zero_copy_only=False)
    distinct = encoded.dictionary
    if 2 * len(distinct) > len(array):
        return check_column(feature, array, v)[0]
    sub = Violations(len(distinct), weights=np.bincount(indices, minlength=len(distinct)))
    checked, _ = check_column(feature, distinct, sub)
    v.spread(sub, indices)
    return checked[indices]


_DISTINCT_MIN_ROWS = 64  # below this, finding the distinct values costs about what it saves
_SAMPLE = 32


def _mostly_distinct(values: Any) -> bool:
    """Whether the first rows of a column of text are mostly different values."""
    try:
        return 2 * len(set(values[:_SAMPLE])) > _SAMPLE
    except TypeError:  # not sliceable or unhashable: let the dictionary decide
        return False


def _homogeneous(values: Any) -> pa.Array | None:
    """The values as one Arrow array when they share one JSON type; None when they mix types."""
    if isinstance(values, np.ndarray) and values.dtype != object:
        return pa.array(values)
    try:
        array = pa.array(values, from_pandas=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, UnicodeEncodeError, TypeError):
        return None
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_binary(kind):
        types = set(map(type, values))  # one C-level pass; JSON values are exact types
        if not types.isdisjoint((bool, np.bool_)):
            return None  # Arrow would read true as 1.0
        if pa.types.is_binary(kind) and str in types:
            return None  # Arrow would read text as bytes
    return array


def _type_group(item: Any) -> str:
    if item is None:
        return "null"
    if isinstance(item, bool | np.bool_):
        return "bool"
    if isinstance(item, int | np.integer):
        return "int" if -(2**63) <= int(item) < 2**63 else "bigint"
    if isinstance(item, float | np.floating):
        return "float"
    if isinstance(item, str):
        try:
            item.encode("utf-8")
        except UnicodeEncodeError:
            return "bad-text"  # a lone surrogate from JSON's \\ud800 escapes
        return "text"
    if isinstance(item, bytes):
        return "bytes"
    return "object" if isinstance(item, dict) else "list"


def _group_array(group: str, items: list[Any]) -> pa.Array:
    if group == "bigint":
        return pa.array([str(item) for item in items], type=pa.string())
    if group == "bad-text":
        return pa.array([item.encode("utf-8", "surrogatepass") for item in items], pa.binary())
    if group == "list":
        return pa.array([[] for _ in items], type=pa.list_(pa.null()))
    if group == "object":
        return pa.array([{"_": None} for _ in items], type=pa.struct([("_", pa.null())]))
    if group == "float":
        return pa.array([float(item) for item in items], type=pa.float64())
    return pa.array(items)
