"""The ``skewless`` command line: one subcommand per product step.

Every subcommand takes ``--spec`` (default: the spec shipped for the default data), so a user can
point any step at their own CSV or Parquet and their own spec.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from skewless.contract.spec import SpecError, load_spec
from skewless.experiments.ab_report import REQUEST_LOG
from skewless.experiments.logs import DEFAULT_LOG_MAX_MB
from skewless.runner.local import DEFAULT_ROWS
from skewless.serving.batching import DEFAULT_BATCH_ROWS
from skewless.serving.validation import (
    DEFAULT_ITEM_FIELD,
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_MB,
    DEFAULT_UNIT_FIELD,
)


class CliError(RuntimeError):
    """A command-line input is wrong; the message says which and why."""


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number from 0 to 1, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {value}")
    return value


def _probability(text: str) -> float:
    value = _fraction(text)
    if value in (0.0, 1.0):
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, exclusive, got {value}")
    return value


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {value}")
    return value


def _percent(text: str) -> int:
    value = _positive_int(text) if text.strip() != "0" else 0
    if value > 100:
        raise argparse.ArgumentTypeError(f"a percentage is at most 100, got {value}")
    return value


def _model_name(text: str) -> str:
    from skewless.registry.core import RegistryError, check_model_name

    try:
        return check_model_name(text)
    except RegistryError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _positive_float(text: str) -> float:
    value = _non_negative(text)
    if value == 0 or value != value or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text!r}")
    return value


def _port(text: str) -> int:
    value = _positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"a port is at most 65535, got {value}")
    return value


def _print_json(document: Any) -> None:
    print(json.dumps(document, indent=1, default=str))


def cmd_generate(args: argparse.Namespace) -> int:
    """``skewless generate``: write synthetic interaction data."""
    from skewless.data.generate import write_dataset

    try:
        path = write_dataset(args.rows, args.seed, args.out, show_progress=not args.quiet)
    except ValueError as err:
        raise CliError(f"--out {err}") from None
    print(f"wrote {args.rows:,} rows to {path}")
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


def cmd_analyze(args: argparse.Namespace) -> int:
    """``skewless analyze``: TFT analysis of the training split on Beam."""
    from skewless.model.transform import analyze

    train = Path(args.data)
    if train.is_dir():
        train = train / "train.parquet"
    is_glob = any(ch in args.data for ch in "*?[")
    if not is_glob and not train.exists():
        raise CliError(f"--data: {train} not found (give train.parquet or the validate output)")
    if is_glob and not glob.glob(args.data):  # absolute or relative, as a shell would
        raise CliError(f"--data: no file matches {args.data!r}")
    _print_json(analyze(train, load_spec(args.spec), args.out, beam_args=args.beam_args))
    return 0


def _pipeline_parameters(pairs: list[str]) -> dict[str, Any]:
    """Parses ``--param NAME=VALUE`` pairs, typed and checked against the pipeline's signature."""
    import inspect

    from skewless.pipelines.ranking import ranking_pipeline

    signature = inspect.signature(ranking_pipeline.pipeline_func)
    reserved = {"data_uri", "spec_yaml", "registry", "model_name", "model_repository"}
    allowed = {n: p.annotation for n, p in signature.parameters.items() if n not in reserved}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise CliError(f"--param {pair!r}: expected NAME=VALUE")
        if name not in allowed:
            raise CliError(f"--param {name!r}: unknown parameter; known: {sorted(allowed)}")
        kind = allowed[name]
        try:
            out[name] = kind(text) if kind is not bool else text.lower() in ("1", "true", "yes")
        except ValueError:
            raise CliError(f"--param {name}: expected {kind.__name__}, got {text!r}") from None
    return out


