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
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from skewless.contract.features import (
    _COMMON_OPTIONS,
    _CROSS_OPTIONS,
    _CROSSABLE_KINDS,
    _TOP_LEVEL,
    ENCODINGS,
    NUMERIC_TRANSFORMS,
    SIDES,
    Cross,
    Feature,
    FeatureSpec,
    SpecError,
)
from skewless.contract.kinds import KINDS

__all__ = [
    "ENCODINGS",
    "NUMERIC_TRANSFORMS",
    "SIDES",
    "SPEC_ASSET",
    "Cross",
    "Feature",
    "FeatureSpec",
    "SpecError",
    "default_spec_path",
    "load_spec",
    "load_spec_text",
    "parse_spec",
]


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
