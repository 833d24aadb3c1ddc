"""The online-experiment loop at full size, with the planted world as ground truth.

Trains three models on the default data (seed 0): one on 400k rows, one on 2k rows, and one on
400k rows with shuffled labels; registers them (plus a twin of the 400k model for A/A) and serves
them from one registry-backed ``skewless serve``. Then, each through ``skewless simulate`` and
``skewless experiment report/decide``:

1. 400k (candidate) vs 2k (production): the better model should win online and be promoted;
2. shuffled labels (candidate) vs 400k (production): should lose and be stopped;
3. A/A, the 400k model's twin vs itself, over ``--aa-seeds`` independent simulations: the share
   declared significant at alpha 0.05 is the measured false-positive rate.

Writes bench/results/experiments.{json,md}.
Usage: python bench/bench_experiment.py [--rows 400000] [--small-rows 2000] [--aa-seeds 40]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import provenance

SKEWLESS = [sys.executable, "-m", "skewless.cli"]


def _train(data: Path, rows: int, out: Path, *, shuffle: bool = False) -> Path:
    """A model trained as the pipeline trains it, on the first ``rows`` rows."""
    import pandas as pd

    from skewless.contract.spec import load_spec
    from skewless.data.ingest import ingest
    from skewless.model.hparams import HParams
    from skewless.model.inputs import TrainingData
    from skewless.model.train import train
    from skewless.model.transform import analyze

    spec = load_spec()
    frame = pd.read_parquet(data).iloc[:rows]
    if shuffle:
        label = spec.label.name
        frame[label] = frame[label].sample(frac=1.0, random_state=0).to_numpy()
    out.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(out / "raw.parquet")
    ingested = ingest(out / "raw.parquet", spec, out / "ingested").out_dir
    analyze(ingested / "train.parquet", spec, out / "transform")
    data = TrainingData.ingested(ingested, out / "transform", spec)
    result = train(data, out / "trained", HParams())
    print(f"trained {out.name}: eval AUC {result.eval_auc:.4f}", flush=True)
    return Path(result.model_dir)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _server(registry: Path) -> Iterator[str]:
    http, grpc = _free_port(), _free_port()
    with tempfile.TemporaryFile(mode="w+") as log:
        process = subprocess.Popen(
            [*SKEWLESS, "serve", "--registry", str(registry), "--http-port", str(http),
             "--grpc-port", str(grpc)],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            yield _ready(f"http://127.0.0.1:{http}", process, log)
        finally:
            process.terminate()
            process.wait(60)


def _ready(endpoint: str, process: subprocess.Popen[bytes], log: Any) -> str:
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{endpoint}/v2/models/ranking/ready", timeout=2):
                return endpoint
        except OSError:
            if process.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read()[-3000:]) from None
            time.sleep(0.5)
    raise RuntimeError(f"{endpoint} never became ready")


def _cli(*args: str) -> str:
    done = subprocess.run([*SKEWLESS, *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(done.stdout + done.stderr)
    return done.stdout


def _wait_for(endpoint: str, log: Path, experiment: str) -> None:
    """Until the server's exposures carry ``experiment`` (it polls the registry)."""
    from skewless.contract.spec import load_spec
    from skewless.experiments.logs import read_records
    from skewless.serving.protocol import example_row

    body = json.dumps({"instances": [example_row(load_spec())]}).encode()
    for _ in range(240):
        request = urllib.request.Request(
            f"{endpoint}/v1/models/ranking:predict", data=body,
            headers={"Content-Type": "application/json", "x-experiment-unit": "probe"},
        )  # fmt: skip
        with urllib.request.urlopen(request, timeout=60) as response:
            request_id = response.headers["x-request-id"]
        if any(r.get("request_id") == request_id and r["experiment"] == experiment
               for r in read_records(log)):  # fmt: skip
            return
        time.sleep(0.5)
    raise RuntimeError(f"the server never ran {experiment}")


