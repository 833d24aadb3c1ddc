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

from skewless.contract.spec import FeatureSpec
from skewless.data.raw import read_column_batches
from skewless.registry.versions import directory_sha256, file_sha256


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


def _provenance(model_dir: str | Path, data: str | Path) -> dict[str, str]:
    """What the scores belong to: the model folder (its checksum as the registry takes it, every
    file included) and the data file."""
    return {"model": directory_sha256(model_dir), "data": file_sha256(data)}


def write_scores(
    path: str | Path, probabilities: np.ndarray, *, model_dir: str | Path, data: str | Path
) -> None:
    """Writes one probability per row of ``data``, in its row order, with digests of the model
    that scored them and of ``data`` (NumPy's ``.npz``)."""
    with open(path, "wb") as out:  # a file object: NumPy would add its suffix to a bare name
        provenance = _provenance(model_dir, data)
        np.savez(
            out,
            probability=np.asarray(probabilities, dtype=np.float32).reshape(-1),
            model=np.array(provenance["model"]),
            data=np.array(provenance["data"]),
        )


def read_scores(path: str | Path, *, model_dir: str | Path, data: str | Path) -> np.ndarray:
    """The probabilities :func:`write_scores` wrote, if ``model_dir`` scored them on ``data``.

    Raises:
        ValueError: They were written for another model or other rows (a gate must never
            decide a model's promotion on scores it did not give); the file is not scores.
    """
    try:
        with np.load(path, allow_pickle=False) as stored:
            written = {name: str(stored[name]) for name in ("model", "data")}
            probabilities = np.asarray(stored["probability"])
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"{path}: not eval scores written by the train step ({err})") from None
    expected = _provenance(model_dir, data)
    if written["model"] != expected["model"]:
        raise ValueError(f"{path}: scored by another model than {model_dir}")
    if written["data"] != expected["data"]:
        raise ValueError(f"{path}: scored on other rows than {data}")
    return probabilities
