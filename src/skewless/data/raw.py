"""Reading raw data: CSV or Parquet in bounded chunks, from a local path or the object store.

Malformed CSV lines are kept (with their line number and why) for the quarantine, never dropped.
:mod:`skewless.data.ingest` validates what this reads.
"""

from __future__ import annotations

import csv
import dataclasses
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from skewless.data import storage


class IngestError(RuntimeError):
    """Ingestion cannot proceed (unreadable input, missing columns, too much quarantined)."""


@dataclasses.dataclass
class _Chunk:
    table: pa.Table
    first_row_index: int


@dataclasses.dataclass
class _Malformed:
    line_number: int | None
    text: str
    reason: str


def _suffix(source: str) -> str:
    return PurePosixPath(source).suffix.lower()


def csv_header(source: str) -> list[str]:
    """The header of a CSV file; one clear error for files that are not UTF-8 CSV text."""
    with storage.open_input_file(source) as handle:
        head = handle.read(1 << 16)
    if head.startswith(b"\x1f\x8b"):
        raise IngestError(f"{source}: file is gzip-compressed; decompress it (gunzip) first")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or b"\x00" in head[:4096]:
        raise IngestError(
            f"{source}: file is not UTF-8 text (UTF-16 or binary?); save it as UTF-8 CSV"
        )
    first_line = head.split(b"\n", 1)[0].rstrip(b"\r")
    try:
        text = first_line.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise IngestError(
            f"{source}: header line is not UTF-8 text (byte {err.start}); save the file as UTF-8"
        ) from None
    header = next(csv.reader([text]), None)
    if not header:
        raise IngestError(f"{source}: CSV file is empty (no header line)")
    duplicates = sorted({name for name in header if header.count(name) > 1})
    if duplicates:
        raise IngestError(f"{source}: duplicate column name(s) in the header: {duplicates}")
    return header


def read_chunks(
    source: str, chunk_rows: int, malformed: list[_Malformed], columns: list[str], extra: set[str]
) -> Iterator[pa.Table]:
    """Yields raw tables of about ``chunk_rows`` rows; malformed CSV lines go to ``malformed``.

    Parquet files are read for ``columns`` only (so a column the spec does not name, of whatever
    type, costs nothing); the names of the other columns go to ``extra``.

    ``source`` is a local path or an object-store URI (see :mod:`skewless.data.storage`); either way
    the file is streamed, never copied whole.
    """
    if _suffix(source) == ".csv":
        header = csv_header(source)

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
                # Bytes, so a cell that is not UTF-8 fails its row (contract.kinds), not the file.
                column_types={name: pa.binary() for name in header},
                strings_can_be_null=True,
                null_values=[""],
            ),
        )
        for batch in reader:
            yield pa.Table.from_batches([batch])
    elif _suffix(source) in (".parquet", ".pq"):
        parquet = pq.ParquetFile(storage.open_input_file(source))
        names = parquet.schema_arrow.names
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise IngestError(f"{source}: duplicate column name(s): {duplicates}")
        extra.update(set(names) - set(columns))
        wanted = [name for name in names if name in columns]
        for batch in parquet.iter_batches(batch_size=chunk_rows, columns=wanted):
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
