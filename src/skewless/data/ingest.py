"""Validated ingestion: every raw row is checked against the spec, then kept or quarantined.

Reads CSV or Parquet in bounded chunks with pyarrow, from a local path or the pipeline's object
store (see :mod:`skewless.data.storage`), so memory does not grow with the file. Clean rows are
typed, split into train and eval by hashing the key column (reruns give the same split) and written
as
Parquet; failing rows go to ``quarantine.parquet`` with their raw values and a ``reason`` naming
each failed field and why. Nothing is dropped: ``rows_in == rows_clean + rows_quarantined`` is
checked before the summary is written.

Output folder::

    train.parquet  eval.parquet  quarantine.parquet
    stats.json            per-split statistics (see skewless.data.stats)
    ingest_summary.json   counts, reasons, timings, drift (when a baseline is given)
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skewless.contract.spec import Feature, FeatureSpec
from skewless.data import stats as stats_lib
from skewless.data import storage
from skewless.progress import Progress

DEFAULT_CHUNK_ROWS = 100_000
SPLITS = ("train", "eval")
_TRUE_STRINGS = {"1", "1.0", "true"}
_FALSE_STRINGS = {"0", "0.0", "false"}
_NAN_STRINGS = {"nan", "+nan", "-nan"}


class IngestError(RuntimeError):
    """Ingestion cannot proceed (unreadable input, missing columns, too much quarantined)."""


class QuarantineLimitError(IngestError):
    """More than the allowed share of rows was quarantined; outputs are still written."""


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Where ingestion wrote its outputs, and its summary."""

    out_dir: Path
    summary: dict[str, Any]

    @property
    def train_path(self) -> Path:
        """Clean training rows."""
        return self.out_dir / "train.parquet"

    @property
    def eval_path(self) -> Path:
        """Clean evaluation rows."""
        return self.out_dir / "eval.parquet"


@dataclasses.dataclass
class _Chunk:
    table: pa.Table
    first_row_index: int


@dataclasses.dataclass
class _Malformed:
    line_number: int | None
    text: str
    reason: str


def clean_schema(spec: FeatureSpec) -> pa.Schema:
    """Arrow schema of clean rows: what the transform and the model consume."""
    fields = []
    for feature in spec.features.values():
        if feature.kind == "label":
            dtype = pa.int64()
        elif feature.kind == "numeric":
            dtype = pa.float32()
        elif feature.is_numeric_raw:
            dtype = pa.float64()
        else:
            dtype = pa.string()
        fields.append(pa.field(feature.name, dtype, nullable=False))
    return pa.schema(fields)


def quarantine_schema(spec: FeatureSpec) -> pa.Schema:
    """Arrow schema of quarantined rows: raw values as text, so nothing is lost in conversion."""
    raw = [pa.field(name, pa.string()) for name in spec.column_names]
    return pa.schema(
        [
            *raw,
            pa.field("reason", pa.string(), nullable=False),
            pa.field("row_index", pa.int64()),
            pa.field("line_number", pa.int64()),
            pa.field("raw_line", pa.string()),
        ]
    )


def _suffix(source: str) -> str:
    return PurePosixPath(source).suffix.lower()


def _csv_header(source: str) -> list[str]:
    with io.TextIOWrapper(storage.open_input_file(source), encoding="utf-8", newline="") as handle:
        header = next(csv.reader(handle), None)
    if not header:
        raise IngestError(f"{source}: CSV file is empty (no header line)")
    return header


def _read_chunks(source: str, chunk_rows: int, malformed: list[_Malformed]) -> Iterator[pa.Table]:
    """Yields raw tables of about ``chunk_rows`` rows; malformed CSV lines go to ``malformed``.

    ``source`` is a local path or an object-store URI (see :mod:`skewless.data.storage`); either way
    the file is streamed, never copied whole.
    """
    if _suffix(source) == ".csv":
        header = _csv_header(source)

        def on_invalid(row: Any) -> str:
            malformed.append(
                _Malformed(
                    line_number=row.number,
                    text=row.text,
                    reason=(
                        f"<row>: malformed CSV line: expected {row.expected_columns} columns, "
                        f"got {row.actual_columns}"
                    ),
                )
            )
            return "skip"

        reader = pacsv.open_csv(
            storage.open_input_file(source),
            read_options=pacsv.ReadOptions(use_threads=False, block_size=16 << 20),
            parse_options=pacsv.ParseOptions(invalid_row_handler=on_invalid),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])
    elif _suffix(source) in (".parquet", ".pq"):
        parquet = pq.ParquetFile(storage.open_input_file(source))
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield pa.Table.from_batches([batch])
    else:
        raise IngestError(
            f"{source}: unsupported file type {_suffix(source)!r}; use .csv or .parquet"
        )


def read_column_batches(
    path: str | Path, columns: list[str], batch_rows: int
) -> Iterator[dict[str, np.ndarray]]:
    """Reads ``columns`` of a clean split as NumPy arrays, ``batch_rows`` rows at a time."""
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows, columns=columns):
        yield {name: batch.column(name).to_numpy(zero_copy_only=False) for name in columns}


