"""Shared fixtures: small generated datasets and the default spec."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from object_store import ObjectStore, object_store

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from skewless.contract.spec import FeatureSpec, load_spec
from skewless.data.generate import write_dataset

if TYPE_CHECKING:
    from skewless.model.train import TrainResult


def _keras_as_in_the_steps() -> None:
    """This process's ``tf.keras`` is Keras 3, as in the train step (unless the user set
    ``TF_USE_LEGACY_KERAS``), and the processes it starts (pipeline steps, CLI commands, workers)
    choose their own Keras, as they do outside tests. It imports TensorFlow and TFT when the
    session starts (each xdist worker: a few seconds), where only the fixtures that train did.

    TFT sets ``TF_USE_LEGACY_KERAS=1`` in ``os.environ`` when imported. Without this, whichever
    test imported TFT first made ``tf.keras`` Keras 2 here, and every step a test started later
    inherited the variable: tests trained Keras 2 models where ``skewless run`` trains Keras 3.
    """
    told = os.environ.get("TF_USE_LEGACY_KERAS")
    import tensorflow as tf

    tf.keras.layers  # noqa: B018  (resolves tf.keras now, before TFT's variable)
    import tensorflow_transform  # noqa: F401  (takes Keras 2 for itself: tf_keras)

    if told is None:
        os.environ.pop("TF_USE_LEGACY_KERAS", None)


_keras_as_in_the_steps()


@pytest.fixture(scope="session")
def default_spec() -> FeatureSpec:
    """The spec shipped for the default data."""
    return load_spec()


@pytest.fixture(scope="session")
def small_parquet(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3,000 rows of default data (seed 11) as Parquet."""
    return write_dataset(
        3_000, 11, tmp_path_factory.mktemp("data") / "small.parquet", show_progress=False
    )


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory, small_parquet: Path, default_spec) -> Path:
    """The small data through validated ingestion."""
    from skewless.data.ingest import ingest

    return ingest(small_parquet, default_spec, tmp_path_factory.mktemp("ingested")).out_dir


@pytest.fixture(scope="session")
def transform_dir(tmp_path_factory: pytest.TempPathFactory, ingested: Path, default_spec) -> Path:
    """TFT analysis of the small training split."""
    from skewless.model.transform import analyze

    out = tmp_path_factory.mktemp("transform")
    analyze(ingested / "train.parquet", default_spec, out)
    return out


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, ingested: Path, transform_dir: Path, default_spec
) -> TrainResult:
    """A small model trained for two epochs through the public training function."""
    from skewless.model.hparams import HParams
    from skewless.model.inputs import TrainingData
    from skewless.model.train import train

    data = TrainingData.ingested(ingested, transform_dir, default_spec)
    return train(data, tmp_path_factory.mktemp("trained"), HParams(epochs=2))


@pytest.fixture(scope="session")
def _object_store_server() -> Iterator[ObjectStore]:
    with object_store() as store:
        yield store


@pytest.fixture
def minio(_object_store_server: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> ObjectStore:
    """KFP's MinIO as a cluster step sees it: an S3 server on loopback, endpoint and keys set."""
    for name, value in _object_store_server.environment().items():
        monkeypatch.setenv(name, value)
    return _object_store_server


@pytest.fixture(scope="session")
def shuffled_model(
    tmp_path_factory: pytest.TempPathFactory, ingested: Path, transform_dir: Path, default_spec
) -> Path:
    """A model trained like ``trained`` but on shuffled labels: it has learned nothing true."""
    import pandas as pd

    from skewless.model.hparams import HParams
    from skewless.model.inputs import TrainingData
    from skewless.model.train import train

    out = tmp_path_factory.mktemp("shuffled")
    frame = pd.read_parquet(ingested / "train.parquet")
    label = default_spec.label.name
    frame[label] = frame[label].sample(frac=1.0, random_state=0).to_numpy()
    frame.to_parquet(out / "train.parquet")
    data = TrainingData(
        out / "train.parquet", ingested / "eval.parquet", transform_dir, default_spec
    )
    result = train(data, out / "trained", HParams(epochs=2))
    return Path(result.model_dir)
