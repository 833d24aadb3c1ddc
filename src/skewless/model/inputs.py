"""What training is fed: each clean split transformed once into chunk files, streamed each epoch.

Training reads a clean Parquet split in record batches, applies the TFT transform graph to each
in-process (see docs/performance.md for why this beats materializing with Beam here) and writes
each transformed chunk to a ``.npz`` file in a scratch folder: :func:`transform_split`. Memory
then never holds a whole split. An epoch (:meth:`TransformedSplit.batches`) visits the chunks in a
new random order, loads them a window at a time, and yields the window's rows in a random order:
every row once per epoch, with at most ``window_chunks`` chunks in memory. A split that fits in
one window (up to about a million rows by default) is shuffled exactly, as a whole.

Evaluation and the baseline read the chunks in order (:meth:`TransformedSplit.chunks`,
:meth:`TransformedSplit.collect`), keeping only what they need: scores, labels, a sample.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from skewless.contract.spec import FeatureSpec
from skewless.data.raw import read_column_batches
from skewless.model.transform import analysis_columns

CHUNK_ROWS = 16_384
# Rows of a window: 64 chunks, about 1M rows, ~250 MB on the default spec (248 bytes a row).
WINDOW_CHUNKS = 64
_LABEL = "__label__"  # the label's key in a chunk file (no feature may start with "__")

Batch = tuple[dict[str, np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class TransformedSplit:
    """A split's transformed features and labels as chunk files (``chunk-NNNNN.npz``) in a folder.

    Attributes:
        folder: Where the chunk files are.
        chunk_rows: Rows in each chunk, in file order.
    """

    folder: Path
    chunk_rows: tuple[int, ...]

    @property
    def rows(self) -> int:
        """Rows in the split."""
        return sum(self.chunk_rows)

    def read(self, index: int) -> Batch:
        """Chunk ``index``: its transformed features by name, and its labels."""
        with np.load(self.folder / f"chunk-{index:05d}.npz") as arrays:
            features = {name: arrays[name] for name in arrays.files if name != _LABEL}
            return features, arrays[_LABEL]

    def chunks(self) -> Iterator[Batch]:
        """Every chunk, in file order."""
        return (self.read(index) for index in range(len(self.chunk_rows)))

    def labels(self) -> np.ndarray:
        """Every row's label, in file order (4 bytes a row)."""
        return np.concatenate([labels for _, labels in self.chunks()])

    def collect(
        self, select: Callable[[np.ndarray, int], Any], names: Collection[str] | None = None
    ) -> Batch:
        """The rows ``select(labels, first_row)`` picks (row numbers within each chunk), in memory.

        ``select`` sees each chunk's labels and the number of its first row in the split;
        ``names`` keeps only those features (None: all).
        """
        parts: list[Batch] = []
        start = 0
        for features, labels in self.chunks():
            keep = select(labels, start)
            kept = {n: v[keep] for n, v in features.items() if names is None or n in names}
            parts.append((kept, labels[keep]))
            start += len(labels)
        return _concatenate(parts)

    def positives(self, names: Collection[str]) -> dict[str, np.ndarray]:
        """Features ``names`` of the rows labelled positive (label > 0.5), in memory."""
        return self.collect(lambda labels, _: labels > 0.5, names)[0]

    def take(self, rows: np.ndarray | None = None) -> Batch:
        """The rows numbered ``rows`` (sorted row numbers in the split; None: all), in memory."""
        if rows is None:
            return self.collect(lambda labels, _: slice(None))

        def within(labels: np.ndarray, start: int) -> np.ndarray:
            first, last = np.searchsorted(rows, [start, start + len(labels)])
            return rows[first:last] - start

        return self.collect(within)

    def batches(
        self,
        batch_size: int,
        seed: int,
        *,
        window_chunks: int = WINDOW_CHUNKS,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Batches of (features, labels), every row once per epoch, in a new order each epoch.

        Each epoch draws an order of the chunks, loads ``window_chunks`` of them at a time and
        yields their rows in a random order; the rows of a window that do not fill a batch join
        the next window, so only the epoch's last batch is short (none with ``drop_remainder``).
        """
        features, labels = self.read(0)
        signature = (
            {name: _spec_of(values) for name, values in features.items()},
            _spec_of(labels),
        )
        rng = np.random.default_rng(seed)

        def windows() -> Iterator[Batch]:
            order = rng.permutation(len(self.chunk_rows))  # drawn anew each epoch
            for start in range(0, len(order), window_chunks):
                yield self._window(order[start : start + window_chunks])

        return _dataset(windows, self.rows, signature, batch_size, rng, drop_remainder)

    def _window(self, chosen: np.ndarray) -> Batch:
        """Chunks ``chosen``, in that order, copied into one set of arrays as they are read."""
        rows = sum(self.chunk_rows[index] for index in chosen)
        window: Any = None
        start = 0
        for index in chosen:
            chunk = self.read(int(index))
            if window is None:
                window = tf.nest.map_structure(
                    lambda part: np.empty((rows, *part.shape[1:]), part.dtype), chunk
                )
            size = len(chunk[1])
            for whole, part in zip(tf.nest.flatten(window), tf.nest.flatten(chunk), strict=True):
                whole[start : start + size] = part
            start += size
        return window


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """What a training run reads (:func:`skewless.model.train.train`, one worker of
    :func:`skewless.model.distributed.train_distributed`).

    Attributes:
        train_data: Clean training rows (Parquet).
        eval_data: Clean eval rows (Parquet): early stopping and the reported AUC.
        transform_dir: Output of :func:`skewless.model.transform.analyze`.
        spec: The feature spec.
    """

    train_data: str | Path
    eval_data: str | Path
    transform_dir: str | Path
    spec: FeatureSpec

    @classmethod
    def ingested(
        cls, folder: str | Path, transform_dir: str | Path, spec: FeatureSpec
    ) -> TrainingData:
        """The two clean splits of an ingestion output folder."""
        from skewless.data.folder import IngestedFolder

        splits = IngestedFolder(folder)
        return cls(splits.train, splits.eval, transform_dir, spec)

    @contextlib.contextmanager
    def transformed(self, scratch_in: Path) -> Iterator[Transformed]:
        """Both splits transformed into chunk files in a scratch folder inside ``scratch_in``
        (local disk, removed on exit: the chunks live for the training step only)."""
        import tensorflow_transform as tft

        started = time.perf_counter()
        scratch = Path(tempfile.mkdtemp(prefix=".transformed-", dir=scratch_in))
        try:
            tft_output = tft.TFTransformOutput(str(self.transform_dir))
            train = transform_split(self.train_data, self.spec, tft_output, scratch / "train")
            eval_ = transform_split(self.eval_data, self.spec, tft_output, scratch / "eval")
            yield Transformed(tft_output, train, eval_, time.perf_counter() - started)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


@dataclasses.dataclass(frozen=True)
class Transformed:
    """:meth:`TrainingData.transformed`'s splits, the graph that made them and its seconds."""

    tft_output: Any
    train: TransformedSplit
    eval: TransformedSplit
    seconds: float


def transform_split(
    path: str | Path,
    spec: FeatureSpec,
    tft_output: Any,
    folder: str | Path,
    *,
    chunk_rows: int = CHUNK_ROWS,
) -> TransformedSplit:
    """Applies the transform graph to a clean split chunk by chunk and writes the chunk files.

    Args:
        path: The clean split (Parquet).
        spec: The feature spec.
        tft_output: The transform graph (``tft.TFTransformOutput``).
        folder: Receives the chunk files (created; the caller removes it when done).
        chunk_rows: Rows per chunk (the graph's batch; the last chunk may be shorter).

    Raises:
        ValueError: The split has no rows.
    """
    # Called eagerly: the layer runs the transform graph as loaded. Wrapped in a tf.function it
    # gave the same values but traced the whole graph again for each split and each chunk shape
    # (a second of CPU per training run).
    layer = tft_output.transform_features_layer()
    label = spec.label.name
    raw_names = [f.name for f in spec.model_inputs]
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    sizes: list[int] = []
    for raw in read_column_batches(path, analysis_columns(spec), chunk_rows):
        transformed = layer({name: tf.constant(raw[name]) for name in raw_names})
        arrays: dict[str, np.ndarray] = {}
        for name, tensor in transformed.items():
            if name != label:
                value = tensor.numpy()
                arrays[name] = value.astype(np.int32) if value.dtype == np.int64 else value
        write_chunk(out, len(sizes), arrays, raw[label].astype(np.float32))
        sizes.append(len(raw[label]))
    if not sizes:
        raise ValueError(f"{path} has no rows")
    return TransformedSplit(out, tuple(sizes))


def write_chunk(
    folder: Path, index: int, features: dict[str, np.ndarray], labels: np.ndarray
) -> None:
    """Writes chunk ``index`` of a :class:`TransformedSplit` (features by name, and labels)."""
    arrays: dict[str, Any] = {**features, _LABEL: labels}
    np.savez(folder / f"chunk-{index:05d}.npz", **arrays)


def shuffled_batches(
    data: Any, batch_size: int, seed: int, *, drop_remainder: bool = False
) -> tf.data.Dataset:
    """Batches of in-memory ``data`` (arrays with rows first, nested), a new order each epoch.

    The same batching as :meth:`TransformedSplit.batches`, with all the data as one window.
    """
    rows = len(tf.nest.flatten(data)[0])
    signature = tf.nest.map_structure(_spec_of, data)
    return _dataset(
        lambda: iter([data]), rows, signature, batch_size, np.random.default_rng(seed),
        drop_remainder,
    )  # fmt: skip


def _spec_of(values: np.ndarray) -> tf.TensorSpec:
    return tf.TensorSpec([None, *values.shape[1:]], tf.as_dtype(values.dtype))


def _concatenate(parts: list[Any]) -> Any:
    return tf.nest.map_structure(lambda *arrays: np.concatenate(arrays), *parts)


def _gather(data: Any, picked: np.ndarray) -> Any:
    return tf.nest.map_structure(lambda values: values[picked], data)


def _rows(carried: Any, window: Any, picked: np.ndarray) -> Any:
    """Rows ``picked`` of the carried rows followed by the window's.

    The two are numbered as one, not copied together, so memory never holds a window twice.
    """
    if carried is None:
        return _gather(window, picked)
    held = len(tf.nest.flatten(carried)[0])
    old = picked < held
    return _concatenate([_gather(carried, picked[old]), _gather(window, picked[~old] - held)])


def _dataset(
    windows: Callable[[], Iterator[Any]],
    rows: int,
    signature: Any,
    batch_size: int,
    rng: np.random.Generator,
    drop_remainder: bool,
) -> tf.data.Dataset:
    """Batches from the windows ``windows()`` yields, each window's rows in a random order."""

    def generate() -> Iterator[Any]:
        carried = None  # the previous window's rows that did not fill a batch
        for window in windows():
            held = 0 if carried is None else len(tf.nest.flatten(carried)[0])
            size = held + len(tf.nest.flatten(window)[0])
            order = rng.permutation(size)
            full = size - size % batch_size
            for start in range(0, full, batch_size):
                yield _rows(carried, window, order[start : start + batch_size])
            carried = _rows(carried, window, order[full:])
            del window  # before the next window loads: one window in memory at a time
        if carried is not None and not drop_remainder and len(tf.nest.flatten(carried)[0]):
            yield carried

    batches = rows // batch_size if drop_remainder else -(-rows // batch_size)
    return (
        tf.data.Dataset.from_generator(generate, output_signature=signature)
        # Keras counts steps per epoch from it (a generator's length is unknown).
        .apply(tf.data.experimental.assert_cardinality(batches))
        .prefetch(tf.data.AUTOTUNE)
    )
