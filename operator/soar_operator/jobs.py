"""The Jobs of a SoarRun: deterministic names and labels, manifests, and what a Job's status means.

One Job runs one planned stage of one step (all student indexes together, as one Indexed Job),
with exactly the command line the local executor runs. Everything here is a pure function of the
run and the stage, so a restarted operator builds the same Job under the same name.
"""

import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any

from soar.contract import (
    API_VERSION,
    EXIT_PERMANENT,
    EXIT_TERMINATED,
    KIND,
    LABEL_ATTEMPT,
    LABEL_RUN,
    LABEL_STAGE,
    LABEL_STEP,
    POD_NAME_ENV,
    PRIORITY_LABEL,
    QUEUE_LABEL,
)
from soar.planner import Stage, student_groups
from soar.spec import SoarRun
from soar.spec_execution import PodSettings

MAX_NAME = 63  # Job names become pod label values
CONTAINER = "stage"
# Spec field holding each stage's pod settings.
POD_FIELDS = {
    "prepare": "prepare",
    "teacher-generate": "teacherGenerate",
    "baseline": "baseline",
    "student": "student",
    "teacher-update": "teacherUpdate",
    "evaluate": "evaluate",
    "train": "train",
}
ACTIVE, SUCCEEDED, FAILED = "active", "succeeded", "failed"
# Stage pods pass the 'restricted' Pod Security Standard unless a run says otherwise (the worker
# image runs as uid 10001).
RESTRICTED_POD = {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}
RESTRICTED_CONTAINER = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def job_name(run: str, step: int, stage: str, attempt: int) -> str:
    """`<run>-<step>-<stage>-<attempt>`; a long run name is cut and made unique by a hash."""
    tail = f"-{step}-{stage}-{attempt}"
    if len(run) + len(tail) <= MAX_NAME:
        return run + tail
    digest = hashlib.sha256(run.encode()).hexdigest()[:6]
    keep = MAX_NAME - len(tail) - len(digest) - 1
    return f"{run[:keep].rstrip('-')}-{digest}{tail}"


def job_labels(run: SoarRun, step: int, stage: str, attempt: int) -> dict[str, str]:
    name = run.metadata.name
    labels = {
        "app.kubernetes.io/name": "soar",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": stage,
        "app.kubernetes.io/part-of": "soar",
        "app.kubernetes.io/managed-by": "soar-operator",
        LABEL_RUN: name,
        LABEL_STEP: str(step),
        LABEL_STAGE: stage,
        LABEL_ATTEMPT: str(attempt),
    }
    run_labels = getattr(run.metadata, "labels", None) or {}
    for kueue in (QUEUE_LABEL, PRIORITY_LABEL):
        if run_labels.get(kueue):
            labels[kueue] = run_labels[kueue]
    return labels


def pod_settings(run: SoarRun, stage: str, defaults: PodSettings) -> PodSettings:
    """Operator defaults < spec.pods.default < spec.pods.<stage>, field by field."""
    layers = [defaults, run.spec.pods.default, getattr(run.spec.pods, POD_FIELDS[stage])]
    merged: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            merged.update(layer.model_dump(exclude_none=True))
    return PodSettings.model_validate(merged)


def missing_image(run: SoarRun, defaults: PodSettings) -> str | None:
    """The first stage that would get no worker image, as a one-line reason."""
    for stage, field in POD_FIELDS.items():
        if not pod_settings(run, stage, defaults).image:
            return (
                f"spec.pods.{field}.image: required (set spec.pods.default.image; the operator "
                "has no default worker image)"
            )
    return None


