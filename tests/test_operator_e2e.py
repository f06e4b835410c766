"""End to end: a tiny SoarRun (the tiny CPU model on the arith domain) goes from `kubectl apply`
to Succeeded through real Jobs running the real `soar stage` commands, and decides exactly what
`soar run` decides on the same manifest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.infra.controlplane import Kube
from tests.infra.node_agent import NodeAgent
from tests.operator_harness import TERMINAL, Cluster, condition, running_operator, soarrun

TINY = {
    "steps": 1,
    "seed": 3,
    "model": {"name": "tiny-arith"},
    "data": {"domain": "arith", "builtin": "arith", "poolSize": 60, "failK": 8},
    "teacher": {
        "datasets": 2,
        "questionsPerDataset": 4,
        "maxNewTokens": 48,
        "learningRate": 1e-4,
        "warmupSteps": 0,
    },
    "student": {
        "repeats": 2,
        "innerSteps": 2,
        "extraStepsAfterPromotion": 1,
        "batchQuestions": 2,
        "groupSize": 4,
        "maxNewTokens": 48,
        "learningRate": 1e-4,
    },
    "reward": {"questions": 8},
    "promotion": {"threshold": -1.0, "window": 1},
    "evaluation": {"every": 1, "samples": 4, "ks": [1, 4], "maxProblems": 8},
    "execution": {"parallelism": 2, "threadsPerStage": 1},
    # Two student pods at a time, as `soar run` runs two stages at a time: the machine is small.
    "pods": {"student": {"parallelism": 2}},
    "retries": {"limit": 1, "backoffSeconds": 1},
}


def decisions(store: Path) -> dict[str, str]:
    """Everything a run decides, without timings: step records, evaluations, PQ."""
    files = sorted(store.glob("steps/*/record.json")) + sorted(store.glob("eval/*.json"))
    files += [store / "pq.jsonl"] if (store / "pq.jsonl").exists() else []
    return {str(p.relative_to(store)): p.read_text() for p in files}


@pytest.mark.slow
def test_tiny_run_through_jobs_decides_like_soar_run(
    kube: Kube, node_agent: NodeAgent, namespace: str, tmp_path: Path
) -> None:
    local = soarrun("tiny", tmp_path / "local", TINY)
    manifest = tmp_path / "tiny.yaml"
    manifest.write_text(yaml.safe_dump(local))
    reference = subprocess.Popen(
        [sys.executable, "-m", "soar", "run", str(manifest)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    in_cluster = soarrun("tiny", tmp_path / "cluster", TINY)
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
        cluster_decisions = decisions(tmp_path / "cluster")
        assert "steps/1/record.json" in cluster_decisions
        assert cluster_decisions == decisions(tmp_path / "local")
    finally:
        reference.kill()
        cluster.close()