def cmd_run(args: argparse.Namespace) -> int:
    """``skewless run``: the whole pipeline locally, then serve the model."""
    from skewless.runner.local import run_local

    if not args.no_serve:  # a taken port fails now, not after the whole pipeline
        _check_ports(args.http_port, args.grpc_port)
    summary = run_local(
        workdir=args.workdir,
        data=args.data,
        rows=args.rows,
        seed=args.seed,
        spec_path=args.spec,
        model_name=args.model_name,
        parameters=_pipeline_parameters(args.param),
        verbose=args.verbose,
    )
    metrics = summary["metrics"]
    print(f"\nrun summary: {Path(args.workdir) / 'run_summary.json'}")
    print(f"  rows: {summary['rows']}")
    print(f"  pipeline: {summary['pipeline_seconds']:.1f} s")
    print(
        f"  eval AUC {metrics['auc']:.4f}"
        + (
            f" | Bayes-optimal {metrics['bayes_optimal_auc']:.4f}"
            if "bayes_optimal_auc" in metrics
            else ""
        )
        + (f" | linear baseline {metrics['baseline_auc']:.4f}" if "baseline_auc" in metrics else "")
    )
    print(
        f"  gate: {'PROMOTED' if summary['deployed'] else 'REJECTED'}: {summary['gate']['reasons']}"
    )
    traffic = summary["traffic"]
    if summary["deployment"] == "canary":
        print(
            f"  version {summary['registered_version']} is a canary taking "
            f"{traffic['candidate_percent']}% of users beside production version "
            f"{traffic['production']}; compare with `skewless ab-report`, then "
            f"`skewless promote {args.model_name}` (or stop it: "
            f"`skewless canary {args.model_name} --percent 0`)"
        )
    if args.no_serve:
        return 0
    if not summary["served_model_path"]:
        raise CliError("no production model to serve: the gate has never promoted one")
    from skewless.serving.server import ServingConfig, serve

    registry = Path(args.workdir) / "models" / "registry.db"
    serve(
        registry=registry,
        name=args.model_name,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        config=ServingConfig(request_log=str(registry.with_name(REQUEST_LOG))),
        announce=True,
    )
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


def cmd_serve(args: argparse.Namespace) -> int:
    """``skewless serve``: a KServe model server for an exported model."""
    from skewless.serving.server import ServingConfig, serve

    remote = bool(args.registry) and args.registry.startswith(("http://", "https://"))
    if args.registry and not remote:
        _registry_file(args.registry)
    request_log = args.request_log
    if request_log is None and args.registry and not remote:
        request_log = str(Path(args.registry).with_name(REQUEST_LOG))
    config = ServingConfig(
        max_request_rows=args.max_request_rows,
        max_batch_rows=args.max_batch_rows,
        max_wait_ms=args.max_wait_ms,
        request_log=request_log or None,
        max_body_mb=args.max_body_mb,
        unit_field=args.experiment_unit,
        item_field=args.item_field,
        log_max_mb=args.log_max_mb,
    )
    _check_ports(args.http_port, args.grpc_port)
    from skewless.serving.server import ModelLoadError

    try:
        serve(
            args.model,
            registry=args.registry,
            name=args.name,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            workers=args.workers,
            config=config,
            announce=True,
            access_log=args.access_log,
            log_format=args.log_format,
            allow_model_management=args.allow_model_management,
        )
    except (FileNotFoundError, ModelLoadError) as err:
        raise CliError(f"--model: {err}") from None
    return 0


def _check_ports(http_port: int, grpc_port: int) -> None:
    """Fails with one line when a port the server needs is taken (before any work starts)."""
    import socket

    if http_port == grpc_port:
        raise CliError(f"--http-port and --grpc-port are both {http_port}: give two ports")
    for flag, port in (("--http-port", http_port), ("--grpc-port", grpc_port)):
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
            try:
                sock.bind(("0.0.0.0", port))
            except OSError as err:
                raise CliError(
                    f"{flag} {port}: cannot listen there ({err.strerror}); another server may "
                    "hold it: stop it or pick another port"
                ) from None


def cmd_rollback(args: argparse.Namespace) -> int:
    """``skewless rollback NAME``: move production back; registry-backed servers follow."""
    import getpass
    import time

    started = time.perf_counter()
    registry = _registry(args)
    version = registry.rollback(args.name, to=args.to, actor=getpass.getuser(), reason=args.reason)
    if args.kserve:
        _apply_cluster(args, registry, version.version, "production", 0)
    print(
        f"{args.name}: production is now version {version.version} ({version.artifact_uri}); "
        f"registry updated in {1000 * (time.perf_counter() - started):.0f} ms. Servers started "
        f"with --registry switch within their watch interval."
    )
    return 0


