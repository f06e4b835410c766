"""The Helm chart: what it renders, that the API server accepts it, and that the operator's
identity can do what the operator does and nothing more."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from soar.contract import GROUP, PLURAL
from tests.infra.binaries import find_binaries
from tests.infra.controlplane import Kube
from tests.infra.processes import wait_until
from tests.support.cluster import (
    CHART,
    FULLNAME,
    helm_render,
    helm_template,
    install_crds,
    install_rbac,
)

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
    # cluster-wide: only the users' roles (test_user_roles_fold_into_view_and_edit)
    assert [r["metadata"]["name"] for r in kinds["ClusterRole"]] == [
        f"{FULLNAME}-view",
        f"{FULLNAME}-edit",
    ]
    assert "ClusterRoleBinding" not in kinds and "ClusterKopfPeering" not in kinds
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
        ("list", "events"),  # the Job controller's FailedCreate reasons
        ("get", "secrets"),  # a run's spec.storage.secretRef, to read its store with
        ("delete", SOARRUNS),  # an ended run past its spec.ttlSecondsAfterFinished
        ("patch", "kopfpeerings.kopf.dev"),
    ]
    denied = [
        ("create", SOARRUNS),
        ("update", SOARRUNS),
        ("patch", "jobs.batch"),
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
    assert not can("get", "secrets", where="default")
    assert not can("list", "nodes")


def test_the_chart_lints_strictly(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    lint = subprocess.run(
        [str(find_binaries().helm), "lint", "--strict", str(CHART)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "0 chart(s) failed" in lint.stdout


@pytest.mark.parametrize(
    ("value", "named"),
    [
        ("watchNamespace=team-a", "additional properties 'watchNamespace' not allowed"),
        ("watchNamespaces={Team_A}", "at '/watchNamespaces/0': 'Team_A' does not match"),
        ("replicas=0", "at '/replicas': minimum: got 0, want 1"),
        ("reconcileInterval=fast", "at '/reconcileInterval'"),
        ("image.pullPolicy=Sometimes", "at '/image/pullPolicy'"),
        ("userRoles.enabled=yes", "at '/userRoles/enabled'"),
        ("monitoring.prometheusRule.stalledMinutes=soon", "/prometheusRule/stalledMinutes'"),
        ("monitoring.serviceMonitor.enable=true", "additional properties 'enable' not allowed"),
    ],
)
def test_bad_values_are_refused_naming_the_value(tmp_path: Path, value: str, named: str) -> None:
    rendered = helm_render(CHART, "soar", "ops", tmp_path, value, check=False)
    assert rendered.returncode != 0 and rendered.stdout == ""
    assert named in rendered.stderr, rendered.stderr


@pytest.mark.slow
def test_user_roles_fold_into_view_and_edit(kube: Kube, namespace: str, tmp_path: Path) -> None:
    install_crds(kube)
    roles = [
        d
        for d in helm_template(tmp_path, namespace)
        if d["metadata"]["name"].endswith(("-view", "-edit"))
    ]
    kube.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(roles))
    for user, role in (("viewer", "view"), ("editor", "edit")):
        kube.kubectl(
            "create",
            "rolebinding",
            user,
            f"--clusterrole={role}",
            f"--user={user}",
            "-n",
            namespace,
        )

    def can(user: str, verb: str) -> bool:
        proc = kube.kubectl(
            "auth", "can-i", verb, SOARRUNS, "--as", user, "-n", namespace, check=False
        )
        return proc.stdout.strip() == "yes"

    # the cluster's aggregation controller folds the rules in, a moment after the roles exist
    wait_until(lambda: can("editor", "create"), timeout=30, what="edit folding in SoarRuns")
    assert [can("viewer", v) for v in ("get", "list", "watch", "create", "delete")] == [
        True,
        True,
        True,
        False,
        False,
    ]
    assert [can("editor", v) for v in ("list", "create", "patch", "delete")] == [True] * 4
    assert not can("nobody", "list")


@pytest.mark.slow
def test_helm_install_upgrade_with_a_changed_crd_and_uninstall(
    kube: Kube, namespace: str, tmp_path: Path
) -> None:
    """The README's procedure: `helm install`; for an upgrade, apply the new chart's crds/ first
    (Helm never upgrades them), then `helm upgrade`; `helm uninstall` keeps the CRDs (and runs)."""
    install_crds(kube)
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "KUBECONFIG": str(kube.control_plane.admin_kubeconfig),
    }

    def helm(*args: str) -> str:
        proc = subprocess.run(
            [str(find_binaries().helm), *args, "-n", namespace],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    release, watch = "lifecycle", f"watchNamespaces={{{namespace}}}"
    helm("install", release, str(CHART), "--set", watch)
    deployment = f"deployment/{release}-soar-operator"
    assert kube.kubectl("get", deployment, "-n", namespace).returncode == 0

    # the next chart version adds a printer column to the SoarRun CRD
    chart = tmp_path / "next"
    shutil.copytree(CHART, chart)
    crd_file = chart / "crds" / "soarrun.yaml"
    crd = yaml.safe_load(crd_file.read_text())
    columns = crd["spec"]["versions"][0]["additionalPrinterColumns"]
    columns.append({"name": "Upgraded", "type": "string", "jsonPath": ".status.reason"})
    crd_file.write_text(yaml.safe_dump(crd))
    try:
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(chart / "crds"))
        helm("upgrade", release, str(chart), "--set", watch, "--set", "reconcileInterval=7")
        served = json.loads(kube.kubectl("get", "crd", SOARRUNS, "-o", "json").stdout)
        names = [c["name"] for c in served["spec"]["versions"][0]["additionalPrinterColumns"]]
        assert names[-1] == "Upgraded"
        env_of = json.loads(kube.kubectl("get", deployment, "-n", namespace, "-o", "json").stdout)
        container = env_of["spec"]["template"]["spec"]["containers"][0]
        values = {e["name"]: e.get("value") for e in container["env"]}
        assert values["SOAR_OPERATOR_INTERVAL"] == "7"
        assert "REVISION: 2" in helm("status", release)
    finally:
        kube.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CHART / "crds"))

    helm("uninstall", release)
    gone = kube.kubectl("get", deployment, "-n", namespace, check=False)
    assert gone.returncode != 0 and "NotFound" in gone.stderr
    assert kube.kubectl("get", "crd", SOARRUNS).returncode == 0  # CRDs (and runs) stay
