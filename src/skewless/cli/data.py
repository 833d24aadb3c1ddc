"""``skewless generate``, ``upload``, ``validate``, ``stats merge``, ``analyze``, ``spec infer``."""

from __future__ import annotations

import argparse
import dataclasses
import glob
import sys
from pathlib import Path
from typing import Any

from skewless.cli.common import (
    CliError,
    _add_spec,
    _fraction,
    _non_negative,
    _positive_int,
    _print_json,
)
from skewless.contract.spec import load_spec


def cmd_generate(args: argparse.Namespace) -> int:
    """``skewless generate``: write synthetic interaction data."""
    from skewless.data.generate import write_catalogue, write_dataset

    try:
        path = write_dataset(
            args.rows, args.seed, args.out, items=args.items, show_progress=not args.quiet
        )
    except ValueError as err:
        raise CliError(f"--out {err}") from None
    print(f"wrote {args.rows:,} rows to {path}")
    if args.catalogue:
        try:
            catalogue = write_catalogue(args.seed, args.catalogue, args.items)
        except ValueError as err:
            raise CliError(f"--catalogue {err}") from None
        print(f"wrote the catalogue of {args.items:,} items to {catalogue}")
    return 0


def cmd_upload(args: argparse.Namespace) -> int:
    """``skewless upload``: copy a local data file to where cluster steps read it."""
    from skewless.data import storage

    if not storage.is_remote(args.uri):
        raise CliError(f"{args.uri!r}: expected an object-store URI (minio://, s3://, gs://)")
    written = storage.upload(args.file, args.uri)
    print(f"uploaded {written:,} bytes to {args.uri}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    """``skewless validate``: validated ingestion into clean splits, quarantine and statistics."""
    from skewless.data.ingest import ingest

    result = ingest(
        args.data,
        load_spec(args.spec),
        args.out,
        max_quarantine_fraction=args.max_quarantine_fraction,
        baseline_stats=args.baseline_stats,
        linf_threshold=args.drift_linf,
        mean_shift_threshold=args.drift_mean_shift,
        show_progress=not args.quiet,
    )
    _print_json(result.summary)
    return 0


def cmd_stats_merge(args: argparse.Namespace) -> int:
    """``skewless stats merge``: the statistics of shards ingested apart, as one."""
    from skewless.data.shards import merge_stats

    _print_json(merge_stats(args.shards, load_spec(args.spec), args.out))
    return 0


def cmd_analyze(args: argparse.Namespace) -> int:
    """``skewless analyze``: TFT analysis of the training split on Beam."""
    from skewless.data.ingest import IngestedFolder
    from skewless.model.transform import analyze

    train = Path(args.data)
    if train.is_dir():
        train = IngestedFolder(train).train
    is_glob = any(ch in args.data for ch in "*?[")
    if not is_glob and not train.exists():
        raise CliError(f"--data: {train} not found (give train.parquet or the validate output)")
    if is_glob and not glob.glob(args.data):  # absolute or relative, as a shell would
        raise CliError(f"--data: no file matches {args.data!r}")
    result = analyze(train, load_spec(args.spec), args.out, beam_args=args.beam_args)
    _print_json(dataclasses.asdict(result))
    return 0


def cmd_spec_infer(args: argparse.Namespace) -> int:
    """``skewless spec infer``: a draft spec from a data file, to stdout or ``--out``."""
    from skewless.contract.infer import infer_spec

    text = infer_spec(args.data, label=args.label, key=args.key, exclude=tuple(args.exclude))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    try:
        Path(args.out).write_text(text)
    except OSError as err:
        raise CliError(f"--out {args.out}: cannot write: {err.strerror}") from None
    print(f"wrote {args.out}; review it, then: skewless run --data {args.data} --spec {args.out}")
    return 0


def add_commands(sub: Any) -> None:
    """Adds the data subcommands to ``sub``."""
    gen = sub.add_parser("generate", help="write deterministic synthetic ranking data")
    gen.add_argument("--rows", type=_positive_int, default=100_000, help="rows to write")
    gen.add_argument("--seed", type=int, default=0, help="seed; same rows+seed, same data")
    gen.add_argument("--items", type=_positive_int, default=50_000,
                     help="size of the item catalogue (default 50000)")  # fmt: skip
    gen.add_argument("--out", required=True, help="output file (.parquet, or .csv)")
    gen.add_argument("--catalogue", help="also write every item's features to this .parquet")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(func=cmd_generate)

    up = sub.add_parser(
        "upload",
        help="copy a local data file to the object store, for a cluster run",
        description="Example (KFP's store, `kubectl port-forward -n kubeflow svc/seaweedfs "
        "9000`): SKEWLESS_OBJECT_STORE_ENDPOINT=localhost:9000 AWS_ACCESS_KEY_ID=minio "
        "AWS_SECRET_ACCESS_KEY=minio123 "
        "skewless upload interactions.parquet minio://mlpipeline/data/interactions.parquet",
    )
    up.add_argument("file", help="local file")
    up.add_argument("uri", help="destination: minio://bucket/key (KFP's store), s3://, gs://")
    up.set_defaults(func=cmd_upload)

    val = sub.add_parser("validate", help="validate raw data into clean splits and quarantine")
    val.add_argument("--data", required=True, help="raw CSV or Parquet file")
    _add_spec(val)
    val.add_argument("--out", required=True, help="output folder")
    val.add_argument(
        "--max-quarantine-fraction",
        type=_fraction,
        default=0.05,
        help="fail when more than this share of rows is quarantined (default 0.05)",
    )
    val.add_argument("--baseline-stats", help="stats.json of a previous run, to report drift")
    val.add_argument(
        "--drift-linf", type=_non_negative, default=0.1, help="categorical drift threshold"
    )
    val.add_argument(
        "--drift-mean-shift", type=_non_negative, default=0.25, help="numeric drift threshold"
    )
    val.add_argument("--quiet", action="store_true", help="no progress bar")
    val.set_defaults(func=cmd_validate)

    stats = sub.add_parser("stats", help="work with ingestion statistics")
    stats_sub = stats.add_subparsers(dest="stats_command", required=True, metavar="ACTION")
    merge = stats_sub.add_parser(
        "merge",
        help="merge the statistics of shards validated apart (one output folder per shard)",
        description="Example: skewless stats merge out/shard-0 out/shard-1 --out out/all",
    )
    merge.add_argument("shards", nargs="+", help="`skewless validate` output folders")
    _add_spec(merge)
    merge.add_argument("--out", required=True, help="folder for the merged stats.json")
    merge.set_defaults(func=cmd_stats_merge)

    ana = sub.add_parser(
        "analyze",
        help="TFT analysis on Beam; Beam options go after '--'",
        description="Example: skewless analyze --data out/ --out tft/ -- --runner=FlinkRunner",
    )
    ana.add_argument("--data", required=True, help="train.parquet, or the validate output folder")
    _add_spec(ana)
    ana.add_argument("--out", required=True, help="output folder for the transform graph")
    ana.add_argument("beam_args", nargs="*", help="Beam pipeline options, after '--'")
    ana.set_defaults(func=cmd_analyze)

    spec = sub.add_parser("spec", help="work with feature specs")
    spec_sub = spec.add_subparsers(dest="spec_command", required=True, metavar="ACTION")
    infer = spec_sub.add_parser(
        "infer",
        help="draft a spec from a data file's statistics (review it before use)",
        description="Example: skewless spec infer --data my.csv --label clicked > my_spec.yaml",
    )
    infer.add_argument("--data", required=True, help="CSV or Parquet file")
    infer.add_argument("--label", required=True, help="the binary label column (0/1, true/false)")
    infer.add_argument("--key", help="a column identifying the row (hashed to split train/eval)")
    infer.add_argument(
        "--exclude", action="append", default=[], metavar="COL", help="leave a column out"
    )
    infer.add_argument("--out", help="write the draft here (default: standard output)")
    infer.set_defaults(func=cmd_spec_infer)
