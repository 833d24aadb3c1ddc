"""``skewless generate``, ``upload``, ``validate``, ``stats merge``, ``analyze``, ``spec infer``."""

from __future__ import annotations

import dataclasses
import glob
import sys
from pathlib import Path

import click

from skewless.cli.common import (
    FRACTION,
    NON_NEGATIVE,
    POSITIVE_INT,
    CliError,
    Command,
    Group,
    print_json,
    spec_option,
)
from skewless.contract.spec import load_spec

QUIET = click.option("--quiet", is_flag=True, help="no progress bar")


@click.command(cls=Command)
@click.option("--rows", type=POSITIVE_INT, default=100_000, help="rows to write")
@click.option("--seed", type=int, default=0, help="seed; same rows+seed, same data")
@click.option("--items", type=POSITIVE_INT, default=50_000, help="size of the item catalogue")
@click.option("--out", required=True, type=click.Path(), help="output file (.parquet, or .csv)")
@click.option("--catalogue", type=click.Path(),
              help="also write every item's features to this .parquet")  # fmt: skip
@QUIET
def generate(
    rows: int, seed: int, items: int, out: str, catalogue: str | None, quiet: bool
) -> None:
    """Write deterministic synthetic ranking data."""
    from skewless.data.generate import write_catalogue, write_dataset

    try:
        path = write_dataset(rows, seed, out, items=items, show_progress=not quiet)
    except ValueError as err:
        raise CliError(f"--out {err}") from None
    print(f"wrote {rows:,} rows to {path}")
    if catalogue:
        try:
            written = write_catalogue(seed, catalogue, items)
        except ValueError as err:
            raise CliError(f"--catalogue {err}") from None
        print(f"wrote the catalogue of {items:,} items to {written}")


@click.command(cls=Command)
@click.argument("file", type=click.Path(dir_okay=False))
@click.argument("uri")
def upload(file: str, uri: str) -> None:
    """Copy a data file to the object store, for a cluster run.

    FILE is the local file; URI the destination: minio://bucket/key (KFP's store), s3://, gs://.
    Example (KFP's store, `kubectl port-forward -n kubeflow svc/seaweedfs 9000`):
    SKEWLESS_OBJECT_STORE_ENDPOINT=localhost:9000 AWS_ACCESS_KEY_ID=minio
    AWS_SECRET_ACCESS_KEY=minio123 skewless upload interactions.parquet
    minio://mlpipeline/data/interactions.parquet
    """
    from skewless.data import storage

    if not storage.is_remote(uri):
        raise CliError(f"{uri!r}: expected an object-store URI (minio://, s3://, gs://)")
    written = storage.upload(file, uri)
    print(f"uploaded {written:,} bytes to {uri}")


@click.command(cls=Command)
@click.option("--data", required=True, type=click.Path(), help="raw CSV or Parquet file")
@spec_option
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder")
@click.option(
    "--max-quarantine-fraction",
    type=FRACTION,
    default=0.05,
    help="fail when more than this share of rows is quarantined",
)
@click.option("--baseline-stats", type=click.Path(),
              help="stats.json of a previous run (or its folder), to report drift")  # fmt: skip
@click.option("--drift-linf", type=NON_NEGATIVE, default=0.1, help="categorical drift threshold")
@click.option("--drift-mean-shift", type=NON_NEGATIVE, default=0.25,
              help="numeric drift threshold")  # fmt: skip
@QUIET
def validate(
    data: str, spec: str | None, out: str, max_quarantine_fraction: float,
    baseline_stats: str | None, drift_linf: float, drift_mean_shift: float, quiet: bool,
) -> None:  # fmt: skip
    """Validate raw data into clean splits and quarantine."""
    from skewless.data.ingest import ingest

    result = ingest(
        data,
        load_spec(spec),
        out,
        max_quarantine_fraction=max_quarantine_fraction,
        baseline_stats=baseline_stats,
        linf_threshold=drift_linf,
        mean_shift_threshold=drift_mean_shift,
        show_progress=not quiet,
    )
    print_json(result.summary)


@click.group(cls=Group)
def stats() -> None:
    """Work with ingestion statistics."""


@stats.command()
@click.argument("shards", nargs=-1, required=True, type=click.Path(file_okay=False))
@spec_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="folder for the merged stats.json")  # fmt: skip
def merge(shards: tuple[str, ...], spec: str | None, out: str) -> None:
    """Merge the statistics of shards validated apart (one output folder per shard).

    SHARDS are `skewless validate` output folders. Example: skewless stats merge out/shard-0
    out/shard-1 --out out/all
    """
    from skewless.data.shards import merge_stats

    print_json(merge_stats(list(shards), load_spec(spec), out))


@click.command(cls=Command)
@click.option("--data", required=True, help="train.parquet, or the validate output folder")
@spec_option
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="output folder for the transform graph")  # fmt: skip
@click.argument("beam_args", nargs=-1)
def analyze(data: str, spec: str | None, out: str, beam_args: tuple[str, ...]) -> None:
    """TFT analysis on Beam; Beam options go after '--'.

    BEAM_ARGS are Beam pipeline options. Example: skewless analyze --data out/ --out tft/ --
    --runner=FlinkRunner
    """
    from skewless.data.folder import IngestedFolder
    from skewless.data.storage import is_remote

    train: str | Path = data  # an object store's path (gs://, s3://): the Beam runner reads it
    if not is_remote(data):
        train = Path(data)
        if train.is_dir():
            train = IngestedFolder(train).train
        is_glob = any(ch in data for ch in "*?[")
        if not is_glob and not train.exists():
            raise CliError(f"--data: {train} not found (give train.parquet or the validate output)")
        if is_glob and not glob.glob(data):  # absolute or relative, as a shell would
            raise CliError(f"--data: no file matches {data!r}")
    from skewless.model.transform import analyze as analyze_on_beam  # TensorFlow: after the checks

    result = analyze_on_beam(train, load_spec(spec), out, beam_args=list(beam_args))
    print_json(dataclasses.asdict(result))


@click.group(name="spec", cls=Group)
def spec_group() -> None:
    """Work with feature specs."""


@spec_group.command()
@click.option("--data", required=True, type=click.Path(dir_okay=False), help="CSV or Parquet file")
@click.option("--label", required=True, help="the binary label column (0/1, true/false)")
@click.option("--key", help="a column identifying the row (hashed to split train/eval)")
@click.option("--exclude", multiple=True, metavar="COL", help="leave a column out (repeatable)")
@click.option("--out", type=click.Path(dir_okay=False),
              help="write the draft here (default: standard output)")  # fmt: skip
def infer(
    data: str, label: str, key: str | None, exclude: tuple[str, ...], out: str | None
) -> None:
    """Draft a spec from a data file's statistics (review it before use).

    Example: skewless spec infer --data my.csv --label clicked > my_spec.yaml
    """
    from skewless.contract.infer import infer_spec

    text = infer_spec(data, label=label, key=key, exclude=exclude)
    if out is None:
        sys.stdout.write(text)
        return
    try:
        Path(out).write_text(text)
    except OSError as err:
        raise CliError(f"--out {out}: cannot write: {err.strerror}") from None
    print(f"wrote {out}; review it, then: skewless run --data {data} --spec {out}")


COMMANDS = (generate, upload, validate, stats, analyze, spec_group)
"""The data commands, in the order ``skewless --help`` lists them."""
