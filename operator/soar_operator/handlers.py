"""The kopf layer: when to reconcile a SoarRun, and where the operator's state lives.

Every handler calls the same reconcile pass (soar_operator.controller): on a timer, and at once
when a run is created, changes its spec or is found at start-up. The run's Jobs come from an
in-memory index that kopf keeps in sync through a watch, so a pass costs no API reads.
"""

import threading
from collections.abc import Mapping
from typing import Any

import kopf

from soar.contract import FINALIZER, GROUP, LABEL_RUN, LAST_HANDLED_ANNOTATION, PLURAL, VERSION
from soar_operator import metrics
from soar_operator.config import Config
from soar_operator.controller import Controller
from soar_operator.jobs import job_view
from soar_operator.kube import Kube
from soar_operator.status import Event

CONFIG = Config.from_env()


def operator_settings(identity: str) -> kopf.OperatorSettings:
    """kopf's settings: its annotations and finalizer under soar.dev, no cluster-wide scans."""
    settings = kopf.OperatorSettings()
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP, v1=False)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key=LAST_HANDLED_ANNOTATION, v1=False
    )
    settings.posting.reporting_component = "soar-operator"
    settings.posting.reporting_instance = identity
    settings.posting.event_name_prefix = "soar-"
    # Only the namespaces and resources known at start-up: no RBAC to list CRDs or namespaces.
    settings.scanning.disabled = True
    settings.peering.stealth = True
    # A run deleted while its timer is mid-reconcile (a sync handler, in a thread) waits for that
    # pass to end: up to a second, then checks every 2 s, instead of kopf's default minute.
    settings.background.instant_exit_timeout = 1.0
    settings.background.cancellation_polling = 2.0
    return settings


def post_event(body: Mapping[str, Any], event: Event) -> None:
    kopf.event(body, type=event.type, reason=event.reason, message=event.message)


@kopf.on.startup()
def start(memo: kopf.Memo, **_: Any) -> None:
    memo.controller = Controller(Kube(), CONFIG.pod_defaults, post_event)


@kopf.index("batch", "v1", "jobs", labels={LABEL_RUN: kopf.PRESENT})
def run_jobs(body: kopf.Body, namespace: str, labels: kopf.Labels, **_: Any) -> dict | None:
    """The operator's Jobs, by (namespace, run)."""
    view = job_view(dict(body))
    return {(namespace, labels[LABEL_RUN]): view} if view else None


def reconcile(body: kopf.Body, memo: kopf.Memo, run_jobs: kopf.Index) -> None:
    """One pass at a time per run; the Jobs are read inside the lock, before the store."""
    with memo.setdefault("lock", threading.Lock()):
        meta = body["metadata"]
        jobs = list(run_jobs.get((meta["namespace"], meta["name"]), []))
        memo.controller.reconcile(dict(body), jobs, memo)


@kopf.on.create(GROUP, VERSION, PLURAL)
def created(body: kopf.Body, memo: kopf.Memo, run_jobs: kopf.Index, **_: Any) -> None:
    reconcile(body, memo, run_jobs)


@kopf.on.resume(GROUP, VERSION, PLURAL)
def resumed(body: kopf.Body, memo: kopf.Memo, run_jobs: kopf.Index, **_: Any) -> None:
    reconcile(body, memo, run_jobs)


@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
def spec_changed(body: kopf.Body, memo: kopf.Memo, run_jobs: kopf.Index, **_: Any) -> None:
    reconcile(body, memo, run_jobs)


@kopf.timer(GROUP, VERSION, PLURAL, interval=CONFIG.interval, backoff=CONFIG.interval)
def tick(body: kopf.Body, memo: kopf.Memo, run_jobs: kopf.Index, **_: Any) -> None:
    reconcile(body, memo, run_jobs)


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
def deleted(namespace: str, name: str, **_: Any) -> None:
    """The run's Jobs go with it (owner references); only its metrics are left to drop."""
    metrics.forget(namespace, name)
