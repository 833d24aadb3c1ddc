"""The ``skewless`` command line: one subcommand per product step, one module per area.

Every subcommand takes ``--spec`` where a spec matters (default: the spec shipped for the default
data), so a user can point any step at their own CSV or Parquet and their own spec. Each module
(``data``, ``pipeline``, ``serving``, ``registry``, ``experiments``) defines its commands with
click and lists them in ``COMMANDS``; this module adds them to the ``skewless`` group, and
``common`` holds what they share (option types, the registry a command names, the errors).

Every mistake a user can make ends in one line on standard error, ``skewless COMMAND: error:
MESSAGE``, and a non-zero exit: 2 when the command line itself is wrong (click's usage errors:
an unknown option, a value out of range), 1 when a command found its input wrong (``CliError``
and the library's named errors).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import click

from skewless.cli import data, experiments, pipeline, registry, serving
from skewless.cli.common import (
    IN_CLUSTER_FEATURE_REPO,
    IN_CLUSTER_ONLINE_STORE,
    IN_CLUSTER_REGISTRY,
    CommandFailed,
    Group,
)

__all__ = [
    "IN_CLUSTER_FEATURE_REPO",
    "IN_CLUSTER_ONLINE_STORE",
    "IN_CLUSTER_REGISTRY",
    "cli",
    "main",
    "parse",
]

PROG = "skewless"


@click.group(
    cls=Group,
    # Subcommands inherit these: -h, a wide terminal's width, and every default shown in --help.
    context_settings={
        "help_option_names": ["-h", "--help"],
        "max_content_width": 100,
        "show_default": True,
    },
)
def cli() -> None:
    """Train, evaluate and serve ranking models whose transform ships inside them."""


for area in (data, pipeline, serving, registry, experiments):
    for command in area.COMMANDS:
        cli.add_command(command)


def _usage_message(err: click.UsageError) -> str:
    """A usage error's message on one line, naming the option (``--rows: ...``)."""
    if isinstance(err, click.BadParameter) and not isinstance(err, click.MissingParameter):
        param = err.param
        hint = err.param_hint if isinstance(err.param_hint, str) else None
        if hint is None and param is not None:
            hint = param.opts[0] if isinstance(param, click.Option) else param.human_readable_name
        message = f"{hint}: {err.message}" if hint else err.message
    else:
        message = err.format_message()
    return " ".join(message.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    # TensorFlow's C++ start-up chatter hides our own output; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        code = cli.main(
            args=list(sys.argv[1:] if argv is None else argv),
            prog_name=PROG,
            standalone_mode=False,
        )
    except click.UsageError as err:
        where = err.ctx.command_path if err.ctx is not None else PROG
        print(f"{where}: error: {_usage_message(err)}", file=sys.stderr)
        return err.exit_code
    except CommandFailed as err:
        print(f"{err.command_path}: error: {err.message}", file=sys.stderr)
        return err.exit_code
    except click.Abort:  # Ctrl-C: click has ended the line; no traceback
        return 130
    return code if isinstance(code, int) else 0


def parse(argv: Sequence[str]) -> click.Context:
    """The context of the command ``argv`` names, its options parsed and checked, not run.

    ``parse([...]).params`` are what the command would be called with, and
    ``parse([...]).command_path`` names it (``skewless experiment decide``): for checking that
    arguments written elsewhere (a manifest's container args) are ones the command takes.
    """
    ctx = cli.make_context(PROG, list(argv))
    command: click.Command = cli
    rest = [*ctx._protected_args, *ctx.args]  # what the group left for its subcommand
    while isinstance(command, click.Group):
        if not rest:
            raise click.UsageError("Missing command.", ctx)
        name, found, rest = command.resolve_command(ctx, rest)  # an unknown name: a usage error
        assert found is not None and name is not None
        ctx = found.make_context(name, rest, parent=ctx)
        command, rest = found, [*ctx._protected_args, *ctx.args]
    return ctx
