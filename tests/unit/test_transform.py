"""The TFT transform, exactly: four hand-made rows through analysis on Beam and the graph."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow as tf
import tensorflow_transform as tft

from skewless.contract.spec import load_spec_text
from skewless.data.ingest import clean_schema
from skewless.model.transform import analyze, id_space

SPEC = load_spec_text(
    """
features:
  x: {kind: numeric}
  p: {kind: numeric, transform: log, min: 0}
  h: {kind: numeric, transform: bucketize, num_buckets: 2}
  c: {kind: categorical}
  u: {kind: id, hash_buckets: 10}
  t: {kind: tags, max_tags: 3}
  w: {kind: text, max_tokens: 4}
  y: {kind: label}
crosses:
  - {features: [c, t], hash_buckets: 50}
"""
)
ROWS = {
    "x": [1.0, 2.0, 3.0, 4.0],
    "p": [0.0, math.e - 1, math.e**2 - 1, math.e**3 - 1],
    "h": [10.0, 20.0, 30.0, 40.0],
    "c": ["b", "a", "b", "c"],
    "u": ["u1", "u2", "u3", "u1"],
    "t": ["x|y", "y", "", "y|z|x|w"],
    "w": ["Hello, World!", "hello", "WORLD hello there", ""],
    "y": [1, 0, 0, 1],
}
Z = [-3 / math.sqrt(5), -1 / math.sqrt(5), 1 / math.sqrt(5), 3 / math.sqrt(5)]


@pytest.fixture(scope="module")
def transformed(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("tft")
    pq.write_table(pa.table(ROWS, schema=clean_schema(SPEC)), folder / "train.parquet")
    analyze(folder / "train.parquet", SPEC, folder / "graph")
    output = tft.TFTransformOutput(str(folder / "graph"))
    raw = {
        k: tf.constant(v, dtype=tf.float32 if isinstance(v[0], float) else None)
        for k, v in ROWS.items()
        if k != "y"
    }
    result = {k: v.numpy() for k, v in output.transform_features_layer()(raw).items()}
    return output, result


def test_numeric_transforms(transformed):
    _, out = transformed
    np.testing.assert_allclose(out["x"], Z, rtol=1e-5)  # population z-score
    np.testing.assert_allclose(out["p"], Z, rtol=1e-5)  # log1p, then z-score
    # Two quantile buckets over 10..40; ids shifted by one (0 is padding).
    np.testing.assert_array_equal(out["h"], [1, 1, 2, 2])


def test_vocabulary_and_hash_ids(transformed):
    output, out = transformed
    # Vocabulary by descending frequency, ties by descending value: b, c, a; then +1.
    np.testing.assert_array_equal(out["c"], [1, 3, 1, 2])
    expected = tf.strings.to_hash_bucket_fast(ROWS["u"], 10).numpy() + 1
    np.testing.assert_array_equal(out["u"], expected)
    assert id_space(SPEC, "c", output.vocabulary_size_by_name) == 3 + 1 + 1
    assert id_space(SPEC, "u", output.vocabulary_size_by_name) == 11


def test_tags_and_text_are_padded_id_sequences(transformed):
    _, out = transformed
    # Tags truncated to 3 before analysis ('w' never counted): y=1, x=2, z=3.
    np.testing.assert_array_equal(out["t"], [[2, 1, 0], [1, 0, 0], [0, 0, 0], [1, 3, 2]])
    # Text lower-cased and split on non-alphanumerics: hello=1, world=2, there=3.
    np.testing.assert_array_equal(
        out["w"], [[1, 2, 0, 0], [1, 0, 0, 0], [2, 1, 3, 0], [0, 0, 0, 0]]
    )


def test_cross_hashes_every_combination(transformed):
    _, out = transformed
    cross = out["c_x_t"]
    assert cross.shape == (4, 3)
    pairs = tf.sparse.cross_hashed(
        [
            tf.sparse.from_dense(tf.constant([["b", "b"]])),
            tf.sparse.from_dense(tf.constant([["x", "y"]])),
        ],
        num_buckets=50,
    )
    assert sorted(cross[0][cross[0] > 0]) == sorted(pairs.values.numpy()[:2] + 1)
    assert (cross[1] > 0).sum() == 1 and (cross[2] == 0).all() and (cross[3] > 0).sum() == 3


def test_unseen_values_fall_into_oov_buckets(transformed):
    output, _ = transformed
    raw = {
        k: tf.constant(v[:1], dtype=tf.float32 if isinstance(v[0], float) else None)
        for k, v in ROWS.items()
        if k != "y"
    }
    raw["c"] = tf.constant(["never-seen"])
    raw["t"] = tf.constant(["q|y"])
    out = output.transform_features_layer()(raw)
    assert out["c"].numpy()[0] == 4  # the single OOV bucket after 3 vocabulary entries
    np.testing.assert_array_equal(out["t"].numpy()[0], [4, 1, 0])


def test_the_transform_step_turns_beams_type_check_off_unless_asked():
    from apache_beam.options.pipeline_options import PipelineOptions, TypeOptions

    from skewless.model.transform import TYPE_CHECK_FLAG, beam_pipeline_args

    def checked(args: list[str]) -> bool:
        return PipelineOptions(beam_pipeline_args(args)).view_as(TypeOptions).pipeline_type_check

    assert checked([]) is False
    assert checked(["--runner=DirectRunner"]) is False
    assert checked([TYPE_CHECK_FLAG, "--runner=DirectRunner"]) is True
    assert beam_pipeline_args([TYPE_CHECK_FLAG, "--a=1"]) == ["--a=1"]  # Beam never sees ours
