"""The text kinds: categorical, id and key values, then tags and free text with their tokenizers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

if TYPE_CHECKING:
    import pandas as pd
    import tensorflow as tf

    from skewless.contract.spec import Feature
    from skewless.contract.validate import Violations

from skewless.contract.kinds.base import (
    _ASCII_LOWER,
    TEXT_SPLIT_PATTERN,
    Kind,
    _blank,
    _decoded,
    _filled,
    _refused,
)


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
        column = _decoded(column, feature, v)
        kind = column.type
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
            return _refused(column, feature, v, "text", np.full(len(column), "", dtype=object))
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
