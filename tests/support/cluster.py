"""The operator under test, installed the way the Helm chart installs it, and admin-side reads.

The chart's CRDs are applied once per control plane; each test namespace gets the chart's RBAC
objects (rendered by `helm template`, applied by the admin) and the operator runs as a subprocess
(`python -m soar_operator`) with a token of the chart's ServiceAccount: least privilege, not
cluster admin. Stages run for real through the Job controller and the node agent, either the real
`soar stage` or the stub (tests/support/operator_stub.py), which takes a fraction of a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import watch

from soar.contract import (
    GROUP,
    KIND,
    LABEL_ATTEMPT,
    LABEL_RUN,
    LABEL_STAGE,
    LABEL_STEP,
    PLURAL,
    VERSION,
    Phase,
)
from tests.infra.binaries import REPO_ROOT, find_binaries
from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.infra.processes import ManagedProcess, free_port, wait_until
from tests.support import operator_stub
from tests.support.manifests import SMALL, merge, soarrun

CHART = REPO_ROOT / "charts" / "soar-operator"
RELEASE = "t"
FULLNAME = f"{RELEASE}-soar-operator"
WORKER_IMAGE = "registry.invalid/soar/worker:test"
NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "KopfPeering"}
TERMINAL = tuple(phase for phase in Phase if phase.terminal)
# The operator's runs: SMALL with fast retries (1 s, 2 s, at most 4 s apart).
OPERATOR_RUN = merge(SMALL, {"retries": {"limit": 2, "backoffSeconds": 1, "maxBackoffSeconds": 4}})

_crds_installed: set[str] = set()


# ------------------------------------------------------------------------------ namespaces, helm
@contextlib.contextmanager
def fresh_namespace(kube: Kube, prefix: str = "t-") -> Iterator[str]:
    """A new namespace whose default ServiceAccount exists (pods are admitted); deleted after."""
    with kube.api_client() as api:
        core = k8s.CoreV1Api(api)
        ns = core.create_namespace({"metadata": {"generateName": prefix}}).metadata.name
        wait_until(
            lambda: core.read_namespaced_service_account("default", ns),
            timeout=30,
            what=f"ServiceAccount {ns}/default",
        )
        try:
            yield ns
        finally:
            try:
                core.delete_namespace(ns)
            except k8s.ApiException as exc:
                if exc.status != 404:
                    raise


def helm_render(
    chart: Path, release: str, namespace: str, tmp: Path, *sets: str, check: bool = True
) -> subprocess.CompletedProcess[str]:
    """`helm template` with the built helm, its state under `tmp`, nothing from the user's."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp)}
    for kind in ("CACHE", "CONFIG", "DATA"):
        env[f"HELM_{kind}_HOME"] = str(tmp / f"helm-{kind.lower()}")
    args = [str(find_binaries().helm), "template", release, str(chart), "--namespace", namespace]
    for value in sets:
        args += ["--set", value]
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=60, check=check)


def helm_template(tmp: Path, namespace: str, *sets: str) -> list[dict[str, Any]]:
    """The soar-operator chart's objects, rendered for `namespace`."""
    out = helm_render(CHART, RELEASE, namespace, tmp, *sets)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def install_crds(kube: Kube) -> None:
    """The chart's crds/ (SoarRun, kopf peering), once per control plane."""
    if kube.server in _crds_installed:
        return
    kube.kubectl("apply", "-f", str(CHART / "crds"))
    for name in (f"{PLURAL}.{GROUP}", "kopfpeerings.kopf.dev", "clusterkopfpeerings.kopf.dev"):
        # kubectl wait fails outright while the CRD has no conditions at all yet.
        wait = ("wait", "--for=condition=Established", f"crd/{name}", "--timeout=10s")
        wait_until(
            lambda w=wait: kube.kubectl(*w, check=False).returncode == 0,
            timeout=60,
            what=f"CRD {name} established",
        )
    _crds_installed.add(kube.server)


def install_rbac(kube: Kube, namespace: str, tmp: Path) -> Path:
    """The chart's namespaced objects for an operator serving `namespace`; returns a kubeconfig
    with a token of its ServiceAccount."""
    docs = helm_template(tmp, namespace, f"watchNamespaces={{{namespace}}}")
    objects = [doc for doc in docs if doc["kind"] in NAMESPACED_KINDS]
    kube.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(objects))
    return kube.service_account_kubeconfig(namespace, FULLNAME)


