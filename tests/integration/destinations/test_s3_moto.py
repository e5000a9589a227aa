"""The ``s3`` connector against a local S3-compatible server (moto in server mode):
gzipped JSON Lines objects, partitioned by customer/date/hour, redelivery overwrites."""

from __future__ import annotations

import gzip
import socket
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from untrace_server.destinations.base import DestinationContext
from untrace_server.destinations.s3 import S3Destination
from untrace_server.model import Trace, decode

moto_server = pytest.importorskip("moto.server")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


CREDS = {"access_key_id": "testing", "secret_access_key": "testing"}


@pytest.fixture(scope="module")
def s3_url() -> Iterator[str]:
    port = free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def client(url: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


async def test_s3_writes_partitioned_gzipped_jsonl(s3_url: str) -> None:
    client(s3_url).create_bucket(Bucket="untrace-traces")
    hour = 1_767_225_600_000  # 2026-01-01T00:00:00Z
    traces = [
        Trace(id="a", start_time=hour + 1, end_time=hour + 2, metadata={"customerId": "c1"}),
        Trace(
            id="b",
            start_time=hour + 3600_000,
            end_time=hour + 3600_001,
            metadata={"customerId": "c1"},
        ),
        Trace(id="c", start_time=hour + 5, end_time=hour + 6, metadata={"customerId": "c2"}),
    ]
    config = S3Destination.Config.model_validate(
        {"bucket": "untrace-traces", "endpoint_url": s3_url, "prefix": "raw/", **CREDS}
    )
    destination = S3Destination(config, DestinationContext("d-s3", "c-default"))
    await destination.start()
    try:
        assert (await destination.health_check()).healthy
        assert (await destination.send_batch(traces)).delivered == 3
        assert (await destination.send_batch(traces)).delivered == 3  # redelivery
    finally:
        await destination.shutdown()
        await destination.shutdown()

    s3 = client(s3_url)
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="untrace-traces")["Contents"])
    assert len(keys) == 3, keys  # one object per partition; the redelivery overwrote them
    assert keys[0].startswith("raw/customer=c1/date=2026-01-01/hour=00/d-s3-")
    assert keys[1].startswith("raw/customer=c1/date=2026-01-01/hour=01/")
    assert keys[2].startswith("raw/customer=c2/date=2026-01-01/hour=00/")
    obj = s3.get_object(Bucket="untrace-traces", Key=keys[0])
    lines = gzip.decompress(obj["Body"].read()).splitlines()
    assert [decode(line).id for line in lines] == ["a"]


async def test_s3_missing_bucket_is_permanent(s3_url: str) -> None:
    from untrace_server.errors import PermanentError

    config = S3Destination.Config.model_validate(
        {"bucket": "no-such-bucket", "endpoint_url": s3_url, **CREDS}
    )
    destination = S3Destination(config, DestinationContext("d-s3", "c"))
    await destination.start()
    try:
        assert not (await destination.health_check()).healthy
        with pytest.raises(PermanentError, match="404"):
            await destination.send_batch([Trace(id="x", start_time=1, end_time=2)])
    finally:
        await destination.shutdown()
