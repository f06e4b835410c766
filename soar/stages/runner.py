"""Runs one stage by name: `soar stage <name> --run <uri> --step <t> [--index i]`.

A completed stage (its manifest exists) is a no-op; otherwise the stage runs and its completion
manifest is written last, with an exclusive create, so a crashed stage left no manifest and is
simply run again (docs/design.md, "Stages and the commit protocol").
"""

import json
import time
from collections.abc import Callable

import torch

from soar import layout
from soar.planner import Stage
from soar.runstate import Run, StageError
from soar.stages.evaluate import evaluate
from soar.stages.fresh import train
from soar.stages.outer_step import baseline, student, teacher_generate, teacher_update
from soar.stages.prepare import prepare
from soar.store import RecordError, Store, read_json

StageFunction = Callable[[Run, int, int | None], dict]

STAGES: dict[str, StageFunction] = {
    "prepare": prepare,
    "teacher-generate": teacher_generate,
    "baseline": baseline,
    "student": student,
    "teacher-update": teacher_update,
    "evaluate": evaluate,
    "train": train,
}


def run_stage(store: Store, name: str, step: int, index: int | None) -> dict:
    """Run one stage unless its completion manifest exists; write the manifest last."""
    if name not in STAGES:
        raise StageError(f"unknown stage {name!r}; one of {', '.join(STAGES)}")
    stage = Stage(name, step, index)
    done = layout.done(stage.key)
    damaged = False
    if store.exists(done):
        try:
            return read_json(store, done)
        except RecordError:
            damaged = True  # written whole, damaged since: run the stage again and replace it
    run = Run.open(store)
    torch.set_num_threads(run.spec.execution.threadsPerStage)
    torch.manual_seed(run.spec.seed)
    started = time.time()
    summary = STAGES[name](run, step, index)
    manifest = {
        "stage": name,
        "step": step,
        "index": index,
        "started": started,
        "seconds": round(time.time() - started, 3),
        "summary": summary,
    }
    data = json.dumps(manifest, sort_keys=True).encode()
    if damaged:
        store.write_bytes(done, data)
    elif not store.create(done, data):
        raise RuntimeError(
            f"stage {stage.key}: completed by another writer while this one ran; only one "
            "executor may drive a run (see the lease in docs/design.md)"
        )
    return manifest
