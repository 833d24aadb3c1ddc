"""``skewless models``, ``canary``, ``promote``, ``rollback``, ``ab-report``: versions, traffic.

Also the registry a command names (``--registry``), which ``serve`` and ``experiment decide`` use
too.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from skewless.cli.common import (
    DEFAULT_EXPOSURE_LOG,
    DEFAULT_REGISTRY,
    FINITE,
    NON_NEGATIVE,
    PERCENT,
    POSITIVE_INT,
    CliError,
    Command,
    F,
    Group,
    json_option,
    print_json,
)

REGISTRY_HELP = "registry: a SQLite file, or a Kubeflow Model Registry URL (http[s]://host[:port])"


def registry_option(command: F) -> F:
    """``--registry``: the registry a command reads or moves (default: `skewless run`'s)."""
    return click.option("--registry", default=DEFAULT_REGISTRY, help=REGISTRY_HELP)(command)


def open_named_registry(locator: str) -> Any:
    """The registry ``--registry`` names: a Kubeflow Model Registry URL, or an existing SQLite
    file (opening a missing one would create it)."""
    from skewless.registry import is_model_registry_url, open_registry

    if is_model_registry_url(locator):
        return open_registry(locator)
    return open_registry(registry_file(locator))


def registry_file(text: str) -> Path:
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


def actor() -> str:
    """Who acts, for the registry's history (a container's user may have no name)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


@dataclasses.dataclass(frozen=True)
class AliasMove:
    """What every command that moves an alias is told: the model, why, where, and the cluster."""

    name: str
    reason: str
    registry: str
    kserve: str | None
    kserve_mode: str
    timeout: float

    def apply_cluster(self, registry: Any, version: int, role: str, percent: int) -> None:
        """Makes the InferenceService follow a registry decision (``--kserve NAMESPACE``)."""
        from skewless.rollout.kserve import deploy_role
        from skewless.rollout.kserve_objects import ClusterDeployError

        if not self.kserve:
            return
        try:
            served = deploy_role(
                self.name, self.kserve, registry.verified_uri(self.name, version),
                version=str(version), role=role, canary_percent=percent, mode=self.kserve_mode,
                timeout_seconds=self.timeout,
            )  # fmt: skip
        except ClusterDeployError as err:
            # The registry has already moved: say so, and how to bring the cluster in line.
            first = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
            raise CliError(
                f"the registry now has version {version} as {role}, but the InferenceService in "
                f"{self.kserve} did not follow: {first}; run the same command again to retry"
            ) from None
        print(f"InferenceService {self.kserve}/{served} serves version {version} ({role}) and is "
              "Ready")  # fmt: skip


_ALIAS_OPTIONS = (
    click.argument("name"),
    click.option("--reason", default="", help="recorded in the alias history"),
    registry_option,
    click.option(
        "--kserve", metavar="NAMESPACE",
        help="also patch the model's InferenceService in this namespace (current kube context)",
    ),
    click.option(
        "--kserve-mode", type=click.Choice(["Standard", "Knative"]), default="Standard",
        help="KServe deployment mode of that InferenceService",
    ),
    click.option("--timeout", type=NON_NEGATIVE, default=600.0,
                 help="seconds to wait for Ready"),
)  # fmt: skip
"""NAME (the model, e.g. ranking), --reason, --registry and the --kserve options."""


def alias_command(function: Callable[..., None]) -> click.Command:
    """``function(move, **its own options)`` as a command taking the options every alias move
    takes (:data:`_ALIAS_OPTIONS`), handed to it as one :class:`AliasMove`."""
    shared = [field.name for field in dataclasses.fields(AliasMove)]

    @functools.wraps(function)
    def command(**options: Any) -> None:
        function(AliasMove(**{name: options.pop(name) for name in shared}), **options)

    for option in reversed(_ALIAS_OPTIONS):
        command = option(command)
    return click.command(cls=Command)(command)


@click.option("--to", type=POSITIVE_INT, help="version (default: the previous one)")
@alias_command
def rollback(move: AliasMove, to: int | None) -> None:
    """Move a model's production alias back.

    Servers started with --registry follow within their watch interval.
    """
    import time

    started = time.perf_counter()
    registry = open_named_registry(move.registry)
    version = registry.rollback(move.name, to=to, actor=actor(), reason=move.reason)
    move.apply_cluster(registry, version.version, "production", 0)
    print(
        f"{move.name}: production is now version {version.version} ({version.artifact_uri}); "
        f"registry updated in {1000 * (time.perf_counter() - started):.0f} ms. Servers started "
        f"with --registry switch within their watch interval."
    )


@click.option("--percent", type=PERCENT, required=True, help="share of users for the candidate")
@click.option("--version", type=POSITIVE_INT, help="version (default: the current candidate)")
@alias_command
def canary(move: AliasMove, percent: int, version: int | None) -> None:
    """Start, resize or stop (--percent 0) a canary."""
    registry = open_named_registry(move.registry)
    if version is None:
        current = registry.traffic(move.name).candidate
        version = current if current is not None else registry.get(move.name, "candidate").version
    traffic = registry.start_canary(move.name, version, percent, actor=actor(), reason=move.reason)
    if traffic.candidate is not None:
        move.apply_cluster(registry, traffic.candidate, "canary", traffic.candidate_percent)
    elif traffic.production is not None:
        move.apply_cluster(registry, traffic.production, "production", 0)
    if traffic.candidate is None:
        print(f"{move.name}: canary stopped; production version {traffic.production} takes all "
              "requests")  # fmt: skip
    else:
        print(f"{move.name}: version {traffic.candidate} takes {traffic.candidate_percent}% of "
              f"users, production version {traffic.production} the rest")  # fmt: skip


@alias_command
def promote(move: AliasMove) -> None:
    """Make the canary candidate production."""
    registry = open_named_registry(move.registry)
    version = registry.promote(move.name, actor=actor(), reason=move.reason)
    move.apply_cluster(registry, version.version, "production", 0)
    print(f"{move.name}: production is now version {version.version}; the canary has ended. "
          "Servers started with --registry switch within their watch interval.")  # fmt: skip


@click.command(name="ab-report", cls=Command)
@click.option("--log", default=DEFAULT_EXPOSURE_LOG, help="the server's request log")
@click.option("--model", help="only this model")
@click.option("--since", type=FINITE, help="only requests from this Unix time on")
@json_option
def ab_report(log: str, model: str | None, since: float | None, as_json: bool) -> None:
    """Per-version traffic and latency from the server log."""
    from skewless.experiments.ab_report import format_report, summarize

    report = summarize(log, model=model, since=since)
    if as_json:
        print_json(report)
    else:
        print(format_report(report))


@click.group(cls=Group)
def models() -> None:
    """Inspect the model registry."""


@models.command(name="list")
@registry_option
@json_option
def models_list(registry: str, as_json: bool) -> None:
    """Every registered version."""
    versions = open_named_registry(registry).list_versions()
    if as_json:
        print_json([v.to_dict() for v in versions])
        return
    print(f"{'NAME':<16} {'VERSION':>7}  {'AUC':>7}  {'GATE':<7} {'ALIASES':<22} CREATED")
    for v in versions:
        auc = v.metrics.get("auc")
        gate = "pass" if v.gate.get("promote") else "refused"
        auc_text = f"{auc:.4f}" if isinstance(auc, float) else "-"
        print(f"{v.name:<16} {v.version:>7}  {auc_text:>7}  {gate:<7} "
              f"{','.join(v.aliases) or '-':<22} {v.created_at}")  # fmt: skip


@models.command(name="show")
@click.argument("model")
@registry_option
def models_show(model: str, registry: str) -> None:
    """One version with its lineage: MODEL is NAME, NAME:VERSION or NAME:ALIAS (e.g. ranking,
    ranking:2, ranking:production)."""
    name, _, ref = model.partition(":")
    opened = open_named_registry(registry)
    version = opened.get(name, ref or "latest")
    # The candidate's history holds every canary move and every `experiment decide` look.
    print_json({**version.to_dict(),
                "production_history": opened.alias_history(name, "production"),
                "candidate_history": opened.alias_history(name, "candidate")})  # fmt: skip


COMMANDS = (models, rollback, canary, promote, ab_report)
"""The registry commands, in the order ``skewless --help`` lists them."""
