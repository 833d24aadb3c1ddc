"""``skewless run``: the whole pipeline on one machine through the real KFP local runner.

The compiled components run under ``kfp.local.SubprocessRunner`` in this Python environment, exactly
as they would run in our image on a cluster. The pipeline call returns the run's outputs
(:class:`skewless.pipelines.ranking.RunOutputs`: artifacts with their paths), which are summarized
in ``<workdir>/run_summary.json``; a failed run returns none. kfp.local reports its progress only as
printed lines, so those alone give the console its line per step (start, outcome, time) and each
step its log file.
"""

from __future__ import annotations

import io
import json
import os
import re
import sys
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from skewless.artifacts import TRAINING_SUMMARY, RunFolder
from skewless.data.ingest import IngestedFolder
from skewless.registry.core import check_model_name
from skewless.rollout.deploy import production_model, registry_for

DEFAULT_ROWS = 400_000
DEFAULT_SEED = 0
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '([\w-]+)'")
# The exception line a Python traceback ends with: "    package.module.SomeError: message".
_RAISED = re.compile(r"^\s*(?:[\w]+\.)*(\w*(?:Error|Exception)): (.*)$")
_FINISHED = re.compile(r"Task '([\w-]+)' finished with status (\w+)")


class RunError(RuntimeError):
    """The local pipeline run failed; the message names the step."""


