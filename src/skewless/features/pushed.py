"""Values pushed to a repository in an object store (``pushed/<view>/``, one file per push),
folded into its offline tables."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa

from skewless.features.store import PUSHED_DIR, EntityView, FeatureStoreError, read_views


def _read_like(paths: list[Path], like: pd.DataFrame) -> list[pd.DataFrame]:
    """The tables at ``paths`` that exist, with ``like``'s columns and types."""
    return [
        pd.read_parquet(path, columns=list(like.columns)).astype(like.dtypes.to_dict())
        for path in paths
        if path.is_file()
    ]


def pushed_files(root: Path, view: EntityView) -> list[Path]:
    """The values pushed to a repository in an object store (:data:`PUSHED_DIR`), oldest first."""
    return sorted((root / PUSHED_DIR / view.name).glob("*.parquet"))


def _merged(view: EntityView, time_name: str, frames: list[pd.DataFrame]) -> pd.DataFrame:
    """One offline table from several: the last value of an entity at an instant wins."""
    return (
        pd.concat(frames, ignore_index=True)
        .drop_duplicates([view.key, time_name], keep="last")
        .sort_values([time_name, view.key], kind="stable")
        .reset_index(drop=True)
    )


def include_pushed(repo: str | Path) -> None:
    """Folds the pushed files of a repository copied from an object store into its offline
    tables, so a point-in-time join sees every pushed value.

    Raises:
        FeatureStoreError: A pushed file is not a table of the view's columns.
    """
    root = Path(repo)
    views, time_name = read_views(root)
    for view in views:
        if (root / PUSHED_DIR / view.name).is_dir():
            try:
                table = pd.read_parquet(view.table(root))
                pushed = _read_like(pushed_files(root, view), table)
            except (OSError, ValueError, KeyError, pa.ArrowException) as err:
                raise FeatureStoreError(
                    f"{root / PUSHED_DIR / view.name}: a pushed file cannot be read with the "
                    f"offline table ({type(err).__name__}: {str(err)[:200]})"
                ) from None
            _merged(view, time_name, [table, *pushed]).to_parquet(view.table(root), index=False)
