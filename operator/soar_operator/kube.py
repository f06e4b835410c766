"""The operator's own API calls (kopf does the watching and the Events), each one timed."""

import base64
import json
from typing import Any

from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.config.config_exception import ConfigException

from soar.contract import GROUP, PLURAL, VERSION
from soar.store_errors import StoreError
from soar.store_s3 import CREDENTIAL_KEYS
from soar_operator import metrics
from soar_operator.jobs import CONTAINER, JobView

MERGE_PATCH = "application/merge-patch+json"


class StoreSecretError(StoreError):
    """A run's store Secret cannot be read (missing, or not granted to the operator)."""


class InvalidJob(ValueError):
    """The API server refused a Job as malformed: the run's pod settings are wrong."""


def _error_line(text: str) -> str:
    """The line of a stage's output that says what went wrong: the CLI's `error:` line if any."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return next(
        (line for line in reversed(lines) if line.startswith("error:")), lines[-1] if lines else ""
    )


def _api_message(err: ApiException) -> str:
    try:
        return json.loads(err.body)["message"]
    except (TypeError, ValueError, KeyError):
        return f"{err.status} {err.reason}"


class Kube:
    """Jobs, pods and SoarRun status through the kubernetes client, in-cluster or by kubeconfig."""

    def __init__(self) -> None:
        try:
            config.load_incluster_config()
        except ConfigException:
            config.load_kube_config()
        api = client.ApiClient()
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    def create_job(self, namespace: str, manifest: dict[str, Any]) -> bool:
        """True if created; False if a Job of that name exists (created before, or by a peer)."""
        with metrics.api_call("create", "jobs"):
            try:
                self.batch.create_namespaced_job(namespace, manifest)
            except ApiException as err:
                if err.status == 409:
                    return False
                if err.status in (400, 422):
                    raise InvalidJob(_api_message(err)) from None
                raise
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Delete a Job and, in the background, its pods (their processes get SIGTERM)."""
        with metrics.api_call("delete", "jobs"):
            try:
                self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
            except ApiException as err:
                if err.status != 404:
                    raise

    def delete_run(self, namespace: str, name: str) -> None:
        """Delete a SoarRun (its Jobs follow through their owner references)."""
        with metrics.api_call("delete", "soarruns"):
            try:
                self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            except ApiException as err:
                if err.status != 404:
                    raise

    def patch_status(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        with metrics.api_call("patch", "soarruns/status"):
            try:
                self.custom.patch_namespaced_custom_object_status(
                    GROUP,
                    VERSION,
                    namespace,
                    PLURAL,
                    name,
                    {"status": patch},
                    _content_type=MERGE_PATCH,
                )
            except ApiException as err:
                if err.status != 404:  # deleted meanwhile: nothing left to report on
                    raise

    def store_credentials(self, namespace: str, secret: str) -> dict[str, str]:
        """The signing keys of a run's store Secret (spec.storage.secretRef); nothing else in it
        is read out. The values are never logged: errors name only the Secret."""
        with metrics.api_call("get", "secrets"):
            try:
                body = self.core.read_namespaced_secret(secret, namespace)
            except ApiException as err:
                where = f"spec.storage.secretRef: Secret {namespace}/{secret}"
                if err.status == 404:
                    raise StoreSecretError(f"{where} not found") from None
                if err.status == 403:
                    raise StoreSecretError(
                        f"{where}: the operator may not read it (bind the chart's ClusterRole "
                        "<release>-soar-operator-store-credentials in this namespace, see the "
                        "README, 'Store credentials')"
                    ) from None
                raise
        data = body.data or {}
        return {k: base64.b64decode(data[k]).decode() for k in CREDENTIAL_KEYS if data.get(k)}

    def pod_creation_refusal(self, namespace: str, job: str) -> str | None:
        """The Job controller's latest FailedCreate message for a Job (Pod Security admission,
        a quota, a missing ServiceAccount), or None when it has created its pods."""
        selector = f"involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"
        with metrics.api_call("list", "events"):
            events = self.core.list_namespaced_event(namespace, field_selector=selector).items
        latest = max(
            events,
            key=lambda e: e.last_timestamp or e.event_time or e.metadata.creation_timestamp,
            default=None,
        )
        return latest.message if latest else None

    def failure_detail(self, namespace: str, job: JobView) -> str:
        """`exit <code>: <error line>` from the failed pod's termination message (the end of its
        output), or the Job's own condition message when its pods are gone."""
        with metrics.api_call("list", "pods"):
            pods = self.core.list_namespaced_pod(
                namespace, label_selector=f"batch.kubernetes.io/controller-uid={job.uid}"
            ).items
        details = []
        for pod in sorted(pods, key=lambda p: p.metadata.creation_timestamp):
            for status in (pod.status and pod.status.container_statuses) or []:
                ended = status.state and status.state.terminated
                if status.name == CONTAINER and ended and ended.exit_code:
                    line = _error_line(ended.message or "")
                    details.append(f"exit {ended.exit_code}" + (f": {line}" if line else ""))
        return details[-1] if details else (job.message or job.reason or "failed")
