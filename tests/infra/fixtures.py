"""pytest fixtures for the real parts: control plane, node agent, S3 (moto) and Prometheus.

The tiers' conftest.py import the fixtures they use (tests/integration: S3; tests/cluster: all,
and the hooks), so a unit run imports none of this. Everything heavy is session-scoped and
started on first use only, so a test run that touches no cluster starts none. When a binary is
missing the test fails (it is never skipped) and says how to build it.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path

import pytest
from kubernetes import client as k8s

from tests.infra.binaries import (
    BUILD_COMMAND,
    Binaries,
    MissingBinaries,
    find_binaries,
    find_prometheus,
)
from tests.infra.binaries import kubernetes_version as pinned_kubernetes_version
from tests.infra.controlplane import ControlPlane, Kube
from tests.infra.node_agent import NodeAgent
from tests.infra.processes import wait_until
from tests.infra.prometheus import PrometheusServer, start_prometheus
from tests.infra.s3 import S3Server, start_moto
from tests.support.cluster import fresh_namespace

_CLUSTER_FIXTURES = {"control_plane", "kube", "node_agent", "namespace"}


def pytest_report_header(config: pytest.Config) -> str:
    return f"soar test infra: kubernetes {pinned_kubernetes_version()} (build: {BUILD_COMMAND})"


@pytest.fixture(scope="session")
def k8s_binaries() -> Binaries:
    """The built binaries; fails (never skips) with the build command when any is missing."""
    try:
        return find_binaries()
    except MissingBinaries as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture(scope="session")
def control_plane(
    k8s_binaries: Binaries, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """etcd, kube-apiserver, kube-controller-manager and kube-scheduler, ready, with KUBECONFIG
    (admin) exported and the built kubectl/helm first on PATH for the whole session."""
    plane = ControlPlane(k8s_binaries, tmp_path_factory.mktemp("k8s"))
    try:
        plane.start()
    except Exception as exc:
        pytest.fail(f"control plane did not start: {exc}\nlogs: {plane.log_dir}", pytrace=False)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(plane.admin_kubeconfig))
        mp.setenv("PATH", str(k8s_binaries.bin_dir), prepend=":")
        try:
            yield plane
        finally:
            plane.stop()


@pytest.fixture(scope="session")
def kube(control_plane: ControlPlane) -> Kube:
    """Admin kubeconfig and token, a restricted user, kubeconfigs for any token, kubectl."""
    return Kube(control_plane)


@pytest.fixture(scope="session")
def node_agent(kube: Kube, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeAgent]:
    """The fake GPU node (``nvidia.com/gpu: 2``), Ready, running its pods as local processes."""
    agent = NodeAgent(
        kube.kubeconfig,
        tmp_path_factory.mktemp("pod-logs"),
        kubelet_version=pinned_kubernetes_version(),
    )
    agent.start()
    try:
        with kube.api_client() as api:
            core = k8s.CoreV1Api(api)

            def schedulable() -> bool:
                node = core.read_node(agent.node_name)
                ready = any(
                    c.type == "Ready" and c.status == "True" for c in node.status.conditions or []
                )
                blocking = [t for t in node.spec.taints or [] if t.effect == "NoSchedule"]
                return ready and not blocking and bool(node.status.allocatable)

            wait_until(schedulable, timeout=30, what=f"node {agent.node_name} Ready, no taints")
        yield agent
    finally:
        agent.stop()


@pytest.fixture
def namespace(kube: Kube) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount exists (pods are admitted); deleted after."""
    with fresh_namespace(kube) as ns:
        yield ns


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    """moto's S3 server on loopback. While it runs, AWS_* variables (fake credentials and the
    endpoint) point this process's boto3 at it, so nothing can reach a real account."""
    log_path = tmp_path_factory.mktemp("moto") / "moto.log"
    server, proc = start_moto(log_path)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for key, value in server.env.items():
                mp.setenv(key, value)
            yield server
    finally:
        proc.stop()


StartPrometheus = Callable[..., PrometheusServer]


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    """Debian's prometheus, unpacked by the build; fails with the build command when absent."""
    try:
        return find_prometheus()
    except MissingBinaries as exc:
        message = str(exc)
    pytest.fail(message, pytrace=False)  # outside the except: no chained traceback


@pytest.fixture
def prometheus(prometheus_binary: Path, tmp_path: Path) -> Iterator[StartPrometheus]:
    """Factory: ``prometheus(["127.0.0.1:8000"], job="x")`` starts a Prometheus scraping those
    targets every second; all are stopped when the test ends."""
    started: list[PrometheusServer] = []

    def start(
        targets: Sequence[str], *, job: str = "test", metrics_path: str = "/metrics"
    ) -> PrometheusServer:
        workdir = tmp_path / f"prometheus-{len(started)}"
        server = start_prometheus(
            prometheus_binary, workdir, targets, job=job, metrics_path=metrics_path
        )
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in reversed(started):
            server.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On a failing cluster test, attach the tails of the component logs to the report."""
    report = yield
    if report.failed and _CLUSTER_FIXTURES & set(getattr(item, "fixturenames", ())):
        plane = _started_control_plane(item)
        if plane is not None:
            for proc in plane.processes:
                report.sections.append((f"{proc.name} log", _problems(proc.log_path)))
    return report


def _started_control_plane(item: pytest.Item) -> ControlPlane | None:
    funcargs = getattr(item, "funcargs", {})
    for name in ("control_plane", "kube", "node_agent"):
        value = funcargs.get(name)
        if isinstance(value, ControlPlane):
            return value
        if isinstance(value, Kube):
            return value.control_plane
    return None


def _problems(log_path: Path, lines: int = 15) -> str:
    """The last errors of a component log (klog E/F lines, etcd's JSON levels)."""
    try:
        text = log_path.read_text(errors="replace").splitlines()[-400:]
    except OSError:
        return f"(no log at {log_path})"
    picked = [
        line
        for line in text
        if line[:1] in ("E", "F") or '"level":"error"' in line or '"level":"fatal"' in line
    ]
    return "\n".join([f"full log: {log_path}", *picked[-lines:]])
