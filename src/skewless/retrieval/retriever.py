"""Loads a model's retrieval artifact and answers "which catalogue items for these queries?".

One class for both the server and the evaluation, so recall is measured on exactly the code path
that serves: raw query features -> the query SavedModel (transform graph + query tower) -> the ANN
index -> catalogue rows.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from skewless.retrieval import index as ann
from skewless.retrieval.artifact import (
    CATALOGUE_FILE,
    EMBEDDINGS_FILE,
    META_FILE,
    QUERY_DIRNAME,
    RETRIEVAL_DIRNAME,
    SIGNATURE,
)


class Retriever:
    """The query tower, the catalogue and its index, loaded from ``MODEL/retrieval/``."""

    def __init__(self, model_dir: str | Path) -> None:
        import tensorflow as tf

        folder = Path(model_dir) / RETRIEVAL_DIRNAME
        self.meta: dict[str, Any] = json.loads((folder / META_FILE).read_text())
        self.item_key: str = self.meta["item_key"]
        self.query_features: list[str] = self.meta["query_features"]
        catalogue = pd.read_parquet(folder / CATALOGUE_FILE)
        # The ranker's raw numeric inputs are float32, whatever width the catalogue was saved at.
        numeric = [c for c in catalogue.columns if pd.api.types.is_numeric_dtype(catalogue[c])]
        self.catalogue = catalogue.astype(dict.fromkeys(numeric, np.float32))
        self.index = ann.load(folder)
        self._folder = folder
        self._signature = tf.saved_model.load(str(folder / QUERY_DIRNAME)).signatures[SIGNATURE]
        self._dtypes = {
            name: spec.dtype for name, spec in self._signature.structured_input_signature[1].items()
        }

    def embed(self, queries: dict[str, np.ndarray]) -> np.ndarray:
        """Query embeddings ``[q, dim]`` for raw query features (one array per feature)."""
        import tensorflow as tf

        features = {
            name: tf.constant(queries[name], dtype=self._dtypes[name])
            for name in self.query_features
        }
        return self._signature(**features)["embedding"].numpy()

    def retrieve(self, queries: dict[str, np.ndarray], n: int) -> tuple[np.ndarray, np.ndarray]:
        """Catalogue rows and similarity scores of the ``n`` best items per query, from the index.

        Args:
            queries: Raw query features, one array per feature.
            n: Candidates per query (at most the catalogue's size).
        """
        return self.index.search(self.embed(queries), n)

    @functools.cached_property
    def embeddings(self) -> np.ndarray:
        """The item embeddings, for exact search (evaluation); serving needs only the index."""
        return np.load(self._folder / EMBEDDINGS_FILE)

    @functools.cached_property
    def row_of_item(self) -> dict[Any, int]:
        """Catalogue row of each item id (evaluation; built on first use, not at server start)."""
        return {item: row for row, item in enumerate(self.catalogue[self.item_key])}
