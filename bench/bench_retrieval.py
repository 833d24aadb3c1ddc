"""Embedding serving at catalogue scale: which ANN library, and what recommend costs.

1. Trains the default pipeline (``skewless run --no-serve``, 400k rows; or ``--model DIR``).
2. For catalogues of 50k and 1M items (the generator's world, seed 0, every item embedded through
   the model's exported candidate tower), and queries from held-out positive rows embedded by
   the query tower: each ANN library's recall@100 against exact search over the same embeddings,
   single-query throughput (one thread), build time (one thread) and bytes per item of the saved
   index. Candidates: USearch (f32, i8), FAISS HNSW, hnswlib; ScaNN is tried and its failure
   recorded.
3. ``skewless serve`` on the model with each catalogue: p50/p99 of ``recommend`` (300 candidates,
   k=10) at concurrency 1 and 8, and the server's resident memory.

Writes bench/results/retrieval.{json,md}. Usage: python bench/bench_retrieval.py [--model DIR]
[--sizes 50000,1000000] [--queries 2000] [--requests 400]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import shutil
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
K = 100


def _train(work: Path) -> Path:
    subprocess.run([*SKEWLESS, "run", "--no-serve", "--workdir", str(work)], check=True)
    return Path(json.loads((work / "run_summary.json").read_text())["model_path"])


def _queries(model: Path, run_dir: Path | None, count: int) -> np.ndarray:
    """Query embeddings of held-out positive rows (the eval split of the run)."""
    import pandas as pd

    from skewless.retrieval.retriever import Retriever

    retriever = Retriever(model)
    ingested = next(run_dir.rglob("ingest/ingested")) if run_dir else None
    frame = pd.read_parquet(ingested / "eval.parquet") if ingested else None
    assert frame is not None, "give --model with --run-dir, or let the benchmark train"
    frame = frame[frame["clicked"] > 0.5].head(count)
    return retriever.embed({n: frame[n].to_numpy() for n in retriever.query_features})


def _catalogue_embeddings(model: Path, items: int) -> tuple[Any, np.ndarray, float]:
    import tensorflow as tf

    from skewless.data.generate import catalogue
    from skewless.data.world import make_world
    from skewless.retrieval.artifact import CANDIDATE_DIRNAME, RETRIEVAL_DIRNAME, SIGNATURE
    from skewless.retrieval.towers import embed_items

    frame = catalogue(make_world(0, items))
    signature = tf.saved_model.load(str(model / RETRIEVAL_DIRNAME / CANDIDATE_DIRNAME)).signatures[
        SIGNATURE
    ]
    started = time.perf_counter()
    embeddings = embed_items(signature, frame)
    return frame, embeddings, time.perf_counter() - started


def _exact(embeddings: np.ndarray, queries: np.ndarray) -> np.ndarray:
    from skewless.retrieval.index import exact_search

    return exact_search(embeddings, queries, K, block=128)[0]


def _overlap(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)]))


def _qps(search: Any, queries: np.ndarray) -> float:
    started = time.perf_counter()
    for query in queries[:500]:
        search(query[None, :])
    return min(500, len(queries)) / (time.perf_counter() - started)


def _libraries(embeddings: np.ndarray, queries: np.ndarray, exact: np.ndarray) -> list[dict]:
    """Each candidate library's HNSW at the settings we ship (M=32, ef 256 build, 1024 search)."""
    rows = []
    dim = embeddings.shape[1]
    work = Path(tempfile.mkdtemp())

    def record(name: str, build: Any, search: Any, save: Any) -> None:
        started = time.perf_counter()
        index = build()
        seconds = time.perf_counter() - started
        found = search(index, queries)
        path = work / name.replace(" ", "_")
        save(index, path)
        rows.append({
            "library": name, "recall_at_100_vs_exact": _overlap(found, exact),
            "queries_per_second_1_thread": _qps(lambda q: search(index, q), queries),
            "build_seconds_1_thread": seconds,
            "bytes_per_item": path.stat().st_size / len(embeddings),
        })  # fmt: skip
        print(rows[-1], flush=True)
        path.unlink()

    from skewless.retrieval import index as ann

    for dtype in ("f32", "i8"):
        record(
            f"usearch {dtype}",
            lambda dtype=dtype: ann.build(embeddings, ann.IndexParams(dtype=dtype)),
            lambda index, q: index.search(q, K)[0],
            lambda index, path: index._index.save(str(path)),
        )
    try:
        import faiss

        faiss.omp_set_num_threads(1)

        def faiss_build() -> Any:
            index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 256
            index.add(embeddings)
            index.hnsw.efSearch = 1024
            return index

        record("faiss hnsw", faiss_build, lambda index, q: index.search(q, K)[1],
               lambda index, path: faiss.write_index(index, str(path)))  # fmt: skip
    except ImportError as err:
        rows.append({"library": "faiss hnsw", "error": str(err)})
    try:
        import hnswlib

        def hnswlib_build() -> Any:
            index = hnswlib.Index(space="ip", dim=dim)
            index.init_index(len(embeddings), M=32, ef_construction=256)
            index.set_num_threads(1)
            index.add_items(embeddings)
            index.set_ef(1024)
            return index

        record("hnswlib", hnswlib_build, lambda index, q: index.knn_query(q, K)[0],
               lambda index, path: index.save_index(str(path)))  # fmt: skip
    except ImportError as err:
        rows.append({"library": "hnswlib", "error": str(err)})
    try:
        from scann.scann_ops.py import scann_ops_pybind  # noqa: F401
    except Exception as err:  # its TensorFlow op library does not load beside TF 2.21
        rows.append({"library": "scann 1.4.2", "error": f"{type(err).__name__}: {err}"[:300]})
    shutil.rmtree(work, ignore_errors=True)
    return rows


