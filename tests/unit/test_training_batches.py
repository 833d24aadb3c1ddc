"""Training batches: every row once per epoch, a new order each epoch, the same orders per seed.

Two sources: in-memory arrays (:func:`shuffled_batches`, the retrieval towers' positives) and a
split transformed into chunk files (:class:`TransformedSplit`, the ranker's training and eval
splits), which holds at most a window of chunks in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow as tf
import tensorflow_transform as tft

from skewless.model.inputs import TransformedSplit, shuffled_batches, transform_split, write_chunk


def _epochs(seed: int, epochs: int = 3) -> list[list[int]]:
    rows = np.arange(10, dtype=np.int64)
    data = ({"x": rows, "doubled": rows * 2}, rows.astype(np.float32))
    dataset = shuffled_batches(data, 4, seed)
    assert int(dataset.cardinality()) == 3  # 4 + 4 + 2 rows: Keras knows the epoch's length
    orders = []
    for _ in range(epochs):
        order: list[int] = []
        for features, labels in dataset:
            # The rows of a batch stay whole: each feature and the label come from one row.
            np.testing.assert_array_equal(features["doubled"].numpy(), 2 * features["x"].numpy())
            np.testing.assert_array_equal(labels.numpy(), features["x"].numpy())
            order += features["x"].numpy().tolist()
        orders.append(order)
    return orders


def test_each_epoch_sees_every_row_once_in_a_new_order():
    orders = _epochs(seed=0)
    assert all(sorted(order) == list(range(10)) for order in orders)
    assert len({tuple(order) for order in orders}) == 3


def test_the_seed_fixes_the_orders():
    assert _epochs(seed=1) == _epochs(seed=1)
    assert _epochs(seed=1) != _epochs(seed=2)


def test_drop_remainder_keeps_only_full_batches():
    rows = np.arange(10, dtype=np.int64)
    dataset = shuffled_batches(rows, 4, seed=0, drop_remainder=True)
    assert int(dataset.cardinality()) == 2
    for _ in range(3):
        batches = [batch.numpy() for batch in dataset]
        assert [len(b) for b in batches] == [4, 4]
        assert len(set(np.concatenate(batches))) == 8  # 8 distinct rows of the 10 each epoch


def _numbered_split(folder: Path, sizes: list[int]) -> TransformedSplit:
    """Chunks of the given sizes whose feature ``row`` numbers the rows; the label is row % 2."""
    folder.mkdir()
    start = 0
    for index, size in enumerate(sizes):
        rows = np.arange(start, start + size, dtype=np.int32)
        features = {"row": rows, "pair": np.stack([rows, -rows], axis=1)}
        write_chunk(folder, index, features, (rows % 2).astype(np.float32))
        start += size
    return TransformedSplit(folder, tuple(sizes))


def _epoch(dataset: tf.data.Dataset) -> list[np.ndarray]:
    batches = []
    for features, labels in dataset:
        rows = features["row"].numpy()
        # A row stays whole: its features and label travel together.
        np.testing.assert_array_equal(features["pair"].numpy(), np.stack([rows, -rows], axis=1))
        np.testing.assert_array_equal(labels.numpy(), rows % 2)
        batches.append(rows)
    return batches


def test_a_split_streams_every_row_once_per_epoch_a_window_of_chunks_at_a_time(tmp_path):
    split = _numbered_split(tmp_path / "split", [100] * 10)  # chunk c holds rows 100c..100c+99
    dataset = split.batches(50, seed=0, window_chunks=3)
    assert int(dataset.cardinality()) == 20
    orders = []
    for _ in range(3):
        batches = _epoch(dataset)
        assert [len(batch) for batch in batches] == [50] * 20
        order = np.concatenate(batches)
        assert sorted(order.tolist()) == list(range(1000))  # every row exactly once
        # Windows of 3, 3, 3 and 1 chunks: 6, 6, 6 and 2 batches, each drawn from its window's
        # chunks alone, so memory holds at most 3 chunks (300 rows) of the 1,000.
        windows = np.split(order, [300, 600, 900])
        chunks = [set((window // 100).tolist()) for window in windows]
        assert [len(c) for c in chunks] == [3, 3, 3, 1]
        assert set().union(*chunks) == set(range(10))
        orders.append(order.tolist())
    assert len({tuple(order) for order in orders}) == 3  # a new order each epoch
    # The rows of a window are mixed, not read chunk after chunk.
    assert len(set((np.asarray(orders[0][:50]) // 100).tolist())) == 3
    assert _epoch(split.batches(50, seed=0, window_chunks=3))[0].tolist() == orders[0][:50]


def test_rows_left_over_by_a_window_join_the_next(tmp_path):
    split = _numbered_split(tmp_path / "split", [70, 70, 70, 45])  # 255 rows
    dataset = split.batches(32, seed=3, window_chunks=1)
    assert int(dataset.cardinality()) == 8
    batches = _epoch(dataset)
    assert [len(batch) for batch in batches] == [32] * 7 + [31]  # only the last is short
    assert sorted(np.concatenate(batches).tolist()) == list(range(255))

    dropped = _epoch(split.batches(32, seed=3, window_chunks=1, drop_remainder=True))
    assert [len(batch) for batch in dropped] == [32] * 7
    assert len(set(np.concatenate(dropped).tolist())) == 224


def test_a_split_reads_back_in_order_and_takes_rows_by_number(tmp_path):
    split = _numbered_split(tmp_path / "split", [4, 4, 3])
    assert split.rows == 11
    np.testing.assert_array_equal(split.labels(), np.arange(11) % 2)
    features, labels = split.take(np.array([0, 3, 4, 10]))
    np.testing.assert_array_equal(features["row"], [0, 3, 4, 10])
    np.testing.assert_array_equal(labels, [0, 1, 0, 0])
    np.testing.assert_array_equal(split.take()[0]["row"], np.arange(11))
    positives = split.positives(["row"])
    assert list(positives) == ["row"]  # only the features asked for
    np.testing.assert_array_equal(positives["row"], np.arange(1, 11, 2))


def test_transform_split_writes_what_the_graph_gives_the_whole_split(
    tmp_path, ingested, transform_dir, default_spec
):
    output = tft.TFTransformOutput(str(transform_dir))
    path = ingested / "train.parquet"
    split = transform_split(path, default_spec, output, tmp_path / "train", chunk_rows=500)
    frame = pd.read_parquet(path)
    rows = len(frame)
    assert split.chunk_rows == (500,) * (rows // 500) + ((rows % 500,) if rows % 500 else ())
    # The graph applied to the whole split in one call: the chunks must hold the same values.
    whole = output.transform_features_layer()(
        {f.name: tf.constant(frame[f.name].to_numpy()) for f in default_spec.model_inputs}
    )
    features, labels = split.take()
    label = default_spec.label.name
    assert set(features) == set(whole) - {label}
    for name, values in features.items():
        np.testing.assert_allclose(values, whole[name].numpy(), rtol=1e-6, err_msg=name)
        assert values.dtype != np.int64  # ids narrowed to int32: half the bytes
    np.testing.assert_array_equal(labels, frame[label].to_numpy(dtype=np.float32))
