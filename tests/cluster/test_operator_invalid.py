"""Invalid SoarRuns: the API server rejects what the CRD schema and its CEL rules can see, the
operator marks the rest Failed with a one-line reason, and none of them disturbs the operator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from soar.manifest import parse_run
from soar.runstate import init_store
from soar.store import open_store
from tests.infra.processes import wait_until
from tests.support.cluster import (
    TERMINAL,
    Cluster,
    Operator,
    condition,
    operator_run,
    stub_run,
)

pytestmark = pytest.mark.slow

# (spec fields over a valid run, what the API server's error must say)
REJECTED = [
    ({"teacher": {"datasets": 1}}, "spec.teacher.datasets: Invalid value: 1"),
    ({"student": {"groupSize": 1}}, "spec.student.groupSize: Invalid value: 1"),
    ({"steps": 0}, "spec.steps: Invalid value: 0"),
    ({"steps": "ten"}, 'spec.steps: Invalid value: "string"'),
    ({"mode": "fast"}, 'spec.mode: Unsupported value: "fast"'),
    ({"teacher": {"dataset": 4}}, 'unknown field "spec.teacher.dataset"'),
    ({"data": {"domain": "arith"}}, "set builtin, or both hardTrain and hardTest"),
    (
        {"data": {"builtin": "arith", "hardTrain": "/a", "hardTest": "/b"}},
        "builtin and hardTrain/hardTest are exclusive",
    ),
    ({"evaluation": {"samples": 2, "ks": [1, 4]}}, "spec.evaluation.ks: Invalid value"),
    (
        {"mode": "hard-only", "reward": {"kind": "learnability"}},
        "reward.kind learnability needs mode soar",
    ),
    ({"storage": {"uri": "/tmp/x"}}, "spec.storage.uri: Invalid value"),
    ({"teacher": {"temperature": 0}}, "spec.teacher.temperature: Invalid value: 0"),
    ({"student": {"lora": {"dropout": 1.0}}}, "spec.student.lora.dropout: Invalid value: 1"),
    ({"retries": {"limit": -1}}, "spec.retries.limit: Invalid value: -1"),
    ({"retries": {"limit": 101}}, "spec.retries.limit: Invalid value: 101"),
    ({"activeDeadlineSeconds": 0}, "spec.activeDeadlineSeconds: Invalid value: 0"),
    ({"evaluation": {"ks": []}}, "spec.evaluation.ks: Invalid value"),
    ({"model": {"dtype": "int8"}}, 'spec.model.dtype: Unsupported value: "int8"'),
    ({"pods": {"student": {"parallelism": 0}}}, "spec.pods.student.parallelism: Invalid value: 0"),
    ({"suspend": "yes"}, 'spec.suspend: Invalid value: "string"'),
    ({"storage": {"secretRef": {}}}, "spec.storage.secretRef.name: Required value"),
]


def _with(doc: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """The run with these top-level spec fields replaced."""
    doc = json.loads(json.dumps(doc))
    doc["spec"].update(spec)
    return doc


@pytest.mark.parametrize(("spec", "expected"), REJECTED, ids=[e for _, e in REJECTED])
def test_the_api_server_rejects_what_the_schema_sees(
    cluster: Cluster, tmp_path: Path, spec: dict[str, Any], expected: str
) -> None:
    doc = _with(operator_run("rejected", tmp_path), spec)
    proc = cluster.kube.kubectl(
        "apply", "-n", cluster.namespace, "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert proc.returncode != 0, f"accepted: {spec}"
    assert expected in proc.stderr, proc.stderr


def test_a_run_without_spec_is_rejected(cluster: Cluster, tmp_path: Path) -> None:
    doc = operator_run("no-spec", tmp_path)
    del doc["spec"]
    proc = cluster.kube.kubectl(
        "apply", "-n", cluster.namespace, "-f", "-", input=yaml.safe_dump(doc), check=False
    )
    assert proc.returncode != 0 and "spec: Required value" in proc.stderr, proc.stderr


def _spec_changed(tmp_path: Path) -> dict[str, Any]:
    """A store that already holds a run with other algorithm settings."""
    doc = stub_run("changed", tmp_path)
    other = _with(doc, {"steps": 5})
    store = open_store(doc["spec"]["storage"]["uri"])
    init_store(store, parse_run(other), Path("/"))
    return doc


def _too_long(tmp_path: Path) -> dict[str, Any]:
    return stub_run("a-run-name-that-is-longer-than-the-fifty-two-characters", tmp_path)


FAILED = [
    (
        "no-store",
        lambda tmp: _with(stub_run("no-store", tmp), {"storage": {}}),
        "InvalidSpec",
        "spec.storage.uri: required in-cluster",
    ),
    (
        "relative-data",
        lambda tmp: _with(
            stub_run("relative-data", tmp),
            {"data": {"domain": "arith", "hardTrain": "data/train.jsonl", "hardTest": "/t.jsonl"}},
        ),
        "InvalidSpec",
        "spec.data.hardTrain: must be an absolute path or a URI in-cluster",
    ),
    (
        "a-run-name-that-is-longer-than-the-fifty-two-characters",
        _too_long,
        "InvalidSpec",
        "metadata.name 'a-run-name-that-is-longer-than-the-fifty-two-characters': must be",
    ),
    (
        "no-image",
        lambda tmp: _with(stub_run("no-image", tmp), {"pods": {"default": {"image": ""}}}),
        "InvalidSpec",
        "spec.pods.prepare.image: required",
    ),
    ("changed", _spec_changed, "SpecChanged", "holds a run with different spec.steps"),
    (
        "bad-resources",
        lambda tmp: _with(
            stub_run("bad-resources", tmp), {"pods": {"default": {"resources": {"limits": 3}}}}
        ),
        "InvalidPodSettings",
        "pod settings of stage prepare (spec.pods.prepare, spec.pods.default): ",
    ),
    (
        "bad-toleration",
        lambda tmp: _with(
            stub_run("bad-toleration", tmp),
            {"pods": {"default": {"tolerations": [{"key": "gpu", "operator": "Maybe"}]}}},
        ),
        "InvalidPodSettings",
        'tolerations[0].operator: Unsupported value: "Maybe"',
    ),
]


@pytest.mark.parametrize(("name", "make", "reason", "message"), FAILED, ids=[f[0] for f in FAILED])
def test_the_operator_fails_what_only_it_can_see(
    cluster: Cluster, tmp_path: Path, name: str, make: Any, reason: str, message: str
) -> None:
    cluster.apply(make(tmp_path))
    status = cluster.wait_phase(name, *TERMINAL, timeout=60)
    failed = condition(status, "Failed")
    assert (status["phase"], failed["reason"]) == ("Failed", reason)
    assert failed["message"].startswith(message) or message in failed["message"], failed
    assert "\n" not in failed["message"]
    assert cluster.job_names(name) == []
    warnings = wait_until(
        lambda: (
            [(e.reason, e.message) for e in cluster.events(name) if e.type == "Warning"] or None
        ),
        timeout=10,
        what="the Warning event",
    )
    assert warnings == [(reason, failed["message"])]


def test_the_operator_is_unharmed(cluster: Cluster, operator: Operator, tmp_path: Path) -> None:
    """Runs after the invalid ones (file order): the operator still runs a valid run."""
    cluster.apply(stub_run("valid", tmp_path, spec={"steps": 1}))
    assert cluster.wait_phase("valid", *TERMINAL)["phase"] == "Succeeded"
    assert operator.alive and operator.starts == 1
    assert "Traceback" not in operator.log()
    assert 'soar_operator_reconciles_total{result="error"}' not in operator.metrics()
