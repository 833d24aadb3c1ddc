"""Where ``skewless serve`` listens, how long a client may take over its headers, requests
whose bytes do not decode, and what readiness means.

KServe 0.21's ``ModelServer`` has no setting for any of these: it binds REST to ``0.0.0.0`` and
gRPC to ``[::]``; uvicorn closes an idle keep-alive connection but never one still sending its
request headers (or one that sends nothing at all); a gRPC request whose bytes are not the
method's protobuf message fails in grpc's own deserialization, before any handler, as
``UNKNOWN``, and V2 binary tensor data that does not match its JSON header is a 500; and the
server says ready whatever its models are. :class:`ListeningServer` is
KServe's ``ModelServer`` with those set, changing only objects KServe has built and not yet started.
"""

from __future__ import annotations

import asyncio
import functools
import struct
from collections.abc import Callable, Sequence
from typing import Any

import grpc
import kserve
from google.protobuf.message import DecodeError
from kserve.errors import InvalidInput
from kserve.logging import logger
from kserve.protocol.dataplane import DataPlane
from kserve.protocol.grpc.server import GRPCServer
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from skewless.serving.config import Listening


class ListeningServer(kserve.ModelServer):
    """KServe's model server, listening on ``host`` only, REST with a header-read timeout."""

    def __init__(self, listening: Listening, **kwargs: Any) -> None:
        """Listens as ``listening`` says; takes ``kserve.ModelServer``'s other keyword
        arguments."""
        super().__init__(
            http_port=listening.http_port,
            grpc_port=listening.grpc_port,
            workers=listening.workers,
            **kwargs,
        )
        self.dataplane = ServingDataPlane(model_registry=self.registered_models)
        self.host = listening.host
        self.header_timeout = listening.header_timeout
        # KServe's own gRPC server would bind [::]; _serve starts ours (HostGRPCServer) instead.
        self.serve_grpc = bool(self.enable_grpc)  # type: ignore[has-type]
        self.enable_grpc = False

    def start(self, models: list[Any]) -> None:
        """Serves ``models`` until stopped; readiness requires every one of them loaded."""
        self.dataplane.started_with = tuple(model.name for model in models)
        super().start(models)

    async def _serve(self) -> None:
        """Sets the REST server's address and protocol, adds the gRPC server, then serves.

        ``ModelServer.start`` has built the REST server and queued its start coroutine, which
        runs here: nothing has bound or accepted yet.
        """
        from kserve.model_server import args as kserve_args

        rest = self._rest_server or self._rest_multiprocess_server._rest_server
        # kserve 0.21.0, kserve/protocol/rest/server.py line 127: RESTServer builds
        # uvicorn.Config(app, host="0.0.0.0", ...). uvicorn reads the host only when it binds
        # (Server.startup, or Config.bind_socket in the multi-process parent), and the protocol
        # class when it loads the config, both after this; worker processes get this config.
        rest.config.host = self.host
        rest.config.http = functools.partial(
            HeaderTimeoutProtocol, header_timeout=self.header_timeout
        )
        if self.serve_grpc:
            # As ModelServer.start builds its gRPC server (kserve 0.21.0, model_server.py 399-407).
            self._grpc_server = HostGRPCServer(
                self.host, self.grpc_port, self.dataplane, self.model_repository_extension,
                kwargs=vars(kserve_args), grace_period=self.grace_period,
            )  # fmt: skip
            self.servers.append(self._grpc_server.start(self.max_threads))
        await super()._serve()


class ServingDataPlane(DataPlane):
    """KServe's data plane, whose server readiness (REST ``/v2/health/ready``, gRPC
    ``ServerReady``) is false unless every model the server started with is still registered and
    loaded, and which refuses V2 binary tensor data that does not match its header with a 400.

    KServe's readiness is true whatever the models (kserve 0.21.0, kserve/protocol/dataplane.py
    line 247, ``DataPlane.ready`` without a predictor host): a server whose model was unloaded
    (with ``--allow-model-management``) answered 404 to every request and still said ready.
    """

    def decode_inference_request(self, body: Any, headers: Any, model_name: str) -> Any:
        """KServe's decoding; binary data that does not fit its header is ``InvalidInput``.

        ``InferRequest.from_bytes`` (kserve 0.21.0, kserve/protocol/infer_type.py line 593)
        slices each input's ``binary_data_size`` out of the body and unpacks it with ``struct``
        and NumPy, whose errors on a short or malformed payload were answered 500.
        """
        try:
            return super().decode_inference_request(body, headers, model_name)
        except InvalidInput:
            raise
        except (struct.error, ValueError, TypeError, IndexError) as err:
            if not isinstance(body, bytes):
                raise
            raise InvalidInput(
                f"binary tensor data does not match the request's JSON header ({str(err)[:200]})"
            ) from None

    started_with: tuple[str, ...] = ()

    async def ready(self) -> bool:
        """Whether every model the server started with is loaded (in a REST worker still loading
        its copy, it is not)."""
        models = self.model_registry.get_models()
        loaded = all(name in models and models[name].ready for name in self.started_with)
        return bool(self.started_with) and loaded and bool(await super().ready())


class HeaderTimeoutProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol that closes a connection whose request headers are not complete
    ``header_timeout`` seconds after it connected (first request) or sent the request's first byte
    (later requests on a keep-alive connection).

    Waiting between requests is left to uvicorn's keep-alive timeout, and a body may arrive as
    slowly as the client likes once its headers are in (the body size limit bounds it).
    """

    def __init__(self, *args: Any, header_timeout: float, **kwargs: Any) -> None:
        """uvicorn's arguments, plus the timeout in seconds."""
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """Starts the clock: a client that connects and sends nothing is closed too."""
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        """Bytes between requests (a CRLF httptools skips without starting a message) start the
        clock too: uvicorn stops its keep-alive timer on any bytes, and nothing else would close
        a connection that sends only those."""
        if self.header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()
        super().data_received(data)

    def on_message_begin(self) -> None:
        """A request's first byte: starts the clock unless the connection's is running."""
        super().on_message_begin()
        if self.header_timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        """Headers in: stops the clock."""
        self._disarm()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        """Stops the clock of a connection that is gone."""
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self.header_timer = self.loop.call_later(self.header_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self.header_timer is not None:
            self.header_timer.cancel()
            self.header_timer = None

    def _timed_out(self) -> None:
        self.header_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined request's headers are late while the one before it is being
            # answered: let that answer go out first.
            self._arm()
        elif not self.transport.is_closing():
            self.transport.close()


class HostGRPCServer(GRPCServer):
    """KServe's gRPC server, listening on ``host``, refusing undecodable requests with
    ``INVALID_ARGUMENT``.

    Its ``start`` (kserve 0.21.0, kserve/protocol/grpc/server.py lines 46-73) builds a
    ``grpc.aio`` server into ``self._server``, registers the servicer's handlers on it, and
    binds ``listen_addr = f"[::]:{self._port}"`` (line 68). Setting ``_server`` here adapts that
    server object as it is stored, before any of those calls.
    """

    def __init__(self, host: str, *args: Any, **kwargs: Any) -> None:
        """``host``, then ``GRPCServer``'s arguments."""
        self.host = host
        self._aio_server: Any = None
        super().__init__(*args, **kwargs)

    @property
    def _server(self) -> Any:
        return self._aio_server

    @_server.setter
    def _server(self, server: Any) -> None:
        if server is not None:
            _adapt(server, grpc_address(self.host, self._port))
        self._aio_server = server


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as grpc spells it (an IPv6 address in brackets)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _adapt(server: Any, address: str) -> None:
    """Makes ``server`` bind ``address`` whatever it is asked, and decode requests in handlers
    that refuse undecodable ones (registered handlers take precedence over generic ones in grpc,
    so both are wrapped)."""
    bind = server.add_insecure_port
    add_generic = server.add_generic_rpc_handlers
    add_registered = server.add_registered_method_handlers

    def add_insecure_port(asked: str) -> int:
        logger.info("gRPC listens on %s (not %s)", address, asked)
        return int(bind(address))

    def add_generic_rpc_handlers(handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        add_generic([DecodingHandler(handler) for handler in handlers])

    def add_registered_method_handlers(service: str, handlers: dict[str, Any]) -> None:
        add_registered(service, {name: decoding(h) for name, h in handlers.items()})

    server.add_insecure_port = add_insecure_port
    server.add_generic_rpc_handlers = add_generic_rpc_handlers
    server.add_registered_method_handlers = add_registered_method_handlers


class DecodingHandler(grpc.GenericRpcHandler):
    """A generic handler whose method handlers refuse undecodable requests (:func:`decoding`)."""

    def __init__(self, inner: grpc.GenericRpcHandler) -> None:
        """Wraps ``inner``."""
        self.inner = inner
        self.handlers: dict[str, Any] = {}

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Any:
        """``inner``'s handler for the method, wrapped once."""
        method = handler_call_details.method
        if method not in self.handlers:
            handler = self.inner.service(handler_call_details)
            if handler is None:  # not cached: a client naming random methods must not grow it
                return None
            self.handlers[method] = decoding(handler)
        return self.handlers[method]


class _Undecodable:
    """What the request deserializer returns for bytes it cannot decode."""

    def __init__(self, message: str) -> None:
        self.message = message


def decoding(handler: Any) -> Any:
    """``handler`` (a unary-unary ``grpc.RpcMethodHandler``) with its request decoded by a
    deserializer that never raises, and a behaviour that refuses what did not decode with
    KServe's ``InvalidInput`` (``INVALID_ARGUMENT``, one log line) instead of grpc's
    ``UNKNOWN`` (with a traceback in the log)."""
    decode: Callable[[bytes], Any] | None = handler.request_deserializer
    behaviour = handler.unary_unary
    if decode is None or behaviour is None:
        return handler
    descriptor = getattr(getattr(decode, "__self__", None), "DESCRIPTOR", None)
    expected = getattr(descriptor, "full_name", "the method's request message")

    def deserialize(data: bytes) -> Any:
        try:
            return decode(data)
        except DecodeError as err:
            return _Undecodable(f"request is not a valid protobuf {expected} ({str(err)[:200]})")

    async def unary_unary(request: Any, context: Any) -> Any:
        if isinstance(request, _Undecodable):
            raise InvalidInput(request.message)
        result = behaviour(request, context)
        return await result if asyncio.iscoroutine(result) else result

    return handler._replace(request_deserializer=deserialize, unary_unary=unary_unary)
