"""The operator's decisions, without a cluster: `decide` is a pure function of the spec, the
completion manifests, the Jobs and the clock."""

import random

import pytest

from soar.planner import Stage, plan
from soar.spec_execution import Retries
from soar_operator.jobs import ACTIVE, FAILED, SUCCEEDED, JobView
from soar_operator.reconcile import (
    MANIFEST_GRACE_SECONDS,
    Unit,
    backoff_seconds,
    decide,
)
from tests.support.manifests import SMALL, parsed

NOW = 1_000_000.0
RUN = SMALL | {
    "storage": {"uri": "file:///runs/r"},
    "retries": {"limit": 2, "backoffSeconds": 10, "maxBackoffSeconds": 60},
}


def spec(**fields):
    return parsed("r", RUN, **fields).spec


def job(stage, step, attempt=1, state=ACTIVE, finished=None, reason="", **kw):
    name = f"r-{step}-{stage}-{attempt}"
    return JobView(name, f"uid-{name}", stage, step, attempt, state, finished, reason, **kw)


def through(s, *keys):
    """The completion manifests after the given stages, every student index included."""
    done = set()
    for key in keys:
        step, _, name = key.partition("/") if "/" in key else ("0", "", key)
        stages = [Stage(name, int(step))]
        if name == "student":
            stages = [x for x in plan(s, done) if x.name == "student"]
        done |= {x.key for x in stages}
    return done


def created(decision):
    return [(u.unit.stage, u.unit.step, u.attempt) for u in decision.create]


def test_a_new_run_starts_with_prepare_and_is_pending_until_a_pod_runs():
    d = decide(spec(), spec(), set(), [], NOW, None)
    assert (d.phase, d.reason) == ("Pending", "WaitingForPods")
    assert created(d) == [("prepare", 0, 1)]
    assert d.started_at == NOW
    d = decide(spec(), spec(), set(), [job("prepare", 0, running=True)], NOW, NOW)
    assert (d.phase, created(d)) == ("Running", [])
    assert d.units[0].state == "running"


def test_independent_stages_start_together():
    s = spec()
    d = decide(s, s, through(s, "prepare"), [], NOW, NOW)
    assert created(d) == [("evaluate", 0, 1), ("teacher-generate", 1, 1), ("baseline", 1, 1)]
    assert d.phase == "Running" and d.message.startswith("0/2 steps done; evaluate starting")


def test_students_are_one_unit_whatever_indexes_are_left():
    s = spec()
    done = through(s, "prepare", "evaluate", "1/teacher-generate", "1/baseline")
    d = decide(s, s, done, [], NOW, NOW)
    assert created(d) == [("student", 1, 1)]
    partly = done | {Stage("student", 1, 0).key, Stage("student", 1, 3).key}
    failed = job("student", 1, state=FAILED, finished=NOW - 100, reason="FailedIndexes")
    d = decide(s, s, partly, [failed], NOW, NOW)
    assert created(d) == [("student", 1, 2)]


def test_running_jobs_are_waited_for():
    s = spec()
    jobs = [job("prepare", 0, running=True)]
    d = decide(s, s, set(), jobs, NOW, NOW)
    assert created(d) == [] and [u.state for u in d.units] == ["running"]


def test_backoff_doubles_from_the_failure_and_is_capped():
    r = Retries(limit=10, backoffSeconds=10, maxBackoffSeconds=60)
    assert [backoff_seconds(r, n) for n in (1, 2, 3, 4, 5)] == [10, 20, 40, 60, 60]
    s = spec()
    first = job("prepare", 0, 1, FAILED, NOW - 9, "BackoffLimitExceeded")
    d = decide(s, s, set(), [first], NOW, NOW)
    assert created(d) == [] and d.units[0].state == "backoff"
    assert d.units[0].retry_at == NOW + 1 and d.reason == "BackingOff"
    assert d.failure == first
    d = decide(s, s, set(), [first], NOW + 1, NOW)
    assert created(d) == [("prepare", 0, 2)]
    second = job("prepare", 0, 2, FAILED, NOW + 5, "BackoffLimitExceeded")
    assert created(decide(s, s, set(), [first, second], NOW + 24, NOW)) == []
    assert created(decide(s, s, set(), [first, second], NOW + 25, NOW)) == [("prepare", 0, 3)]


