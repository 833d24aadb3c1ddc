"""The popularity prior of the retrieval score: each item's log click count, as a fixed bias.

Most of what decides which item a user clicks is how often the item is shown, which no item
feature tells (popularity is a property of the item id). Left to the towers, popularity has to be
squeezed into unit-length embeddings next to the user's tastes. Here it is counted instead: the
candidate embedding gains one dimension holding the item's log prior (positive training rows plus
:data:`PRIOR_SMOOTHING`), the query embedding a 1 against it, so the dot product adds the prior and
the towers learn what popularity does not explain. Measured in docs/retrieval.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

PRIOR_SMOOTHING = 0.5  # clicks added to every item's count; 0.1 to 1.0 measured alike


def log_prior(ids: np.ndarray, id_count: int) -> np.ndarray:
    """Per transformed item id: the log of its positive training rows plus the smoothing.

    An id never clicked (a new item's OOV bucket) gets the smoothing alone. With a ``top_k``
    vocabulary an OOV bucket sums the clicks of the items sharing it.

    Args:
        ids: Transformed item ids of the positive training rows.
        id_count: Size of the item id space (the id embedding's table).
    """
    return np.log(np.bincount(ids, minlength=id_count) + PRIOR_SMOOTHING)


class AppendOne(tf.keras.layers.Layer):
    """Appends a constant 1 to each query embedding: it multiplies the item's prior slot."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        """Returns ``[x, 1]``."""
        return tf.concat([x, tf.ones_like(x[:, :1])], axis=-1)


class ItemPrior(tf.keras.layers.Layer):
    """A fixed value per transformed item id (the item's log prior times the temperature)."""

    def __init__(self, values: np.ndarray, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values = self.add_weight(
            shape=values.shape, initializer="zeros", trainable=False, name="values"
        )
        self.values.assign(values.astype(np.float32))

    def call(self, ids: tf.Tensor) -> tf.Tensor:
        """Returns ``[rows, 1]``: each row's value."""
        return tf.gather(self.values, ids)[:, None]
