"""Validated ingestion: every raw row is checked against the spec, then kept or quarantined.

Reads CSV or Parquet in bounded chunks with pyarrow, from a local path or the pipeline's object
store (see :mod:`skewless.data.storage`), so memory does not grow with the file. Clean rows are
typed, split into train and eval by hashing the key column (reruns give the same split) and written
as Parquet; failing rows go to ``quarantine.parquet`` with their raw values and a ``reason`` naming
each failed field and why (:mod:`skewless.data.quarantine`). Nothing is dropped: ``rows_in ==
rows_clean + rows_quarantined`` is checked before the summary is written.

Output folder::

    train.parquet  eval.parquet  quarantine.parquet
    stats.json            per-split statistics (see skewless.data.stats)
    stats_state.json.gz   their accumulators' full state, so shards merge (skewless.data.shards)
    ingest_summary.json   counts, reasons, timings, drift (when a baseline is given)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from skewless.contract.kinds import kind_of
from skewless.contract.spec import FeatureSpec
from skewless.contract.validate import Violations, check_table
from skewless.data import stats as stats_lib
from skewless.data import storage
from skewless.data.folder import SPLITS, IngestedFolder, IngestResult
from skewless.data.quarantine import malformed_frame, quarantine_frame, quarantine_schema
from skewless.data.raw import IngestError, _Malformed, count_rows, read_chunks
from skewless.data.shards import write_state
from skewless.progress import Progress

DEFAULT_CHUNK_ROWS = 100_000


__all__ = [
    "SPLITS",
    "IngestError",
    "IngestResult",
    "IngestedFolder",
    "QuarantineLimitError",
    "clean_schema",
    "ingest",
    "quarantine_schema",
    "split_of",
    "validate_chunk",
]


class QuarantineLimitError(IngestError):
    """More than the allowed share of rows was quarantined; outputs are still written."""


def clean_schema(spec: FeatureSpec) -> pa.Schema:
    """Arrow schema of clean rows: what the transform and the model consume."""
    return pa.schema(
        pa.field(feature.name, kind_of(feature).clean_type(feature), nullable=False)
        for feature in spec.features.values()
    )


def validate_chunk(
    table: pa.Table, spec: FeatureSpec
) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray, Violations]:
    """Checks one raw chunk against the spec with the contract's validator.

    Returns:
        ``(typed, imputed, bad, violations)``: the typed frame (valid only where ``bad`` is
        false), the per-column masks of optional values filled with their default, the per-row
        failure mask, and the per-row messages and per-reason counts.
    """
    columns, imputed, violations = check_table(table, spec)
    return pd.DataFrame(columns), imputed, violations.bad_mask(), violations


def split_of(frame: pd.DataFrame, spec: FeatureSpec) -> np.ndarray:
    """True for rows that belong to eval: a stable hash of the key (or of the whole row) mod 100.

    pandas' ``hash_array`` is SipHash with a fixed key, so the split depends only on the values.
    """
    key = spec.key
    if key is not None:
        hashes = pd.util.hash_array(frame[key.name].to_numpy(dtype=object), categorize=False)
    else:
        hashes = pd.util.hash_pandas_object(frame[spec.column_names], index=False).to_numpy()
    return (hashes % np.uint64(100)) < np.uint64(spec.eval_percent)


class _Writers:
    """Lazily opened Parquet writers for the clean splits and the quarantine."""

    def __init__(self, out_dir: Path, spec: FeatureSpec) -> None:
        self.out_dir = out_dir
        self.schemas = {"train": clean_schema(spec), "eval": clean_schema(spec)}
        self.schemas["quarantine"] = quarantine_schema(spec)
        self.writers: dict[str, pq.ParquetWriter] = {}

    def write(self, name: str, frame: pd.DataFrame) -> None:
        schema = self.schemas[name]
        table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
        if name not in self.writers:
            path = IngestedFolder(self.out_dir).split(name)
            self.writers[name] = pq.ParquetWriter(path, schema, compression="zstd")
        self.writers[name].write_table(table, row_group_size=DEFAULT_CHUNK_ROWS)

    def close(self) -> None:
        # Every output exists after a run, even an empty one, so readers need no special case.
        for name, schema in self.schemas.items():
            if name not in self.writers:
                self.writers[name] = pq.ParquetWriter(
                    IngestedFolder(self.out_dir).split(name), schema
                )
            self.writers[name].close()


def ingest(
    data: str | Path,
    spec: FeatureSpec,
    out_dir: str | Path,
    *,
    max_quarantine_fraction: float = 0.05,
    baseline_stats: str | Path | None = None,
    linf_threshold: float = 0.1,
    mean_shift_threshold: float = 0.25,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    show_progress: bool = False,
) -> IngestResult:
    """Validates ``data`` against ``spec`` and writes the clean splits, quarantine and statistics.

    Args:
        data: CSV or Parquet file.
        spec: The feature spec.
        out_dir: Output folder (created).
        max_quarantine_fraction: Fail (after writing every output) above this quarantined share.
        baseline_stats: A previous run's ``stats.json`` (or its folder); drift is reported against
            its train split.
        linf_threshold: Drift threshold for categorical features (L-infinity distance).
        mean_shift_threshold: Drift threshold for numeric features (standardized mean shift).
        chunk_rows: Rows per Parquet read batch (CSV reads in 16 MiB blocks).
        show_progress: Print a progress bar to stderr.

    Returns:
        The output folder and the summary written to ``ingest_summary.json``.

    Raises:
        IngestError: Unreadable input or columns missing from the data.
        QuarantineLimitError: Too many rows quarantined (outputs are written first).
    """
    started = time.perf_counter()
    source, out = str(data), Path(out_dir)
    try:
        found = storage.is_file(source)
    except storage.StorageError as err:
        raise IngestError(str(err)) from err
    if not found:
        raise IngestError(f"data file not found: {source}")
    if not 0.0 <= max_quarantine_fraction <= 1.0:
        raise IngestError(
            f"max_quarantine_fraction must be between 0 and 1, got {max_quarantine_fraction}"
        )
    baseline = _load_baseline(baseline_stats) if baseline_stats is not None else None
    out.mkdir(parents=True, exist_ok=True)

    writers = _Writers(out, spec)
    split_stats = {split: stats_lib.SplitStats(spec, split) for split in SPLITS}
    reason_counts: Counter[str] = Counter()
    malformed: list[_Malformed] = []
    rows_parsed = rows_quarantined = malformed_written = 0
    rows_clean = dict.fromkeys(SPLITS, 0)
    extra_columns: set[str] = set()
    try:
        total = count_rows(source) or 0
    except (pa.ArrowException, OSError) as err:
        raise IngestError(f"{source}: cannot be read as Parquet: {_first_line(err)}") from None
    progress = Progress("validate", total=total, enabled=show_progress)
    try:
        for table in read_chunks(source, chunk_rows, malformed, spec.column_names, extra_columns):
            missing_columns = [c for c in spec.column_names if c not in table.column_names]
            if missing_columns:
                raise IngestError(
                    f"{source}: column(s) {missing_columns} declared in the spec are not in the "
                    f"data; the data has {table.column_names}"
                )
            extra_columns.update(set(table.column_names) - set(spec.column_names))
            frame, imputed, bad, check = validate_chunk(table, spec)
            reason_counts.update(check.reason_counts)
            if bad.any():
                writers.write("quarantine", quarantine_frame(table, spec, bad, check, rows_parsed))
                rows_quarantined += int(bad.sum())
            good = ~bad
            clean = frame[good].reset_index(drop=True)
            clean_imputed = {name: mask[good] for name, mask in imputed.items()}
            is_eval = split_of(clean, spec)
            for split, mask in (("train", ~is_eval), ("eval", is_eval)):
                part = clean[mask]
                writers.write(split, part)
                split_stats[split].update(
                    part, {name: m[mask] for name, m in clean_imputed.items()}
                )
                rows_clean[split] += len(part)
            rows_parsed += table.num_rows
            if len(malformed) > malformed_written:
                writers.write("quarantine", malformed_frame(spec, malformed[malformed_written:]))
                malformed_written = len(malformed)
            progress.advance(table.num_rows)
        if len(malformed) > malformed_written:
            writers.write("quarantine", malformed_frame(spec, malformed[malformed_written:]))
    except (pa.ArrowException, storage.StorageError, OSError) as err:
        raise IngestError(f"{source}: cannot be read: {_first_line(err)}") from None
    finally:
        writers.close()
        progress.close()

    for item in malformed:
        reason_counts[item.reason.split(": expected")[0]] += 1
    rows_quarantined += len(malformed)
    rows_in = rows_parsed + len(malformed)
    total_clean = sum(rows_clean.values())
    if rows_in != total_clean + rows_quarantined:
        raise IngestError(
            f"internal accounting error: {rows_in} rows in, {total_clean} clean, "
            f"{rows_quarantined} quarantined"
        )

    stats_doc = {split: split_stats[split].to_dict() for split in SPLITS}
    files = IngestedFolder(out)
    files.stats.write_text(json.dumps(stats_doc, indent=1))
    write_state(files.stats_state, spec, split_stats)
    elapsed = time.perf_counter() - started
    summary: dict[str, Any] = {
        "data": source,
        "spec_sha256": spec.source_sha256,
        "rows_in": rows_in,
        "rows_clean": total_clean,
        "rows_quarantined": rows_quarantined,
        "rows_train": rows_clean["train"],
        "rows_eval": rows_clean["eval"],
        "quarantined_fraction": rows_quarantined / rows_in if rows_in else 0.0,
        "max_quarantine_fraction": max_quarantine_fraction,
        "reason_counts": dict(reason_counts.most_common()),
        "ignored_columns": sorted(extra_columns),
        "eval_percent": spec.eval_percent,
        "seconds": round(elapsed, 3),
        "rows_per_second": round(rows_in / elapsed) if elapsed > 0 else None,
    }
    if baseline is not None:
        report = stats_lib.drift(
            stats_doc["train"],
            baseline["train"],
            linf_threshold=linf_threshold,
            mean_shift_threshold=mean_shift_threshold,
        )
        report["baseline"] = str(baseline_stats)
        files.drift.write_text(json.dumps(report, indent=1))
        summary["drifted_features"] = report["drifted"]
    files.summary.write_text(json.dumps(summary, indent=1))

    if rows_in == 0:
        raise IngestError(f"{source}: no rows to ingest")
    if summary["quarantined_fraction"] > max_quarantine_fraction:
        top = ", ".join(f"{r} x{n}" for r, n in list(reason_counts.most_common(3)))
        raise QuarantineLimitError(
            f"quarantined {summary['quarantined_fraction']:.1%} of rows ({rows_quarantined:,} of "
            f"{rows_in:,}), above the limit {max_quarantine_fraction:.1%}; top reasons: {top}; "
            f"rows are in {files.quarantine}"
        )
    if total_clean == 0 or rows_clean["train"] == 0:
        raise IngestError(f"{source}: no clean training rows after validation")
    return IngestResult(out_dir=out, summary=summary)


def _first_line(err: BaseException) -> str:
    """An error's message cut to its first line and 200 characters (Arrow's can be long)."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _load_baseline(path: str | Path) -> dict[str, Any]:
    baseline_path = Path(path)
    if baseline_path.is_dir():
        baseline_path = IngestedFolder(baseline_path).stats
    try:
        document = json.loads(baseline_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise IngestError(f"cannot read baseline statistics {baseline_path}: {err}") from err
    if not isinstance(document, dict) or "train" not in document:
        raise IngestError(f"{baseline_path} is not a stats.json written by skewless validate")
    return document
