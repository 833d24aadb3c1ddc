"""The ranking network built from the feature spec: embeddings per id, pooled sequences, crosses,
and a deep-and-cross (DCN-v2) head; the retrieval towers reuse the same embedding layer."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import tensorflow as tf

from skewless.contract.spec import FeatureSpec
from skewless.model.hparams import HParams
from skewless.model.transform import SavedTransform, id_space


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


def id_inputs(
    spec: FeatureSpec, names: set[str] | None = None
) -> list[tuple[str, int | None, tuple[int, ...]]]:
    """(name, spec embedding width, input shape) of the id-valued transformed outputs.

    The shape is ``()`` for one id per row and ``(length,)`` for a padded sequence or a cross.
    ``names`` picks features (crosses only when None: a tower sees no cross of two sides).
    """
    out = [
        (f.name, f.embedding_dim, f.sequence_length)
        for f in spec.model_inputs
        if f.is_ids and (names is None or f.name in names)
    ]
    if names is None:
        out += [(c.name, c.embedding_dim, spec.cross_length(c)) for c in spec.crosses]
    crosses = {c.name for c in spec.crosses}
    return [
        (name, dim, (length,) if length > 1 or name in crosses else ()) for name, dim, length in out
    ]


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
) -> tuple[dict[str, tf.keras.Input], tf.Tensor]:
    """Keras inputs for transformed features and their embedded, pooled concatenation.

    Args:
        spec: The feature spec.
        vocabulary_size: ``tft_output.vocabulary_size_by_name``.
        hparams: Hyperparameters (embedding width where the spec sets none, L2).
        names: Only these features (no crosses), as a retrieval tower takes; None: every model
            input and cross, as the ranker takes.
    """
    layers = tf.keras.layers
    regularizer = tf.keras.regularizers.L2(hparams.l2) if hparams.l2 > 0 else None
    inputs: dict[str, tf.keras.Input] = {}
    pieces: list[tf.Tensor] = []
    for name, spec_dim, shape in id_inputs(spec, names):
        ids = inputs[name] = tf.keras.Input(shape=shape, dtype="int32", name=name)
        embedding = layers.Embedding(
            id_space(spec, name, vocabulary_size),
            spec_dim or hparams.embedding_dim,
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


def build_model(spec: FeatureSpec, vocabulary_size: Any, hparams: HParams) -> tf.keras.Model:
    """The ranking network over transformed features; outputs one logit per row.

    Args:
        spec: The feature spec.
        vocabulary_size: ``tft_output.vocabulary_size_by_name``.
        hparams: Hyperparameters.
    """
    layers = tf.keras.layers
    inputs, features = embed_features(spec, vocabulary_size, hparams)
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
    return tf.keras.Model(inputs=inputs, outputs=logit, name="dcn")


def model_inputs(transformed: dict[str, tf.Tensor], names: Any) -> dict[str, tf.Tensor]:
    """The transform's outputs named ``names``, ids as int32 (what the Keras inputs take)."""
    return {
        name: tf.cast(transformed[name], tf.int32)
        if transformed[name].dtype == tf.int64
        else transformed[name]
        for name in names
    }


# One SavedModel export at a time in a process: see ServedNetwork.save.
_SAVING = threading.Lock()


class ServedNetwork(tf.Module):
    """What an exported model holds: the transform graph and a trained network's weights.

    Calling it maps raw features (named ``[batch]`` tensors) through the transform to the network's
    output; the serving signatures call it. It keeps the weights, not the Keras model: a Keras
    model in a SavedModel brings its optimizer's slots (2 of every 3 variables) and Keras's own
    objects, which cost time to save and to load and which no signature reads.
    """

    def __init__(self, network: tf.keras.Model, tft_output: Any) -> None:
        super().__init__()
        # Keras 3 wraps each weight in a Variable of its own; the tf.Variable behind it is what
        # the graph reads, so the checkpoint names what TF1 loaders (TF Serving's) restore by.
        self.weights = [w if isinstance(w, tf.Variable) else w.value for w in network.weights]
        assert all(isinstance(w, tf.Variable) for w in self.weights), "an unbuilt network"
        assert isinstance(network.input, dict), "the network takes named inputs"
        self._network_call = network.__call__  # a bound method: not a trackable, so not saved
        self.transform = SavedTransform(tft_output)
        self.input_names = sorted(network.input)  # the transformed features it takes, by name

    def __call__(self, features: dict[str, tf.Tensor]) -> tf.Tensor:
        """The network's output for raw ``features``."""
        inputs = model_inputs(self.transform(features), self.input_names)
        return self._network_call(inputs, training=False)

    def save(self, export_dir: str | Path, signatures: dict[str, Any]) -> None:
        """Writes this network and ``signatures`` as a SavedModel, one save at a time.

        The train step exports the ranker and the retrieval towers from two threads, and both
        trace and save the same transform graph's objects (TFT's layer, its tables), which
        TensorFlow does not promise to do from two threads at once. An export takes a second or
        two of a stage's minute, so they wait for each other.
        """
        with _SAVING:
            tf.saved_model.save(self, str(export_dir), signatures=signatures)
