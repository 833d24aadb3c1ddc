"""Training batches: every row once per epoch, a new order each epoch, the same orders per seed."""

from __future__ import annotations

import numpy as np

from skewless.model.inputs import shuffled_batches


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
