"""The timestamp kind: a row's event time, in UTC."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:
    import pandas as pd

    from skewless.contract.spec import Feature
    from skewless.contract.validate import Violations

from skewless.contract.kinds.base import (
    Kind,
    _blank,
    _decoded,
    _filled,
    _refused,
)


class Timestamp(Kind):
    """When the row happened (its event time), in UTC; never a model input.

    The feature store joins each row's user and item features as of this time (point in time)
    and keeps the latest value per entity online (docs/feature-store.md). Raw values: ISO 8601
    text (``2026-01-05T14:03:00Z``; without an offset it is UTC), a Parquet or Arrow timestamp
    (naive means UTC), or seconds since the Unix epoch.
    """

    name = "timestamp"
    options = frozenset()
    model_input = False

    def clean_type(self, feature: Feature) -> pa.DataType:
        """Microseconds since the epoch, UTC."""
        return pa.timestamp("us", tz="UTC")

    def parse(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`Kind.parse`; values are ``datetime64[us]`` in UTC."""
        import pandas as pd

        column = _decoded(column, feature, v)
        kind = column.type
        zero = np.zeros(len(column), dtype="datetime64[us]")
        missing = column.is_null().to_numpy(zero_copy_only=False)
        if pa.types.is_timestamp(kind) or pa.types.is_date(kind):
            times = pd.to_datetime(column.to_pandas(), utc=True)
            shown = column.to_numpy(zero_copy_only=False)
        elif pa.types.is_integer(kind) or pa.types.is_floating(kind):
            seconds = _filled(column.cast(pa.float64(), safe=False), 0.0).to_numpy()
            times = self._epoch(feature, seconds, ~missing, v, seconds)
            shown = seconds
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            missing = _blank(column)
            text = pd.Series(_filled(column, "").to_numpy(zero_copy_only=False), dtype=object)
            # Numeric text is epoch seconds, as a number column is (a CSV column mixing both is
            # text), and errors become NaT: a value's fate never depends on its neighbours.
            seconds = pd.to_numeric(text.where(~missing, None), errors="coerce").to_numpy(float)
            numeric = ~np.isnan(seconds)
            # Text with an offset and naive text (UTC) are parsed apart: in one call pandas gives
            # a naive value the offset of the value before it.
            offset = text.str.contains(r"(?:Z|[+-]\d\d:?\d\d)\s*$", regex=True).to_numpy()
            iso = pd.Series(pd.NaT, index=text.index, dtype="datetime64[us, UTC]")
            for group in (offset, ~offset):
                rows = group & ~missing & ~numeric
                iso[rows] = pd.to_datetime(text[rows], utc=True, format="ISO8601", errors="coerce")
            shown = text.to_numpy()
            times = iso.where(~numeric, self._epoch(feature, seconds, numeric, v, shown))
        else:
            return _refused(column, feature, v, "a time", zero)
        times = pd.Series(times)
        bad = times.isna().to_numpy() & ~missing & ~v.failed(feature.name)
        v.fail(bad, feature.name, "not an ISO 8601 time or seconds since the epoch", shown)
        values = times.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[us]")
        return np.where(times.isna().to_numpy(), zero, values), missing

    @staticmethod
    def _epoch(
        feature: Feature, seconds: np.ndarray, rows: np.ndarray, v: Violations, shown: Any
    ) -> pd.Series:
        """UTC times of epoch ``seconds`` at ``rows``: one rule for a number column and for
        numeric text, so a value gets the same words either way."""
        import pandas as pd

        within = np.isfinite(seconds) & (np.abs(seconds) < 1e11)  # within about 5,000 years
        v.fail(rows & ~within, feature.name, "not a finite number of seconds", shown)
        return pd.Series(pd.to_datetime(np.where(rows & within, seconds, 0.0), unit="s", utc=True))

    def v2_datatype(self, feature: Feature) -> str:
        """ISO 8601 text."""
        return "BYTES"
