"""``skewless serve``: the KServe model server; ``skewless skew-report``: what it scored with.

A new ``serve`` option is one ``@click.option`` line among the others (its place there is its
place in ``--help``) and one keyword parameter of ``serve`` of the same name, which passes it on.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from skewless.cli.common import (
    FRACTION,
    MODEL_NAME,
    NON_NEGATIVE,
    POSITIVE,
    POSITIVE_INT,
    Checked,
    CliError,
    Command,
    WholeRange,
    exposure_log_beside,
)
from skewless.cli.registry import registry_file
from skewless.experiments.logs import DEFAULT_LOG_MAX_MB, EXPOSURE_LOG
from skewless.serving.batching import DEFAULT_BATCH_ROWS
from skewless.serving.config import (
    DEFAULT_HEADER_TIMEOUT,
    DEFAULT_HOST,
    PORTS,
    Listening,
    check_host,
)
from skewless.serving.lookup import DEFAULT_FEATURE_LOG_SAMPLE, FEATURE_LOG
from skewless.serving.validation import (
    DEFAULT_ITEM_FIELD,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_UNIT_FIELD,
)

HOST = Checked("address", check_host, (ValueError,))
"""An IP address to listen on."""


def port_options(command: Any) -> Any:
    """``--http-port`` and ``--grpc-port``: where the server listens (``serve`` and ``run``)."""
    port = WholeRange(*PORTS)
    command = click.option("--grpc-port", type=port, default=8081, help="gRPC port")(command)
    return click.option("--http-port", type=port, default=8080, help="REST port")(command)


class ServeCommand(Command):
    """``serve``, which takes exactly one of ``--model`` and ``--registry``, checked as its
    options are parsed (so :func:`skewless.cli.parse` checks a manifest's arguments for it too)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parses the options, then refuses neither or both of the two."""
        rest = super().parse_args(ctx, args)
        if (ctx.params.get("model") is None) == (ctx.params.get("registry") is None):
            raise click.UsageError("give one of --model and --registry", ctx)
        return rest


@click.command(cls=ServeCommand)
@click.option("--model", help="exported SavedModel folder or storage URI (or give --registry)")
@click.option("--registry",
              help="registry file, or a Kubeflow Model Registry URL: serve NAME's production "
              "version (and a canary's candidate) and follow them (or give --model)")  # fmt: skip
@click.option("--name", type=MODEL_NAME, default="ranking", help="model name in the URL paths")
@click.option("--host", type=HOST, default=DEFAULT_HOST,
              help=f"IP address to listen on, REST and gRPC ({DEFAULT_HOST}: this machine only; "
              "0.0.0.0: every IPv4 address, as the container does)")  # fmt: skip
@port_options
@click.option("--workers", type=POSITIVE_INT, default=1, help="REST worker processes")
@click.option("--access-log", is_flag=True,
              help="log a line per request (off by default: it costs throughput; errors always "
              "log)")  # fmt: skip
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text",
              help="log lines as text or JSON")  # fmt: skip
@click.option("--experiment-unit", default=DEFAULT_UNIT_FIELD, metavar="FIELD",
              help="the feature whose value (first row) assigns a user to one canary version; an "
              "x-experiment-unit header overrides it")  # fmt: skip
@click.option("--item-field", default=DEFAULT_ITEM_FIELD, metavar="FIELD",
              help="the feature naming each row's item in the exposure log")  # fmt: skip
@click.option("--log-max-mb", type=POSITIVE, default=DEFAULT_LOG_MAX_MB,
              help="rotate the exposure and feedback logs past this size (rotated files are "
              "kept)")  # fmt: skip
@click.option("--max-body-mb", type=POSITIVE, default=DEFAULT_MAX_BODY_MB,
              help="refuse larger request bodies with 413")  # fmt: skip
@click.option("--header-timeout", type=POSITIVE, default=DEFAULT_HEADER_TIMEOUT, metavar="SECONDS",
              help="close a connection whose request headers are not all in after this "
              "long")  # fmt: skip
