"""Training the ranker across processes or machines: ``MultiWorkerMirroredStrategy``.

Every worker runs the same program, ``python -m skewless.model.distributed``, and learns the cluster
and its own place in it from ``TF_CONFIG`` (a Kubeflow TFJob sets it in each pod; locally, set it
by hand; see docs/distributed.md). Each worker applies the transform graph to the splits as
single-process training does (:func:`skewless.model.inputs.transform_split`, into its own scratch
folder), then builds and fits
the same network inside the strategy's scope (:func:`~skewless.model.network.build_model`,
:func:`~skewless.model.train.fit_model`): each global batch is split across the workers and their
gradients are all-reduced every step, so the model is the one-process model's, with the same
global batch size. The chief (worker 0 when the cluster names no chief) exports the SavedModel
(:func:`~skewless.model.train.export_model`, the transform inside) and writes the training
summary; the other workers save into scratch folders they then remove, since saving a distributed
model takes every worker.

The distributed path trains the ranker only: the linear baseline and the retrieval towers stay in
single-process training (:func:`skewless.model.train.train`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skewless.contract.spec import SpecError, load_spec
from skewless.model.hparams import HParams

if TYPE_CHECKING:
    from skewless.model.inputs import TrainingData


@dataclasses.dataclass(frozen=True)
class WorkerRole:
    """This process's place in ``TF_CONFIG``'s cluster."""

    task_type: str
    index: int
    workers: int
    has_chief: bool = False

    @property
    def is_chief(self) -> bool:
        """The chief writes the model: the ``chief`` task, or worker 0 when there is none."""
        if self.has_chief:
            return self.task_type == "chief"
        return self.task_type == "worker" and self.index == 0


def worker_role(tf_config: str | None) -> WorkerRole:
    """Reads ``TF_CONFIG`` (None or empty: a lone worker, the chief).

    Raises:
        ValueError: ``TF_CONFIG`` is not JSON with a ``cluster`` and a ``task``.
    """
    if not tf_config:
        return WorkerRole("worker", 0, 1)
    try:
        config = json.loads(tf_config)
        task, cluster = config["task"], config["cluster"]
        workers = sum(len(cluster.get(kind, [])) for kind in ("chief", "worker"))
        has_chief = bool(cluster.get("chief"))
        return WorkerRole(str(task["type"]), int(task["index"]), workers, has_chief)
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"TF_CONFIG is not a cluster and a task as TensorFlow reads it: {err}"
        ) from None


def train_distributed(
    data: TrainingData, out_dir: str | Path, hparams: HParams | None = None
) -> dict[str, Any]:
    """Trains the ranking model as one worker of ``TF_CONFIG``'s cluster; the chief exports it.

    Args:
        data: The clean splits (the same on every worker), the transform graph and the spec.
        out_dir: The chief writes ``model/`` (the SavedModel), ``logs/`` and
            ``training_summary.json`` here; other workers leave nothing behind.
        hparams: Hyperparameters (defaults when None); ``batch_size`` is the global batch.

    Returns:
        The training summary (the chief also writes it), with ``workers`` and ``is_chief``.
    """
    import tensorflow as tf

    from skewless.artifacts import TRAINING_LOGS, TRAINING_SUMMARY
    from skewless.evaluation import metrics
    from skewless.model.network import build_model
    from skewless.model.train import (
        MODEL_DIRNAME,
        auto_batch_size,
        export_model,
        fit_model,
        predict_split,
    )

    role = worker_role(os.environ.get("TF_CONFIG"))
    hparams = hparams or HParams()
    tf.keras.utils.set_random_seed(hparams.seed)
    # Made before any other TensorFlow work, as the strategy requires.
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Only the chief logs and exports; another worker's files go to a scratch folder.
    own = out if role.is_chief else out / f".worker-{role.task_type}-{role.index}"
    own.mkdir(parents=True, exist_ok=True)
    with data.transformed(own) as inputs:
        train_split, eval_split = inputs.train, inputs.eval
        if hparams.batch_size == 0:
            hparams = dataclasses.replace(hparams, batch_size=auto_batch_size(train_split.rows))
        started = time.perf_counter()
        with strategy.scope():
            model = build_model(data.spec, inputs.tft_output.vocabulary_size_by_name, hparams)
            history = fit_model(
                model, train_split, eval_split, hparams,
                own / TRAINING_LOGS if role.is_chief else None,
            )  # fmt: skip
        fit_seconds = time.perf_counter() - started
        model_dir = export_model(model, inputs.tft_output, data.spec, own / MODEL_DIRNAME)
        eval_auc = metrics.roc_auc(eval_split.labels(), predict_split(model, eval_split))
    summary: dict[str, Any] = {
        "workers": role.workers,
        "is_chief": role.is_chief,
        "rows_train": train_split.rows,
        "rows_eval": eval_split.rows,
        "epochs_run": len(history.get("loss", [])),
        "history": history,
        "eval_auc": eval_auc,
        "hparams": dataclasses.asdict(hparams),
        "timings": {
            "transform_seconds": round(inputs.seconds, 3),
            "fit_seconds": round(fit_seconds, 3),
        },
        "model_dir": str(model_dir) if role.is_chief else None,
    }
    if role.is_chief:
        (out / TRAINING_SUMMARY).write_text(json.dumps(summary, indent=1))
    else:
        shutil.rmtree(own, ignore_errors=True)
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The arguments of one worker (a TFJob's pods pass them; tests parse the manifest's)."""
    parser = argparse.ArgumentParser(
        prog="python -m skewless.model.distributed",
        description="Train the ranker as one worker of TF_CONFIG's cluster "
        "(MultiWorkerMirroredStrategy); the chief exports the model.",
    )
    parser.add_argument(
        "--train", required=True, help="clean train.parquet (every worker reads it)"
    )
    parser.add_argument("--eval", required=True, help="clean eval.parquet")
    parser.add_argument("--transform", required=True, help="the transform graph (skewless analyze)")
    parser.add_argument("--spec", default=None, help="feature spec YAML (default: the shipped one)")
    parser.add_argument("--out", required=True, help="the chief writes model/ and its summary here")
    parser.add_argument(
        "--hparams", default="{}", help='hyperparameters as a JSON object, e.g. {"epochs": 3}'
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m skewless.model.distributed``: one worker's entry point (a TFJob pod runs it)."""
    from skewless.config import from_overrides

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        worker_role(os.environ.get("TF_CONFIG"))
        try:
            overrides = json.loads(args.hparams)
        except json.JSONDecodeError:
            overrides = None
        if not isinstance(overrides, dict):
            raise ValueError(f"--hparams: expected a JSON object, got {args.hparams!r}")
        hparams = from_overrides(HParams, overrides, "--hparams")
        spec = load_spec(args.spec)
        for name in ("train", "eval", "transform"):
            if not Path(getattr(args, name)).exists():
                raise ValueError(f"--{name}: {getattr(args, name)} not found")
    except (ValueError, SpecError) as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    from skewless.model.inputs import TrainingData

    data = TrainingData(args.train, args.eval, args.transform, spec)
    summary = train_distributed(data, args.out, hparams)
    print(json.dumps({k: summary[k] for k in ("workers", "is_chief", "eval_auc", "timings")}))
    return 0


if __name__ == "__main__":
    from skewless.runtime import legacy_keras

    # A worker trains with Keras 2 (tf_keras): Keras 3's fit under MultiWorkerMirroredStrategy
    # fails on the dict-of-features dataset ("Attempt to convert a value ({'price':
    # PerReplica...}) ... unsupported type dict"). The export holds the weights and the transform
    # graph (the test loads the chief's with TF2's and TF1's loaders).
    if os.environ.get("TF_USE_LEGACY_KERAS", "1") not in ("1", "true", "True"):
        sys.exit(
            "skewless.model.distributed: error: TF_USE_LEGACY_KERAS="
            f"{os.environ['TF_USE_LEGACY_KERAS']}: a worker trains with Keras 2 (leave it unset)"
        )
    legacy_keras()
    sys.exit(main())
