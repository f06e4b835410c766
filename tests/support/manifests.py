"""SoarRun manifests for tests, and what a run decided, read back from its store."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from soar import layout
from soar.contract import API_VERSION, KIND
from soar.manifest import parse_run
from soar.spec import SoarRun

# The least a valid manifest needs.
MINIMAL: dict[str, Any] = {"data": {"builtin": "arith"}}

# A small run to plan and operate: 2 steps, 2 datasets x 2 repeats, evaluated every step.
SMALL: dict[str, Any] = {
    "steps": 2,
    "data": {"domain": "arith", "builtin": "arith"},
    "teacher": {"datasets": 2},
    "student": {"repeats": 2},
    "evaluation": {"every": 1, "samples": 4, "ks": [1, 4]},
}

# A whole run of the tiny model on the arith domain, small enough for a CPU: every step
# promotes (threshold -1, window 1), so PQ, promoted students and PS all get written.
TINY: dict[str, Any] = {
    "steps": 2,
    "seed": 3,
    "data": {"domain": "arith", "builtin": "arith", "poolSize": 60, "failK": 8},
    "teacher": {
        "datasets": 2,
        "questionsPerDataset": 4,
        "maxNewTokens": 64,
        "learningRate": 1e-4,
        "warmupSteps": 0,
    },
    "student": {
        "repeats": 2,
        "innerSteps": 2,
        "extraStepsAfterPromotion": 1,
        "batchQuestions": 2,
        "groupSize": 4,
        "maxNewTokens": 64,
        "learningRate": 1e-4,
    },
    "reward": {"questions": 8},
    "promotion": {"threshold": -1.0, "window": 1},
    "evaluation": {"every": 1, "samples": 4, "ks": [1, 4], "maxProblems": 8},
    "execution": {"parallelism": 2},
}


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """`base` with `over` merged in, nested mappings field by field; neither is modified."""
    out = copy.deepcopy(dict(base))
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def soarrun(
    name: str = "r",
    base: Mapping[str, Any] = MINIMAL,
    *,
    metadata: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A SoarRun manifest: the spec `base` with top-level `fields` replaced as given (use
    `merge` to change nested fields only), named `name`, with extra `metadata`."""
    spec = copy.deepcopy(dict(base))
    spec.update(copy.deepcopy(fields))
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": name, **(metadata or {})},
        "spec": spec,
    }


def parsed(
    name: str = "r",
    base: Mapping[str, Any] = MINIMAL,
    *,
    metadata: Mapping[str, Any] | None = None,
    **fields: Any,
) -> SoarRun:
    """`soarrun(...)`, validated."""
    return parse_run(soarrun(name, base, metadata=metadata, **fields))


def write_manifest(folder: Path, doc: Mapping[str, Any], name: str = "run.yaml") -> Path:
    path = folder / name
    path.write_text(yaml.safe_dump(dict(doc)))
    return path


def decisions(store: Path, steps: int) -> dict[str, str]:
    """Everything a run of `steps` steps decided, without timings: its step records, its
    evaluations and PQ, by store key (a file:// store at `store`)."""
    keys = [layout.step_record(t) for t in range(1, steps + 1)]
    keys += [layout.evaluation(t) for t in range(steps + 1)]
    keys.append(layout.PQ)
    return {key: (store / key).read_text() for key in keys if (store / key).exists()}
