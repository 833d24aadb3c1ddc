"""Feast imported without typeguard's instrumentation.

Feast decorates its API with typeguard's ``@typechecked``. At import, that decorator fetches the
source of each decorated function's module, parses and recompiles it with a type check on every
argument and return value, which then runs at every call. Importing Feast and opening a store
took 4.4 s of CPU with it against 1.6 s without (the best of three each), in every process that
opens a feature store: materialize, ``skewless serve --feature-store``, push, skew-report.
typeguard's own switch is Python's ``-O`` (``@typechecked`` then returns the function unchanged),
which would also remove every ``assert`` of every package; this turns the decorator off for Feast
alone. Our calls into Feast are typed (mypy checks them) and tested against the real Feast.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import Any

_lock = threading.RLock()  # nested blocks restore in order


def _unchanged(target: Any = None, **_options: Any) -> Any:
    """``@typechecked`` and ``@typechecked(...)`` as the identity."""
    return target if target is not None else _unchanged


@contextlib.contextmanager
def unchecked() -> Iterator[None]:
    """A block in which Feast's modules, when first imported, keep their functions unchanged.

    Feast's modules take ``typechecked`` from typeguard as they are imported, so whatever is
    imported inside the block is never instrumented, and a module imported before or after it is
    as typeguard made it. Only Feast uses typeguard among this project's dependencies.
    """
    import typeguard

    with _lock:
        checked: Callable[..., Any] = typeguard.typechecked
        typeguard.typechecked = _unchanged
        try:
            yield
        finally:
            typeguard.typechecked = checked
