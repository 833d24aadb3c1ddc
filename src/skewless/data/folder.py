"""The folder ingestion writes, by file name: the one place the names are spelled."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

SPLITS = ("train", "eval")


@dataclasses.dataclass(frozen=True)
class IngestedFolder:
    """The files ingestion writes into one folder, by name: the one place the names are spelled
    (the pipeline's steps, the local runner and the CLI all read them through this)."""

    root: str | Path

    def _file(self, name: str) -> Path:
        return Path(self.root) / name

    def split(self, name: str) -> Path:
        """The Parquet file of ``train``, ``eval`` or ``quarantine``."""
        return self._file(f"{name}.parquet")

    @property
    def train(self) -> Path:
        """Clean training rows."""
        return self.split("train")

    @property
    def eval(self) -> Path:
        """Clean evaluation rows."""
        return self.split("eval")

    @property
    def quarantine(self) -> Path:
        """Refused rows, raw, each with its ``reason``."""
        return self.split("quarantine")

    @property
    def stats(self) -> Path:
        """Per-split statistics (:mod:`skewless.data.stats`)."""
        return self._file("stats.json")

    @property
    def stats_state(self) -> Path:
        """Every statistics accumulator's full state, so shards merge
        (:mod:`skewless.data.shards`)."""
        return self._file("stats_state.json.gz")

    @property
    def summary(self) -> Path:
        """Counts, reasons, timings and drift."""
        return self._file("ingest_summary.json")

    @property
    def drift(self) -> Path:
        """The drift report, when a baseline was given."""
        return self._file("drift.json")


@dataclasses.dataclass(frozen=True)
class IngestResult:
    """Where ingestion wrote its outputs, and its summary."""

    out_dir: Path
    summary: dict[str, Any]

    @property
    def files(self) -> IngestedFolder:
        """The output files by name."""
        return IngestedFolder(self.out_dir)

    @property
    def train_path(self) -> Path:
        """Clean training rows."""
        return self.files.train

    @property
    def eval_path(self) -> Path:
        """Clean evaluation rows."""
        return self.files.eval
