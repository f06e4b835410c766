"""What to do next for one SoarRun: a pure function of what the operator can observe now.

`decide` sees the spec, the completion manifests in the run store, the run's Jobs and the clock,
and nothing the operator remembers, so an operator killed at any moment and started again takes
the same decision. Attempts are counted from the Jobs themselves: a stage's next attempt is one
more than its last failed Job, and a Job deleted while it ran is created again under its own
name and attempt number.
"""

from collections.abc import Iterable
from dataclasses import dataclass

from soar.contract import Phase
from soar.planner import (
    Stage,
    committed_step,
    is_complete,
    plan,
    student_groups,
    total_steps,
)
from soar.spec import SoarRunSpec
from soar.spec_execution import Retries
from soar_operator.jobs import ACTIVE, SUCCEEDED, JobView

# A Job can report success a moment before a shared filesystem shows the manifest it wrote.
MANIFEST_GRACE_SECONDS = 30.0


@dataclass(frozen=True)
class Unit:
    """One Job's worth of work: a stage at a step, all student indexes together."""

    stage: str
    step: int


@dataclass(frozen=True)
class UnitState:
    """Where a planned unit stands: running, starting now, backing off, or held by suspend."""

    unit: Unit
    attempt: int
    state: str
    retry_at: float | None = None


@dataclass(frozen=True)
class Decision:
    phase: Phase
    reason: str
    message: str
    units: tuple[UnitState, ...] = ()
    delete: tuple[str, ...] = ()
    failure: JobView | None = None  # the latest failed attempt, if any
    started_at: float | None = None
    queued_at: float | None = None  # since when every live Job is held suspended

    @property
    def create(self) -> list[UnitState]:
        """Jobs to create now: only a run that goes on starts anything."""
        if self.phase not in (Phase.PENDING, Phase.RUNNING):
            return []
        return [u for u in self.units if u.state == "starting"]


def backoff_seconds(retries: Retries, failures: int) -> float:
    """Wait before the attempt after the n-th failure: doubling from backoffSeconds, capped."""
    return min(retries.backoffSeconds * 2 ** (failures - 1), retries.maxBackoffSeconds)


def failed(
    reason: str, message: str, jobs: Iterable[JobView], started_at: float | None = None
) -> Decision:
    """A run that cannot go on (a CamelCase reason, a one-line message); its running Jobs stop."""
    return Decision(Phase.FAILED, reason, message, delete=_live(jobs), started_at=started_at)


def decide(
    spec: SoarRunSpec,
    frozen: SoarRunSpec,
    done: set[str],
    jobs: Iterable[JobView],
    now: float,
    started_at: float | None,
    queued_at: float | None = None,
) -> Decision:
    """The next step for a run: `spec` is the live manifest (suspend, retries, deadline), `frozen`
    the spec in the store (what to compute), `done` the completion manifests present;
    `started_at` and `queued_at` are from the run's status (startTime, queuedTime)."""
    jobs = list(jobs)
    live = _live(jobs)
    if is_complete(frozen, done):
        return Decision(
            Phase.SUCCEEDED,
            "RunSucceeded",
            f"all {total_steps(frozen)} steps done",
            delete=cleanup(spec, frozen, done, jobs),
            started_at=started_at,
        )
    by_unit: dict[Unit, list[JobView]] = {}
    for job in jobs:
        by_unit.setdefault(Unit(job.stage, job.step), []).append(job)
    units = list(dict.fromkeys(Unit(s.name, s.step) for s in plan(frozen, done)))
    failures: list[JobView] = []
    states = []
    for unit in units:
        state, unit_failures = _unit_state(unit, by_unit.get(unit, []), spec.retries, now)
        failures += unit_failures
        if any(j.permanent for j in unit_failures):
            job = next(j for j in unit_failures if j.permanent)
            return Decision(
                Phase.FAILED,
                "PermanentError",
                f"{_describe(unit)} failed with a permanent error (exit code 2), not retried",
                (UnitState(unit, job.attempt, "failed"),),
                delete=live,
                failure=job,
                started_at=started_at,
            )
        if len(unit_failures) > spec.retries.limit:
            return Decision(
                Phase.FAILED,
                "BackoffLimitExceeded",
                f"{_describe(unit)} failed {len(unit_failures)} times "
                f"(spec.retries.limit {spec.retries.limit})",
                (UnitState(unit, unit_failures[-1].attempt, "failed"),),
                delete=live,
                failure=unit_failures[-1],
                started_at=started_at,
            )
        states.append(state)
    # Queued: every live Job is held suspended (Kueue's webhook suspends a queued Job until it
    # admits it). The deadline clock stands still meanwhile: startTime moves on by the time
    # spent queued once the run leaves the queue.
    queued = [j for j in jobs if j.name in live and j.suspended]
    queued = queued if live and len(queued) == len(live) else []
    if queued:
        queued_at = queued_at if queued_at is not None else now
        clock = queued_at
    else:
        if queued_at is not None and started_at is not None:
            started_at += now - queued_at
        queued_at, clock = None, now
    deadline = spec.activeDeadlineSeconds
    if deadline and started_at is not None and clock - started_at > deadline:
        return Decision(
            Phase.FAILED,
            "DeadlineExceeded",
            f"the run did not finish within spec.activeDeadlineSeconds ({deadline} s)",
            tuple(states),
            delete=live,
            failure=_latest(failures),
            started_at=started_at,
        )
    steps = f"{committed_step(frozen, done)}/{total_steps(frozen)} steps done"
    if spec.suspend:
        # Hard suspend: running stages are stopped so their GPUs are free. A deleted Job counts
        # no attempt (attempts are counted from failed Jobs), and its work is redone on resume:
        # the store has everything committed before it.
        held = tuple(UnitState(s.unit, s.attempt, "held") for s in states)
        message = f"suspended with {steps}: no stage runs"
        if live:
            message += f"; stopping {len(live)} running stage(s)"
        return Decision(
            Phase.SUSPENDED, "Suspended", message, held, delete=live, failure=_latest(failures)
        )
    if queued:
        names = ", ".join(j.name for j in queued)
        return Decision(
            Phase.PENDING,
            "Queued",
            f"{steps}; queued: Job(s) {names} held suspended until Kueue admits their Workload",
            tuple(states),
            failure=_latest(failures),
            started_at=started_at,
            queued_at=queued_at,
        )
    if not done and not any(j.running or j.state != ACTIVE for j in jobs):
        phase, reason = Phase.PENDING, "WaitingForPods"
    elif any(s.state == "backoff" for s in states):
        phase, reason = Phase.RUNNING, "BackingOff"
    else:
        phase, reason = Phase.RUNNING, "StagesRunning"
    return Decision(
        phase,
        reason,
        f"{steps}; " + ", ".join(_describe_state(s) for s in states),
        tuple(states),
        delete=cleanup(spec, frozen, done, jobs),
        failure=_latest(failures),
        started_at=started_at if started_at is not None else now,
    )


