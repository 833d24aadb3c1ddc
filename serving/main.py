"""``skewless serve``: KServe's model server with our models, started in the foreground."""

from __future__ import annotations

from pathlib import Path

import kserve

from skewless.runtime import one_thread_per_op
from skewless.serving.app import ReadOnlyRepository, configure_logging
from skewless.serving.config import Listening, ServingConfig
from skewless.serving.listen import ListeningServer
from skewless.serving.loading import ModelLoadError, resolve_model_dir
from skewless.serving.protocol import example_curl
from skewless.serving.server import RankingModel


def serve(
    model: str | Path | None = None,
    *,
    registry: str | Path | None = None,
    name: str = "ranking",
    listening: Listening | None = None,
    config: ServingConfig | None = None,
    announce: bool = False,
) -> None:
    """Starts the model server in the foreground; SIGTERM or Ctrl-C drains and stops it.

    Sets ``TF_NUM_INTRAOP_THREADS`` in this process's environment to 1 unless it is set
    (:func:`skewless.runtime.one_thread_per_op`).

    Args:
        model: Exported SavedModel folder or storage URI.
        registry: Instead of ``model``: a registry file; serves ``name``'s production version
            and follows the alias (rollbacks and promotions apply without a restart).
        name: Model name in the URL paths.
        listening: Address, ports, workers and header timeout (defaults when None).
        config: Admission, batching, logging and endpoint settings.
        announce: Print a ready-to-paste curl command first.

    Raises:
        ModelLoadError: ``name`` is the two-stage endpoint's, or the model cannot be loaded.
    """
    from skewless.serving.recommend import RECOMMEND_NAME, RecommendModel

    if name == RECOMMEND_NAME:
        raise ModelLoadError(
            f"model name {name!r} is reserved for the two-stage endpoint; pick another --name"
        )
    listening = listening or Listening()
    config = config or ServingConfig()
    one_thread_per_op()  # before the model loads: TensorFlow's runtime reads it when it starts
    # This process's logging; each REST worker sets its own up as it unpickles the model.
    configure_logging(access_log=config.access_log, log_format=config.log_format)
    if registry is not None:
        ranking = RankingModel(name, None, config, registry=registry)
    else:
        assert model is not None, "give a model or a registry"
        ranking = RankingModel(name, resolve_model_dir(model), config)
    ranking.load()
    if announce:
        lookup = ranking.lookup
        print(
            example_curl(
                name, listening.http_port, ranking.validator.spec,
                by_id=lookup.online.sample_ids() if lookup else None,
                looked_up=lookup.fields if lookup else frozenset(),
                host=listening.host,
            ),
            flush=True,
        )  # fmt: skip
    server = ListeningServer(listening, enable_latency_logging=config.access_log)
    if not config.allow_model_management:
        server.model_repository_extension = ReadOnlyRepository(server.registered_models)
    models: list[kserve.Model] = [ranking]
    if ranking.routing.production.retriever is not None:
        models.append(RecommendModel(ranking))
    server.start(models)
