"""Keras ranking model built from the feature spec, trained on TFT-transformed data, exported whole.

Training reads the clean Parquet splits, applies the TFT transform graph in-process in large
batches (see docs/performance.md for why this beats materializing transformed data with Beam here)
and trains a deep-and-cross network from memory. The exported SavedModel carries the transform:

* ``serving_default``: raw features as named ``[batch]`` tensors -> ``probability`` and ``logit``;
* ``serve_tf_examples``: serialized ``tf.Example`` protos (key ``examples``) -> the same outputs.

A logistic-regression baseline on the same transformed features is trained alongside so every run
reports how much the deep model adds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from skewless.contract.spec import SPEC_ASSET, FeatureSpec
from skewless.data.raw import read_column_batches
from skewless.model.hparams import HParams
from skewless.model.transform import analysis_columns, id_space, raw_feature_spec, raw_signature

MODEL_DIRNAME = "model"
SIGNATURE_RAW = "serving_default"
SIGNATURE_EXAMPLES = "serve_tf_examples"


MIN_AUTO_BATCH, MAX_AUTO_BATCH = 128, 1024


def auto_batch_size(rows: int) -> int:
    """About 100 steps per epoch: a power of two near ``rows / 100``, from 128 to 1024.

    At 400k rows this is 1024 (the size the default data was tuned with); at 12k rows it is 128,
    where 1024 would give 12 steps per epoch and stop early undertrained.
    """
    target = max(rows, 1) / 100
    return int(min(MAX_AUTO_BATCH, max(MIN_AUTO_BATCH, 2 ** round(math.log2(max(target, 1))))))


def load_transformed(
    path: str | Path, spec: FeatureSpec, tft_output: Any, *, batch_rows: int = 16_384
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Applies the transform graph to a clean split in batches; returns (features, labels)."""
    layer = tft_output.transform_features_layer()
    label = spec.label.name
    raw_names = [f.name for f in spec.model_inputs]

    @tf.function
    def apply(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return layer(features)

    parts: dict[str, list[np.ndarray]] = {}
    labels: list[np.ndarray] = []
    for raw in read_column_batches(path, analysis_columns(spec), batch_rows):
        transformed = apply({name: tf.constant(raw[name]) for name in raw_names})
        for name, tensor in transformed.items():
            if name == label:
                continue
            value = tensor.numpy()
            parts.setdefault(name, []).append(
                value.astype(np.int32) if value.dtype == np.int64 else value
            )
        labels.append(raw[label].astype(np.float32))
    if not labels:
        raise ValueError(f"{path} has no rows")
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}, np.concatenate(labels)


