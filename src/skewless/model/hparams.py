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

    def __post_init__(self) -> None:
        """Rejects values that cannot train."""
        positive = ("epochs", "embedding_dim", "deep_width", "patience")
        for name in positive:
            if getattr(self, name) < 1:
                raise ValueError(f"hparams.{name} must be at least 1, got {getattr(self, name)}")
        if self.batch_size < 0:
            raise ValueError(f"hparams.batch_size must be 0 (auto) or more, got {self.batch_size}")
        if not 0 < self.learning_rate < 1:
            raise ValueError(f"hparams.learning_rate must be in (0, 1), got {self.learning_rate}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"hparams.dropout must be in [0, 1), got {self.dropout}")
        if self.cross_layers < 0 or self.deep_layers < 0:
            raise ValueError("hparams.cross_layers and deep_layers must not be negative")
