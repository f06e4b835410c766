"""The Jobs the operator creates, and how it reads them back, without a cluster."""

import json

import pytest

from soar.contract import (
    API_VERSION,
    KIND,
    LABEL_ATTEMPT,
    LABEL_RUN,
    LABEL_STAGE,
    LABEL_STEP,
    PRIORITY_LABEL,
    QUEUE_LABEL,
)
from soar.planner import Stage
from soar.spec_execution import PodSettings
from soar_operator.jobs import (
    RESTRICTED_CONTAINER,
    JobView,
    job_manifest,
    job_name,
    job_view,
    missing_image,
)
from tests.support.manifests import MINIMAL, parsed

DEFAULTS = PodSettings(image="registry.example/worker:1", nodeSelector={"pool": "gpu"})
RUN = MINIMAL | {
    "teacher": {"datasets": 3},
    "student": {"repeats": 2},
    "storage": {"uri": "s3://bucket/runs/r"},
}


def run(name="r", labels=None, **fields):
    return parsed(name, RUN, metadata={"labels": labels or {}}, **fields)


def container(job):
    (c,) = job["spec"]["template"]["spec"]["containers"]
    return c


def test_names_are_deterministic_and_fit_a_label():
    assert job_name("demo", 3, "teacher-generate", 2) == "demo-3-teacher-generate-2"
    long_a, long_b = "a" * 52, "a" * 51 + "b"
    name_a = job_name(long_a, 100000, "teacher-generate", 100)
    name_b = job_name(long_b, 100000, "teacher-generate", 100)
    assert len(name_a) <= 63 and len(name_b) <= 63 and name_a != name_b
    assert name_a == job_name(long_a, 100000, "teacher-generate", 100)
    assert name_a.endswith("-100000-teacher-generate-100")


def test_student_stage_is_one_indexed_job_running_the_executor_command():
    r = run(pods={"student": {"parallelism": 4}})
    job = job_manifest(r, "uid-1", 5, "student", 1, DEFAULTS)
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert (spec["completions"], spec["parallelism"]) == (6, 4)
    assert spec["backoffLimitPerIndex"] == 0 and "backoffLimit" not in spec
    # Same command line as the local executor, without --index: JOB_COMPLETION_INDEX says it.
    assert container(job)["command"] == Stage("student", 5).argv("s3://bucket/runs/r")
    assert "--index" not in container(job)["command"]


def test_batched_students_make_one_job_index_per_group():
    # RUN's 6 students (3 datasets x 2 repeats), 4 a stage: 2 indices, indices 0-3 and 4-5.
    lora = {"rank": 4, "alpha": 8}
    r = run(student={"lora": lora, "repeats": 2}, training={"studentsPerStage": 4})
    spec = job_manifest(r, "uid-1", 5, "student", 1, DEFAULTS)["spec"]
    assert (spec["completions"], spec["parallelism"]) == (2, 2)


def test_other_stages_are_plain_jobs_that_never_retry_themselves():
    job = job_manifest(run(), "uid-1", 2, "teacher-update", 3, DEFAULTS)
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and "completionMode" not in spec
    assert spec["template"]["spec"]["restartPolicy"] == "Never"
    assert container(job)["command"] == [
        "soar",
        "stage",
        "teacher-update",
        "--run",
        "s3://bucket/runs/r",
        "--step",
        "2",
    ]
    assert container(job)["terminationMessagePolicy"] == "FallbackToLogsOnError"
    rules = spec["podFailurePolicy"]["rules"]
    assert rules[0]["action"] == "FailJob" and rules[0]["onExitCodes"]["values"] == [2]
    assert rules[1] == {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}


def test_owner_reference_and_labels():
    r = run(labels={QUEUE_LABEL: "team-gpus", PRIORITY_LABEL: "research", "other": "x"})
    job = job_manifest(r, "uid-1", 1, "baseline", 2, DEFAULTS)
    (owner,) = job["metadata"]["ownerReferences"]
    assert owner == {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": "r",
        "uid": "uid-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    labels = job["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/name": "soar",
        "app.kubernetes.io/instance": "r",
        "app.kubernetes.io/component": "baseline",
        "app.kubernetes.io/part-of": "soar",
        "app.kubernetes.io/managed-by": "soar-operator",
        LABEL_RUN: "r",
        LABEL_STEP: "1",
        LABEL_STAGE: "baseline",
        LABEL_ATTEMPT: "2",
        QUEUE_LABEL: "team-gpus",
        PRIORITY_LABEL: "research",
    }
    assert job["spec"]["template"]["metadata"]["labels"] == labels
    assert (
        QUEUE_LABEL
        not in job_manifest(run(), "u", 1, "baseline", 1, DEFAULTS)["metadata"]["labels"]
    )


