"""The two-tower retrieval model: trained beside the ranker on the same transform graph.

The query tower reads the spec's ``side: user`` and ``side: context`` features, the candidate
tower its ``side: item`` features, both through the same TFT graph the ranker uses (TFT computes
only the outputs whose inputs are fed, so each tower's SavedModel takes its side's raw features
alone). Each tower ends in an L2-normalised embedding; the score is their dot product divided by a
temperature, plus the item's log prior (:mod:`skewless.retrieval.prior`, one more dimension).

Training: :mod:`skewless.retrieval.fit`.

Plain Keras rather than TensorFlow Recommenders: TFRS 0.7.7 is written for Keras 2, this project's
models are Keras 3, and the loss above is a dozen lines (docs/retrieval.md).

What ships (``model/retrieval/`` inside the registered model, so one version holds both stages):
``query/`` (SavedModel: raw query features -> ``embedding``), ``candidate/`` (SavedModel: raw
item features -> ``embedding``, to embed items added later), ``catalogue.parquet`` (the raw item
features, one row per item, in index order), ``embeddings.npy`` and the ANN index
(:mod:`skewless.retrieval.index`), and ``retrieval.json``.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import tensorflow as tf

from skewless.artifacts import SPEC_ASSET
from skewless.contract.spec import FeatureSpec
from skewless.model.hparams import HParams
from skewless.model.inputs import TransformedSplit
from skewless.model.network import ServedNetwork, embed_features
from skewless.model.transform import id_space, raw_signature
from skewless.progress import timed
from skewless.retrieval import index as ann
from skewless.retrieval.artifact import (
    CANDIDATE_DIRNAME,
    CATALOGUE_FILE,
    EMBEDDINGS_FILE,
    META_FILE,
    QUERY_DIRNAME,
    SIGNATURE,
)
from skewless.retrieval.catalogue import catalogue, item_names
from skewless.retrieval.fit import Stopped, fit_towers, raise_if_stopped
from skewless.retrieval.prior import AppendOne, ItemPrior, log_prior


def query_names(spec: FeatureSpec) -> list[str]:
    """Raw features the query tower reads (user and context sides), in spec order."""
    return [f.name for f in spec.on_side("user", "context")]


def build_tower(
    spec: FeatureSpec,
    vocabulary_size: Any,
    hparams: HParams,
    names: list[str],
    name: str,
    *,
    prior: np.ndarray | None = None,
) -> tf.keras.Model:
    """One tower: embedded features -> a hidden layer -> an L2-normalised embedding.

    With ``hparams.retrieval_popularity_prior`` each embedding gains one dimension: the query's
    is 1, the item's its ``prior`` (:func:`log_prior`) times the temperature, so the score (dot
    product / temperature) adds the item's log prior to what the towers learn.
    ``prior`` is given for the candidate tower only.
    """
    layers = tf.keras.layers
    inputs, features = embed_features(spec, vocabulary_size, hparams, names=set(names))
    hidden = layers.Dense(hparams.retrieval_width, activation="relu")(features)
    embedding = layers.UnitNormalization()(layers.Dense(hparams.retrieval_dim)(hidden))
    if hparams.retrieval_popularity_prior and prior is not None:
        assert spec.item_key is not None
        slot = ItemPrior(hparams.retrieval_temperature * prior, name="item_prior")
        embedding = layers.Concatenate()([embedding, slot(inputs[spec.item_key.name])])
    elif hparams.retrieval_popularity_prior:
        embedding = AppendOne()(embedding)
    return tf.keras.Model(inputs, embedding, name=name)


def export_tower(
    tower: tf.keras.Model, tft_output: Any, spec: FeatureSpec, names: list[str], export_dir: Path
) -> Path:
    """Writes a tower's SavedModel: its side's raw features -> ``embedding``."""
    network = ServedNetwork(tower, tft_output)

    # No AutoGraph, as in skewless.model.train.export_model: no tensor branches to convert.
    @tf.function(input_signature=[raw_signature(spec, names)], autograph=False)
    def serve(features: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {"embedding": network(features)}

    network.save(export_dir, {SIGNATURE: serve})
    (export_dir / SPEC_ASSET).parent.mkdir(parents=True, exist_ok=True)
    (export_dir / SPEC_ASSET).write_text(spec.source_text)
    return export_dir


def embed_items(signature: Any, items: pd.DataFrame, *, batch_rows: int = 16_384) -> np.ndarray:
    """Embeddings of catalogue rows from a candidate SavedModel's signature (:func:`export_tower`).

    The same call embeds the catalogue in the pipeline and any new items later (a catalogue of a
    million items in ``bench/bench_retrieval.py``), so both go through the one exported graph.
    """
    inputs = signature.structured_input_signature[1]
    out = [
        signature(
            **{
                name: tf.constant(chunk[name].to_numpy(), dtype=spec.dtype)
                for name, spec in inputs.items()
            }
        )["embedding"].numpy()
        for chunk in (items.iloc[s : s + batch_rows] for s in range(0, len(items), batch_rows))
    ]
    return np.concatenate(out).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Towers:
    """The two towers, built and not yet trained, and the positive rows they train on.

    Built apart from training (:func:`build_towers`) so the caller can build them in the thread
    that seeded Keras: their initial weights then do not depend on which thread trains them.
    """

    query: tf.keras.Model
    candidate: tf.keras.Model
    positives: dict[str, np.ndarray]


def build_towers(
    spec: FeatureSpec, tft_output: Any, train_split: TransformedSplit, hparams: HParams
) -> Towers:
    """Reads the training split's positive rows and builds both towers for them."""
    assert spec.item_key is not None, "the towers need a spec with side options"
    positives = train_split.positives(tower_inputs(spec))  # no crosses: half a transformed row
    if len(positives[spec.item_key.name]) < 2:
        raise ValueError("retrieval needs at least 2 positive training rows")
    vocabulary = tft_output.vocabulary_size_by_name
    key = spec.item_key.name
    prior = log_prior(positives[key].astype(np.int64), id_space(spec, key, vocabulary))
    return Towers(
        query=build_tower(spec, vocabulary, hparams, query_names(spec), "query_tower"),
        candidate=build_tower(
            spec, vocabulary, hparams, item_names(spec), "candidate_tower", prior=prior
        ),
        positives=positives,
    )


