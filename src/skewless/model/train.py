"""Keras ranking model built from the feature spec, trained on TFT-transformed data, exported whole.

Training reads the clean Parquet splits, applies the TFT transform graph in-process in large
batches (see docs/performance.md for why this beats materializing transformed data with Beam here)
into chunk files on local disk, and trains a deep-and-cross network on batches streamed from them
(:mod:`skewless.model.inputs`): memory does not grow with the rows. The exported SavedModel
carries the transform:

* ``serving_default``: raw features as named ``[batch]`` tensors -> ``probability`` and ``logit``;
* ``serve_tf_examples``: serialized ``tf.Example`` protos (key ``examples``) -> the same outputs.

A logistic-regression baseline on the same transformed features (:mod:`skewless.model.baseline`) is
fitted alongside so every run reports how much the deep model adds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from skewless.artifacts import EVAL_SCORES, SPEC_ASSET, TRAINING_LOGS, TRAINING_SUMMARY
from skewless.contract.spec import FeatureSpec
from skewless.evaluation.scores import score, write_scores
from skewless.model.hparams import HParams
from skewless.model.inputs import TrainingData, Transformed, TransformedSplit
from skewless.model.network import ServedNetwork, build_model, model_inputs
from skewless.model.transform import raw_feature_spec, raw_signature
from skewless.progress import timed
from skewless.retrieval.fit import Stopped

MODEL_DIRNAME = "model"
SIGNATURE_RAW = "serving_default"
SIGNATURE_EXAMPLES = "serve_tf_examples"


MIN_AUTO_BATCH, MAX_AUTO_BATCH = 128, 1024


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What training exported and measured; ``training_summary.json`` holds the same as JSON.

    Attributes:
        model_dir: The exported SavedModel (the transform inside; ``retrieval/`` beside the
            ranker when the spec names sides).
        rows_train: Clean training rows.
        rows_eval: Clean eval rows (early stopping, the eval AUC).
        epochs_run: Epochs trained before early stopping (or the limit).
        history: Keras' per-epoch losses and metrics.
        eval_auc: The ranker's AUC on the eval split.
        hparams: The hyperparameters as trained (``batch_size`` resolved when it was 0).
        timings: Wall seconds per phase (``transform_seconds``, ``fit_seconds``, ...); the
            ranking stage's phases run while ``retrieval_seconds`` does, sharing the cores.
        baseline_eval_auc: The linear baseline's eval AUC (None: no baseline was trained).
        retrieval: The two-tower model's training summary (None: the model only ranks).
    """

    model_dir: str
    rows_train: int
    rows_eval: int
    epochs_run: int
    history: dict[str, list[float]]
    eval_auc: float
    hparams: HParams
    timings: dict[str, float]
    baseline_eval_auc: float | None = None
    retrieval: dict[str, Any] | None = None

    def to_json(self) -> str:
        """The summary file's text; what was not measured (None) is left out."""
        fields = dataclasses.asdict(self)
        return json.dumps({k: v for k, v in fields.items() if v is not None}, indent=1)


def auto_batch_size(rows: int) -> int:
    """About 100 steps per epoch: a power of two near ``rows / 100``, from 128 to 1024.

    At 400k rows this is 1024 (the size the default data was tuned with); at 12k rows it is 128,
    where 1024 would give 12 steps per epoch and stop early undertrained.
    """
    target = max(rows, 1) / 100
    return int(min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, 2 ** round(math.log2(max(target, 1))))))


class _EvalMetrics(tf.keras.callbacks.Callback):
    """Adds ``val_loss`` and ``val_auc`` to each epoch's logs from one pass over the eval split.

    The AUC is exact (:func:`skewless.evaluation.metrics.roc_auc`, as evaluation reports it), and
    no training step pays for it: Keras's ``AUC`` metric updated 1,000 thresholds on every batch,
    a sixth of each step's time at 400k rows.
    """

    def __init__(self, evaluation: TransformedSplit) -> None:
        super().__init__()
        self.evaluation = evaluation
        self.labels = evaluation.labels()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        from skewless.evaluation import metrics

        labels = self.labels
        logits = predict_split(self.model, self.evaluation)
        if logs is not None:
            logs["val_loss"] = metrics.log_loss(labels, 0.5 + 0.5 * np.tanh(logits / 2))  # sigmoid
            logs["val_auc"] = metrics.roc_auc(labels, logits)


