"""The per-run metrics the monitoring bundle reads (charts/soar-operator/files): Job timings
observed once, status mirrored into gauges, and nothing left behind when a run is deleted.

Every test uses its own run name: the metrics live in prometheus_client's global registry."""

from prometheus_client import REGISTRY

from soar import layout, records
from soar.planner import Stage
from soar.store import FileStore
from soar_operator import metrics
from soar_operator.jobs import JobView, format_time
from soar_operator.progress import read_progress
from soar_operator.reconcile import Decision
from soar_operator.status import build_status
from tests.support.manifests import parsed

NS = "team-a"


def sample(name: str, run: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, {"namespace": NS, "run": run, **labels})


def job(name: str, state: str, **times: float) -> JobView:
    stage = name.split("-", 2)[2].rsplit("-", 1)[0]
    return JobView(name, f"uid-{name}", stage, 1, 1, state, **times)


def test_a_finished_job_is_observed_once() -> None:
    done = job("a-1-baseline-1", "succeeded", created_at=90, started_at=100, finished_at=130)
    metrics.observe(NS, "a", [done], {}, 200, None)
    metrics.observe(NS, "a", [done], {}, 205, None)  # the next pass sees the same Job

    duration = "soar_run_stage_duration_seconds"
    # 30 s from start to finish: above the 15 s bucket, inside the 30 s one
    assert sample(f"{duration}_bucket", "a", stage="baseline", le="15.0") == 0
    assert sample(f"{duration}_bucket", "a", stage="baseline", le="30.0") == 1
    assert sample(f"{duration}_count", "a", stage="baseline") == 1
    assert sample(f"{duration}_sum", "a", stage="baseline") == 30
    # 10 s from creation to start (held by a queue)
    wait = "soar_run_stage_queue_wait_seconds"
    assert sample(f"{wait}_bucket", "a", stage="baseline", le="5.0") == 0
    assert sample(f"{wait}_bucket", "a", stage="baseline", le="15.0") == 1
    assert sample(f"{wait}_sum", "a", stage="baseline") == 10
    assert sample("soar_run_stage_failures_total", "a", stage="baseline") == 0


def test_a_queue_wait_is_observed_when_the_job_starts_not_when_it_ends() -> None:
    held = job("b-1-student-1", "active", created_at=100)
    metrics.observe(NS, "b", [held], {}, 150, None)
    assert sample("soar_run_stage_queue_wait_seconds_count", "b", stage="student") is None
    started = job("b-1-student-1", "active", created_at=100, started_at=160)
    metrics.observe(NS, "b", [started], {}, 170, None)
    assert sample("soar_run_stage_queue_wait_seconds_sum", "b", stage="student") == 60
    assert sample("soar_run_stage_duration_seconds_count", "b", stage="student") is None


def test_what_was_observed_is_kept_only_while_the_job_exists() -> None:
    done = job("i-1-evaluate-1", "succeeded", created_at=0, started_at=0, finished_at=3)
    metrics.observe(NS, "i", [done], {}, 10, None)
    assert metrics._observed[(NS, "i")] == {(done.uid, "started"), (done.uid, "ended")}
    metrics.observe(NS, "i", [], {}, 20, None)  # its Job deleted (cleaned up)
    assert metrics._observed[(NS, "i")] == set()
    assert sample("soar_run_stage_duration_seconds_count", "i", stage="evaluate") == 1


def test_failed_attempts_count_once_each_from_zero() -> None:
    running = job("c-1-student-1", "active", created_at=100, started_at=100)
    metrics.observe(NS, "c", [running], {}, 110, None)
    assert sample("soar_run_stage_failures_total", "c", stage="student") == 0
    failed = job("c-1-student-1", "failed", created_at=100, started_at=100, finished_at=120)
    retry = job("c-1-student-2", "failed", created_at=121, started_at=121, finished_at=125)
    for now in (130, 135):
        metrics.observe(NS, "c", [failed, retry], {}, now, None)
    assert sample("soar_run_stage_failures_total", "c", stage="student") == 2
    # failed attempts are not stage durations
    assert sample("soar_run_stage_duration_seconds_count", "c", stage="student") is None