# ------------------------------------------------------------------------------------ operator
class Operator:
    """`python -m soar_operator` serving one namespace, with the chart's identity."""

    def __init__(self, namespace: str, kubeconfig: Path, log_dir: Path, **env: str) -> None:
        self.namespace = namespace
        self.log_dir = log_dir
        self.metrics_port, self.health_port = free_port(), free_port()
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "KUBECONFIG"},
            "KUBECONFIG": str(kubeconfig),
            "SOAR_WATCH_NAMESPACES": namespace,
            "SOAR_OPERATOR_INTERVAL": "0.5",
            "SOAR_METRICS_PORT": str(self.metrics_port),
            "SOAR_HEALTH_PORT": str(self.health_port),
            "SOAR_WORKER_IMAGE": WORKER_IMAGE,
            "SOAR_PEERING": FULLNAME,
            **env,
        }
        self.proc: ManagedProcess | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.proc = ManagedProcess(
            "soar-operator",
            [sys.executable, "-m", "soar_operator"],
            self.log_dir / f"operator-{self.starts}.log",
            env=self.env,
            cwd=REPO_ROOT,
        )

    def kill(self) -> None:
        """SIGKILL: no clean-up of any kind, as when a node dies."""
        assert self.proc is not None
        self.proc.signal_group(signal.SIGKILL)
        self.proc.stop(grace=5)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop(grace=10)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def get(self, port: int, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.read().decode()

    def metrics(self) -> str:
        return self.get(self.metrics_port, "/metrics")

    def healthy(self) -> bool:
        return json.loads(self.get(self.health_port, "/healthz")) is not None

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until(self.healthy, timeout=timeout, what="the operator's /healthz", alive=self.proc)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob("operator-*.log"))
        )


@contextlib.contextmanager
def running_operator(kube: Kube, namespace: str, tmp: Path, **env: str) -> Iterator[Operator]:
    install_crds(kube)
    kubeconfig = install_rbac(kube, namespace, tmp)
    operator = Operator(namespace, kubeconfig, tmp / "operator-logs", **env)
    operator.start()
    try:
        operator.wait_ready()
        yield operator
    finally:
        # While the operator still runs, it lifts kopf's finalizer off the runs it sees deleted,
        # so the namespace can go afterwards.
        if operator.alive:
            kube.kubectl("delete", PLURAL, "--all", "-n", namespace, "--timeout=30s", check=False)
        operator.stop()


# ------------------------------------------------------------------------------------- runs
def operator_run(
    name: str, store: Path, spec: Mapping[str, Any] | None = None, **metadata: Any
) -> dict[str, Any]:
    """A run for the operator (OPERATOR_RUN with `spec` merged in) whose store is `store`."""
    fields = merge(merge(OPERATOR_RUN, {"storage": {"uri": store.as_uri()}}), spec or {})
    return soarrun(name, fields, metadata=metadata)


def stub_bin(folder: Path) -> Path:
    """A folder whose `soar` runs the stub; put it first on the pods' PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "soar"
    content = f'#!/bin/sh\nexec {sys.executable} -m {operator_stub.__name__} "$@"\n'
    if not script.exists() or script.read_text() != content:  # rewriting a running one: ETXTBSY
        script.write_text(content)
        script.chmod(0o755)
    return folder


def stub_run(
    name: str,
    tmp: Path,
    stub: Mapping[str, Any] | None = None,
    spec: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A run whose stages are the stub, with `stub` written as its behaviour."""
    store = tmp / "stores" / name
    store.mkdir(parents=True, exist_ok=True)
    (store / operator_stub.RULES).write_text(json.dumps(stub or {}))
    path = f"{stub_bin(tmp / 'stub-bin')}:/usr/bin:/bin"
    pods = {"pods": {"default": {"env": [{"name": "PATH", "value": path}]}}}
    return operator_run(name, store, merge(pods, spec or {}))


def store_of(run: Mapping[str, Any]) -> Path:
    return Path(run["spec"]["storage"]["uri"][len("file://") :])


def stage_runs(run: Mapping[str, Any]) -> dict[str, int]:
    """How many times the stub ran each stage key."""
    root = store_of(run) / operator_stub.RUNS
    return {
        str(d.relative_to(root)): len(list(d.iterdir()))
        for d in sorted(root.rglob("*"))
        if d.is_dir() and not any(p.is_dir() for p in d.iterdir())
    }


