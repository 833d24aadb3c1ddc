"""Ingestion past one machine: the statistics of shards ingested apart, merged into the whole's.

Each ingestion writes, beside the readable ``stats.json``, ``stats_state.json.gz``: the full state
of every accumulator of :mod:`skewless.data.stats` (moments with their sum of squared deviations,
the HyperLogLog registers, the value counters with their error). :func:`merge_stats` reads the
states of shard folders, merges them and writes ``stats.json`` and the merged state into one
folder, with the shards' ingestion counts added up in ``ingest_summary.json``; that folder is then a
shard like any other (merges nest) and a ``--baseline-stats`` for drift.

Merging ``A`` and ``B`` gives what ingesting ``A + B`` in one go gives: counts, missing counts,
min, max and distinct-count estimates exactly, mean and std up to float rounding (Chan et al.'s
parallel update), and value counts exactly while no counter passed its cap, otherwise within each
feature's stated ``count_error``.
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import zlib
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from skewless.contract.spec import FeatureSpec
from skewless.data.folder import SPLITS, IngestedFolder
from skewless.data.raw import IngestError
from skewless.data.stats import FeatureStats, HyperLogLog, Moments, SplitStats, ValueCounter

STATE_FORMAT = 1


class ShardMergeError(IngestError):
    """Shards that cannot be merged: a folder without state, or ingested under another spec."""


def _moments_state(moments: Moments | None) -> dict[str, Any] | None:
    if moments is None:
        return None
    finite = moments.count > 0  # an empty stream's min and max are infinite: JSON has no inf
    return {
        "count": moments.count,
        "mean": moments.mean,
        "m2": moments.m2,
        "min": moments.min if finite else None,
        "max": moments.max if finite else None,
    }


def _load_moments(moments: Moments | None, state: dict[str, Any] | None) -> None:
    if moments is None or state is None:
        return
    moments.count, moments.mean, moments.m2 = state["count"], state["mean"], state["m2"]
    moments.min = math.inf if state["min"] is None else state["min"]
    moments.max = -math.inf if state["max"] is None else state["max"]


def _feature_state(stats: FeatureStats) -> dict[str, Any]:
    state: dict[str, Any] = {
        "count": stats.count,
        "imputed": stats.imputed,
        "moments": _moments_state(stats.moments),
        "lengths": _moments_state(stats.lengths),
    }
    if stats.distinct is not None:
        packed = zlib.compress(stats.distinct.registers.tobytes())
        state["hll"] = {"precision": stats.distinct.precision,
                        "registers": base64.b64encode(packed).decode()}  # fmt: skip
    if stats.values is not None:
        counter = stats.values
        state["values"] = {
            "counts": dict(counter.counts),
            "total": counter.total,
            "error": counter.error,
            "cap": counter.cap,
            "keep": counter.keep,
        }
    return state


def _load_feature(stats: FeatureStats, state: dict[str, Any]) -> None:
    stats.count, stats.imputed = state["count"], state["imputed"]
    _load_moments(stats.moments, state["moments"])
    _load_moments(stats.lengths, state["lengths"])
    if stats.distinct is not None:
        hll = state["hll"]
        stats.distinct = HyperLogLog(hll["precision"])
        raw = zlib.decompress(base64.b64decode(hll["registers"]))
        stats.distinct.registers = np.frombuffer(raw, dtype=np.uint8).copy()
    if stats.values is not None:
        values = state["values"]
        stats.values = ValueCounter(values["cap"], values["keep"])
        stats.values.counts = Counter(values["counts"])
        stats.values.total, stats.values.error = values["total"], values["error"]


def write_state(path: Path, spec: FeatureSpec, splits: dict[str, SplitStats]) -> None:
    """Writes the full state of each split's statistics (gzipped JSON) to ``path``."""
    document = {
        "format": STATE_FORMAT,
        "spec_sha256": spec.source_sha256,
        "splits": {
            name: {"rows": stats.rows,
                   "features": {f: _feature_state(s) for f, s in stats.features.items()}}
            for name, stats in splits.items()
        },
    }  # fmt: skip
    with gzip.open(path, "wt") as out:
        json.dump(document, out)