def test_queued_seconds_and_promotion_threshold() -> None:
    queued = {"phase": "Pending", "queuedTime": format_time(1_000)}
    metrics.observe(NS, "d", [], queued, 1_060, parsed("d", promotion={"threshold": 0.02}))
    assert sample("soar_run_queued_seconds", "d") == 60
    assert sample("soar_run_promotion_threshold", "d") == 0.02
    metrics.observe(NS, "d", [], {"phase": "Running"}, 1_070, None)
    assert sample("soar_run_queued_seconds", "d") == 0
    # learnability reward: nothing is ever promoted, so there is no threshold
    learnability = parsed("e", reward={"kind": "learnability"})
    metrics.observe(NS, "e", [], {}, 1_000, learnability)
    assert sample("soar_run_promotion_threshold", "e") is None


def test_mirror_exports_moments_as_timestamps() -> None:
    status = {
        "phase": "Running",
        "step": 7,
        "lastPromotionStep": 4,
        "vendi": 3.5,
        "startTime": format_time(1_000),
        "lastStepTime": format_time(1_600),
    }
    metrics.mirror(NS, "f", status)
    assert sample("soar_run_start_timestamp_seconds", "f") == 1_000
    assert sample("soar_run_last_step_timestamp_seconds", "f") == 1_600
    assert sample("soar_run_last_promotion_step", "f") == 4
    assert sample("soar_run_vendi", "f") == 3.5


def test_forget_removes_every_series_of_the_run() -> None:
    done = job("g-1-teacher-update-1", "succeeded", created_at=0, started_at=0, finished_at=5)
    status = {"phase": "Running", "step": 1, "startTime": format_time(0), "passAtK": {"1": 0.5}}
    for run in ("g", "h"):
        metrics.mirror(NS, run, status)
        metrics.observe(NS, run, [done], status, 10, parsed(run))
    metrics.forget(NS, "g")

    names = [
        ("soar_run_step", {}),
        ("soar_run_phase", {"phase": "Running"}),
        ("soar_run_pass_at_k", {"k": "1"}),
        ("soar_run_start_timestamp_seconds", {}),
        ("soar_run_queued_seconds", {}),
        ("soar_run_promotion_threshold", {}),
        ("soar_run_stage_duration_seconds_count", {"stage": "teacher-update"}),
        ("soar_run_stage_queue_wait_seconds_count", {"stage": "teacher-update"}),
        ("soar_run_stage_failures_total", {"stage": "teacher-update"}),
    ]
    assert [name for name, labels in names if sample(name, "g", **labels) is not None] == []
    assert [name for name, labels in names if sample(name, "h", **labels) is None] == []
    # a run created again under the name starts from nothing: its Jobs are observed anew
    metrics.observe(NS, "g", [done], status, 20, None)
    assert sample("soar_run_stage_duration_seconds_count", "g", stage="teacher-update") == 1


def test_status_carries_the_last_promotion_step_vendi_and_last_step_time(tmp_path) -> None:
    """What the alerts need from a step record, read with it (no extra store reads)."""
    store = FileStore(tmp_path)
    record = records.StepRecord(
        step=5,
        baseline=None,
        promotions=1,
        history=[0.1, 0.2],  # R_hat of steps 4 and 5: the last promotion was at step 3
        student_rewards=[],
        generation={"attempts": 8, "acceptance": 0.5, "vendi": 3.25},
    )
    layout.save(store, layout.step_record(5), record)
    spec = parsed("r", steps=9).spec
    done = {"prepare", *(Stage("teacher-update", t).key for t in range(1, 6))}
    progress = read_progress(store, spec, done, {})
    assert (progress["lastPromotionStep"], progress["vendi"]) == (3, 3.25)

    decision = Decision("Running", "StagesRunning", "", started_at=1_000)
    previous = {"step": 4, "lastStepTime": format_time(1_000)}
    seen = build_status(decision, progress, previous, 1, 1_300)
    assert seen["lastStepTime"] == format_time(1_300)  # step 5 is new at 1 300
    later = build_status(decision, progress, seen, 1, 1_900)
    assert later["lastStepTime"] == format_time(1_300)  # and stays so until step 6
    # a status written before the field existed gets it at once, not the run's start
    upgraded = build_status(decision, progress, {"step": 5}, 1, 2_000)
    assert upgraded["lastStepTime"] == format_time(2_000)
