"""A draft feature spec from a data file's statistics, as TFX's SchemaGen drafts a schema.

``skewless spec infer --data F --label COL`` reads a sample of ``F`` and proposes a kind per
column; the user reviews the YAML (each feature carries a comment with what was observed) and
runs with it. The rules, in order, for each column:

* the ``--label`` column is the label (it must hold only 0/1 or true/false) and ``--key`` the key;
* the first column of timestamps (Parquet) or ISO 8601 date-times (text) is the event time
  (``kind: timestamp``); later ones are left out;
* numbers: whole numbers with at most :data:`CODE_DOMAIN` distinct values are a categorical (an
  hour, a month, an area code); other numbers are numeric, ``log``-scaled when non-negative and
  heavy-tailed, with ``min: 0`` when no value is negative;
* text: at most :data:`SMALL_DOMAIN` distinct values is a categorical with those allowed values;
  mostly distinct values averaging three or more words are free text; values holding ``|`` are
  tags; other columns with at most :data:`TEXT_DOMAIN` distinct values are a categorical
  with a learned vocabulary, and anything else is an id;
* a column holding a single value carries no information and is left out;
* a column with blanks is optional: numbers default to the median, text to ``""``.

Columns that cannot be features (all blank, a name that is not an identifier, booleans other than
the label) are listed in comments and left out.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import yaml

from skewless.contract.spec import SpecError, parse_spec

SMALL_DOMAIN = 30
# Whole numbers with at most this many values are codes (hour 24, month 12, weekday 7), not amounts.
CODE_DOMAIN = 32
TEXT_DOMAIN = 1000
SAMPLE_ROWS = 100_000


class InferError(ValueError):
    """The data cannot be read or no spec can be drafted from it; the message says why."""


def _sample(path: Path, rows: int) -> pd.DataFrame:
    """Up to ``rows`` rows as text (CSV) or typed columns (Parquet); blanks as None."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    suffix = path.suffix.lower()
    if not path.is_file():
        raise InferError(f"data file not found: {path}")
    try:
        if suffix == ".csv":
            from skewless.data.raw import IngestError, csv_header

            try:
                header = csv_header(str(path))
            except IngestError as err:
                raise InferError(str(err)) from None
            reader = pacsv.open_csv(
                path,
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=True,
                    null_values=[""],
                ),
                read_options=pacsv.ReadOptions(use_threads=False),
            )
            table = pa.Table.from_batches(list(_head(reader, rows)), schema=reader.schema)
        elif suffix in (".parquet", ".pq"):
            parquet = pq.ParquetFile(path)
            table = pa.Table.from_batches(
                list(_head(parquet.iter_batches(batch_size=min(rows, 65_536)), rows)),
                schema=parquet.schema_arrow,
            )
        else:
            raise InferError(f"{path}: unsupported file type {suffix!r}; use .csv or .parquet")
    except FileNotFoundError:
        raise InferError(f"data file not found: {path}") from None
    except (pa.ArrowException, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InferError(f"{path}: cannot be read: {first[:200]}") from None
    return table.slice(0, rows).to_pandas(types_mapper=None)


def _head(batches: Any, rows: int) -> Any:
    seen = 0
    for batch in batches:
        yield batch
        seen += batch.num_rows
        if seen >= rows:
            return


def _blank(column: pd.Series) -> pd.Series:
    return column.isna() | column.astype(str).str.strip().eq("")


def _numbers(present: pd.Series) -> np.ndarray | None:
    """The values as floats when every present value is a finite number, else None."""
    if pd.api.types.is_bool_dtype(present):
        return None
    values = pd.to_numeric(present, errors="coerce").to_numpy(dtype=np.float64)
    if np.isnan(values).any() or not np.isfinite(values).all():
        return None
    return values


def _times(present: pd.Series) -> pd.Series | None:
    """The values as UTC times when the column holds timestamps or ISO 8601 date-times."""
    if pd.api.types.is_datetime64_any_dtype(present):
        return pd.to_datetime(present, utc=True)
    if pd.api.types.is_numeric_dtype(present):
        return None
    text = present.astype(str).str.strip()
    if not text.str.match(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}").all():
        return None
    times = pd.to_datetime(text, utc=True, format="ISO8601", errors="coerce")
    return None if times.isna().any() else times


def _label_values(present: pd.Series) -> bool:
    text = set(present.astype(str).str.strip().str.lower())
    return text <= {"0", "1", "0.0", "1.0", "true", "false"}


def _plain(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(float(value), 6)


def _feature(name: str, column: pd.Series) -> tuple[dict[str, Any] | None, str]:
    """Options for one column and the comment describing what was observed."""
    blank = _blank(column)
    present = column[~blank]
    share = f"{int(blank.sum()):,} blank ({blank.mean():.1%})" if blank.any() else "no blanks"
    if present.empty:
        return None, "every value is blank"
    if present.astype(str).nunique() == 1:
        return None, f"a single value ({present.iloc[0]!s:.40}): carries no information"
    if pd.api.types.is_bool_dtype(column):
        return None, "boolean column; store it as 0/1 to use it as a number"
    options: dict[str, Any]
    times = _times(present)
    if times is not None:
        note = f"times {times.min():%Y-%m-%d %H:%M} .. {times.max():%Y-%m-%d %H:%M} UTC, {share}"
        if blank.any():
            return None, f"{note}: an event time cannot be blank"
        return {"kind": "timestamp"}, note
    numbers = _numbers(present)
    distinct = int(present.astype(str).nunique())
    if numbers is not None:
        whole = bool(np.all(numbers == np.round(numbers)))
        low, high = float(numbers.min()), float(numbers.max())
        note = f"numbers {_plain(low)} .. {_plain(high)}, {distinct} distinct, {share}"
        if whole and distinct <= CODE_DOMAIN:
            options = {"kind": "categorical"}
        else:
            options = {"kind": "numeric"}
            median = float(np.median(numbers))
            heavy = low >= 0 and high > 10 * max(abs(median), 1e-9) and high > 100
            options["transform"] = "log" if heavy else "zscore"
            if low >= 0:
                options["min"] = 0
            if blank.any():
                options.update(required=False, default=_plain(median))
            return options, note
    else:
        text = present.astype(str)
        words = text.str.split().str.len().mean()
        note = f"text, {distinct} distinct, {share}"
        if distinct <= SMALL_DOMAIN:
            options = {"kind": "categorical", "allowed_values": sorted(text.unique().tolist())}
        elif words >= 3 and distinct > len(text) / 2:
            options = {"kind": "text", "max_tokens": int(min(64, max(4, math.ceil(words * 2))))}
        elif text.str.contains("|", regex=False).mean() > 0.5:
            options = {"kind": "tags"}
        elif distinct <= TEXT_DOMAIN:
            options = {"kind": "categorical"}
        else:
            options = {"kind": "id", "encoding": "vocabulary", "top_k": 10_000}
    if blank.any():
        options.update(required=False, default="")
    return options, note


def infer_spec(
    data: str | Path,
    *,
    label: str,
    key: str | None = None,
    exclude: tuple[str, ...] = (),
    sample_rows: int = SAMPLE_ROWS,
) -> str:
    """Drafts a spec for ``data``; returns it as commented YAML that :func:`load_spec` accepts.

    Args:
        data: CSV or Parquet file.
        label: The binary label column.
        key: A column identifying the row (hashed for the train/eval split), if any.
        exclude: Columns to leave out (for example one that leaks the label).
        sample_rows: Rows read to decide kinds.

    Raises:
        InferError: The file cannot be read, a named column is missing, or the label is not 0/1.
    """
    frame = _sample(Path(data), sample_rows)
    for role, name in (("label", label), ("key", key), *(("exclude", n) for n in exclude)):
        if name is not None and name not in frame.columns:
            raise InferError(f"--{role} {name!r} is not a column; columns: {list(frame.columns)}")
    features: dict[str, dict[str, Any]] = {}
    notes: dict[str, str] = {}
    skipped: list[str] = []
    for name in frame.columns:
        column = frame[name]
        if name in exclude:
            skipped.append(f"{name}: excluded (--exclude)")
            continue
        if not isinstance(name, str) or not name.isidentifier():
            skipped.append(f"{name!r}: not a valid identifier; rename the column to use it")
            continue
        if name == label:
            present = column[~_blank(column)]
            if present.empty or not _label_values(present):
                raise InferError(f"--label {name!r} must hold only 0/1 or true/false")
            features[name] = {"kind": "label"}
            positive = present.astype(str).str.strip().str.lower().isin(("1", "1.0", "true"))
            notes[name] = f"label, {positive.mean():.1%} positive"
            continue
        if name == key:
            features[name] = {"kind": "key"}
            notes[name] = "row key: hashed to split train from eval"
            continue
        options, note = _feature(name, column)
        seen_time = any(f["kind"] == "timestamp" for f in features.values())
        if options is not None and options["kind"] == "timestamp" and seen_time:
            options, note = None, f"{note}: a second time column (the first is the event time)"
        if options is None:
            skipped.append(f"{name}: {note}")
            continue
        features[name] = options
        notes[name] = note
    document = {"features": features}
    try:
        parse_spec(document)
    except SpecError as err:
        raise InferError(f"cannot draft a usable spec: {err}") from None
    return _render(Path(data), len(frame), features, notes, skipped)


def _render(
    data: Path,
    rows: int,
    features: dict[str, dict[str, Any]],
    notes: dict[str, str],
    skipped: list[str],
) -> str:
    lines = [
        f"# Draft spec inferred by `skewless spec infer` from {data.name} ({rows:,} rows read).",
        "# Review every feature: kinds, allowed values and defaults are guesses from the data.",
    ]
    lines += [f"# left out: {item}" for item in skipped]
    lines.append("features:")
    for name, options in features.items():
        lines.append(f"  # {notes[name]}")
        body = yaml.safe_dump({name: options}, default_flow_style=None, sort_keys=False, width=96)
        lines += ["  " + line for line in body.rstrip().splitlines()]
    return "\n".join(lines) + "\n"
