"""A run as every executor and stage sees it: its store, its frozen spec, and its seeded choices.

Bottom layer (no torch): the local executor, the stages and the operator all open runs through
this module (docs/design.md, "Layers").
"""

import hashlib
import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from soar import layout, records
from soar.prompts import Domain
from soar.spec import SoarRun, SoarRunSpec, SpecError
from soar.store import Store, create_json, read_json, write_json

# How a run executes, not what it computes: a resumed run may change these.
OPERATIONAL_FIELDS = {
    "execution",
    "suspend",
    "storage",
    "pods",
    "retries",
    "activeDeadlineSeconds",
    "cleanup",
    "ttlSecondsAfterFinished",
}


class StageError(RuntimeError):
    """A stage cannot complete and a retry will not help; the message says which stage and why."""


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for one random choice of the run, independent of Python's hash salt."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


def frozen_spec(run: SoarRun, manifest_dir: Path) -> SoarRunSpec:
    """The spec as stored in run.json: data paths made absolute against the manifest's folder."""
    spec = run.spec.model_copy(deep=True)
    for section, name in (
        (spec.data, "hardTrain"),
        (spec.data, "hardTest"),
        (spec.freshStudent, "questions"),
    ):
        value = getattr(section, name)
        if value and "://" not in value:
            setattr(section, name, str((manifest_dir / value).resolve()))
    return spec


def init_store(store: Store, run: SoarRun, manifest_dir: Path) -> SoarRunSpec:
    """Write run.json once; on resume, refuse a manifest whose algorithm settings changed, naming
    each changed field. Until the prepare stage has completed, spec.data may still change (a typo
    in a data path is fixed by editing the manifest), and run.json follows it."""
    spec = frozen_spec(run, manifest_dir)
    doc = {"name": run.metadata.name, "uid": str(uuid.uuid4()), "spec": spec.model_dump()}
    if create_json(store, layout.RUN, doc):
        return spec
    stored_doc = read_json(store, layout.RUN)
    stored = SoarRunSpec.model_validate(stored_doc["spec"])
    editable = set(OPERATIONAL_FIELDS)
    if not store.exists(layout.done("prepare")):
        editable.add("data")
    changed = changed_fields(stored.model_dump(exclude=editable), spec.model_dump(exclude=editable))
    if changed:
        raise SpecError(
            f"{store.uri} holds a run with different {', '.join(changed)}; change it back, "
            "rename the run, or set spec.storage.uri to start a new one"
        )
    if stored.data != spec.data:
        stored_doc["spec"]["data"] = spec.data.model_dump()
        write_json(store, layout.RUN, stored_doc)
        stored = stored.model_copy(update={"data": spec.data})
    return stored


def changed_fields(old: Any, new: Any, path: str = "spec") -> list[str]:
    """Dotted paths of the leaves that differ between two dumps of a spec."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            changed
            for key in sorted(old.keys() | new.keys())
            for changed in changed_fields(old.get(key), new.get(key), f"{path}.{key}")
        ]
    if old != new:
        return [f"{path} ({old!r} -> {new!r})"]
    return []


def completed(store: Store) -> set[str]:
    """Keys of the completion manifests present in the store (see planner.Stage.key)."""
    sizes = store.sizes(layout.DONE)
    # A manifest is written whole or not at all; an empty one was damaged after, so the stage
    # counts as not done and runs again.
    return {key[len(layout.DONE) + 1 : -len(".json")] for key, size in sizes.items() if size}


@dataclass
class Run:
    """A run's store and frozen spec, as every stage sees them."""

    store: Store
    spec: SoarRunSpec
    uid: str

    @classmethod
    def open(cls, store: Store) -> "Run":
        try:
            frozen = read_json(store, layout.RUN)
        except KeyError:
            raise StageError(f"{store.uri}: no run.json; start the run with `soar run`") from None
        return cls(store, SoarRunSpec.model_validate(frozen["spec"]), frozen["uid"])

    @property
    def domain(self) -> Domain:
        if self.spec.data.domain == "arith":
            from soar.arith import ARITH

            return ARITH
        from soar.prompts import MATH

        return MATH

    def record(self, t: int) -> records.StepRecord:
        """The step record of a committed step; step 0 is the starting state."""
        if t == 0:
            return records.StepRecord.start()
        return layout.load(self.store, layout.step_record(t), records.StepRecord)

    def hard(self, split: str) -> list[dict]:
        return layout.load_rows(self.store, layout.hard_split(split))

    def reward_questions(self, t: int) -> list[dict]:
        """|Q_R| hard train questions, fresh each step, deterministic from (seed, t)."""
        pool = self.hard("train")
        rng = random.Random(derive_seed(self.spec.seed, "reward-questions", t))
        return rng.sample(pool, min(self.spec.reward.questions, len(pool)))

    def candidates(self, t: int, dataset: int | None = None) -> list[dict]:
        """The teacher's accepted (question, answer) pairs of step t, or those of one dataset."""
        rows = layout.load_rows(self.store, layout.candidates(t))
        return rows if dataset is None else [r for r in rows if r["dataset"] == dataset]
