"""One class per feature kind: everything the project knows about that kind lives here.

A kind owns, for the features of that kind:

* the spec options it accepts (:attr:`Kind.options`);
* which raw values it accepts and how they become the canonical value fed to the transform
  (:meth:`Kind.parse`, vectorized over an Arrow column);
* the checks (required, range, domain, length, finite) and their messages;
* the Arrow type of the clean column, the ``tf`` dtype of the raw model input and its Open
  Inference Protocol (V2) datatype;
* its TensorFlow Transform fragment (:meth:`Kind.transform`) and, for tags and text, the tokenizer,
  written once for TensorFlow and once for pandas side by side.

Ingestion (Arrow chunks of a CSV or Parquet file) and serving (a request's columns turned into Arrow
arrays) both call :func:`skewless.contract.validate.check_column`, which calls :meth:`Kind.parse`:
there is no second validator.

Missing values: a null, an absent field and a blank string (empty, or only white space) all mean
missing, as a blank CSV cell does. A missing required value fails the row; a missing optional one
takes the feature's default.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pandas as pd
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


class _Number(Kind):
    """Numbers: accepts numeric columns and numeric text (as a CSV cell holds it)."""

    numeric = True
    accepts_bool = False

    def numbers(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """Float64 values and the missing mask; checks finiteness and the range."""
        n = len(column)
        column = _decoded(column, feature, v)
        kind = column.type
        if pa.types.is_null(kind):
            return np.zeros(n), np.ones(n, dtype=bool)
        if pa.types.is_boolean(kind) and self.accepts_bool:
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
            present = ~column.is_null().to_numpy(zero_copy_only=False)
            v.fail(present, feature.name, f"expected a number, got {_type_name(kind)}")
            return np.zeros(n), ~present
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


class _Text(Kind):
    """Text values: every string kind shares these rules."""

    accept_numbers: ClassVar[bool] = False

    @staticmethod
    def strings(
        feature: Feature, column: pa.Array, v: Violations, *, accept_numbers: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Canonical text (object array, "" where missing) and the missing mask.

        Whole numbers are accepted where ``accept_numbers`` (ids, categories, keys), written in
        their plain decimal form, so 19, 19.0 and "19" are the same id; other numbers fail.
        """
        n = len(column)
        column = _decoded(column, feature, v)
        kind = column.type
        if pa.types.is_null(kind):
            return np.full(n, "", dtype=object), np.ones(n, dtype=bool)
        if accept_numbers and pa.types.is_integer(kind):
            column = column.cast(pa.string())
        elif accept_numbers and pa.types.is_floating(kind):
            # Whole and exactly representable (|x| <= 2**53), so the text form is exact.
            whole_valued = pc.equal(pc.round(column), column)
            exact = pc.and_(whole_valued, pc.less_equal(pc.abs(column), 2.0**53))
            whole = _filled(exact, True).to_numpy(zero_copy_only=False)
            shown = column.to_numpy(zero_copy_only=False)  # nulls (missing values) make a copy
            v.fail(~whole, feature.name, "expected text or a whole number", shown)
            rounded = pc.if_else(pa.array(whole), column, 0.0)
            column = pc.cast(pc.cast(rounded, pa.int64(), safe=False), pa.string())
        elif not (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
            present = ~column.is_null().to_numpy(zero_copy_only=False)
            v.fail(present, feature.name, f"expected text, got {_type_name(kind)}")
            return np.full(n, "", dtype=object), ~present
        missing = _blank(column)
        values = _filled(column, "").to_numpy(zero_copy_only=False)
        if feature.max_length is not None:
            lengths = _filled(pc.utf8_length(column), 0).to_numpy(zero_copy_only=False)
            too_long = lengths > feature.max_length
            v.fail(too_long, feature.name, f"longer than max_length {feature.max_length}", lengths)
        return values, missing

    def parse(
        self, feature: Feature, column: pa.Array, v: Violations
    ) -> tuple[np.ndarray, np.ndarray]:
        """See :meth:`Kind.parse`; values are Python strings."""
        values, missing = self.strings(feature, column, v, accept_numbers=self.accept_numbers)
        self.check_domain(feature, values, missing, v)
        return values, missing

    def check_domain(
        self, feature: Feature, values: np.ndarray, missing: np.ndarray, v: Violations
    ) -> None:
        """Fails values outside ``allowed_values`` (when the feature has them)."""
        if feature.allowed_values is None:
            return
        known = pc.is_in(pa.array(values, type=pa.string()), pa.array(feature.allowed_values))
        unknown = ~known.to_numpy(zero_copy_only=False) & ~missing
        v.fail(unknown, feature.name, "not in allowed_values", values)

    def vocabulary(self, feature: Feature, values: Any) -> Any:
        """Vocabulary ids (shifted by one: 0 is padding) for string values or tokens."""
        import tensorflow_transform as tft

        return tft.compute_and_apply_vocabulary(
            values,
            top_k=feature.top_k,
            num_oov_buckets=feature.oov_buckets,
            vocab_filename=feature.vocab_filename,
        )


class _Single(_Text):
    """One id per row, from a vocabulary or by hashing."""

    def transform(self, feature: Feature, raw: tf.Tensor) -> tf.Tensor:
        """Hash bucket or vocabulary id, plus one (0 is padding)."""
        import tensorflow as tf

        if feature.encoding == "hash":
            return tf.strings.to_hash_bucket_fast(raw, feature.hash_buckets or 1) + 1
        return self.vocabulary(feature, raw) + 1


_ID_OPTIONS = {"encoding", "top_k", "oov_buckets", "hash_buckets", "max_length", "embedding_dim"}


class Categorical(_Single):
    """A value from a (possibly closed) domain; whole numbers are accepted as their text."""

    name = "categorical"
    options = frozenset({*_ID_OPTIONS, "allowed_values"})
    accept_numbers = True


class Id(_Single):
    """An identifier (user, item); whole numbers are accepted as their text."""

    name = "id"
    options = frozenset(_ID_OPTIONS)
    accept_numbers = True


class Key(_Text):
    """The row key hashed to split train from eval; never a model input."""

    name = "key"
    options = frozenset({"max_length"})
    accept_numbers = True
    model_input = False


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

        n = len(column)
        column = _decoded(column, feature, v)
        kind = column.type
        zero = np.zeros(n, dtype="datetime64[us]")
        if pa.types.is_null(kind):
            return zero, np.ones(n, dtype=bool)
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
            present = ~missing
            v.fail(present, feature.name, f"expected a time, got {_type_name(kind)}")
            return zero, ~present
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


class _Tokens(_Text):
    """A padded sequence of token ids (tags and text)."""

    def tokens_tf(self, feature: Feature, values: tf.Tensor) -> tf.RaggedTensor:
        """Tokens of each value, inside the model."""
        raise NotImplementedError

    def tokens_pandas(self, feature: Feature, column: pd.Series) -> pd.Series:
        """The same tokens outside the model (statistics): one row per token, index = source row."""
        raise NotImplementedError

    def truncated(self, feature: Feature, values: tf.Tensor) -> tf.RaggedTensor:
        """Non-empty tokens, at most the padded length per row."""
        import tensorflow as tf

        tokens = self.tokens_tf(feature, values)
        tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))
        return tokens[:, : feature.sequence_length]

    def transform(self, feature: Feature, raw: tf.Tensor) -> tf.Tensor:
        """Vocabulary ids of the tokens, padded with 0 to the sequence length."""
        ids = self.vocabulary(feature, self.truncated(feature, raw))
        return (ids + 1).to_tensor(default_value=0, shape=[None, feature.sequence_length])


