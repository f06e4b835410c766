"""A stand-in for `soar stage` in operator tests: it writes what the operator reads (completion
manifests, step records, evaluations) in a fraction of a second, and misbehaves on request.

Tests put an executable `soar` that runs this module first on the pods' PATH (spec.pods env), so
the Jobs keep the operator's exact command line. RULES in the run store says how each stage
behaves, by stage name or `<step>/<stage>`:
{"sleep": seconds, "fail": n (exit 1 on the first n runs), "exit": code (on every run)}.
Every run of a stage leaves a file under RUNS/<stage key>/, so tests can count executions.
"""

import argparse
import json
import os
import sys
import time
import uuid

from soar import layout, records
from soar.contract import EXIT_TRANSIENT, POD_NAME_ENV, stage_index
from soar.planner import Stage
from soar.pod_log import archived_output
from soar.store import Store, open_store, read_json

# The stub's own keys in the run store, beside the run's layout.
RULES = "stub.json"
RUNS = "stub/runs"


def outputs(store: Store, stage: Stage) -> None:
    """Deterministic step records and evaluations, of the real stages' types."""
    t = stage.step
    promotions = t // 2
    baseline = layout.promoted_student(promotions) if promotions else None
    if stage.name == "teacher-update":
        record = records.StepRecord(
            step=t,
            baseline=baseline,
            promotions=promotions,
            history=[],
            student_rewards=[],
            moving_average=0.005 * t,
            teacher_reward=0.01 * t,
            baseline_accuracy=0.1 + 0.01 * t,
        )
        layout.save(store, layout.step_record(t), record)
        layout.save(store, layout.STATE, records.State(step=t, promotions=promotions))
    elif stage.name == "evaluate":
        evaluation = records.Evaluation(
            step=t,
            baseline=baseline,
            problems=4,
            pass_at_k={1: round(0.05 * (t + 1), 3), 4: round(0.1 * (t + 1), 3)},
            hard_train_accuracy=0.0,
        )
        layout.save(store, layout.evaluation(t), evaluation)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["stage"])
    parser.add_argument("name")
    parser.add_argument("--run", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--index", type=int)
    args = parser.parse_args(argv)
    stage = Stage(args.name, args.step, stage_index(args.index))
    pod = os.environ.get(POD_NAME_ENV)
    if not pod:
        return run(args.run, stage)
    with archived_output(args.run, layout.pod_log(stage.key, pod)):  # as `soar stage` does
        return run(args.run, stage)


def run(uri: str, stage: Stage) -> int:
    """One run of the stage: its behaviour from RULES, its outputs the first time it succeeds."""
    store = open_store(uri)
    rules = read_json(store, RULES) if store.exists(RULES) else {}
    rule = {**rules.get(stage.name, {}), **rules.get(f"{stage.step}/{stage.name}", {})}
    earlier = len(store.list(f"{RUNS}/{stage.key}"))
    store.write_bytes(f"{RUNS}/{stage.key}/{uuid.uuid4().hex}", b"")
    print(f"stub {stage.key} run {earlier + 1}", flush=True)
    time.sleep(rule.get("sleep", 0))
    if rule.get("exit"):
        print(f"error: {stage.key}: stub exits {rule['exit']}", file=sys.stderr, flush=True)
        return rule["exit"]
    if earlier < rule.get("fail", 0):
        print(f"error: {stage.key}: injected failure {earlier + 1}", file=sys.stderr, flush=True)
        return EXIT_TRANSIENT
    done = layout.done(stage.key)
    if not store.exists(done):
        outputs(store, stage)
        manifest = {"stage": stage.name, "step": stage.step, "index": stage.index, "seconds": 0.0}
        store.create(done, json.dumps(manifest).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
