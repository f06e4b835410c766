"""A stand-in kubelet: a fake Node whose pods run as local processes.

The Node is registered through the API with the capacity a GPU node advertises (so the real
scheduler places pods on it, or leaves them Pending), and its Ready condition and Lease are kept
fresh so the node lifecycle controller never taints it. Pods bound to it run their first
container's command in this Python environment (the image is ignored), output goes to one log
file per pod, and the pod status goes Running then Succeeded/Failed with the exit code, which is
what the real Job controller counts. Deleting a pod stops its process group, then finishes the
deletion as a kubelet does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch
from kubernetes.client.rest import ApiException

from tests.infra.binaries import REPO_ROOT
from tests.infra.pod_env import ContainerConfigError, EnvResolver
from tests.infra.processes import ManagedProcess

log = logging.getLogger(__name__)

NODE_NAME = "soar-gpu-node"
DEFAULT_CAPACITY = {
    "cpu": "8",
    "memory": "32Gi",
    "ephemeral-storage": "100Gi",
    "pods": "110",
    "nvidia.com/gpu": "2",
}
STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
# Variables of the test session that a real pod would not see: a pod must get its cluster and
# S3 credentials the way production does (env, Secrets), or the test would hide the gap.
_HIDDEN_ENV_PREFIXES = ("AWS_", "KUBERNETES_", "KUBECONFIG", "SOAR_TEST_")


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _log_tail(path: Path, lines: int = 80, limit: int = 2048) -> str:
    """What the kubelet reports for FallbackToLogsOnError: the end of the container's output."""
    try:
        text = path.read_bytes()[-limit:].decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def admin_api_client(kubeconfig: Path, pool_size: int = 32) -> k8s.ApiClient:
    """An ApiClient whose connection pool is large enough for a watch plus many pod threads."""
    cfg = k8s.Configuration()
    k8s_config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = pool_size
    return k8s.ApiClient(cfg)