@click.option("--allow-model-management", is_flag=True,
              help="answer V2 model repository load/unload (off: anyone reaching the port could "
              "unload)")  # fmt: skip
@click.option("--max-request-rows", type=POSITIVE_INT, default=DEFAULT_MAX_BATCH,
              help="rows accepted per request")  # fmt: skip
@click.option("--max-batch-rows", type=POSITIVE_INT, default=DEFAULT_BATCH_ROWS,
              help="most rows in one batched model call: a request that would pass them "
                   "waits for the next call; a single larger request runs alone")  # fmt: skip
@click.option("--max-wait-ms", type=NON_NEGATIVE, default=1.0,
              help="under load, wait this long for more requests to fill a batch")  # fmt: skip
@click.option("--feature-store", metavar="REPO",
              help="a feature repository (`skewless run` writes WORKDIR/feature_repo; on a "
              "cluster a minio:// folder): requests may send only ids and context, the other "
              "features are read from its online store")  # fmt: skip
@click.option("--allow-push", is_flag=True,
              help="with --feature-store: accept new feature values at POST /push (off: anyone "
              "reaching the port could rewrite what the model sees)")  # fmt: skip
@click.option("--feature-log",
              help=f"with --feature-store: append a sample of the scored rows' user and item "
              f"features here for `skewless skew-report` (default: {FEATURE_LOG} beside the "
              "request log; '' for none)")  # fmt: skip
@click.option("--feature-log-sample", type=FRACTION,
              help="share of rows written to the feature log "
              f"({DEFAULT_FEATURE_LOG_SAMPLE:g})")  # fmt: skip
@click.option("--request-log",
              help="append one exposure (JSON line) per request here, outcomes beside it "
              f"(default with a --registry file: {EXPOSURE_LOG} beside it; '' for "
              "none)")  # fmt: skip
def serve(
    model: str | None,
    registry: str | None,
    name: str,
    host: str,
    http_port: int,
    grpc_port: int,
    workers: int,
    access_log: bool,
    log_format: str,
    experiment_unit: str,
    item_field: str,
    log_max_mb: float,
    max_body_mb: float,
    header_timeout: float,
    allow_model_management: bool,
    max_request_rows: int,
    max_batch_rows: int,
    max_wait_ms: float,
    feature_store: str | None,
    allow_push: bool,
    feature_log: str | None,
    feature_log_sample: float | None,
    request_log: str | None,
) -> None:
    """Serve an exported model with KServe (REST and gRPC)."""
    from skewless.registry import is_model_registry_url
    from skewless.serving.config import ServingConfig
    from skewless.serving.main import serve as serve_model

    remote = registry is not None and is_model_registry_url(registry)
    if registry and not remote:
        registry_file(registry)
    if request_log is None and registry and not remote:
        request_log = exposure_log_beside(registry)
    if not feature_store:  # these flags act on the feature store: none is silently ignored
        for flag, value in (("--feature-log", feature_log), ("--allow-push", allow_push),
                            ("--feature-log-sample", feature_log_sample)):  # fmt: skip
            if value is not None and value is not False:  # 0 is a value given
                raise CliError(f"{flag} needs --feature-store")
    if feature_log is None and feature_store and request_log:
        feature_log = str(Path(request_log).with_name(FEATURE_LOG))
    config = ServingConfig(
        max_request_rows=max_request_rows,
        max_batch_rows=max_batch_rows,
        max_wait_ms=max_wait_ms,
        request_log=request_log or None,
        max_body_mb=max_body_mb,
        unit_field=experiment_unit,
        item_field=item_field,
        log_max_mb=log_max_mb,
        feature_store=_feature_repo(feature_store),
        feature_log=feature_log or None,
        feature_log_sample=(
            feature_log_sample if feature_log_sample is not None else DEFAULT_FEATURE_LOG_SAMPLE
        ),
        allow_push=allow_push,
        allow_model_management=allow_model_management,
        access_log=access_log,
        log_format=log_format,
    )
    listening = listening_on(
        host=host, http_port=http_port, grpc_port=grpc_port, workers=workers,
        header_timeout=header_timeout,
    )  # fmt: skip
    check_ports(listening)
    from skewless.features.store import FeatureStoreError
    from skewless.serving.loading import ModelLoadError

    try:
        serve_model(
            model, registry=registry, name=name, listening=listening, config=config, announce=True
        )
    except (FileNotFoundError, ModelLoadError) as err:
        raise CliError(f"--model: {err}") from None
    except FeatureStoreError as err:
        raise CliError(f"--feature-store: {err}") from None


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