def _with_catalogue(model: Path, frame: Any, embeddings: np.ndarray, out: Path) -> Path:
    """A copy of ``model`` whose retrieval stage holds ``frame`` (index rebuilt over it)."""
    from skewless.retrieval import index as ann
    from skewless.retrieval.artifact import (
        CATALOGUE_FILE,
        EMBEDDINGS_FILE,
        META_FILE,
        RETRIEVAL_DIRNAME,
    )

    shutil.copytree(model, out)
    folder = out / RETRIEVAL_DIRNAME
    frame.to_parquet(folder / CATALOGUE_FILE, index=False)
    np.save(folder / EMBEDDINGS_FILE, embeddings)
    index = ann.build(embeddings)
    index.save(folder)
    meta = json.loads((folder / META_FILE).read_text())
    meta.update(items=len(frame), index=index.describe())
    (folder / META_FILE).write_text(json.dumps(meta, indent=1))
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _latency(model: Path, requests: int) -> dict[str, Any]:
    """p50/p99 of recommend (300 candidates, k=10) at concurrency 1 and 8, and the server RSS."""
    import pandas as pd  # noqa: F401

    from skewless.contract.spec import load_spec
    from skewless.serving.protocol import example_row

    port, grpc = _free_port(), _free_port()
    log = tempfile.TemporaryFile()  # noqa: SIM115 - closed with the process, in finally
    process = subprocess.Popen(
        [*SKEWLESS, "serve", "--model", str(model), "--http-port", str(port),
         "--grpc-port", str(grpc)],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/v1/models/recommend:predict"
    try:
        deadline = time.monotonic() + 600
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/v2/models/recommend/ready", timeout=2
                ):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(log.read().decode()[-2000:]) from None
                time.sleep(0.5)
        fields = ("user_id", "age", "country", "device", "history", "hour", "weekday")
        query = {k: v for k, v in example_row(load_spec()).items() if k in fields}
        rng = np.random.default_rng(0)

        def one(index: int) -> float:
            user = f"u{int(rng.integers(20_000)):06d}"
            row = {**query, "user_id": user, "hour": int(index % 24)}
            body = {"instances": [row], "k": 10, "candidates": 300}
            request = urllib.request.Request(
                url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
            )
            started = time.perf_counter()
            with urllib.request.urlopen(request, timeout=60) as response:
                response.read()
            return (time.perf_counter() - started) * 1000

        for index in range(20):  # warm up
            one(index)
        out: dict[str, Any] = {}
        for concurrency in (1, 8):
            with concurrent.futures.ThreadPoolExecutor(concurrency) as pool:
                started = time.perf_counter()
                times = np.array(list(pool.map(one, range(requests))))
                wall = time.perf_counter() - started
            out[f"c{concurrency}"] = {
                "p50_ms": float(np.percentile(times, 50)),
                "p99_ms": float(np.percentile(times, 99)),
                "requests_per_second": requests / wall,
            }
        with open(f"/proc/{process.pid}/status") as status:
            rss = next(line for line in status if line.startswith("VmRSS"))
        out["server_rss_mb"] = int(rss.split()[1]) / 1024
        return out
    finally:
        process.terminate()
        process.wait(timeout=60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="a trained model (default: train one)")
    parser.add_argument("--run-dir", type=Path, help="the run that trained --model")
    parser.add_argument("--sizes", default="50000,1000000")
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=400)
    args = parser.parse_args()
    measured = provenance.begin()
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="bench-retrieval-"))
    model, run_dir = args.model, args.run_dir
    results: dict[str, Any] = {}
    if model is None:
        run_dir = work / "run"
        model = _train(run_dir)
    if run_dir is not None and (run_dir / "run_summary.json").is_file():
        summary = json.loads((run_dir / "run_summary.json").read_text())
        results["pipeline"] = {"retrieval": summary["retrieval"], "gate": summary["gate"],
                               "step_seconds": summary["step_seconds"]}  # fmt: skip
    queries = _queries(model, run_dir, args.queries)
    results["sizes"] = {}
    for items in (int(size) for size in args.sizes.split(",")):
        frame, embeddings, embed_seconds = _catalogue_embeddings(model, items)
        exact = _exact(embeddings, queries)
        entry: dict[str, Any] = {"embed_seconds": embed_seconds,
                                 "embeddings_mb": embeddings.nbytes / 2**20}  # fmt: skip
        entry["libraries"] = _libraries(embeddings, queries, exact)
        served = _with_catalogue(model, frame, embeddings, work / f"model-{items}")
        entry["recommend"] = _latency(served, args.requests)
        print(items, entry["recommend"], flush=True)
        results["sizes"][str(items)] = entry
        shutil.rmtree(served)
    results["seconds"] = time.perf_counter() - started
    provenance.write("retrieval", results, _markdown(results), measured)
    shutil.rmtree(work, ignore_errors=True)