class Tags(_Tokens):
    """A delimited list of tags, e.g. ``books|music``."""

    name = "tags"
    options = frozenset(
        {"delimiter", "max_tags", "top_k", "oov_buckets", "allowed_values", "max_length"}
        | {"embedding_dim"}
    )

    def tokens_tf(self, feature: Feature, values: tf.Tensor) -> tf.RaggedTensor:
        """Split on the delimiter."""
        import tensorflow as tf

        return tf.strings.split(values, sep=feature.delimiter)

    def tokens_pandas(self, feature: Feature, column: pd.Series) -> pd.Series:
        """Split on the delimiter."""
        tokens = column.str.split(feature.delimiter, regex=False).explode()
        return tokens[tokens.notna() & (tokens != "")]

    def check_domain(
        self, feature: Feature, values: np.ndarray, missing: np.ndarray, v: Violations
    ) -> None:
        """Fails rows with a tag outside ``allowed_values``, naming the first such tag."""
        if feature.allowed_values is None:
            return
        lists = pc.split_pattern(pa.array(values, type=pa.string()), feature.delimiter)
        tags = pc.list_flatten(lists)
        rows = pc.list_parent_indices(lists).to_numpy(zero_copy_only=False)
        unknown = ~pc.is_in(tags, pa.array(feature.allowed_values)).to_numpy(
            zero_copy_only=False
        ) & (pc.not_equal(tags, "").to_numpy(zero_copy_only=False))
        if not unknown.any():
            return
        bad = np.zeros(len(values), dtype=bool)
        bad[rows[unknown]] = True
        first = np.full(len(values), "", dtype=object)
        tag_values = tags.to_numpy(zero_copy_only=False)
        for row, tag in zip(rows[unknown][::-1], tag_values[unknown][::-1], strict=True):
            first[row] = tag
        v.fail(bad, feature.name, "tag not in allowed_values", first)


