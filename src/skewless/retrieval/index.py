"""The approximate nearest-neighbour index over item embeddings, and exact search beside it.

The score is the inner product (each embedding is unit length plus the popularity prior's slot,
:mod:`skewless.retrieval.prior`). The library was chosen by measurement (``make
bench-retrieval``, bench/results/retrieval.md, docs/retrieval.md): an HNSW graph in USearch.
``dtype="i8"`` stores each dimension in one byte (about a quarter of the memory of ``f32`` for
the vectors) at a small cost in recall, measured in the same benchmark.

The index is saved as ``index.usearch`` with ``index.json`` beside it (library, version,
parameters), so the server loads exactly what the pipeline built and measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

INDEX_FILE = "index.usearch"
INDEX_META = "index.json"


@dataclasses.dataclass(frozen=True)
class IndexParams:
    """HNSW parameters. Trained item embeddings cluster tightly (items sharing tags and price
    land close together), which HNSW finds harder than random vectors: on the default model's
    50k items, M=16/ef=256 returned 77% of exact search's top 100, M=32/ef=1024 97%
    (docs/retrieval.md).

    Attributes:
        dtype: Stored vector type: ``f32``, ``f16`` or ``i8``.
        connectivity: Graph edges per node (HNSW's M).
        expansion_add: Candidate list size while building (efConstruction).
        expansion_search: Candidate list size while searching (ef); at least the k asked for.
    """

    dtype: str = "f32"
    connectivity: int = 32
    expansion_add: int = 256
    expansion_search: int = 1024


class ItemIndex:
    """An HNSW index whose keys are row numbers of the catalogue."""

    def __init__(self, index: Any, params: IndexParams, dim: int) -> None:
        self._index = index
        self.params = params
        self.dim = dim

    def __len__(self) -> int:
        return len(self._index)

    def search(
        self, queries: np.ndarray, k: int, *, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest rows per query: ``(rows [q, k] int64, scores [q, k] float32)``.

        Rows past the catalogue's size (k larger than the index) are -1 with score -inf.
        """
        queries = np.ascontiguousarray(queries, dtype=np.float32).reshape(-1, self.dim)
        k = max(1, min(k, len(self)))
        found = self._index.search(queries, k, threads=threads)
        keys = np.full((len(queries), k), -1, dtype=np.int64)
        scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        # One query answers a Matches (1-D, as many as found), several a BatchMatches (2-D, with
        # per-query counts). USearch answers inner-product distance as 1 - ip.
        found_keys = np.asarray(found.keys, dtype=np.int64).reshape(len(queries), -1)
        distances = np.asarray(found.distances, dtype=np.float32).reshape(len(queries), -1)
        counts = np.asarray(getattr(found, "counts", [found_keys.shape[1]])).reshape(-1)
        for row, count in enumerate(counts):
            keys[row, :count] = found_keys[row, :count]
            scores[row, :count] = 1.0 - distances[row, :count]
        return keys, scores

    def save(self, folder: str | Path) -> None:
        """Writes ``index.usearch`` and ``index.json`` into ``folder``."""
        folder = Path(folder)
        self._index.save(str(folder / INDEX_FILE))
        (folder / INDEX_META).write_text(json.dumps(self.describe(), indent=1))

    def describe(self) -> dict[str, Any]:
        """Library, version, parameters and size, as recorded beside the index."""
        import usearch

        return {
            "library": "usearch",
            "version": usearch.__version__,
            "metric": "ip",
            "dim": self.dim,
            "items": len(self),
            **dataclasses.asdict(self.params),
        }


def build(embeddings: np.ndarray, params: IndexParams | None = None) -> ItemIndex:
    """An index over ``embeddings`` ``[items, dim]``; the key of row ``i`` is ``i``."""
    from usearch.index import Index

    params = params or IndexParams()
    embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
    dim = int(embeddings.shape[1])
    index = Index(
        ndim=dim,
        metric="ip",
        dtype=params.dtype,
        connectivity=params.connectivity,
        expansion_add=params.expansion_add,
        expansion_search=params.expansion_search,
    )
    # One thread: the same graph on every machine, so a run's recall is reproducible.
    index.add(np.arange(len(embeddings), dtype=np.uint64), embeddings, threads=1)
    return ItemIndex(index, params, dim)


def load(folder: str | Path) -> ItemIndex:
    """The index :meth:`ItemIndex.save` wrote into ``folder``."""
    from usearch.index import Index

    folder = Path(folder)
    meta = json.loads((folder / INDEX_META).read_text())
    params = IndexParams(**{f.name: meta[f.name] for f in dataclasses.fields(IndexParams)})
    index = Index.restore(str(folder / INDEX_FILE))
    if index is None:
        raise ValueError(f"{folder / INDEX_FILE}: not a USearch index")
    # restore() comes back at USearch's default search width (64); set what was measured.
    index.expansion_search = params.expansion_search  # type: ignore[misc]  # settable; stubs say not
    return ItemIndex(index, params, int(meta["dim"]))


def exact_search(
    embeddings: np.ndarray, queries: np.ndarray, k: int, *, block: int = 1024, threads: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Brute-force top ``k`` by inner product: the reference the index is measured against.

    ``threads`` blocks of queries run at once (0: one per core); NumPy releases the GIL in the
    product and the partition, which take the time. The partition picks the largest ``k`` of the
    similarities themselves, not the smallest of a negated copy (half the CPU at 49,508 items). A
    NaN similarity (an embedding gone NaN) ranks last; which of equal similarities at the ``k``-th
    place is kept is not specified.
    """
    n = len(embeddings)
    k = max(1, min(k, n))

    def top_k(start: int) -> tuple[np.ndarray, np.ndarray]:
        sims = queries[start : start + block] @ embeddings.T
        np.nan_to_num(sims, copy=False, nan=-np.inf)  # argpartition ranks NaN above everything
        top = np.argpartition(sims, n - k, axis=1)[:, n - k :]
        top_scores = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_scores, axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1), np.take_along_axis(top_scores, order, axis=1)

    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        blocks = list(pool.map(top_k, range(0, len(queries), block)))
    rows = np.concatenate([found for found, _ in blocks]).astype(np.int64)
    return rows, np.concatenate([scores for _, scores in blocks]).astype(np.float32)