def count_rows(source: str | Path) -> int | None:
    """Row count when cheap to know (Parquet metadata), for progress reporting."""
    if _suffix(str(source)) in (".parquet", ".pq"):
        return int(pq.ParquetFile(storage.open_input_file(source)).metadata.num_rows)
    return None


class _Checker:
    """Validates one chunk; collects per-row failure messages and per-reason counts."""

    def __init__(self, rows: int) -> None:
        self.rows = rows
        self.failures: dict[int, list[str]] = {}
        self.reason_counts: Counter[str] = Counter()

    def fail(self, mask: np.ndarray, field: str, problem: str, detail: Any = None) -> None:
        """Marks rows in ``mask`` failed; ``detail`` (per-row values) is quoted in the message."""
        indices = np.flatnonzero(mask)
        if indices.size == 0:
            return
        self.reason_counts[f"{field}: {problem}"] += int(indices.size)
        for i in indices:
            suffix = f" ({_show(detail[i])})" if detail is not None else ""
            self.failures.setdefault(int(i), []).append(f"{field}: {problem}{suffix}")

    def bad_mask(self) -> np.ndarray:
        mask = np.zeros(self.rows, dtype=bool)
        if self.failures:
            mask[list(self.failures)] = True
        return mask


def _show(value: Any) -> str:
    """A value as a reason quotes it: numbers plainly, text in quotes and cut at 80 characters."""
    if isinstance(value, float | np.floating):
        return f"{float(value):g}"
    if isinstance(value, int | np.integer):
        return str(int(value))
    text = str(value)
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _as_strings(column: pa.ChunkedArray) -> pd.Series:
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    return pd.Series(column.to_pandas(), dtype=object)


def _missing(raw: pd.Series) -> np.ndarray:
    return (raw.isna() | (raw.astype(str).str.strip() == "")).to_numpy()


