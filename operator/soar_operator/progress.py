"""Run progress mirrored from the store into status: the latest step record and evaluation only,
so status stays the same size however many steps the run has."""

from typing import Any

from soar import layout, records
from soar.planner import Stage, committed_step, evaluation_steps, fresh_student, total_steps
from soar.spec import SoarRunSpec
from soar.store import Store

RECORD_FIELDS = (
    "promotions",
    "teacherReward",
    "rewardMovingAverage",
    "baselineAccuracy",
    "lastCheckpoint",
    "lastPromotionStep",
    "vendi",
)


def read_progress(
    store: Store, spec: SoarRunSpec, done: set[str], known: dict[str, Any]
) -> dict[str, Any]:
    """Status fields from the store; files are read again only when a newer one is committed."""
    step, total = committed_step(spec, done), total_steps(spec)
    out: dict[str, Any] = {"step": step, "totalSteps": total, "progress": f"{step}/{total}"}
    if known.get("step") == step and "promotions" in known:
        out.update({k: known[k] for k in RECORD_FIELDS if k in known})
    else:
        out.update(_record_fields(store, spec, step))
    evaluated = [t for t in evaluation_steps(spec) if Stage("evaluate", t).key in done]
    if evaluated and known.get("passAtKStep") == evaluated[-1] and "passAtK" in known:
        out.update(passAtK=known["passAtK"], passAtKStep=evaluated[-1])
    elif evaluated:
        result = layout.load(store, layout.evaluation(evaluated[-1]), records.Evaluation)
        passes = {str(k): float(v) for k, v in result.pass_at_k.items()}
        out.update(passAtK=passes, passAtKStep=evaluated[-1])
    return out


def _record_fields(store: Store, spec: SoarRunSpec, step: int) -> dict[str, Any]:
    if step == 0:
        return {"promotions": 0}
    if fresh_student(spec):  # no step records: one student, never promoted
        return {"promotions": 0, "lastCheckpoint": f"{store.uri}/{layout.fresh_checkpoint(step)}"}
    record = layout.load(store, layout.step_record(step), records.StepRecord)
    checkpoint = layout.teacher_checkpoint(step) if spec.mode == "soar" else record.baseline
    fields = {
        "promotions": record.promotions,
        "teacherReward": record.teacher_reward,
        "rewardMovingAverage": _signed(record.moving_average),
        "baselineAccuracy": record.baseline_accuracy,
        "lastCheckpoint": f"{store.uri}/{checkpoint}" if checkpoint else None,
        # the history holds R_hat since the last promotion (grounded reward only; see promotion.py)
        "lastPromotionStep": step - len(record.history) if spec.reward.kind == "grounded" else None,
        "vendi": (record.generation or {}).get("vendi"),
    }
    return {k: v for k, v in fields.items() if v is not None}


def _signed(value: float | None) -> str | None:
    return None if value is None else f"{value:+.4f}"
