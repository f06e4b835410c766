"""Stage pods in a namespace that enforces the 'restricted' Pod Security Standard: the real API
server's PodSecurity admission admits the operator's default pods and refuses a run that opts
out of the restricted settings, and the run's status says why its pods do not come."""

from __future__ import annotations

import json
from pathlib import Path

from soar.spec_execution import PodSettings
from soar_operator.jobs import job_manifest
from tests.infra.controlplane import Kube
from tests.support.cluster import TERMINAL, Cluster, stub_run
from tests.support.manifests import SMALL, parsed

DEFAULTS = PodSettings(image="registry.example/soar-worker:0.1.0")


def stage_pod(pods: dict | None = None) -> dict:
    """The pod a stage Job's controller would create: the Job's template as a Pod."""
    run = parsed("secure", SMALL, **({"pods": pods} if pods else {}))
    template = job_manifest(run, "uid", 1, "baseline", 1, DEFAULTS)["spec"]["template"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "secure-1-baseline", **template["metadata"]},
        "spec": template["spec"],
    }


def admit(kube: Kube, namespace: str, pod: dict):
    return kube.kubectl(
        "apply",
        "--dry-run=server",
        "-n",
        namespace,
        "-f",
        "-",
        input=json.dumps(pod),
        check=False,
    )


def test_restricted_namespace_admits_default_stage_pods_only(kube: Kube, namespace: str) -> None:
    kube.kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/enforce=restricted")
    admitted = admit(kube, namespace, stage_pod())
    assert admitted.returncode == 0, admitted.stderr
    assert "created (server dry run)" in admitted.stdout
    opted_out = admit(kube, namespace, stage_pod({"default": {"containerSecurityContext": {}}}))
    assert opted_out.returncode != 0
    assert 'violates PodSecurity "restricted:latest"' in opted_out.stderr, opted_out.stderr
    assert "allowPrivilegeEscalation != false" in opted_out.stderr


def test_a_restricted_namespace_runs_default_pods_and_names_a_refusal(
    cluster: Cluster, tmp_path: Path
) -> None:
    cluster.kube.kubectl(
        "label", "namespace", cluster.namespace, "pod-security.kubernetes.io/enforce=restricted"
    )
    # the operator's default pods are admitted: the run goes through
    cluster.apply(stub_run("plain", tmp_path, spec={"steps": 1}))
    assert cluster.wait_phase("plain", *TERMINAL)["phase"] == "Succeeded"
    # pods a run opts out of the restricted settings for are refused; the status names why
    cluster.apply(
        stub_run("loose", tmp_path, spec={"pods": {"default": {"containerSecurityContext": {}}}})
    )
    status = cluster.wait_status(
        "loose", lambda s: "cannot create pods" in s.get("message", ""), "the refusal"
    )
    assert (status["phase"], status["reason"]) == ("Pending", "WaitingForPods")
    assert "Job loose-0-prepare-1 cannot create pods:" in status["message"]
    assert 'violates PodSecurity "restricted:latest"' in status["message"]
