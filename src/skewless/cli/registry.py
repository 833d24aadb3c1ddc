"""``skewless models``, ``canary``, ``promote``, ``rollback``, ``ab-report``: versions, traffic."""

from __future__ import annotations

import argparse
from typing import Any

from skewless.cli.common import (
    DEFAULT_EXPOSURE_LOG,
    DEFAULT_REGISTRY,
    REGISTRY_HELP,
    CliError,
    _non_negative,
    _percent,
    _positive_int,
    _print_json,
    _registry,
)


def cmd_rollback(args: argparse.Namespace) -> int:
    """``skewless rollback NAME``: move production back; registry-backed servers follow."""
    import getpass
    import time

    started = time.perf_counter()
    registry = _registry(args)
    version = registry.rollback(args.name, to=args.to, actor=getpass.getuser(), reason=args.reason)
    if args.kserve:
        _apply_cluster(args, registry, version.version, "production", 0)
    print(
        f"{args.name}: production is now version {version.version} ({version.artifact_uri}); "
        f"registry updated in {1000 * (time.perf_counter() - started):.0f} ms. Servers started "
        f"with --registry switch within their watch interval."
    )
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """``skewless canary NAME --percent P``: start, resize or stop (0) a canary."""
    import getpass

    registry = _registry(args)
    version = args.version
    if version is None:
        current = registry.traffic(args.name).candidate
        version = current if current is not None else registry.get(args.name, "candidate").version
    traffic = registry.start_canary(
        args.name, version, args.percent, actor=getpass.getuser(), reason=args.reason
    )
    if args.kserve and traffic.candidate is not None:
        _apply_cluster(args, registry, traffic.candidate, "canary", traffic.candidate_percent)
    elif args.kserve and traffic.production is not None:
        _apply_cluster(args, registry, traffic.production, "production", 0)
    if traffic.candidate is None:
        print(f"{args.name}: canary stopped; production version {traffic.production} takes all "
              "requests")  # fmt: skip
    else:
        print(f"{args.name}: version {traffic.candidate} takes {traffic.candidate_percent}% of "
              f"users, production version {traffic.production} the rest")  # fmt: skip
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """``skewless promote NAME``: the canary candidate becomes production."""
    import getpass

    registry = _registry(args)
    version = registry.promote(args.name, actor=getpass.getuser(), reason=args.reason)
    if args.kserve:
        _apply_cluster(args, registry, version.version, "production", 0)
    print(f"{args.name}: production is now version {version.version}; the canary has ended. "
          "Servers started with --registry switch within their watch interval.")  # fmt: skip
    return 0


def cmd_ab_report(args: argparse.Namespace) -> int:
    """``skewless ab-report``: per-version traffic, latency and scores from the request log."""
    from skewless.experiments.ab_report import format_report, summarize

    report = summarize(args.log, model=args.model, since=args.since)
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return 0


def _apply_cluster(
    args: argparse.Namespace, registry: Any, version: int, role: str, percent: int
) -> None:
    """Makes the InferenceService follow a registry decision (``--kserve NAMESPACE``)."""
    from skewless.rollout.kserve import deploy_role
    from skewless.rollout.kserve_objects import ClusterDeployError

    try:
        served = deploy_role(
            args.name, args.kserve, registry.verified_uri(args.name, version),
            version=str(version), role=role, canary_percent=percent, mode=args.kserve_mode,
            timeout_seconds=args.timeout,
        )  # fmt: skip
    except ClusterDeployError as err:
        # The registry has already moved: say so, and how to bring the cluster in line.
        first = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise CliError(
            f"the registry now has version {version} as {role}, but the InferenceService in "
            f"{args.kserve} did not follow: {first}; run the same command again to retry"
        ) from None
    print(f"InferenceService {args.kserve}/{served} serves version {version} ({role}) and is Ready")


def _add_kserve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kserve",
        metavar="NAMESPACE",
        help="also patch the model's InferenceService in this namespace (current kube context)",
    )
    parser.add_argument(
        "--kserve-mode", choices=["Standard", "Knative"], default="Standard",
        help="KServe deployment mode of that InferenceService (Standard)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_non_negative, default=600, help="seconds to wait for Ready (600)"
    )


def cmd_models_list(args: argparse.Namespace) -> int:
    """``skewless models list``: every registered version."""
    versions = _registry(args).list_versions()
    if args.json:
        _print_json([v.to_dict() for v in versions])
        return 0
    print(f"{'NAME':<16} {'VERSION':>7}  {'AUC':>7}  {'GATE':<7} {'ALIASES':<22} CREATED")
    for v in versions:
        auc = v.metrics.get("auc")
        gate = "pass" if v.gate.get("promote") else "refused"
        auc_text = f"{auc:.4f}" if isinstance(auc, float) else "-"
        print(f"{v.name:<16} {v.version:>7}  {auc_text:>7}  {gate:<7} "
              f"{','.join(v.aliases) or '-':<22} {v.created_at}")  # fmt: skip
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    """``skewless models show NAME[:VERSION|:ALIAS]``: one version with its lineage."""
    name, _, ref = args.model.partition(":")
    registry = _registry(args)
    version = registry.get(name, ref or "latest")
    # The candidate's history holds every canary move and every `experiment decide` look.
    _print_json({**version.to_dict(),
                 "production_history": registry.alias_history(name, "production"),
                 "candidate_history": registry.alias_history(name, "candidate")})  # fmt: skip
    return 0


def add_commands(sub: Any) -> None:
    """Adds the registry subcommands to ``sub``."""
    models = sub.add_parser("models", help="inspect the model registry")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    listing = models_sub.add_parser("list", help="every registered version")
    listing.add_argument("--registry", default=DEFAULT_REGISTRY, help=REGISTRY_HELP)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_models_list)
    show = models_sub.add_parser("show", help="one version: NAME, NAME:VERSION or NAME:ALIAS")
    show.add_argument("model", help="e.g. ranking, ranking:2, ranking:production")
    show.add_argument("--registry", default=DEFAULT_REGISTRY, help=REGISTRY_HELP)
    show.set_defaults(func=cmd_models_show)

    def alias_command(name: str, help_text: str) -> argparse.ArgumentParser:
        """A command that moves an alias: NAME, --reason, --registry and the --kserve options."""
        command = sub.add_parser(name, help=help_text)
        command.add_argument("name", help="model name, e.g. ranking")
        command.add_argument("--reason", default="", help="recorded in the alias history")
        command.add_argument("--registry", default=DEFAULT_REGISTRY, help=REGISTRY_HELP)
        _add_kserve(command)
        return command

    back = alias_command("rollback", "move a model's production alias back")
    back.add_argument("--to", type=_positive_int, help="version (default: the previous one)")
    back.set_defaults(func=cmd_rollback)

    canary = alias_command("canary", "start, resize or stop (--percent 0) a canary")
    canary.add_argument(
        "--percent", type=_percent, required=True, help="share of users for the candidate"
    )
    canary.add_argument(
        "--version", type=_positive_int, help="version (default: the current candidate)"
    )
    canary.set_defaults(func=cmd_canary)

    alias_command("promote", "make the canary candidate production").set_defaults(func=cmd_promote)

    report = sub.add_parser("ab-report", help="per-version traffic and latency from the server log")
    report.add_argument("--log", default=DEFAULT_EXPOSURE_LOG, help="the server's request log")
    report.add_argument("--model", help="only this model")
    report.add_argument("--since", type=float, help="only requests from this Unix time on")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_ab_report)