def _scenario(
    endpoint: str, log: Path, registry: Path, experiment: str, units: int, requests: int,
    seed: int, *, act: bool,
) -> dict[str, Any]:  # fmt: skip
    _wait_for(endpoint, log, experiment)
    simulated = json.loads(_cli(
        "simulate", "--endpoint", endpoint, "--units", str(units), "--requests", str(requests),
        "--seed", str(seed), "--concurrency", "8", "--json",
    ))  # fmt: skip
    window = ["--log", str(log), "--since", str(simulated["started"]),
              "--until", str(simulated["finished"])]  # fmt: skip
    report = json.loads(_cli("experiment", "report", *window, "--json"))
    text = _cli("experiment", "report", *window)
    decision = _cli("experiment", "decide", *window, "--registry", str(registry),
                    *([] if act else ["--dry-run"])).strip()  # fmt: skip
    return {"simulated": simulated, "report": report, "text": text, "decide": decision}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--small-rows", type=int, default=2_000)
    parser.add_argument("--units", type=int, default=4_000)
    parser.add_argument("--requests", type=int, default=40_000)
    parser.add_argument("--aa-seeds", type=int, default=40)
    parser.add_argument("--aa-units", type=int, default=1_000)
    parser.add_argument("--aa-requests", type=int, default=4_000)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    measured = provenance.begin()

    from skewless.data.generate import write_dataset
    from skewless.registry.sqlite import SQLiteRegistry
    from skewless.rollout.deploy import deploy_version, register_local

    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="skewless-bench-experiment-"))
    data = write_dataset(args.rows, 0, work / "data.parquet", show_progress=False)
    small = _train(data, args.small_rows, work / "small")
    large = _train(data, args.rows, work / "large")
    shuffled = _train(data, args.rows, work / "shuffled", shuffle=True)
    repository = work / "models"
    evaluation = {"metrics": {}, "gate": {"promote": True, "reasons": []}}
    for run, model in (("small", small), ("large", large), ("shuffled", shuffled),
                       ("large-twin", large)):  # fmt: skip
        register_local(model, repository, "ranking", evaluation=evaluation, stats_path=None,
                       run_id=run)  # fmt: skip
    deploy_version(repository, "ranking", 1, "small")
    registry_path = repository / "registry.db"
    registry = SQLiteRegistry(registry_path)
    log = repository / "requests.jsonl"
    results: dict[str, Any] = {"rows": args.rows, "small_rows": args.small_rows}
    with _server(registry_path) as endpoint:
        registry.start_canary("ranking", 2, 50, actor="bench")
        results["large_vs_small"] = _scenario(
            endpoint, log, registry_path, "ranking:1:2", args.units, args.requests, 1, act=True
        )
        print(results["large_vs_small"]["text"], results["large_vs_small"]["decide"], flush=True)
        registry.start_canary("ranking", 3, 50, actor="bench")  # production is 2 if promoted
        production = registry.traffic("ranking").production
        results["shuffled_vs_large"] = _scenario(
            endpoint, log, registry_path, f"ranking:{production}:3", args.units, args.requests, 2,
            act=True,
        )  # fmt: skip
        print(results["shuffled_vs_large"]["text"], results["shuffled_vs_large"]["decide"])
        registry.start_canary("ranking", 4, 50, actor="bench")
        production = registry.traffic("ranking").production
        aa = []
        for seed in range(args.aa_seeds):
            run = _scenario(endpoint, log, registry_path, f"ranking:{production}:4",
                            args.aa_units, args.aa_requests, 1000 + seed, act=False)  # fmt: skip
            lift = run["report"]["lift"]
            aa.append({"seed": 1000 + seed, "p_value": lift["p_value"],
                       "sequential_p_value": lift["sequential_p_value"],
                       "srm_p_value": run["report"]["srm"]["p_value"],
                       "decision": run["report"]["decision"]["action"]})  # fmt: skip
            print(f"A/A seed {1000 + seed}: p={lift['p_value']:.3f}", flush=True)
    significant = sum(1 for r in aa if r["p_value"] is not None and r["p_value"] < 0.05)
    results["aa"] = {
        "runs": aa,
        "seeds": len(aa),
        "significant_at_0.05": significant,
        "false_positive_rate": significant / len(aa) if aa else None,
        "promotions_or_rollbacks": sum(1 for r in aa if r["decision"] in ("promote", "rollback")),
    }
    results["seconds"] = time.perf_counter() - started
    print(provenance.write("experiments", results, _markdown(results, args), measured))


def _markdown(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "# Online experiments against the planted world (`make bench-experiment`)",
        "",
        f"Models trained on the default data (seed 0): {results['rows']:,} rows, "
        f"{results['small_rows']:,} rows, and {results['rows']:,} rows with shuffled labels. "
        f"Each scenario: `skewless simulate` with {args.units:,} users and {args.requests:,} "
        "requests (10 candidates each, the top one shown, the click drawn from the planted "
        "probability), then `skewless experiment report` and `decide` over that run's window. "
        f"Wall time {results['seconds'] / 60:.1f} min.",
        "",
    ]
    versus = f"{results['rows']:,} rows vs {results['small_rows']:,} rows"
    for key, title in (("large_vs_small", versus),
                       ("shuffled_vs_large", "shuffled labels vs the full model")):  # fmt: skip
        run = results[key]
        truth = ", ".join(
            f"version {v}: {g['expected_click_rate']:.4f}"
            for v, g in run["simulated"]["versions"].items()
        )
        lines += [f"## {title}", "", "```", run["text"].rstrip(), "```", "",
                  f"Planted (true) click rate of the items each version showed: {truth}.", "",
                  f"`skewless experiment decide`: {run['decide']}", ""]  # fmt: skip
    aa = results["aa"]
    sequential = sum(1 for r in aa["runs"] if (r["sequential_p_value"] or 1) < 0.05)
    srm = sum(1 for r in aa["runs"] if (r["srm_p_value"] or 1) < 0.001)
    lines += [
        "## A/A false-positive rate",
        "",
        f"{aa['seeds']} independent simulations ({args.aa_units:,} users, {args.aa_requests:,} "
        "requests each) of the full model against its identical twin: "
        f"{aa['significant_at_0.05']} declared significant at alpha 0.05 "
        f"(false-positive rate {aa['false_positive_rate']:.3f}; nominal 0.05; with "
        f"{aa['seeds']} runs the 95% range for a true 5% rate is 0 to 5 of them); "
        f"{sequential} with the sequential p-value; sample-ratio mismatches: {srm}; "
        f"decisions that would have promoted or stopped: {aa['promotions_or_rollbacks']} "
        "(`decide --dry-run`, default guardrails).",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