def cmd_canary(args: argparse.Namespace) -> int:
    """``skewless canary NAME --percent P``: start, resize or stop (0) a canary."""
    import getpass

    registry = _registry(args)
    version = args.version
    if version is None:
        current = registry.traffic(args.name).candidate
        version = current if current is not None else registry.get(args.name, "candidate").version
    traffic = registry.start_canary(
        args.name, version, args.percent, actor=getpass.getuser(), reason=args.reason
    )
    if args.kserve and traffic.candidate is not None:
        _apply_cluster(args, registry, traffic.candidate, "canary", traffic.candidate_percent)
    elif args.kserve and traffic.production is not None:
        _apply_cluster(args, registry, traffic.production, "production", 0)
    if traffic.candidate is None:
        print(f"{args.name}: canary stopped; production version {traffic.production} takes all "
              "requests")  # fmt: skip
    else:
        print(f"{args.name}: version {traffic.candidate} takes {traffic.candidate_percent}% of "
              f"users, production version {traffic.production} the rest")  # fmt: skip
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    """``skewless promote NAME``: the canary candidate becomes production."""
    import getpass

    registry = _registry(args)
    version = registry.promote(args.name, actor=getpass.getuser(), reason=args.reason)
    if args.kserve:
        _apply_cluster(args, registry, version.version, "production", 0)
    print(f"{args.name}: production is now version {version.version}; the canary has ended. "
          "Servers started with --registry switch within their watch interval.")  # fmt: skip
    return 0


def cmd_ab_report(args: argparse.Namespace) -> int:
    """``skewless ab-report``: per-version traffic, latency and scores from the request log."""
    from skewless.experiments.ab_report import format_report, summarize

    report = summarize(args.log, model=args.model, since=args.since)
    if args.json:
        _print_json(report)
    else:
        print(format_report(report))
    return 0


def _experiment_report(args: argparse.Namespace) -> dict[str, Any]:
    from skewless.experiments.analysis import Criteria, experiment_report

    criteria = Criteria(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Criteria)})
    return experiment_report(
        args.log, model=args.model, experiment=args.experiment, since=args.since,
        until=args.until, criteria=criteria, feedback=args.feedback,
    )  # fmt: skip


def cmd_experiment_report(args: argparse.Namespace) -> int:
    """``skewless experiment report``: per-variant outcome rates, lift, SRM, guardrails."""
    from skewless.experiments.analysis import format_experiment_report

    report = _experiment_report(args)
    if args.json:
        _print_json(report)
    else:
        print(format_experiment_report(report))
    return 0


def cmd_experiment_decide(args: argparse.Namespace) -> int:
    """``skewless experiment decide``: promote, stop or keep the canary, by the report."""
    from skewless.experiments.analysis import ExperimentError, record_decision

    registry = _registry(args)
    if args.experiment is None:  # the experiment the registry runs now
        traffic = registry.traffic(args.model)
        if traffic.candidate is None:
            message = f"{args.model}: no canary is running; nothing to decide"
            if args.if_running:
                print(message)
                return 0
            raise CliError(message)
        args.experiment = f"{args.model}:{traffic.production}:{traffic.candidate}"
    try:
        report = _experiment_report(args)
    except ExperimentError as err:
        if args.if_running and "no exposures of experiment" in str(err):
            print(f"{args.model}: {err}; nothing to decide yet")
            return 0
        raise
    if args.dry_run:
        decision = report["decision"]
        print(f"{args.model}: would {decision['action']}: {decision['reason']}")
        return 0
    print(record_decision(registry, report, actor=_actor()))
    return 0


def _actor() -> str:
    """Who acts, for the registry's history (a container's user may have no name)."""
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return f"uid {os.getuid()}"


def cmd_simulate(args: argparse.Namespace) -> int:
    """``skewless simulate``: play the planted world against a live server, with feedback."""
    from skewless.experiments.simulate import simulate

    result = simulate(
        args.endpoint, units=args.units, requests=args.requests, seed=args.seed,
        model=args.model, candidates=args.candidates, world_seed=args.world_seed,
        concurrency=args.concurrency,
    )  # fmt: skip
    if args.json:
        _print_json(result)
        return 0
    print(f"{result['requests']} requests, {result['clicks']} clicks "
          f"(Unix time {result['started']:.3f} to {result['finished']:.3f})")  # fmt: skip
    for version, group in result["versions"].items():
        print(f"  version {version}: {group['requests']} requests from {group['units']} users, "
              f"{group['clicks']} clicks; expected click rate (planted truth) "
              f"{group['expected_click_rate']:.4f}")  # fmt: skip
    return 0


