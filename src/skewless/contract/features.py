"""The feature contract's data model: a :class:`FeatureSpec` of :class:`Feature` and :class:`Cross`.

:mod:`skewless.contract.spec` reads a YAML spec into these (and re-exports them); every consumer
(the TFT ``preprocessing_fn``, the Keras model, ingestion and serving validation) reads them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

from skewless.contract.kinds import KINDS

NUMERIC_TRANSFORMS = ("zscore", "log", "bucketize")
ENCODINGS = ("vocabulary", "hash")

# Options every feature may carry; each kind adds its own (skewless.contract.kinds).
_COMMON_OPTIONS = {"kind", "required", "default", "description", "slice", "side"}
# Which tower of the retrieval model a model input feeds (docs/retrieval.md): the query tower
# reads user and context features, the candidate tower item features.
SIDES = ("user", "item", "context")
_CROSS_OPTIONS = {"name", "features", "hash_buckets", "embedding_dim"}
_CROSSABLE_KINDS = ("categorical", "tags", "id", "numeric")
_TOP_LEVEL = {"features", "crosses", "description", "eval_percent"}


class SpecError(ValueError):
    """A feature spec is malformed; the message names the offending field."""


@dataclasses.dataclass(frozen=True)
class Feature:
    """One raw column of the data and how it becomes a model input.

    Attributes:
        name: Column name in the raw data and key of the transformed output.
        kind: A name in :data:`skewless.contract.kinds.KINDS`.
        required: When true (the default) a missing value quarantines the row; otherwise
            ``default`` stands in for it.
        default: Value that stands in for a missing optional value.
        slice: Evaluation reports metrics per value of this feature.
        side: ``user``, ``item`` or ``context`` (:data:`SIDES`): the retrieval tower it feeds;
            None leaves it to the ranker alone.
        description: Free text for humans.
        transform: Numeric transform, one of :data:`NUMERIC_TRANSFORMS`.
        num_buckets: Quantile buckets for ``transform: bucketize``.
        min_value: Inclusive lower bound for numeric values.
        max_value: Inclusive upper bound for numeric values.
        encoding: ``vocabulary`` or ``hash`` for categorical and id features.
        top_k: Vocabulary size limit (None keeps every value seen in training).
        oov_buckets: Hash buckets for values outside the vocabulary.
        hash_buckets: Buckets for ``encoding: hash``.
        allowed_values: Closed domain; other values are quarantined at ingestion.
        max_length: Maximum string length in characters.
        delimiter: Separator of a tags string.
        max_tags: Tags kept per row (the model input is padded to this length).
        max_tokens: Tokens kept per text value (padded to this length).
        embedding_dim: Width of the embedding for id-like model inputs.
        dtype: ``float`` or ``string`` for passthrough columns.
    """

    name: str
    kind: str
    required: bool = True
    default: Any = None
    slice: bool = False
    side: str | None = None
    description: str = ""
    transform: str | None = None
    num_buckets: int | None = None
    min_value: float | None = None
    max_value: float | None = None
    encoding: str | None = None
    top_k: int | None = None
    oov_buckets: int = 1
    hash_buckets: int | None = None
    allowed_values: tuple[str, ...] | None = None
    max_length: int | None = None
    delimiter: str = "|"
    max_tags: int = 8
    max_tokens: int = 16
    embedding_dim: int | None = None
    dtype: str = "float"

    @property
    def is_numeric_raw(self) -> bool:
        """Whether the clean column holds numbers (as opposed to strings)."""
        return self.kind in ("numeric", "label") or (
            self.kind == "passthrough" and self.dtype == "float"
        )

    @property
    def is_model_input(self) -> bool:
        """Whether the transformed feature feeds the model."""
        return KINDS[self.kind].model_input

    @property
    def is_sequence(self) -> bool:
        """Whether the transformed feature is a padded sequence of ids (0 is padding)."""
        return self.kind in ("tags", "text")

    @property
    def is_ids(self) -> bool:
        """Whether the transformed feature is integer ids to embed (single or sequence)."""
        return self.kind in ("categorical", "tags", "text", "id") or (
            self.kind == "numeric" and self.transform == "bucketize"
        )

    @property
    def sequence_length(self) -> int:
        """Padded length of the transformed sequence (1 for scalar features)."""
        if self.kind == "tags":
            return self.max_tags
        if self.kind == "text":
            return self.max_tokens
        return 1

    @property
    def vocab_filename(self) -> str:
        """Name of the TFT vocabulary asset for this feature."""
        return f"vocab_{self.name}"

    @property
    def uses_vocabulary(self) -> bool:
        """Whether ids come from a TFT vocabulary (size known only after analysis)."""
        return self.kind in ("tags", "text") or (
            self.kind in ("categorical", "id") and self.encoding == "vocabulary"
        )


@dataclasses.dataclass(frozen=True)
class Cross:
    """A hashed feature cross over the values of two or more features.

    For multi-valued features every combination is crossed, so ``[history, item_tags]`` yields one
    id per (history category, item tag) pair.
    """

    name: str
    features: tuple[str, ...]
    hash_buckets: int
    embedding_dim: int | None = None


@dataclasses.dataclass(frozen=True)
class FeatureSpec:
    """A validated feature spec. Build it with :func:`load_spec` or :func:`parse_spec`."""

    features: Mapping[str, Feature]
    crosses: tuple[Cross, ...] = ()
    description: str = ""
    eval_percent: int = 20
    source_sha256: str = ""
    source_text: str = ""

    @property
    def label(self) -> Feature:
        """The single binary label."""
        return next(f for f in self.features.values() if f.kind == "label")

    @property
    def key(self) -> Feature | None:
        """The column hashed to split train from eval, if any."""
        return next((f for f in self.features.values() if f.kind == "key"), None)

    @property
    def event_time(self) -> Feature | None:
        """The row's event time (``kind: timestamp``), if any: the feature store's clock."""
        return next((f for f in self.features.values() if f.kind == "timestamp"), None)

    @property
    def model_inputs(self) -> list[Feature]:
        """Features that feed the model, in spec order."""
        return [f for f in self.features.values() if f.is_model_input]

    @property
    def slices(self) -> list[Feature]:
        """Features whose values define evaluation slices."""
        return [f for f in self.features.values() if f.slice]

    def on_side(self, *sides: str) -> list[Feature]:
        """Model inputs marked with one of ``sides``, in spec order."""
        return [f for f in self.model_inputs if f.side in sides]

    @property
    def item_key(self) -> Feature | None:
        """The item-side id feature that names a catalogue item; set when retrieval is on."""
        return next((f for f in self.on_side("item") if f.kind == "id"), None)

    @property
    def user_key(self) -> Feature | None:
        """The first user-side id feature: the feature store's user entity."""
        return next((f for f in self.on_side("user") if f.kind == "id"), None)

    @property
    def has_retrieval(self) -> bool:
        """The spec names both towers' features, so the pipeline trains a retrieval model."""
        return self.item_key is not None

    @property
    def oracle(self) -> Feature | None:
        """A passthrough column named ``true_*`` holding the true probability, if present."""
        return next(
            (
                f
                for f in self.features.values()
                if f.kind == "passthrough" and f.name.startswith("true_")
            ),
            None,
        )

    @property
    def column_names(self) -> list[str]:
        """Every raw column the spec declares, in spec order."""
        return list(self.features)

    def cross_length(self, cross: Cross) -> int:
        """Padded number of crossed ids per row for ``cross``."""
        return math.prod(self.features[name].sequence_length for name in cross.features)
