"""moto's S3 server answers boto3 over real HTTP, including conditional writes (the run store's
commit markers rely on a second If-None-Match: * put being refused)."""

from __future__ import annotations

import os

import pytest
from botocore.exceptions import ClientError

from tests.infra.s3 import S3Server


def test_object_round_trip_and_conditional_put(s3_server: S3Server) -> None:
    s3 = s3_server.client()
    s3.create_bucket(Bucket="soar-runs")
    payload = b'{"step": 3}\n' * 1000

    s3.put_object(Bucket="soar-runs", Key="run-1/object.json", Body=payload)
    got = s3.get_object(Bucket="soar-runs", Key="run-1/object.json")["Body"].read()
    assert got == payload
    listed = s3.list_objects_v2(Bucket="soar-runs", Prefix="run-1/")["Contents"]
    assert [obj["Key"] for obj in listed] == ["run-1/object.json"]

    s3.put_object(Bucket="soar-runs", Key="run-1/marker", Body=b"a", IfNoneMatch="*")
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="soar-runs", Key="run-1/marker", Body=b"b", IfNoneMatch="*")
    assert refused.value.response["Error"]["Code"] == "PreconditionFailed"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412
    first = s3.get_object(Bucket="soar-runs", Key="run-1/marker")["Body"].read()
    assert first == b"a"


def test_fixture_points_default_boto3_at_moto(s3_server: S3Server) -> None:
    """Code that builds its own client from the environment lands on moto, never on AWS."""
    import boto3

    assert os.environ["AWS_ENDPOINT_URL_S3"] == s3_server.endpoint_url
    client = boto3.client("s3")
    client.create_bucket(Bucket="env-bucket")
    names = [b["Name"] for b in s3_server.client().list_buckets()["Buckets"]]
    assert "env-bucket" in names
