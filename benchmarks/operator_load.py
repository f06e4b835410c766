"""Operator load: N concurrent SoarRuns on a real control plane, the operator's API requests per
stage transition (from the API server's audit log: every request of the operator's identity,
kopf's included) and its reconcile latency (from its own histogram).

Stages are the test stub (tests/support/operator_stub.py), so the numbers are the operator's, not
the model's. A stage transition is one Job created.

    python benchmarks/operator_load.py [--runs 20] [--steps 1] [--interval 5]
"""

import argparse
import collections
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.infra.binaries import find_binaries  # noqa: E402
from tests.infra.controlplane import ControlPlane, Kube  # noqa: E402
from tests.infra.node_agent import NodeAgent  # noqa: E402
from tests.infra.processes import wait_until  # noqa: E402
from tests.support.cluster import (  # noqa: E402
    FULLNAME,
    Cluster,
    Operator,
    install_crds,
    install_rbac,
    stub_run,
)

NAMESPACE = "soar-bench"
OPERATOR_USER = f"system:serviceaccount:{NAMESPACE}:{FULLNAME}"


class AuditedControlPlane(ControlPlane):
    """The test control plane with an audit log of the operator's requests."""

    def _spawn(self, name, argv, env=None):
        if name == "kube-apiserver":
            policy = self.workdir / "audit-policy.yaml"
            rules = [{"level": "Metadata", "users": [OPERATOR_USER]}, {"level": "None"}]
            policy.write_text(
                json.dumps(
                    {
                        "apiVersion": "audit.k8s.io/v1",
                        "kind": "Policy",
                        "omitStages": ["RequestReceived", "ResponseStarted"],
                        "rules": rules,
                    }
                )
            )
            argv = [
                *argv,
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
            ]
        return super()._spawn(name, argv, env)

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"


def audited_requests(path: Path, since: float) -> collections.Counter:
    """The operator's requests after `since`, by 'verb resource[/subresource]'."""
    counts = collections.Counter()
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        if dt.datetime.fromisoformat(entry["requestReceivedTimestamp"]).timestamp() < since:
            continue
        ref = entry.get("objectRef") or {}
        resource = ref.get("resource", entry["requestURI"])
        if ref.get("subresource"):
            resource += "/" + ref["subresource"]
        counts[f"{entry['verb']} {resource}"] += 1
    return counts


def quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """histogram_quantile: linear interpolation inside the bucket holding the q-th observation."""
    total = buckets[-1][1]
    rank, lower, below = q * total, 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower
            return lower + (upper - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = upper, count
    return lower


def histograms(metrics: str, name: str, label: str) -> dict[str, list[tuple[float, float]]]:
    """Cumulative buckets of a histogram by one label's value, and summed under 'all'."""
    out: dict[str, dict[float, float]] = collections.defaultdict(dict)
    for family in text_string_to_metric_families(metrics):
        if family.name != name:
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket"):
                le = float(sample.labels["le"])
                for key in (sample.labels[label], "all"):
                    out[key][le] = out[key].get(le, 0.0) + sample.value
    return {key: sorted(buckets.items()) for key, buckets in out.items()}


def latency_line(what: str, buckets: list[tuple[float, float]]) -> str:
    p50, p90, p99 = (quantile(buckets, q) * 1000 for q in (0.5, 0.9, 0.99))
    count = buckets[-1][1]
    return f"  {what:<24} n={count:5.0f}  p50 {p50:7.1f} ms  p90 {p90:7.1f} ms  p99 {p99:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=1)
    parser.add_argument("--interval", type=float, default=5.0, help="reconcile interval (s)")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="soar-operator-load-"))
    plane = AuditedControlPlane(find_binaries(), tmp / "k8s")
    plane.start()
    kube = Kube(plane)
    agent = NodeAgent(kube.kubeconfig, tmp / "pod-logs")
    agent.start()
    try:
        kube.kubectl("create", "namespace", NAMESPACE)
        wait_until(
            lambda: (
                kube.kubectl("get", "sa", "default", "-n", NAMESPACE, check=False).returncode == 0
            ),
            timeout=30,
            what="the default ServiceAccount",
        )
        install_crds(kube)
        kubeconfig = install_rbac(kube, NAMESPACE, tmp)
        operator = Operator(
            NAMESPACE, kubeconfig, tmp / "operator", SOAR_OPERATOR_INTERVAL=str(args.interval)
        )
        operator.start()
        operator.wait_ready()
        cluster = Cluster(kube, NAMESPACE)
        time.sleep(2)  # kopf's initial listings and watches are not per-transition costs
        since = time.time()
        names = [f"load-{i:02d}" for i in range(args.runs)]
        started = time.monotonic()
        for name in names:
            cluster.apply(stub_run(name, tmp, spec={"steps": args.steps}))
        for name in names:
            status = cluster.wait_phase(name, "Succeeded", "Failed", timeout=1800)
            assert status["phase"] == "Succeeded", (name, status)
        elapsed = time.monotonic() - started
        time.sleep(3)  # the last Events and status patches
        requests = audited_requests(plane.audit_log, since)
        jobs = sum(len(cluster.jobs(name)) for name in names)
        metrics = operator.metrics()
        operator.stop()
    finally:
        agent.stop()
        plane.stop()

    transitions = jobs
    print(f"{args.runs} runs x {args.steps} step(s), interval {args.interval} s: {elapsed:.0f} s")
    print(f"Jobs created (stage transitions): {transitions}")
    total = sum(requests.values())
    print(f"operator API requests: {total} = {total / transitions:.2f} per transition")
    for key, count in requests.most_common():
        print(f"  {key:<40} {count:6d}  {count / transitions:6.2f}/transition")
    print("reconcile latency (histogram_quantile over the operator's own histogram):")
    reconciles = histograms(metrics, "soar_operator_reconcile_duration_seconds", "kind")
    for kind in ("all", "noop", "write"):
        print(latency_line(kind, reconciles[kind]))
    print("its API requests (the reconciler's own: Jobs, status, pods):")
    api = histograms(metrics, "soar_operator_api_request_duration_seconds", "verb")
    for verb in sorted(api):
        print(latency_line(verb, api[verb]))


if __name__ == "__main__":
    main()
