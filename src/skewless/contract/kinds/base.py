"""What every kind shares: the :class:`Kind` interface and the Arrow helpers its parsers use."""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import tensorflow as tf

    from skewless.contract.spec import Feature
    from skewless.contract.validate import Violations

# Text is lower-cased (ASCII only, as tf.strings.lower does) and split on anything that is not an
# ASCII letter or digit.
TEXT_SPLIT_PATTERN = "[^0-9a-z]+"
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_TRUE_STRINGS = ("1", "1.0", "true")
_FALSE_STRINGS = ("0", "0.0", "false")
_NAN_STRINGS = ("nan", "+nan", "-nan")


def show(value: Any) -> str:
    """A value as a message quotes it: numbers plainly, text in quotes and cut at 40 characters."""
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _type_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "true/false"
    if pa.types.is_integer(arrow_type) or pa.types.is_floating(arrow_type):
        return "a number"
    if pa.types.is_list(arrow_type) or pa.types.is_large_list(arrow_type):
        return "a list"
    if pa.types.is_struct(arrow_type) or pa.types.is_map(arrow_type):
        return "an object"
    return str(arrow_type)


def _combined(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(column, pa.ChunkedArray):
        return column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    return column


def _decoded(column: pa.Array, feature: Feature, v: Violations) -> pa.Array:
    """Binary values as UTF-8 text (values that are not valid UTF-8 fail and become null); other
    columns as they are."""
    if not (pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type)):
        return column
    try:
        return column.cast(pa.string())
    except pa.ArrowInvalid:
        texts: list[str | None] = []
        bad = np.zeros(len(column), dtype=bool)
        for index, raw in enumerate(column.to_pylist()):
            try:
                texts.append(None if raw is None else raw.decode("utf-8"))
            except UnicodeDecodeError:
                bad[index] = True
                texts.append(None)
        v.fail(bad, feature.name, "not valid UTF-8 text")
        return pa.array(texts, type=pa.string())


_EMPTY = pa.scalar("")


def _filled(array: pa.Array, value: Any) -> pa.Array:
    """``array`` with nulls replaced by ``value`` (``pc.fill_null`` without its per-call type
    inference, which costs more than the work on a request's few rows)."""
    if array.null_count == 0:
        return array
    return pc.coalesce(array, pa.scalar(value, type=array.type))


def _blank(text: pa.Array) -> np.ndarray:
    """Null or only white space."""
    trimmed = pc.utf8_trim_whitespace(text)
    return _filled(pc.equal(trimmed, _EMPTY), True).to_numpy(zero_copy_only=False)


def _refused(
    column: pa.Array, feature: Feature, v: Violations, expected: str, fill: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A column of a type the kind does not take: each value given fails ("expected ``expected``,
    got ...") and ``fill`` stands for the values. A column of Arrow's null type lands here too:
    nothing is given, so nothing fails and every value is missing."""
    present = ~column.is_null().to_numpy(zero_copy_only=False)
    v.fail(present, feature.name, f"expected {expected}, got {_type_name(column.type)}")
    return fill, ~present


def _nothing(n: int) -> np.ndarray:
    return np.zeros(n, dtype=bool)


class Kind:
    """The rules of one feature kind. Subclasses set the class attributes and override methods."""

    name: ClassVar[str]
    options: ClassVar[frozenset[str]] = frozenset()
    numeric: ClassVar[bool] = False
    model_input: ClassVar[bool] = True

    def clean_type(self, feature: Feature) -> pa.DataType:
        """Arrow type of the clean column (what ingestion writes and the transform reads)."""
        return pa.float32() if self.numeric else pa.string()

    def v2_datatype(self, feature: Feature) -> str:
        """Open Inference Protocol datatype of the raw input."""
        return "FP32" if self.numeric else "BYTES"

    def tf_dtype(self, feature: Feature) -> tf.DType:
        """``tf`` dtype of the raw model input."""
        import tensorflow as tf

        return tf.float32 if self.numeric else tf.string

    def parse(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """Canonical values and the missing mask of one raw column; failures go to ``v``.

        Args:
            feature: The feature the column holds.
            column: Raw values as Arrow (any type: CSV gives text, Parquet and JSON give types).
            v: Collects per-row failures.

        Returns:
            ``(values, missing)``: canonical values (anything where the row failed or the value
            is missing) and the mask of missing values.
        """
        raise NotImplementedError

    def transform(self, feature: Feature, raw: tf.Tensor) -> tf.Tensor:
        """The TFT fragment: raw batched values to the model input."""
        raise NotImplementedError
