"""The Grafana dashboard of SOAR runs, built with grafana-foundation-sdk (dashboards as code).

    .venv/bin/python tools/dashboard/soar_dashboard.py

writes charts/soar-operator/files/dashboard.json, which the chart ships in a ConfigMap for
Grafana's dashboard sidecar (monitoring.dashboard.enabled). Never edit that JSON by hand:
tests/unit/test_dashboard.py checks that it is what this module builds. Metrics are described
in operator/soar_operator/metrics.py; the operator's own are selected by the job name its
ServiceMonitor gives them.
"""

import json
from pathlib import Path

from grafana_foundation_sdk.builders import dashboard, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.common import BigValueTextMode
from grafana_foundation_sdk.models.dashboard import (
    DataSourceRef,
    DynamicConfigValue,
    VariableRefresh,
    VariableSort,
)

OUTPUT = (
    Path(__file__).resolve().parents[2] / "charts" / "soar-operator" / "files" / "dashboard.json"
)
UID = "soar-runs"
DATASOURCE = DataSourceRef(type_val="prometheus", uid="${datasource}")
RUNS = 'namespace="$namespace", run=~"$run"'
OPERATOR = 'job="soar-operator"'  # the ServiceMonitor's jobLabel: app.kubernetes.io/name
RATE = "$__rate_interval"
Query = tuple[str, str]  # (PromQL, legend)


def variables() -> list[dashboard.QueryVariable | dashboard.DatasourceVariable]:
    """Data source, namespace, then the runs of that namespace (several at once)."""
    runs = 'label_values(soar_run_phase{namespace="$namespace"}, run)'
    return [
        dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        dashboard.QueryVariable("namespace")
        .label("Namespace")
        .datasource(DATASOURCE)
        .query("label_values(soar_run_phase, namespace)")
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC),
        dashboard.QueryVariable("run")
        .label("Run")
        .datasource(DATASOURCE)
        .query(runs)
        .refresh(VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True),
    ]


def targets(queries: list[Query]) -> list[prometheus.Dataquery]:
    return [
        prometheus.Dataquery().expr(expr).legend_format(legend).ref_id(chr(ord("A") + i))
        for i, (expr, legend) in enumerate(queries)
    ]


def graph(title: str, about: str, unit: str, queries: list[Query]) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(about)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(targets(queries))
        .height(8)
        .span(8)
    )


def big_value(
    title: str, about: str, unit: str, query: Query, text: BigValueTextMode
) -> stat.Panel:
    return (
        stat.Panel()
        .title(title)
        .description(about)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(targets([query]))
        .text_mode(text)
        .height(8)
        .span(8)
    )


def dashed(panel: timeseries.Panel, ref_id: str) -> timeseries.Panel:
    """Draw one query's series as a dashed line (a threshold, not a measurement)."""
    style = DynamicConfigValue("custom.lineStyle", {"fill": "dash", "dash": [10, 10]})
    return panel.override_by_query(ref_id, [style])


def run_panels() -> list[stat.Panel | timeseries.Panel]:
    return [
        big_value(
            "Progress",
            "Committed outer steps over T.",
            "percentunit",
            (f"soar_run_step{{{RUNS}}} / soar_run_steps{{{RUNS}}}", "{{run}}"),
            BigValueTextMode.VALUE_AND_NAME,
        ),
        big_value(
            "Phase",
            "Pending, Running, Suspended, Succeeded or Failed.",
            "none",
            (f"soar_run_phase{{{RUNS}}} == 1", "{{run}}: {{phase}}"),
            BigValueTextMode.NAME,
        ),
        graph(
            "Checkpoint age",
            "Time since the last step was committed and its checkpoint saved.",
            "s",
            [(f"time() - soar_run_last_step_timestamp_seconds{{{RUNS}}}", "{{run}}")],
        ),
    ]