def _parse_numbers(
    column: pa.ChunkedArray, check: _Checker, feature: Feature
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (values, missing); values that are not finite numbers are marked failed."""
    name = feature.name
    if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
        missing = column.is_null().to_numpy(zero_copy_only=False)
        values = column.cast(pa.float64()).fill_null(0.0).to_numpy()
        raw = pd.Series(values)
        not_number = np.zeros(len(values), dtype=bool)
    elif pa.types.is_boolean(column.type):
        raise IngestError(f"column {name!r} is boolean, but the spec declares it {feature.kind}")
    else:
        raw = _as_strings(column)
        missing = _missing(raw)
        text = raw.where(~missing, "0").astype(str).str.strip()
        if feature.kind == "label":
            lowered = text.str.lower()
            text = lowered.where(~lowered.isin(_TRUE_STRINGS), "1")
            text = text.where(~text.isin(_FALSE_STRINGS), "0")
        values = pd.to_numeric(text, errors="coerce").to_numpy(dtype=np.float64)
        nan_literal = text.str.lower().isin(_NAN_STRINGS).to_numpy()
        not_number = np.isnan(values) & ~nan_literal & ~missing
        check.fail(not_number, name, "not a number", raw.to_numpy())
    nonfinite = ~np.isfinite(values) & ~not_number & ~missing
    check.fail(nonfinite, name, "not a finite number", raw.to_numpy())
    present = ~missing & ~not_number & ~nonfinite
    if feature.kind == "label":
        check.fail(present & ~np.isin(values, (0.0, 1.0)), name, "label must be 0 or 1", values)
    if feature.min_value is not None:
        below = present & (values < feature.min_value)
        check.fail(below, name, f"below minimum {feature.min_value:g}", values)
    if feature.max_value is not None:
        above = present & (values > feature.max_value)
        check.fail(above, name, f"above maximum {feature.max_value:g}", values)
    return values, missing


def _check_strings(
    column: pa.ChunkedArray, check: _Checker, feature: Feature
) -> tuple[pd.Series, np.ndarray]:
    """Returns (values, missing) after the domain and length checks."""
    raw = _as_strings(column)
    missing = _missing(raw)
    values = raw.where(~missing, "")
    if feature.max_length is not None:
        lengths = values.str.len().to_numpy()
        too_long = lengths > feature.max_length
        check.fail(too_long, feature.name, f"longer than max_length {feature.max_length}", lengths)
    if feature.allowed_values is not None:
        allowed = set(feature.allowed_values)
        if feature.kind == "tags":
            tokens = stats_lib.tokenize(values, feature)
            unknown_rows = tokens[~tokens.isin(allowed)]
            bad = np.zeros(len(values), dtype=bool)
            bad[unknown_rows.index.unique().to_numpy()] = True
            first_unknown = unknown_rows.groupby(level=0).first().reindex(values.index)
            check.fail(bad, feature.name, "tag not in allowed_values", first_unknown.to_numpy())
        else:
            unknown = ~missing & ~values.isin(allowed).to_numpy()
            check.fail(unknown, feature.name, "not in allowed_values", values.to_numpy())
    return values, missing


def validate_chunk(
    table: pa.Table, spec: FeatureSpec
) -> tuple[pd.DataFrame, dict[str, np.ndarray], np.ndarray, _Checker]:
    """Checks one raw chunk against the spec.

    Returns:
        ``(typed, imputed, bad, checker)``: the typed frame (valid only where ``bad`` is false),
        the per-column masks of optional values filled with their default, the per-row failure
        mask, and the checker holding per-row messages and per-reason counts.
    """
    check = _Checker(table.num_rows)
    typed: dict[str, Any] = {}
    imputed: dict[str, np.ndarray] = {}
    for feature in spec.features.values():
        column = table.column(feature.name)
        values: Any
        if feature.is_numeric_raw:
            values, missing = _parse_numbers(column, check, feature)
        else:
            values, missing = _check_strings(column, check, feature)
        if feature.required:
            check.fail(missing, feature.name, "missing required value")
        elif missing.any():
            imputed[feature.name] = missing
            values = np.where(missing, feature.default, values)
        typed[feature.name] = values
    frame = pd.DataFrame(typed)
    return frame, imputed, check.bad_mask(), check


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
            path = self.out_dir / f"{name}.parquet"
            self.writers[name] = pq.ParquetWriter(path, schema, compression="zstd")
        self.writers[name].write_table(table, row_group_size=DEFAULT_CHUNK_ROWS)

    def close(self) -> None:
        # Every output exists after a run, even an empty one, so readers need no special case.
        for name, schema in self.schemas.items():
            if name not in self.writers:
                self.writers[name] = pq.ParquetWriter(self.out_dir / f"{name}.parquet", schema)
            self.writers[name].close()


def _quarantine_frame(
    table: pa.Table, spec: FeatureSpec, bad: np.ndarray, check: _Checker, first_row_index: int
) -> pd.DataFrame:
    indices = np.flatnonzero(bad)
    raw = {name: _as_strings(table.column(name)).to_numpy()[indices] for name in spec.column_names}
    return pd.DataFrame(
        {
            **raw,
            "reason": ["; ".join(check.failures[int(i)]) for i in indices],
            "row_index": indices + first_row_index,
            "line_number": pd.array([None] * len(indices), dtype="Int64"),
            "raw_line": [None] * len(indices),
        }
    )


def _malformed_frame(spec: FeatureSpec, malformed: list[_Malformed]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            **{name: [None] * len(malformed) for name in spec.column_names},
            "reason": [m.reason for m in malformed],
            "row_index": pd.array([None] * len(malformed), dtype="Int64"),
            "line_number": pd.array([m.line_number for m in malformed], dtype="Int64"),
            "raw_line": [m.text for m in malformed],
        }
    )


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
    progress = Progress("validate", total=count_rows(source) or 0, enabled=show_progress)
    try:
        for table in _read_chunks(source, chunk_rows, malformed):
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
                writers.write("quarantine", _quarantine_frame(table, spec, bad, check, rows_parsed))
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
                writers.write("quarantine", _malformed_frame(spec, malformed[malformed_written:]))
                malformed_written = len(malformed)
            progress.advance(table.num_rows)
        if len(malformed) > malformed_written:
            writers.write("quarantine", _malformed_frame(spec, malformed[malformed_written:]))
    except (pa.ArrowInvalid, storage.StorageError) as err:
        raise IngestError(f"{source}: cannot be read: {err}") from err
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
    (out / "stats.json").write_text(json.dumps(stats_doc, indent=1))
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
        (out / "drift.json").write_text(json.dumps(report, indent=1))
        summary["drifted_features"] = report["drifted"]
    (out / "ingest_summary.json").write_text(json.dumps(summary, indent=1))

    if rows_in == 0:
        raise IngestError(f"{source}: no rows to ingest")
    if summary["quarantined_fraction"] > max_quarantine_fraction:
        top = ", ".join(f"{r} x{n}" for r, n in list(reason_counts.most_common(3)))
        raise QuarantineLimitError(
            f"quarantined {summary['quarantined_fraction']:.1%} of rows ({rows_quarantined:,} of "
            f"{rows_in:,}), above the limit {max_quarantine_fraction:.1%}; top reasons: {top}; "
            f"rows are in {out / 'quarantine.parquet'}"
        )
    if total_clean == 0 or rows_clean["train"] == 0:
        raise IngestError(f"{source}: no clean training rows after validation")
    return IngestResult(out_dir=out, summary=summary)


def _load_baseline(path: str | Path) -> dict[str, Any]:
    baseline_path = Path(path)
    if baseline_path.is_dir():
        baseline_path = baseline_path / "stats.json"
    try:
        document = json.loads(baseline_path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise IngestError(f"cannot read baseline statistics {baseline_path}: {err}") from err
    if not isinstance(document, dict) or "train" not in document:
        raise IngestError(f"{baseline_path} is not a stats.json written by skewless validate")
    return document