def _markdown(results: dict[str, Any]) -> str:
    lines = ["# Retrieval: recall, ANN libraries and recommend latency", ""]
    pipeline = results.get("pipeline")
    if pipeline:
        recall = pipeline["retrieval"]["recall"]
        lines += [
            "`skewless run` on the default data (400k rows, seed 0); recall@K on "
            f"{pipeline['retrieval']['queries']:,} held-out positive rows over "
            f"{pipeline['retrieval']['items']:,} catalogue items:", "",
            "| retriever | recall@10 | recall@100 | recall@500 |", "|---|---|---|---|",
            *(f"| {name} | {r['10']:.4f} | {r['100']:.4f} | {r['500']:.4f} |"
              for name, r in recall.items()),
            "", f"recall@100 lift over popularity: "
            f"{recall['model']['100'] / max(recall['popularity']['100'], 1e-9):.2f}x", "",
        ]  # fmt: skip
    for items, entry in results["sizes"].items():
        lines += [
            f"## {int(items):,} items", "",
            f"Embedding the catalogue through the exported candidate tower: "
            f"{entry['embed_seconds']:.1f} s; the float32 embeddings take "
            f"{entry['embeddings_mb']:.1f} MB.", "",
            "| library | recall@100 vs exact | queries/s (1 thread) | build s (1 thread) | "
            "bytes/item |", "|---|---|---|---|---|",
        ]  # fmt: skip
        for row in entry["libraries"]:
            if "error" in row:
                lines.append(f"| {row['library']} | failed: {row['error'][:120]} | | | |")
            else:
                lines.append(
                    f"| {row['library']} | {row['recall_at_100_vs_exact']:.3f} | "
                    f"{row['queries_per_second_1_thread']:,.0f} | "
                    f"{row['build_seconds_1_thread']:.1f} | {row['bytes_per_item']:.0f} |"
                )
        rec = entry["recommend"]
        lines += [
            "", "`recommend` (300 candidates, k=10; one `skewless serve`, USearch f32):", "",
            "| concurrency | p50 ms | p99 ms | requests/s |", "|---|---|---|---|",
            *(f"| {c[1:]} | {rec[c]['p50_ms']:.1f} | {rec[c]['p99_ms']:.1f} | "
              f"{rec[c]['requests_per_second']:.1f} |" for c in ("c1", "c8")),
            "", f"Server resident memory: {rec['server_rss_mb']:.0f} MB.", "",
        ]  # fmt: skip
    lines.append(f"Wall time {results['seconds'] / 60:.1f} min.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
