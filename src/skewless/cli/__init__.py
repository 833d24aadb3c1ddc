"""The ``skewless`` command line: one subcommand per product step, one module per area.

Every subcommand takes ``--spec`` where a spec matters (default: the spec shipped for the default
data), so a user can point any step at their own CSV or Parquet and their own spec. Each module
(``data``, ``pipeline``, ``serving``, ``registry``, ``experiments``) defines its commands and
adds them to the parser with ``add_commands``; ``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from skewless.cli import data, experiments, pipeline, registry, serving
from skewless.cli.common import (
    IN_CLUSTER_FEATURE_REPO,
    IN_CLUSTER_ONLINE_STORE,
    IN_CLUSTER_REGISTRY,
    CliError,
)
from skewless.contract.spec import SpecError

__all__ = [
    "IN_CLUSTER_FEATURE_REPO",
    "IN_CLUSTER_ONLINE_STORE",
    "IN_CLUSTER_REGISTRY",
    "build_parser",
    "main",
]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="skewless",
        description="Train, evaluate and serve ranking models whose transform ships inside them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    for area in (data, pipeline, serving, registry, experiments):
        area.add_commands(sub)
    return parser


def _user_errors() -> tuple[type[Exception], ...]:
    from skewless.contract.infer import InferError
    from skewless.data.ingest import IngestError
    from skewless.data.storage import StorageError
    from skewless.experiments.ab_report import ReportError
    from skewless.experiments.decision import ExperimentError
    from skewless.experiments.logs import LogError
    from skewless.experiments.simulate import SimulationError
    from skewless.registry.core import RegistryError
    from skewless.rollout.deploy import DeployError
    from skewless.runner.local import RunError

    return (
        ReportError, SpecError, IngestError, CliError, RunError, DeployError, RegistryError,
        StorageError, InferError, ExperimentError, LogError, SimulationError,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    # TensorFlow's C++ start-up chatter hides our own output; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _user_errors() as err:
        print(f"skewless {args.command}: error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # a path given on the command line that cannot be read or written
        print(f"skewless {args.command}: error: {_path_error(err)}", file=sys.stderr)
        return 1


def _path_error(err: OSError) -> str:
    """One line for a file system error: the path and the reason (an --out under a file, a
    folder with no write permission, a read-only file system)."""
    if err.filename is not None and err.strerror:
        return f"cannot use {err.filename}: {err.strerror}"
    return str(err).splitlines()[0][:300]
