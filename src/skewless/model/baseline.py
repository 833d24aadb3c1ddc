"""The logistic-regression baseline every run reports beside the ranking model.

It answers "how much does the deep model add?" on the very features the model sees: the TFT
transform's outputs. Each id output becomes one-hot columns (one weight per id, as an embedding
of width 1 would give); a sequence or a cross becomes its id counts, the counts over its length
and ``log1p(length)`` (the three pools the network takes); a number stays one column.

It is fitted by scikit-learn's L-BFGS on a sparse matrix, not by Keras epochs: a convex problem
needs no mini-batches, and the fit takes seconds where Keras took minutes at 400k rows
(docs/performance.md). Its L2 strength is the ranker's ``l2`` hyperparameter: Keras minimises
``mean loss + l2 * |w|^2``, which is scikit-learn's ``C = 1 / (2 * l2 * rows)``. Unlike the
network's L2, which applies to embeddings only, it also applies to the numbers' weights.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from skewless.contract.features import FeatureSpec
from skewless.model.transform import id_space

if TYPE_CHECKING:
    from skewless.model.inputs import TransformedSplit

# On the default data (400k rows) L-BFGS stops after 47 iterations at this tolerance, 87 at
# scikit-learn's default 1e-4, with eval AUC 0.73195 against 0.73197 (1e-3: 28, AUC 0.72987).
TOLERANCE = 3e-4
MAX_ITERATIONS = 200
# Past this many training rows the baseline is fitted on a uniform sample of them: its sparse
# matrix holds ~40 non-zeros a row on the default spec (~0.5 GB per million rows), and a linear
# model of ~58k weights is estimated as well from a million rows as from ten.
MAX_ROWS = 1_000_000


def design_matrix(
    features: Mapping[str, np.ndarray], spec: FeatureSpec, vocabulary_size: Callable[[str], int]
) -> Any:
    """The sparse (CSR) design matrix of transformed ``features``: one column block per output.

    Args:
        features: Transformed features by name (ids as integers, numbers as floats).
        spec: The feature spec (which outputs are ids, and their id spaces).
        vocabulary_size: ``tft_output.vocabulary_size_by_name``.
    """
    from scipy import sparse

    from skewless.model.network import id_inputs

    rows = len(next(iter(features.values())))
    blocks = []
    for name, _, shape in id_inputs(spec):  # the network's inputs, in its order
        values = np.asarray(features[name])
        width = id_space(spec, name, vocabulary_size)
        if not shape:
            blocks.append(_one_hot(values.reshape(rows), width))
            continue
        # A padded sequence or a cross (id 0 is padding): counts, counts over the length,
        # log1p(length): the three pools the network takes.
        values = values.reshape(rows, -1)
        kept = values != 0
        length = kept.sum(axis=1)
        row_index = np.repeat(np.arange(rows), values.shape[1])[kept.reshape(-1)]
        counts = sparse.csr_matrix(
            (np.ones(row_index.size), (row_index, values[kept])), shape=(rows, width)
        )
        counts.sum_duplicates()
        blocks += [
            counts,
            sparse.diags(1.0 / np.maximum(length, 1)) @ counts,
            sparse.csr_matrix(np.log1p(length).reshape(rows, 1)),
        ]
    for feature in spec.model_inputs:
        if not feature.is_ids:
            values = np.asarray(features[feature.name], np.float64).reshape(rows, 1)
            blocks.append(sparse.csr_matrix(values))
    return sparse.hstack(blocks, format="csr")


def _one_hot(ids: np.ndarray, width: int) -> Any:
    from scipy import sparse

    rows = ids.size
    return sparse.csr_matrix(
        (np.ones(rows), ids.astype(np.int64), np.arange(rows + 1)), shape=(rows, width)
    )


def sample_rows(rows: int) -> np.ndarray | None:
    """The training rows the baseline is fitted on, sorted (None: all ``rows``, up to MAX_ROWS)."""
    if rows <= MAX_ROWS:
        return None
    return np.sort(np.random.default_rng(0).choice(rows, MAX_ROWS, replace=False))


def fit_baseline(
    train: tuple[Mapping[str, np.ndarray], np.ndarray],
    spec: FeatureSpec,
    vocabulary_size: Callable[[str], int],
    l2: float,
) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """Fits the baseline on ``train``; returns a scorer: transformed features -> logits.

    Training streams its splits, so it passes the rows of :func:`sample_rows` and scores the eval
    split chunk by chunk; here, past ``MAX_ROWS`` rows, the same sample is drawn.

    Args:
        train: Transformed training features and labels.
        spec: The feature spec.
        vocabulary_size: ``tft_output.vocabulary_size_by_name``.
        l2: The ranker's L2 strength (``HParams.l2``); 0 fits without a penalty.
    """
    from sklearn.linear_model import LogisticRegression

    features, labels = train
    keep = sample_rows(len(labels))
    if keep is not None:
        features, labels = {k: v[keep] for k, v in features.items()}, labels[keep]
    x = design_matrix(features, spec, vocabulary_size)
    penalty: dict[str, Any] = {"C": 1.0 / (2.0 * l2 * len(labels))} if l2 > 0 else {"C": np.inf}
    model = LogisticRegression(max_iter=MAX_ITERATIONS, tol=TOLERANCE, **penalty)
    model.fit(x, labels)
    return lambda rows: np.asarray(
        model.decision_function(design_matrix(rows, spec, vocabulary_size))
    )


def baseline_eval_auc(
    train: TransformedSplit,
    evaluation: TransformedSplit,
    spec: FeatureSpec,
    vocabulary_size: Callable[[str], int],
    l2: float,
) -> float:
    """Fits the baseline on (a sample of) ``train`` and returns its AUC on ``evaluation``."""
    from skewless.evaluation import metrics

    scorer = fit_baseline(train.take(sample_rows(train.rows)), spec, vocabulary_size, l2)
    scores = np.concatenate([scorer(features) for features, _ in evaluation.chunks()])
    return metrics.roc_auc(evaluation.labels(), scores)
