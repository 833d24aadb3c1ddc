"""``skewless experiment report|decide`` and ``simulate``: online experiments."""

from __future__ import annotations

from typing import Any

import click

from skewless.cli.common import (
    DEFAULT_EXPOSURE_LOG,
    FINITE,
    FRACTION,
    MODEL_NAME,
    POSITIVE,
    POSITIVE_INT,
    PROBABILITY,
    CliError,
    Command,
    Group,
    json_option,
    print_json,
)
from skewless.cli.registry import actor, open_named_registry, registry_option
from skewless.experiments.analysis import Criteria
from skewless.runner.local import DEFAULT_SEED

_CRITERIA_TYPES: dict[str, tuple[Any, str]] = {
    "outcome": (str, "primary outcome name"),
    "alpha": (PROBABILITY, "significance level"),
    "power": (PROBABILITY, "power for the sample size still needed"),
    "mde": (POSITIVE, "minimum detectable effect relative to production's rate"),
    "min_units": (POSITIVE_INT, "fewest units per variant before deciding"),
    "max_error_increase": (FRACTION, "guardrail: allowed rise of the server-error rate"),
    "max_p99_ratio": (
        POSITIVE, "guardrail: allowed ratio of the candidate's p99 latency to production's"
    ),
}  # fmt: skip
"""Each field of :class:`Criteria` but ``sequential`` (a flag): its option's type and help."""


def experiment_options(command: Any) -> Any:
    """The options ``experiment report`` and ``decide`` share: which exposures, and the criteria
    (one option per field of :class:`Criteria`, its default from there)."""
    defaults = Criteria()  # the defaults live there, once
    options = [
        click.option("--log", default=DEFAULT_EXPOSURE_LOG,
                     help="the server's exposure log (rotated segments beside it are read too)"),
        click.option("--feedback", help="the outcome log (default: beside --log)"),
        click.option("--model", type=MODEL_NAME, default="ranking", help="model name"),
        click.option("--experiment", help="MODEL:PRODUCTION:CANDIDATE (default: newest)"),
        click.option("--since", type=FINITE, help="only exposures from this Unix time on"),
        click.option("--until", type=FINITE, help="only exposures before this Unix time"),
        *(
            click.option(f"--{field.replace('_', '-')}", type=kind,
                         default=getattr(defaults, field), help=text)
            for field, (kind, text) in _CRITERIA_TYPES.items()
        ),
        click.option("--sequential", is_flag=True,
                     help="always-valid mSPRT p-value: safe to look again and again"),
    ]  # fmt: skip
    for option in reversed(options):
        command = option(command)
    return command


def _experiment_report(
    log: str, feedback: str | None, model: str, experiment: str | None, since: float | None,
    until: float | None, **criteria: Any,
) -> dict[str, Any]:  # fmt: skip
    """The report of the options :func:`experiment_options` adds."""
    from skewless.experiments.analysis import experiment_report

    return experiment_report(
        log, model=model, experiment=experiment, since=since, until=until,
        criteria=Criteria(**criteria), feedback=feedback,
    )  # fmt: skip


@click.group(cls=Group)
def experiment() -> None:
    """Analyze an online experiment (a canary) and decide it."""


@experiment.command()
@experiment_options
@json_option
def report(as_json: bool, **options: Any) -> None:
    """Per-variant outcome rate with CI, lift, p-value, SRM, guardrails."""
    from skewless.experiments.analysis import format_experiment_report

    document = _experiment_report(**options)
    if as_json:
        print_json(document)
    else:
        print(format_experiment_report(document))


@experiment.command()
@experiment_options
@registry_option
@click.option("--dry-run", is_flag=True, help="say the decision, change nothing")
@click.option("--if-running", is_flag=True,
              help="when no canary runs (or it has no exposures yet), say so and succeed: for a "
              "schedule")  # fmt: skip
def decide(registry: str, dry_run: bool, if_running: bool, **options: Any) -> None:
    """Promote, stop or keep the canary by the report; recorded in the registry."""
    from skewless.experiments.decision import ExperimentError, record_decision

    opened = open_named_registry(registry)
    model = options["model"]
    if options["experiment"] is None:  # the experiment the registry runs now
        traffic = opened.traffic(model)
        if traffic.candidate is None:
            message = f"{model}: no canary is running; nothing to decide"
            if if_running:
                print(message)
                return
            raise CliError(message)
        options["experiment"] = f"{model}:{traffic.production}:{traffic.candidate}"
    try:
        document = _experiment_report(**options)
    except ExperimentError as err:
        if if_running and "no exposures of experiment" in str(err):
            print(f"{model}: {err}; nothing to decide yet")
            return
        raise
    if dry_run:
        decision = document["decision"]
        print(f"{model}: would {decision['action']}: {decision['reason']}")
        return
    print(record_decision(opened, document, actor=actor()))


@click.command(cls=Command)
@click.option("--endpoint", required=True, help="the server, e.g. http://localhost:8080")
@click.option("--units", type=POSITIVE_INT, required=True, help="users taking part")
@click.option("--requests", type=POSITIVE_INT, required=True, help="requests to send")
@click.option("--seed", type=int, default=0, help="seed of the simulation's draws")
@click.option("--model", type=MODEL_NAME, default="ranking", help="model name")
@click.option("--candidates", type=POSITIVE_INT, default=10, help="items scored per request")
@click.option(
    "--world-seed", type=int, default=DEFAULT_SEED,
    help="seed of the data the served model was trained on (skewless run's --seed)",
)  # fmt: skip
@click.option("--concurrency", type=POSITIVE_INT, default=4, help="requests in flight")
@click.option(
    "--recommend", is_flag=True,
    help="two-stage: ask the recommend endpoint for its best item of --candidates retrieved "
    "from the catalogue, instead of ranking random candidates",
)  # fmt: skip
@json_option
def simulate(as_json: bool, **options: Any) -> None:
    """Play the planted world against a live server, with feedback.

    The default data's users ask a live server and click as the planted model says; the clicks
    go back as feedback. Example: skewless simulate --endpoint http://localhost:8080 --units 2000
    --requests 20000 --seed 1
    """
    from skewless.experiments.simulate import simulate as play

    result = play(options.pop("endpoint"), **options)
    if as_json:
        print_json(result)
        return
    print(f"{result['requests']} requests, {result['clicks']} clicks "
          f"(Unix time {result['started']:.3f} to {result['finished']:.3f})")  # fmt: skip
    for version, group in result["versions"].items():
        print(f"  version {version}: {group['requests']} requests from {group['units']} users, "
              f"{group['clicks']} clicks; expected click rate (planted truth) "
              f"{group['expected_click_rate']:.4f}")  # fmt: skip


COMMANDS = (experiment, simulate)
"""The experiments commands, in the order ``skewless --help`` lists them."""
