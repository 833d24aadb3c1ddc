"""How `skewless run` grows with the data: wall time, peak memory of each step, and AUC.

For each row count, generates the default data and runs ``skewless run --no-serve`` on it while
a sampler reads the resident memory of every process of each pipeline step (a kfp.local step is
a subprocess whose command names its function) every 0.2 s; a step's peak is the largest sum
over its processes seen. Writes bench/results/scale.{json,md}.

Usage: python bench/bench_scale.py [--rows 1000000,3000000,10000000] [--render scale.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import provenance
import psutil

SKEWLESS = [sys.executable, "-m", "skewless.cli"]
STEP_FLAG = "--function_to_execute"
MEMORY_LIMIT_MB = 4096  # issue 18: any step under 4 GB


def _step_of(process: psutil.Process) -> str | None:
    """The pipeline step a process works for: its own or an ancestor's ``--function_to_execute``."""
    for candidate in [process, *process.parents()]:
        try:
            command = candidate.cmdline()
        except psutil.Error:
            continue
        # The executor's arguments arrive as separate words or inside one shell string.
        words = " ".join(command).split()
        if STEP_FLAG in words and words.index(STEP_FLAG) + 1 < len(words):
            return words[words.index(STEP_FLAG) + 1]
    return None


def _sample(root: psutil.Process, peaks: dict[str, float], done: threading.Event) -> None:
    while not done.is_set():
        totals: dict[str, float] = {}
        try:
            children = root.children(recursive=True)
        except psutil.Error:
            break
        for process in children:
            try:
                step, rss = _step_of(process), process.memory_info().rss
            except psutil.Error:
                continue
            if step:
                totals[step] = totals.get(step, 0.0) + rss / 2**20
        for step, megabytes in totals.items():
            peaks[step] = max(peaks.get(step, 0.0), megabytes)
        done.wait(0.2)


def _run(rows: int, work: Path) -> dict[str, Any]:
    data = work / f"data-{rows}.parquet"
    subprocess.run(
        [*SKEWLESS, "generate", "--rows", str(rows), "--out", str(data)],
        check=True,
        capture_output=True,
    )
    workdir = work / f"run-{rows}"
    peaks: dict[str, float] = {}
    done = threading.Event()
    started = time.perf_counter()
    with (work / f"run-{rows}.log").open("w") as log:
        process = subprocess.Popen(
            [*SKEWLESS, "run", "--data", str(data), "--no-serve", "--workdir", str(workdir)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        sampler = threading.Thread(target=_sample, args=(psutil.Process(process.pid), peaks, done))
        sampler.start()
        code = process.wait()
        done.set()
        sampler.join()
    wall = time.perf_counter() - started
    if code != 0:
        sys.exit(f"error: skewless run failed at {rows:,} rows (exit {code}); see {log.name}")
    summary = json.loads((workdir / "run_summary.json").read_text())
    return {
        "rows": rows,
        "wall_seconds": round(wall, 1),
        "pipeline_seconds": summary["pipeline_seconds"],
        "step_seconds": summary["step_seconds"],
        "step_peak_rss_mb": {step: round(mb) for step, mb in peaks.items()},
        "auc": round(summary["metrics"]["auc"], 4),
        # Early stopping varies the epochs: the fit per epoch is what grows with the rows.
        "epochs_run": summary["train"]["epochs_run"],
        "train_timings": summary["train"]["timings"],
    }


def _markdown(runs: list[dict[str, Any]]) -> str:
    steps = list(runs[0]["step_seconds"])
    lines = [
        "# Scaling: `skewless run --no-serve` on the default data (one run per size)",
        "",
        "Per step: seconds / peak resident memory in MB (sampled every 0.2 s).",
        "",
        "| rows | wall s | s per 1M rows | AUC | " + " | ".join(steps) + " |",
        "|---|---|---|---|" + "---|" * len(steps),
    ]
    for run in runs:
        cells = [
            f"{run['step_seconds'].get(s, '-')} / {run['step_peak_rss_mb'].get(s, '-')}"
            for s in steps
        ]
        per_million = run["wall_seconds"] / run["rows"] * 1e6
        lines.append(
            f"| {run['rows']:,} | {run['wall_seconds']} | {per_million:.1f} | {run['auc']} | "
            + " | ".join(cells)
            + " |"
        )
    if all("train_timings" in run for run in runs):
        # Since f3464e8 the two run at once in the train step, sharing its cores.
        lines += ["", "| rows | epochs | fit s per epoch | retrieval stage s (beside the fit) |"]
        lines.append("|---|---|---|---|")
        for run in runs:
            timings, epochs = run["train_timings"], run["epochs_run"]
            lines.append(
                f"| {run['rows']:,} | {epochs} | {timings['fit_seconds'] / epochs:.1f} | "
                f"{timings.get('retrieval_seconds', '-')} |"
            )
    worst = max(max(r["step_peak_rss_mb"].values(), default=0) for r in runs)
    lines += ["", f"Largest step peak: {worst:,} MB (goal: under {MEMORY_LIMIT_MB:,} MB)."]
    if len(runs) > 1:  # linear (or better) when the wall grows no faster than the rows
        small, large = min(runs, key=lambda r: r["rows"]), max(runs, key=lambda r: r["rows"])
        rows, wall = large["rows"] / small["rows"], large["wall_seconds"] / small["wall_seconds"]
        lines.append(
            f"From {small['rows']:,} to {large['rows']:,} rows ({rows:g}x) the wall grew "
            f"{wall:.2f}x (goal: linear in rows, at most {rows:g}x)."
        )
    lines += ["", "Notes on each run (the machine, its load): docs/performance.md, Scaling."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000000,3000000,10000000")
    parser.add_argument(
        "--render", metavar="JSON", help="only write scale.md from the runs of a scale.json"
    )
    args = parser.parse_args()
    if args.render:
        results = json.loads(Path(args.render).read_text())
        if isinstance(results, list):  # written before the runs' provenance was recorded
            results = {"runs": results}
        page = _markdown(results["runs"])
        if "measured" in results:
            page += f"\n{provenance.describe(results['measured'])}\n"
        (provenance.RESULTS / "scale.md").write_text(page)
        return
    measured = provenance.begin()
    work = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    runs = []
    for rows in (int(r) for r in args.rows.split(",")):
        runs.append(_run(rows, work))
        print(json.dumps(runs[-1]), flush=True)
    print(provenance.write("scale", {"runs": runs}, _markdown(runs), measured))


if __name__ == "__main__":
    main()
