"""The analysis of an online experiment: exposures joined with outcomes, per variant, with
unit-level statistics, a sample-ratio-mismatch check, guardrails and a decision.

The statistics are in :mod:`skewless.experiments.stats` (docs/experiments.md says why each was
chosen); what the numbers decide, and carrying the decision out, in
:mod:`skewless.experiments.decision`.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter, defaultdict
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from skewless.experiments.decision import (
    VARIANTS,
    Criteria,
    ExperimentError,
    decide,
    guardrails,
)
from skewless.experiments.logs import feedback_path, read_records, segments
from skewless.experiments.stats import lift, ratio_stats, sample_size, srm

__all__ = [
    "VARIANTS",
    "Criteria",
    "ExperimentError",
    "experiment_report",
    "format_experiment_report",
]


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
    report["guardrails"] = guardrails(variants, criteria)
    report["sample_size"] = sample_size(production, candidate, split, mde=criteria.mde,
                                        alpha=criteria.alpha, power=criteria.power)  # fmt: skip
    report["decision"] = decide(report, criteria)
    return report


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
