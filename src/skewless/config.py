"""Typed configuration objects built from overrides: one rule for every tier's settings.

The pipeline passes each tier's settings whole, as a dict parameter holding only what differs
from the defaults (``hparams={"epochs": 5}``, ``gate={"min_auc": 0.7}``); each step rebuilds the
dataclass here. So a new hyperparameter or gate threshold is one field of one dataclass
(:class:`skewless.model.train.HParams`, :class:`skewless.evaluation.evaluate.GateConfig`), and
``skewless run --param epochs=5`` and KFP's dict parameters reach it the same way.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")


def field_types(cls: type) -> dict[str, type]:
    """Each field of a dataclass and its type (``int``, ``float``, ``bool`` or ``str``)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def coerce(value: Any, kind: type, where: str) -> Any:
    """``value`` as ``kind``: text is parsed (command lines), a whole float becomes an int and an
    int a float (JSON does not keep the difference); anything else of the wrong type is refused.

    Raises:
        ValueError: The value is not of (or cannot be read as) ``kind``; the message names
            ``where``.
    """
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        if kind is bool:
            if text.lower() in ("1", "true", "yes"):
                return True
            if text.lower() in ("0", "false", "no"):
                return False
            raise ValueError(f"{where}: expected true or false, got {value!r}")
        try:
            value = float(text) if kind is float else int(text.replace("_", ""))
        except ValueError:
            raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}") from None
    if kind is float and isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {value!r}")
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, float) and value.is_integer():
        return int(value)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ValueError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def from_overrides(cls: type[T], overrides: Mapping[str, Any] | None, where: str) -> T:
    """An instance of the dataclass ``cls``: its defaults, with ``overrides`` applied.

    Raises:
        ValueError: An unknown key, or a value of the wrong type (named as ``where.key``), or a
            value the dataclass itself refuses.
    """
    types = field_types(cls)
    values = {}
    for key, value in (overrides or {}).items():
        if key not in types:
            raise ValueError(f"{where}: unknown setting {key!r}; known: {sorted(types)}")
        values[key] = coerce(value, types[key], f"{where}.{key}")
    return cls(**values)
