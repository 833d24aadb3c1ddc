"""Our whole pipeline against TFX's, on the same rows, side by side in one run.

The peer is TFX 1.21's own Chicago taxi example (CsvExampleGen, Transform, Trainer, Evaluator,
Pusher under LocalDagRunner, with ImportSchemaGen for the TFDV steps that have no release for TF
2.21): the recipe in ``../shared/peers/tfx/``, installed in its own virtualenv by its script.
Ours is ``skewless run --no-serve`` on the same 15,002 rows (the wheel's ``big_tipper_label`` copy
of the data: the same rows with TFX's label written out), with the spec ``skewless spec infer``
drafts. Runs alternate (TFX, ours, TFX, ours, ...) so drift in the machine's speed hits both.

Each wall time is the whole command as a user waits for it: interpreter start, imports, the
pipeline, exit. Optionally also times ``skewless run`` on the default data (``--default-rows``),
alternating with an older checkout of skewless on the same rows (``--baseline DIR``: a clone at
that commit with its own ``.venv``; `make bench-pipeline` builds one at the commit issue 18 was
filed against) for the goal's second ratio.
Writes bench/results/pipeline.{json,md}.

Usage: python bench/bench_pipeline.py [--rounds 2] [--tfx-venv DIR] [--default-rows 400000]
                                      [--baseline DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import provenance

REPO = Path(__file__).resolve().parents[1]
PEER = REPO.parent / "shared" / "peers" / "tfx"
WHEEL_DATA = "tfx/examples/chicago_taxi_pipeline/data/{}/data.csv"
MODULE_FILE = "examples/chicago_taxi_pipeline/taxi_utils_native_keras.py"
SKEWLESS = [sys.executable, "-m", "skewless.cli"]


def _tfx_wheel() -> Path:
    folder = Path(os.environ.get("SKEWLESS_PUBLIC_DATA", REPO / ".cache" / "public-data"))
    wheels = sorted(folder.glob("tfx-*.whl"))
    if not wheels:
        sys.exit(f"error: no TFX wheel in {folder}: `make test` fetches it")
    return wheels[-1]


def _timed(command: list[str], log: Path, env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    with log.open("w") as out:
        completed = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(f"error: {command[:4]} failed (exit {completed.returncode}); see {log}")
    return seconds


def _prepare(work: Path, tfx_venv: Path) -> dict[str, Path]:
    with zipfile.ZipFile(_tfx_wheel()) as wheel:
        (work / "simple").mkdir()
        (work / "simple" / "data.csv").write_bytes(wheel.read(WHEEL_DATA.format("simple")))
        (work / "taxi.csv").write_bytes(wheel.read(WHEEL_DATA.format("big_tipper_label")))
    site = next((tfx_venv / "lib").glob("python3*/site-packages/tfx"))
    shutil.copy(site / MODULE_FILE, work / "taxi_utils_native_keras.py")
    _timed(
        [*SKEWLESS, "spec", "infer", "--data", str(work / "taxi.csv"), "--label", "big_tipper",
         "--exclude", "tips", "--out", str(work / "taxi_spec.yaml")],
        work / "spec_infer.log",
    )  # fmt: skip
    return {"data": work / "taxi.csv", "spec": work / "taxi_spec.yaml"}


def _run_tfx(work: Path, tfx_venv: Path, round_: int) -> dict[str, Any]:
    out = work / f"tfx-{round_}"
    env = {
        **os.environ,
        "TFX_DATA_DIR": str(work / "simple"),
        "TFX_MODULE_FILE": str(work / "taxi_utils_native_keras.py"),
    }
    log = work / f"tfx-{round_}.log"
    wall = _timed(
        [str(tfx_venv / "bin/python"), str(PEER / "run_taxi_reduced.py"), str(out), "in_memory"],
        log,
        env,
    )
    inside = next(
        float(line.split()[1]) for line in log.read_text().splitlines() if "TOTAL_WALL_S" in line
    )
    return {"wall_seconds": round(wall, 1), "pipeline_seconds": inside}


def _run_ours(
    data: Path, spec: Path | None, workdir: Path, *extra: str, skewless: list[str] = SKEWLESS
) -> dict[str, Any]:
    command = [*skewless, "run", "--data", str(data), "--no-serve", "--workdir", str(workdir)]
    command += ["--spec", str(spec)] if spec else []
    wall = _timed([*command, *extra], workdir.with_suffix(".log"))
    summary = json.loads((workdir / "run_summary.json").read_text())
    return {
        "wall_seconds": round(wall, 1),
        "pipeline_seconds": summary["pipeline_seconds"],
        "step_seconds": summary["step_seconds"],
        "auc": round(summary["metrics"]["auc"], 4),
        "baseline_auc": round(summary["metrics"].get("baseline_auc", float("nan")), 4),
    }


def _markdown(result: dict[str, Any]) -> str:
    taxi = result["taxi"]
    lines = [
        "# Pipeline: ours against TFX on the same rows (one run, runs alternating)",
        "",
        f"Chicago taxi sample from TFX's wheel ({taxi['rows']:,} rows). Wall: the whole command, "
        "start-up and exit included; pipeline: the time inside it the pipeline itself reports.",
        "",
        "| round | TFX wall s | TFX pipeline s | ours wall s | ours pipeline s | ours AUC |",
        "|---|---|---|---|---|---|",
    ]
    for i, (tfx, ours) in enumerate(zip(taxi["tfx"], taxi["ours"], strict=True), start=1):
        lines.append(
            f"| {i} | {tfx['wall_seconds']} | {tfx['pipeline_seconds']} | {ours['wall_seconds']} "
            f"| {ours['pipeline_seconds']} | {ours['auc']} |"
        )
    steps = taxi["ours"][-1]["step_seconds"]
    lines += [
        "",
        f"Median wall: TFX {taxi['tfx_median_wall']} s, ours {taxi['ours_median_wall']} s: "
        f"**ratio {taxi['ratio']}** (goal: at most 0.5).",
        "",
        "Our steps in the last round: " + ", ".join(f"{k} {v} s" for k, v in steps.items()) + ".",
    ]
    if "default" in result:
        lines += _default_markdown(result["default"])
    return "\n".join(lines) + "\n"


def _default_markdown(default: dict[str, Any]) -> list[str]:
    lines = ["", f"## Default data ({default['rows']:,} rows, `skewless run --no-serve`)", ""]
    baseline = default.get("baseline")
    if baseline:
        lines += [
            f"Alternating with skewless at {baseline['commit']} (the commit issue 18 was filed "
            "against) on the same rows, in its own checkout and virtualenv:",
            "",
            "| round | then: pipeline s | then: AUC | now: pipeline s | now: AUC |",
            "|---|---|---|---|---|",
        ]
        for i, (then, now) in enumerate(zip(baseline["runs"], default["runs"], strict=True), 1):
            lines.append(
                f"| {i} | {then['pipeline_seconds']} | {then['auc']} | {now['pipeline_seconds']} "
                f"| {now['auc']} |"
            )
        lines += [
            "",
            f"Median pipeline: then {baseline['median_pipeline']} s, now "
            f"{default['median_pipeline']} s: **ratio {baseline['ratio']}** (goal: at most 0.6, "
            "AUC equal or better).",
            "",
        ]
    run = default["runs"][-1]
    lines += [
        f"Last round: wall {run['wall_seconds']} s, pipeline {run['pipeline_seconds']} s; eval AUC "
        f"{run['auc']} (linear baseline {run['baseline_auc']}).",
        "",
        "Steps: " + ", ".join(f"{k} {v} s" for k, v in run["step_seconds"].items()) + ".",
    ]
    return lines


def _run_default(work: Path, rows: int, rounds: int, baseline: Path | None) -> dict[str, Any]:
    """Ours on the default data, alternating with ``baseline``'s skewless when one is given."""
    data = work / "default.parquet"
    _timed([*SKEWLESS, "generate", "--rows", str(rows), "--out", str(data)], work / "generate.log")
    then_cli = [str(baseline / ".venv/bin/python"), "-m", "skewless.cli"] if baseline else []
    then: list[dict[str, Any]] = []
    now: list[dict[str, Any]] = []
    for round_ in range(1, (rounds if baseline else 1) + 1):
        # Each round swaps which goes first (then-now, now-then, ...): a warm page cache or the
        # load drifting within a round favours neither side.
        for side in ("then", "now") if round_ % 2 else ("now", "then"):
            if side == "now":
                now.append(_run_ours(data, None, work / f"now-{round_}"))
            elif baseline:
                then.append(_run_ours(data, None, work / f"then-{round_}", skewless=then_cli))
        print(f"default round {round_}: then {then[-1] if then else None}, now {now[-1]}",
              flush=True)  # fmt: skip
    median_now = round(statistics.median(r["pipeline_seconds"] for r in now), 3)
    result: dict[str, Any] = {"rows": rows, "runs": now, "median_pipeline": median_now}
    if baseline:
        commit = subprocess.run(
            ["git", "-C", str(baseline), "rev-parse", "--short", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        median_then = round(statistics.median(r["pipeline_seconds"] for r in then), 3)
        result["baseline"] = {
            "commit": commit,
            "runs": then,
            "median_pipeline": median_then,
            "ratio": round(median_now / median_then, 3),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--tfx-venv", type=Path, default=Path("/tmp/perf_tfx"))
    parser.add_argument("--default-rows", type=int, default=0, help="0: skip the default data")
    parser.add_argument(
        "--baseline", type=Path, help="an older skewless checkout with its .venv, run alternating"
    )
    args = parser.parse_args()
    if not (args.tfx_venv / "bin" / "python").exists():
        sys.exit(f"error: no TFX in {args.tfx_venv}: run {PEER / 'install_tfx.sh'} {args.tfx_venv}")
    if args.baseline and not (args.baseline / ".venv" / "bin" / "python").exists():
        sys.exit(f"error: --baseline {args.baseline}: no .venv/bin/python in it")

    measured = provenance.begin()
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    inputs = _prepare(work, args.tfx_venv)
    tfx_runs, our_runs = [], []
    for round_ in range(1, args.rounds + 1):
        tfx_runs.append(_run_tfx(work, args.tfx_venv, round_))
        our_runs.append(_run_ours(inputs["data"], inputs["spec"], work / f"ours-{round_}"))
        print(f"round {round_}: TFX {tfx_runs[-1]}, ours {our_runs[-1]}", flush=True)
    tfx_wall = round(statistics.median(r["wall_seconds"] for r in tfx_runs), 3)
    our_wall = round(statistics.median(r["wall_seconds"] for r in our_runs), 3)
    result: dict[str, Any] = {
        "taxi": {
            "rows": 15_002,
            "tfx": tfx_runs,
            "ours": our_runs,
            "tfx_median_wall": tfx_wall,
            "ours_median_wall": our_wall,
            "ratio": round(our_wall / tfx_wall, 2),
        }
    }
    if args.default_rows:
        result["default"] = _run_default(work, args.default_rows, args.rounds, args.baseline)
    print(provenance.write("pipeline", result, _markdown(result), measured))


if __name__ == "__main__":
    main()
