"""``skewless run``, ``submit`` and ``compile``: the pipeline, locally or on Kubeflow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from skewless.artifacts import RunFolder
from skewless.cli.common import (
    IN_CLUSTER_FEATURE_REPO,
    IN_CLUSTER_ONLINE_STORE,
    IN_CLUSTER_REGISTRY,
    MODEL_NAME,
    POSITIVE_INT,
    CliError,
    Command,
    exposure_log_beside,
    spec_option,
)
from skewless.cli.serving import check_ports, listening_on, port_options
from skewless.contract.spec import load_spec
from skewless.rollout.deploy import REGISTRY_FILE
from skewless.runner.local import DEFAULT_ROWS, DEFAULT_SEED


def _pipeline_parameters(pairs: tuple[str, ...]) -> dict[str, Any]:
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


def param_option(help_text: str) -> Any:
    """``--param NAME=VALUE`` (repeatable), as the parameter ``params``."""
    return click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help=help_text)


@click.command(cls=Command)
@click.option("--data", type=click.Path(),
              help="raw CSV or Parquet (default: generate the default data)")  # fmt: skip
@spec_option
@click.option("--workdir", default="runs/default", type=click.Path(file_okay=False),
              help="working folder")  # fmt: skip
@click.option("--rows", type=POSITIVE_INT, default=DEFAULT_ROWS, help="rows of the default data")
@click.option("--seed", type=int, default=DEFAULT_SEED, help="seed of the default data")
@click.option("--model-name", type=MODEL_NAME, default="ranking",
              help="name the model is served under")  # fmt: skip
@param_option(
    "pipeline parameter, hyperparameter or gate threshold, e.g. --param epochs=3 (repeatable)"
)
@click.option("--no-serve", is_flag=True, help="stop after the pipeline")
@click.option("--verbose", is_flag=True,
              help="print every step's whole output (default: a line per step; logs in "
              "WORKDIR/logs)")  # fmt: skip
@port_options
def run(
    data: str | None, spec: str | None, workdir: str, rows: int, seed: int, model_name: str,
    params: tuple[str, ...], no_serve: bool, verbose: bool, http_port: int, grpc_port: int,
) -> None:  # fmt: skip
    """Run the pipeline locally (KFP local runner), then serve.

    The whole pipeline, then a server for the model it promoted (until Ctrl-C; --no-serve stops
    after the pipeline).
    """
    from skewless.runner.local import run_local

    if not no_serve:  # ports that cannot serve fail now, not after the whole pipeline
        check_ports(listening_on(http_port=http_port, grpc_port=grpc_port))
    summary = run_local(
        workdir=workdir,
        data=data,
        rows=rows,
        seed=seed,
        spec_path=spec,
        model_name=model_name,
        parameters=_pipeline_parameters(params),
        verbose=verbose,
    )
    _print_run_summary(summary, workdir, model_name)
    if no_serve:
        return
    if not summary["served_model_path"]:
        raise CliError("no production model to serve: the gate has never promoted one")
    from skewless.serving.config import ServingConfig
    from skewless.serving.main import serve

    registry = RunFolder(Path(workdir)).models / REGISTRY_FILE
    store = summary["feature_store"] or {}
    serve(
        registry=registry,
        name=model_name,
        listening=listening_on(http_port=http_port, grpc_port=grpc_port),
        config=ServingConfig(
            request_log=exposure_log_beside(registry),
            feature_store=store.get("repository") if store.get("materialized") else None,
        ),
        announce=True,
    )


def _print_run_summary(summary: dict[str, Any], workdir: str, model_name: str) -> None:
    """The run's figures and what became of its model, a few lines on the console."""
    metrics = summary["metrics"]
    print(f"\nrun summary: {Path(workdir) / 'run_summary.json'}")
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
            f"`skewless promote {model_name}` (or stop it: "
            f"`skewless canary {model_name} --percent 0`)"
        )


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


