"""Prometheus metrics: the controller's health, each run's progress mirrored from its status, and
what its stage Jobs took (queue wait, duration, failures).

Labels are bounded: runs are labelled by namespace and name only (plus stage, or k for pass@k),
and their series are removed when the run is deleted. Times are exported as Unix timestamps where
they are moments (an age is `time() - timestamp` in PromQL, never stale between two passes).
"""

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, start_http_server
from prometheus_client.metrics import MetricWrapperBase

from soar.contract import Phase
from soar.spec import SoarRun
from soar_operator.jobs import ACTIVE, SUCCEEDED, JobView, parse_time

RUN = ("namespace", "run")
# Stages take seconds on the CPU testbed and hours at GPU scale; a queue may hold them for a day.
STAGE_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 14400, 28800)
QUEUE_BUCKETS = (1, 5, 15, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 86400)

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
    "lastPromotionStep": Gauge(
        "soar_run_last_promotion_step",
        "Step of the latest promotion (0: none yet); grounded reward only.",
        RUN,
    ),
    "teacherReward": Gauge("soar_run_teacher_reward", "Teacher reward of the last step.", RUN),
    "baselineAccuracy": Gauge(
        "soar_run_baseline_accuracy", "Greedy accuracy of the baseline on Q_R, last step.", RUN
    ),
    "vendi": Gauge("soar_run_vendi", "Standardised Vendi score of the last step's questions.", RUN),
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
RUN_TIMES = {
    "startTime": Gauge(
        "soar_run_start_timestamp_seconds", "When the run started or last resumed.", RUN
    ),
    "lastStepTime": Gauge(
        "soar_run_last_step_timestamp_seconds",
        "When the operator first saw the last step committed (its checkpoint saved); the "
        "checkpoint's age is time() minus it.",
        RUN,
    ),
}
RUN_QUEUED = Gauge(
    "soar_run_queued_seconds",
    "How long every running stage of the run has been a Job held suspended (queued in Kueue); "
    "0 when it is not queued.",
    RUN,
)
RUN_THRESHOLD = Gauge(
    "soar_run_promotion_threshold",
    "tau: the baseline is promoted when the reward's moving average exceeds it (grounded reward).",
    RUN,
)
STAGE_SECONDS = Histogram(
    "soar_run_stage_duration_seconds",
    "Seconds from a stage Job's start to its success, by stage.",
    [*RUN, "stage"],
    buckets=STAGE_BUCKETS,
)
QUEUE_SECONDS = Histogram(
    "soar_run_stage_queue_wait_seconds",
    "Seconds from a stage Job's creation to its start: the time Kueue held it suspended, else "
    "about 0.",
    [*RUN, "stage"],
    buckets=QUEUE_BUCKETS,
)
RUN_STAGE_FAILURES = Counter(
    "soar_run_stage_failures_total",
    "Failed stage attempts (Jobs) of the run, by stage; 0 for each stage that has had a Job.",
    [*RUN, "stage"],
)


@contextmanager
def api_call(verb: str, resource: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        API_SECONDS.labels(verb, resource).observe(time.perf_counter() - start)


# The series of each run, so that they can be removed with it.
_series: dict[tuple[str, str], set[tuple[MetricWrapperBase, tuple[str, ...]]]] = {}
# The Job events already observed, per run: (Job uid, "started" or "ended"), kept while the Job
# exists. A Job is observed once per process; a restarted operator observes the Jobs that still
# exist again, from zero (Prometheus sees a counter reset).
_observed: dict[tuple[str, str], set[tuple[str, str]]] = {}


def _child(metric: MetricWrapperBase, labels: tuple[str, ...]) -> Any:
    """The labelled series, remembered under its run for `forget`."""
    _series.setdefault(labels[:2], set()).add((metric, labels))
    return metric.labels(*labels)


def _set(gauge: Gauge, labels: tuple[str, ...], value: float) -> None:
    _child(gauge, labels).set(value)


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
    for key, gauge in RUN_TIMES.items():
        if status.get(key):
            _set(gauge, (namespace, run), parse_time(status[key]))


def observe(
    namespace: str,
    run: str,
    jobs: Sequence[JobView],
    status: dict[str, Any],
    now: float,
    manifest: SoarRun | None,
) -> None:
    """What a pass sees beyond status: each stage Job's queue wait (once it has started), its
    duration or failure (once it has ended), how long the run has been queued, and its
    promotion threshold (from the manifest, None when it cannot run)."""
    labels = (namespace, run)
    seen = _observed.setdefault(labels, set())
    for job in jobs:
        stage = (*labels, job.stage)
        failures = _child(RUN_STAGE_FAILURES, stage)  # at 0 first, so increase() sees a 1st failure
        if _first(seen, job, "started", job.started_at is not None and job.created_at is not None):
            _child(QUEUE_SECONDS, stage).observe(max(job.started_at - job.created_at, 0))
        if _first(seen, job, "ended", job.state != ACTIVE and job.finished_at is not None):
            if job.state == SUCCEEDED:
                began = job.started_at or job.created_at or job.finished_at
                _child(STAGE_SECONDS, stage).observe(max(job.finished_at - began, 0))
            else:
                failures.inc()
    present = {job.uid or job.name for job in jobs}
    _observed[labels] = {key for key in seen if key[0] in present}
    queued_at = parse_time(status.get("queuedTime"))
    _set(RUN_QUEUED, labels, now - queued_at if queued_at is not None else 0)
    spec = manifest.spec if manifest is not None else None
    if spec is not None and spec.mode == "soar" and spec.reward.kind == "grounded":
        _set(RUN_THRESHOLD, labels, spec.promotion.threshold)


def _first(seen: set[tuple[str, str]], job: JobView, event: str, happened: bool) -> bool:
    """Whether `event` has happened to `job` and is seen for the first time (then remembered)."""
    key = (job.uid or job.name, event)
    if not happened or key in seen:
        return False
    seen.add(key)
    return True


def forget(namespace: str, run: str) -> None:
    """Drop every series of a deleted run."""
    _observed.pop((namespace, run), None)
    for metric, labels in _series.pop((namespace, run), set()):
        metric.remove(*labels)


def serve(port: int) -> None:
    start_http_server(port)