def fit_model(
    model: tf.keras.Model,
    train: TransformedSplit,
    evaluation: TransformedSplit,
    hparams: HParams,
    log_dir: Path | None,
) -> dict[str, list[float]]:
    """Trains ``model`` with early stopping on eval AUC; returns the per-epoch history.

    Args:
        model: A model from :func:`build_model`.
        train: The transformed training split (streamed, :meth:`TransformedSplit.batches`).
        evaluation: The transformed eval split (early stopping watches its AUC).
        hparams: Hyperparameters (batch size 0: :func:`auto_batch_size` of the training rows).
        log_dir: TensorBoard log folder, or None for no logs.
    """
    batch_size = hparams.batch_size or auto_batch_size(train.rows)
    model.compile(
        optimizer=tf.keras.optimizers.Adam(hparams.learning_rate),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
    )
    callbacks: list[Any] = [
        _EvalMetrics(evaluation),  # first: the callbacks after it read what it adds
        tf.keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=hparams.patience, restore_best_weights=True
        ),
    ]
    if log_dir is not None:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(log_dir), profile_batch=0))
    history = model.fit(
        train.batches(batch_size, hparams.seed),
        epochs=hparams.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset is shuffled above, per epoch
        verbose=0,
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}


def export_model(
    model: tf.keras.Model, tft_output: Any, spec: FeatureSpec, export_dir: str | Path
) -> Path:
    """Writes the SavedModel with the transform graph and both serving signatures."""
    network = ServedNetwork(model, tft_output)
    raw_spec = raw_feature_spec(spec, with_label=False)

    # No AutoGraph: nothing here branches or loops on a tensor, and AutoGraph would convert the
    # TFT layer's and Keras's Python, recursively, only to trace the same graph.
    @tf.function(input_signature=[raw_signature(spec)], autograph=False)
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logit = network(features)
        return {"probability": tf.sigmoid(logit), "logit": logit}

    @tf.function(
        input_signature=[tf.TensorSpec([None], tf.string, name="examples")], autograph=False
    )
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        # Calls the traced raw signature: the transform and the network are traced once, not
        # twice (a quarter of the export's time).
        return serve_raw(tf.io.parse_example(examples, raw_spec))

    path = Path(export_dir)
    network.save(path, {SIGNATURE_RAW: serve_raw, SIGNATURE_EXAMPLES: serve_examples})
    # The spec travels inside the model, so the server validates requests with the very contract
    # the model was trained under.
    (path / SPEC_ASSET).parent.mkdir(parents=True, exist_ok=True)
    (path / SPEC_ASSET).write_text(spec.source_text)
    return path


def predict_logits(
    model: tf.keras.Model, features: dict[str, np.ndarray], chunk_rows: int = 16_384
) -> np.ndarray:
    """Logits of ``model`` for transformed ``features``, one per row.

    The model is called on chunks directly, not through ``model.predict``: under a distribution
    strategy (:mod:`skewless.model.distributed`) ``predict`` would share the rows out among the
    workers, and each worker needs the same AUC to stop after the same epoch.
    """
    names = sorted(model.input)
    rows = len(next(iter(features.values())))
    chunks = [
        model(
            model_inputs({k: features[k][i : i + chunk_rows] for k in names}, names),
            training=False,
        )
        for i in range(0, rows, chunk_rows)
    ]
    return np.concatenate([np.asarray(chunk).reshape(-1) for chunk in chunks])


def predict_split(model: tf.keras.Model, split: TransformedSplit) -> np.ndarray:
    """Logits of ``model`` for every row of a transformed split, chunk by chunk, in file order."""
    return np.concatenate([predict_logits(model, features) for features, _ in split.chunks()])


