"""Where ``skewless serve`` listens: :class:`Listening` refuses what could not serve, from Python as
from the CLI (which relays its line)."""

from __future__ import annotations

import pytest

from skewless.serving.config import Listening


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"http_port": 9000, "grpc_port": 9000}, "the REST and gRPC ports are both 9000"),
        ({"http_port": 0}, "http_port must be a port (1-65535), got 0"),
        ({"grpc_port": 70000}, "grpc_port must be a port (1-65535), got 70000"),
        ({"workers": 0}, "workers must be at least 1, got 0"),
        ({"header_timeout": 0.0}, "the header timeout must be positive seconds, got 0.0"),
        ({"host": "localhost"}, "expected an IP address to listen on"),
    ],
)
def test_listening_refuses_what_cannot_serve(settings: dict, problem: str) -> None:
    with pytest.raises(ValueError) as refused:
        Listening(**settings)
    assert str(refused.value).startswith(problem)


def test_listening_writes_the_host_as_an_address() -> None:
    listening = Listening(host="0:0::0", http_port=1, grpc_port=65535, workers=3)
    assert (listening.host, listening.http_port, listening.grpc_port) == ("::", 1, 65535)
    assert Listening() == Listening("127.0.0.1", 8080, 8081, 1, 10.0)
