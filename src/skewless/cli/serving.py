"""``skewless serve``: the KServe model server."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from skewless.cli.common import (
    CliError,
    _fraction,
    _model_name,
    _non_negative,
    _port,
    _positive_float,
    _positive_int,
    _registry_file,
    exposure_log_beside,
)
from skewless.experiments.logs import DEFAULT_LOG_MAX_MB, EXPOSURE_LOG
from skewless.serving.batching import DEFAULT_BATCH_ROWS
from skewless.serving.config import DEFAULT_HEADER_TIMEOUT, DEFAULT_HOST, check_host
from skewless.serving.lookup import DEFAULT_FEATURE_LOG_SAMPLE, FEATURE_LOG
from skewless.serving.validation import (
    DEFAULT_ITEM_FIELD,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_UNIT_FIELD,
)


def cmd_serve(args: argparse.Namespace) -> int:
    """``skewless serve``: a KServe model server for an exported model."""
    from skewless.registry import is_model_registry_url
    from skewless.serving.config import ServingConfig
    from skewless.serving.main import serve

    remote = bool(args.registry) and is_model_registry_url(args.registry)
    if args.registry and not remote:
        _registry_file(args.registry)
    request_log = args.request_log
    if request_log is None and args.registry and not remote:
        request_log = exposure_log_beside(args.registry)
    if not args.feature_store:  # these flags act on the feature store: none is silently ignored
        for flag, value in (("--feature-log", args.feature_log), ("--allow-push", args.allow_push),
                            ("--feature-log-sample", args.feature_log_sample)):  # fmt: skip
            if value not in (None, False):
                raise CliError(f"{flag} needs --feature-store")
    feature_log = args.feature_log
    if feature_log is None and args.feature_store and request_log:
        feature_log = str(Path(request_log).with_name(FEATURE_LOG))
    config = ServingConfig(
        max_request_rows=args.max_request_rows,
        max_batch_rows=args.max_batch_rows,
        max_wait_ms=args.max_wait_ms,
        request_log=request_log or None,
        max_body_mb=args.max_body_mb,
        unit_field=args.experiment_unit,
        item_field=args.item_field,
        log_max_mb=args.log_max_mb,
        feature_store=_feature_repo(args.feature_store),
        feature_log=feature_log or None,
        feature_log_sample=(
            args.feature_log_sample
            if args.feature_log_sample is not None
            else DEFAULT_FEATURE_LOG_SAMPLE
        ),
        allow_push=args.allow_push,
    )
    _check_ports(args.http_port, args.grpc_port, host=args.host)
    from skewless.features.store import FeatureStoreError
    from skewless.serving.loading import ModelLoadError

    try:
        serve(
            args.model,
            registry=args.registry,
            name=args.name,
            host=args.host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            workers=args.workers,
            config=config,
            announce=True,
            access_log=args.access_log,
            log_format=args.log_format,
            allow_model_management=args.allow_model_management,
            header_timeout=args.header_timeout,
        )
    except (FileNotFoundError, ModelLoadError) as err:
        raise CliError(f"--model: {err}") from None
    except FeatureStoreError as err:
        raise CliError(f"--feature-store: {err}") from None
    return 0


def _feature_repo(repo: str | None) -> str | None:
    """A feature repository (a folder, or one in the object store), checked before anything
    loads."""
    if repo is None:
        return None
    from skewless.features.location import check
    from skewless.features.store import FeatureStoreError

    try:
        check(repo)
    except FeatureStoreError as err:
        raise CliError(f"--feature-store: {err}") from None
    return repo


def _check_ports(http_port: int, grpc_port: int, host: str = DEFAULT_HOST) -> None:
    """Fails with one line when a port the server needs is taken, or ``host`` is not an address
    of this machine (before any work starts)."""
    import errno
    import socket

    if http_port == grpc_port:
        raise CliError(f"--http-port and --grpc-port are both {http_port}: give two ports")
    for flag, port in (("--http-port", http_port), ("--grpc-port", grpc_port)):
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind((host, port))
            except OSError as err:
                if err.errno == errno.EADDRNOTAVAIL:
                    raise CliError(f"--host {host}: not an address of this machine") from None
                raise CliError(
                    f"{flag} {port}: cannot listen there ({err.strerror}); another server may "
                    "hold it: stop it or pick another port"
                ) from None


def _host(text: str) -> str:
    try:
        return check_host(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_commands(sub: Any) -> None:
    """Adds the serving subcommands to ``sub``."""
    srv = sub.add_parser("serve", help="serve an exported model with KServe (REST and gRPC)")
    source = srv.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="exported SavedModel folder or storage URI")
    source.add_argument(
        "--registry",
        help="registry file, or a Kubeflow Model Registry URL: serve NAME's production version "
        "(and a canary's candidate) and follow them",
    )
    srv.add_argument(
        "--name", type=_model_name, default="ranking", help="model name in the URL paths"
    )
    srv.add_argument(
        "--host",
        type=_host,
        default=DEFAULT_HOST,
        help=f"IP address to listen on, REST and gRPC ({DEFAULT_HOST}: this machine only; 0.0.0.0: "
        "every IPv4 address, as the container does)",
    )
    srv.add_argument("--http-port", type=_port, default=8080, help="REST port (8080)")
    srv.add_argument("--grpc-port", type=_port, default=8081, help="gRPC port (8081)")
    srv.add_argument("--workers", type=_positive_int, default=1, help="REST worker processes")
    srv.add_argument(
        "--access-log",
        action="store_true",
        help="log a line per request (off by default: it costs throughput; errors always log)",
    )
    srv.add_argument(
        "--log-format", choices=("text", "json"), default="text", help="log lines as text or JSON"
    )
    srv.add_argument(
        "--experiment-unit",
        default=DEFAULT_UNIT_FIELD,
        metavar="FIELD",
        help=f"the feature whose value (first row) assigns a user to one canary version "
        f"({DEFAULT_UNIT_FIELD}); an x-experiment-unit header overrides it",
    )
    srv.add_argument(
        "--item-field",
        default=DEFAULT_ITEM_FIELD,
        metavar="FIELD",
        help=f"the feature naming each row's item in the exposure log ({DEFAULT_ITEM_FIELD})",
    )
    srv.add_argument(
        "--log-max-mb",
        type=_positive_float,
        default=DEFAULT_LOG_MAX_MB,
        help=f"rotate the exposure and feedback logs past this size ({DEFAULT_LOG_MAX_MB:g}); "
        "rotated files are kept",
    )
    srv.add_argument(
        "--max-body-mb",
        type=_positive_float,
        default=DEFAULT_MAX_BODY_MB,
        help=f"refuse larger request bodies with 413 ({DEFAULT_MAX_BODY_MB:g})",
    )
    srv.add_argument(
        "--header-timeout",
        type=_positive_float,
        default=DEFAULT_HEADER_TIMEOUT,
        metavar="SECONDS",
        help=f"close a connection whose request headers are not all in after this long "
        f"({DEFAULT_HEADER_TIMEOUT:g})",
    )
    srv.add_argument(
        "--allow-model-management",
        action="store_true",
        help="answer V2 model repository load/unload (off: anyone reaching the port could unload)",
    )
    srv.add_argument(
        "--max-request-rows",
        type=_positive_int,
        default=DEFAULT_MAX_BATCH,
        help=f"rows accepted per request ({DEFAULT_MAX_BATCH})",
    )
    srv.add_argument(
        "--max-batch-rows",
        type=_positive_int,
        default=DEFAULT_BATCH_ROWS,
        help=f"most rows in one batched model call ({DEFAULT_BATCH_ROWS})",
    )
    srv.add_argument(
        "--max-wait-ms",
        type=_non_negative,
        default=1.0,
        help="under load, wait this long for more requests to fill a batch (1.0)",
    )
    srv.add_argument(
        "--feature-store",
        metavar="REPO",
        help="a feature repository (`skewless run` writes WORKDIR/feature_repo; on a cluster a "
        "minio:// folder): requests may send only ids and context, the other features are read "
        "from its online store",
    )
    srv.add_argument(
        "--allow-push",
        action="store_true",
        help="with --feature-store: accept new feature values at POST /push (off: anyone "
        "reaching the port could rewrite what the model sees)",
    )
    srv.add_argument(
        "--feature-log",
        help=f"with --feature-store: append a sample of the scored rows' user and item features "
        f"here for `skewless skew-report` (default: {FEATURE_LOG} beside the request log; '' "
        "for none)",
    )
    srv.add_argument(
        "--feature-log-sample",
        type=_fraction,
        help=f"share of rows written to the feature log ({DEFAULT_FEATURE_LOG_SAMPLE:g})",
    )
    srv.add_argument(
        "--request-log",
        help=f"append one exposure (JSON line) per request here, outcomes beside it (default "
        f"with a --registry file: {EXPOSURE_LOG} beside it; '' for none)",
    )
    srv.set_defaults(func=cmd_serve)

    skew = sub.add_parser(
        "skew-report",
        help="compare the features a server scored with against the offline store, as of the "
        "same times (exit 1 when a feature is skewed)",
    )
    skew.add_argument("--feature-log", required=True, help="the server's feature log")
    skew.add_argument(
        "--feature-store", required=True, metavar="REPO", help="feature repository (or minio://)"
    )
    skew.add_argument(
        "--max-mismatch",
        type=_fraction,
        default=0.01,
        help="share of rows whose served value may differ from the offline one (0.01)",
    )
    skew.add_argument("--json", action="store_true", help="print the report as JSON")
    skew.set_defaults(func=cmd_skew_report)


def cmd_skew_report(args: argparse.Namespace) -> int:
    """``skewless skew-report``: served features against the offline store; 1 when skewed."""
    import json

    from skewless.experiments.logs import LogError
    from skewless.features.location import readable
    from skewless.features.skew import skew_report
    from skewless.features.store import FeatureStoreError

    repo = _feature_repo(args.feature_store)
    assert repo is not None
    try:
        with tempfile.TemporaryDirectory(prefix="skewless-skew-") as scratch:
            local = readable(repo, Path(scratch))  # a remote repository: a copy
            report = skew_report(args.feature_log, local, max_mismatch=args.max_mismatch)
    except LogError as err:
        raise CliError(f"--feature-log: {err}") from None
    except FeatureStoreError as err:
        raise CliError(str(err)) from None
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['rows']} served rows against the offline store at {repo}")
        print(f"  {'feature':<12} {'mismatch':>9} {'distance':>16} {'skewed':>7}")
        for name, row in report["features"].items():
            distance = (
                f"{row.get('metric', '-')} {row.get('value', 0):.3f}" if "metric" in row else "-"
            )
            verdict = "YES" if row["skewed"] else "no"
            print(f"  {name:<12} {row['mismatch']:>9.2%} {distance:>16} {verdict:>7}")
        print(f"skewed: {', '.join(report['skewed']) or 'none'}")
    return 1 if report["skewed"] else 0