def test_failures_beyond_the_limit_fail_the_run_and_stop_its_jobs():
    s = spec()
    done = through(s, "prepare")
    fails = [job("teacher-generate", 1, a, FAILED, NOW - 100 + a) for a in (1, 2, 3)]
    running = job("evaluate", 0, running=True)
    d = decide(s, s, done, [*fails, running], NOW, NOW)
    assert (d.phase, d.reason) == ("Failed", "BackoffLimitExceeded")
    assert d.message == "stage teacher-generate of step 1 failed 3 times (spec.retries.limit 2)"
    assert d.delete == ("r-0-evaluate-1",) and d.failure == fails[-1]
    assert created(d) == []
    assert [(u.unit, u.attempt, u.state) for u in d.units] == [
        (Unit("teacher-generate", 1), 3, "failed")
    ]


def test_exit_code_2_fails_at_once():
    s = spec()
    bad = job("prepare", 0, 1, FAILED, NOW - 1, "PodFailurePolicy")
    d = decide(s, s, set(), [bad], NOW, NOW)
    assert (d.phase, d.reason) == ("Failed", "PermanentError")
    assert "not retried" in d.message and d.failure == bad


def test_a_deleted_job_comes_back_with_its_attempt_number():
    s = spec()
    first = job("prepare", 0, 1, FAILED, NOW - 100)
    # Attempt 2 was running and got deleted: only attempt 1 is left, so attempt 2 is made again.
    assert created(decide(s, s, set(), [first], NOW, NOW)) == [("prepare", 0, 2)]
    # While a deletion is in progress, nothing is created under its name.
    going = job("prepare", 0, 2, deleting=True)
    assert created(decide(s, s, set(), [first, going], NOW, NOW)) == []


def test_success_without_a_manifest_counts_as_a_failure_after_a_grace_period():
    s = spec()
    ok = job("prepare", 0, 1, SUCCEEDED, NOW - 1)
    assert decide(s, s, set(), [ok], NOW, NOW).units[0].state == "running"
    later = NOW + MANIFEST_GRACE_SECONDS
    d = decide(s, s, set(), [ok], later, NOW)
    assert d.units[0].attempt == 2 and d.failure == ok


def test_suspend_stops_running_jobs_and_resume_starts_them_at_the_same_attempt():
    s = spec(suspend=True)
    done = through(s, "prepare")
    failed_once = job("evaluate", 0, 1, FAILED, NOW - 100)
    running = job("evaluate", 0, 2, running=True)
    d = decide(s, s, done, [failed_once, running], NOW, NOW)
    assert (d.phase, created(d), d.delete) == ("Suspended", [], ("r-0-evaluate-2",))
    assert [u.state for u in d.units] == ["held", "held", "held"]
    assert "stopping 1 running stage(s)" in d.message
    assert d.started_at is None  # the deadline counts again from the resume
    # the deleted Job is gone: still suspended, nothing left to stop
    idle = decide(s, s, done, [failed_once], NOW, None)
    assert (idle.phase, idle.delete) == ("Suspended", ())
    assert "stopping" not in idle.message
    # resumed: the stopped attempt is started again under its number (it counted no failure)
    resumed = spec()
    again = decide(resumed, resumed, done, [failed_once], NOW, None)
    assert ("evaluate", 0, 2) in created(again)


def test_deadline():
    s = spec(activeDeadlineSeconds=60)
    live = job("prepare", 0, running=True)
    assert decide(s, s, set(), [live], NOW, NOW - 60).phase == "Running"
    d = decide(s, s, set(), [live], NOW, NOW - 61)
    assert (d.phase, d.reason, d.delete) == ("Failed", "DeadlineExceeded", ("r-0-prepare-1",))
    waiting = decide(s, s, {"prepare"}, [], NOW, NOW - 61)
    assert waiting.phase == "Failed" and waiting.units and created(waiting) == []
    suspended = spec(activeDeadlineSeconds=60, suspend=True)
    assert decide(suspended, suspended, set(), [], NOW, None).phase == "Suspended"


def test_a_run_whose_jobs_kueue_holds_is_queued_and_its_deadline_stands_still():
    s = spec(activeDeadlineSeconds=60)
    held = job("prepare", 0, suspended=True)
    first = decide(s, s, set(), [held], NOW, None)
    assert (first.phase, first.reason) == ("Pending", "Queued")
    assert "Job(s) r-0-prepare-1 held suspended until Kueue admits" in first.message
    assert (first.started_at, first.queued_at) == (None, NOW)  # the deadline has not begun
    # Mid-run: it ran 50 s, then waited 150 s in the queue: 50 s count, not 200.
    done = through(s, "prepare")
    evaluate = job("evaluate", 0, suspended=True)
    queued = decide(s, s, done, [evaluate], NOW, NOW - 200, NOW - 150)
    assert (queued.phase, queued.started_at, queued.queued_at) == ("Pending", NOW - 200, NOW - 150)
    admitted = job("evaluate", 0, running=True)
    running = decide(s, s, done, [admitted], NOW, NOW - 200, NOW - 150)
    assert (running.phase, running.started_at, running.queued_at) == ("Running", NOW - 50, None)
    assert decide(s, s, done, [admitted], NOW + 10, NOW - 50).phase == "Running"
    late = decide(s, s, done, [admitted], NOW + 11, NOW - 50)
    assert (late.phase, late.reason) == ("Failed", "DeadlineExceeded")
    # one Job held while another runs: not queued
    both = decide(s, s, done, [admitted, job("baseline", 1, suspended=True)], NOW, NOW - 5)
    assert both.reason != "Queued"


