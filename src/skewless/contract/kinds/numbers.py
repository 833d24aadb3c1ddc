"""The number kinds: numeric features, the label and passthrough columns."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import tensorflow as tf

    from skewless.contract.spec import Feature
    from skewless.contract.validate import Violations

from skewless.contract.kinds.base import (
    _FALSE_STRINGS,
    _NAN_STRINGS,
    _TRUE_STRINGS,
    Kind,
    _blank,
    _decoded,
    _filled,
    _refused,
)
from skewless.contract.kinds.text import _Text


class _Number(Kind):
    """Numbers: accepts numeric columns and numeric text (as a CSV cell holds it)."""

    numeric = True
    accepts_bool = False

    def numbers(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """Float64 values and the missing mask; checks finiteness and the range."""
        column = _decoded(column, feature, v)
        if pa.types.is_boolean(column.type) and self.accepts_bool:
            column = column.cast(pa.int8())
        kind = column.type
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            missing = column.is_null().to_numpy(zero_copy_only=False)
            # Unsafe: an integer beyond 2**53 becomes the nearest float, as JSON parsers do.
            as_float = column.cast(pa.float64(), safe=False)
            values = _filled(as_float, 0.0).to_numpy(zero_copy_only=False)
            shown: np.ndarray = values
        elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
            values, missing = self._from_text(feature, column, v)
            shown = column.to_numpy(zero_copy_only=False)  # quote the text as it was given
        else:
            return _refused(column, feature, v, "a number", np.zeros(len(column)))
        failed = v.failed(feature.name)
        nonfinite = ~np.isfinite(values) & ~missing & ~failed
        v.fail(nonfinite, feature.name, "not a finite number", shown)
        present = ~missing & ~failed & ~nonfinite
        if feature.min_value is not None:
            below = present & (values < feature.min_value)
            v.fail(below, feature.name, f"below minimum {feature.min_value:g}", values)
        if feature.max_value is not None:
            above = present & (values > feature.max_value)
            v.fail(above, feature.name, f"above maximum {feature.max_value:g}", values)
        return values, missing

    def _from_text(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        missing = _blank(column)
        text = pc.utf8_lower(pc.utf8_trim_whitespace(pc.fill_null(column, "")))
        if self.accepts_bool:
            text = pc.if_else(pc.is_in(text, pa.array(_TRUE_STRINGS)), "1", text)
            text = pc.if_else(pc.is_in(text, pa.array(_FALSE_STRINGS)), "0", text)
        text = pc.if_else(pa.array(missing), "0", text)
        # One parser for every path (pandas'), so a value's fate never depends on its neighbours.
        import pandas as pd

        values = pd.to_numeric(
            pd.Series(text.to_numpy(zero_copy_only=False), dtype=object), errors="coerce"
        ).to_numpy(dtype=np.float64)
        nan_literal = pc.is_in(text, pa.array(_NAN_STRINGS)).to_numpy(zero_copy_only=False)
        not_number = np.isnan(values) & ~nan_literal & ~missing
        v.fail(not_number, feature.name, "not a number", column.to_numpy(zero_copy_only=False))
        return values, missing


class Numeric(_Number):
    """A number fed to the model: z-scored, log then z-scored, or bucketized by quantiles."""

    name = "numeric"
    options = frozenset({"transform", "num_buckets", "min", "max", "embedding_dim"})

    def parse(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`Kind.parse`; values are float32."""
        values, missing = self.numbers(feature, column, v)
        return values.astype(np.float32), missing

    def transform(self, feature: Feature, raw: tf.Tensor) -> tf.Tensor:
        """zscore, log (log1p then z-score) or bucketize (quantile id, 0 is padding)."""
        import tensorflow as tf
        import tensorflow_transform as tft

        if feature.transform == "zscore":
            return tft.scale_to_z_score(raw)
        if feature.transform == "log":
            return tft.scale_to_z_score(tf.math.log1p(tf.maximum(raw, 0.0)))
        return tft.bucketize(raw, feature.num_buckets or 10) + 1


class Label(_Number):
    """The binary label: 0 or 1 (true/false text and booleans are accepted)."""

    name = "label"
    accepts_bool = True
    model_input = False

    def clean_type(self, feature: Feature) -> pa.DataType:
        """Labels are stored as int64."""
        return pa.int64()

    def parse(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`Kind.parse`; values are int64 0 or 1."""
        values, missing = self.numbers(feature, column, v)
        present = ~missing & ~v.failed(feature.name)
        v.fail(present & ~np.isin(values, (0.0, 1.0)), feature.name, "label must be 0 or 1", values)
        return np.where(np.isin(values, (0.0, 1.0)), values, 0).astype(np.int64), missing


class Passthrough(_Number):
    """A column carried along unchanged (never a model input); ``dtype`` float or string."""

    name = "passthrough"
    options = frozenset({"dtype", "min", "max"})
    model_input = False

    def clean_type(self, feature: Feature) -> pa.DataType:
        """float64 or string, by the feature's dtype."""
        return pa.float64() if feature.dtype == "float" else pa.string()

    def parse(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`Kind.parse`."""
        if feature.dtype == "float":
            return self.numbers(feature, column, v)
        return _Text.strings(feature, column, v, accept_numbers=True)
