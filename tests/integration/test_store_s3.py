"""The run store on s3://, against moto's real HTTP server: the file:// tests of
tests/unit/test_store.py, run again here with an S3 store, and S3's own errors."""

import uuid

import pytest

from soar import layout
from soar.store import StoreError, open_store
from tests.unit.test_store import (  # noqa: F401  (collected again here, on S3)
    test_create_is_exclusive_even_when_racing,
    test_directories,
    test_roundtrip_and_listing,
)


@pytest.fixture
def store(s3_server):
    bucket = f"runs-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/team/run-1")


def test_dead_s3_endpoint_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("SOAR_STORE_RETRY_SECONDS", "1")
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_store("s3://bucket/run")
    with pytest.raises(StoreError) as info:
        store.read_bytes(layout.RUN)
    message = str(info.value)
    assert message.startswith(f"s3://bucket/run: cannot read {layout.RUN!r}: ")
    assert "\n" not in message and "very-secret-value" not in message
