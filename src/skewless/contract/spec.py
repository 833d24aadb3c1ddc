"""The feature contract: one declarative YAML spec, read here for every consumer.

The TFT ``preprocessing_fn``, the Keras model builder, ingestion validation, the serving request
validator and the tests all read a :class:`FeatureSpec`. A spec file looks like::

    features:
      age:
        kind: numeric
        transform: zscore
        min: 13
        max: 100
      country:
        kind: categorical
        allowed_values: [US, GB, DE]
      clicked:
        kind: label
    crosses:
      - features: [history, item_tags]
        hash_buckets: 4096

Features are keyed by name, so there are no parallel lists to keep in step.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

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


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate mapping keys (PyYAML silently keeps the last one)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise SpecError(
                    f"duplicate key {key!r} at line {key_node.start_mark.line + 1}: "
                    "each feature (and option) may appear only once"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


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


SPEC_ASSET = "assets.extra/feature_spec.yaml"


def default_spec_path() -> Path:
    """Path of the spec shipped with the package for the default ranking data."""
    return Path(str(resources.files("skewless.contract") / "ranking_spec.yaml"))


def load_spec(path: str | Path | None = None) -> FeatureSpec:
    """Reads and validates a spec file.

    Args:
        path: YAML file; None loads the default spec shipped with the package.

    Returns:
        The validated spec.

    Raises:
        SpecError: The file is missing, is not YAML, or breaks a rule; the message names the field.
    """
    spec_path = Path(path) if path is not None else default_spec_path()
    try:
        text = spec_path.read_text()
    except OSError as err:
        raise SpecError(f"cannot read spec file {spec_path}: {err.strerror}") from err
    return load_spec_text(text, source=str(spec_path))


def load_spec_text(text: str, *, source: str = "spec") -> FeatureSpec:
    """Validates spec YAML given as text; empty text means the default spec.

    Pipeline steps receive the spec this way (as a run parameter), so a user's own spec travels
    with the run to whatever cluster executes it.

    Raises:
        SpecError: Not YAML, or a rule is broken; the message names the field.
    """
    if not text.strip():
        return load_spec(None)
    try:
        document = yaml.load(text, Loader=_StrictLoader)
    except yaml.YAMLError as err:
        raise SpecError(f"{source} is not valid YAML: {err}") from err
    spec = parse_spec(document)
    return dataclasses.replace(
        spec, source_sha256=hashlib.sha256(text.encode()).hexdigest(), source_text=text
    )


def parse_spec(document: Any) -> FeatureSpec:
    """Validates a spec already parsed from YAML.

    Raises:
        SpecError: A rule is broken; the message names the field.
    """
    if not isinstance(document, dict):
        raise SpecError("spec must be a mapping with a 'features' key")
    unknown = set(document) - _TOP_LEVEL
    if unknown:
        raise SpecError(
            f"unknown top-level key(s) {sorted(unknown)}; allowed: {sorted(_TOP_LEVEL)}"
        )
    raw_features = document.get("features")
    if not isinstance(raw_features, dict) or not raw_features:
        raise SpecError("'features' must be a non-empty mapping of feature name to options")
    features = {name: _parse_feature(name, options) for name, options in raw_features.items()}

    labels = [f.name for f in features.values() if f.kind == "label"]
    if len(labels) != 1:
        raise SpecError(f"spec needs exactly one feature of kind 'label', found {labels or 'none'}")
    keys = [f.name for f in features.values() if f.kind == "key"]
    if len(keys) > 1:
        raise SpecError(f"spec allows at most one feature of kind 'key', found {keys}")
    times = [f.name for f in features.values() if f.kind == "timestamp"]
    if len(times) > 1:
        raise SpecError(f"spec allows at most one feature of kind 'timestamp', found {times}")
    if not any(f.is_model_input for f in features.values()):
        raise SpecError("spec has no model input (numeric, categorical, tags, text or id feature)")
    _check_sides(features)

    crosses = tuple(
        _parse_cross(index, raw, features)
        for index, raw in enumerate(_as_list(document.get("crosses", []), "crosses"))
    )
    names = [c.name for c in crosses]
    clashes = {n for n in names if names.count(n) > 1 or n in features}
    if clashes:
        raise SpecError(f"cross name(s) {sorted(clashes)} clash with another feature or cross")

    eval_percent = document.get("eval_percent", 20)
    if (
        not isinstance(eval_percent, int)
        or isinstance(eval_percent, bool)
        or not (1 <= eval_percent <= 99)
    ):
        raise SpecError(f"eval_percent must be an integer from 1 to 99, got {eval_percent!r}")
    return FeatureSpec(
        features=features,
        crosses=crosses,
        description=str(document.get("description", "")),
        eval_percent=eval_percent,
    )


def _check_sides(features: dict[str, Feature]) -> None:
    """With any ``side`` set, both towers must be buildable: one item id, a query feature."""
    sided = [f for f in features.values() if f.side is not None]
    if not sided:
        return
    item_ids = [f.name for f in sided if f.side == "item" and f.kind == "id"]
    if len(item_ids) != 1:
        raise SpecError(
            "side: retrieval needs exactly one 'kind: id' feature with side: item (the catalogue "
            f"key), found {item_ids or 'none'}"
        )
    if not any(f.side in ("user", "context") for f in sided):
        raise SpecError("side: retrieval needs at least one feature with side: user or context")


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise SpecError(f"'{where}' must be a list, got {type(value).__name__}")
    return value


def _parse_feature(name: Any, options: Any) -> Feature:
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"feature name {name!r} must be a valid identifier (letters, digits, _)")
    where = f"features.{name}"
    if not isinstance(options, dict):
        raise SpecError(f"{where}: options must be a mapping with at least 'kind'")
    kind = options.get("kind")
    if kind not in KINDS:
        raise SpecError(f"{where}.kind: unknown kind {kind!r}; expected one of {list(KINDS)}")
    allowed = _COMMON_OPTIONS | KINDS[kind].options
    unknown = set(options) - allowed
    if unknown:
        raise SpecError(
            f"{where}: unknown option(s) {sorted(unknown)} for kind {kind!r}; "
            f"allowed: {sorted(allowed)}"
        )

    def get_int(key: str, default: int | None, minimum: int = 1) -> int | None:
        value = options.get(key, default)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
            raise SpecError(f"{where}.{key} must be an integer >= {minimum}, got {value!r}")
        return value

    def get_number(key: str) -> float | None:
        value = options.get(key)
        if value is None:
            return None
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise SpecError(f"{where}.{key} must be a finite number, got {value!r}")
        return float(value)

    def get_choice(key: str, choices: tuple[str, ...], default: str | None) -> str | None:
        value = options.get(key, default)
        if value is not None and value not in choices:
            raise SpecError(f"{where}.{key}: {value!r} is not one of {list(choices)}")
        return value

    required = options.get("required", True)
    if not isinstance(required, bool):
        raise SpecError(f"{where}.required must be true or false, got {required!r}")
    if kind in ("label", "key", "timestamp") and not required:
        raise SpecError(f"{where}.required: a {kind} feature cannot be optional")
    is_slice = options.get("slice", False)
    if not isinstance(is_slice, bool):
        raise SpecError(f"{where}.slice must be true or false, got {is_slice!r}")

    side = get_choice("side", SIDES, None)
    if side is not None and not KINDS[kind].model_input:
        raise SpecError(f"{where}.side: a {kind} feature feeds no model, so it has no side")

    min_value, max_value = get_number("min"), get_number("max")
    if min_value is not None and max_value is not None and min_value > max_value:
        raise SpecError(f"{where}: min ({min_value}) is greater than max ({max_value})")

    transform = get_choice("transform", NUMERIC_TRANSFORMS, "zscore" if kind == "numeric" else None)
    num_buckets = get_int("num_buckets", 10 if transform == "bucketize" else None, minimum=2)
    if num_buckets is not None and transform != "bucketize":
        raise SpecError(f"{where}.num_buckets only applies to transform: bucketize")
    if transform == "log" and min_value is not None and min_value < 0:
        raise SpecError(f"{where}: transform 'log' needs min >= 0, got min {min_value}")

    encoding = get_choice(
        "encoding", ENCODINGS, {"categorical": "vocabulary", "id": "hash"}.get(kind)
    )
    hash_buckets = get_int("hash_buckets", None)
    if encoding == "hash" and hash_buckets is None:
        raise SpecError(f"{where}.hash_buckets is required with encoding: hash")
    if hash_buckets is not None and encoding != "hash":
        raise SpecError(f"{where}.hash_buckets only applies to encoding: hash")

    allowed_values = options.get("allowed_values")
    if allowed_values is not None:
        if not isinstance(allowed_values, list) or not allowed_values:
            raise SpecError(f"{where}.allowed_values must be a non-empty list")
        allowed_values = tuple(str(v) for v in allowed_values)
        if len(set(allowed_values)) != len(allowed_values):
            raise SpecError(f"{where}.allowed_values has duplicates")

    dtype = get_choice("dtype", ("float", "string"), "float")
    default = options.get("default")
    if required and default is not None:
        raise SpecError(f"{where}.default only applies to optional features (required: false)")
    if not required and (kind == "numeric" or (kind == "passthrough" and dtype == "float")):
        if isinstance(default, bool) or not isinstance(default, int | float):
            raise SpecError(f"{where}.default: an optional numeric column needs a numeric default")
        default = float(default)
    elif not required:
        default = "" if default is None else str(default)

    return Feature(
        name=name,
        kind=kind,
        required=required,
        default=default,
        slice=is_slice,
        side=side,
        description=str(options.get("description", "")),
        transform=transform,
        num_buckets=num_buckets,
        min_value=min_value,
        max_value=max_value,
        encoding=encoding,
        top_k=get_int("top_k", None),
        oov_buckets=get_int("oov_buckets", 1) or 1,
        hash_buckets=hash_buckets,
        allowed_values=allowed_values,
        max_length=get_int("max_length", None),
        delimiter=_get_delimiter(where, options),
        max_tags=get_int("max_tags", 8) or 8,
        max_tokens=get_int("max_tokens", 16) or 16,
        embedding_dim=get_int("embedding_dim", None),
        dtype=dtype or "float",
    )


def _get_delimiter(where: str, options: dict[str, Any]) -> str:
    delimiter = options.get("delimiter", "|")
    if not isinstance(delimiter, str) or len(delimiter) != 1:
        raise SpecError(f"{where}.delimiter must be a single character, got {delimiter!r}")
    return delimiter


def _parse_cross(index: int, raw: Any, features: dict[str, Feature]) -> Cross:
    where = f"crosses[{index}]"
    if not isinstance(raw, dict):
        raise SpecError(f"{where} must be a mapping with 'features' and 'hash_buckets'")
    unknown = set(raw) - _CROSS_OPTIONS
    if unknown:
        raise SpecError(
            f"{where}: unknown option(s) {sorted(unknown)}; allowed: {sorted(_CROSS_OPTIONS)}"
        )
    names = raw.get("features")
    if not isinstance(names, list) or len(names) < 2:
        raise SpecError(f"{where}.features must list at least two feature names")
    for name in names:
        if name not in features:
            raise SpecError(f"{where}.features: unknown feature {name!r}")
        feature = features[name]
        if feature.kind not in _CROSSABLE_KINDS or (
            feature.kind == "numeric" and feature.transform != "bucketize"
        ):
            raise SpecError(
                f"{where}.features: {name!r} cannot be crossed; crossable are categorical, tags, "
                "id and numeric features with transform: bucketize"
            )
    hash_buckets = raw.get("hash_buckets")
    if not isinstance(hash_buckets, int) or isinstance(hash_buckets, bool) or hash_buckets < 2:
        raise SpecError(f"{where}.hash_buckets must be an integer >= 2, got {hash_buckets!r}")
    embedding_dim = raw.get("embedding_dim")
    if embedding_dim is not None and (not isinstance(embedding_dim, int) or embedding_dim < 1):
        raise SpecError(f"{where}.embedding_dim must be a positive integer, got {embedding_dim!r}")
    name = raw.get("name", "_x_".join(names))
    if not isinstance(name, str) or not name.isidentifier():
        raise SpecError(f"{where}.name {name!r} must be a valid identifier")
    return Cross(
        name=name, features=tuple(names), hash_buckets=hash_buckets, embedding_dim=embedding_dim
    )
