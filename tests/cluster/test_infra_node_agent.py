"""Jobs run for real: the scheduler places pods on the fake GPU node, the node agent runs their
command as a local process, and the Job controller sees them finish."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from kubernetes import client as k8s

from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.infra.processes import wait_until

SCRIPT = """
import os, sys
print("hello", os.environ["GREETING"], os.environ["TOKEN"], os.environ["INDEX"], flush=True)
open(os.environ["OUT"], "w").write(sys.executable)
sys.exit(int(os.environ["EXIT_CODE"]))
"""


def _job(name: str, out: Path, exit_code: int, gpus: int = 1) -> dict:
    env = [
        {"name": "GREETING", "value": "world"},
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {
            "name": "INDEX",
            "valueFrom": {
                "fieldRef": {
                    "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"
                }
            },
        },
        {"name": "OUT", "value": str(out)},
        {"name": "EXIT_CODE", "value": str(exit_code)},
    ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "completionMode": "Indexed",
            "completions": 1,
            "template": {
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "stage",
                            "image": "registry.invalid/soar/worker:test",
                            "command": ["python", "-c", SCRIPT],
                            "env": env,
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                        }
                    ],
                }
            },
        },
    }


def _condition(job: k8s.V1Job, kind: str) -> k8s.V1JobCondition | None:
    for cond in job.status.conditions or []:
        if cond.type == kind and cond.status == "True":
            return cond
    return None


def _job_pods(core: k8s.CoreV1Api, namespace: str, job: str) -> list[k8s.V1Pod]:
    return core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items


def test_job_completes_through_job_controller_and_node_agent(
    kube: Kube, node_agent: NodeAgent, namespace: str, tmp_path: Path
) -> None:
    with kube.api_client() as api:
        core, batch = k8s.CoreV1Api(api), k8s.BatchV1Api(api)
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}}
        )
        out = tmp_path / "ran-with"
        batch.create_namespaced_job(namespace, _job("ok", out, exit_code=0))

        job = wait_until(
            lambda: (
                _condition(batch.read_namespaced_job("ok", namespace), "Complete")
                and batch.read_namespaced_job("ok", namespace)
            ),
            timeout=60,
            what="Job ok to complete",
        )
        assert job.status.succeeded == 1
        (pod,) = _job_pods(core, namespace, "ok")
        assert pod.spec.node_name == node_agent.node_name
        assert pod.status.phase == "Succeeded"
        terminated = pod.status.container_statuses[0].state.terminated
        assert terminated.exit_code == 0 and terminated.reason == "Completed"
        # The pod's command ran here, in this Python environment, with its env resolved.
        assert "hello world s3cr3t 0" in node_agent.read_log(namespace, pod.metadata.name)
        assert Path(out.read_text()).parent == Path(sys.executable).parent

        # Owner references: deleting the Job lets the garbage collector remove its pods.
        batch.delete_namespaced_job("ok", namespace, propagation_policy="Background")
        wait_until(
            lambda: not _job_pods(core, namespace, "ok"),
            timeout=60,
            what="the garbage collector to delete the Job's pods",
        )


def test_failing_job_reports_exit_code(
    kube: Kube, node_agent: NodeAgent, namespace: str, tmp_path: Path
) -> None:
    with kube.api_client() as api:
        core, batch = k8s.CoreV1Api(api), k8s.BatchV1Api(api)
        core.create_namespaced_secret(
            namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "x"}}
        )
        batch.create_namespaced_job(namespace, _job("bad", tmp_path / "out", exit_code=3))
        failed = wait_until(
            lambda: _condition(batch.read_namespaced_job("bad", namespace), "Failed"),
            timeout=60,
            what="Job bad to fail",
        )
        assert failed.reason == "BackoffLimitExceeded"
        (pod,) = _job_pods(core, namespace, "bad")
        assert pod.status.phase == "Failed"
        assert pod.status.container_statuses[0].state.terminated.exit_code == 3


def test_pod_asking_for_more_gpus_than_the_node_has_stays_pending(
    kube: Kube, node_agent: NodeAgent, namespace: str
) -> None:
    pod = {
        "metadata": {"name": "greedy"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "main",
                    "image": "registry.invalid/x",
                    "command": ["python", "-c", "print('must not run')"],
                    "resources": {"limits": {"nvidia.com/gpu": "3"}},
                }
            ],
        },
    }
    with kube.api_client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)

        def failed_scheduling() -> k8s.CoreV1Event | None:
            events = core.list_namespaced_event(
                namespace, field_selector="involvedObject.name=greedy,reason=FailedScheduling"
            ).items
            return events[0] if events else None

        event = wait_until(failed_scheduling, timeout=30, what="a FailedScheduling event")
        assert "Insufficient nvidia.com/gpu" in event.message
        pending = core.read_namespaced_pod("greedy", namespace)
        assert pending.status.phase == "Pending"
        assert pending.spec.node_name is None
        assert not node_agent.log_path(namespace, "greedy").exists()


def test_deleting_a_running_pod_stops_its_process(
    kube: Kube, node_agent: NodeAgent, namespace: str, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    script = (
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(300)"
    )
    pod = {
        "metadata": {"name": "sleeper"},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [{"name": "main", "image": "x", "command": ["python", "-c", script]}],
        },
    }
    with kube.api_client() as api:
        core = k8s.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)
        wait_until(
            lambda: (
                core.read_namespaced_pod("sleeper", namespace).status.phase == "Running"
                and pid_file.exists()
                and pid_file.read_text()
            ),
            timeout=30,
            what="pod sleeper to run",
        )
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # alive

        core.delete_namespaced_pod("sleeper", namespace)

        def gone() -> bool:
            try:
                core.read_namespaced_pod("sleeper", namespace)
            except k8s.ApiException as exc:
                return exc.status == 404
            return False

        wait_until(gone, timeout=30, what="pod sleeper to be deleted")

        def process_gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_until(process_gone, timeout=10, what=f"process {pid} to exit")
