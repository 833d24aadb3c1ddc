"""What an experiment's numbers decide: the criteria, the guardrails, the decision, and carrying it
out in the registry.

:mod:`skewless.experiments.analysis` computes the report (exposures joined with outcomes, the
statistics); a rule for promoting, rolling back or waiting is changed here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

VARIANTS = ("production", "candidate")


class ExperimentError(RuntimeError):
    """The logs hold no experiment to analyze, or the options contradict it."""


@dataclasses.dataclass(frozen=True)
class Criteria:
    """What counts as a win, a loss, and a broken guardrail.

    Attributes:
        outcome: The primary metric's outcome name in the feedback (``click``).
        alpha: Significance level (two-sided) of the lift test.
        power: Power for the sample size still needed.
        mde: Minimum detectable effect, relative to production's rate (0.05 = 5%).
        min_units: Fewest units per variant before any decision.
        max_error_increase: Largest allowed rise of the candidate's server-error rate over
            production's (absolute; 0.01 = one point).
        max_p99_ratio: Largest allowed ratio of the candidate's p99 latency to production's (an
            increase under 5 ms is always allowed: timer noise on a fast server).
        sequential: Use the always-valid mSPRT p-value instead of the fixed-horizon one.
    """

    outcome: str = "click"
    alpha: float = 0.05
    power: float = 0.8
    mde: float = 0.05
    min_units: int = 100
    max_error_increase: float = 0.01
    max_p99_ratio: float = 1.5
    sequential: bool = False


def guardrails(variants: dict[str, dict[str, Any]], criteria: Criteria) -> dict[str, Any]:
    """Whether the candidate's error rate and p99 latency stay within ``criteria`` of
    production's."""
    a, b = variants["production"], variants["candidate"]
    broken = []
    if b["error_rate"] > a["error_rate"] + criteria.max_error_increase:
        broken.append(
            f"server error rate {b['error_rate']:.2%} vs production {a['error_rate']:.2%} "
            f"(allowed +{criteria.max_error_increase:.2%})"
        )
    if a["p99_latency_ms"] is not None and b["p99_latency_ms"] is not None:
        limit = max(a["p99_latency_ms"] * criteria.max_p99_ratio, a["p99_latency_ms"] + 5.0)
        if b["p99_latency_ms"] > limit:
            broken.append(
                f"p99 latency {b['p99_latency_ms']:.1f} ms vs production "
                f"{a['p99_latency_ms']:.1f} ms (allowed {limit:.1f} ms)"
            )
    return {"hold": not broken, "broken": broken}


def decide(report: dict[str, Any], criteria: Criteria) -> dict[str, Any]:
    """``promote``, ``rollback``, ``continue`` or ``blocked`` (SRM), with the reason."""
    variants, lift = report["variants"], report["lift"]
    p_value = lift["sequential_p_value"] if criteria.sequential else lift["p_value"]
    few = min(variants[v]["units"] for v in VARIANTS)
    if report["srm"]["mismatch"]:
        return {"action": "blocked", "reason": (
            f"sample ratio mismatch (units {report['srm']['observed_units']}, expected shares "
            f"{report['srm']['expected_share']}, p={report['srm']['p_value']:.2g}): the "
            "assignment is broken, so no result can be trusted")}  # fmt: skip
    if report["guardrails"]["broken"]:
        return {"action": "rollback", "reason": "guardrail broken: "
                + "; ".join(report["guardrails"]["broken"])}  # fmt: skip
    if few < criteria.min_units:
        return {"action": "continue",
                "reason": f"{few} units in the smaller variant; at least {criteria.min_units} "
                "are needed before deciding"}  # fmt: skip
    if p_value is None:
        return {"action": "continue", "reason": "no variation in the outcome yet"}
    kind = "sequential p" if criteria.sequential else "p"
    summary = (
        f"{criteria.outcome} rate {variants['candidate']['rate']:.4f} vs production "
        f"{variants['production']['rate']:.4f}, lift {lift['absolute']:+.4f} "
        f"[{lift['ci'][0]:+.4f}, {lift['ci'][1]:+.4f}], {kind}={p_value:.3g}, units "
        f"{variants['production']['units']}/{variants['candidate']['units']}"
    )
    if p_value < criteria.alpha and lift["absolute"] > 0:
        return {"action": "promote", "reason": f"significant gain: {summary}"}
    if p_value < criteria.alpha and lift["absolute"] < 0:
        return {"action": "rollback", "reason": f"significant loss: {summary}"}
    return {"action": "continue", "reason": f"not significant yet: {summary}"}


def record_decision(registry: Any, report: dict[str, Any], *, actor: str) -> str:
    """Carries out the report's decision in the registry and records it with its numbers.

    ``promote`` makes the candidate production; ``rollback`` stops the canary (production keeps
    serving: the candidate never replaced it); ``continue`` and ``blocked`` re-record the
    candidate's alias with the same share, so the alias history shows every look and its numbers.

    Returns:
        One line saying what changed.

    Raises:
        ExperimentError: The registry no longer runs this experiment (it was promoted, stopped or
            replaced since the exposures were logged).
    """
    model = report["model"]
    _, production, candidate = str(report["experiment"]).rsplit(":", 2)
    traffic = registry.traffic(model)
    if (str(traffic.production), str(traffic.candidate)) != (production, candidate):
        raise ExperimentError(
            f"experiment {report['experiment']} is not running: the registry serves production "
            f"{traffic.production} and candidate {traffic.candidate}"
        )
    action, why = report["decision"]["action"], report["decision"]["reason"]
    reason = f"experiment decide: {action}: {why}"
    if action == "promote":
        registry.promote(model, actor=actor, reason=reason)
        return f"{model}: version {candidate} is production now ({why})"
    if action == "rollback":
        registry.start_canary(model, int(candidate), 0, actor=actor, reason=reason)
        return (
            f"{model}: canary of version {candidate} stopped; production version {production} "
            f"takes all requests ({why})"
        )
    registry.set_alias(model, "candidate", int(candidate), actor=actor, reason=reason,
                       traffic_percent=traffic.candidate_percent)  # fmt: skip
    return f"{model}: {action}: version {candidate} keeps {traffic.candidate_percent}% ({why})"