class CrossLayer(tf.keras.layers.Layer):
    """One DCN-v2 cross layer: ``x0 * (W x + b) + x``."""

    def build(self, input_shape: Any) -> None:
        """Creates the full-rank weight matrix."""
        width = int(input_shape[-1])
        self.dense = tf.keras.layers.Dense(width, kernel_initializer="glorot_uniform")
        self.dense.build(input_shape)

    def call(self, x0: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """Applies the cross."""
        return x0 * self.dense(x) + x


def _id_outputs(spec: FeatureSpec, names: set[str] | None) -> list[tuple[str, int | None, int]]:
    """(name, spec embedding width, sequence length) of the id-valued transformed outputs.

    ``names`` picks features (crosses only when None: a tower sees no cross of two sides).
    """
    out = [
        (f.name, f.embedding_dim, f.sequence_length)
        for f in spec.model_inputs
        if f.is_ids and (names is None or f.name in names)
    ]
    if names is None:
        out += [(c.name, c.embedding_dim, spec.cross_length(c)) for c in spec.crosses]
    return out


def _is_cross(spec: FeatureSpec, name: str) -> bool:
    return any(c.name == name for c in spec.crosses)


class SequencePool(tf.keras.layers.Layer):
    """Pools a padded sequence's embeddings (id 0 is padding): mean, sum and log(1 + length).

    Both mean and sum are kept because they answer different questions: the mean says what a
    user's history is like, the sum how many times something occurs (e.g. how many history
    entries match the item's categories), which a mean divides away.
    """

    def call(self, ids: tf.Tensor, embedded: tf.Tensor) -> tf.Tensor:
        """Returns ``[mean, sum, log1p(count)]`` concatenated on the last axis."""
        mask = tf.cast(tf.not_equal(ids, 0), embedded.dtype)
        count = tf.reduce_sum(mask, axis=1, keepdims=True)
        total = tf.reduce_sum(embedded * tf.expand_dims(mask, -1), axis=1)
        return tf.concat([total / tf.maximum(count, 1.0), total, tf.math.log1p(count)], axis=-1)


def embed_features(
    spec: FeatureSpec,
    vocabulary_size: Any,
    hparams: HParams,
    *,
    names: set[str] | None = None,
    linear: bool = False,
) -> tuple[dict[str, tf.keras.Input], tf.Tensor]:
    """Keras inputs for transformed features and their embedded, pooled concatenation.

    Args:
        spec: The feature spec.
        vocabulary_size: ``tft_output.vocabulary_size_by_name``.
        hparams: Hyperparameters (embedding width where the spec sets none, L2).
        names: Only these features (no crosses), as a retrieval tower takes; None: every model
            input and cross, as the ranker takes.
        linear: Embeddings of width 1 (the logistic-regression baseline).
    """
    layers = tf.keras.layers
    regularizer = tf.keras.regularizers.L2(hparams.l2) if hparams.l2 > 0 else None
    inputs: dict[str, tf.keras.Input] = {}
    pieces: list[tf.Tensor] = []
    for name, spec_dim, length in _id_outputs(spec, names):
        shape = (length,) if length > 1 or _is_cross(spec, name) else ()
        ids = inputs[name] = tf.keras.Input(shape=shape, dtype="int32", name=name)
        embedding = layers.Embedding(
            id_space(spec, name, vocabulary_size),
            1 if linear else (spec_dim or hparams.embedding_dim),
            embeddings_regularizer=regularizer,
            name=f"embed_{name}",
        )
        embedded = embedding(ids)
        if len(ids.shape) == 1:
            pieces.append(embedded)
        else:
            pieces.append(SequencePool(name=f"pool_{name}")(ids, embedded))
    for feature in spec.model_inputs:
        if not feature.is_ids and (names is None or feature.name in names):
            inputs[feature.name] = tf.keras.Input(shape=(), dtype="float32", name=feature.name)
            pieces.append(layers.Reshape((1,))(inputs[feature.name]))
    features = pieces[0] if len(pieces) == 1 else layers.Concatenate(name="features")(pieces)
    return inputs, features


def build_model(
    spec: FeatureSpec, vocabulary_size: Any, hparams: HParams, *, linear: bool = False
) -> tf.keras.Model:
    """The ranking network over transformed features; outputs one logit per row.

    Args:
        spec: The feature spec.
        vocabulary_size: ``tft_output.vocabulary_size_by_name``.
        hparams: Hyperparameters.
        linear: Build the logistic-regression baseline instead: one weight per id and per numeric
            input (embeddings of width 1), no hidden layers.
    """
    layers = tf.keras.layers
    inputs, features = embed_features(spec, vocabulary_size, hparams, linear=linear)
    if linear:
        logit = layers.Dense(1, name="logit")(features)
    else:
        cross = features
        for _ in range(hparams.cross_layers):
            cross = CrossLayer()(features, cross)
        deep = features
        for depth in range(hparams.deep_layers):
            deep = layers.Dense(max(hparams.deep_width >> depth, 8), activation="relu")(deep)
            if hparams.dropout:
                deep = layers.Dropout(hparams.dropout, seed=hparams.seed)(deep)
        logit = layers.Dense(1, name="logit")(layers.Concatenate()([cross, deep]))
    logit = layers.Reshape((), name="logit_flat")(logit)
    return tf.keras.Model(inputs=inputs, outputs=logit, name="linear" if linear else "dcn")


def fit_model(
    model: tf.keras.Model,
    train: tuple[dict[str, np.ndarray], np.ndarray],
    evaluation: tuple[dict[str, np.ndarray], np.ndarray],
    hparams: HParams,
    log_dir: Path | None,
) -> dict[str, list[float]]:
    """Trains ``model`` with early stopping on eval AUC; returns the per-epoch history.

    Args:
        model: A model from :func:`build_model`.
        train: Transformed training features and labels.
        evaluation: Transformed eval features and labels (early stopping watches their AUC).
        hparams: Hyperparameters (batch size 0: :func:`auto_batch_size` of the training rows).
        log_dir: TensorBoard log folder, or None for no logs.
    """
    batch_size = hparams.batch_size or auto_batch_size(len(train[1]))
    model.compile(
        optimizer=tf.keras.optimizers.Adam(hparams.learning_rate),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc", num_thresholds=1000)],
    )
    callbacks: list[Any] = [
        tf.keras.callbacks.EarlyStopping(
            monitor="val_auc", mode="max", patience=hparams.patience, restore_best_weights=True
        )
    ]
    if log_dir is not None:
        callbacks.append(tf.keras.callbacks.TensorBoard(log_dir=str(log_dir), profile_batch=0))
    dataset = (
        tf.data.Dataset.from_tensor_slices(train)
        .shuffle(len(train[1]), seed=hparams.seed, reshuffle_each_iteration=True)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    eval_dataset = tf.data.Dataset.from_tensor_slices(evaluation).batch(8192)
    history = model.fit(
        dataset,
        validation_data=eval_dataset,
        epochs=hparams.epochs,
        callbacks=callbacks,
        shuffle=False,  # the dataset is shuffled above, per epoch
        verbose=0,
    )
    return {key: [float(v) for v in values] for key, values in history.history.items()}


@tf.autograph.experimental.do_not_convert  # plain Python over names; nothing to convert
def model_inputs(transformed: dict[str, tf.Tensor], names: Any) -> dict[str, tf.Tensor]:
    """The transform's outputs named ``names``, ids as int32 (what the Keras inputs take)."""
    return {
        name: tf.cast(transformed[name], tf.int32)
        if transformed[name].dtype == tf.int64
        else transformed[name]
        for name in names
    }


class _ServingModule(tf.Module):
    """What the SavedModel holds: the TFT layer and the trained network."""

    def __init__(self, model: tf.keras.Model, tft_output: Any, spec: FeatureSpec) -> None:
        super().__init__()
        self.model = model
        self.tft_layer = tft_output.transform_features_layer()
        self.input_names = sorted(inputs for inputs in model.input)
        self.raw_spec = raw_feature_spec(spec, with_label=False)

    def predict_raw(self, features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logit = self.model(model_inputs(self.tft_layer(features), self.input_names), training=False)
        return {"probability": tf.sigmoid(logit), "logit": logit}


def export_model(
    model: tf.keras.Model, tft_output: Any, spec: FeatureSpec, export_dir: str | Path
) -> Path:
    """Writes the SavedModel with the transform graph and both serving signatures."""
    module = _ServingModule(model, tft_output, spec)

    @tf.function(input_signature=[raw_signature(spec)])
    def serve_raw(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return module.predict_raw(features)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="examples")])
    def serve_examples(examples: tf.Tensor) -> dict[str, tf.Tensor]:
        return module.predict_raw(tf.io.parse_example(examples, module.raw_spec))

    path = Path(export_dir)
    tf.saved_model.save(
        module,
        str(path),
        signatures={SIGNATURE_RAW: serve_raw, SIGNATURE_EXAMPLES: serve_examples},
    )
    # The spec travels inside the model, so the server validates requests with the very contract
    # the model was trained under.
    (path / SPEC_ASSET).parent.mkdir(parents=True, exist_ok=True)
    (path / SPEC_ASSET).write_text(spec.source_text)
    return path


def predict_logits(model: tf.keras.Model, features: dict[str, np.ndarray]) -> np.ndarray:
    """Logits of ``model`` for transformed ``features``, one per row."""
    return np.asarray(model.predict(features, batch_size=16_384, verbose=0)).reshape(-1)


def train(
    train_data: str | Path,
    eval_data: str | Path,
    transform_dir: str | Path,
    spec: FeatureSpec,
    out_dir: str | Path,
    hparams: HParams | None = None,
    *,
    train_baseline: bool = True,
) -> dict[str, Any]:
    """Trains the ranking model (and the linear baseline) and exports the serving model.

    Args:
        train_data: Clean training rows (Parquet).
        eval_data: Clean eval rows (Parquet), used for early stopping.
        transform_dir: Output of :func:`skewless.model.transform.analyze`.
        spec: The feature spec.
        out_dir: Receives ``model/`` (SavedModel; with ``model/retrieval/`` when the spec names
            sides, :mod:`skewless.retrieval.towers`), ``logs/`` (TensorBoard) and
            ``training_summary.json``.
        hparams: Hyperparameters (defaults when None).
        train_baseline: Also train the logistic-regression baseline and report its eval AUC.

    Returns:
        The training summary (also written to ``training_summary.json``).
    """
    import tensorflow_transform as tft

    from skewless.evaluation import metrics

    hparams = hparams or HParams()
    tf.keras.utils.set_random_seed(hparams.seed)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()
    tft_output = tft.TFTransformOutput(str(transform_dir))
    train_xy = load_transformed(train_data, spec, tft_output)
    eval_xy = load_transformed(eval_data, spec, tft_output)
    timings["transform_seconds"] = time.perf_counter() - started

    if hparams.batch_size == 0:
        hparams = dataclasses.replace(hparams, batch_size=auto_batch_size(len(train_xy[1])))
    started = time.perf_counter()
    model = build_model(spec, tft_output.vocabulary_size_by_name, hparams)
    history = fit_model(model, train_xy, eval_xy, hparams, out / "logs")
    timings["fit_seconds"] = time.perf_counter() - started
    eval_logits = predict_logits(model, eval_xy[0])
    summary: dict[str, Any] = {
        "rows_train": len(train_xy[1]),
        "rows_eval": len(eval_xy[1]),
        "epochs_run": len(history.get("loss", [])),
        "history": history,
        "eval_auc": metrics.roc_auc(eval_xy[1], eval_logits),
        "hparams": dataclasses.asdict(hparams),
    }
    if train_baseline:
        started = time.perf_counter()
        baseline = build_model(spec, tft_output.vocabulary_size_by_name, hparams, linear=True)
        # A convex model takes large steps safely; this keeps the baseline cheap beside the DCN.
        linear_hparams = dataclasses.replace(
            hparams, batch_size=4 * hparams.batch_size, learning_rate=0.02
        )
        fit_model(baseline, train_xy, eval_xy, linear_hparams, None)
        summary["baseline_eval_auc"] = metrics.roc_auc(
            eval_xy[1], predict_logits(baseline, eval_xy[0])
        )
        timings["baseline_seconds"] = time.perf_counter() - started

    started = time.perf_counter()
    model_dir = export_model(model, tft_output, spec, out / MODEL_DIRNAME)
    timings["export_seconds"] = time.perf_counter() - started
    if spec.has_retrieval:
        # Inside the model folder: one registered version carries both stages, so aliases,
        # canaries and rollbacks move retrieval and ranking together.
        from skewless.retrieval.artifact import RETRIEVAL_DIRNAME
        from skewless.retrieval.towers import train_retrieval

        started = time.perf_counter()
        summary["retrieval"] = train_retrieval(
            spec, tft_output, train_xy, eval_xy, (train_data, eval_data), hparams,
            model_dir / RETRIEVAL_DIRNAME,
        )  # fmt: skip
        timings["retrieval_seconds"] = time.perf_counter() - started
    summary["model_dir"] = str(model_dir)
    summary["timings"] = {k: round(v, 3) for k, v in timings.items()}
    (out / "training_summary.json").write_text(json.dumps(summary, indent=1))
    return summary