class StepLog(io.TextIOBase):
    """Stands in for stdout while the local runner runs: one line per step, full logs to files.

    The runner prints each step's start and finish, its executor input and output, and the
    step's own output (TensorFlow's and Beam's included) on stdout. Each line goes to
    ``<log_dir>/<step>.log`` (a step's outputs, printed after it finishes, included; lines
    before the first step go to ``pipeline.log``); the console gets one
    line per step with its outcome, time and log file, or everything with ``verbose``.
    """

    def __init__(self, target: TextIO, log_dir: Path, *, verbose: bool = False) -> None:
        """Writes step logs under ``log_dir`` (emptied of earlier runs' logs first)."""
        self.target = target
        self.log_dir = log_dir
        self.verbose = verbose
        self.started: dict[str, float] = {}
        self.seconds: dict[str, float] = {}
        self.status: dict[str, str] = {}
        self._partial = ""
        self._step = "pipeline"
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*.log"):
            old.unlink()
        self._files: dict[str, TextIO] = {}

    def log_path(self, step: str) -> Path:
        """The file holding ``step``'s whole output."""
        return self.log_dir / f"{step}.log"

    def _file(self, step: str) -> TextIO:
        if step not in self._files:
            self._files[step] = self.log_path(step).open("a")
        return self._files[step]

    def write(self, text: str) -> int:
        """Sends complete lines to their step's log, and the console its line per step."""
        if self.verbose:
            self.target.write(text)
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            self._line(line)
        return len(text)

    def _line(self, line: str) -> None:
        plain = _ANSI.sub("", line)
        now = time.perf_counter()
        if match := _STARTED.search(plain):
            self._step = match.group(1)
            self.started[self._step] = now
            if not self.verbose:
                self.target.write(f"  {self._step:<12} ")
                self.target.flush()
        self._file(self._step).write(plain + "\n")
        if (match := _FINISHED.search(plain)) and match.group(1) in self.started:
            step, outcome = match.group(1), match.group(2)
            self.seconds[step] = round(now - self.started[step], 3)
            self.status[step] = outcome
            self._file(step).flush()
            if not self.verbose:
                self.target.write(
                    f"{outcome:<8} {self.seconds[step]:7.1f} s   {self.log_path(step)}\n"
                )
                self.target.flush()

    def reason(self, step: str, lines: int = 20) -> str:
        """Why ``step`` failed: the last exception its log names, else its last ``lines`` lines."""
        self.close()
        path = self.log_path(step)
        text = path.read_text().splitlines() if path.is_file() else []
        raised = [match for line in text if (match := _RAISED.match(line))]
        if raised:
            return f"{raised[-1].group(1)}: {raised[-1].group(2)}"
        return "\n".join(text[-lines:])

    def flush(self) -> None:
        """Flushes the console and the open logs."""
        self.target.flush()
        for handle in self._files.values():
            handle.flush()

    def close(self) -> None:
        """Closes the step logs (the console stays open)."""
        if self._partial:
            self._line(self._partial)
            self._partial = ""
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def run_local(
    *,
    workdir: str | Path,
    data: str | Path | None = None,
    spec_path: str | Path | None = None,
    rows: int = DEFAULT_ROWS,
    seed: int = DEFAULT_SEED,
    model_name: str = "ranking",
    parameters: dict[str, Any] | None = None,
    verbose: bool = False,
) -> dict[str, Any]:
    """Runs the ranking pipeline locally and writes ``run_summary.json`` in ``workdir``.

    Args:
        workdir: Folder for data, the local pipeline root, the model repository and the summary.
        data: Raw CSV or Parquet; None generates the default data (``rows``, ``seed``).
        spec_path: Feature spec YAML; None uses the shipped spec.
        rows: Rows of default data to generate when ``data`` is None.
        seed: Seed of the default data.
        model_name: Name of the deployed model.
        parameters: Extra pipeline parameters (hyperparameters and gate thresholds go in the
            ``hparams`` and ``gate`` dicts).
        verbose: Echo every line of every step (by default: one line per step; the full logs
            are in ``<workdir>/logs/<step>.log`` either way).

    Returns:
        The run summary.

    Raises:
        RunError: A step failed; the message names it.
    """
    from kfp import local

    from skewless.contract.spec import load_spec
    from skewless.data.generate import write_dataset
    from skewless.pipelines.ranking import ranking_pipeline

    check_model_name(model_name)  # before anything is written under that name
    folder = RunFolder(Path(workdir).resolve())
    folder.root.mkdir(parents=True, exist_ok=True)
    # Read and checked here, not three steps in; the text travels with the run as a parameter.
    spec_yaml = load_spec(spec_path).source_text if spec_path is not None else ""
    generate_seconds = 0.0
    if data is None:
        data_path = folder.data(rows, seed)
        if not data_path.exists():
            started = time.perf_counter()
            write_dataset(rows, seed, data_path)
            generate_seconds = time.perf_counter() - started
    else:
        data_path = Path(data).resolve()
        if not data_path.is_file():
            raise RunError(f"--data: file not found: {data_path}")

    repository = folder.models
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(folder.pipeline_root),
        raise_on_error=False,
    )
    # kfp.local warns, per step, that our base image is not a Python image; here the steps run in
    # this environment on purpose (it is the image's environment), so the warning is only noise.
    warnings.filterwarnings(
        "ignore",
        message="You may be attemping to run a task that uses custom",
        category=RuntimeWarning,
    )
    steps = StepLog(sys.stdout, folder.logs, verbose=verbose)
    print(f"running the pipeline with kfp.local; each step's full log is in {steps.log_dir}/")
    started = time.perf_counter()
    real_stdout, sys.stdout = sys.stdout, steps
    try:
        outputs = ranking_pipeline(
            data_uri=str(data_path),
            spec_yaml=spec_yaml,
            model_name=model_name,
            model_repository=str(repository),
            **{"feature_repo": str(folder.feature_repo), **(parameters or {})},
        ).outputs
    finally:
        sys.stdout = real_stdout
        steps.close()
    total_seconds = time.perf_counter() - started
    failed = [task for task, status in steps.status.items() if status != "SUCCESS"]
    if failed:
        if not verbose:  # the step's last lines usually hold the reason
            print(steps.reason(failed[0]), file=sys.stderr)
        raise RunError(f"step {failed[0]!r} failed; its log: {steps.log_path(failed[0])}")
    if not outputs:  # kfp.local returns none for a failed run
        log = steps.log_path("pipeline")
        where = f"its log: {log}" if Path(log).exists() else f"its folder: {Path(log).parent}"
        raise RunError(f"the pipeline returned no outputs; {where}")

    # The run's artifacts, wherever the runner keeps them; the run's folder is where they meet.
    paths = {name: Path(artifact.path) for name, artifact in outputs.items()}
    run_dir = Path(os.path.commonpath(list(paths.values())))
    ingest_summary = _read_json(IngestedFolder(paths["ingested"]).summary)
    evaluation = _read_json(paths["evaluation"])
    training = _read_json(paths["tensorboard"] / TRAINING_SUMMARY)
    if not evaluation:
        raise RunError(f"the evaluate step left no evaluation at {paths['evaluation']}")
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
            **steps.seconds,
        },
        "step_logs": {step: str(steps.log_path(step)) for step in steps.status},
        "pipeline_seconds": round(total_seconds, 3),
        "metrics": evaluation["metrics"],
        # The hyperparameters as trained (batch_size resolved when it was 0, "auto"), and where
        # the step's time went.
        "train": {
            key: training.get(key) for key in ("hparams", "epochs_run", "rows_train", "timings")
        },
        "production_metrics": evaluation.get("production_metrics"),
        # Recall@K of the two-tower model, of exact search over its embeddings and of the
        # popularity baseline (None: the spec names no sides, the model only ranks).
        "retrieval": evaluation.get("retrieval"),
        # The feature store the materialize step wrote (``materialized: 0`` and the reason when
        # the spec has no event time or no side to look up by id).
        "feature_store": _read_json(paths["feature_summary"]),
        "gate": evaluation["gate"],
        "model_path": str(paths["model"]),
        "registered_version": registered.version,
        "deployed": promoted,
        # What the new version does now: serves everything, serves a canary share, or nothing.
        "deployment": roles.get(registered.version, "none"),
        "traffic": traffic.to_dict(),
        "served_model_path": str(deployed) if deployed else None,
        "model_name": model_name,
    }
    folder.summary.write_text(json.dumps(summary, indent=1))
    return summary
