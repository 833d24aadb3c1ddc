"""The file names the pipeline's steps write into their artifacts, and the layout of a local run's
workdir: the one place they are spelled.

Ingestion's folder has its own class, :class:`skewless.data.folder.IngestedFolder`; the registry
file beside a model repository is :data:`skewless.rollout.deploy.REGISTRY_FILE`. This module imports
nothing heavy: the register and deploy steps read these names without loading the spec's parsers.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, overload

# Inside the train step's ``tensorboard`` artifact.
TRAINING_LOGS = "logs"
TRAINING_SUMMARY = "training_summary.json"
# The eval split scored through the exported model, by training (its ``eval_scores`` artifact in
# the pipeline), with digests of the model and the rows; the evaluate step checks both.
EVAL_SCORES = "eval_scores.npz"
# Written by the evaluation into its output folder; the evaluate step copies them to its
# ``evaluation`` and ``report`` artifacts.
EVALUATION = "evaluation.json"
EVALUATION_REPORT = "report.html"
# The feature spec inside an exported model (and a retrieval model): the server validates
# requests with the contract the model was trained under.
SPEC_ASSET = "assets.extra/feature_spec.yaml"


class Entry:
    """A file or folder of a layout, by name, as an attribute: ``summary = Entry("run.json")``
    in a class whose instances have a ``root`` makes ``instance.summary`` the path
    ``root / "run.json"``. A layout is then a table of names, each spelled once."""

    def __init__(self, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, layout: None, owner: type) -> Entry: ...

    @overload
    def __get__(self, layout: object, owner: type) -> Path: ...

    def __get__(self, layout: Any, owner: type) -> Entry | Path:
        """The path below ``layout.root`` (the entry itself, read from the class)."""
        if layout is None:
            return self
        return Path(layout.root) / self.name


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """What ``skewless run`` keeps under its ``--workdir``, by name."""

    root: Path

    models = Entry("models")
    """The model repository the deploy step publishes into (its registry beside it)."""
    pipeline_root = Entry("pipeline_root")
    """kfp.local's pipeline root: each run's artifacts."""
    logs = Entry("logs")
    """One log file per step."""
    feature_repo = Entry("feature_repo")
    """The feature store the materialize step writes (``serve --feature-store``)."""
    summary = Entry("run_summary.json")
    """``run_summary.json``: what the run did and measured."""

    def data(self, rows: int, seed: int) -> Path:
        """Generated default data (reused when present)."""
        return self.root / "data" / f"ranking-{rows}-seed{seed}.parquet"
