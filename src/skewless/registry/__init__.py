"""The model registry: versions, lineage, aliases (see :class:`skewless.registry.core.Registry`)."""

from __future__ import annotations

import os
from pathlib import Path

from skewless.registry.core import Registry
from skewless.registry.sqlite import SQLiteRegistry

TOKEN_ENV = "MODEL_REGISTRY_TOKEN"
"""A bearer token for a Kubeflow Model Registry that needs one (a standalone install does not)."""


def is_model_registry_url(locator: str | Path) -> bool:
    """Whether ``locator`` names a Kubeflow Model Registry (a URL) rather than a SQLite file."""
    return str(locator).startswith(("http://", "https://"))


def open_registry(locator: str | Path) -> Registry:
    """The one way to open a registry: a Kubeflow Model Registry by its URL (``http[s]://``), or
    else the SQLite file at that path (created when missing; callers that must not create one
    check first)."""
    if is_model_registry_url(locator):
        from skewless.registry.kubeflow import KubeflowRegistry

        return KubeflowRegistry(str(locator), user_token=os.environ.get(TOKEN_ENV))
    return SQLiteRegistry(locator)