def train(
    data: TrainingData,
    out_dir: str | Path,
    hparams: HParams | None = None,
    *,
    train_baseline: bool = True,
    model_dir: str | Path | None = None,
    scores_path: str | Path | None = None,
) -> TrainResult:
    """Trains the ranking model (and the linear baseline) and exports the serving model.

    Args:
        data: The clean splits, the transform graph and the spec.
        out_dir: Receives ``model/`` (SavedModel; with ``model/retrieval/`` when the spec names
            sides, :mod:`skewless.retrieval.towers`), ``logs/`` (TensorBoard),
            ``training_summary.json`` and ``eval_scores.npz`` (the eval split scored through the
            exported model, :mod:`skewless.evaluation.scores`).
        hparams: Hyperparameters (defaults when None).
        train_baseline: Also train the logistic-regression baseline and report its eval AUC.
        model_dir: The SavedModel's folder instead of ``out_dir/model`` (a pipeline step's
            model artifact).
        scores_path: Where the eval scores go instead of ``out_dir/eval_scores.npz``.

    Returns:
        What was exported and measured (also written to ``training_summary.json``).
    """
    hparams = hparams or HParams()
    tf.keras.utils.set_random_seed(hparams.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_dir = Path(model_dir) if model_dir is not None else out / MODEL_DIRNAME
    with data.transformed(out) as inputs:
        result = _train_on(inputs, data, out, export_dir, hparams, train_baseline=train_baseline)
    # Through the model as exported, reloaded: what evaluation measures is what will be served.
    started = time.perf_counter()
    scores = score(result.model_dir, data.eval_data, data.spec)
    where = Path(scores_path) if scores_path is not None else out / EVAL_SCORES
    write_scores(where, scores, model_dir=result.model_dir, data=data.eval_data)
    seconds = round(time.perf_counter() - started, 3)
    result = dataclasses.replace(result, timings={**result.timings, "score_seconds": seconds})
    (out / TRAINING_SUMMARY).write_text(result.to_json())
    return result


def _train_on(
    inputs: Transformed,
    data: TrainingData,
    out: Path,
    export_dir: Path,
    hparams: HParams,
    *,
    train_baseline: bool,
) -> TrainResult:
    """:func:`train` past the transform: the ranking stage here, retrieval beside it.

    This thread fits the ranker, exports it and fits the linear baseline while a second thread
    trains the retrieval towers, embeds the catalogue and builds the index. Each keeps about one
    core busy (the train step runs each TensorFlow op on one thread,
    :func:`skewless.runtime.one_thread_per_op`; the fit loops, the index build and L-BFGS are
    serial), so the two stages fill two cores. Every model is built here first, in the thread
    Keras was seeded in, so its initial weights do not depend on which thread trains it. A
    failure in the retrieval thread is raised here once the ranking stage is done; a failure
    here stops the retrieval thread at its next step or phase, and it removes what it wrote.
    """
    from skewless.evaluation import metrics
    from skewless.model.baseline import baseline_eval_auc

    tft_output, spec = inputs.tft_output, data.spec
    train_split, eval_split = inputs.train, inputs.eval
    timings = {"transform_seconds": inputs.seconds}
    if hparams.batch_size == 0:
        hparams = dataclasses.replace(hparams, batch_size=auto_batch_size(train_split.rows))
    vocabulary = tft_output.vocabulary_size_by_name
    model = build_model(spec, vocabulary, hparams)
    stop = threading.Event()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="retrieval") as pool:
        retrieval: Future[dict[str, Any]] | None = None
        if spec.has_retrieval:
            # Inside the model folder: one registered version carries both stages, so aliases,
            # canaries and rollbacks move retrieval and ranking together.
            from skewless.retrieval.artifact import RETRIEVAL_DIRNAME
            from skewless.retrieval.towers import Towers, build_towers, train_retrieval

            def retrieve(towers: Towers) -> dict[str, Any]:
                with timed(timings, "retrieval_seconds"):
                    return train_retrieval(
                        spec, tft_output, towers, eval_split, (data.train_data, data.eval_data),
                        hparams, export_dir / RETRIEVAL_DIRNAME, stop=stop,
                    )  # fmt: skip

            # Passed, not kept here: the positive rows are freed when the stage ends.
            retrieval = pool.submit(retrieve, build_towers(spec, tft_output, train_split, hparams))
        try:
            with timed(timings, "fit_seconds"):
                history = fit_model(model, train_split, eval_split, hparams, out / TRAINING_LOGS)
            eval_logits = predict_split(model, eval_split)
            with timed(timings, "export_seconds"):
                model_dir = export_model(model, tft_output, spec, export_dir)
            baseline_auc = None
            if train_baseline:
                with timed(timings, "baseline_seconds"):
                    baseline_auc = baseline_eval_auc(train_split, eval_split, spec, vocabulary,
                                                     hparams.l2)  # fmt: skip
            retrieval_summary = retrieval.result() if retrieval is not None else None
        except BaseException as failure:
            stop.set()
            if retrieval is not None:
                other = retrieval.exception()  # waits for the stage to stop
                if other is not None and other is not failure and not isinstance(other, Stopped):
                    failure.add_note(f"the retrieval stage failed too: {other!r}")
            raise
    return TrainResult(
        model_dir=str(model_dir),
        rows_train=train_split.rows,
        rows_eval=eval_split.rows,
        epochs_run=len(history.get("loss", [])),
        history=history,
        eval_auc=metrics.roc_auc(eval_split.labels(), eval_logits),
        hparams=hparams,
        timings={k: round(v, 3) for k, v in timings.items()},
        baseline_eval_auc=baseline_auc,
        retrieval=retrieval_summary,
    )
