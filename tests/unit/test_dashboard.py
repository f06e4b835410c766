"""The chart's Grafana dashboard is what tools/dashboard/soar_dashboard.py builds, and each panel
asks something (tests/cluster/test_monitoring.py checks that every query gets data)."""

import json

from tools.dashboard import soar_dashboard


def test_the_committed_dashboard_is_the_generated_one() -> None:
    committed = soar_dashboard.OUTPUT.read_text()
    assert committed == soar_dashboard.render(), (
        f"{soar_dashboard.OUTPUT} is out of date or was edited by hand: run "
        ".venv/bin/python tools/dashboard/soar_dashboard.py"
    )


def test_every_panel_has_a_query_and_a_unique_id() -> None:
    board = json.loads(soar_dashboard.OUTPUT.read_text())
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert len(panels) >= 14
    assert [p["title"] for p in panels if not p.get("targets")] == []
    assert all(t["expr"] and t["refId"] for p in panels for t in p["targets"])
    ids = [p["id"] for p in board["panels"]]
    assert len(set(ids)) == len(ids)


def test_runs_are_chosen_by_namespace_and_run() -> None:
    board = json.loads(soar_dashboard.OUTPUT.read_text())
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert list(variables) == ["datasource", "namespace", "run"]
    assert variables["run"]["multi"] and variables["run"]["includeAll"]
    queries = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    per_run = [q for q in queries if "soar_run_" in q]
    assert all('namespace="$namespace", run=~"$run"' in q for q in per_run)
