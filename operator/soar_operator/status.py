"""A SoarRun's status (cursor and summary, bounded in size) and the Events its changes deserve."""

from dataclasses import dataclass
from typing import Any

from soar.contract import Phase
from soar_operator.jobs import format_time
from soar_operator.reconcile import Decision

CONDITION_TYPES = ("Running", "Suspended", "Succeeded", "Failed", "CheckpointAvailable")
PHASE_OF_CONDITION = {
    "Running": Phase.RUNNING,
    "Suspended": Phase.SUSPENDED,
    "Succeeded": Phase.SUCCEEDED,
    "Failed": Phase.FAILED,
}
MAX_MESSAGE = 1024
# Reasons a user must act on while the run still goes on (a failed run always warns).
WARNING_REASONS = {"StoreUnavailable", "LeaseHeld"}


@dataclass(frozen=True)
class Event:
    type: str
    reason: str
    message: str


def one_line(text: str, limit: int = MAX_MESSAGE) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def build_status(
    decision: Decision,
    progress: dict[str, Any],
    previous: dict[str, Any],
    generation: int | None,
    now: float,
    last_failure: str | None = None,
) -> dict[str, Any]:
    """The whole status: phase and message from the decision, the rest mirrored from the store."""
    message = one_line(decision.message)
    ended = previous.get("completionTime") if previous.get("phase") == decision.phase else None
    terminal = decision.phase in (Phase.SUCCEEDED, Phase.FAILED)
    status: dict[str, Any] = {
        "phase": decision.phase,
        "reason": decision.reason,
        **progress,
        "stage": ",".join(dict.fromkeys(u.unit.stage for u in decision.units)) or None,
        "attempt": max((u.attempt for u in decision.units), default=None),
        "lastFailure": last_failure,
        "startTime": format_time(decision.started_at) if decision.started_at else None,
        "queuedTime": format_time(decision.queued_at) if decision.queued_at else None,
        "lastStepTime": last_step_time(progress, previous, now),
        "completionTime": (ended or format_time(now)) if terminal else None,
        "observedGeneration": generation,
        "message": message,
    }
    status["conditions"] = conditions(
        previous.get("conditions") or [], decision, message, progress.get("lastCheckpoint"), now
    )
    return {k: v for k, v in status.items() if v is not None}


def last_step_time(progress: dict[str, Any], previous: dict[str, Any], now: float) -> str | None:
    """When a pass first saw the latest committed step (so within one pass of its commit), or
    first wrote the field for a run already past step 0."""
    step = progress.get("step", 0)
    if step and (step > previous.get("step", 0) or "lastStepTime" not in previous):
        return format_time(now)
    return previous.get("lastStepTime")


def conditions(
    previous: list[dict[str, Any]],
    decision: Decision,
    message: str,
    checkpoint: str | None,
    now: float,
) -> list[dict[str, Any]]:
    """The five standard conditions; lastTransitionTime moves only when a status flips."""
    before = {c.get("type"): c for c in previous}
    out = []
    for kind in CONDITION_TYPES:
        if kind == "CheckpointAvailable":
            true = checkpoint is not None
            reason = "CheckpointSaved" if true else "NoCheckpoint"
            text = checkpoint or "no step committed yet"
        else:
            true = decision.phase == PHASE_OF_CONDITION[kind]
            reason, text = decision.reason, message if true else ""
        value = "True" if true else "False"
        old = before.get(kind, {})
        changed = old.get("status") != value
        out.append(
            {
                "type": kind,
                "status": value,
                "reason": reason,
                "message": text,
                "lastTransitionTime": format_time(now)
                if changed
                else old.get("lastTransitionTime", format_time(now)),
            }
        )
    return out


def transitions(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """Events for what changed between two statuses: a Warning for what failed (a stage attempt,
    the run), so `kubectl get events --field-selector type=Warning` lists every failure."""
    events = []
    failure = new.get("lastFailure")
    if failure and failure != old.get("lastFailure"):
        events.append(Event("Warning", "StageFailed", failure))
    if new.get("step", 0) > old.get("step", 0):
        events.append(Event("Normal", "StepCompleted", _step_summary(new)))
    if new.get("promotions", 0) > old.get("promotions", 0):
        events.append(
            Event(
                "Normal",
                "StudentPromoted",
                f"step {new['step']}: the baseline student was promoted "
                f"(promotion {new['promotions']})",
            )
        )
    if new.get("passAtKStep") is not None and new.get("passAtKStep") != old.get("passAtKStep"):
        scores = ", ".join(f"pass@{k}={v:.3f}" for k, v in new["passAtK"].items())
        events.append(
            Event("Normal", "Evaluated", f"hard test after step {new['passAtKStep']}: {scores}")
        )
    phase, before = new.get("phase"), old.get("phase")
    if phase != before:
        events.append(_phase_event(before, phase, new))
    elif new.get("reason") in WARNING_REASONS and new.get("reason") != old.get("reason"):
        events.append(Event("Warning", new["reason"], new.get("message", "")))
    elif new.get("reason") == "Queued" != old.get("reason"):  # e.g. Pending, still without pods
        events.append(Event("Normal", "Queued", new.get("message", "")))
    return events


def _phase_event(before: str | None, phase: str, new: dict[str, Any]) -> Event:
    message = new.get("message", "")
    if phase == Phase.FAILED or new.get("reason") in WARNING_REASONS:
        return Event("Warning", new.get("reason", phase), message)
    if phase == Phase.SUCCEEDED:
        return Event("Normal", "RunSucceeded", message)
    if phase == Phase.SUSPENDED:
        return Event("Normal", "Suspended", message)
    if new.get("reason") == "Queued":
        return Event("Normal", "Queued", message)
    reason = {None: "RunStarted", Phase.PENDING: "PodsRunning", Phase.SUSPENDED: "Resumed"}.get(
        before, "Restarted"
    )
    return Event("Normal", reason, message)


def _step_summary(status: dict[str, Any]) -> str:
    parts = [f"step {status['progress']}"]
    if status.get("teacherReward") is not None:
        parts.append(f"teacher reward {status['teacherReward']:+.4f}")
    if status.get("rewardMovingAverage"):
        parts.append(f"moving average {status['rewardMovingAverage']}")
    if status.get("baselineAccuracy") is not None:
        parts.append(f"baseline accuracy {status['baselineAccuracy']:.3f}")
    return ", ".join(parts)
