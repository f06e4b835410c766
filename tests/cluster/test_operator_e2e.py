"""End to end: a tiny SoarRun (the tiny CPU model on the arith domain) goes from `kubectl apply`
to Succeeded through real Jobs running the real `soar stage` commands, and decides exactly what
`soar run` decides on the same manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from soar import layout
from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.support.cluster import TERMINAL, Cluster, condition, operator_run, running_operator
from tests.support.manifests import TINY, decisions, merge, write_manifest

# The tiny run of `soar run`'s tests, one step; two student pods at a time, as `soar run` runs
# two stages at a time: the machine is small.
TINY_IN_CLUSTER = merge(
    TINY,
    {
        "steps": 1,
        "model": {"name": "tiny-arith"},
        "teacher": {"maxNewTokens": 48},
        "student": {"maxNewTokens": 48},
        "execution": {"threadsPerStage": 1},
        "pods": {"student": {"parallelism": 2}},
        "retries": {"limit": 1, "backoffSeconds": 1},
    },
)


@pytest.mark.slow
def test_tiny_run_through_jobs_decides_like_soar_run(
    kube: Kube, node_agent: NodeAgent, namespace: str, tmp_path: Path
) -> None:
    local = operator_run("tiny", tmp_path / "local", TINY_IN_CLUSTER)
    manifest = write_manifest(tmp_path, local, "tiny.yaml")
    reference = subprocess.Popen(
        [sys.executable, "-m", "soar", "run", str(manifest)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    in_cluster = operator_run("tiny", tmp_path / "cluster", TINY_IN_CLUSTER)
    cluster = Cluster(kube, namespace)
    try:
        with running_operator(kube, namespace, tmp_path / "operator"):
            cluster.apply(in_cluster)
            status = cluster.wait_phase("tiny", *TERMINAL, timeout=900)
        output, _ = reference.communicate(timeout=900)
        assert reference.returncode == 0, output
        assert status["phase"] == "Succeeded", status
        assert condition(status, "CheckpointAvailable")["status"] == "True"
        assert status["progress"] == "1/1" and set(status["passAtK"]) == {"1", "4"}
        cluster_decisions = decisions(tmp_path / "cluster", 1)
        assert layout.step_record(1) in cluster_decisions
        assert cluster_decisions == decisions(tmp_path / "local", 1)
    finally:
        reference.kill()
        cluster.close()
