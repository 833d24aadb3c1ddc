"""A side's offline table from the clean splits: each entity's values where they changed.

Every clean row observes its user and its item at its event time, but an entity's values rarely
change between rows: at 10M rows a table of every observation held the step's memory at several
GB and made Feast's ``materialize`` read it all. The feature views never expire a value (ttl 0),
so a point-in-time join as of any time returns the entity's latest observation at or before it,
and an observation whose values equal the entity's previous one changes no answer. The table
therefore keeps, per entity in time order, its first observation and each one whose values
differ from the one before: the same join results from a table the size of the entities and
their changes.

The splits are read column by column with their text dictionary-encoded, so memory holds a few
bytes per row (the integer codes, the times) rather than the values; sorting and comparing run on
those arrays in NumPy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq


def changes(
    key: str,
    time_name: str,
    features: Sequence[str],
    splits: Sequence[str | Path],
    *,
    before: Sequence[str | Path] = (),
    after: Sequence[str | Path] = (),
) -> pd.DataFrame:
    """The rows that start an entity's values, sorted by time then key.

    At one entity and instant the first row is kept: of ``before``'s files, then the splits', then
    ``after``'s, each in order. The compression runs over all of them together, so a row of one
    source never hides behind a dropped row of another.

    Args:
        key: The entity's key column.
        time_name: The event time column.
        features: The entity's feature columns.
        splits: Clean splits (Parquet): their types are the table's.
        before: Tables whose rows win over the splits' at one instant (pushed values, newest
            first).
        after: Tables the splits' rows win over (the offline table a repository already holds).

    Returns:
        The kept rows: ``key``, ``time_name``, then ``features``.
    """
    columns = [key, time_name, *features]
    table = _read(splits, columns, before, after)
    codes = {name: _codes(table.column(name)) for name in [key, *features]}
    times = table.column(time_name).combine_chunks().cast(pa.int64()).to_numpy(False)
    order = np.lexsort((times, codes[key]))  # by key, then time; stable, so split order breaks ties
    entity, at = codes[key][order], times[order]
    new_entity = np.ones(len(order), dtype=bool)
    new_entity[1:] = entity[1:] != entity[:-1]
    # The first row of each entity and instant; the rest at that instant are dropped.
    first = new_entity.copy()
    first[1:] |= at[1:] != at[:-1]
    order, new_entity = order[first], new_entity[first]
    changed = new_entity.copy()
    for name in features:
        values = codes[name][order]
        differs = values[1:] != values[:-1]
        if values.dtype.kind == "f":  # a missing number stays missing: not a change
            differs &= ~(np.isnan(values[1:]) & np.isnan(values[:-1]))
        changed[1:] |= differs
    kept = table.take(pa.array(order[changed]))
    for index, field in enumerate(kept.schema):  # text back to plain strings, as in the splits
        if pa.types.is_dictionary(field.type):
            plain = kept.column(index).cast(field.type.value_type)
            kept = kept.set_column(index, field.name, plain)
    # Arrow-backed columns: text stays compact, not a Python object per value.
    frame = kept.to_pandas(types_mapper=pd.ArrowDtype)
    return frame.sort_values([time_name, key], kind="stable").reset_index(drop=True)


def _read(
    splits: Sequence[str | Path],
    columns: list[str],
    before: Sequence[str | Path],
    after: Sequence[str | Path],
) -> pa.Table:
    """The columns of every table, in order, text dictionary-encoded with one dictionary per
    column, with the splits' types."""
    schema = pq.read_schema(splits[0])
    text = [
        name
        for name in columns
        if pa.types.is_string(schema.field(name).type)
        or pa.types.is_large_string(schema.field(name).type)
    ]
    tables = [
        pq.read_table(path, columns=columns, read_dictionary=text)
        for path in [*before, *splits, *after]
    ]
    target = tables[len(before)].schema  # the first split's, as read
    tables = [t if t.schema.equals(target) else t.cast(target) for t in tables]
    return pa.concat_tables(tables).unify_dictionaries()


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    """A column as comparable NumPy values: a dictionary's indices (-1 for null), or numbers
    (NaN for null)."""
    array = column.combine_chunks()
    if pa.types.is_dictionary(array.type):
        return pc.fill_null(array.indices, -1).to_numpy(zero_copy_only=False)
    return pc.cast(array, pa.float64()).to_numpy(zero_copy_only=False)
