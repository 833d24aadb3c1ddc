"""What every ``skewless`` subcommand shares: its error, argument types, the registry it names."""

from __future__ import annotations

import argparse
import json
import math
import os
from pathlib import Path
from typing import Any

IN_CLUSTER_REGISTRY = "http://model-registry-service.kubeflow.svc.cluster.local:8080"
IN_CLUSTER_FEATURE_REPO = "minio://mlpipeline/skewless/feature_repo"
"""Where a cluster run keeps its feature repository: KFP's own object store."""
IN_CLUSTER_ONLINE_STORE = "redis://feast-redis.kubeflow.svc.cluster.local:6379"
"""The Redis of manifests/feature-store (Service ``feast-redis`` in ``kubeflow``)."""
"""The Model Registry that `make cluster` installs, as pipeline pods reach it."""
REGISTRY_HELP = "registry: a SQLite file, or a Kubeflow Model Registry URL (http[s]://host[:port])"
DEFAULT_REGISTRY = "runs/default/models/registry.db"
"""The registry of `make run` and `skewless run`."""


def exposure_log_beside(registry: str | Path) -> str:
    """Where a server started from a registry file writes its exposure log: beside the file."""
    from skewless.experiments.logs import EXPOSURE_LOG

    return str(Path(registry).with_name(EXPOSURE_LOG))


DEFAULT_EXPOSURE_LOG = exposure_log_beside(DEFAULT_REGISTRY)
"""The exposure log of the server `make run` ends with."""


class CliError(RuntimeError):
    """A command-line input is wrong; the message says which and why."""


def _number(text: str, kind: type) -> Any:
    """``text`` as a finite int or float (``1_000`` allowed), or an argparse error naming it."""
    try:
        value = int(text.replace("_", "")) if kind is int else float(text.replace("_", ""))
    except ValueError:
        what = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value: int = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = _fraction(text)
    if value in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, exclusive, got {value}")
    return value


def _non_negative(text: str) -> float:
    value: float = _number(text, float)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _positive_float(text: str) -> float:
    value: float = _number(text, float)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _percent(text: str) -> int:
    value: int = _number(text, int)
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"a percentage is from 0 to 100, got {value}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _model_name(text: str) -> str:
    from skewless.registry.core import RegistryError, check_model_name

    try:
        return check_model_name(text)
    except RegistryError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=1, default=str))


def _add_spec(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec", default=None, help="feature spec YAML (default: the shipped ranking spec)"
    )


def _registry(args: argparse.Namespace) -> Any:
    """The registry ``--registry`` names: a Kubeflow Model Registry URL, or an existing SQLite
    file (opening a missing one would create it)."""
    from skewless.registry import is_model_registry_url, open_registry

    if is_model_registry_url(args.registry):
        return open_registry(args.registry)
    return open_registry(_registry_file(args.registry))


def _registry_file(text: str) -> Path:
    """``--registry`` as an existing SQLite file (opening a missing one would create it)."""
    path = Path(text)
    if not path.is_file():
        raise CliError(
            f"--registry: no registry at {path} (a run's is <workdir>/models/registry.db; a "
            "Kubeflow Model Registry is given by its URL, e.g. http://localhost:8080)"
        )
    if path.stat().st_size == 0:  # SQLite would silently make it a new, empty registry
        raise CliError(
            f"--registry: {path} is empty (0 bytes), not a registry; restore it from a backup, or "
            "delete it and the next run starts a new one"
        )
    return path


def _actor() -> str:
    """Who acts, for the registry's history (a container's user may have no name)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"