# ------------------------------------------------------------------------------ cluster reads
class Cluster:
    """Admin-side reads and writes on one namespace, for assertions."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.api = kube.api_client()
        self.custom = k8s.CustomObjectsApi(self.api)
        self.batch = k8s.BatchV1Api(self.api)
        self.core = k8s.CoreV1Api(self.api)

    def close(self) -> None:
        self.api.close()

    def apply(self, doc: dict[str, Any]) -> None:
        self.kube.kubectl("apply", "-n", self.namespace, "-f", "-", input=yaml.safe_dump(doc))

    def run(self, name: str) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name
        )

    def patch_spec(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": spec}
        )

    def delete_run(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)

    def status(self, name: str) -> dict[str, Any]:
        return self.run(name).get("status") or {}

    def wait_status(
        self, name: str, check: Callable[[dict[str, Any]], Any], what: str, timeout: float = 120
    ) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            status = self.status(name)
            return status if check(status) else None

        return wait_until(probe, timeout=timeout, what=f"SoarRun {name}: {what}", interval=0.3)

    def wait_phase(self, name: str, *phases: str, timeout: float = 120) -> dict[str, Any]:
        return self.wait_status(
            name, lambda s: s.get("phase") in phases, f"phase in {phases}", timeout
        )

    def jobs(self, run: str) -> list[k8s.V1Job]:
        selector = f"{LABEL_RUN}={run}"
        items = self.batch.list_namespaced_job(self.namespace, label_selector=selector).items
        return sorted(items, key=lambda j: j.metadata.creation_timestamp)

    def job_names(self, run: str) -> list[str]:
        return [j.metadata.name for j in self.jobs(run)]

    def events(self, run: str) -> list[k8s.CoreV1Event]:
        selector = f"involvedObject.name={run},involvedObject.kind={KIND}"
        items = self.core.list_namespaced_event(self.namespace, field_selector=selector).items
        return sorted(items, key=lambda e: e.event_time or e.first_timestamp)

    def reasons(self, run: str) -> list[str]:
        return [e.reason for e in self.events(run)]

    def wait_events(self, run: str, last: str) -> list[k8s.CoreV1Event]:
        """The run's Events once one has reason `last` (Events are posted in the background)."""

        def arrived() -> list[k8s.CoreV1Event] | None:
            events = self.events(run)
            return events if any(e.reason == last for e in events) else None

        return wait_until(arrived, timeout=15, what=f"a {last} Event for {run}")

    def wait_reasons(self, run: str, last: str) -> list[str]:
        return [e.reason for e in self.wait_events(run, last)]

    def pods(self, job: str) -> list[k8s.V1Pod]:
        selector = f"batch.kubernetes.io/job-name={job}"
        return self.core.list_namespaced_pod(self.namespace, label_selector=selector).items


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions", []) if c["type"] == kind)


JOB_KEY_LABELS = (LABEL_RUN, LABEL_STEP, LABEL_STAGE, LABEL_ATTEMPT)


class JobRecorder:
    """Every Job created in a namespace while it runs, from a watch: a Job deleted and created
    again under the same name shows up as two uids."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.uids: dict[tuple[str, ...], set[str]] = {}  # (run, step, stage, attempt) -> uids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="job-recorder", daemon=True)

    def __enter__(self) -> JobRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        with self.kube.api_client() as api:
            batch = k8s.BatchV1Api(api)
            version = None
            while not self._stop.is_set():
                try:
                    for event in watch.Watch().stream(
                        batch.list_namespaced_job,
                        self.namespace,
                        resource_version=version,
                        timeout_seconds=1,
                    ):
                        job = event["object"]
                        version = job.metadata.resource_version
                        labels = job.metadata.labels or {}
                        key = tuple(labels.get(label, "") for label in JOB_KEY_LABELS)
                        self.uids.setdefault(key, set()).add(job.metadata.uid)
                except k8s.ApiException as err:
                    if err.status != 410:
                        raise
                    version = None


# ------------------------------------------------------------------ fixtures of tests/cluster
# Module-scoped: the operator test files share a namespace, a running operator and a client for
# the runs in that namespace. A test file that needs another operator (other settings, other
# namespace) defines its own fixture of the same name.
@pytest.fixture(scope="module")
def ns(kube: Kube, node_agent: NodeAgent) -> Iterator[str]:
    with fresh_namespace(kube, "op-") as namespace:
        yield namespace


@pytest.fixture(scope="module")
def operator(kube: Kube, ns: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    with running_operator(kube, ns, tmp_path_factory.mktemp("operator")) as op:
        yield op


@pytest.fixture(scope="module")
def cluster(kube: Kube, ns: str, operator: Operator) -> Iterator[Cluster]:
    c = Cluster(kube, ns)
    yield c
    c.close()
