"""A run whose store is S3 (moto): the stages get their credentials from the run's Secret by
reference only, the operator reads the store with its own, and the secret shows up nowhere."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from kubernetes import client as k8s

from soar import layout
from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.infra.s3 import S3Server
from tests.support.cluster import TERMINAL, Cluster, running_operator, stub_run


@pytest.mark.slow
def test_s3_store_with_credentials_by_reference(
    kube: Kube, node_agent: NodeAgent, namespace: str, s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = f"runs-{namespace}"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    secret = f"s3cr3t-{uuid.uuid4().hex}"  # moto takes any key: this one must never leak
    credentials = {
        "AWS_ACCESS_KEY_ID": "stage-key",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": s3_server.region,
    }
    cluster = Cluster(kube, namespace)
    try:
        cluster.core.create_namespaced_secret(
            namespace, {"metadata": {"name": "store"}, "stringData": credentials}
        )
        storage = {
            "uri": f"s3://{bucket}/runs/on-s3",
            "endpoint": s3_server.endpoint_url,
            "secretRef": {"name": "store"},
        }
        run = stub_run("on-s3", tmp_path, spec={"steps": 1, "storage": storage})
        with running_operator(kube, namespace, tmp_path / "operator", **s3_server.env) as op:
            cluster.apply(run)
            status = cluster.wait_phase("on-s3", *TERMINAL)
            jobs = [k8s.ApiClient().sanitize_for_serialization(j) for j in cluster.jobs("on-s3")]
            events = [e.message for e in cluster.wait_events("on-s3", "RunSucceeded")]
            log = op.log()
        assert status["phase"] == "Succeeded", status
        prefix = f"s3://{bucket}/runs/on-s3"
        assert status["lastCheckpoint"] == f"{prefix}/{layout.teacher_checkpoint(1)}"
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
        assert f"runs/on-s3/{layout.RUN}" in keys and f"runs/on-s3/{layout.step_record(1)}" in keys

        (container,) = jobs[0]["spec"]["template"]["spec"]["containers"]
        assert container["envFrom"] == [{"secretRef": {"name": "store"}}]
        assert {"name": "AWS_ENDPOINT_URL", "value": s3_server.endpoint_url} in container["env"]
        for where in (json.dumps(jobs), json.dumps(status), json.dumps(events), log):
            assert secret not in where and "stage-key" not in where
    finally:
        cluster.close()
