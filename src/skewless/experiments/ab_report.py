"""A/B evidence from the model server's request log: per-version traffic, latency and scores.

The server appends one JSON line per answered request (``ServingConfig.request_log``): time, model,
version, role (production or candidate), the randomization unit (a user id, or null), rows,
latency in ms and the mean predicted probability.
This module groups those lines by version, so a canary can be judged on what it actually served
before it is promoted.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from skewless.experiments.logs import LogError, read_records, segments


class ReportError(LogError):
    """The request log cannot be read; the message names the file and line."""


def _read(log_path: Path, model: str | None, since: float | None) -> list[dict[str, Any]]:
    if not segments(log_path):
        raise ReportError(f"no request log at {log_path}; serve with --request-log to write one")
    records = []
    try:
        for number, record in enumerate(read_records(log_path, what="a request record"), 1):
            try:
                keep = (
                    record.get("status", 200) == 200  # refused and failed requests are not served
                    and (model is None or record["model"] == model)
                    and (since is None or float(record["time"]) >= since)
                )
            except (KeyError, TypeError, ValueError) as err:
                raise ReportError(
                    f"{log_path}: record {number}: not a request record ({err})"
                ) from None
            if keep:
                records.append(record)
    except ReportError:
        raise
    except LogError as err:  # a line that is not a JSON object, named by file and line
        raise ReportError(str(err)) from None
    return records


def summarize(
    log_path: str | Path, *, model: str | None = None, since: float | None = None
) -> dict[str, Any]:
    """Per-version request counts, traffic share, latency percentiles and mean probability.

    Args:
        log_path: The server's request log (JSON lines).
        model: Only this model's requests (default: all).
        since: Only requests at or after this Unix time.

    Returns:
        ``{"requests": N, "versions": [{"model", "version", "roles", "requests", "share",
        "rows", "latency_ms": {"p50", "p95", "p99", "mean"}, "mean_probability"}, ...]}``.

    Raises:
        ReportError: The log is missing or has a line that is not a request record.
    """
    records = _read(Path(log_path), model, since)
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        groups[(record["model"], str(record["version"]))].append(record)
    versions = []
    for (name, version), group in sorted(groups.items(), key=lambda kv: (kv[0][0], _key(kv[0][1]))):
        latency = np.array([float(r["latency_ms"]) for r in group])
        rows = np.array([int(r["rows"]) for r in group])
        means = np.array([float(r["mean_probability"]) for r in group])
        versions.append(
            {
                "model": name,
                "version": version,
                "roles": sorted({r["role"] for r in group}),
                "requests": len(group),
                "share": len(group) / len(records),
                # Randomization units (users) it served; requests without one were assigned at
                # random and are counted apart.
                "units": len({r["unit"] for r in group if r.get("unit") is not None}),
                "requests_without_unit": sum(1 for r in group if r.get("unit") is None),
                "rows": int(rows.sum()),
                "latency_ms": {
                    "p50": float(np.percentile(latency, 50)),
                    "p95": float(np.percentile(latency, 95)),
                    "p99": float(np.percentile(latency, 99)),
                    "mean": float(latency.mean()),
                },
                # Row-weighted: the average score this version gave the rows it served.
                "mean_probability": float((means * rows).sum() / rows.sum()),
            }
        )
    seen: dict[tuple[str, str], set[str]] = defaultdict(set)
    for record in records:
        if record.get("unit") is not None:
            seen[(record["model"], str(record["unit"]))].add(str(record["version"]))
    return {
        "requests": len(records),
        "versions": versions,
        # Sticky assignment keeps this 0 within one canary (a new canary reassigns).
        "units_in_several_versions": sum(
            1 for versions_seen in seen.values() if len(versions_seen) > 1
        ),
    }


def _key(version: str) -> tuple[int, int, str]:
    """Registry versions in number order; folder names (a server without a registry) after."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def format_report(report: dict[str, Any]) -> str:
    """The summary as a fixed-width table."""
    lines = [
        f"{report['requests']} requests; units served by more than one version: "
        f"{report['units_in_several_versions']}",
        f"{'MODEL':<12} {'VERSION':>7} {'ROLE':<20} {'REQUESTS':>8} {'SHARE':>6} {'UNITS':>6} "
        f"{'NO UNIT':>7} {'ROWS':>8} {'P50 ms':>7} {'P95 ms':>7} {'P99 ms':>7} {'MEAN P':>7}",
    ]
    for v in report["versions"]:
        latency = v["latency_ms"]
        lines.append(
            f"{v['model']:<12} {v['version']:>7} {','.join(v['roles']):<20} {v['requests']:>8} "
            f"{100 * v['share']:>5.1f}% {v['units']:>6} {v['requests_without_unit']:>7} "
            f"{v['rows']:>8} {latency['p50']:>7.2f} {latency['p95']:>7.2f} "
            f"{latency['p99']:>7.2f} {v['mean_probability']:>7.4f}"
        )
    return "\n".join(lines)
