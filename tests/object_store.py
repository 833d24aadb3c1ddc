"""An S3-compatible store on loopback, standing in for KFP's object store (SeaweedFS).

SeaweedFS cannot run here, so the object-store paths are tested with the real readers (pyarrow's
S3 filesystem, the AWS C++ SDK underneath) speaking real S3 over HTTP to moto's S3 server, set up
as a pipeline step sees KFP's store, but at a loopback endpoint (``SKEWLESS_OBJECT_STORE_ENDPOINT``)
and with KFP's credentials in ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``. The server
checks request signatures, so a wrong key fails as it would against the real store.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

BUCKET = "mlpipeline"
ACCESS_KEY = "minio"
SECRET_KEY = "minio123"


class ObjectStore:
    """One running server with KFP's bucket in it."""

    def __init__(self, host: str, port: int, client: Any) -> None:
        self.host, self.port, self.client = host, port, client

    def environment(self) -> dict[str, str]:
        """The variables a pipeline step on a cluster has for KFP's MinIO."""
        return {
            "SKEWLESS_OBJECT_STORE_ENDPOINT": f"{self.host}:{self.port}",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def upload(self, local: Path, key: str) -> str:
        """Puts a file, or every file of a folder under ``key``; returns its ``minio://`` URI."""
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for file in files:
            name = key if local.is_file() else f"{key}/{file.relative_to(local).as_posix()}"
            self.client.upload_file(str(file), BUCKET, name)
        return f"minio://{BUCKET}/{key}"


@contextmanager
def object_store() -> Iterator[ObjectStore]:
    """Starts the server on a free loopback port with bucket ``mlpipeline``; stops it after."""
    import boto3
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        client = boto3.client(
            "s3",
            endpoint_url=f"http://{host}:{port}",
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name="us-east-1",
        )
        client.create_bucket(Bucket=BUCKET)
        yield ObjectStore(host, port, client)
    finally:
        server.stop()
