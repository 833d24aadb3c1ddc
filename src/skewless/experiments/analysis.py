"""The analysis of an online experiment: exposures joined with outcomes, per variant, with
unit-level statistics, a sample-ratio-mismatch check, guardrails and a decision.

The statistics are in :mod:`skewless.experiments.stats` (docs/experiments.md says why each was
chosen).
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from skewless.experiments.logs import feedback_path, read_records, segments
from skewless.experiments.stats import lift, ratio_stats, sample_size, srm

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


def _p99(values: list[float]) -> float | None:
    return float(np.percentile(values, 99)) if values else None


def _read_exposures(log: Path, model: str) -> list[dict[str, Any]]:
    if not segments(log):
        raise ExperimentError(
            f"no exposure log at {log}; serve with --request-log (or from a --registry)"
        )
    return [r for r in read_records(log, what="an exposure record") if r.get("model") == model]


def experiment_report(
    log: str | Path,
    *,
    model: str,
    experiment: str | None = None,
    since: float | None = None,
    until: float | None = None,
    criteria: Criteria | None = None,
    feedback: str | Path | None = None,
) -> dict[str, Any]:
    """Per-variant outcome rates with confidence intervals, the lift, SRM and guardrails.

    Args:
        log: The server's exposure log (``requests.jsonl``); rotated segments are read too.
        model: The model name.
        experiment: ``MODEL:PRODUCTION:CANDIDATE`` (default: the newest one in the log).
        since: Only exposures at or after this Unix time.
        until: Only exposures before this Unix time.
        criteria: Significance, power, MDE and guardrail settings.
        feedback: The outcome log (default: the one beside ``log``).

    Returns:
        A JSON-able report (see docs/experiments.md for every field).

    Raises:
        ExperimentError: No experiment in the log (or the named one is absent).
        LogError: A log line is not a JSON object.
    """
    criteria = criteria or Criteria()
    log = Path(log)
    records = _read_exposures(log, model)
    if experiment is None:
        named = [r["experiment"] for r in records if r.get("experiment")]
        if not named:
            raise ExperimentError(
                f"{log}: no experiment for model {model!r}: start a canary "
                f"(skewless canary {model} --version N --percent P) and send traffic"
            )
        experiment = str(named[-1])
    in_window = [
        r
        for r in records
        if r.get("experiment") == experiment
        and (since is None or float(r["time"]) >= since)
        and (until is None or float(r["time"]) < until)
    ]
    if not in_window:
        raise ExperimentError(f"{log}: no exposures of experiment {experiment!r} in that window")
    # A changed split moves units between variants: analyze the newest split only.
    split = int(in_window[-1].get("split", 0))
    current = [r for r in in_window if int(r.get("split", 0)) == split]

    # Per variant: exposures per unit, and the versions that answered.
    served: dict[str, Counter[str]] = {v: Counter() for v in VARIANTS}
    versions: dict[str, set[str]] = {v: set() for v in VARIANTS}
    without_unit = {v: 0 for v in VARIANTS}
    refused = {v: 0 for v in VARIANTS}
    failed = {v: 0 for v in VARIANTS}
    latency: dict[str, list[float]] = {v: [] for v in VARIANTS}
    key_of_request: dict[str, tuple[str, str]] = {}
    key_of_unit_item: dict[tuple[str, str], tuple[str, str]] = {}
    for record in current:
        variant = record["role"]
        status = int(record.get("status", 200))
        if status == 400:
            refused[variant] += 1
            continue
        if status != 200:
            failed[variant] += 1
            continue
        latency[variant].append(float(record["latency_ms"]))
        if record.get("unit") is None:
            without_unit[variant] += 1
            continue
        unit = str(record["unit"])
        served[variant][unit] += 1
        versions[variant].add(str(record["version"]))
        if record.get("request_id"):
            key_of_request[record["request_id"]] = (variant, unit)
        for item in record.get("items") or ():
            key_of_unit_item[(unit, item)] = (variant, unit)
    # Request ids of this model's other exposures: feedback on them is not "unmatched".
    elsewhere = {r["request_id"] for r in records if r.get("request_id")} - set(key_of_request)

    outcomes: dict[tuple[str, str], float] = defaultdict(float)
    counts = {"matched": 0, "unmatched": 0, "other_experiments_or_windows": 0, "other_outcomes": 0}
    feedback_file = Path(feedback) if feedback is not None else feedback_path(log)
    has_feedback = bool(segments(feedback_file))
    if has_feedback:
        for event in read_records(feedback_file, what="a feedback record"):
            if event.get("model") != model:
                continue
            if event.get("outcome") != criteria.outcome:
                counts["other_outcomes"] += 1
                continue
            if "request_id" in event:
                key = key_of_request.get(event["request_id"])
                other = event["request_id"] in elsewhere
            else:
                key = key_of_unit_item.get((str(event.get("unit")), str(event.get("item"))))
                other = False
            if key is not None:
                outcomes[key] += float(event.get("value", 1))
                counts["matched"] += 1
            elif other:
                counts["other_experiments_or_windows"] += 1
            else:
                counts["unmatched"] += 1

    z = NormalDist().inv_cdf(1 - criteria.alpha / 2)
    variants: dict[str, dict[str, Any]] = {}
    for variant in VARIANTS:
        units = sorted(served[variant])
        exposures = np.array([served[variant][u] for u in units], dtype=np.float64)
        clicks = np.array([outcomes[(variant, u)] for u in units], dtype=np.float64)
        stats = ratio_stats(clicks, exposures)
        answered = len(latency[variant]) + failed[variant]
        stats.update(
            {
                "versions": sorted(versions[variant]),
                "ci": [stats["rate"] - z * stats["se"], stats["rate"] + z * stats["se"]],
                "exposures_without_unit": without_unit[variant],
                "refused_requests": refused[variant],
                "server_errors": failed[variant],
                "error_rate": failed[variant] / answered if answered else 0.0,
                "p99_latency_ms": _p99(latency[variant]),
            }
        )
        variants[variant] = stats

    report: dict[str, Any] = {
        "model": model,
        "experiment": experiment,
        "outcome": criteria.outcome,
        "split_percent": split,
        "exposures_before_split_change": len(in_window) - len(current),
        "feedback": {"log": str(feedback_file), "found": has_feedback, **counts},
        "variants": variants,
        "criteria": dataclasses.asdict(criteria),
    }
    production, candidate = variants["production"], variants["candidate"]
    report["lift"] = lift(production, candidate, mde=criteria.mde, z=z)
    report["srm"] = srm([production["units"], candidate["units"]], split)
    report["guardrails"] = _guardrails(variants, criteria)
    report["sample_size"] = sample_size(production, candidate, split, mde=criteria.mde,
                                        alpha=criteria.alpha, power=criteria.power)  # fmt: skip
    report["decision"] = decide(report, criteria)
    return report


def _guardrails(variants: dict[str, dict[str, Any]], criteria: Criteria) -> dict[str, Any]:
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


def format_experiment_report(report: dict[str, Any]) -> str:
    """The report as a few readable lines and a table."""

    def pct(value: float | None) -> str:
        return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}%"

    lift, srm, size = report["lift"], report["srm"], report["sample_size"]
    lines = [
        f"experiment {report['experiment']} (candidate share {report['split_percent']}%), "
        f"outcome {report['outcome']!r}",
        f"{'VARIANT':<11} {'VERSION':>7} {'UNITS':>6} {'EXPOSURES':>9} {'OUTCOMES':>9} "
        f"{'RATE':>7} {'95% CI':>17} {'ERRORS':>6} {'P99 ms':>7} {'NO UNIT':>7}",
    ]
    for name, v in report["variants"].items():
        p99 = "n/a" if v["p99_latency_ms"] is None else f"{v['p99_latency_ms']:.1f}"
        ci = f"{pct(v['ci'][0])}..{pct(v['ci'][1])}"
        lines.append(
            f"{name:<11} {','.join(v['versions']) or '-':>7} {v['units']:>6} {v['exposures']:>9} "
            f"{v['outcomes']:>9g} {pct(v['rate']):>7} {ci:>17} "
            f"{v['server_errors']:>6} {p99:>7} {v['exposures_without_unit']:>7}"
        )
    if lift["p_value"] is None:
        lines.append("lift: not computable yet (too few units or no variation)")
    else:
        lines.append(
            f"lift: {100 * lift['absolute']:+.2f} points [{100 * lift['ci'][0]:+.2f}, "
            f"{100 * lift['ci'][1]:+.2f}], relative {pct(lift['relative'])} "
            f"[{pct(lift['relative_ci'][0])}, {pct(lift['relative_ci'][1])}], "
            f"p={lift['p_value']:.3g} (sequential p={lift['sequential_p_value']:.3g})"
        )
    lines.append(
        "sample ratio: "
        + ("n/a" if srm["p_value"] is None else f"p={srm['p_value']:.3g}")
        + (" MISMATCH" if srm["mismatch"] else " ok")
        + f"; guardrails: {'hold' if report['guardrails']['hold'] else 'BROKEN'}"
        + "".join(f"\n  - {b}" for b in report["guardrails"]["broken"])
    )
    if size["units_needed"] is not None:
        lines.append(
            f"to detect a {100 * size['mde_relative']:.0f}% relative change at "
            f"{100 * report['criteria']['power']:.0f}% power: "
            f"{size['units_needed']} units ({size['units_more']} more)"
        )
    fb = report["feedback"]
    lines.append(
        f"feedback: {fb['matched']} matched, {fb['unmatched']} matching no exposure, "
        f"{fb['other_experiments_or_windows']} for other experiments or windows, "
        f"{fb['other_outcomes']} other outcomes" + ("" if fb["found"] else f" (no {fb['log']})")
    )
    decision = report["decision"]
    lines.append(f"decision: {decision['action'].upper()}: {decision['reason']}")
    return "\n".join(lines)


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
