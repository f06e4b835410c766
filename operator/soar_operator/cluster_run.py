"""A SoarRun as the operator reads it: the manifest checked for what only an in-cluster run needs,
and its store opened with the run's own credentials (docs/design.md, "S3")."""

import time
from collections.abc import Mapping, MutableMapping
from dataclasses import replace
from typing import Any

from pydantic import ValidationError

from soar.manifest import error_lines
from soar.spec import SoarRun
from soar.spec_execution import PodSettings
from soar.store import Store, open_store
from soar.store_s3 import S3Options
from soar_operator.jobs import missing_image
from soar_operator.kube import Kube

STORE_RETRY_SECONDS = 10.0
# The run's store Secret is read again this often (a rotated key is picked up within it).
CREDENTIALS_REFRESH_SECONDS = 300.0


class InvalidRun(ValueError):
    """A manifest that cannot run in-cluster; the message is one line naming the field(s)."""


def parse_cluster_run(body: Mapping[str, Any], pod_defaults: PodSettings) -> SoarRun:
    """The SoarRun as `soar validate` sees it, plus what only an in-cluster run needs."""
    meta = body.get("metadata") or {}
    doc = {
        "apiVersion": body.get("apiVersion"),
        "kind": body.get("kind"),
        "metadata": {k: meta[k] for k in ("name", "namespace", "labels") if k in meta},
        "spec": body.get("spec"),
    }
    try:
        run = SoarRun.model_validate(doc)
    except ValidationError as err:
        raise InvalidRun("; ".join(error_lines(err))) from None
    if not run.spec.storage.uri:
        raise InvalidRun(
            "spec.storage.uri: required in-cluster (file:// on a volume every stage mounts, "
            "or s3://bucket/prefix)"
        )
    for field in ("hardTrain", "hardTest"):
        value = getattr(run.spec.data, field)
        if value and "://" not in value and not value.startswith("/"):
            raise InvalidRun(f"spec.data.{field}: must be an absolute path or a URI in-cluster")
    image = missing_image(run, pod_defaults)
    if image:
        raise InvalidRun(image)
    return run


def operator_s3_options(run: SoarRun, credentials: dict[str, str] | None = None) -> S3Options:
    """The run's S3 settings, signed with `credentials` (the run's Secret) if given, and retried
    only briefly: a reconcile pass must not block for minutes (the next pass tries again and
    status says the store is unavailable)."""
    options = run.spec.storage.s3_options()
    retry = min(options.retry_seconds, STORE_RETRY_SECONDS)
    return replace(options, retry_seconds=retry, credentials=credentials)


def open_run_store(
    kube: Kube, namespace: str, run: SoarRun, memo: MutableMapping[str, Any]
) -> Store:
    """The run's store, signed with its own Secret's keys when it names one; StoreSecretError
    while that Secret cannot be read, StoreError for a URI no store serves."""
    credentials = store_credentials(kube, namespace, run, memo)
    return open_store(run.spec.storage.uri, operator_s3_options(run, credentials))


def store_credentials(
    kube: Kube, namespace: str, run: SoarRun, memo: MutableMapping[str, Any]
) -> dict[str, str] | None:
    """The keys of the run's own Secret for an s3:// store with spec.storage.secretRef (None:
    the operator's own identity), cached in the run's `memo`: read again every
    CREDENTIALS_REFRESH_SECONDS, or at once after the controller drops them on a store error."""
    ref = run.spec.storage.secretRef
    if ref is None or not (run.spec.storage.uri or "").startswith("s3://"):
        return None
    cached = memo.get("credentials")
    now = time.monotonic()
    if cached is None or cached[0] != ref.name or now - cached[1] > CREDENTIALS_REFRESH_SECONDS:
        cached = memo["credentials"] = (ref.name, now, kube.store_credentials(namespace, ref.name))
    return cached[2]
