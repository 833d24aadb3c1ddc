"""Training the two towers: in-batch softmax over the positive rows, one step at a time.

Training uses the positive rows (label 1) with in-batch negatives and the log-Q correction
(Yi et al., RecSys 2019): a popular item is a negative in many batches, so its logit is lowered by
the log of its sampling probability, which makes the in-batch softmax estimate the full softmax.
Another row of the batch showing the same item is not a negative ("accidental hit") and is masked.
Items drawn uniformly can join each step as extra negatives (mixed negative sampling, Yang et al.,
WWW 2020); off by default, as it lowered recall. The towers themselves:
:mod:`skewless.retrieval.towers`.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import numpy as np
import tensorflow as tf

from skewless.model.hparams import HParams
from skewless.model.inputs import shuffled_batches


class Stopped(Exception):
    """The retrieval stage was told to stop (``stop`` of :func:`fit_towers` and of
    :func:`skewless.retrieval.towers.train_retrieval`)."""


def raise_if_stopped(stop: threading.Event | None) -> None:
    """Raises :class:`Stopped` once ``stop`` is set (the train step sets it when the ranking
    stage fails)."""
    if stop is not None and stop.is_set():
        raise Stopped("retrieval stopped: the ranking stage failed")


def _subset(features: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    return {name: features[name] for name in names}


def fit_towers(
    query: tf.keras.Model,
    candidate: tf.keras.Model,
    positives: dict[str, np.ndarray],
    item_key: str,
    hparams: HParams,
    *,
    validation: dict[str, np.ndarray] | None = None,
    correct_popularity: bool = True,
    stop: threading.Event | None = None,
) -> dict[str, list[float]]:
    """Trains both towers on positive rows; returns the mean loss (and held-out loss) per epoch.

    With ``validation`` (held-out positives), training stops when their loss has not improved
    for ``hparams.patience`` epochs and keeps the best epoch's weights, as the ranker's early
    stopping does: on small data the id embeddings otherwise memorize the training rows.

    Args:
        query: The query tower.
        candidate: The candidate tower.
        positives: Transformed features of the positive rows (every name either tower reads).
        item_key: Transformed item id feature (its counts give the log-Q correction).
        hparams: ``retrieval_*`` hyperparameters and ``seed``.
        validation: Transformed features of held-out positive rows.
        correct_popularity: Apply the log-Q correction (off only to measure what it buys).
        stop: Once set, training raises :class:`Stopped` before its next step.
    """
    batch = hparams.retrieval_batch_size

    def log_q_of(ids: np.ndarray) -> np.ndarray:
        """Log of the times each row's item is expected among a batch's negatives: B * Q(item),
        Q estimated from the rows' own item frequencies (zeros without the correction)."""
        if not correct_popularity:
            return np.zeros(len(ids), dtype=np.float32)
        return np.log(batch * np.bincount(ids)[ids] / len(ids)).astype(np.float32)

    ids = positives[item_key].astype(np.int64)
    log_q = log_q_of(ids)
    query_inputs = _subset(positives, list(query.input))
    item_inputs = _subset(positives, list(candidate.input))
    # One row per distinct item, for the uniform negatives.
    _, first_row = np.unique(ids, return_index=True)
    distinct = {name: values[first_row] for name, values in item_inputs.items()}
    distinct_ids = ids[first_row]
    uniform = min(hparams.retrieval_uniform_negatives, len(first_row))
    log_u = np.float32(np.log(uniform / len(first_row))) if uniform else np.float32(0)
    rng = np.random.default_rng(hparams.seed)
    dataset = shuffled_batches(
        (query_inputs, item_inputs, ids, log_q), batch, hparams.seed,
        drop_remainder=len(ids) >= batch,
    )  # fmt: skip
    optimizer = tf.keras.optimizers.Adam(hparams.retrieval_learning_rate)
    variables = query.trainable_variables + candidate.trainable_variables
    temperature = hparams.retrieval_temperature

    def batch_loss(
        q_in: Any, c_in: Any, batch_ids: tf.Tensor, batch_log_q: tf.Tensor, u_in: Any,
        u_ids: tf.Tensor, *, training: bool,
    ) -> tf.Tensor:  # fmt: skip
        queries = query(q_in, training=training)
        logits = tf.matmul(queries, candidate(c_in, training=training), transpose_b=True)
        logits = logits / temperature - batch_log_q[None, :]
        same_item = tf.equal(batch_ids[:, None], batch_ids[None, :])
        accidental = tf.logical_and(same_item, tf.logical_not(tf.eye(tf.size(batch_ids)) > 0))
        if uniform:
            u_logits = tf.matmul(queries, candidate(u_in, training=training), transpose_b=True)
            logits = tf.concat([logits, u_logits / temperature - log_u], axis=1)
            accidental = tf.concat(
                [accidental, tf.equal(batch_ids[:, None], u_ids[None, :])], axis=1
            )
        logits = tf.where(accidental, tf.fill(tf.shape(logits), -1e9), logits)
        labels = tf.range(tf.shape(logits)[0])
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        )

    @tf.function(reduce_retracing=True)
    def step(*batch: Any) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = batch_loss(*batch, training=True)
            loss += tf.add_n(query.losses + candidate.losses) if query.losses else 0.0
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    evaluate = tf.function(functools.partial(batch_loss, training=False), reduce_retracing=True)

    def uniform_batch() -> tuple[dict[str, np.ndarray], np.ndarray]:
        pick = rng.integers(0, len(distinct_ids), max(uniform, 1))
        return {name: values[pick] for name, values in distinct.items()}, distinct_ids[pick]

    held_out = None
    if validation is not None and len(validation[item_key]) >= 2:
        v_ids = validation[item_key].astype(np.int64)
        v_log_q = log_q_of(v_ids)  # the held-out rows' own frequencies, as in training
        held_out = tf.data.Dataset.from_tensor_slices(
            (_subset(validation, list(query.input)), _subset(validation, list(candidate.input)),
             v_ids, v_log_q)
        ).batch(batch)  # fmt: skip

    history: dict[str, list[float]] = {"loss": [], "val_loss": []}
    best, best_weights, stale = np.inf, None, 0

    def step_unless_stopped(*batch: Any) -> float:
        raise_if_stopped(stop)
        return float(step(*batch, *uniform_batch()))

    for _ in range(hparams.retrieval_epochs):
        losses = [step_unless_stopped(q, c, i, lq) for q, c, i, lq in dataset]
        history["loss"].append(float(np.mean(losses)))
        if held_out is None:
            continue
        val = float(np.mean([float(evaluate(q, c, i, lq, *uniform_batch()))
                             for q, c, i, lq in held_out]))  # fmt: skip
        history["val_loss"].append(val)
        if val < best:
            best, stale = val, 0
            best_weights = (query.get_weights(), candidate.get_weights())
        else:
            stale += 1
            if stale >= hparams.patience:
                break
    if best_weights is not None:
        query.set_weights(best_weights[0])
        candidate.set_weights(best_weights[1])
    return history