def _apply_cluster(
    args: argparse.Namespace, registry: Any, version: int, role: str, percent: int
) -> None:
    """Makes the InferenceService follow a registry decision (``--kserve NAMESPACE``)."""
    from skewless.rollout.kserve import ClusterDeployError, deploy_role

    try:
        served = deploy_role(
            args.name, args.kserve, registry.verified_uri(args.name, version),
            version=str(version), role=role, canary_percent=percent, mode=args.kserve_mode,
            timeout_seconds=args.timeout,
        )  # fmt: skip
    except ClusterDeployError as err:
        # The registry has already moved: say so, and how to bring the cluster in line.
        first = "; ".join(line.strip() for line in str(err).splitlines() if line.strip())
        raise CliError(
            f"the registry now has version {version} as {role}, but the InferenceService in "
            f"{args.kserve} did not follow: {first}; run the same command again to retry"
        ) from None
    print(f"InferenceService {args.kserve}/{served} serves version {version} ({role}) and is Ready")


def _add_kserve(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kserve",
        metavar="NAMESPACE",
        help="also patch the model's InferenceService in this namespace (current kube context)",
    )
    parser.add_argument(
        "--kserve-mode", choices=["Standard", "Knative"], default="Standard",
        help="KServe deployment mode of that InferenceService (Standard)",
    )  # fmt: skip
    parser.add_argument(
        "--timeout", type=_non_negative, default=600, help="seconds to wait for Ready (600)"
    )


def _registry(args: argparse.Namespace) -> Any:
    """The registry ``--registry`` names: a SQLite file, or a Kubeflow Model Registry URL."""
    if args.registry.startswith(("http://", "https://")):
        from skewless.registry.kubeflow import KubeflowRegistry

        return KubeflowRegistry(args.registry, user_token=os.environ.get("MODEL_REGISTRY_TOKEN"))
    from skewless.registry.core import SQLiteRegistry

    return SQLiteRegistry(_registry_file(args.registry))


def _registry_file(text: str) -> Path:
    """``--registry`` as an existing SQLite file (opening a missing one would create it)."""
    path = Path(text)
    if not path.is_file():
        raise CliError(
            f"--registry: no registry at {path} (a run's is <workdir>/models/registry.db; a "
            "Kubeflow Model Registry is given by its URL, e.g. http://localhost:8080)"
        )
    if path.stat().st_size == 0:  # SQLite would silently make it a new, empty registry
        raise CliError(
            f"--registry: {path} is empty (0 bytes), not a registry; restore it from a backup, or "
            "delete it and the next run starts a new one"
        )
    return path


def cmd_models_list(args: argparse.Namespace) -> int:
    """``skewless models list``: every registered version."""
    versions = _registry(args).list_versions()
    if args.json:
        _print_json([v.to_dict() for v in versions])
        return 0
    print(f"{'NAME':<16} {'VERSION':>7}  {'AUC':>7}  {'GATE':<7} {'ALIASES':<22} CREATED")
    for v in versions:
        auc = v.metrics.get("auc")
        gate = "pass" if v.gate.get("promote") else "refused"
        auc_text = f"{auc:.4f}" if isinstance(auc, float) else "-"
        print(f"{v.name:<16} {v.version:>7}  {auc_text:>7}  {gate:<7} "
              f"{','.join(v.aliases) or '-':<22} {v.created_at}")  # fmt: skip
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    """``skewless models show NAME[:VERSION|:ALIAS]``: one version with its lineage."""
    name, _, ref = args.model.partition(":")
    registry = _registry(args)
    version = registry.get(name, ref or "latest")
    _print_json({**version.to_dict(),
                 "production_history": registry.alias_history(name, "production")})  # fmt: skip
    return 0


def cron_for_kfp(text: str) -> str:
    """A crontab expression in the six-field form KFP's scheduler reads (seconds first).

    Accepts the usual five fields (``0 3 * * *``: 03:00 daily) or KFP's six.
    """
    fields = text.split()
    if len(fields) == 5:
        return "0 " + " ".join(fields)
    if len(fields) == 6:
        return " ".join(fields)
    raise CliError(
        f"--schedule {text!r}: expected a cron expression of 5 fields (min hour day month weekday) "
        "or KFP's 6 (with seconds first)"
    )


