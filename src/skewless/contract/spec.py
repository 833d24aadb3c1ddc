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

Features are keyed by name, so there are no parallel lists to keep in step. This module reads the
document and checks the rules that span features; one feature's options are checked in
:mod:`skewless.contract.options`.
"""

from __future__ import annotations

import dataclasses
import hashlib
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from skewless.contract.features import (
    _TOP_LEVEL,
    ENCODINGS,
    NUMERIC_TRANSFORMS,
    SIDES,
    Cross,
    Feature,
    FeatureSpec,
    SpecError,
)
from skewless.contract.options import parse_cross, parse_feature

__all__ = [
    "ENCODINGS",
    "NUMERIC_TRANSFORMS",
    "SIDES",
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


def default_spec_path() -> Path:
    """Path of the spec shipped with the package for the default ranking data."""
    return Path(str(resources.files("skewless.contract") / "ranking_spec.yaml"))


def load_spec(path: str | Path | None = None, *, absent: Exception | None = None) -> FeatureSpec:
    """Reads and validates a spec file.

    Args:
        path: YAML file; None loads the default spec shipped with the package.
        absent: Raised instead when there is no file at ``path`` (a spec a step stored inside its
            output, whose absence says the folder is not that output).

    Returns:
        The validated spec.

    Raises:
        SpecError: The file is missing, is not YAML, or breaks a rule; the message names the field.
    """
    spec_path = Path(path) if path is not None else default_spec_path()
    if absent is not None and not spec_path.is_file():
        raise absent
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
    features = {name: parse_feature(name, options) for name, options in raw_features.items()}

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
        parse_cross(index, raw, features)
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
