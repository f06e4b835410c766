"""The operator drives SoarRuns through real Jobs: success, retries, permanent failures, deleted
Jobs and pods, suspend and resume, deadlines, deletion. Stages are the stub (tests/operator_stub.py)
so that each run takes seconds; tests/cluster/test_operator_e2e.py runs the real stages."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from soar import layout
from soar.contract import KIND, LABEL_ATTEMPT, LABEL_STAGE, LABEL_STEP, QUEUE_LABEL
from soar.planner import Stage
from tests.infra.fixtures import StartPrometheus
from tests.infra.processes import wait_until
from tests.support.cluster import (
    TERMINAL,
    WORKER_IMAGE,
    Cluster,
    Operator,
    condition,
    stage_runs,
    store_of,
    stub_run,
)

pytestmark = pytest.mark.slow


def test_run_succeeds_through_jobs(cluster: Cluster, operator: Operator, tmp_path: Path) -> None:
    run = stub_run("ok", tmp_path, {"teacher-generate": {"sleep": 1}})
    run["metadata"]["labels"] = {QUEUE_LABEL: "gpus"}
    cluster.apply(run)
    status = cluster.wait_phase("ok", *TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert (status["step"], status["totalSteps"], status["progress"]) == (2, 2, "2/2")
    assert status["promotions"] == 1 and status["teacherReward"] == pytest.approx(0.02)
    assert status["rewardMovingAverage"] == "+0.0100"
    assert status["passAtK"] == {"1": 0.15, "4": 0.3} and status["passAtKStep"] == 2
    store = store_of(run)
    assert status["lastCheckpoint"] == f"{store.as_uri()}/{layout.teacher_checkpoint(2)}"
    assert condition(status, "Succeeded")["status"] == "True"
    assert condition(status, "CheckpointAvailable")["status"] == "True"
    assert condition(status, "Running")["status"] == "False"
    assert status["observedGeneration"] == 1
    assert (store / layout.RUN).exists()

    # One Job per (step, stage), each stage run exactly once.
    names = cluster.job_names("ok")
    expected = ["ok-0-prepare-1", "ok-0-evaluate-1"]
    for t in (1, 2):
        expected += [f"ok-{t}-{s}-1" for s in ("teacher-generate", "baseline", "student")]
        expected += [f"ok-{t}-teacher-update-1", f"ok-{t}-evaluate-1"]
    assert sorted(names) == sorted(expected)
    assert set(stage_runs(run).values()) == {1}
    assert len(stage_runs(run)) == 2 + 2 * (2 + 4 + 2)

    uid = cluster.run("ok")["metadata"]["uid"]
    jobs = {j.metadata.name: j for j in cluster.jobs("ok")}
    student = jobs["ok-1-student-1"]
    assert student.spec.completion_mode == "Indexed"
    assert (student.spec.completions, student.spec.parallelism) == (4, 4)
    assert student.spec.backoff_limit_per_index == 0
    for name, job in jobs.items():
        (owner,) = job.metadata.owner_references
        assert (owner.kind, owner.name, owner.uid) == (KIND, "ok", uid)
        assert owner.controller and owner.block_owner_deletion
        labels = job.metadata.labels
        assert labels["app.kubernetes.io/instance"] == "ok"
        assert labels["app.kubernetes.io/managed-by"] == "soar-operator"
        assert labels[QUEUE_LABEL] == "gpus"
        stage, step = labels[LABEL_STAGE], int(labels[LABEL_STEP])
        assert labels[LABEL_ATTEMPT] == "1" and name == f"ok-{step}-{stage}-1"
        (container,) = job.spec.template.spec.containers
        assert container.command == Stage(stage, step).argv(store.as_uri())
        assert container.image == WORKER_IMAGE
        assert container.termination_message_policy == "FallbackToLogsOnError"
        assert job.spec.template.spec.restart_policy == "Never"
        rules = job.spec.pod_failure_policy.rules
        assert [r.action for r in rules] == ["FailJob", "Ignore", "Ignore"]

    reasons = cluster.wait_reasons("ok", "RunSucceeded")
    for reason in ("RunStarted", "JobCreated", "StepCompleted", "Evaluated", "RunSucceeded"):
        assert reason in reasons
    assert reasons.count("StepCompleted") == 2
    assert "StudentPromoted" in reasons
    assert all(e.type == "Normal" for e in cluster.events("ok"))

    table = cluster.kube.kubectl("get", "soar", "ok", "-n", cluster.namespace).stdout
    header, row = table.splitlines()
    assert header.split() == ["NAME", "PHASE", "STEP", "STAGE", "PROMOTIONS", "REWARD", "MA", "AGE"]
    assert row.split()[:3] == ["ok", "Succeeded", "2/2"]
    cluster.kube.kubectl(
        "wait", "--for=condition=Succeeded", "soarrun/ok", "-n", cluster.namespace, "--timeout=5s"
    )

    metrics = operator.metrics()
    labels = f'namespace="{cluster.namespace}",run="ok"'
    assert f"soar_run_step{{{labels}}} 2.0" in metrics
    assert f'soar_run_pass_at_k{{k="4",{labels}}} 0.3' in metrics
    assert 'soar_operator_jobs_created_total{stage="student"}' in metrics


def test_transient_failure_is_retried_with_backoff(cluster: Cluster, tmp_path: Path) -> None:
    run = stub_run("flaky", tmp_path, {"1/baseline": {"fail": 2}})
    cluster.apply(run)
    status = cluster.wait_phase("flaky", *TERMINAL)
    assert status["phase"] == "Succeeded", status
    jobs = {j.metadata.name: j for j in cluster.jobs("flaky")}
    attempts = [jobs[f"flaky-1-baseline-{a}"] for a in (1, 2, 3)]
    assert "flaky-1-baseline-4" not in jobs
    # Backoff 1 s then 2 s, counted from the failed Job's end.
    for before, after, wait in ((attempts[0], attempts[1], 1), (attempts[1], attempts[2], 2)):
        failed = next(c for c in before.status.conditions if c.type == "Failed")
        gap = (after.metadata.creation_timestamp - failed.last_transition_time).total_seconds()
        assert gap >= wait - 1, (before.metadata.name, gap)  # timestamps have 1 s resolution
    assert "injected failure 2" in status["lastFailure"]
    events = cluster.wait_events("flaky", "RunSucceeded")
    assert [e.type for e in events if e.reason == "StageFailed"] == ["Warning", "Warning"]


def test_a_stage_past_its_deadline_is_a_failed_attempt(cluster: Cluster, tmp_path: Path) -> None:
    run = stub_run(
        "hung",
        tmp_path,
        {"1/baseline": {"sleep": 600}},
        {"pods": {"baseline": {"activeDeadlineSeconds": 2}}, "retries": {"limit": 1}},
    )
    cluster.apply(run)
    status = cluster.wait_phase("hung", *TERMINAL)
    assert status["phase"] == "Failed"
    failed = condition(status, "Failed")
    assert "stage baseline of step 1 failed 2 times (spec.retries.limit 1)" in failed["message"]
    assert "active longer than specified deadline" in failed["message"], failed["message"]
    jobs = {j.metadata.name: j for j in cluster.jobs("hung")}
    for attempt in (1, 2):
        job = jobs[f"hung-1-baseline-{attempt}"]
        assert job.spec.active_deadline_seconds == 2
        (ended,) = [c for c in job.status.conditions if c.type == "Failed"]
        assert ended.reason == "DeadlineExceeded"


def test_retries_exhausted_fail_the_run(cluster: Cluster, tmp_path: Path) -> None:
    run = stub_run("doomed", tmp_path, {"1/teacher-generate": {"fail": 99}})
    cluster.apply(run)
    status = cluster.wait_phase("doomed", *TERMINAL)
    assert status["phase"] == "Failed"
    failed = condition(status, "Failed")
    assert failed["status"] == "True" and failed["reason"] == "BackoffLimitExceeded"
    assert (
        "stage teacher-generate of step 1 failed 3 times (spec.retries.limit 2)"
        in (failed["message"])
    )
    assert "exit 1: error: 1/teacher-generate: injected failure 3" in failed["message"]
    assert "\n" not in failed["message"]
    assert (status["stage"], status["attempt"]) == ("teacher-generate", 3)
    names = cluster.job_names("doomed")
    assert [n for n in names if "teacher-generate" in n] == [
        f"doomed-1-teacher-generate-{a}" for a in (1, 2, 3)
    ]
    cluster.wait_reasons("doomed", "BackoffLimitExceeded")
    warnings = [e for e in cluster.events("doomed") if e.type == "Warning"]
    # one per failed attempt, then the run's
    assert sorted(e.reason for e in warnings) == ["BackoffLimitExceeded"] + ["StageFailed"] * 3
    time.sleep(2)  # and it stays failed: nothing more is created
    assert cluster.job_names("doomed") == names


def test_exit_code_2_fails_at_once(cluster: Cluster, tmp_path: Path) -> None:
    stub = {"1/baseline": {"exit": 2}, "1/teacher-generate": {"sleep": 30}}
    cluster.apply(stub_run("bad-input", tmp_path, stub))
    status = cluster.wait_phase("bad-input", *TERMINAL)
    assert status["phase"] == "Failed"
    failed = condition(status, "Failed")
    assert failed["reason"] == "PermanentError"
    assert "stage baseline of step 1 failed with a permanent error" in failed["message"]
    assert "exit 2: error: 1/baseline: stub exits 2" in failed["message"]
    names = cluster.job_names("bad-input")
    assert "bad-input-1-baseline-2" not in names
    # The run's other running Job is stopped.
    wait_until(
        lambda: "bad-input-1-teacher-generate-1" not in cluster.job_names("bad-input"),
        timeout=30,
        what="the running teacher-generate Job to be deleted",
    )


def test_deleted_job_and_pod_are_recreated(cluster: Cluster, tmp_path: Path) -> None:
    cluster.apply(stub_run("phoenix", tmp_path, {"1/teacher-generate": {"sleep": 4}}))
    job = "phoenix-1-teacher-generate-1"

    def running_pod():
        pods = [p for p in cluster.pods(job) if p.status.phase == "Running"]
        return pods[0] if pods else None

    first = wait_until(running_pod, timeout=60, what=f"a running pod of {job}")
    uid = cluster.batch.read_namespaced_job(job, cluster.namespace).metadata.uid
    # A deleted pod is the Job controller's to replace (SIGTERM is not a failed attempt).
    cluster.core.delete_namespaced_pod(first.metadata.name, cluster.namespace)
    second = wait_until(
        lambda: (p := running_pod()) and p.metadata.uid != first.metadata.uid and p,
        timeout=60,
        what="a replacement pod",
    )
    assert cluster.batch.read_namespaced_job(job, cluster.namespace).metadata.uid == uid
    # A deleted Job is created again by the operator, under the same name and attempt.
    cluster.batch.delete_namespaced_job(job, cluster.namespace, propagation_policy="Background")
    wait_until(
        lambda: any(
            j.metadata.name == job and j.metadata.uid != uid for j in cluster.jobs("phoenix")
        ),
        timeout=60,
        what=f"{job} created again",
    )
    status = cluster.wait_phase("phoenix", *TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert not any(
        n.startswith("phoenix-1-teacher-generate-2") for n in cluster.job_names("phoenix")
    )
    assert second.metadata.name != first.metadata.name


def test_suspend_stops_running_stages_and_resume_redoes_them(
    cluster: Cluster, tmp_path: Path
) -> None:
    run = stub_run("nap", tmp_path, {"0/prepare": {"sleep": 8}}, {"suspend": True})
    cluster.apply(run)
    status = cluster.wait_phase("nap", "Suspended")
    assert condition(status, "Suspended")["status"] == "True"
    time.sleep(2)
    assert cluster.job_names("nap") == []  # suspended from the start: nothing runs

    cluster.patch_spec("nap", {"suspend": False})
    wait_until(lambda: stage_runs(run).get("prepare"), timeout=30, what="the prepare stage running")
    cluster.patch_spec("nap", {"suspend": True})
    # Hard suspend: the running Job is deleted at once, its pod with it.
    wait_until(
        lambda: cluster.job_names("nap") == [] and cluster.pods("nap-0-prepare-1") == [],
        timeout=30,
        what="the prepare Job and its pod gone",
    )
    cluster.wait_status(
        "nap", lambda s: s.get("phase") == "Suspended" and "stopping" not in s["message"], "idle"
    )
    time.sleep(2)
    assert cluster.job_names("nap") == []
    assert not (store_of(run) / layout.done(Stage("prepare", 0).key)).exists()

    cluster.patch_spec("nap", {"suspend": False})
    status = cluster.wait_phase("nap", *TERMINAL)
    assert status["phase"] == "Succeeded"
    assert stage_runs(run)["prepare"] == 2  # stopped once, then redone
    # the stopped attempt counted no failure: prepare ran again as attempt 1
    assert [n for n in cluster.job_names("nap") if "prepare" in n] == ["nap-0-prepare-1"]
    reasons = cluster.wait_reasons("nap", "RunSucceeded")
    assert reasons.count("Suspended") == 2 and reasons.count("Resumed") == 2
    assert "StageFailed" not in reasons


def test_a_job_held_suspended_is_queued_and_the_deadline_waits(
    cluster: Cluster, tmp_path: Path
) -> None:
    """Kueue's webhook holds a queued Job with spec.suspend until it admits it; Kueue is not
    installed here, so the test suspends the stage Job itself (the Job controller then stops its
    pod, as for a Job Kueue preempts) and later lets it go, as admission would."""
    run = stub_run("held", tmp_path, {"0/prepare": {"sleep": 3}}, {"activeDeadlineSeconds": 20})
    cluster.apply(run)
    wait_until(lambda: stage_runs(run).get("prepare"), timeout=30, what="prepare running")
    suspend = {"spec": {"suspend": True}}
    cluster.batch.patch_namespaced_job("held-0-prepare-1", cluster.namespace, suspend)
    status = cluster.wait_status("held", lambda s: s.get("reason") == "Queued", "Queued")
    assert status["phase"] == "Pending" and "held-0-prepare-1" in status["message"]
    assert status["queuedTime"] >= status["startTime"]
    time.sleep(25)  # longer than the whole deadline: queued time does not count
    assert cluster.status("held")["reason"] == "Queued"
    cluster.batch.patch_namespaced_job(
        "held-0-prepare-1", cluster.namespace, {"spec": {"suspend": False}}
    )
    status = cluster.wait_phase("held", *TERMINAL)
    assert status["phase"] == "Succeeded", status
    assert "queuedTime" not in status
    reasons = cluster.wait_reasons("held", "RunSucceeded")
    assert "Queued" in reasons and "DeadlineExceeded" not in reasons, ",".join(reasons)


def test_deadline_fails_the_run(cluster: Cluster, tmp_path: Path) -> None:
    run = stub_run("late", tmp_path, {"0/prepare": {"sleep": 60}}, {"activeDeadlineSeconds": 3})
    cluster.apply(run)
    status = cluster.wait_phase("late", *TERMINAL, timeout=60)
    assert status["phase"] == "Failed"
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"
    wait_until(lambda: not cluster.job_names("late"), timeout=30, what="the prepare Job deleted")


def test_deleting_the_run_deletes_its_jobs(cluster: Cluster, tmp_path: Path) -> None:
    cluster.apply(stub_run("gone", tmp_path, {"0/prepare": {"sleep": 60}}))
    wait_until(lambda: cluster.job_names("gone"), timeout=30, what="a Job of the run")
    cluster.delete_run("gone")
    wait_until(lambda: not cluster.job_names("gone"), timeout=60, what="the garbage collector")
    wait_until(
        lambda: not cluster.pods("gone-0-prepare-1"), timeout=60, what="the Job's pods deleted"
    )


def test_prometheus_scrapes_run_progress(
    cluster: Cluster, operator: Operator, tmp_path: Path, prometheus: StartPrometheus
) -> None:
    cluster.apply(stub_run("scraped", tmp_path, spec={"steps": 1}))
    assert cluster.wait_phase("scraped", *TERMINAL)["phase"] == "Succeeded"
    prom = prometheus([f"127.0.0.1:{operator.metrics_port}"], job="soar-operator")
    where = f'namespace="{cluster.namespace}",run="scraped"'
    step = prom.query(f"soar_run_step{{{where}}}", until=bool)
    assert float(step[0]["value"][1]) == 1
    succeeded = prom.query(f'soar_run_phase{{{where},phase="Succeeded"}}', until=bool)
    assert float(succeeded[0]["value"][1]) == 1
    created = prom.query('sum(soar_operator_jobs_created_total{job="soar-operator"})', until=bool)
    assert float(created[0]["value"][1]) >= 7


def test_only_the_newest_operator_acts(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    """kopf peering, the start time as priority: a newer operator takes over at once (as in a
    rolling update), the older one pauses, and resumes when the newer one stops."""
    newer = Operator(cluster.namespace, Path(operator.env["KUBECONFIG"]), tmp_path / "newer-logs")
    newer.start()
    try:
        newer.wait_ready()
        wait_until(
            lambda: "Pausing operations in favour of" in operator.log(),
            timeout=30,
            what="the older operator to pause",
        )
        paused_at = len(operator.log())
        cluster.apply(stub_run("handover", tmp_path, spec={"steps": 1}))
        assert cluster.wait_phase("handover", *TERMINAL)["phase"] == "Succeeded"
        assert "handover" not in operator.log()[paused_at:]
        assert "created Job handover-0-prepare-1" in newer.log()
    finally:
        newer.stop()
    wait_until(
        lambda: "Resuming operations after the pause" in operator.log()[paused_at:],
        timeout=30,
        what="the older operator to resume",
    )
