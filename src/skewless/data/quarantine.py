"""The quarantine: what a refused row looks like in ``quarantine.parquet``.

Every raw column as text (nothing is lost in conversion), the ``reason`` naming each failed field
and why, and where the row was: its index among the parsed rows, or for a line the reader could not
split into columns, its line number and text.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from skewless.contract.spec import FeatureSpec
from skewless.contract.validate import Violations
from skewless.data.raw import _Malformed


def quarantine_schema(spec: FeatureSpec) -> pa.Schema:
    """Arrow schema of quarantined rows: raw values as text, so nothing is lost in conversion."""
    raw = [pa.field(name, pa.string()) for name in spec.column_names]
    return pa.schema(
        [
            *raw,
            pa.field("reason", pa.string(), nullable=False),
            pa.field("row_index", pa.int64()),
            pa.field("line_number", pa.int64()),
            pa.field("raw_line", pa.string()),
        ]
    )


def raw_text(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Raw values as text for the quarantine (bytes that are not UTF-8 shown with escapes)."""
    kind = column.type
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        texts = [
            None if v is None else v.decode("utf-8", "backslashreplace") for v in column.to_pylist()
        ]
        return np.array(texts, dtype=object)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return column.to_numpy(zero_copy_only=False)
    return np.array([None if v is None else str(v) for v in column.to_pylist()], dtype=object)


def quarantine_frame(
    table: pa.Table, spec: FeatureSpec, bad: np.ndarray, check: Violations, first_row_index: int
) -> pd.DataFrame:
    """The rows ``bad`` marks, raw, each with its reason (``check``) and row index in the file
    (``first_row_index`` is the chunk's first)."""
    indices = np.flatnonzero(bad)
    raw = {name: raw_text(table.column(name))[indices] for name in spec.column_names}
    return pd.DataFrame(
        {
            **raw,
            "reason": [check.reason(int(i)) for i in indices],
            "row_index": indices + first_row_index,
            "line_number": pd.array([None] * len(indices), dtype="Int64"),
            "raw_line": [None] * len(indices),
        }
    )


def malformed_frame(spec: FeatureSpec, malformed: list[_Malformed]) -> pd.DataFrame:
    """Lines the reader could not split into the spec's columns, as quarantine rows: the line
    itself and its number, no columns."""
    return pd.DataFrame(
        {
            **{name: [None] * len(malformed) for name in spec.column_names},
            "reason": [m.reason for m in malformed],
            "row_index": pd.array([None] * len(malformed), dtype="Int64"),
            "line_number": pd.array([m.line_number for m in malformed], dtype="Int64"),
            "raw_line": [m.text for m in malformed],
        }
    )