def cmd_submit(args: argparse.Namespace) -> int:
    """``skewless submit``: compile the pipeline and start a run (or a recurring run) on KFP."""
    import tempfile
    import time

    import kfp

    from skewless.data.storage import is_remote
    from skewless.pipelines.ranking import PIPELINE_NAME, compile_pipeline

    if not is_remote(args.data_uri):
        raise CliError(
            f"--data-uri {args.data_uri!r}: the cluster's steps cannot read this machine's disk; "
            "copy it into the object store first (skewless upload FILE "
            "minio://mlpipeline/data/NAME) and pass that URI"
        )
    parameters = {
        "data_uri": args.data_uri,
        "registry": args.registry,
        **_pipeline_parameters(args.param),
    }
    if args.spec:
        load_spec(args.spec)  # a missing or bad spec fails here, not in the cluster
        parameters["spec_yaml"] = Path(args.spec).read_text()
    cron = cron_for_kfp(args.schedule) if args.schedule else None
    package = compile_pipeline(Path(tempfile.mkdtemp()) / "ranking_pipeline.yaml")
    try:
        client = kfp.Client(host=args.host)
        name = f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
        if cron is None:
            run = client.create_run_from_pipeline_package(
                str(package), arguments=parameters, run_name=name,
                experiment_name=args.experiment, enable_caching=False,
            )  # fmt: skip
            print(f"submitted run {run.run_id} ({name}) to {args.host}")
            return 0
        experiment = client.create_experiment(name=args.experiment)
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id, job_name=name, cron_expression=cron,
            max_concurrency=1, no_catchup=True, params=parameters,
            pipeline_package_path=str(package), enable_caching=False,
        )  # fmt: skip
    except Exception as err:  # kfp raises urllib3, ApiException, ValueError ... for one cause
        raise CliError(f"submitting to KFP at {args.host}: {type(err).__name__}: {err}") from None
    print(f"created recurring run {recurring.recurring_run_id} ({name}): cron {cron!r}, "
          "one run at a time")  # fmt: skip
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    """``skewless compile``: write the pipeline YAML."""
    from skewless.pipelines.ranking import COMPILED_PATH, compile_pipeline

    print(f"compiled {compile_pipeline(args.out or COMPILED_PATH)}")
    return 0


IN_CLUSTER_REGISTRY = "http://model-registry-service.kubeflow.svc.cluster.local:8080"
"""The Model Registry that `make cluster` installs, as pipeline pods reach it."""
REGISTRY_HELP = "registry: a SQLite file, or a Kubeflow Model Registry URL (http[s]://host[:port])"