def test_pod_settings_layer_operator_defaults_then_default_then_stage():
    gpu = {"limits": {"nvidia.com/gpu": 1}}
    r = run(
        pods={
            "default": {"image": "registry.example/worker:2", "resources": {"limits": {"cpu": 2}}},
            "student": {
                "resources": gpu,
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists"}],
                "serviceAccountName": "trainer",
                "imagePullSecrets": [{"name": "pull"}],
                "volumes": [{"name": "cache", "emptyDir": {}}],
                "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
            },
        }
    )
    student = job_manifest(r, "u", 1, "student", 1, DEFAULTS)
    pod = student["spec"]["template"]["spec"]
    c = container(student)
    assert c["image"] == "registry.example/worker:2" and c["resources"] == gpu
    assert c["volumeMounts"] == [{"name": "cache", "mountPath": "/cache"}]
    assert pod["nodeSelector"] == {"pool": "gpu"}  # from the operator's defaults
    assert pod["serviceAccountName"] == "trainer" and pod["imagePullSecrets"] == [{"name": "pull"}]
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    baseline = job_manifest(r, "u", 1, "baseline", 1, DEFAULTS)
    assert container(baseline)["resources"] == {"limits": {"cpu": 2}}
    assert "tolerations" not in baseline["spec"]["template"]["spec"]
    assert "activeDeadlineSeconds" not in baseline["spec"]
    timed = run(pods={"evaluate": {"activeDeadlineSeconds": 3600}})
    assert (
        job_manifest(timed, "u", 1, "evaluate", 1, DEFAULTS)["spec"]["activeDeadlineSeconds"]
        == 3600
    )


def test_stage_pods_are_restricted_unless_a_run_or_stage_says_otherwise():
    plain = job_manifest(run(), "u", 1, "baseline", 1, DEFAULTS)
    assert plain["spec"]["template"]["spec"]["securityContext"] == {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container(plain)["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    r = run(
        pods={
            "default": {
                "securityContext": {"runAsNonRoot": True, "fsGroup": 10001},
                "priorityClassName": "batch-low",
                "podLabels": {"team": "a", LABEL_RUN: "spoofed"},
                "podAnnotations": {"cost-center": "42"},
            },
            # a stage that needs a capability replaces the container's context whole
            "student": {"containerSecurityContext": {"capabilities": {"add": ["IPC_LOCK"]}}},
        }
    )
    student = job_manifest(r, "u", 1, "student", 1, DEFAULTS)
    template = student["spec"]["template"]
    assert template["spec"]["securityContext"] == {"runAsNonRoot": True, "fsGroup": 10001}
    assert container(student)["securityContext"] == {"capabilities": {"add": ["IPC_LOCK"]}}
    assert template["spec"]["priorityClassName"] == "batch-low"
    assert template["metadata"]["labels"]["team"] == "a"
    assert template["metadata"]["labels"][LABEL_RUN] == "r"  # the operator's labels win
    assert template["metadata"]["annotations"] == {"cost-center": "42"}
    assert "team" not in student["metadata"]["labels"]  # pod labels are the pods' only
    baseline = job_manifest(r, "u", 1, "baseline", 1, DEFAULTS)
    assert container(baseline)["securityContext"] == RESTRICTED_CONTAINER
    assert baseline["spec"]["template"]["spec"]["securityContext"]["fsGroup"] == 10001


def test_store_credentials_are_passed_by_reference_only():
    r = run(
        storage={"uri": "s3://b/p", "endpoint": "http://minio:9000", "secretRef": {"name": "s3"}}
    )
    job = job_manifest(r, "u", 1, "prepare", 1, DEFAULTS)
    c = container(job)
    assert c["envFrom"] == [{"secretRef": {"name": "s3"}}]
    assert {"name": "AWS_ENDPOINT_URL", "value": "http://minio:9000"} in c["env"]
    text = json.dumps(job)
    assert "AWS_SECRET_ACCESS_KEY" not in text and "secretKeyRef" not in text


def test_a_worker_image_is_required_somewhere():
    assert missing_image(run(), PodSettings()).startswith("spec.pods.prepare.image: required")
    assert missing_image(run(pods={"default": {"image": "w:1"}}), PodSettings()) is None
    only_student = run(pods={"student": {"image": "w:1"}})
    assert "spec.pods.prepare.image" in missing_image(only_student, PodSettings())
    assert missing_image(run(), DEFAULTS) is None


def _job_body(conditions=(), labels=None, **meta):
    if labels is None:
        labels = {LABEL_STEP: "3", LABEL_STAGE: "student", LABEL_ATTEMPT: "2"}
    return {
        "metadata": {"name": "r-3-student-2", "uid": "u1", "labels": labels, **meta},
        "status": {"conditions": list(conditions), "ready": 1},
    }


def test_job_view_reads_state_and_failure_kind():
    view = job_view(_job_body())
    assert view == JobView("r-3-student-2", "u1", "student", 3, 2, "active", running=True)
    done = {"type": "Complete", "status": "True", "lastTransitionTime": "2026-01-01T00:00:10Z"}
    assert job_view(_job_body([done])).state == "succeeded"
    failed = {
        "type": "Failed",
        "status": "True",
        "reason": "PodFailurePolicy",
        "message": "Container stage for pod x failed with exit code 2 matching FailJob rule",
        "lastTransitionTime": "2026-01-01T00:00:10Z",
    }
    view = job_view(_job_body([{"type": "FailureTarget", "status": "True"}, failed]))
    assert view.state == "failed" and view.permanent and view.finished_at == 1767225610.0
    transient = {**failed, "reason": "BackoffLimitExceeded"}
    assert not job_view(_job_body([transient])).permanent
    assert job_view(_job_body(deletionTimestamp="2026-01-01T00:00:00Z")).deleting
    held = {**_job_body(), "spec": {"suspend": True}, "status": {}}  # as Kueue holds a Job
    assert (job_view(held).suspended, job_view(held).pods) == (True, 0)
    pending = {**_job_body(), "status": {"active": 2}}
    assert (job_view(pending).suspended, job_view(pending).pods) == (False, 2)


@pytest.mark.parametrize("labels", [{}, {LABEL_STEP: "x", LABEL_STAGE: "s"}])
def test_jobs_without_soar_labels_are_ignored(labels):
    assert job_view(_job_body(labels=labels)) is None
