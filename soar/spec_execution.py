"""The manifest's sections about how a run executes, not what it computes: storage, pods,
retries and local execution. A resumed run may change these (runstate.OPERATIONAL_FIELDS)."""

import json
from typing import Any, Literal

from pydantic import Field, model_validator

from soar.spec_base import Model
from soar.store_s3 import S3Options

MAX_LIST_ITEMS = 256  # entries of a list field of the pod settings
MAX_FREE_FORM_BYTES = 64 * 1024  # one free-form field of the pod settings, as JSON


class SecretRef(Model):
    name: str = Field(min_length=1, description="Name of a Secret in the run's namespace.")


class Storage(Model):
    uri: str | None = Field(
        None,
        description="Run store: file:///path or s3://bucket/prefix. Default: a folder named "
        "after the run in the working directory.",
        pattern=r"^(file://|s3://).+",
    )
    endpoint: str | None = Field(
        None, max_length=2048, description="S3 endpoint URL, e.g. MinIO or Ceph (default: AWS)."
    )
    region: str | None = Field(None, max_length=64, description="S3 region.")
    addressingStyle: Literal["path", "virtual"] | None = Field(
        None, description="S3 addressing style (default: path with a custom endpoint)."
    )
    retrySeconds: float = Field(
        300.0,
        ge=0,
        le=86400,
        description="How long stages retry an unreachable or overloaded S3 endpoint (with "
        "exponential backoff) before failing.",
    )
    secretRef: SecretRef | None = Field(
        None,
        description="Secret whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, ...) become the "
        "stages' environment. Credentials never appear in the manifest, status or logs.",
    )

    def s3_options(self) -> S3Options:
        """What the executors give every stage (through its environment) to reach the store."""
        return S3Options(self.endpoint, self.region, self.addressingStyle, self.retrySeconds)


class PodSettings(Model):
    """Pod settings for a stage's Jobs, over the operator's defaults (Kubernetes field names)."""

    image: str | None = Field(None, max_length=512, description="Worker image.")
    resources: dict[str, Any] | None = Field(None, description="Container resources.")
    nodeSelector: dict[str, str] | None = None
    tolerations: list[dict[str, Any]] | None = Field(None, max_length=MAX_LIST_ITEMS)
    affinity: dict[str, Any] | None = None
    volumes: list[dict[str, Any]] | None = Field(None, max_length=MAX_LIST_ITEMS)
    volumeMounts: list[dict[str, Any]] | None = Field(None, max_length=MAX_LIST_ITEMS)
    env: list[dict[str, Any]] | None = Field(
        None, max_length=MAX_LIST_ITEMS, description="Extra container env entries."
    )
    serviceAccountName: str | None = Field(None, max_length=253)
    imagePullSecrets: list[dict[str, Any]] | None = Field(None, max_length=MAX_LIST_ITEMS)
    parallelism: int | None = Field(
        None, ge=1, description="Pods at once for the indexed student Job (default: all)."
    )
    securityContext: dict[str, Any] | None = Field(
        None,
        description="The pod's securityContext, replacing the default that passes the "
        "'restricted' Pod Security Standard: runAsNonRoot, seccompProfile RuntimeDefault.",
    )
    containerSecurityContext: dict[str, Any] | None = Field(
        None,
        description="The stage container's securityContext, replacing the restricted default: "
        "allowPrivilegeEscalation false, capabilities drop ALL.",
    )
    priorityClassName: str | None = Field(None, max_length=253, description="Pod priority.")
    activeDeadlineSeconds: int | None = Field(
        None,
        ge=1,
        description="Seconds one attempt of the stage may take (the Job's activeDeadlineSeconds): "
        "a hung stage gives its GPUs back, and the timeout counts as a failed attempt.",
    )
    podLabels: dict[str, str] | None = Field(
        None, description="Extra pod labels (the operator's own soar.dev/* labels win)."
    )
    podAnnotations: dict[str, str] | None = Field(None, description="Extra pod annotations.")

    @model_validator(mode="after")
    def _bounded(self) -> "PodSettings":
        """Free-form Kubernetes fields are passed through as they are, but not without bound."""
        free_form = ("resources", "nodeSelector", "tolerations", "affinity", "volumes", "env")
        free_form += ("securityContext", "containerSecurityContext", "podLabels", "podAnnotations")
        for name in free_form:
            value = getattr(self, name)
            if value is not None and len(json.dumps(value)) > MAX_FREE_FORM_BYTES:
                raise ValueError(f"{name}: larger than {MAX_FREE_FORM_BYTES // 1024} KiB as JSON")
        return self


class Pods(Model):
    """Per-stage pod settings; each stage's settings override `default` field by field."""

    default: PodSettings = Field(default_factory=PodSettings)
    prepare: PodSettings | None = None
    teacherGenerate: PodSettings | None = None
    baseline: PodSettings | None = None
    student: PodSettings | None = None
    teacherUpdate: PodSettings | None = None
    evaluate: PodSettings | None = None
    train: PodSettings | None = Field(None, description="A fresh student's train stages.")


class Retries(Model):
    limit: int = Field(
        3,
        ge=0,
        le=100,
        description="Failed attempts of a stage before the run "
        "fails (evictions and preemptions do not count).",
    )
    backoffSeconds: float = Field(10.0, ge=0, description="Wait before the first retry; doubles.")
    maxBackoffSeconds: float = Field(600.0, ge=0, description="Longest wait between retries.")


class Cleanup(Model):
    keepSteps: int | None = Field(
        3,
        ge=0,
        description="In-cluster: the Jobs (and pods) of the last keepSteps committed steps are "
        "kept; older Jobs of completed work are deleted (each stage archives its own output to "
        "the store's logs/ first). Failed attempts of work not yet completed are always kept: "
        "retries are counted from them. null: keep every Job until the run is deleted.",
    )


class Execution(Model):
    parallelism: int = Field(2, ge=1, le=256, description="Stages run at once by `soar run`.")
    threadsPerStage: int = Field(1, ge=1, le=256, description="Torch threads in each stage.")