def _add_spec(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spec", default=None, help="feature spec YAML (default: the shipped ranking spec)"
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="skewless",
        description="Train, evaluate and serve ranking models whose transform ships inside them.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = sub.add_parser("generate", help="write deterministic synthetic ranking data")
    gen.add_argument("--rows", type=_positive_int, default=100_000, help="rows to write")
    gen.add_argument("--seed", type=int, default=0, help="seed; same rows+seed, same data")
    gen.add_argument("--out", required=True, help="output file (.parquet, or .csv)")
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

    run = sub.add_parser(
        "run", help="run the whole pipeline locally (KFP local runner), then serve"
    )
    run.add_argument("--data", help="raw CSV or Parquet (default: generate the default data)")
    _add_spec(run)
    run.add_argument(
        "--workdir", default="runs/default", help="working folder (default runs/default)"
    )
    run.add_argument(
        "--rows", type=_positive_int, default=DEFAULT_ROWS, help="rows of default data (400k)"
    )
    run.add_argument("--seed", type=int, default=0, help="seed of the default data")
    run.add_argument(
        "--model-name", type=_model_name, default="ranking", help="name the model is served under"
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, e.g. --param epochs=3 (repeatable)",
    )
    run.add_argument("--no-serve", action="store_true", help="stop after the pipeline")
    run.add_argument(
        "--verbose",
        action="store_true",
        help="print every step's whole output (default: a line per step; logs in WORKDIR/logs)",
    )
    run.add_argument("--http-port", type=_port, default=8080, help="REST port of the server")
    run.add_argument("--grpc-port", type=_port, default=8081, help="gRPC port of the server")
    run.set_defaults(func=cmd_run)

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
        "--request-log",
        help=f"append one exposure (JSON line) per request here, outcomes beside it (default "
        f"with a --registry file: {REQUEST_LOG} beside it; '' for none)",
    )
    srv.set_defaults(func=cmd_serve)

    models = sub.add_parser("models", help="inspect the model registry")
    models_sub = models.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    default_registry = "runs/default/models/registry.db"
    listing = models_sub.add_parser("list", help="every registered version")
    listing.add_argument("--registry", default=default_registry, help=REGISTRY_HELP)
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(func=cmd_models_list)
    show = models_sub.add_parser("show", help="one version: NAME, NAME:VERSION or NAME:ALIAS")
    show.add_argument("model", help="e.g. ranking, ranking:2, ranking:production")
    show.add_argument("--registry", default=default_registry, help=REGISTRY_HELP)
    show.set_defaults(func=cmd_models_show)

    def alias_command(name: str, help_text: str) -> argparse.ArgumentParser:
        """A command that moves an alias: NAME, --reason, --registry and the --kserve options."""
        command = sub.add_parser(name, help=help_text)
        command.add_argument("name", help="model name, e.g. ranking")
        command.add_argument("--reason", default="", help="recorded in the alias history")
        command.add_argument("--registry", default=default_registry, help=REGISTRY_HELP)
        _add_kserve(command)
        return command

    back = alias_command("rollback", "move a model's production alias back")
    back.add_argument("--to", type=_positive_int, help="version (default: the previous one)")
    back.set_defaults(func=cmd_rollback)

    canary = alias_command("canary", "start, resize or stop (--percent 0) a canary")
    canary.add_argument(
        "--percent", type=_percent, required=True, help="share of users for the candidate"
    )
    canary.add_argument(
        "--version", type=_positive_int, help="version (default: the current candidate)"
    )
    canary.set_defaults(func=cmd_canary)

    alias_command("promote", "make the canary candidate production").set_defaults(func=cmd_promote)

    report = sub.add_parser("ab-report", help="per-version traffic and latency from the server log")
    report.add_argument(
        "--log", default=f"runs/default/models/{REQUEST_LOG}", help="the server's request log"
    )
    report.add_argument("--model", help="only this model")
    report.add_argument("--since", type=float, help="only requests from this Unix time on")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_ab_report)

    _add_experiment_commands(sub, default_registry)

    sub_run = sub.add_parser(
        "submit",
        help="compile the pipeline and submit a run (or a recurring run) to Kubeflow Pipelines",
        description="Example: skewless submit --host http://localhost:8888 "
        "--data-uri minio://mlpipeline/data/interactions.parquet --param deploy_target=kserve",
    )
    sub_run.add_argument(
        "--host", default="http://localhost:8888", help="KFP API endpoint (http://localhost:8888)"
    )
    sub_run.add_argument(
        "--data-uri", required=True,
        help="raw CSV or Parquet the steps read: minio://mlpipeline/<key> (KFP's MinIO), s3://, gs://",
    )  # fmt: skip
    sub_run.add_argument(
        "--registry", default=IN_CLUSTER_REGISTRY,
        help=f"Kubeflow Model Registry URL as the pipeline pods reach it ({IN_CLUSTER_REGISTRY})",
    )  # fmt: skip
    _add_spec(sub_run)
    sub_run.add_argument("--experiment", default="skewless", help="KFP experiment (skewless)")
    sub_run.add_argument(
        "--schedule",
        metavar="CRON",
        help="create a recurring run instead, e.g. '0 3 * * *' (daily 03:00); one at a time",
    )
    sub_run.add_argument(
        "--param", action="append", default=[], metavar="NAME=VALUE",
        help="pipeline parameter, e.g. --param canary_percent=20 (repeatable)",
    )  # fmt: skip
    sub_run.set_defaults(func=cmd_submit)

    comp = sub.add_parser("compile", help="compile the pipeline to YAML")
    comp.add_argument("--out", help="output file (default: pipelines/ranking_pipeline.yaml)")
    comp.set_defaults(func=cmd_compile)
    return parser