def tower_inputs(spec: FeatureSpec) -> set[str]:
    """Transformed features either tower reads."""
    return {*query_names(spec), *item_names(spec)}


def train_retrieval(
    spec: FeatureSpec,
    tft_output: Any,
    towers: Towers,
    eval_split: TransformedSplit,
    splits: tuple[str | Path, ...],
    hparams: HParams,
    out_dir: str | Path,
    *,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Trains the towers, embeds the catalogue, builds the index and writes ``out_dir``.

    Args:
        spec: The feature spec (with ``side`` options; see :attr:`FeatureSpec.has_retrieval`).
        tft_output: The transform graph.
        towers: The towers and the training split's positive rows (:func:`build_towers`).
        eval_split: The transformed eval split (its positives stop training early).
        splits: Clean splits whose items make the catalogue.
        hparams: Hyperparameters.
        out_dir: Receives the retrieval artifact (see the module docstring).
        stop: Once set, the stage stops at its next training step or phase (:class:`Stopped`)
            and removes what it wrote to ``out_dir``.

    Returns:
        The training summary (also in ``retrieval.json``).
    """
    assert spec.item_key is not None, "train_retrieval needs a spec with side options"
    timings: dict[str, float] = {}
    query, candidate = towers.query, towers.candidate
    with timed(timings, "fit_seconds"):
        losses = fit_towers(
            query, candidate, towers.positives, spec.item_key.name, hparams,
            validation=eval_split.positives(tower_inputs(spec)), stop=stop,
        )  # fmt: skip
    raise_if_stopped(stop)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    try:
        with timed(timings, "embed_seconds"):
            items = catalogue(spec, *splits)
            export_tower(candidate, tft_output, spec, item_names(spec), out / CANDIDATE_DIRNAME)
            raise_if_stopped(stop)
            signature = tf.saved_model.load(str(out / CANDIDATE_DIRNAME)).signatures[SIGNATURE]
            embeddings = embed_items(signature, items)
            items.to_parquet(out / CATALOGUE_FILE, index=False)
            np.save(out / EMBEDDINGS_FILE, embeddings)
        raise_if_stopped(stop)
        with timed(timings, "index_seconds"):
            index = ann.build(embeddings)  # not interruptible: seconds at 50k items
            index.save(out)
        raise_if_stopped(stop)
        export_tower(query, tft_output, spec, query_names(spec), out / QUERY_DIRNAME)
    except Stopped:
        shutil.rmtree(out, ignore_errors=True)  # a stopped stage leaves no half of its artifact
        raise
    summary = {
        "item_key": spec.item_key.name,
        "query_features": query_names(spec),
        "item_features": item_names(spec),
        "items": len(items),
        "positives_train": len(towers.positives[spec.item_key.name]),
        "dim": int(embeddings.shape[1]),
        "index": index.describe(),
        "history": losses,
        "epochs_run": len(losses["loss"]),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    (out / META_FILE).write_text(json.dumps(summary, indent=1))
    return summary
