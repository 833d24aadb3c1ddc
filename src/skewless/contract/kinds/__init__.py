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

from typing import TYPE_CHECKING

from skewless.contract.kinds.base import TEXT_SPLIT_PATTERN, Kind, show
from skewless.contract.kinds.numbers import Label, Numeric, Passthrough
from skewless.contract.kinds.text import Categorical, Id, Key, Tags, Text, _Tokens
from skewless.contract.kinds.timestamp import Timestamp

if TYPE_CHECKING:
    import pandas as pd
    import tensorflow as tf

    from skewless.contract.spec import Feature

__all__ = ["KINDS", "TEXT_SPLIT_PATTERN", "Kind", "kind_of", "show", "tokens_pandas", "tokens_tf"]

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
