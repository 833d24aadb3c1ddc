"""``skewless run``, ``submit`` and ``compile``: the pipeline, locally or on Kubeflow."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from skewless.artifacts import RunFolder
from skewless.cli.common import (
    IN_CLUSTER_FEATURE_REPO,
    IN_CLUSTER_ONLINE_STORE,
    IN_CLUSTER_REGISTRY,
    CliError,
    _add_spec,
    _model_name,
    _port,
    _positive_int,
    exposure_log_beside,
)
from skewless.cli.serving import _check_ports
from skewless.contract.spec import load_spec
from skewless.rollout.deploy import REGISTRY_FILE
from skewless.runner.local import DEFAULT_ROWS, DEFAULT_SEED


def _pipeline_parameters(pairs: list[str]) -> dict[str, Any]:
    """Parses ``--param NAME=VALUE`` pairs, typed and checked against the pipeline's signature.

    A hyperparameter (a field of ``HParams``) or a gate threshold (of ``GateConfig``) goes into the
    pipeline's ``hparams`` or ``gate`` dict; any other name is a pipeline parameter.
    """
    import inspect

    from skewless.config import coerce, field_types, from_overrides
    from skewless.evaluation.evaluate import GateConfig
    from skewless.model.hparams import HParams
    from skewless.pipelines.ranking import ranking_pipeline

    signature = inspect.signature(ranking_pipeline.pipeline_func)
    configs = {"hparams": HParams, "gate": GateConfig}  # pipeline parameter -> its settings
    groups = {group: field_types(cls) for group, cls in configs.items()}
    reserved = {"data_uri", "spec_yaml", "registry", "model_name", "model_repository", *configs}
    top = {n: p.annotation for n, p in signature.parameters.items() if n not in reserved}
    known = sorted([*top, *(name for fields in groups.values() for name in fields)])
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise CliError(f"--param {pair!r}: expected NAME=VALUE")
        group = next((g for g, fields in groups.items() if name in fields), None)
        kind = groups[group][name] if group else top.get(name)
        if kind is None:
            raise CliError(f"--param {name!r}: unknown parameter; known: {known}")
        try:
            value = coerce(text, kind, f"--param {name}")
        except ValueError as err:
            raise CliError(str(err)) from None
        if group:
            out.setdefault(group, {})[name] = value
        else:
            out[name] = value
    for group, cls in configs.items():
        if group in out:  # a value the dataclass itself refuses fails now, not in the step
            try:
                from_overrides(cls, out[group], group)
            except ValueError as err:
                raise CliError(f"--param: {err}") from None
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
    feature_store = summary["feature_store"] or {}
    if feature_store.get("materialized"):
        print(f"  feature store: {feature_store['repository']} (requests may send only ids)")
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
    from skewless.serving.config import ServingConfig
    from skewless.serving.main import serve

    registry = RunFolder(Path(args.workdir)).models / REGISTRY_FILE
    store = summary["feature_store"] or {}
    serve(
        registry=registry,
        name=args.model_name,
        http_port=args.http_port,
        grpc_port=args.grpc_port,
        config=ServingConfig(
            request_log=exposure_log_beside(registry),
            feature_store=store.get("repository") if store.get("materialized") else None,
        ),
        announce=True,
    )
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
        # The feature store every pod reaches (--param feature_repo= skips it).
        "feature_repo": IN_CLUSTER_FEATURE_REPO,
        "feature_online_store": IN_CLUSTER_ONLINE_STORE,
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


def add_commands(sub: Any) -> None:
    """Adds the pipeline subcommands to ``sub``."""
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
    run.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the default data")
    run.add_argument(
        "--model-name", type=_model_name, default="ranking", help="name the model is served under"
    )
    run.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter, hyperparameter or gate threshold, e.g. --param epochs=3 "
        "(repeatable)",
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
