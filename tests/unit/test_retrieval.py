"""Retrieval pieces on their own: spec sides, the ANN index against exact search, the catalogue."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from skewless.contract.spec import SpecError, load_spec_text
from skewless.retrieval import index as ann

SIDED = """
features:
  user_id: {kind: id, encoding: hash, hash_buckets: 64, side: user}
  item_id: {kind: id, encoding: vocabulary, side: item}
  price: {kind: numeric, side: item}
  hour: {kind: numeric, side: context}
  clicked: {kind: label}
"""


def _unit_vectors(rows: int, dim: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(20, dim))
    vectors = centers[rng.integers(0, 20, rows)] + 0.5 * rng.normal(size=(rows, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def test_sides_name_the_towers_and_the_catalogue_key():
    spec = load_spec_text(SIDED)
    assert spec.has_retrieval and spec.item_key.name == "item_id"
    assert [f.name for f in spec.on_side("user", "context")] == ["user_id", "hour"]
    assert [f.name for f in spec.on_side("item")] == ["item_id", "price"]
    assert not load_spec_text(SIDED.replace(", side: user", "").replace(", side: item", "")
                              .replace(", side: context", "")).has_retrieval  # fmt: skip


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (("side: user}", "side: users}"), "side: 'users' is not one of"),
        (("{kind: label}", "{kind: label, side: user}"), "a label feature feeds no model"),
        (
            (
                "item_id: {kind: id, encoding: vocabulary, side: item}",
                "item_id: {kind: id, encoding: vocabulary}",
            ),
            "exactly one 'kind: id'",
        ),
        (
            (
                "price: {kind: numeric, side: item}",
                "price: {kind: id, encoding: vocabulary, side: item}",
            ),
            "exactly one 'kind: id'",
        ),
        (("side: user}", "side: item}"), "exactly one 'kind: id'"),
    ],
)
def test_a_bad_side_is_one_clear_spec_error(edit, message):
    with pytest.raises(SpecError, match=message.replace("(", r"\(")):
        load_spec_text(SIDED.replace(*edit))


def test_a_spec_with_only_item_sides_has_no_query_tower():
    text = (
        SIDED.replace("side: user", "side: item")
        .replace(
            "user_id: {kind: id, encoding: hash, hash_buckets: 64, side: item}",
            "user_id: {kind: id, encoding: hash, hash_buckets: 64}",
        )
        .replace("side: context", "side: item")
    )
    with pytest.raises(SpecError, match="side: user or context"):
        load_spec_text(text)


@pytest.mark.parametrize(("k", "found"), [(1, 1), (20, 20), (500, 500), (600, 500)])
def test_exact_search_is_the_sorted_brute_force_answer(k: int, found: int):
    items, queries = _unit_vectors(500, 8, 1), _unit_vectors(7, 8, 2)
    rows, scores = ann.exact_search(items, queries, k, block=3)
    sims = queries @ items.T
    np.testing.assert_array_equal(rows, np.argsort(-sims, axis=1, kind="stable")[:, :found])
    # rtol for the top, atol for the similarities near 0 the whole catalogue reaches
    np.testing.assert_allclose(scores, np.take_along_axis(sims, rows, axis=1), rtol=1e-6, atol=1e-6)


def test_exact_search_ranks_an_item_gone_nan_last():
    items, queries = _unit_vectors(50, 8, 1), _unit_vectors(4, 8, 2)
    items[3] = np.nan
    assert not (ann.exact_search(items, queries, 5)[0] == 3).any()
    rows, _ = ann.exact_search(items, queries, 50)
    assert (rows[:, -1] == 3).all() and not (rows[:, :49] == 3).any()


def test_the_index_finds_what_exact_search_finds_and_survives_a_save(tmp_path):
    items, queries = _unit_vectors(3_000, 16, 3), _unit_vectors(50, 16, 4)
    index = ann.build(items)
    rows, scores = index.search(queries, 100)
    exact, exact_scores = ann.exact_search(items, queries, 100)
    overlap = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(rows, exact, strict=True)])
    assert overlap >= 0.95
    np.testing.assert_allclose(scores[:, 0], exact_scores[:, 0], atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first
    index.save(tmp_path)
    loaded = ann.load(tmp_path)
    np.testing.assert_array_equal(loaded.search(queries, 100)[0], rows)
    assert loaded.describe() == index.describe() and loaded.describe()["items"] == 3_000


@pytest.mark.parametrize("queries", [1, 2])
def test_asking_for_more_items_than_the_index_holds_gives_them_all(queries):
    items = _unit_vectors(30, 4, 5)
    rows, scores = ann.build(items).search(items[:queries], 50)
    assert rows.shape == (queries, 30) and sorted(rows[0]) == list(range(30))
    assert np.isfinite(scores).all()
    assert rows[0, 0] == 0  # an item is its own nearest neighbour


def test_a_quantized_index_keeps_most_of_the_recall(tmp_path):
    items, queries = _unit_vectors(3_000, 16, 6), _unit_vectors(50, 16, 7)
    rows, _ = ann.build(items, ann.IndexParams(dtype="i8")).search(queries, 100)
    exact, _ = ann.exact_search(items, queries, 100)
    overlap = np.mean([len(set(a) & set(b)) / 100 for a, b in zip(rows, exact, strict=True)])
    assert overlap >= 0.8


def test_the_catalogue_keeps_each_items_latest_row(tmp_path):
    from skewless.retrieval.catalogue import catalogue

    spec = load_spec_text(SIDED)
    first = pd.DataFrame({"item_id": ["b", "a", "b"], "price": [1.0, 2.0, 3.0],
                          "user_id": ["u", "u", "u"], "hour": [1.0, 1.0, 1.0],
                          "clicked": [0, 1, 1]})  # fmt: skip
    second = first.assign(item_id=["c", "a", "a"], price=[4.0, 5.0, 6.0])
    first.to_parquet(tmp_path / "train.parquet")
    second.to_parquet(tmp_path / "eval.parquet")
    items = catalogue(spec, tmp_path / "train.parquet", tmp_path / "eval.parquet")
    assert items.to_dict("list") == {"item_id": ["a", "b", "c"], "price": [6.0, 3.0, 4.0]}


def test_the_popularity_prior_adds_each_items_log_click_count_to_the_score():
    import tensorflow as tf

    from skewless.model.hparams import HParams
    from skewless.model.transform import id_space
    from skewless.retrieval.prior import log_prior
    from skewless.retrieval.towers import build_tower

    spec, hparams = load_spec_text(SIDED), HParams()
    ids = id_space(spec, "item_id", lambda _: 3)
    prior = log_prior(np.array([1, 1, 3]), ids)
    assert len(prior) == ids
    np.testing.assert_allclose(prior[:5], np.log([0.5, 2.5, 0.5, 1.5, 0.5]))
    query = build_tower(spec, lambda _: 3, hparams, ["user_id", "hour"], "q")
    candidate = build_tower(spec, lambda _: 3, hparams, ["item_id", "price"], "c", prior=prior)
    q = query({"user_id": tf.constant([5, 9]), "hour": tf.constant([0.5, -1.0])}).numpy()
    items = {"item_id": tf.constant([1, 3, 2]), "price": tf.constant([0.1, 2.0, 1.0])}
    c = candidate(items).numpy()
    assert q.shape == (2, hparams.retrieval_dim + 1) and c.shape == (3, hparams.retrieval_dim + 1)
    np.testing.assert_allclose(q[:, -1], [1.0, 1.0])
    np.testing.assert_allclose(np.linalg.norm(q[:, :-1], axis=1), [1.0, 1.0], rtol=1e-5)
    np.testing.assert_allclose(c[:, -1] / hparams.retrieval_temperature, prior[[1, 3, 2]],
                               rtol=1e-5)  # fmt: skip
    # The score (dot product / temperature) is the towers' cosine / temperature plus the prior.
    cosine = q[:, :-1] @ c[:, :-1].T
    np.testing.assert_allclose((q @ c.T) / hparams.retrieval_temperature,
                               cosine / hparams.retrieval_temperature + prior[[1, 3, 2]],
                               rtol=1e-4, atol=1e-4)  # fmt: skip


def test_retrieval_told_to_stop_takes_no_step_and_leaves_nothing_written(
    tmp_path, ingested, transform_dir, default_spec
):
    """The train step sets ``stop`` when the ranking stage fails beside it (model/train.py)."""
    import threading

    from skewless.model.hparams import HParams
    from skewless.model.inputs import TrainingData
    from skewless.retrieval.artifact import CANDIDATE_DIRNAME
    from skewless.retrieval.fit import Stopped
    from skewless.retrieval.towers import build_towers, train_retrieval

    data = TrainingData.ingested(ingested, transform_dir, default_spec)
    stop = threading.Event()
    stop.set()
    with data.transformed(tmp_path) as inputs:
        towers = build_towers(default_spec, inputs.tft_output, inputs.train, HParams())
        before = towers.query.get_weights()
        with pytest.raises(Stopped, match="the ranking stage failed"):
            train_retrieval(default_spec, inputs.tft_output, towers, inputs.eval,
                            (data.train_data, data.eval_data), HParams(), tmp_path / "out",
                            stop=stop)  # fmt: skip
        for kept, now in zip(before, towers.query.get_weights(), strict=True):
            np.testing.assert_array_equal(kept, now)
        assert not (tmp_path / "out").exists()

        # Told once it has begun writing: what it wrote goes too.
        out = tmp_path / "out"

        class StopOnceWriting(threading.Event):
            def is_set(self) -> bool:
                return (out / CANDIDATE_DIRNAME).exists()

        with pytest.raises(Stopped):
            train_retrieval(default_spec, inputs.tft_output, towers, inputs.eval,
                            (data.train_data, data.eval_data), HParams(retrieval_epochs=1), out,
                            stop=StopOnceWriting())  # fmt: skip
        assert not out.exists()
