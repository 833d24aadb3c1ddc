"""The file names the pipeline's steps write into their artifacts, and the layout of a local run's
workdir: the one place they are spelled.

Ingestion's folder has its own class, :class:`skewless.data.folder.IngestedFolder`; the spec
inside an exported model is :data:`skewless.contract.spec.SPEC_ASSET`; the registry file beside a
model repository is :data:`skewless.rollout.deploy.REGISTRY_FILE`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

# Inside the train step's ``tensorboard`` artifact (and its work folder before that).
TRAINING_LOGS = "logs"
TRAINING_SUMMARY = "training_summary.json"
# Written by the evaluation into its output folder; the evaluate step copies them to its
# ``evaluation`` and ``report`` artifacts.
EVALUATION = "evaluation.json"
EVALUATION_REPORT = "report.html"


@dataclasses.dataclass(frozen=True)
class RunFolder:
    """What ``skewless run`` keeps under its ``--workdir``, by name."""

    root: Path

    @property
    def models(self) -> Path:
        """The model repository the deploy step publishes into (its registry beside it)."""
        return self.root / "models"

    @property
    def pipeline_root(self) -> Path:
        """kfp.local's pipeline root: each run's artifacts."""
        return self.root / "pipeline_root"

    @property
    def logs(self) -> Path:
        """One log file per step."""
        return self.root / "logs"

    @property
    def feature_repo(self) -> Path:
        """The feature store the materialize step writes (``serve --feature-store``)."""
        return self.root / "feature_repo"

    @property
    def summary(self) -> Path:
        """``run_summary.json``: what the run did and measured."""
        return self.root / "run_summary.json"

    def data(self, rows: int, seed: int) -> Path:
        """Generated default data (reused when present)."""
        return self.root / "data" / f"ranking-{rows}-seed{seed}.parquet"
