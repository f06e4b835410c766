"""A run's story from its store: the one-screen summary `soar run` ends with."""

from soar import layout, records
from soar.planner import committed_step, evaluation_steps, fresh_student, total_steps
from soar.runstate import Run
from soar.store import RecordError, Store


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _pass_at_k(values: dict) -> str:
    return "  ".join(f"pass@{k}={v:.3f}" for k, v in values.items())


def step_records(run: Run, done: set[str]) -> list[records.StepRecord | RecordError]:
    """The committed step records; one that cannot be read is its error, so the rest still show."""
    recorded: list[records.StepRecord | RecordError] = []
    for t in range(1, committed_step(run.spec, done) + 1):
        try:
            recorded.append(run.record(t))
        except RecordError as err:
            recorded.append(err)
    return recorded


def train_segments(run: Run, done: set[str]) -> list[records.TrainSegment | RecordError]:
    """A fresh student's committed train stages; one that cannot be read is its error."""
    segments: list[records.TrainSegment | RecordError] = []
    for t in range(1, committed_step(run.spec, done) + 1):
        try:
            segments.append(layout.load(run.store, layout.fresh_segment(t), records.TrainSegment))
        except RecordError as err:
            segments.append(err)
    return segments


def mean_reward(segment: records.TrainSegment) -> float:
    """The mean training reward of a train stage's RLOO steps."""
    return sum(s["reward"] for s in segment.steps) / len(segment.steps)


def evaluations(run: Run) -> dict[int, records.Evaluation | RecordError]:
    found: dict[int, records.Evaluation | RecordError] = {}
    for t in evaluation_steps(run.spec):
        if run.store.exists(layout.evaluation(t)):
            try:
                found[t] = layout.load(run.store, layout.evaluation(t), records.Evaluation)
            except RecordError as err:
                found[t] = err
    return found


def summary(store: Store, done: set[str]) -> str:
    """Steps, promotions, teacher reward and moving average, accuracy, pass@k, per step."""
    run = Run.open(store)
    if fresh_student(run.spec):
        return fresh_summary(run, done)
    recorded = step_records(run, done)
    lines = [f"run store: {store.uri}", ""]
    header = (
        f"{'step':>4}  {'reward':>7}  {'MA':>7}  {'promoted':>8}  {'base acc':>8}  {'vendi':>6}"
    )
    lines += [header, "-" * len(header)]
    for t, r in enumerate(recorded, start=1):
        if isinstance(r, RecordError):
            lines.append(f"{t:>4}  unreadable: {r}")
            continue
        vendi = (r.generation or {}).get("vendi")
        lines.append(
            f"{r.step:>4}  {_fmt(r.teacher_reward, True):>7}  "
            f"{_fmt(r.moving_average, True):>7}  {'yes' if r.promoted else '':>8}  "
            f"{_fmt(r.baseline_accuracy):>8}  {_fmt(vendi):>6}"
        )
    readable = [r for r in recorded if not isinstance(r, RecordError)]
    promotions = readable[-1].promotions if readable else 0
    lines += ["", f"steps: {len(recorded)}/{run.spec.steps}   promotions: {promotions}"]
    for t, ev in evaluations(run).items():
        if isinstance(ev, RecordError):
            lines.append(f"after step {t}: evaluation unreadable: {ev}")
            continue
        ks = _pass_at_k(ev.pass_at_k)
        who = ev.baseline or "base model"
        lines.append(
            f"after step {t} ({who}): hard train accuracy {_fmt(ev.hard_train_accuracy)}, "
            f"hard test ({ev.problems} problems) {ks}"
        )
        if ev.ps is not None:
            lines.append(f"PS (best promoted student): {ev.ps['student'] or 'none (no promotion)'}")
            if ev.ps.get("pass_at_k"):
                lines.append(f"PS on the hard test split: {_pass_at_k(ev.ps['pass_at_k'])}")
    if store.exists(layout.PQ):
        lines.append(f"PQ: {len(store.read_bytes(layout.PQ).splitlines())} questions in pq.jsonl")
    return "\n".join(lines)


def fresh_summary(run: Run, done: set[str]) -> str:
    """A fresh student: mean training reward per train stage, pass@k after each, and the
    protocol's result once the run is complete."""
    lines = [f"run store: {run.store.uri}", "", f"{'stage':>5}  {'RLOO steps':>10}  {'reward':>7}"]
    for t, segment in enumerate(train_segments(run, done), start=1):
        if isinstance(segment, RecordError):
            lines.append(f"{t:>5}  unreadable: {segment}")
            continue
        lines.append(f"{t:>5}  {segment.first:>4}-{segment.last:<5}  {mean_reward(segment):>7.2f}")
    lines += ["", f"train stages: {committed_step(run.spec, done)}/{total_steps(run.spec)}"]
    for t, ev in evaluations(run).items():
        if isinstance(ev, RecordError):
            lines.append(f"after stage {t}: evaluation unreadable: {ev}")
        else:
            lines.append(f"after {ev.step} RLOO steps: {_pass_at_k(ev.pass_at_k)}")
    if run.store.exists(layout.PROTOCOL_RESULT):
        result = layout.load(run.store, layout.PROTOCOL_RESULT, records.ProtocolResult)
        lines.append(
            f"chosen step {result.chosen_step}; pass@k averaged over steps "
            f"{result.evaluated_steps}: {_pass_at_k(result.pass_at_k)}"
        )
    return "\n".join(lines)
