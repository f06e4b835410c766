"""Prometheus metrics: the controller's health, and each run's progress mirrored from its status.

Labels are bounded: runs are labelled by namespace and name only, and their series are removed
when the run is deleted.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server

from soar.contract import Phase

RUN = ("namespace", "run")

RECONCILES = Counter(
    "soar_operator_reconciles_total", "Reconcile passes over SoarRuns, by result.", ["result"]
)
RECONCILE_SECONDS = Histogram(
    "soar_operator_reconcile_duration_seconds",
    "Time of one successful reconcile pass over one SoarRun; kind: write (it created or deleted "
    "Jobs or patched status) or noop.",
    ["kind"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
API_SECONDS = Histogram(
    "soar_operator_api_request_duration_seconds",
    "Kubernetes API requests made by the reconciler (not kopf's watches and Events).",
    ["verb", "resource"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
JOBS_CREATED = Counter("soar_operator_jobs_created_total", "Jobs created, by stage.", ["stage"])
STORE_ERRORS = Counter(
    "soar_operator_store_errors_total", "Reconcile passes that could not read a run store."
)
STAGE_FAILURES = Counter(
    "soar_operator_stage_failures_total", "Failed stage attempts seen, by stage.", ["stage"]
)

RUN_PHASE = Gauge("soar_run_phase", "1 for the run's current phase.", [*RUN, "phase"])
RUN_GAUGES = {
    "step": Gauge("soar_run_step", "Last committed outer step.", RUN),
    "totalSteps": Gauge("soar_run_steps", "Outer steps of the run (T).", RUN),
    "promotions": Gauge("soar_run_promotions", "Students promoted so far.", RUN),
    "teacherReward": Gauge("soar_run_teacher_reward", "Teacher reward of the last step.", RUN),
    "baselineAccuracy": Gauge(
        "soar_run_baseline_accuracy", "Greedy accuracy of the baseline on Q_R, last step.", RUN
    ),
    "attempt": Gauge("soar_run_attempt", "Highest attempt among the running stages.", RUN),
}
RUN_MOVING_AVERAGE = Gauge(
    "soar_run_reward_moving_average", "Moving average of the teacher reward.", RUN
)
RUN_PASS_AT_K = Gauge(
    "soar_run_pass_at_k",
    "pass@k of the baseline on the hard test split, last evaluation.",
    [*RUN, "k"],
)


@contextmanager
def api_call(verb: str, resource: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        API_SECONDS.labels(verb, resource).observe(time.perf_counter() - start)


# The series set for each run, so that they can be removed with it.
_series: dict[tuple[str, str], set[tuple[Gauge, tuple[str, ...]]]] = {}


def _set(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
    gauge.labels(*labels).set(value)
    _series.setdefault(labels[:2], set()).add((gauge, labels))


def mirror(namespace: str, run: str, status: dict[str, Any]) -> None:
    """Set the run's gauges from its status."""
    for phase in Phase:
        _set(RUN_PHASE, (namespace, run, phase), 1 if status.get("phase") == phase else 0)
    for key, gauge in RUN_GAUGES.items():
        if status.get(key) is not None:
            _set(gauge, (namespace, run), status[key])
    if status.get("rewardMovingAverage"):
        _set(RUN_MOVING_AVERAGE, (namespace, run), float(status["rewardMovingAverage"]))
    for k, value in (status.get("passAtK") or {}).items():
        _set(RUN_PASS_AT_K, (namespace, run, k), value)


def forget(namespace: str, run: str) -> None:
    """Drop every series of a deleted run."""
    for gauge, labels in _series.pop((namespace, run), set()):
        gauge.remove(*labels)


def serve(port: int) -> None:
    start_http_server(port)
