"""Recall@K of the retrieval stage on held-out positive interactions.

For each positive row of the eval split (a user clicked an item in a context), the query is the
row's user and context features and the hit is whether the clicked item is among the K items
retrieved. Three retrievers answer the same queries over the same catalogue:

* ``model``: the served path (query tower + ANN index; :class:`Retriever`);
* ``exact``: brute-force search over the same embeddings, so the index's loss is visible;
* ``popularity``: the K items with the most positive training rows, the same for everyone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.contract.spec import FeatureSpec
from skewless.data.raw import read_column_batches
from skewless.retrieval.index import exact_search
from skewless.retrieval.retriever import Retriever

RECALL_KS = (10, 100, 500)
MAX_QUERIES = 5_000
BATCH_ROWS = 65_536


def _recall(rows: np.ndarray, targets: np.ndarray, ks: tuple[int, ...]) -> dict[str, float]:
    hits = rows == targets[:, None]
    return {str(k): float(hits[:, :k].any(axis=1).mean()) if len(targets) else 0.0 for k in ks}


def _first_positives(path: str | Path, columns: list[str], label: str, limit: int) -> pd.DataFrame:
    """The first ``limit`` positive rows of a split, read in batches (the split may be large)."""
    parts: list[pd.DataFrame] = []
    found = 0
    for batch in read_column_batches(path, columns, BATCH_ROWS):
        if found >= limit:
            break
        part = pd.DataFrame(batch)
        part = part[part[label] > 0.5].head(limit - found)
        parts.append(part)
        found += len(part)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)


def _positive_counts(path: str | Path, key: str, label: str) -> pd.Series:
    """Positive rows per item of a split, read in batches: memory holds one count per item."""
    counts = pd.Series(dtype=np.int64)
    for batch in read_column_batches(path, [key, label], BATCH_ROWS):
        found = pd.Series(batch[key][batch[label] > 0.5]).value_counts()
        counts = counts.add(found, fill_value=0).astype(np.int64)
    return counts


def recall_metrics(
    model_dir: str | Path,
    train_data: str | Path,
    eval_data: str | Path,
    spec: FeatureSpec,
    *,
    ks: tuple[int, ...] = RECALL_KS,
    max_queries: int = MAX_QUERIES,
) -> dict[str, Any]:
    """Recall@K of the model, of exact search and of popularity on eval positives.

    Args:
        model_dir: An exported model with a retrieval artifact.
        train_data: Clean training rows (the popularity baseline counts their positives).
        eval_data: Clean eval rows; their positives are the queries (the first ``max_queries``).
        spec: The feature spec.
        ks: Cut-offs.
        max_queries: Bound on the queries, so evaluation time does not grow with the data.
    """
    retriever = Retriever(model_dir)
    label, key = spec.label.name, retriever.item_key
    columns = list(dict.fromkeys([*retriever.query_features, key, label]))
    frame = _first_positives(eval_data, columns, label, max_queries)
    targets = frame[key].map(retriever.row_of_item).fillna(-2).to_numpy(dtype=np.int64)
    depth = min(max(ks), len(retriever.catalogue))
    model_rows = exact_rows = np.zeros((0, depth), dtype=np.int64)
    if len(frame):
        # One embedding of the queries, searched two ways: the index as served, and exactly.
        vectors = retriever.embed(
            {name: frame[name].to_numpy() for name in retriever.query_features}
        )
        # Every core: these are thousands of queries at once, not one request's.
        model_rows = retriever.index.search(vectors, depth, threads=0)[0]
        exact_rows = exact_search(retriever.embeddings, vectors, depth, threads=0)[0]

    counts = _positive_counts(train_data, key, label)
    popular = counts.sort_index(kind="stable").sort_values(ascending=False, kind="stable")
    popular_rows = np.array(
        [
            retriever.row_of_item[item]
            for item in popular.index[:depth]
            if item in retriever.row_of_item
        ],
        dtype=np.int64,
    )
    popular_rows = np.pad(popular_rows, (0, depth - len(popular_rows)), constant_values=-1)
    popularity = np.broadcast_to(popular_rows, (len(targets), depth))

    overlap = (
        float(
            np.mean(
                [
                    len(set(a[:100]) & set(b[:100])) / min(100, depth)
                    for a, b in zip(model_rows, exact_rows, strict=True)
                ]
            )
        )
        if len(targets)
        else 0.0
    )
    return {
        "queries": len(targets),
        "items": len(retriever.catalogue),
        "recall": {
            "model": _recall(model_rows, targets, ks),
            "exact": _recall(exact_rows, targets, ks),
            "popularity": _recall(popularity, targets, ks),
        },
        "index_overlap_with_exact_at_100": overlap,
        "index": retriever.index.describe(),
    }
