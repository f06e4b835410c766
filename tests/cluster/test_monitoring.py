"""The chart's monitoring bundle: its alerts pass promtool's checks and each fires on a synthetic
series (tests/cluster/alerts_test.yaml); its objects render and lint; and a real Prometheus,
scraping the operator while real runs go to Succeeded, answers every dashboard query."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster.test_operator_e2e import TINY_IN_CLUSTER
from tests.infra.binaries import find_binaries, find_promtool
from tests.infra.controlplane import Kube
from tests.infra.fixtures import StartPrometheus
from tests.infra.node_agent import NodeAgent
from tests.support.cluster import (
    CHART,
    FULLNAME,
    TERMINAL,
    Cluster,
    helm_template,
    operator_run,
    running_operator,
    stub_run,
)

ALERTS_TEST = Path(__file__).with_name("alerts_test.yaml")
DASHBOARD = CHART / "files" / "dashboard.json"
ALL_ON = (
    "monitoring.serviceMonitor.enabled=true",
    "monitoring.prometheusRule.enabled=true",
    "monitoring.dashboard.enabled=true",
)
MONITORING_KINDS = {"ServiceMonitor", "PrometheusRule", "ConfigMap"}


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in docs if doc["kind"] in MONITORING_KINDS}


def rendered_rules(tmp_path: Path, *sets: str) -> dict[str, Any]:
    """The rule groups of the chart's PrometheusRule, as a Prometheus rules file holds them."""
    docs = helm_template(tmp_path, "ops", "monitoring.prometheusRule.enabled=true", *sets)
    return by_kind(docs)["PrometheusRule"]["spec"]


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(find_promtool()), *args], capture_output=True, text=True, cwd=cwd, timeout=60
    )


# ------------------------------------------------------------------------------------ alerts
def test_alerts_pass_promtool_and_each_fires_on_a_synthetic_series(tmp_path: Path) -> None:
    rules = rendered_rules(tmp_path)
    (tmp_path / "alerts.yaml").write_text(yaml.safe_dump(rules, sort_keys=False))
    shutil.copy(ALERTS_TEST, tmp_path / ALERTS_TEST.name)

    check = promtool("check", "rules", "alerts.yaml", cwd=tmp_path)
    assert check.returncode == 0 and "SUCCESS: 5 rules found" in check.stdout, check
    tested = promtool("test", "rules", ALERTS_TEST.name, cwd=tmp_path)
    assert tested.returncode == 0 and "SUCCESS" in tested.stdout, tested.stdout + tested.stderr

    alerts = {rule["alert"] for group in rules["groups"] for rule in group["rules"]}
    assert alerts == {
        "SoarRunFailed",
        "SoarRunStalled",
        "SoarStageRetrying",
        "SoarNoPromotion",
        "SoarOperatorDown",
    }
    cases = yaml.safe_load(ALERTS_TEST.read_text())["tests"]
    checks = [check for case in cases for check in case["alert_rule_test"]]
    fired = {check["alertname"] for check in checks if check["exp_alerts"]}
    quiet = {check["alertname"] for check in checks if not check["exp_alerts"]}
    assert fired == alerts and quiet == alerts  # each fires once, and stays quiet once


def test_alert_thresholds_come_from_the_values(tmp_path: Path) -> None:
    rules = rendered_rules(
        tmp_path,
        "monitoring.prometheusRule.stalledMinutes=90",
        "monitoring.prometheusRule.noPromotionSteps=7",
        "monitoring.prometheusRule.operatorDownMinutes=2",
    )
    by_name = {rule["alert"]: rule for group in rules["groups"] for rule in group["rules"]}
    assert ") > 5400\n" in by_name["SoarRunStalled"]["expr"]
    assert "soar_run_last_promotion_step >= 7\n" in by_name["SoarNoPromotion"]["expr"]
    assert by_name["SoarOperatorDown"]["for"] == "2m"


