"""The Helm chart: what it renders, that the API server accepts it, and that the operator's
identity can do what the operator does and nothing more."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from soar.contract import GROUP, PLURAL
from tests.infra.controlplane import Kube
from tests.support.cluster import FULLNAME, helm_template, install_crds, install_rbac

SOARRUNS = f"{PLURAL}.{GROUP}"


def by_kind(docs: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for doc in docs:
        out.setdefault(doc["kind"], []).append(doc)
    return out


def test_cluster_wide_install(tmp_path: Path) -> None:
    kinds = by_kind(helm_template(tmp_path, "ops"))
    assert sorted(kinds) == [
        "ClusterKopfPeering",
        "ClusterRole",
        "ClusterRoleBinding",
        "Deployment",
        "Service",
        "ServiceAccount",
    ]
    (binding,) = kinds["ClusterRoleBinding"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": FULLNAME, "namespace": "ops"}]
    (deployment,) = kinds["Deployment"]
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["SOAR_WATCH_NAMESPACES"]["value"] == ""
    assert env["SOAR_PEERING"]["value"] == FULLNAME
    assert env["POD_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}


def test_per_namespace_install(tmp_path: Path) -> None:
    docs = helm_template(
        tmp_path,
        "ops",
        "watchNamespaces={team-a,team-b}",
        "worker.podDefaults.nodeSelector.pool=gpu",
        "reconcileInterval=2",
    )
    kinds = by_kind(docs)
    assert "ClusterRole" not in kinds and "ClusterKopfPeering" not in kinds
    assert [r["metadata"]["namespace"] for r in kinds["Role"]] == ["team-a", "team-b"]
    assert [p["metadata"]["namespace"] for p in kinds["KopfPeering"]] == ["team-a", "team-b"]
    (deployment,) = kinds["Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SOAR_WATCH_NAMESPACES"] == "team-a,team-b"
    assert env["SOAR_OPERATOR_INTERVAL"] == "2"
    assert json.loads(env["SOAR_POD_DEFAULTS"]) == {"nodeSelector": {"pool": "gpu"}}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "health"}
    (service,) = kinds["Service"]
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"


@pytest.mark.slow
def test_chart_passes_server_side_dry_run(kube: Kube, namespace: str, tmp_path: Path) -> None:
    install_crds(kube)
    docs = helm_template(tmp_path, namespace, f"watchNamespaces={{{namespace}}}")
    applied = kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(docs)
    )
    assert f"deployment.apps/{FULLNAME} created (server dry run)" in applied.stdout
    assert f"kopfpeering.kopf.dev/{FULLNAME} created (server dry run)" in applied.stdout


@pytest.mark.slow
def test_operator_identity_is_least_privilege(kube: Kube, namespace: str, tmp_path: Path) -> None:
    install_crds(kube)
    kubeconfig = install_rbac(kube, namespace, tmp_path)

    def can(*args: str, where: str = namespace) -> bool:
        proc = kube.kubectl("auth", "can-i", *args, "-n", where, kubeconfig=kubeconfig, check=False)
        return proc.stdout.strip() == "yes"

    allowed = [
        ("watch", SOARRUNS),
        ("patch", SOARRUNS, "--subresource=status"),
        ("update", SOARRUNS, "--subresource=finalizers"),
        ("create", "jobs.batch"),
        ("delete", "jobs.batch"),
        ("list", "pods"),
        ("create", "events"),
        ("patch", "kopfpeerings.kopf.dev"),
    ]
    denied = [
        ("create", SOARRUNS),
        ("delete", SOARRUNS),
        ("update", SOARRUNS),
        ("patch", "jobs.batch"),
        ("get", "secrets"),
        ("list", "secrets"),
        ("create", "pods"),
        ("delete", "pods"),
        ("get", "configmaps"),
        ("create", "leases.coordination.k8s.io"),
        ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ]
    assert [a for a in allowed if not can(*a)] == []
    assert [d for d in denied if can(*d)] == []
    assert not can("create", "jobs.batch", where="default")  # only the namespaces it serves
    assert not can("list", "nodes")
