"""``skewless experiment report|decide`` and ``simulate``: online experiments."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from typing import Any

from skewless.cli.common import (
    DEFAULT_EXPOSURE_LOG,
    DEFAULT_REGISTRY,
    REGISTRY_HELP,
    CliError,
    _actor,
    _fraction,
    _model_name,
    _positive_float,
    _positive_int,
    _print_json,
    _probability,
    _registry,
)
from skewless.experiments.analysis import Criteria
from skewless.runner.local import DEFAULT_SEED


def _experiment_report(args: argparse.Namespace) -> dict[str, Any]:
    from skewless.experiments.analysis import experiment_report

    criteria = Criteria(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Criteria)})
    return experiment_report(
        args.log, model=args.model, experiment=args.experiment, since=args.since,
        until=args.until, criteria=criteria, feedback=args.feedback,
    )  # fmt: skip


def cmd_experiment_report(args: argparse.Namespace) -> int:
    """``skewless experiment report``: per-variant outcome rates, lift, SRM, guardrails."""
    from skewless.experiments.analysis import format_experiment_report

    report = _experiment_report(args)
    if args.json:
        _print_json(report)
    else:
        print(format_experiment_report(report))
    return 0


def cmd_experiment_decide(args: argparse.Namespace) -> int:
    """``skewless experiment decide``: promote, stop or keep the canary, by the report."""
    from skewless.experiments.decision import ExperimentError, record_decision

    registry = _registry(args)
    if args.experiment is None:  # the experiment the registry runs now
        traffic = registry.traffic(args.model)
        if traffic.candidate is None:
            message = f"{args.model}: no canary is running; nothing to decide"
            if args.if_running:
                print(message)
                return 0
            raise CliError(message)
        args.experiment = f"{args.model}:{traffic.production}:{traffic.candidate}"
    try:
        report = _experiment_report(args)
    except ExperimentError as err:
        if args.if_running and "no exposures of experiment" in str(err):
            print(f"{args.model}: {err}; nothing to decide yet")
            return 0
        raise
    if args.dry_run:
        decision = report["decision"]
        print(f"{args.model}: would {decision['action']}: {decision['reason']}")
        return 0
    print(record_decision(registry, report, actor=_actor()))
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    """``skewless simulate``: play the planted world against a live server, with feedback."""
    from skewless.experiments.simulate import simulate

    result = simulate(
        args.endpoint, units=args.units, requests=args.requests, seed=args.seed,
        model=args.model, candidates=args.candidates, world_seed=args.world_seed,
        concurrency=args.concurrency, recommend=args.recommend,
    )  # fmt: skip
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['requests']} requests, {result['clicks']} clicks "
          f"(Unix time {result['started']:.3f} to {result['finished']:.3f})")  # fmt: skip
    for version, group in result["versions"].items():
        print(f"  version {version}: {group['requests']} requests from {group['units']} users, "
              f"{group['clicks']} clicks; expected click rate (planted truth) "
              f"{group['expected_click_rate']:.4f}")  # fmt: skip
    return 0


def add_commands(sub: Any) -> None:
    """Adds the experiments subcommands to ``sub``."""
    experiment = sub.add_parser(
        "experiment", help="analyze an online experiment (a canary) and decide it"
    )
    actions = experiment.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")
    report = actions.add_parser(
        "report", help="per-variant outcome rate with CI, lift, p-value, SRM, guardrails"
    )
    decide = actions.add_parser(
        "decide", help="promote, stop or keep the canary by the report; recorded in the registry"
    )
    defaults = Criteria()  # the defaults live there, once
    criteria_options: list[tuple[str, Callable[[str], Any], str]] = [
        ("--outcome", str, "primary outcome name"),
        ("--alpha", _probability, "significance level"),
        ("--power", _probability, "power for the sample size still needed"),
        ("--mde", _positive_float, "minimum detectable effect relative to production's rate"),
        ("--min-units", _positive_int, "fewest units per variant before deciding"),
        ("--max-error-increase", _fraction, "guardrail: allowed rise of the server-error rate"),
        ("--max-p99-ratio", _positive_float,
         "guardrail: allowed ratio of the candidate's p99 latency to production's"),
    ]  # fmt: skip
    for command in (report, decide):
        command.add_argument(
            "--log", default=DEFAULT_EXPOSURE_LOG,
            help="the server's exposure log (rotated segments beside it are read too)",
        )  # fmt: skip
        command.add_argument("--feedback", help="the outcome log (default: beside --log)")
        command.add_argument("--model", type=_model_name, default="ranking", help="model name")
        command.add_argument("--experiment", help="MODEL:PRODUCTION:CANDIDATE (default: newest)")
        command.add_argument("--since", type=float, help="only exposures from this Unix time on")
        command.add_argument("--until", type=float, help="only exposures before this Unix time")
        for flag, kind, text in criteria_options:
            field = flag.removeprefix("--").replace("-", "_")
            default = getattr(defaults, field)
            command.add_argument(flag, type=kind, default=default, help=f"{text} ({default})")
        command.add_argument(
            "--sequential", action="store_true",
            help="always-valid mSPRT p-value: safe to look again and again",
        )  # fmt: skip
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_experiment_report)
    decide.add_argument("--registry", default=DEFAULT_REGISTRY, help=REGISTRY_HELP)
    decide.add_argument("--dry-run", action="store_true", help="say the decision, change nothing")
    decide.add_argument(
        "--if-running", action="store_true",
        help="when no canary runs (or it has no exposures yet), say so and succeed: for a schedule",
    )  # fmt: skip
    decide.set_defaults(func=cmd_experiment_decide)

    sim = sub.add_parser(
        "simulate",
        help="play the default data's planted world against a live server, clicks as feedback",
        description="Example: skewless simulate --endpoint http://localhost:8080 --units 2000 "
        "--requests 20000 --seed 1",
    )
    sim.add_argument("--endpoint", required=True, help="the server, e.g. http://localhost:8080")
    sim.add_argument("--units", type=_positive_int, required=True, help="users taking part")
    sim.add_argument("--requests", type=_positive_int, required=True, help="requests to send")
    sim.add_argument("--seed", type=int, default=0, help="seed of the simulation's draws")
    sim.add_argument("--model", type=_model_name, default="ranking", help="model name")
    sim.add_argument(
        "--candidates", type=_positive_int, default=10, help="items scored per request (10)"
    )
    sim.add_argument(
        "--world-seed", type=int, default=DEFAULT_SEED,
        help="seed of the data the served model was trained on (skewless run's --seed; 0)",
    )  # fmt: skip
    sim.add_argument("--concurrency", type=_positive_int, default=4, help="requests in flight (4)")
    sim.add_argument(
        "--recommend", action="store_true",
        help="two-stage: ask the recommend endpoint for its best item of --candidates retrieved "
        "from the catalogue, instead of ranking random candidates",
    )  # fmt: skip
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.set_defaults(func=cmd_simulate)