def listening_on(
    *, http_port: int, grpc_port: int, host: str = DEFAULT_HOST, workers: int = 1,
    header_timeout: float = DEFAULT_HEADER_TIMEOUT,
) -> Listening:  # fmt: skip
    """:class:`Listening` from the flags' values.

    Raises:
        CliError: What ``Listening`` refuses, after the port flags: their types refuse the rest
            of its checks, so only one port given for both gets here.
    """
    try:
        return Listening(host, http_port, grpc_port, workers, header_timeout)
    except ValueError as err:
        raise CliError(f"--http-port {http_port}, --grpc-port {grpc_port}: {err}") from None


def check_ports(listening: Listening) -> None:
    """Fails with one line when a port the server needs is taken, or its host is not an address
    of this machine (before any work starts)."""
    import errno
    import ipaddress
    import socket

    host, http_port, grpc_port = listening.host, listening.http_port, listening.grpc_port
    family = socket.AF_INET6 if ipaddress.ip_address(host).version == 6 else socket.AF_INET
    for flag, port in (("--http-port", http_port), ("--grpc-port", grpc_port)):
        with socket.socket(family) as sock:
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


@click.command(name="skew-report", cls=Command)
@click.option("--feature-log", required=True, help="the server's feature log")
@click.option("--feature-store", required=True, metavar="REPO",
              help="feature repository (or minio://)")  # fmt: skip
@click.option(
    "--max-mismatch",
    type=FRACTION,
    default=0.01,
    help="share of rows whose served value may differ from the offline one",
)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def skew_report(feature_log: str, feature_store: str, max_mismatch: float, as_json: bool) -> int:
    """Served features against the offline store; exit 1 if skewed.

    Compares the features a server scored with (its feature log) against the offline store's, as
    of the same times; exits 1 when a feature is skewed.
    """
    import json

    from skewless.experiments.logs import LogError
    from skewless.features.location import readable
    from skewless.features.skew import skew_report as compare
    from skewless.features.store import FeatureStoreError

    repo = _feature_repo(feature_store)
    assert repo is not None
    try:
        with tempfile.TemporaryDirectory(prefix="skewless-skew-") as scratch:
            local = readable(repo, Path(scratch))  # a remote repository: a copy
            report = compare(feature_log, local, max_mismatch=max_mismatch)
    except LogError as err:
        raise CliError(f"--feature-log: {err}") from None
    except FeatureStoreError as err:
        raise CliError(str(err)) from None
    if as_json:
        print(json.dumps(report, indent=1))
    else:
        print(f"{report['rows']} served rows against the offline store at {repo}")
        print(f"  {'feature':<12} {'mismatch':>9} {'distance':>16} {'skewed':>7}")
        for feature, row in report["features"].items():
            distance = (
                f"{row.get('metric', '-')} {row.get('value', 0):.3f}" if "metric" in row else "-"
            )
            verdict = "YES" if row["skewed"] else "no"
            print(f"  {feature:<12} {row['mismatch']:>9.2%} {distance:>16} {verdict:>7}")
        print(f"skewed: {', '.join(report['skewed']) or 'none'}")
    return 1 if report["skewed"] else 0


COMMANDS = (serve, skew_report)
"""The serving commands, in the order ``skewless --help`` lists them."""