@click.command(cls=Command)
@click.option("--host", default="http://localhost:8888",
              help="KFP API endpoint")  # fmt: skip
@click.option(
    "--data-uri", required=True,
    help="raw CSV or Parquet the steps read: minio://mlpipeline/<key> (KFP's MinIO), s3://, gs://",
)  # fmt: skip
@click.option(
    "--registry", default=IN_CLUSTER_REGISTRY,
    help="Kubeflow Model Registry URL as the pipeline pods reach it",
)  # fmt: skip
@spec_option
@click.option("--experiment", default="skewless", help="KFP experiment")
@click.option("--schedule", metavar="CRON",
              help="create a recurring run instead, e.g. '0 3 * * *' (daily 03:00); one at a "
              "time")  # fmt: skip
@param_option("pipeline parameter, e.g. --param canary_percent=20 (repeatable)")
def submit(
    host: str, data_uri: str, registry: str, spec: str | None, experiment: str,
    schedule: str | None, params: tuple[str, ...],
) -> None:  # fmt: skip
    """Submit a run (or a recurring run) to Kubeflow Pipelines.

    Compiles the pipeline first. Example: skewless submit --host http://localhost:8888 --data-uri
    minio://mlpipeline/data/interactions.parquet --param deploy_target=kserve
    """
    import tempfile
    import time

    import kfp

    from skewless.data.storage import is_remote
    from skewless.pipelines.ranking import PIPELINE_NAME, compile_pipeline

    if not is_remote(data_uri):
        raise CliError(
            f"--data-uri {data_uri!r}: the cluster's steps cannot read this machine's disk; "
            "copy it into the object store first (skewless upload FILE "
            "minio://mlpipeline/data/NAME) and pass that URI"
        )
    parameters = {
        "data_uri": data_uri,
        "registry": registry,
        # The feature store every pod reaches (--param feature_repo= skips it).
        "feature_repo": IN_CLUSTER_FEATURE_REPO,
        "feature_online_store": IN_CLUSTER_ONLINE_STORE,
        **_pipeline_parameters(params),
    }
    if spec:
        load_spec(spec)  # a missing or bad spec fails here, not in the cluster
        parameters["spec_yaml"] = Path(spec).read_text()
    cron = cron_for_kfp(schedule) if schedule else None
    package = compile_pipeline(Path(tempfile.mkdtemp()) / "ranking_pipeline.yaml")
    try:
        client = kfp.Client(host=host)
        name = f"{PIPELINE_NAME}-{time.strftime('%Y%m%d-%H%M%S')}"
        if cron is None:
            submitted = client.create_run_from_pipeline_package(
                str(package), arguments=parameters, run_name=name,
                experiment_name=experiment, enable_caching=False,
            )  # fmt: skip
            print(f"submitted run {submitted.run_id} ({name}) to {host}")
            return
        created = client.create_experiment(name=experiment)
        recurring = client.create_recurring_run(
            experiment_id=created.experiment_id, job_name=name, cron_expression=cron,
            max_concurrency=1, no_catchup=True, params=parameters,
            pipeline_package_path=str(package), enable_caching=False,
        )  # fmt: skip
    except Exception as err:  # kfp raises urllib3, ApiException, ValueError ... for one cause
        raise CliError(f"submitting to KFP at {host}: {type(err).__name__}: {err}") from None
    print(f"created recurring run {recurring.recurring_run_id} ({name}): cron {cron!r}, "
          "one run at a time")  # fmt: skip


@click.command(name="compile", cls=Command)
@click.option("--out", type=click.Path(dir_okay=False),
              help="output file (default: pipelines/ranking_pipeline.yaml)")  # fmt: skip
def compile_command(out: str | None) -> None:
    """Compile the pipeline to YAML."""
    from skewless.pipelines.ranking import COMPILED_PATH, compile_pipeline

    print(f"compiled {compile_pipeline(out or COMPILED_PATH)}")


COMMANDS = (run, submit, compile_command)
"""The pipeline commands, in the order ``skewless --help`` lists them."""
