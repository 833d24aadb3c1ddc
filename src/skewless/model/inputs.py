"""What training is fed: the transformed splits as arrays, and their batches, reordered each epoch.

Training reads the clean Parquet splits and applies the TFT transform graph in-process in large
batches (see docs/performance.md for why this beats materializing transformed data with Beam
here); the arrays stay in memory once, and each epoch gathers its batches by a permutation.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from skewless.contract.spec import FeatureSpec
from skewless.data.raw import read_column_batches
from skewless.model.transform import analysis_columns


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


def shuffled_batches(
    data: Any, batch_size: int, seed: int, *, drop_remainder: bool = False
) -> tf.data.Dataset:
    """Batches of ``data`` (arrays with rows first, nested) in a new random order each epoch.

    The order is a permutation of row numbers drawn in NumPy, and each batch gathers its rows:
    memory holds the arrays once. A ``shuffle`` buffer as long as the data held every row again
    as separate tensors (several times the arrays' size) and refilled it at each epoch's start.
    """
    rows = len(tf.nest.flatten(data)[0])
    tensors = tf.nest.map_structure(tf.constant, data)
    rng = np.random.default_rng(seed)

    # With drop_remainder, only full batches (an in-batch softmax wants its batch size).
    last = rows - batch_size + 1 if drop_remainder else rows

    def batch_rows() -> Iterator[np.ndarray]:
        order = rng.permutation(rows)  # drawn anew each time the dataset is iterated
        for start in range(0, last, batch_size):
            yield order[start : start + batch_size]

    return (
        tf.data.Dataset.from_generator(batch_rows, output_signature=tf.TensorSpec([None], tf.int64))
        # Keras counts steps per epoch from it (a generator's length is unknown).
        .apply(tf.data.experimental.assert_cardinality(len(range(0, last, batch_size))))
        .map(
            lambda index: tf.nest.map_structure(lambda t: tf.gather(t, index), tensors),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        .prefetch(tf.data.AUTOTUNE)
    )
