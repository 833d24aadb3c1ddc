"""One feature's options and one cross's options, checked and read into the contract's types.

:mod:`skewless.contract.spec` reads a spec document and applies the rules that span features (one
label, at most one key, the retrieval sides, cross names); the rules of a single feature (which
options its kind takes, their types, ranges and defaults) and of a single cross are here. A new
spec option goes here and into the kind that uses it (:mod:`skewless.contract.kinds`).
"""

from __future__ import annotations

import math
from typing import Any

from skewless.contract.features import (
    _COMMON_OPTIONS,
    _CROSS_OPTIONS,
    _CROSSABLE_KINDS,
    ENCODINGS,
    NUMERIC_TRANSFORMS,
    SIDES,
    Cross,
    Feature,
    SpecError,
)
from skewless.contract.kinds import KINDS


def parse_feature(name: Any, options: Any) -> Feature:
    """Checks one feature's options against its kind and reads them into a :class:`Feature`.

    Raises:
        SpecError: An option is unknown, of the wrong type or contradicts another; the message
            names it as ``features.NAME.OPTION``.
    """
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


def parse_cross(index: int, raw: Any, features: dict[str, Feature]) -> Cross:
    """Checks the ``index``-th cross against the features it crosses.

    Raises:
        SpecError: An option is unknown or names a feature that cannot be crossed; the message
            names it as ``crosses[INDEX].OPTION``.
    """
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