def read_state(folder: str | Path, spec: FeatureSpec) -> dict[str, SplitStats]:
    """The statistics an ingestion folder's state holds, per split.

    Raises:
        ShardMergeError: No state in the folder, or one written under another spec.
    """
    path = IngestedFolder(folder).stats_state
    try:
        with gzip.open(path, "rt") as source:
            document = json.load(source)
    except FileNotFoundError:
        raise ShardMergeError(
            f"{folder}: no {path.name}; give folders written by `skewless validate`"
        ) from None
    except (OSError, EOFError, json.JSONDecodeError) as err:
        raise ShardMergeError(f"{path}: cannot be read: {err}") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        found = document.get("format") if isinstance(document, dict) else type(document).__name__
        raise ShardMergeError(f"{path}: format {found}, expected {STATE_FORMAT}")
    if document["spec_sha256"] != spec.source_sha256:
        raise ShardMergeError(
            f"{folder} was ingested under another spec (sha256 {document['spec_sha256'][:12]}, "
            f"this one is {spec.source_sha256[:12]}): shards merge only under one spec"
        )
    splits = {}
    try:
        for name in SPLITS:
            stats = SplitStats(spec, name)
            stats.rows = document["splits"][name]["rows"]
            for feature, state in document["splits"][name]["features"].items():
                _load_feature(stats.features[feature], state)
            splits[name] = stats
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ShardMergeError(f"{path}: damaged state: {err!r}") from None
    return splits


COUNTS = ("rows_in", "rows_clean", "rows_quarantined", "rows_train", "rows_eval")


def _summed_counts(folders: Sequence[str | Path]) -> dict[str, Any]:
    """The shards' ingestion counts and quarantine reasons, added up."""
    totals: dict[str, Any] = dict.fromkeys(COUNTS, 0)
    reasons: Counter[str] = Counter()
    for folder in folders:
        path = IngestedFolder(folder).summary
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ShardMergeError(f"{path}: cannot be read: {err}") from None
        try:
            for key in COUNTS:
                totals[key] += summary[key]
            reasons.update(summary["reason_counts"])
        except (KeyError, TypeError, ValueError) as err:
            raise ShardMergeError(f"{path}: not an ingestion summary: {err!r}") from None
    totals["quarantined_fraction"] = (
        totals["rows_quarantined"] / totals["rows_in"] if totals["rows_in"] else 0.0
    )
    totals["reason_counts"] = dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))
    return totals


def merge_stats(
    folders: Sequence[str | Path], spec: FeatureSpec, out_dir: str | Path
) -> dict[str, Any]:
    """Merges the statistics of ingestion folders (one per shard) into ``out_dir``.

    Args:
        folders: Output folders of ``skewless validate`` (or of this function), one per shard,
            all under ``spec``.
        spec: The feature spec the shards were ingested under.
        out_dir: Receives ``stats.json`` and ``stats_state.json.gz`` of the union, and an
            ``ingest_summary.json`` with the shards' counts and quarantine reasons added up.

    Returns:
        That summary: ``shards``, ``rows_in``, ``rows_clean``, ``rows_quarantined``,
        ``rows_train``, ``rows_eval``, ``quarantined_fraction``, ``reason_counts``, ``stats``.

    Raises:
        ShardMergeError: No folder given, a folder without state or summary, or another spec's
            shard.
    """
    if not folders:
        raise ShardMergeError("no shard folders to merge")
    resolved = [Path(folder).resolve() for folder in folders]
    twice = sorted(
        {str(f) for f, path in zip(folders, resolved, strict=True) if resolved.count(path) > 1}
    )
    if twice:
        raise ShardMergeError(f"a shard given twice would count twice: {', '.join(twice)}")
    if Path(out_dir).resolve() in resolved:
        raise ShardMergeError(f"--out {out_dir} is one of the shards: give a new folder")
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise ShardMergeError(f"--out {out_dir} is a file, not a folder")
    merged = {name: SplitStats(spec, name) for name in SPLITS}
    for folder in folders:
        for name, stats in read_state(folder, spec).items():
            merged[name].merge(stats)
    out = IngestedFolder(out_dir)
    summary = {"shards": [str(folder) for folder in folders], **_summed_counts(folders)}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    out.stats.write_text(json.dumps({name: s.to_dict() for name, s in merged.items()}, indent=1))
    write_state(out.stats_state, spec, merged)
    out.summary.write_text(json.dumps(summary, indent=1))
    return {**summary, "stats": str(out.stats)}
