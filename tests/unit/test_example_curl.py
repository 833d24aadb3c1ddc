"""The curl command `skewless serve` prints names an address the server answers on."""

from __future__ import annotations

import pytest

from skewless.contract.spec import load_spec
from skewless.serving.protocol import example_curl


@pytest.mark.parametrize(
    ("host", "base"),
    [
        ("127.0.0.1", "http://localhost:8080"),
        ("0.0.0.0", "http://localhost:8080"),  # every address: this machine's included
        ("::", "http://localhost:8080"),
        ("10.1.2.3", "http://10.1.2.3:8080"),  # one address only: loopback would be refused
        ("fd00::7", "http://[fd00::7]:8080"),
    ],
)
def test_the_printed_curl_names_an_address_the_server_listens_on(host, base):
    text = example_curl("ranking", 8080, load_spec(), host=host)
    assert f"serving model 'ranking' on {base} (Ctrl-C to stop)" in text
    assert f" {base}/v1/models/ranking:predict -d '" in text
