"""The candidate's scores on the eval split, through its exported SavedModel, and their file.

Training scores the eval split through the model it has just exported (reloaded from disk, its
``serving_default`` signature with raw feature values: what will be served) and hands the scores
to the evaluate step in a file. Evaluation then needs no TensorFlow unless it has another model
to score (production's) or a retrieval stage to measure: on small data, importing TensorFlow was
most of the step's time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from skewless.contract.features import FeatureSpec
from skewless.data.raw import read_column_batches


def score(
    model_dir: str | Path, data: str | Path, spec: FeatureSpec, *, batch_rows: int = 8192
) -> np.ndarray:
    """Click probabilities for every row of ``data`` from the model's raw-feature signature."""
    import tensorflow as tf

    signature = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    names = [f.name for f in spec.model_inputs]
    out = [
        signature(**{name: tf.constant(raw[name]) for name in names})["probability"].numpy()
        for raw in read_column_batches(data, names, batch_rows)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def write_scores(path: str | Path, probabilities: np.ndarray) -> None:
    """Writes one probability per row, in the split's row order (NumPy's ``.npy``)."""
    with open(path, "wb") as out:  # a file object: np.save would add ".npy" to a bare name
        np.save(out, np.asarray(probabilities, dtype=np.float32).reshape(-1))


def read_scores(path: str | Path) -> np.ndarray:
    """The probabilities :func:`write_scores` wrote (evaluation checks that they fit its rows)."""
    with open(path, "rb") as source:
        return np.load(source, allow_pickle=False)
