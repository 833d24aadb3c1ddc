"""Training hyperparameters, apart from TensorFlow: the CLI and the pipeline read them without
loading it (``skewless run --param epochs=5`` is checked before anything runs)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class HParams:
    """Training hyperparameters; the pipeline's ``hparams`` dict overrides any of them by name.

    Attributes:
        epochs: Maximum passes over the training split.
        batch_size: Rows per gradient step; 0 (the default) picks it from the training rows
            (:func:`auto_batch_size`), so small data still gets enough steps per epoch.
        learning_rate: Adam step size.
        embedding_dim: Embedding width for features whose spec sets none.
        cross_layers: Number of DCN-v2 cross layers.
        deep_layers: Number of hidden layers in the deep tower.
        deep_width: Units in the first hidden layer (each next layer halves it).
        dropout: Dropout rate in the deep tower.
        l2: L2 penalty on embeddings.
        patience: Epochs without eval-AUC improvement before stopping early.
        seed: Seed for initialization and shuffling.
        retrieval_epochs: Passes of the two-tower retrieval model over the positive rows.
        retrieval_batch_size: Positive rows per step; the other rows of a batch are the negatives.
        retrieval_dim: Width of the towers' embeddings (the index's vectors add the prior's slot).
        retrieval_width: Units in each tower's hidden layer.
        retrieval_temperature: Divides the dot product before the softmax.
        retrieval_learning_rate: Adam step size of the retrieval model (a larger step than the
            ranker's regularizes it: measured in docs/retrieval.md).
        retrieval_uniform_negatives: Items drawn uniformly per step as extra negatives (mixed
            negative sampling); 0, the default, since it lowered recall@100 on the default data.
        retrieval_popularity_prior: Add each item's log click count (smoothed) to its score as a
            fixed bias, so the towers learn what popularity does not explain; it raised
            recall@100 on the default data (docs/retrieval.md).
    """

    epochs: int = 10
    batch_size: int = 0
    learning_rate: float = 0.003
    embedding_dim: int = 8
    cross_layers: int = 2
    deep_layers: int = 2
    deep_width: int = 128
    dropout: float = 0.1
    l2: float = 3e-4
    patience: int = 2
    seed: int = 0
    retrieval_epochs: int = 10
    retrieval_batch_size: int = 512
    retrieval_dim: int = 32
    retrieval_width: int = 64
    retrieval_temperature: float = 0.05
    retrieval_learning_rate: float = 0.01
    retrieval_uniform_negatives: int = 0
    retrieval_popularity_prior: bool = True

    def __post_init__(self) -> None:
        """Rejects values that cannot train."""
        positive = (
            "epochs", "embedding_dim", "deep_width", "patience", "retrieval_epochs",
            "retrieval_dim", "retrieval_width",
        )  # fmt: skip
        if self.retrieval_uniform_negatives < 0:
            raise ValueError("hparams.retrieval_uniform_negatives must not be negative")
        if self.retrieval_batch_size < 2:
            raise ValueError(
                f"hparams.retrieval_batch_size must be at least 2, got {self.retrieval_batch_size}"
            )
        if not self.retrieval_temperature > 0:
            raise ValueError(
                f"hparams.retrieval_temperature must be above 0, got {self.retrieval_temperature}"
            )
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"hparams.{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 0:
            raise ValueError(f"hparams.batch_size must be 0 (auto) or more, got {self.batch_size}")
        for name in ("learning_rate", "retrieval_learning_rate"):
            if not 0 < getattr(self, name) < 1:
                raise ValueError(f"hparams.{name} must be in (0, 1), got {getattr(self, name)}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"hparams.dropout must be in [0, 1), got {self.dropout}")
        if self.cross_layers < 0 or self.deep_layers < 0:
            raise ValueError("hparams.cross_layers and deep_layers must not be negative")
