"""``skewless run``: the whole pipeline on one machine through the real KFP local runner.

The compiled components run under ``kfp.local.SubprocessRunner`` in this Python environment, exactly
as they would run in our image on a cluster. Afterwards the run's artifacts are read back from the
local pipeline root and summarized in ``<workdir>/run_summary.json``.
"""

from __future__ import annotations

import io
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from skewless.rollout.deploy import production_model, registry_for

DEFAULT_ROWS = 400_000
DEFAULT_SEED = 0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([\w-]+)'")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")


class RunError(RuntimeError):
    """The local pipeline run failed; the message names the step."""


class StepTimer(io.TextIOBase):
    """A stdout tee that timestamps the local runner's task start and finish lines."""

    def __init__(self, target: TextIO) -> None:
        """Forwards everything to ``target``."""
        self.target = target
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self._partial = ""

    def write(self, text: str) -> int:
        """Forwards ``text`` and records task boundaries found in complete lines."""
        self.target.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        now = time.perf_counter()
        for line in lines:
            plain = _ANSI.sub("", line)
            if match := _STARTED.search(plain):
                self.started[match.group(1)] = now
            elif (match := _FINISHED.search(plain)) and match.group(1) in self.started:
                task = match.group(1)
                self.seconds[task] = round(now - self.started[task], 3)
                self.status[task] = match.group(2)
        return len(text)

    def flush(self) -> None:
        """Flushes the target."""
        self.target.flush()


def _latest_run_dir(pipeline_root: Path, pipeline_name: str) -> Path:
    runs = sorted(pipeline_root.glob(f"{pipeline_name}-*"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise RunError(f"no run folder for {pipeline_name} under {pipeline_root}")
    return runs[-1]


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def default_data_path(workdir: Path, rows: int, seed: int) -> Path:
    """Where ``skewless run`` keeps generated default data (reused when present)."""
    return workdir / "data" / f"ranking-{rows}-seed{seed}.parquet"


def run_local(
    *,
    workdir: str | Path,
    data: str | Path | None = None,
    spec_path: str | Path | None = None,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    model_name: str = "ranking",
    parameters: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs the ranking pipeline locally and writes ``run_summary.json`` in ``workdir``.

    Args:
        workdir: Folder for data, the local pipeline root, the model repository and the summary.
        data: Raw CSV or Parquet; None generates the default data (``rows``, ``seed``).
        spec_path: Feature spec YAML; None uses the shipped spec.
        rows: Rows of default data to generate when ``data`` is None.
        seed: Seed of the default data.
        model_name: Name of the deployed model.
        parameters: Extra pipeline parameters (hyperparameters, gate thresholds).

    Returns:
        The run summary.

    Raises:
        RunError: A step failed; the message names it.
    """
    from kfp import local

    from skewless.contract.spec import load_spec
    from skewless.data.generate import write_dataset
    from skewless.pipelines.ranking import PIPELINE_NAME, ranking_pipeline

    root = Path(workdir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    # Read and checked here, not three steps in; the text travels with the run as a parameter.
    spec_yaml = load_spec(spec_path).source_text if spec_path is not None else ""
    generate_seconds = 0.0
    if data is None:
        data_path = default_data_path(root, rows, seed)
        if not data_path.exists():
            started = time.perf_counter()
            write_dataset(rows, seed, data_path)
            generate_seconds = time.perf_counter() - started
    else:
        data_path = Path(data).resolve()
        if not data_path.is_file():
            raise RunError(f"--data: file not found: {data_path}")

    repository = root / "models"
    pipeline_root = root / "pipeline_root"
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        raise_on_error=False,
    )
    timer = StepTimer(sys.stdout)
    started = time.perf_counter()
    real_stdout, sys.stdout = sys.stdout, timer
    try:
        ranking_pipeline(
            data_uri=str(data_path),
            spec_yaml=spec_yaml,
            model_name=model_name,
            model_repository=str(repository),
            **(parameters or {}),
        )
    finally:
        sys.stdout = real_stdout
    total_seconds = time.perf_counter() - started
    failed = [task for task, status in timer.status.items() if status != "SUCCESS"]
    if failed:
        raise RunError(f"step {failed[0]!r} failed; its log is above (run folder: {pipeline_root})")

    run_dir = _latest_run_dir(pipeline_root, PIPELINE_NAME)
    ingested = run_dir / "ingest" / "ingested"
    ingest_summary = _read_json(ingested / "ingest_summary.json")
    evaluation = _read_json(run_dir / "evaluate" / "evaluation")
    training = _read_json(run_dir / "train" / "tensorboard" / "training_summary.json")
    if not evaluation:
        raise RunError(f"the evaluate step left no evaluation under {run_dir}")
    deployed = production_model(repository, model_name)
    promoted = bool(evaluation["gate"]["promote"])
    registry = registry_for(repository)
    registered = registry.get(model_name, "latest")
    traffic = registry.traffic(model_name)
    roles = {traffic.production: "production", traffic.candidate: "canary"}
    summary: dict[str, Any] = {
        "data": str(data_path),
        "run_dir": str(run_dir),
        "rows": {
            key: ingest_summary.get(key)
            for key in ("rows_in", "rows_clean", "rows_quarantined", "rows_train", "rows_eval")
        },
        "step_seconds": {
            **({"generate": round(generate_seconds, 3)} if generate_seconds else {}),
            **timer.seconds,
        },
        "pipeline_seconds": round(total_seconds, 3),
        "metrics": evaluation["metrics"],
        # The hyperparameters as trained (batch_size resolved when it was 0, "auto").
        "train": {key: training.get(key) for key in ("hparams", "epochs_run", "rows_train")},
        "production_metrics": evaluation.get("production_metrics"),
        "gate": evaluation["gate"],
        "model_path": str(run_dir / "train" / "model"),
        "registered_version": registered.version,
        "deployed": promoted,
        # What the new version does now: serves everything, serves a canary share, or nothing.
        "deployment": roles.get(registered.version, "none"),
        "traffic": traffic.to_dict(),
        "served_model_path": str(deployed) if deployed else None,
        "model_name": model_name,
    }
    (root / "run_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
