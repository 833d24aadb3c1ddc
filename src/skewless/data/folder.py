"""The folder ingestion writes, by file name: the one place the names are spelled."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from skewless.artifacts import Entry

SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class IngestedFolder:
    """The files ingestion writes into one folder, by name: the one place the names are spelled
    (the pipeline's steps, the local runner and the CLI all read them through this)."""

    root: str | Path

    train = Entry("train.parquet")
    """Clean training rows."""
    eval = Entry("eval.parquet")
    """Clean evaluation rows."""
    quarantine = Entry("quarantine.parquet")
    """Refused rows, raw, each with its ``reason``."""
    stats = Entry("stats.json")
    """Per-split statistics (:mod:`skewless.data.stats`)."""
    stats_state = Entry("stats_state.json.gz")
    """Every statistics accumulator's full state, so shards merge (:mod:`skewless.data.shards`)."""
    summary = Entry("ingest_summary.json")
    """Counts, reasons, timings and drift."""
    drift = Entry("drift.json")
    """The drift report, when a baseline was given."""

    def split(self, name: str) -> Path:
        """The Parquet file of ``train``, ``eval`` or ``quarantine``."""
        if name not in (*SPLITS, "quarantine"):
            raise ValueError(f"no split {name!r}: train, eval or quarantine")
        path: Path = getattr(self, name)
        return path


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Where ingestion wrote its outputs, and its summary."""

    out_dir: Path
    summary: dict[str, Any]

    @property
    def files(self) -> IngestedFolder:
        """The output files by name (``result.files.train``: the clean training rows)."""
        return IngestedFolder(self.out_dir)
