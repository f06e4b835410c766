"""A stand-in for `soar stage` in operator tests: it writes what the operator reads (completion
manifests, step records, evaluations) in a fraction of a second, and misbehaves on request.

Tests put an executable `soar` that runs this module first on the pods' PATH (spec.pods env), so
the Jobs keep the operator's exact command line. `stub.json` in the run store says how each
stage behaves, by stage name or `<step>/<stage>`:
{"sleep": seconds, "fail": n (exit 1 on the first n runs), "exit": code (on every run)}.
Every run of a stage leaves a file under stub/runs/<key>/, so tests can count executions.
"""

import argparse
import json
import os
import sys
import time
import uuid

from soar.planner import Stage, done_key
from soar.store import open_store, read_json, write_json


def outputs(store, stage: Stage) -> None:
    """Deterministic step records and evaluations, shaped like the real stages' files."""
    t = stage.step
    if stage.name == "teacher-update":
        record = {
            "step": t,
            "baseline": f"checkpoints/student/{t // 2}" if t >= 2 else None,
            "promotions": t // 2,
            "teacher_reward": 0.01 * t,
            "moving_average": 0.005 * t,
            "baseline_accuracy": 0.1 + 0.01 * t,
            "history": [],
        }
        write_json(store, f"steps/{t}/record.json", record)
        write_json(store, "state.json", {"step": t, "promotions": t // 2})
    elif stage.name == "evaluate":
        scores = {"1": round(0.05 * (t + 1), 3), "4": round(0.1 * (t + 1), 3)}
        write_json(store, f"eval/{t}.json", {"step": t, "pass_at_k": scores, "problems": 4})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["stage"])
    parser.add_argument("name")
    parser.add_argument("--run", required=True)
    parser.add_argument("--step", type=int, required=True)
    parser.add_argument("--index", type=int)
    args = parser.parse_args(argv)
    index = args.index
    if index is None and os.environ.get("JOB_COMPLETION_INDEX"):
        index = int(os.environ["JOB_COMPLETION_INDEX"])
    store = open_store(args.run)
    stage = Stage(args.name, args.step, index)
    rules = read_json(store, "stub.json") if store.exists("stub.json") else {}
    rule = {**rules.get(stage.name, {}), **rules.get(f"{stage.step}/{stage.name}", {})}
    earlier = len(store.list(f"stub/runs/{stage.key}"))
    store.write_bytes(f"stub/runs/{stage.key}/{uuid.uuid4().hex}", b"")
    print(f"stub {stage.key} run {earlier + 1}", flush=True)
    time.sleep(rule.get("sleep", 0))
    if rule.get("exit"):
        print(f"error: {stage.key}: stub exits {rule['exit']}", file=sys.stderr, flush=True)
        return rule["exit"]
    if earlier < rule.get("fail", 0):
        print(f"error: {stage.key}: injected failure {earlier + 1}", file=sys.stderr, flush=True)
        return 1
    if not store.exists(done_key(stage)):
        outputs(store, stage)
        manifest = {"stage": stage.name, "step": stage.step, "index": index, "seconds": 0.0}
        store.create(done_key(stage), json.dumps(manifest).encode())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
