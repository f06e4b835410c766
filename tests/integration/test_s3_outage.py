"""The S3 store rides out an endpoint that is away for a minute (exponential backoff with
jitter), fails with one line naming the key when it is away longer than spec.storage
retrySeconds, and takes its endpoint, region and retry window from the run's spec."""

import threading
import time
import uuid
from urllib.parse import urlparse

import pytest

from soar import layout
from soar.store import StoreError, open_store
from soar.store_s3 import S3Options
from tests.support.proxy import CuttableProxy


@pytest.fixture
def proxy(s3_server):
    endpoint = urlparse(s3_server.endpoint_url)
    proxy = CuttableProxy((endpoint.hostname, endpoint.port))
    yield proxy
    proxy.close()


@pytest.fixture
def bucket(s3_server):
    name = f"outage-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=name)
    return name


@pytest.mark.slow
def test_a_write_during_a_60_s_outage_lands_when_the_endpoint_returns(proxy, bucket):
    store = open_store(f"s3://{bucket}/run", S3Options(endpoint=proxy.url, retry_seconds=120))
    store.write_bytes(layout.STATE, b"before")
    proxy.cut()
    threading.Timer(60.0, proxy.restore).start()
    started = time.monotonic()
    store.write_bytes(layout.step_record(1), b'{"step": 1}')  # issued while the endpoint is away
    waited = time.monotonic() - started
    assert 60.0 <= waited < 90.0  # landed within one backoff (<= 20 s) of the return
    assert store.read_bytes(layout.step_record(1)) == b'{"step": 1}'


def test_a_longer_outage_fails_with_one_line_and_no_secret(proxy, bucket, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    store = open_store(f"s3://{bucket}/run", S3Options(endpoint=proxy.url, retry_seconds=3))
    store.write_bytes(layout.STATE, b"x")
    proxy.cut()
    started = time.monotonic()
    with pytest.raises(StoreError) as err:
        store.read_bytes(layout.STATE)
    message = str(err.value)
    assert message.startswith(f"s3://{bucket}/run: cannot read 'state.json': ")
    assert message.endswith("(still failing after 3 s of retries)")
    assert "\n" not in message and "very-secret-value" not in message
    assert time.monotonic() - started < 3 + 20 + 10  # the window, at most one backoff, start-up
    proxy.restore()
    assert store.read_bytes(layout.STATE) == b"x"  # and the same store works again


def test_options_from_the_spec_reach_stages_through_the_environment():
    options = S3Options(endpoint="http://minio:9000", region="eu-1", retry_seconds=42)
    env = options.env()
    assert env == {
        "AWS_ENDPOINT_URL": "http://minio:9000",
        "AWS_DEFAULT_REGION": "eu-1",
        "SOAR_STORE_RETRY_SECONDS": "42",
    }
    assert S3Options.from_env(env) == options