def learning_panels() -> list[timeseries.Panel]:
    reward = graph(
        "Teacher reward",
        "R_hat of each step, its moving average, and the promotion threshold tau: the baseline "
        "is promoted when the moving average exceeds tau.",
        "none",
        [
            (f"soar_run_teacher_reward{{{RUNS}}}", "{{run}} reward"),
            (f"soar_run_reward_moving_average{{{RUNS}}}", "{{run}} moving average"),
            (f"soar_run_promotion_threshold{{{RUNS}}}", "{{run}} threshold"),
        ],
    )
    return [
        dashed(reward, "C"),
        graph(
            "Promotions",
            "Students promoted so far, and steps since the latest promotion.",
            "none",
            [
                (f"soar_run_promotions{{{RUNS}}}", "{{run}} promotions"),
                (
                    f"soar_run_step{{{RUNS}}} - soar_run_last_promotion_step{{{RUNS}}}",
                    "{{run}} steps since a promotion",
                ),
            ],
        ),
        graph(
            "Baseline accuracy",
            "Greedy accuracy of the baseline student on the reward questions Q_R, last step.",
            "percentunit",
            [(f"soar_run_baseline_accuracy{{{RUNS}}}", "{{run}}")],
        ),
        graph(
            "pass@k",
            "pass@k of the baseline student on the hard test split, latest evaluation.",
            "percentunit",
            [(f"soar_run_pass_at_k{{{RUNS}}}", "{{run}} pass@{{k}}")],
        ),
        graph(
            "Question diversity (Vendi)",
            "Vendi score of the last step's questions, standardised to evaluation.vendiQuestions.",
            "none",
            [(f"soar_run_vendi{{{RUNS}}}", "{{run}}")],
        ),
    ]


def mean_by_stage(histogram: str) -> str:
    return (
        f"sum by (stage) ({histogram}_sum{{{RUNS}}}) / sum by (stage) ({histogram}_count{{{RUNS}}})"
    )


def stage_panels() -> list[timeseries.Panel]:
    durations = "soar_run_stage_duration_seconds"
    p90 = f"histogram_quantile(0.9, sum by (stage, le) ({durations}_bucket{{{RUNS}}}))"
    return [
        graph(
            "Stage durations",
            "Seconds from a stage Job's start to its success, over the selected runs' Jobs.",
            "s",
            [(mean_by_stage(durations), "{{stage}} mean"), (p90, "{{stage}} p90")],
        ),
        graph(
            "Queue wait",
            "Seconds from a stage Job's creation to its start (held suspended by Kueue), and how "
            "long each run has been queued now.",
            "s",
            [
                (mean_by_stage("soar_run_stage_queue_wait_seconds"), "{{stage}} mean"),
                (f"soar_run_queued_seconds{{{RUNS}}}", "{{run}} queued now"),
            ],
        ),
        graph(
            "Retries and failures",
            "Attempt of the running stages (above 1: retrying), and failed attempts by stage.",
            "none",
            [
                (f"soar_run_attempt{{{RUNS}}}", "{{run}} attempt"),
                (
                    f"sum by (run, stage) (soar_run_stage_failures_total{{{RUNS}}})",
                    "{{run}} {{stage}} failed",
                ),
            ],
        ),
    ]


def operator_panels() -> list[timeseries.Panel]:
    latency = f"rate(soar_operator_reconcile_duration_seconds_bucket{{{OPERATOR}}}[{RATE}])"
    return [
        graph(
            "Operator up",
            "1 for each operator replica Prometheus scrapes (only the newest one acts).",
            "none",
            [(f"up{{{OPERATOR}}}", "{{instance}}")],
        ),
        graph(
            "Reconciles",
            "Reconcile passes per second by result, and passes that could not read a store.",
            "ops",
            [
                (
                    f"sum by (result) (rate(soar_operator_reconciles_total{{{OPERATOR}}}[{RATE}]))",
                    "{{result}}",
                ),
                (
                    f"sum(rate(soar_operator_store_errors_total{{{OPERATOR}}}[{RATE}]))",
                    "store errors",
                ),
            ],
        ),
        graph(
            "Reconcile latency p99",
            "99th percentile of one pass: write (created or deleted Jobs, patched status) or noop.",
            "s",
            [(f"histogram_quantile(0.99, sum by (kind, le) ({latency}))", "{{kind}}")],
        ),
        graph(
            "API requests",
            "Kubernetes API requests per second made by the reconciler.",
            "reqps",
            [
                (
                    "sum by (verb, resource) (rate("
                    f"soar_operator_api_request_duration_seconds_count{{{OPERATOR}}}[{RATE}]))",
                    "{{verb}} {{resource}}",
                )
            ],
        ),
    ]


def build() -> dashboard.Dashboard:
    board = (
        dashboard.Dashboard("SOAR runs")
        .uid(UID)
        .description("SoarRuns run by the SOAR operator: progress, learning, stages, operator.")
        .tags(["soar"])
        .refresh("30s")
        .time("now-6h", "now")
        .variables(variables())
    )
    rows = {
        "Runs": run_panels(),
        "Learning": learning_panels(),
        "Stages": stage_panels(),
        "Operator": operator_panels(),
    }
    panel_id = 0
    for title, panels in rows.items():
        panel_id += 1
        board.with_row(dashboard.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            board.with_panel(panel.id(panel_id))
    return board


def render() -> str:
    """The dashboard as the JSON Grafana imports, keys sorted so that diffs stay small."""
    return json.dumps(build().build(), cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
