"""Two teams, two namespaces, two buckets: one operator reads each run's store with that run's own
Secret, so a team's keys open only its own bucket (moto checking keys and IAM policies as S3 does).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.infra.s3 import REGION, S3Server, start_moto
from tests.support.cluster import (
    FULLNAME,
    NAMESPACED_KINDS,
    TERMINAL,
    Cluster,
    Operator,
    fresh_namespace,
    helm_template,
    install_crds,
    stub_run,
)

TEAMS = ("a", "b")
# Requests moto answers before it starts checking keys: the setup below, two of each per team.
SETUP_REQUESTS = 2 * len(("create_bucket", "create_user", "put_user_policy", "create_access_key"))


@pytest.fixture
def iam_s3(tmp_path: Path) -> Iterator[tuple[S3Server, dict[str, dict[str, str]]]]:
    """A moto S3 that enforces IAM, a bucket `runs-<team>` per team and keys that open only it."""
    server, proc = start_moto(
        tmp_path / "moto.log", env={"INITIAL_NO_AUTH_ACTION_COUNT": str(SETUP_REQUESTS)}
    )
    try:
        s3, iam = server.client(), server.client("iam")
        keys = {}
        for team in TEAMS:
            bucket = f"runs-{team}"
            s3.create_bucket(Bucket=bucket)
            iam.create_user(UserName=team)
            resources = [f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"]
            statement = {"Effect": "Allow", "Action": "s3:*", "Resource": resources}
            policy = {"Version": "2012-10-17", "Statement": [statement]}
            iam.put_user_policy(UserName=team, PolicyName="own", PolicyDocument=json.dumps(policy))
            key = iam.create_access_key(UserName=team)["AccessKey"]
            keys[team] = {
                "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
                "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
                "AWS_DEFAULT_REGION": REGION,
            }
        yield server, keys
    finally:
        proc.stop()


@pytest.mark.slow
def test_each_run_store_is_read_with_its_own_namespaces_credentials(
    kube: Kube, node_agent: NodeAgent, namespace: str, iam_s3, tmp_path: Path
) -> None:
    server, keys = iam_s3
    with fresh_namespace(kube) as other:
        spaces = {"a": namespace, "b": other}
        install_crds(kube)
        watched = ",".join(spaces.values())
        docs = helm_template(tmp_path, namespace, f"watchNamespaces={{{watched}}}")
        for ns in spaces.values():
            objects = [
                d
                for d in docs
                if d["kind"] in NAMESPACED_KINDS and d["metadata"].get("namespace", namespace) == ns
            ]
            kube.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump_all(objects))
        kubeconfig = kube.service_account_kubeconfig(namespace, FULLNAME)

        clusters = {team: Cluster(kube, ns) for team, ns in spaces.items()}
        # The operator's own identity opens no bucket: whatever it reads, it reads as the run.
        operator = Operator(
            namespace,
            kubeconfig,
            tmp_path / "operator-logs",
            SOAR_WATCH_NAMESPACES=watched,
            AWS_ENDPOINT_URL=server.endpoint_url,
            AWS_ENDPOINT_URL_S3=server.endpoint_url,
            AWS_ACCESS_KEY_ID="operator-own-key",
            AWS_SECRET_ACCESS_KEY="operator-own-secret",
        )
        operator.start()
        try:
            operator.wait_ready()
            for team, cluster in clusters.items():
                cluster.core.create_namespaced_secret(
                    spaces[team], {"metadata": {"name": "store"}, "stringData": keys[team]}
                )
                storage = {
                    "uri": f"s3://runs-{team}/runs/{team}",
                    "endpoint": server.endpoint_url,
                    "secretRef": {"name": "store"},
                }
                spec = {"steps": 1, "storage": storage}
                cluster.apply(stub_run(f"run-{team}", tmp_path / team, spec=spec))
            # Team b's run pointed at team a's bucket: its own keys do not open it.
            intruder = {
                "uri": "s3://runs-a/runs/intruder",
                "endpoint": server.endpoint_url,
                "secretRef": {"name": "store"},
            }
            clusters["b"].apply(stub_run("intruder", tmp_path / "i", spec={"storage": intruder}))

            ended = {t: c.wait_phase(f"run-{t}", *TERMINAL) for t, c in clusters.items()}
            refused = clusters["b"].wait_status(
                "intruder", lambda s: s.get("reason") == "StoreUnavailable", "store refused"
            )
            reported = json.dumps(
                [ended, refused, [c.events("intruder") for c in clusters.values()]], default=str
            )
            log = operator.log()
        finally:
            for cluster in clusters.values():
                kube.kubectl(
                    "delete",
                    "soarruns",
                    "--all",
                    "-n",
                    cluster.namespace,
                    "--timeout=30s",
                    check=False,
                )
            operator.stop()
            for cluster in clusters.values():
                cluster.close()

    for team in TEAMS:
        assert ended[team]["phase"] == "Succeeded", ended[team]
        owner = server.client(credentials=keys[team])
        listed = owner.list_objects_v2(Bucket=f"runs-{team}", Prefix=f"runs/{team}/")
        assert listed["KeyCount"] > 0  # the run's stages wrote its store, with its keys
    assert refused["phase"] == "Pending"
    assert "AccessDenied" in refused["message"], refused
    owner_a = server.client(credentials=keys["a"])
    assert owner_a.list_objects_v2(Bucket="runs-a", Prefix="runs/intruder/")["KeyCount"] == 0
    for team in TEAMS:  # keys appear nowhere the users or the operator's log can see
        assert keys[team]["AWS_SECRET_ACCESS_KEY"] not in reported + log
