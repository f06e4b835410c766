"""The control plane behaves like a real cluster: CRD schema validation, RBAC, server-side dry run
of a Helm chart. These are the behaviours mocks of the API get wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from kubernetes import client as k8s

from tests import infra
from tests.infra.binaries import REPO_ROOT
from tests.infra.controlplane import Kube
from tests.infra.processes import wait_until
from tests.support.cluster import helm_render

CRD_FILE = REPO_ROOT / "crds" / "soarrun.yaml"
CHART = Path(infra.__file__).parent / "testdata" / "minimal-chart"
# A field whose bounds the design fixes (g >= 2 datasets: the teacher's RLOO baseline needs two).
BOUNDED_FIELD = ("spec", "teacher", "datasets")


def _schema_at(crd: dict, path: tuple[str, ...]) -> dict:
    version = next(v for v in crd["spec"]["versions"] if v.get("storage"))
    node = version["schema"]["openAPIV3Schema"]
    for part in path:
        assert part in node.get("properties", {}), f"CRD schema has no {'.'.join(path)}"
        node = node["properties"][part]
    return node


def test_soarrun_crd_rejects_an_invalid_run(kube: Kube, namespace: str) -> None:
    assert CRD_FILE.exists(), f"{CRD_FILE} is missing: generate it with `make crd`"
    crd = yaml.safe_load(CRD_FILE.read_text())
    minimum = _schema_at(crd, BOUNDED_FIELD).get("minimum")
    assert minimum == 2, f"{'.'.join(BOUNDED_FIELD)} should have minimum 2, has {minimum}"

    kube.kubectl("apply", "-f", str(CRD_FILE))
    name = crd["metadata"]["name"]
    kube.kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    plural = crd["spec"]["names"]["plural"]
    version = next(v["name"] for v in crd["spec"]["versions"] if v.get("served"))
    group = crd["spec"]["group"]

    bad = {
        "apiVersion": f"{group}/{version}",
        "kind": crd["spec"]["names"]["kind"],
        "metadata": {"name": "too-few-datasets", "namespace": namespace},
        "spec": {"teacher": {"datasets": 1}},
    }
    proc = kube.kubectl("apply", "-f", "-", input=yaml.safe_dump(bad), check=False)
    assert proc.returncode != 0, f"the API server accepted an invalid SoarRun:\n{proc.stdout}"
    field_path = ".".join(BOUNDED_FIELD)
    assert f"{field_path}: Invalid value: 1" in proc.stderr, proc.stderr
    assert f"{field_path} in body should be greater than or equal to 2" in proc.stderr

    listed = kube.kubectl("get", f"{plural}.{group}", "-n", namespace, "-o", "name")
    assert listed.stdout.strip() == "", "the rejected SoarRun must not exist"


def test_rbac_forbids_the_restricted_user_until_a_role_is_bound(kube: Kube, namespace: str) -> None:
    admin_api = kube.api_client()
    restricted_api = kube.api_client(kube.restricted_kubeconfig)
    try:
        admin, restricted = k8s.CoreV1Api(admin_api), k8s.CoreV1Api(restricted_api)
        admin.create_namespaced_config_map(
            namespace, {"metadata": {"name": "settings"}, "data": {"a": "1"}}
        )
        assert admin.read_namespaced_config_map("settings", namespace).data == {"a": "1"}
        with pytest.raises(k8s.ApiException) as denied:
            restricted.read_namespaced_config_map("settings", namespace)
        assert denied.value.status == 403
        assert kube.restricted.user in denied.value.body

        can_i = ["auth", "can-i", "get", "configmaps", "-n", namespace]
        kubeconfig = kube.restricted_kubeconfig
        assert kube.kubectl(*can_i, kubeconfig=kubeconfig, check=False).stdout.strip() == "no"

        rbac = k8s.RbacAuthorizationV1Api(admin_api)
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": "read-config"},
                "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": "read-config"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "read-config",
                },
                "subjects": [
                    {
                        "apiGroup": "rbac.authorization.k8s.io",
                        "kind": "User",
                        "name": kube.restricted.user,
                    }
                ],
            },
        )
        got = wait_until(
            lambda: restricted.read_namespaced_config_map("settings", namespace),
            timeout=15,
            what="the RoleBinding to take effect",
        )
        assert got.data == {"a": "1"}
        # Still least privilege: only what the Role grants, only in this namespace.
        for forbidden in (
            lambda: restricted.delete_namespaced_config_map("settings", namespace),
            lambda: restricted.list_namespaced_secret(namespace),
            lambda: restricted.read_namespaced_config_map("kube-root-ca.crt", "kube-system"),
        ):
            with pytest.raises(k8s.ApiException) as denied:
                forbidden()
            assert denied.value.status == 403
    finally:
        admin_api.close()
        restricted_api.close()


def test_service_account_token_identity(kube: Kube, namespace: str) -> None:
    """TokenRequest works (the signing key is wired), and the token is a distinct identity."""
    kubeconfig = kube.service_account_kubeconfig(namespace, "operator")
    whoami = kube.kubectl(
        "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}", kubeconfig=kubeconfig
    )
    assert whoami.stdout == f"system:serviceaccount:{namespace}:operator"
    denied = kube.kubectl("get", "pods", "-n", namespace, kubeconfig=kubeconfig, check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower()


def _helm_template(namespace: str, tmp_path: Path, *sets: str) -> str:
    proc = helm_render(CHART, "demo", namespace, tmp_path, *sets, check=False)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_helm_chart_passes_server_side_dry_run(kube: Kube, namespace: str, tmp_path: Path) -> None:
    rendered = _helm_template(namespace, tmp_path)
    kinds = {doc["kind"] for doc in yaml.safe_load_all(rendered) if doc}
    assert kinds == {"ServiceAccount", "Role", "RoleBinding", "Deployment", "Service"}

    applied = kube.kubectl("apply", "--dry-run=server", "-n", namespace, "-f", "-", input=rendered)
    assert "deployment.apps/demo-operator created (server dry run)" in applied.stdout
    assert kube.kubectl("get", "deployments", "-n", namespace, "-o", "name").stdout == ""

    # The server, not the client, validates values: a negative replica count is refused.
    broken = _helm_template(namespace, tmp_path, "replicas=-1")
    refused = kube.kubectl(
        "apply", "--dry-run=server", "-n", namespace, "-f", "-", input=broken, check=False
    )
    assert refused.returncode != 0
    assert "spec.replicas: Invalid value: -1" in refused.stderr, refused.stderr
