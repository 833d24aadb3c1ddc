"""Values pushed to a repository in an object store (``pushed/<view>/``, one file per push),
folded into its offline tables."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from skewless.features.changes import changes
from skewless.features.store import (
    PUSHED_DIR,
    FeatureStoreError,
    pushed_files,
    read_views,
    write_offline,
)


def include_pushed(repo: str | Path) -> None:
    """Folds the pushed files of a repository copied from an object store into its offline
    tables, so a point-in-time join sees every pushed value.

    The rule is the one a run's tables are built by (:func:`skewless.features.changes.changes`):
    at one entity and instant the newest push wins, then older pushes, then the table.

    Raises:
        FeatureStoreError: A pushed file is not a table of the view's columns.
    """
    root = Path(repo)
    views, time_name = read_views(root)
    for view in views:
        newest_first = pushed_files(root, view)
        if not newest_first:
            continue
        try:
            table = changes(
                view.key, time_name, view.features, [view.table(root)], before=newest_first
            )
        except (OSError, ValueError, KeyError, pa.ArrowException) as err:
            raise FeatureStoreError(
                f"{root / PUSHED_DIR / view.name}: a pushed file cannot be read with the "
                f"offline table ({type(err).__name__}: {str(err)[:200]})"
            ) from None
        write_offline(table, view.table(root))