def job_manifest(
    run: SoarRun, uid: str, step: int, stage: str, attempt: int, defaults: PodSettings
) -> dict[str, Any]:
    """The batch/v1 Job for one stage attempt: owned by the run, credentials by reference only."""
    spec = run.spec
    pods = pod_settings(run, stage, defaults)
    labels = job_labels(run, step, stage, attempt)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": pods.image,
        "command": Stage(stage, step).argv(spec.storage.uri),
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": RESTRICTED_CONTAINER
        if pods.containerSecurityContext is None
        else pods.containerSecurityContext,
    }
    env = list(pods.env or [])
    env += [{"name": k, "value": v} for k, v in spec.storage.s3_options().env().items()]
    # the stage archives its own output under its pod's name (Jobs of old steps are deleted)
    env.append({"name": POD_NAME_ENV, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    optional = {
        "env": env,
        "envFrom": [{"secretRef": {"name": spec.storage.secretRef.name}}]
        if spec.storage.secretRef
        else None,
        "resources": pods.resources,
        "volumeMounts": pods.volumeMounts,
    }
    container.update({k: v for k, v in optional.items() if v})
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": RESTRICTED_POD if pods.securityContext is None else pods.securityContext,
        "containers": [container],
    }
    for field in ("nodeSelector", "tolerations", "affinity", "volumes", "imagePullSecrets"):
        if getattr(pods, field):
            pod_spec[field] = getattr(pods, field)
    for field in ("serviceAccountName", "priorityClassName"):
        if getattr(pods, field):
            pod_spec[field] = getattr(pods, field)
    pod_metadata: dict[str, Any] = {"labels": {**(pods.podLabels or {}), **labels}}
    if pods.podAnnotations:
        pod_metadata["annotations"] = pods.podAnnotations
    job_spec: dict[str, Any] = {
        "podFailurePolicy": {"rules": failure_rules()},
        "template": {"metadata": pod_metadata, "spec": pod_spec},
    }
    if stage == "student":
        count = len(student_groups(spec))  # one index per student stage
        job_spec.update(
            completionMode="Indexed",
            completions=count,
            parallelism=min(pods.parallelism or count, count),
            backoffLimitPerIndex=0,
        )
    else:
        job_spec["backoffLimit"] = 0
    if pods.activeDeadlineSeconds:
        job_spec["activeDeadlineSeconds"] = pods.activeDeadlineSeconds
    owner = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "name": run.metadata.name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name(run.metadata.name, step, stage, attempt),
            "labels": labels,
            "ownerReferences": [owner],
        },
        "spec": job_spec,
    }


def failure_rules() -> list[dict[str, Any]]:
    """Exit 2 fails the Job at once; disruptions and SIGTERM are the Job controller's to redo."""
    return [
        {
            "action": "FailJob",
            "onExitCodes": {
                "containerName": CONTAINER,
                "operator": "In",
                "values": [EXIT_PERMANENT],
            },
        },
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        {
            "action": "Ignore",
            "onExitCodes": {
                "containerName": CONTAINER,
                "operator": "In",
                "values": [EXIT_TERMINATED],
            },
        },
    ]


@dataclass(frozen=True)
class JobView:
    """What the operator needs to know about one of its Jobs."""

    name: str
    uid: str
    stage: str
    step: int
    attempt: int
    state: str  # active | succeeded | failed
    finished_at: float | None = None
    reason: str = ""
    message: str = ""
    deleting: bool = False
    running: bool = False  # a pod of it is ready
    pods: int = 0  # its pods that exist and have not ended (the Job's status.active)
    suspended: bool = False  # spec.suspend: held, as Kueue holds a Job until it admits it
    created_at: float | None = None
    started_at: float | None = None  # status.startTime: set when it starts (Kueue: on admission)

    @property
    def permanent(self) -> bool:
        """Failed through the FailJob rule: the stage exited 2."""
        return self.state == FAILED and self.reason == "PodFailurePolicy"


def job_view(body: dict[str, Any]) -> JobView | None:
    """A Job as the operator sees it; None for a Job without well-formed soar.dev labels."""
    meta = body.get("metadata") or {}
    labels = meta.get("labels") or {}
    try:
        step, attempt = int(labels[LABEL_STEP]), int(labels[LABEL_ATTEMPT])
        stage = labels[LABEL_STAGE]
    except (KeyError, ValueError):
        return None
    state, finished_at, reason, message = ACTIVE, None, "", ""
    for cond in (body.get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Complete", "Failed"):
            state = SUCCEEDED if cond["type"] == "Complete" else FAILED
            finished_at = parse_time(cond.get("lastTransitionTime"))
            reason, message = cond.get("reason") or "", cond.get("message") or ""
    return JobView(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        stage=stage,
        step=step,
        attempt=attempt,
        state=state,
        finished_at=finished_at,
        reason=reason,
        message=message,
        deleting=bool(meta.get("deletionTimestamp")),
        running=bool((body.get("status") or {}).get("ready")),
        pods=int((body.get("status") or {}).get("active") or 0),
        suspended=bool((body.get("spec") or {}).get("suspend")),
        created_at=parse_time(meta.get("creationTimestamp")),
        started_at=parse_time((body.get("status") or {}).get("startTime")),
    )


def parse_time(value: str | None) -> float | None:
    return dt.datetime.fromisoformat(value).timestamp() if value else None


def format_time(value: float) -> str:
    return dt.datetime.fromtimestamp(value, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