def cleanup(
    spec: SoarRunSpec, frozen: SoarRunSpec, done: set[str], jobs: Iterable[JobView]
) -> tuple[str, ...]:
    """Finished Jobs of completed work older than the last spec.cleanup.keepSteps committed
    steps: the paper's run would otherwise keep ~800 Jobs. Their output is in the store (each
    stage archives its own log); a failed attempt goes only once its work has completed, so the
    attempts of unfinished work, which retries are counted from, stay."""
    keep = spec.cleanup.keepSteps
    if keep is None:
        return ()
    last = committed_step(frozen, done) - keep
    return tuple(
        j.name
        for j in jobs
        if j.state != ACTIVE and not j.deleting and j.step <= last and _completed(j, frozen, done)
    )


def _completed(job: JobView, spec: SoarRunSpec, done: set[str]) -> bool:
    """Whether the work of a Job's stage and step is done (every student index of a student Job)."""
    indexes = range(len(student_groups(spec))) if job.stage == "student" else [None]
    return all(Stage(job.stage, job.step, i).key in done for i in indexes)


def _unit_state(
    unit: Unit, jobs: list[JobView], retries: Retries, now: float
) -> tuple[UnitState, list[JobView]]:
    """A planned unit's state and its counted failures, from its Jobs alone."""
    jobs = sorted(jobs, key=lambda j: j.attempt)
    waiting, failures = [], []
    for job in jobs:
        if job.state == ACTIVE or job.deleting:
            waiting.append(job)
        elif job.state == SUCCEEDED and now - (job.finished_at or now) < MANIFEST_GRACE_SECONDS:
            waiting.append(job)  # succeeded: its manifest is on the way
        else:
            failures.append(job)  # failed, or succeeded without writing its manifest
    if waiting:
        return UnitState(unit, max(j.attempt for j in waiting), "running"), failures
    if not failures:
        return UnitState(unit, 1, "starting"), failures
    last = failures[-1]
    retry_at = (last.finished_at or now) + backoff_seconds(retries, len(failures))
    state = "starting" if now >= retry_at else "backoff"
    return UnitState(unit, last.attempt + 1, state, retry_at), failures


def _live(jobs: Iterable[JobView]) -> tuple[str, ...]:
    return tuple(j.name for j in jobs if j.state == ACTIVE and not j.deleting)


def _latest(jobs: list[JobView]) -> JobView | None:
    return max(jobs, key=lambda j: j.finished_at or 0.0, default=None)


def _describe(unit: Unit) -> str:
    return "stage prepare" if unit.stage == "prepare" else f"stage {unit.stage} of step {unit.step}"


def _describe_state(state: UnitState) -> str:
    verb = {"running": "running", "starting": "starting", "backoff": "retrying soon"}[state.state]
    attempt = f" (attempt {state.attempt})" if state.attempt > 1 else ""
    return f"{state.unit.stage} {verb}{attempt}"
