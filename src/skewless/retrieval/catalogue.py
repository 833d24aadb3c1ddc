"""The catalogue retrieval searches: one row per item seen in the clean splits, its item-side
raw features; TensorFlow-free."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from skewless.contract.spec import FeatureSpec
from skewless.data.raw import read_column_batches


def item_names(spec: FeatureSpec) -> list[str]:
    """Raw features the candidate tower reads (item side), in spec order."""
    return [f.name for f in spec.on_side("item")]


def catalogue(spec: FeatureSpec, *splits: str | Path) -> pd.DataFrame:
    """The items seen in ``splits``: their raw item-side features, the last row of each item.

    Item features are item attributes, so every row of an item should agree; when they do not
    (a price changed) the latest row wins, as it would in a catalogue.
    """
    names = item_names(spec)
    key = spec.item_key.name if spec.item_key else names[0]
    # In record batches, keeping one row per item: memory holds the catalogue, not the splits.
    items = pd.DataFrame(columns=names)
    for batch in (b for split in splits for b in read_column_batches(split, names, 65_536)):
        part = pd.DataFrame(batch)
        items = (
            pd.concat([items, part], ignore_index=True) if len(items) else part
        ).drop_duplicates(key, keep="last")
    return items.sort_values(key, kind="stable").reset_index(drop=True)