def _add_experiment_commands(sub: Any, default_registry: str) -> None:
    """``skewless experiment report|decide`` and ``skewless simulate``."""
    experiment = sub.add_parser(
        "experiment", help="analyze an online experiment (a canary) and decide it"
    )
    actions = experiment.add_subparsers(dest="experiment_command", required=True, metavar="ACTION")
    report = actions.add_parser(
        "report", help="per-variant outcome rate with CI, lift, p-value, SRM, guardrails"
    )
    decide = actions.add_parser(
        "decide", help="promote, stop or keep the canary by the report; recorded in the registry"
    )
    from skewless.experiments.analysis import Criteria

    defaults = Criteria()  # the defaults live there, once
    criteria_options: list[tuple[str, Callable[[str], Any], str]] = [
        ("--outcome", str, "primary outcome name"),
        ("--alpha", _probability, "significance level"),
        ("--power", _probability, "power for the sample size still needed"),
        ("--mde", _positive_float, "minimum detectable effect relative to production's rate"),
        ("--min-units", _positive_int, "fewest units per variant before deciding"),
        ("--max-error-increase", _fraction, "guardrail: allowed rise of the server-error rate"),
        ("--max-p99-ratio", _positive_float,
         "guardrail: allowed ratio of the candidate's p99 latency to production's"),
    ]  # fmt: skip
    for command in (report, decide):
        command.add_argument(
            "--log", default=f"runs/default/models/{REQUEST_LOG}",
            help="the server's exposure log (rotated segments beside it are read too)",
        )  # fmt: skip
        command.add_argument("--feedback", help="the outcome log (default: beside --log)")
        command.add_argument("--model", type=_model_name, default="ranking", help="model name")
        command.add_argument("--experiment", help="MODEL:PRODUCTION:CANDIDATE (default: newest)")
        command.add_argument("--since", type=float, help="only exposures from this Unix time on")
        command.add_argument("--until", type=float, help="only exposures before this Unix time")
        for flag, kind, text in criteria_options:
            field = flag.removeprefix("--").replace("-", "_")
            default = getattr(defaults, field)
            command.add_argument(flag, type=kind, default=default, help=f"{text} ({default})")
        command.add_argument(
            "--sequential", action="store_true",
            help="always-valid mSPRT p-value: safe to look again and again",
        )  # fmt: skip
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.set_defaults(func=cmd_experiment_report)
    decide.add_argument("--registry", default=default_registry, help=REGISTRY_HELP)
    decide.add_argument("--dry-run", action="store_true", help="say the decision, change nothing")
    decide.add_argument(
        "--if-running", action="store_true",
        help="when no canary runs (or it has no exposures yet), say so and succeed: for a schedule",
    )  # fmt: skip
    decide.set_defaults(func=cmd_experiment_decide)

    sim = sub.add_parser(
        "simulate",
        help="play the default data's planted world against a live server, clicks as feedback",
        description="Example: skewless simulate --endpoint http://localhost:8080 --units 2000 "
        "--requests 20000 --seed 1",
    )
    sim.add_argument("--endpoint", required=True, help="the server, e.g. http://localhost:8080")
    sim.add_argument("--units", type=_positive_int, required=True, help="users taking part")
    sim.add_argument("--requests", type=_positive_int, required=True, help="requests to send")
    sim.add_argument("--seed", type=int, default=0, help="seed of the simulation's draws")
    sim.add_argument("--model", type=_model_name, default="ranking", help="model name")
    sim.add_argument(
        "--candidates", type=_positive_int, default=10, help="items scored per request (10)"
    )
    sim.add_argument(
        "--world-seed", type=int, default=0,
        help="seed of the data the served model was trained on (skewless run's --seed; 0)",
    )  # fmt: skip
    sim.add_argument("--concurrency", type=_positive_int, default=4, help="requests in flight (4)")
    sim.add_argument("--json", action="store_true", help="machine-readable output")
    sim.set_defaults(func=cmd_simulate)


def _user_errors() -> tuple[type[Exception], ...]:
    from skewless.contract.infer import InferError
    from skewless.data.ingest import IngestError
    from skewless.data.storage import StorageError
    from skewless.experiments.ab_report import ReportError
    from skewless.experiments.analysis import ExperimentError
    from skewless.experiments.logs import LogError
    from skewless.experiments.simulate import SimulationError
    from skewless.registry.core import RegistryError
    from skewless.rollout.deploy import DeployError
    from skewless.runner.local import RunError

    return (
        ReportError, SpecError, IngestError, CliError, RunError, DeployError, RegistryError,
        StorageError, InferError, ExperimentError, LogError, SimulationError,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns the process exit code."""
    # TensorFlow's C++ start-up chatter hides our own output; warnings and errors still show.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except _user_errors() as err:
        print(f"skewless {args.command}: error: {err}", file=sys.stderr)
        return 1