def base_process_env() -> dict[str, str]:
    """The environment every pod process starts from: this one, minus test-session secrets,
    with this interpreter's bin directory first on PATH (so ``python`` and ``soar`` resolve to
    the project's virtualenv)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_HIDDEN_ENV_PREFIXES)}
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    return env


@dataclass
class _PodRun:
    uid: str
    namespace: str
    name: str
    log_path: Path
    stopping: threading.Event = field(default_factory=threading.Event)
    grace: float = 30.0
    done: bool = False
    proc: ManagedProcess | None = None
    thread: threading.Thread | None = None


class NodeAgent:
    """Registers the fake node, keeps it alive and runs the pods bound to it."""

    def __init__(
        self,
        kubeconfig: Path,
        log_dir: Path,
        *,
        node_name: str = NODE_NAME,
        capacity: dict[str, str] | None = None,
        labels: dict[str, str] | None = None,
        workdir: Path = REPO_ROOT,
        heartbeat_interval: float = 5.0,
        kubelet_version: str = "v0.0.0-soar-test",
    ) -> None:
        self.node_name = node_name
        self.capacity = dict(capacity or DEFAULT_CAPACITY)
        self.labels = {
            "kubernetes.io/hostname": node_name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "nvidia.com/gpu.present": "true",
            **(labels or {}),
        }
        self.log_dir = log_dir
        self.workdir = workdir
        self.heartbeat_interval = heartbeat_interval
        self.kubelet_version = kubelet_version
        self.api = admin_api_client(kubeconfig)
        self.core = k8s.CoreV1Api(self.api)
        self.coordination = k8s.CoordinationV1Api(self.api)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._runs: dict[str, _PodRun] = {}
        self._threads: list[threading.Thread] = []
        self.errors: list[BaseException] = []

    # ------------------------------------------------------------------------------- public
    def log_path(self, namespace: str, pod: str) -> Path:
        """Where the output of a pod's process goes."""
        return self.log_dir / namespace / f"{pod}.log"

    def read_log(self, namespace: str, pod: str) -> str:
        path = self.log_path(namespace, pod)
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self) -> None:
        """Registers the Node and its Lease, then starts the heartbeat and pod watch threads."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._register_node()
        self._renew_lease()
        for target, name in ((self._heartbeat_loop, "heartbeat"), (self._watch_loop, "pods")):
            thread = threading.Thread(target=target, name=f"node-agent-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stops the threads, then every pod process still running (SIGTERM, then SIGKILL)."""
        self._stop.set()
        with self._lock:
            runs = list(self._runs.values())
        for run in runs:
            run.grace = min(run.grace, 2.0)
            run.stopping.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=15)
            if run.proc is not None:
                run.proc.stop(grace=1)
        for thread in self._threads:
            thread.join(timeout=15)
        self.api.close()

    # ------------------------------------------------------------------------------- node
    def _conditions(self) -> list[dict[str, str]]:
        now = _now()
        healthy = [
            ("MemoryPressure", "False", "KubeletHasSufficientMemory"),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID"),
            ("Ready", "True", "KubeletReady"),
        ]
        return [
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": "soar test node agent",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
            for kind, status, reason in healthy
        ]

    def _register_node(self) -> None:
        body = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.node_name, "labels": self.labels},
            "spec": {},
            "status": {
                "capacity": self.capacity,
                "allocatable": self.capacity,
                "conditions": self._conditions(),
                "addresses": [
                    {"type": "InternalIP", "address": "127.0.0.1"},
                    {"type": "Hostname", "address": self.node_name},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "nodeInfo": {
                    "machineID": "soar-test",
                    "systemUUID": "soar-test",
                    "bootID": "soar-test",
                    "kernelVersion": os.uname().release,
                    "osImage": "soar test node agent",
                    "containerRuntimeVersion": "local-process://0",
                    "kubeletVersion": self.kubelet_version,
                    "kubeProxyVersion": "",
                    "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            },
        }
        try:
            self.core.create_node(body)
        except ApiException as exc:
            if exc.status != 409:  # registered before (an agent restart): refresh its status
                raise
        self.core.patch_node_status(
            self.node_name, {"status": body["status"]}, _content_type=STRATEGIC
        )

    def _renew_lease(self) -> None:
        spec = {
            "holderIdentity": self.node_name,
            "leaseDurationSeconds": 40,
            "renewTime": _now_micro(),
        }
        try:
            self.coordination.patch_namespaced_lease(
                self.node_name, "kube-node-lease", {"spec": spec}, _content_type=MERGE
            )
        except ApiException as exc:
            if exc.status != 404:
                raise
            node = self.core.read_node(self.node_name)
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.node_name}
            owner["uid"] = node.metadata.uid
            self.coordination.create_namespaced_lease(
                "kube-node-lease",
                {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.node_name, "ownerReferences": [owner]},
                    "spec": spec,
                },
            )

    def _heartbeat_loop(self) -> None:
        while not self._stop.wait(self.heartbeat_interval):
            try:
                self._renew_lease()
                # lastTransitionTime must not move while the status stays the same.
                conditions = [
                    {k: v for k, v in cond.items() if k != "lastTransitionTime"}
                    for cond in self._conditions()
                ]
                self.core.patch_node_status(
                    self.node_name, {"status": {"conditions": conditions}}, _content_type=STRATEGIC
                )
            except Exception as exc:  # the API may be going away at teardown
                if not self._stop.is_set():
                    log.warning("node heartbeat failed: %s", exc)

    # ------------------------------------------------------------------------------- pods
    def _watch_loop(self) -> None:
        selector = f"spec.nodeName={self.node_name}"
        resource_version: str | None = None
        while not self._stop.is_set():
            try:
                if resource_version is None:
                    listing = self.core.list_pod_for_all_namespaces(field_selector=selector)
                    for pod in listing.items:
                        self._on_pod("ADDED", pod)
                    resource_version = listing.metadata.resource_version
                stream = watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=resource_version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=2,
                )
                for event in stream:
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        resource_version = None  # 410 Gone: list again
                        break
                    resource_version = obj.metadata.resource_version
                    if event["type"] != "BOOKMARK":
                        self._on_pod(event["type"], obj)
                    if self._stop.is_set():
                        break
            except ApiException as exc:
                if exc.status == 410:
                    resource_version = None
                elif not self._stop.is_set():
                    log.warning("pod watch failed: %s", exc)
                    time.sleep(0.5)
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("pod watch failed: %r", exc)
                    self.errors.append(exc)
                    time.sleep(0.5)

    def _on_pod(self, kind: str, pod: k8s.V1Pod) -> None:
        meta = pod.metadata
        with self._lock:
            run = self._runs.get(meta.uid)
            if kind == "DELETED" or meta.deletion_timestamp is not None:
                if run is not None and not run.done:
                    if kind == "DELETED":
                        run.grace = 0.0
                    elif meta.deletion_grace_period_seconds is not None:
                        run.grace = float(meta.deletion_grace_period_seconds)
                    run.stopping.set()
                    return
                finish = kind != "DELETED"
            else:
                phase = pod.status.phase if pod.status else None
                if run is not None or phase in ("Succeeded", "Failed"):
                    return
                run = _PodRun(
                    uid=meta.uid,
                    namespace=meta.namespace,
                    name=meta.name,
                    log_path=self.log_path(meta.namespace, meta.name),
                    grace=float(pod.spec.termination_grace_period_seconds or 30),
                )
                self._runs[meta.uid] = run
                run.thread = threading.Thread(
                    target=self._run_pod, args=(run, pod), name=f"pod-{meta.name}", daemon=True
                )
                run.thread.start()
                return
        if finish:
            self._finish_deletion(meta.namespace, meta.name, meta.uid)

    def _finish_deletion(self, namespace: str, name: str, uid: str) -> None:
        """What the kubelet does once the containers are gone: delete with grace period 0."""
        with contextlib.suppress(ApiException):
            self.core.delete_namespaced_pod(
                name,
                namespace,
                body=k8s.V1DeleteOptions(grace_period_seconds=0, preconditions={"uid": uid}),
            )

    def _patch_status(self, run: _PodRun, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                run.name, run.namespace, {"status": status}, _content_type=STRATEGIC
            )
        except ApiException as exc:
            if exc.status != 404:  # a pod deleted meanwhile has no status to report
                log.warning("status of %s/%s: %s", run.namespace, run.name, exc)

    def _container_status(
        self,
        container: k8s.V1Container,
        state: dict[str, Any],
        *,
        restarts: int,
        last: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        running = "running" in state
        status = {
            "name": container.name,
            "image": container.image or "",
            "imageID": "",
            "containerID": f"local-process://{container.name}",
            "ready": running,
            "started": running,
            "restartCount": restarts,
            "state": state,
        }
        if last is not None:
            status["lastState"] = last
        return status

    @staticmethod
    def _conditions_for(ready: bool) -> list[dict[str, str]]:
        now = _now()
        value = "True" if ready else "False"
        return [
            {"type": "Initialized", "status": "True", "lastTransitionTime": now},
            {"type": "ContainersReady", "status": value, "lastTransitionTime": now},
            {"type": "Ready", "status": value, "lastTransitionTime": now},
        ]

    def _run_pod(self, run: _PodRun, pod: k8s.V1Pod) -> None:
        container = pod.spec.containers[0]
        policy = pod.spec.restart_policy or "Always"
        started_at = _now()
        deadline = None
        if pod.spec.active_deadline_seconds:
            deadline = time.monotonic() + pod.spec.active_deadline_seconds
        run.log_path.parent.mkdir(parents=True, exist_ok=True)
        restarts = 0
        last_state: dict[str, Any] | None = None
        exit_code, reason, message = 0, "Completed", ""
        try:
            resolver = EnvResolver(self.core, pod)
            pod_env = resolver.resolve(container)
            argv = resolver.argv(container, pod_env)
        except (ContainerConfigError, ApiException) as exc:
            with open(run.log_path, "a") as fh:
                fh.write(f"CreateContainerConfigError: {exc}\n")
            exit_code, reason, message = 128, "CreateContainerConfigError", str(exc)
            argv = []
        env = {**base_process_env(), "HOSTNAME": run.name, **(pod_env if argv else {})}
        cwd = container.working_dir
        if not cwd or not os.path.isdir(cwd):
            cwd = str(self.workdir)

        while argv and not run.stopping.is_set() and not self._stop.is_set():
            try:
                proc = ManagedProcess(
                    f"pod {run.namespace}/{run.name}", argv, run.log_path, env=env, cwd=cwd
                )
            except OSError as exc:
                with open(run.log_path, "a") as fh:
                    fh.write(f"StartError: {exc}\n")
                exit_code, reason, message = 128, "StartError", str(exc)
                break
            run.proc = proc
            container_started = _now()
            self._patch_status(
                run,
                {
                    "phase": "Running",
                    "hostIP": "127.0.0.1",
                    "hostIPs": [{"ip": "127.0.0.1"}],
                    "podIP": "127.0.0.1",
                    "podIPs": [{"ip": "127.0.0.1"}],
                    "startTime": started_at,
                    "conditions": self._conditions_for(True),
                    "containerStatuses": [
                        self._container_status(
                            container,
                            {"running": {"startedAt": container_started}},
                            restarts=restarts,
                            last=last_state,
                        )
                    ],
                },
            )
            reason = ""
            while proc.returncode is None:
                if run.stopping.is_set() or self._stop.is_set():
                    proc.stop(grace=run.grace)  # exit code decides: 0 after SIGTERM succeeds
                elif deadline is not None and time.monotonic() > deadline:
                    proc.stop(grace=run.grace)
                    reason, message = (
                        "DeadlineExceeded",
                        "Pod was active on the node longer than the specified deadline",
                    )
                else:
                    time.sleep(0.05)
            proc.stop(grace=0)  # closes the log and kills any leftover children
            code = proc.returncode or 0
            exit_code = code if code >= 0 else 128 - code  # killed by signal N: 128 + N
            reason = reason or ("Completed" if exit_code == 0 else "Error")
            restart = policy == "Always" or (policy == "OnFailure" and exit_code != 0)
            if not restart or reason == "DeadlineExceeded" or run.stopping.is_set():
                break
            last_state = {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason,
                    "startedAt": container_started,
                    "finishedAt": _now(),
                }
            }
            restarts += 1
            run.stopping.wait(min(10.0, 0.5 * 2**restarts))  # crash-loop back-off, shortened

        phase = "Succeeded" if exit_code == 0 and reason == "Completed" else "Failed"
        terminated = {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": started_at,
            "finishedAt": _now(),
        }
        fallback = container.termination_message_policy == "FallbackToLogsOnError"
        if not message and exit_code and fallback:
            message = _log_tail(run.log_path)
        if message:
            terminated["message"] = message
        status: dict[str, Any] = {
            "phase": phase,
            "conditions": self._conditions_for(False),
            "containerStatuses": [
                self._container_status(
                    container, {"terminated": terminated}, restarts=restarts, last=last_state
                )
            ],
        }
        if reason == "DeadlineExceeded":
            status.update(reason="DeadlineExceeded", message=message)
        if not argv:
            status.setdefault("startTime", started_at)
        self._patch_status(run, status)
        with self._lock:
            run.done = True
            finish = run.stopping.is_set() and not self._stop.is_set()
        if finish:
            self._finish_deletion(run.namespace, run.name, run.uid)