class Text(_Tokens):
    """Free text: lower-cased, split on anything that is not a letter or digit."""

    name = "text"
    options = frozenset({"max_tokens", "top_k", "oov_buckets", "max_length", "embedding_dim"})

    def tokens_tf(self, feature: Feature, values: tf.Tensor) -> tf.RaggedTensor:
        """ASCII lower-case, then split on :data:`TEXT_SPLIT_PATTERN`."""
        import tensorflow as tf

        cleaned = tf.strings.regex_replace(tf.strings.lower(values), TEXT_SPLIT_PATTERN, " ")
        return tf.strings.split(tf.strings.strip(cleaned))

    def tokens_pandas(self, feature: Feature, column: pd.Series) -> pd.Series:
        """ASCII lower-case, then split on :data:`TEXT_SPLIT_PATTERN`."""
        lowered = column.str.translate(_ASCII_LOWER)
        tokens = lowered.str.split(TEXT_SPLIT_PATTERN, regex=True).explode()
        return tokens[tokens.notna() & (tokens != "")]


KINDS: dict[str, Kind] = {
    kind.name: kind
    for kind in (
        Numeric(),
        Categorical(),
        Tags(),
        Text(),
        Id(),
        Label(),
        Key(),
        Timestamp(),
        Passthrough(),
    )
}


def kind_of(feature: Feature) -> Kind:
    """The kind object that owns ``feature``'s rules."""
    return KINDS[feature.kind]


def tokens_tf(feature: Feature, values: tf.Tensor) -> tf.RaggedTensor:
    """Non-empty tokens of a tags or text feature, truncated to its padded length."""
    kind = kind_of(feature)
    assert isinstance(kind, _Tokens), f"{feature.name} is not tags or text"
    return kind.truncated(feature, values)


def tokens_pandas(feature: Feature, column: pd.Series) -> pd.Series:
    """Non-empty tokens of a tags or text column; one row per token, index = source row."""
    kind = kind_of(feature)
    assert isinstance(kind, _Tokens), f"{feature.name} is not tags or text"
    return kind.tokens_pandas(feature, column)