# ------------------------------------------------------------------------------------- chart
def test_monitoring_objects_render_only_when_enabled(tmp_path: Path) -> None:
    assert by_kind(helm_template(tmp_path, "ops")) == {}
    docs = helm_template(
        tmp_path,
        "ops",
        *ALL_ON,
        "monitoring.serviceMonitor.labels.release=kps",
        "monitoring.dashboard.namespace=grafana",
        "monitoring.dashboard.annotations.grafana_folder=SOAR",
    )
    objects = by_kind(docs)
    (service,) = [doc for doc in docs if doc["kind"] == "Service"]

    monitor = objects["ServiceMonitor"]
    assert monitor["metadata"]["labels"]["release"] == "kps"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == service["spec"]["ports"][0]["name"] == "metrics"
    assert endpoint["honorLabels"] is True  # the runs' namespace label is kept
    # job="soar-operator", which the alerts and the dashboard select
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "soar-operator"

    dashboard = objects["ConfigMap"]
    assert dashboard["metadata"]["name"] == f"{FULLNAME}-dashboard"
    assert dashboard["metadata"]["namespace"] == "grafana"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert dashboard["metadata"]["annotations"] == {"grafana_folder": "SOAR"}
    assert json.loads(dashboard["data"]["soar-runs.json"]) == json.loads(DASHBOARD.read_text())


def test_the_chart_lints_strictly_with_monitoring_on(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    args = [str(find_binaries().helm), "lint", "--strict", str(CHART)]
    for value in ALL_ON:
        args += ["--set", value]
    lint = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert lint.returncode == 0 and "0 chart(s) failed" in lint.stdout, lint.stdout + lint.stderr


# --------------------------------------------------------------------------------- dashboard
def panel_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target of every panel."""
    board = json.loads(DASHBOARD.read_text())
    return [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]


def substitute(expr: str, namespace: str, runs: list[str]) -> str:
    """What Grafana sends: a multi-value $run becomes a regex alternation."""
    values = {
        "$namespace": namespace,
        "$run": "|".join(runs),
        "$__rate_interval": "30s",
    }
    for name, value in values.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, expr
    return expr


def range_query(url: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 2})
    with urllib.request.urlopen(f"{url}/api/v1/query_range?{query}", timeout=10) as resp:
        body = json.load(resp)
    assert body["status"] == "success", body
    return body["data"]["result"]


def has_data(result: list[dict[str, Any]]) -> bool:
    """A panel shows something: some point of some series is a number."""
    return any(not math.isnan(float(v)) for series in result for _, v in series["values"])


def value(prom: Any, expr: str) -> float:
    (sample,) = prom.query(expr)
    return float(sample["value"][1])


@pytest.mark.slow
def test_every_dashboard_query_gets_data_from_real_runs(
    kube: Kube,
    node_agent: NodeAgent,
    namespace: str,
    prometheus: StartPrometheus,
    tmp_path: Path,
) -> None:
    # tiny: the real stages on the tiny model (rewards, Vendi, pass@k); flaky: the stub, whose
    # baseline of step 1 fails once after 3 s, so a stage is retried.
    tiny = operator_run("tiny", tmp_path / "tiny", TINY_IN_CLUSTER)
    flaky = stub_run("flaky", tmp_path, {"1/baseline": {"fail": 1, "sleep": 3}})
    cluster = Cluster(kube, namespace)
    try:
        with running_operator(kube, namespace, tmp_path / "operator") as operator:
            prom = prometheus([f"127.0.0.1:{operator.metrics_port}"], job="soar-operator")
            start = time.time()
            cluster.apply(tiny)
            cluster.apply(flaky)
            for name in ("flaky", "tiny"):
                status = cluster.wait_phase(name, *TERMINAL, timeout=900)
                assert status["phase"] == "Succeeded", status
            selector = f'namespace="{namespace}", phase="Succeeded"'
            prom.query(f"soar_run_phase{{{selector}}} == 1", until=lambda r: len(r) == 2)
            end = time.time()

            queries = [
                (title, substitute(expr, namespace, ["flaky", "tiny"]))
                for title, expr in panel_queries()
            ]
            empty = [
                (title, expr)
                for title, expr in queries
                if not has_data(range_query(prom.url, expr, start, end))
            ]
            assert empty == [], empty

            runs = f'namespace="{namespace}"'
            failed = f'soar_run_stage_failures_total{{{runs}, run="flaky", stage="baseline"}}'
            assert value(prom, failed) == 1
            attempts = f'max_over_time(soar_run_attempt{{{runs}, run="flaky"}}[1h])'
            assert value(prom, attempts) == 2
            stages = f'soar_run_stage_duration_seconds_count{{{runs}, run="tiny"}}'
            assert {series["metric"]["stage"] for series in prom.query(stages)} == {
                "prepare",
                "teacher-generate",
                "baseline",
                "student",
                "teacher-update",
                "evaluate",
            }
            assert value(prom, f'soar_run_vendi{{{runs}, run="tiny"}}') > 1
    finally:
        cluster.close()
