"""What every ``skewless`` subcommand shares: its errors, option types, output, default paths."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from skewless.registry.versions import RegistryError, check_model_name

IN_CLUSTER_REGISTRY = "http://model-registry-service.kubeflow.svc.cluster.local:8080"
"""The Model Registry that `make cluster` installs, as pipeline pods reach it."""
IN_CLUSTER_FEATURE_REPO = "minio://mlpipeline/skewless/feature_repo"
"""Where a cluster run keeps its feature repository: KFP's own object store."""
IN_CLUSTER_ONLINE_STORE = "redis://feast-redis.kubeflow.svc.cluster.local:6379"
"""The Redis of manifests/feature-store (Service ``feast-redis`` in ``kubeflow``)."""
DEFAULT_REGISTRY = "runs/default/models/registry.db"
"""The registry of `make run` and `skewless run`."""

F = TypeVar("F", bound=Callable[..., Any])
"""A command function: an option decorator returns the function it was given."""


def exposure_log_beside(registry: str | Path) -> str:
    """Where a server started from a registry file writes its exposure log: beside the file."""
    from skewless.experiments.logs import EXPOSURE_LOG

    return str(Path(registry).with_name(EXPOSURE_LOG))


DEFAULT_EXPOSURE_LOG = exposure_log_beside(DEFAULT_REGISTRY)
"""The exposure log of the server `make run` ends with."""


class CliError(RuntimeError):
    """A command-line input is wrong; the message says which and why."""


class CommandFailed(click.ClickException):
    """A user's mistake a command found while running: printed as one line naming the command."""

    def __init__(self, command_path: str, message: str) -> None:
        super().__init__(message)
        self.command_path = command_path


def _user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the user's input is wrong (not a bug): one line, exit 1."""
    from skewless.contract.infer import InferError
    from skewless.contract.spec import SpecError
    from skewless.data.ingest import IngestError
    from skewless.data.storage import StorageError
    from skewless.experiments.ab_report import ReportError
    from skewless.experiments.decision import ExperimentError
    from skewless.experiments.logs import LogError
    from skewless.experiments.simulate import SimulationError
    from skewless.model import BeamOptionsError
    from skewless.registry.core import RegistryError
    from skewless.rollout.deploy import DeployError
    from skewless.runner.local import RunError

    return (
        ReportError, SpecError, IngestError, CliError, RunError, DeployError, RegistryError,
        StorageError, InferError, ExperimentError, LogError, SimulationError, BeamOptionsError,
    )  # fmt: skip


def _name_the_command(parse_args: Callable[..., list[str]]) -> Callable[..., list[str]]:
    """``parse_args`` whose usage errors name the command whose options they are about (click's
    parser raises some, such as an option missing its value, without a context)."""

    def parse(self: click.Command, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return parse_args(self, ctx, args)
        except click.UsageError as err:
            err.ctx = err.ctx or ctx
            raise

    return parse


class Command(click.Command):
    """A subcommand whose user errors end as :class:`CommandFailed`, naming the command."""

    parse_args = _name_the_command(click.Command.parse_args)

    def invoke(self, ctx: click.Context) -> Any:
        """Runs the command; a user error becomes :class:`CommandFailed`."""
        try:
            return super().invoke(ctx)
        except click.UsageError as err:  # raised by a callback: say which command refused it
            err.ctx = err.ctx or ctx
            raise
        except _user_errors() as err:
            raise CommandFailed(ctx.command_path, str(err)) from None
        except OSError as err:
            if not _about_a_given_path(err, ctx.params):
                raise  # not the user's path: a bug or the machine, with its traceback
            raise CommandFailed(ctx.command_path, _path_error(err)) from None


def _about_a_given_path(err: OSError, params: dict[str, Any]) -> bool:
    """Whether ``err`` concerns a path the command line gave, or a folder on the way to one
    (an ``--out`` under a file)."""
    given = [Path(v) for v in params.values() if isinstance(v, str | Path) and v]
    for name in (err.filename, err.filename2):
        if isinstance(name, str | Path) and name:
            failed = Path(name)
            if any(failed == path or failed in path.parents for path in given):
                return True
    return False


def _path_error(err: OSError) -> str:
    """One line for a file system error: the path and the reason (an --out under a file, a
    folder with no write permission, a read-only file system)."""
    if err.filename is not None and err.strerror:
        return f"cannot use {err.filename}: {err.strerror}"
    return str(err).splitlines()[0][:300]


class Group(click.Group):
    """A command group whose commands are :class:`Command` and whose groups are :class:`Group`.

    Without a subcommand it fails with one line (``Missing command.``) rather than printing its
    help as an error; ``--help`` lists the commands in the order they were added.
    """

    command_class = Command
    group_class = type
    parse_args = _name_the_command(click.Group.parse_args)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("no_args_is_help", False)
        super().__init__(*args, **kwargs)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """The commands in the order they were added (a workflow's order), not sorted."""
        return list(self.commands)


class WholeRange(click.IntRange):
    """An integer range (click's, named so its errors say "not a valid integer")."""

    name = "integer"


class FiniteRange(click.FloatRange):
    """A float range that also refuses ``nan`` and ``inf`` (``nan`` passes any range check)."""

    name = "number"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """The value as a finite float in the range, or a usage error naming it."""
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"expected a finite number, got {value!r}", param, ctx)
        return number

    def _describe_range(self) -> str:
        """The range for ``--help``; without bounds, that the number is finite."""
        if self.min is None and self.max is None:
            return "finite"
        return super()._describe_range()


class Checked(click.ParamType):
    """A value the library checks (``check`` returns it, or raises ``errors`` saying what is
    expected): a failed check is a usage error naming the option."""

    def __init__(
        self, name: str, check: Callable[[str], str], errors: tuple[type[Exception], ...]
    ) -> None:
        self.name = name
        self.check = check
        self.errors = errors

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        """The checked value, or a usage error with the check's words."""
        try:
            return self.check(value)
        except self.errors as err:
            self.fail(str(err), param, ctx)


POSITIVE_INT = WholeRange(min=1)
PERCENT = WholeRange(0, 100)
FINITE = FiniteRange()
FRACTION = FiniteRange(0.0, 1.0)
PROBABILITY = FiniteRange(0.0, 1.0, min_open=True, max_open=True)
NON_NEGATIVE = FiniteRange(min=0.0)
POSITIVE = FiniteRange(min=0.0, min_open=True)
MODEL_NAME = Checked("name", check_model_name, (RegistryError,))
"""A model name the registry accepts (it becomes a folder and a URL path)."""


def spec_option(command: F) -> F:
    """``--spec``: the feature spec a command reads."""
    return click.option(
        "--spec",
        type=click.Path(dir_okay=False),
        help="feature spec YAML (default: the shipped ranking spec)",
    )(command)


def json_option(command: F) -> F:
    """``--json``: machine-readable output, as the parameter ``as_json``."""
    return click.option("--json", "as_json", is_flag=True, help="machine-readable output")(command)


def print_json(document: Any) -> None:
    """Prints a document as indented JSON (dates and paths as text)."""
    print(json.dumps(document, indent=1, default=str))
