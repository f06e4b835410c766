"""A run's story from its store: the one-screen summary `soar run` ends with."""

from soar.planner import committed_step, evaluation_steps
from soar.stages import Run
from soar.store import Store, read_json


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def step_records(run: Run, done: set[str]) -> list[dict]:
    return [run.record(t) for t in range(1, committed_step(run.spec, done) + 1)]


def evaluations(store: Store, run: Run) -> dict[int, dict]:
    return {
        t: read_json(store, f"eval/{t}.json")
        for t in evaluation_steps(run.spec)
        if store.exists(f"eval/{t}.json")
    }


def summary(store: Store, done: set[str]) -> str:
    """Steps, promotions, teacher reward and moving average, accuracy, pass@k, per step."""
    run = Run.open(store)
    records = step_records(run, done)
    lines = [f"run store: {store.uri}", ""]
    header = (
        f"{'step':>4}  {'reward':>7}  {'MA':>7}  {'promoted':>8}  {'base acc':>8}  {'vendi':>6}"
    )
    lines += [header, "-" * len(header)]
    for r in records:
        vendi = r.get("generation", {}).get("vendi")
        lines.append(
            f"{r['step']:>4}  {_fmt(r.get('teacher_reward'), True):>7}  "
            f"{_fmt(r.get('moving_average'), True):>7}  {'yes' if r.get('promoted') else '':>8}  "
            f"{_fmt(r.get('baseline_accuracy')):>8}  {_fmt(vendi):>6}"
        )
    promotions = records[-1]["promotions"] if records else 0
    lines += ["", f"steps: {len(records)}/{run.spec.steps}   promotions: {promotions}"]
    for t, ev in evaluations(store, run).items():
        ks = "  ".join(f"pass@{k}={v:.3f}" for k, v in ev["pass_at_k"].items())
        who = ev["baseline"] or "base model"
        lines.append(
            f"after step {t} ({who}): hard train accuracy {ev['hard_train_accuracy']:.3f}, "
            f"hard test ({ev['problems']} problems) {ks}"
        )
        if "ps" in ev:
            ps = ev["ps"]
            lines.append(f"PS (best promoted student): {ps['student'] or 'none (no promotion)'}")
    if store.exists("pq.jsonl"):
        lines.append(f"PQ: {len(store.read_bytes('pq.jsonl').splitlines())} questions in pq.jsonl")
    return "\n".join(lines)