def test_a_complete_run_succeeded_even_with_failed_attempts_behind_it():
    s = spec(steps=1)
    done = through(s, "prepare", "evaluate", "1/teacher-generate", "1/baseline", "1/student")
    done |= through(s, "1/teacher-update", "1/evaluate")
    old = job("baseline", 1, 1, FAILED, NOW - 500)
    d = decide(s, s, done, [old], NOW, NOW - 600)
    assert (d.phase, d.reason, created(d)) == ("Succeeded", "RunSucceeded", [])


def test_jobs_of_completed_older_steps_are_cleaned_up_but_unfinished_attempts_stay():
    s = spec(steps=3, cleanup={"keepSteps": 1})
    step = ("teacher-generate", "baseline", "student", "teacher-update")
    done = through(s, "prepare", "evaluate", *(f"{t}/{x}" for t in (1, 2) for x in step))
    done |= through(s, "3/teacher-generate")  # 2 steps committed: Jobs of steps <= 1 may go
    gone = [
        job("prepare", 0, 1, SUCCEEDED, NOW - 900),
        job("evaluate", 0, 1, SUCCEEDED, NOW - 900),
        job("teacher-generate", 1, 1, FAILED, NOW - 800),  # a retry completed this work
        job("teacher-generate", 1, 2, SUCCEEDED, NOW - 700),
        job("student", 1, 1, SUCCEEDED, NOW - 600),
    ]
    kept = [
        job("evaluate", 1, 1, FAILED, NOW - 500),  # the evaluation after step 1 is not done
        job("student", 2, 1, SUCCEEDED, NOW - 300),  # the last committed step is kept
        job("baseline", 3, 1, FAILED, NOW - 100),
    ]
    d = decide(s, s, done, gone + kept, NOW, NOW - 1000)
    assert d.phase == "Running"
    assert sorted(d.delete) == sorted(j.name for j in gone)
    # the kept failure still counts: the evaluation's next attempt is its second
    assert ("evaluate", 1, 2) in created(d)
    keep_all = spec(steps=3, cleanup={"keepSteps": None})
    assert decide(keep_all, s, done, gone + kept, NOW, NOW - 1000).delete == ()


def test_hard_only_is_a_fresh_student_trained_stage_by_stage():
    s = spec(mode="hard-only", freshStudent={"maxSteps": 30, "segmentSteps": 10})
    d = decide(s, s, through(s, "prepare"), [], NOW, NOW)
    assert created(d) == [("evaluate", 0, 1), ("train", 1, 1)]
    d = decide(s, s, through(s, "prepare", "evaluate", "1/train"), [], NOW, NOW)
    assert created(d) == [("evaluate", 1, 1), ("train", 2, 1)]
    done = through(s, "prepare", "evaluate", "1/train", "1/evaluate", "2/train", "3/train")
    d = decide(s, s, done, [], NOW, NOW)
    assert (d.phase, created(d)) == ("Running", [("evaluate", 2, 1)])
    assert "3/3 steps done" in d.message


def test_the_stored_spec_decides_what_runs_and_the_live_one_how():
    stored, live = spec(steps=1), spec(steps=1, retries={"limit": 0})
    fail = job("prepare", 0, 1, FAILED, NOW - 100)
    assert decide(stored, stored, set(), [fail], NOW, NOW).phase == "Running"
    assert decide(live, stored, set(), [fail], NOW, NOW).phase == "Failed"


@pytest.mark.parametrize("seed", range(5))
def test_the_order_of_jobs_does_not_matter(seed):
    s = spec()
    done = through(s, "prepare")
    jobs = [
        job("evaluate", 0, running=True),
        job("teacher-generate", 1, 1, FAILED, NOW - 50),
        job("teacher-generate", 1, 2, FAILED, NOW - 20),
        job("baseline", 1, running=True),
    ]
    expected = decide(s, s, done, jobs, NOW, NOW)
    random.Random(seed).shuffle(jobs)
    assert decide(s, s, done, jobs, NOW, NOW) == expected
    assert [u.unit for u in expected.units] == [
        Unit("evaluate", 0),
        Unit("teacher-generate", 1),
        Unit("baseline", 1),
    ]
