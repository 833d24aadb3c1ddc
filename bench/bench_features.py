"""What serving by id costs: the feature store's online lookup next to the model call.

1. Runs the default pipeline (``skewless run --no-serve``, 400k rows; ``--workdir`` reuses a run),
   whose materialize step writes the Feast repository (SQLite online store).
2. In this process, for 1 and 300 entities: p50/p99 of one batched online lookup of the user
   features (``user_features``), of the item features (``item_features``), and of one call of the
   model's serving signature on as many full raw rows; all side by side in one run.
3. Over HTTP (``skewless serve --registry ... --feature-store ...``, sequential requests): p50/p99
   of a request of 1 and 300 rows that sends only ids and context (300 users and items, and the
   usual ranking request: one user and 300 items), next to the same rows sent with every raw
   feature.

Writes bench/results/features.{json,md}. Usage: python bench/bench_features.py [--workdir DIR]
[--rows 400000] [--calls 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import provenance

SKEWLESS = [sys.executable, "-m", "skewless.cli"]
SIZES = (1, 300)
CONTEXT = ("hour", "weekday")


def _percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p99_ms": round(float(np.percentile(ms, 99)), 3)}  # fmt: skip


def _timed(call: Any, calls: int) -> dict[str, float]:
    call()  # warm
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        seconds.append(time.perf_counter() - started)
    return _percentiles(seconds)


def _rows(workdir: Path, count: int) -> Any:
    import pandas as pd

    run_dir = Path(json.loads((workdir / "run_summary.json").read_text())["run_dir"])
    frame = pd.read_parquet(run_dir / "ingest" / "ingested" / "eval.parquet")
    return frame.sample(n=count, random_state=0).reset_index(drop=True)


def in_process(workdir: Path, calls: int) -> dict[str, Any]:
    import tensorflow as tf

    from skewless.features.online import OnlineFeatures
    from skewless.serving.loading import model_spec

    summary = json.loads((workdir / "run_summary.json").read_text())
    online = OnlineFeatures(workdir / "feature_repo")
    model = Path(summary["served_model_path"])
    signature = tf.saved_model.load(str(model)).signatures["serving_default"]
    inputs = [f.name for f in model_spec(model).model_inputs]
    frame = _rows(workdir, max(SIZES))
    out: dict[str, Any] = {}
    for size in SIZES:
        rows = frame.head(size)
        for view in online.views:
            ids = rows[view.key].astype(str).tolist()
            out[f"lookup_{view.name}_{size}"] = _timed(lambda v=view, i=ids: online.lookup(v, i),
                                                       calls)  # fmt: skip
        tensors = {
            name: tf.constant(rows[name].to_numpy(np.float32) if rows[name].dtype.kind == "f"
                              else rows[name].to_numpy(object))
            for name in inputs
        }  # fmt: skip
        out[f"model_call_{size}"] = _timed(lambda t=tensors: signature(**t), calls)
    return out


def _post(url: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=60) as response:
        response.read()
        assert response.status == 200


def over_http(workdir: Path, calls: int) -> dict[str, Any]:
    from skewless.features.store import read_views

    views, _ = read_views(workdir / "feature_repo")
    looked_up = {name for view in views for name in view.features}
    frame = _rows(workdir, max(SIZES))
    port, grpc = 18480, 18481
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with tempfile.TemporaryFile(mode="w+") as log:
        server = subprocess.Popen(
            [*SKEWLESS, "serve", "--registry", str(workdir / "models" / "registry.db"),
             "--feature-store", str(workdir / "feature_repo"), "--request-log", "",
             "--http-port", str(port), "--grpc-port", str(grpc)],
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/v1/models/ranking:predict"
            deadline = time.monotonic() + 300
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/models/ranking/ready")
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        log.seek(0)
                        raise RuntimeError(log.read()[-2000:]) from None
                    time.sleep(0.5)
            out: dict[str, Any] = {}
            skip = ("event_id", "event_timestamp", "clicked", "true_click_prob")
            names = [c for c in frame.columns if c not in skip]
            for size in SIZES:
                rows = frame.head(size)[names].to_dict("records")
                full = [{k: (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
                        for r in rows]  # fmt: skip
                by_id = [{k: v for k, v in r.items() if k not in looked_up} for r in full]
                out[f"http_full_{size}"] = _timed(lambda b=full: _post(url, {"instances": b}),
                                                  calls)  # fmt: skip
                out[f"http_by_id_{size}"] = _timed(lambda b=by_id: _post(url, {"instances": b}),
                                                   calls)  # fmt: skip
                # The usual ranking request: one user, many items (the user is read once).
                one_user = [{**row, "user_id": by_id[0]["user_id"]} for row in by_id]
                out[f"http_by_id_one_user_{size}"] = _timed(
                    lambda b=one_user: _post(url, {"instances": b}), calls
                )
            return out
        finally:
            server.terminate()
            server.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workdir", type=Path, help="a `skewless run` workdir to reuse")
    parser.add_argument("--rows", type=int, default=400_000)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    measured = provenance.begin()
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="skewless-bench-features-"))
    if not (workdir / "run_summary.json").is_file():
        subprocess.run([*SKEWLESS, "run", "--no-serve", "--workdir", str(workdir),
                        "--rows", str(args.rows)], check=True)  # fmt: skip
    summary = json.loads((workdir / "run_summary.json").read_text())
    results = {
        "rows": summary["rows"],
        "feature_store": {k: summary["feature_store"][k] for k in ("views", "seconds")},
        "calls": args.calls,
        "in_process": in_process(workdir, args.calls),
        "http": over_http(workdir, args.calls),
    }
    print(provenance.write("features", results, render(results), measured))


def render(results: dict[str, Any]) -> str:
    views = results["feature_store"]["views"]
    ip, http = results["in_process"], results["http"]
    lines = [
        "# Serving by id: online lookup next to the model call",
        "",
        f"`skewless run` on {results['rows']['rows_clean']:,} rows; Feast's SQLite online store "
        f"holds {views['user_features']['entities']:,} users and "
        f"{views['item_features']['entities']:,} items (materialize step "
        f"{results['feature_store']['seconds']:.1f} s). {results['calls']} sequential calls per "
        "figure, one process, one machine, side by side in one run.",
        "",
        "| what | rows | p50 ms | p99 ms |",
        "|---|---:|---:|---:|",
    ]
    for size in SIZES:
        labels = {
            f"lookup_user_features_{size}": "online lookup, user features",
            f"lookup_item_features_{size}": "online lookup, item features",
            f"model_call_{size}": "model call (signature, raw rows)",
            f"http_full_{size}": "HTTP predict, every raw feature sent",
            f"http_by_id_{size}": "HTTP predict, ids and context only",
            f"http_by_id_one_user_{size}": "HTTP predict, ids only, one user and many items",
        }
        for key, label in labels.items():
            row = ip.get(key) or http.get(key)
            lines.append(f"| {label} | {size} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
