"""The Kubeflow Model Registry backend, through its Python client (``model-registry`` 0.3.8).

Same behaviour as the SQLite backend: all of it lives in :class:`skewless.registry.core.Registry`;
this module maps the five storage primitives onto Model Registry objects:

- a named model is a RegisteredModel; its alias moves (production, candidate, canary share, who and
  why) are an append-only JSON list in the custom property ``skewless.alias_events``, and the
  current holders are mirrored in ``skewless.production`` / ``skewless.candidate`` for people
  browsing the Model Registry UI;
- a version is a ModelVersion named ``"1"``, ``"2"``, ... whose custom property
  ``skewless.record`` holds the lineage record (checksum, metrics, gate, hashes, code version, run),
  with a ModelArtifact carrying the artifact URI and format (``tensorflow`` SavedModel), which is
  what KServe's Model Registry integration reads.

Concurrency: the Model Registry enforces unique version names per model, so two writers that pick
the same next number cannot both succeed; the loser waits a random moment, re-reads and takes the
next one. It has no
transactions for custom properties, so alias moves are last-writer-wins; the pipeline's deploy step
is the only automatic writer, and scheduled runs use max concurrency 1.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import urllib.parse
import warnings
from typing import Any

from skewless.registry.core import Registry, RegistryError

RECORD_KEY = "skewless.record"
EVENTS_KEY = "skewless.alias_events"
_ALLOCATION_ATTEMPTS = 50


def rest_port(server_address: str, port: int | None = None) -> int:
    """The Model Registry's REST port: ``port``, else the URL's, else 8080 (http) or 443 (https).

    The client appends ``:{port}`` to a URL without one, so None would become ``host:None``.
    """
    if port is not None:
        return port
    parsed = urllib.parse.urlsplit(server_address)
    if parsed.port is not None:
        return parsed.port
    return 443 if parsed.scheme == "https" else 8080


class KubeflowRegistry(Registry):
    """A Kubeflow Model Registry server as the registry backend."""

    def __init__(
        self,
        server_address: str,
        port: int | None = None,
        *,
        author: str = "skewless",
        is_secure: bool | None = None,
        user_token: str | None = None,
    ) -> None:
        """Connects to the Model Registry REST service.

        Args:
            server_address: e.g. ``http://model-registry-service.kubeflow.svc.cluster.local``
                or ``https://...`` (the scheme decides TLS unless ``is_secure`` is given).
            port: REST port (default: from the URL, else 8080 for http and 443 for https).
            author: Recorded as the author of new versions.
            is_secure: Force TLS on or off.
            user_token: Bearer token (in a KFP pod the client reads the service account token).
        """
        from model_registry import ModelRegistry

        # A private loop instead of the client's default (nest_asyncio patches the process's
        # event loop policy, which a server or test process should not inherit).
        self._loop = asyncio.new_event_loop()
        try:
            with warnings.catch_warnings():
                # Without a token (a standalone install needs none) the client warns at every
                # start; a registry that does need one answers 401, which names the problem.
                warnings.filterwarnings("ignore", message="User access token is missing")
                self.client = ModelRegistry(
                    server_address,
                    rest_port(server_address, port),
                    author=author,
                    is_secure=is_secure,
                    user_token=user_token,
                    async_runner=self._loop.run_until_complete,
                )
        except Exception as err:  # the client raises several types for an unreachable server
            raise RegistryError(
                f"cannot reach the Model Registry at {server_address}: {err}"
            ) from err
        self.address = server_address

    def _model(self, name: str) -> Any:
        return self.client.get_registered_model(name)

    def _insert_version(self, name: str, record: dict[str, Any]) -> int:
        last_error: Exception | None = None
        for _ in range(_ALLOCATION_ATTEMPTS):
            version = max((v for _, v in self._version_numbers(name)), default=0) + 1
            try:
                self.client.register_model(
                    name,
                    record["artifact_uri"],
                    version=str(version),
                    model_format_name="tensorflow",
                    model_format_version="2",
                    version_description=f"skewless run {record['run_id']}",
                    metadata={
                        RECORD_KEY: json.dumps(record),
                        "sha256": record["sha256"],
                        "gate_promote": bool(record["gate"].get("promote")),
                        **{k: float(v) for k, v in record["metrics"].items()
                           if isinstance(v, int | float)},
                    },
                )  # fmt: skip
            except Exception as err:
                # Another writer got there first: it created the model (the server answers 409
                # "model name exists" to the second creation) or took this version number. Either
                # way the model exists now: re-read and try again. If it does not, the refusal
                # has another cause and retrying cannot help.
                if self._model(name) is None:
                    raise RegistryError(f"Model Registry refused {name} v{version}: {err}") from err
                last_error = err
                time.sleep(random.uniform(0.0, 0.05))  # de-synchronize the writers that collided
                continue
            return version
        raise RegistryError(
            f"{name}: no version registered after {_ALLOCATION_ATTEMPTS} tries: {last_error}"
        )

    def _version_record(self, name: str, version: int) -> dict[str, Any] | None:
        if self._model(name) is None:
            return None
        found = self.client.get_model_version(name, str(version))
        if found is None or RECORD_KEY not in (found.custom_properties or {}):
            return None
        record: dict[str, Any] = json.loads(str(found.custom_properties[RECORD_KEY]))
        return record

    def _version_numbers(self, name: str | None) -> list[tuple[str, int]]:
        if name is None:
            names = sorted(m.name for m in self.client.get_registered_models())
        else:
            names = [name] if self._model(name) is not None else []
        numbers = []
        for model in names:
            for found in self.client.get_model_versions(model):
                if found.name.isdigit() and RECORD_KEY in (found.custom_properties or {}):
                    numbers.append((model, int(found.name)))
        return sorted(numbers)

    def _append_alias_event(self, name: str, event: dict[str, Any]) -> None:
        model = self._model(name)
        if model is None:
            raise RegistryError(f"no model named {name!r}")
        properties = dict(model.custom_properties or {})
        events = json.loads(str(properties.get(EVENTS_KEY, "[]")))
        events.append(event)
        properties[EVENTS_KEY] = json.dumps(events)
        properties[f"skewless.{event['alias']}"] = int(event["version"])
        model.custom_properties = properties
        self.client.update(model)

    def _alias_events(self, name: str) -> list[dict[str, Any]]:
        model = self._model(name)
        if model is None:
            return []
        events: list[dict[str, Any]] = json.loads(
            str((model.custom_properties or {}).get(EVENTS_KEY, "[]"))
        )
        return events
