"""One reconcile pass over one SoarRun: observe, decide (soar_operator.reconcile), act.

Observation reads the Jobs first and the run store second: a Job seen finished has already
written its completion manifest, so the store can never look behind the Jobs.
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from soar.contract import Phase
from soar.lease import Lease, LeaseHeld
from soar.runstate import completed, init_store
from soar.spec import SoarRun, SoarRunSpec, SpecError
from soar.spec_execution import PodSettings
from soar.store import Store, StoreError
from soar_operator import metrics
from soar_operator.cluster_run import InvalidRun, open_run_store, parse_cluster_run
from soar_operator.jobs import (
    ACTIVE,
    POD_FIELDS,
    JobView,
    job_manifest,
    parse_time,
)
from soar_operator.kube import InvalidJob, Kube, StoreSecretError
from soar_operator.progress import RECORD_FIELDS, read_progress
from soar_operator.reconcile import Decision, decide, failed
from soar_operator.status import Event, build_status, one_line, transitions

log = logging.getLogger(__name__)
PostEvent = Callable[[Mapping[str, Any], Event], None]
# Failed decisions whose cause is a stage attempt: their message ends with its error line.
JOB_FAILURES = ("PermanentError", "BackoffLimitExceeded")
LEASE_SECONDS = 300.0  # renewed at least every half of it while the run has stages to run
PROGRESS_FIELDS = ("step", "totalSteps", "progress", "passAtK", "passAtKStep", *RECORD_FIELDS)


# A Job normally has its pods within seconds; only one without pods for longer is looked up
# (at 100 runs, looking up every pod-less Job was half the operator's API requests).
POD_CREATION_GRACE_SECONDS = 20.0
# A pod-less Job's refusal is looked up again at most this often (at 100 runs on 2 cores, pods
# often take longer than the grace to appear, and the lookups were 3.7 of 8.5 requests a stage).
REFUSAL_RECHECK_SECONDS = 30.0


class Controller:
    """Reconciles SoarRuns; `post` sends an Event about a run (kopf's event API in production)."""

    def __init__(
        self,
        kube: Kube,
        pod_defaults: PodSettings,
        post: PostEvent,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kube = kube
        self.pod_defaults = pod_defaults
        self.post = post
        self.clock = clock

    def reconcile(
        self, body: Mapping[str, Any], jobs: Iterable[JobView], memo: MutableMapping[str, Any]
    ) -> dict[str, Any]:
        """One pass; `memo` keeps, per run, the status last written (the watched copy of the
        run may lag behind it) and the frozen spec of the generation last checked."""
        start = time.perf_counter()
        try:
            status, wrote = self._reconcile(body, list(jobs), memo)
        except Exception:
            metrics.RECONCILES.labels("error").inc()
            raise
        metrics.RECONCILE_SECONDS.labels("write" if wrote else "noop").observe(
            time.perf_counter() - start
        )
        metrics.RECONCILES.labels("ok").inc()
        return status

    def _reconcile(
        self, body: Mapping[str, Any], jobs: list[JobView], memo: MutableMapping[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The new status, and whether the pass wrote anything through the API."""
        meta = body["metadata"]
        namespace, name = meta["namespace"], meta["name"]
        previous = memo.get("status") or dict(body.get("status") or {})
        if Phase(previous.get("phase") or Phase.PENDING).terminal and previous.get(
            "observedGeneration"
        ) == meta.get("generation"):
            # an ended run's store no longer changes: it is not read again until its spec does
            if self._expired(body, previous):
                log.info("%s/%s: deleted after spec.ttlSecondsAfterFinished", namespace, name)
                self.kube.delete_run(namespace, name)
                return previous, True
            metrics.mirror(namespace, name, previous)
            return previous, False
        now = self.clock()
        run, store, decision, progress = self._decide(body, jobs, memo, previous, now)
        last_failure = self._last_failure(namespace, decision.failure, previous)
        if decision.phase == Phase.FAILED and decision.reason in JOB_FAILURES and last_failure:
            detail = last_failure.split(": ", 1)[1]
            decision = replace(decision, message=f"{decision.message}: {detail}")
        decision = self._explain_missing_pods(namespace, jobs, decision, memo, now)
        if run is not None:
            decision = self._hold_lease(store, f"{namespace}/{name}", memo, decision)
            try:
                self._create_jobs(body, run, decision)
            except InvalidJob as err:
                decision = failed("InvalidPodSettings", str(err), jobs, decision.started_at)
        for job in decision.delete:
            self.kube.delete_job(namespace, job)

        generation = meta.get("generation")
        status = build_status(decision, progress, previous, generation, now, last_failure)
        if status != previous:
            patch = {k: status.get(k) for k in {*previous, *status}}
            self.kube.patch_status(namespace, name, patch)
            memo["status"] = status
            for event in transitions(previous, status):
                self.post(body, event)
        metrics.mirror(namespace, name, status)
        metrics.observe(namespace, name, jobs, status, now, run)
        return status, bool(decision.create or decision.delete or status != previous)

    def _expired(self, body: Mapping[str, Any], status: Mapping[str, Any]) -> bool:
        """An ended run past its spec.ttlSecondsAfterFinished (counted from completionTime)."""
        ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
        ended = parse_time(status.get("completionTime"))
        return ttl is not None and ended is not None and self.clock() - ended >= ttl

    def _hold_lease(
        self, store: Store, run_name: str, memo: MutableMapping[str, Any], decision: Decision
    ) -> Decision:
        """Only the holder of the run store's lease starts stages (a `soar run` on the same store
        would be a second writer); a run that has ended lets the lease go."""
        lease = Lease(store, f"soar-operator {run_name}", ttl=LEASE_SECONDS)
        if Phase(decision.phase).terminal:
            if memo.pop("leased", False):
                with contextlib.suppress(LeaseHeld):
                    lease.acquire()
                    lease.release()
            return decision
        if not decision.create and not memo.get("leased"):
            return decision  # nothing to start: no reason to take it yet
        try:
            lease.acquire()
        except LeaseHeld as err:
            memo.pop("leased", None)
            return Decision(decision.phase, "LeaseHeld", str(err), started_at=decision.started_at)
        memo["leased"] = True
        return decision

    def _decide(
        self,
        body: Mapping[str, Any],
        jobs: list[JobView],
        memo: MutableMapping[str, Any],
        previous: dict[str, Any],
        now: float,
    ) -> tuple[SoarRun | None, Store | None, Decision, dict[str, Any]]:
        """The run and its store (None if it cannot run), the decision, and the progress fields
        of status."""
        started_at = parse_time(previous.get("startTime"))
        kept = {k: previous[k] for k in PROGRESS_FIELDS if k in previous}
        try:
            run = parse_cluster_run(body, self.pod_defaults)
            store = open_run_store(self.kube, body["metadata"]["namespace"], run, memo)
        except InvalidRun as err:
            return None, None, failed("InvalidSpec", str(err), jobs, started_at), kept
        except StoreSecretError as err:
            return None, None, self._unavailable(err, previous, started_at), kept
        except StoreError as err:  # a URI no store can serve
            return None, None, failed("StoreError", str(err), jobs, started_at), kept
        try:
            frozen = self._frozen_spec(store, run, body["metadata"].get("generation"), memo)
            done = completed(store)
            progress = read_progress(store, frozen, done, previous)
        except SpecError as err:  # from init_store: the store holds another run
            return None, None, failed("SpecChanged", str(err), jobs, started_at), kept
        except (StoreError, OSError) as err:
            memo.pop("credentials", None)  # rotated keys are read again on the next pass
            return None, None, self._unavailable(err, previous, started_at), kept
        queued_at = parse_time(previous.get("queuedTime"))
        decision = decide(run.spec, frozen, done, jobs, now, started_at, queued_at)
        return run, store, decision, progress

    @staticmethod
    def _unavailable(
        err: Exception, previous: dict[str, Any], started_at: float | None
    ) -> Decision:
        """The run keeps its phase and waits for its store (the next pass tries again)."""
        if previous.get("phase") in (Phase.SUCCEEDED, Phase.FAILED):
            raise err  # an ended run has nothing new to say; kopf retries
        metrics.STORE_ERRORS.inc()
        phase = previous.get("phase") or Phase.PENDING
        message = f"run store unavailable, retrying: {err}"
        return Decision(phase, "StoreUnavailable", message, started_at=started_at)

    def _frozen_spec(
        self, store: Store, run: SoarRun, generation: int | None, memo: MutableMapping[str, Any]
    ) -> SoarRunSpec:
        """run.json's spec, written on first sight exactly as `soar run` writes it; checked
        against the manifest again only when the manifest changes (run.json never does)."""
        cached = memo.get("frozen")
        if cached is None or cached[0] != generation:
            cached = memo["frozen"] = (generation, init_store(store, run, Path("/")))
        return cached[1]

    def _create_jobs(self, body: Mapping[str, Any], run: SoarRun, decision: Decision) -> None:
        """Create the decided Jobs; InvalidJob names the stage's pod settings the server refused."""
        meta = body["metadata"]
        for unit in decision.create:
            stage, step, attempt = unit.unit.stage, unit.unit.step, unit.attempt
            manifest = job_manifest(run, meta["uid"], step, stage, attempt, self.pod_defaults)
            try:
                created = self.kube.create_job(meta["namespace"], manifest)
            except InvalidJob as err:
                where = f"spec.pods.{POD_FIELDS[stage]}, spec.pods.default"
                raise InvalidJob(f"pod settings of stage {stage} ({where}): {err}") from None
            if created:
                metrics.JOBS_CREATED.labels(stage).inc()
                job = manifest["metadata"]["name"]
                log.info("%s/%s: created Job %s", meta["namespace"], meta["name"], job)
                where = "prepare" if stage == "prepare" else f"{stage} of step {step}"
                self.post(
                    body, Event("Normal", "JobCreated", f"Job {job}: {where}, attempt {attempt}")
                )

    def _explain_missing_pods(
        self,
        namespace: str,
        jobs: list[JobView],
        decision: Decision,
        memo: MutableMapping[str, Any],
        now: float,
    ) -> Decision:
        """A live Job without pods may be one whose pods are refused: its FailedCreate reason
        goes into the message (otherwise the run would wait for pods with nothing said). Each
        Job's lookup is kept in the run's memo for REFUSAL_RECHECK_SECONDS."""
        if decision.phase not in (Phase.PENDING, Phase.RUNNING):
            return decision
        known = memo.get("podRefusals", {})  # job -> (looked up at, refusal)
        memo["podRefusals"] = {}
        for job in jobs:
            waited = now - (job.created_at or now)
            if (
                job.state == ACTIVE
                and not (job.deleting or job.running or job.pods or job.suspended)
                and waited > POD_CREATION_GRACE_SECONDS
            ):
                looked_up, refusal = known.get(job.name, (None, None))
                if looked_up is None or now - looked_up >= REFUSAL_RECHECK_SECONDS:
                    looked_up = now
                    refusal = self.kube.pod_creation_refusal(namespace, job.name)
                memo["podRefusals"][job.name] = (looked_up, refusal)
                if refusal:
                    message = f"{decision.message}; Job {job.name} cannot create pods: {refusal}"
                    return replace(decision, message=one_line(message))
        return decision

    def _last_failure(
        self, namespace: str, job: JobView | None, previous: dict[str, Any]
    ) -> str | None:
        """`<job>: exit <code>: <error line>` for the latest failed attempt, looked up once."""
        known = previous.get("lastFailure")
        if job is None or (known and known.startswith(f"{job.name}: ")):
            return known
        metrics.STAGE_FAILURES.labels(job.stage).inc()
        return one_line(f"{job.name}: {self.kube.failure_detail(namespace, job)}", 512)
