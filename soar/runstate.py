"""A run as every executor and stage sees it: its store, its frozen spec, and its seeded choices.

Bottom layer (no torch): the local executor, the stages and the operator all open runs through
this module (docs/design.md, "Layers").
"""

import hashlib
import json
import random
import uuid
from dataclasses import dataclass
from pathlib import Path

from soar import layout
from soar.prompts import Domain
from soar.spec import SoarRun, SoarRunSpec, SpecError
from soar.store import Store, read_json, read_jsonl

# How a run executes, not what it computes: a resumed run may change these.
OPERATIONAL_FIELDS = {"execution", "suspend", "storage", "pods", "retries", "activeDeadlineSeconds"}


class StageError(RuntimeError):
    """A stage cannot complete and a retry will not help; the message says which stage and why."""


def derive_seed(seed: int, *parts: object) -> int:
    """A stable 31-bit seed for one random choice of the run, independent of Python's hash salt."""
    text = ":".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


def frozen_spec(run: SoarRun, manifest_dir: Path) -> SoarRunSpec:
    """The spec as stored in run.json: data paths made absolute against the manifest's folder."""
    spec = run.spec.model_copy(deep=True)
    for name in ("hardTrain", "hardTest"):
        value = getattr(spec.data, name)
        if value and "://" not in value:
            setattr(spec.data, name, str((manifest_dir / value).resolve()))
    return spec


def init_store(store: Store, run: SoarRun, manifest_dir: Path) -> SoarRunSpec:
    """Write run.json once; on resume, refuse a manifest whose algorithm settings changed."""
    spec = frozen_spec(run, manifest_dir)
    doc = {"name": run.metadata.name, "uid": str(uuid.uuid4()), "spec": spec.model_dump()}
    store.create(layout.RUN, json.dumps(doc, indent=1, sort_keys=True).encode())
    stored = SoarRunSpec.model_validate(read_json(store, layout.RUN)["spec"])
    ignore = OPERATIONAL_FIELDS
    if stored.model_dump(exclude=ignore) != spec.model_dump(exclude=ignore):
        changed = [
            k
            for k in spec.model_fields
            if k not in ignore and getattr(stored, k) != getattr(spec, k)
        ]
        raise SpecError(
            f"{store.uri} holds a run with different spec.{', spec.'.join(changed)}; "
            "rename the run or set spec.storage.uri to start a new one"
        )
    return stored


def completed(store: Store) -> set[str]:
    """Keys of the completion manifests present in the store (see planner.Stage.key)."""
    return {key[len(layout.DONE) + 1 : -len(".json")] for key in store.list(layout.DONE)}


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

    def record(self, t: int) -> layout.StepRecord:
        """The step record of a committed step; step 0 is the starting state."""
        if t == 0:
            return layout.StepRecord.start()
        return layout.load(self.store, layout.step_record(t), layout.StepRecord)

    def hard(self, split: str) -> list[dict]:
        return read_jsonl(self.store, layout.hard_split(split))

    def reward_questions(self, t: int) -> list[dict]:
        """|Q_R| hard train questions, fresh each step, deterministic from (seed, t)."""
        pool = self.hard("train")
        rng = random.Random(derive_seed(self.spec.seed, "reward-questions", t))
        return rng.sample(pool, min(self.spec.reward.questions, len(pool)))

    def candidates(self, t: int, dataset: int | None = None) -> list[dict]:
        """The teacher's accepted (question, answer) pairs of step t, or those of one dataset."""
        rows = read_jsonl(self.store, layout.candidates(t))
        return rows if dataset is None else [r for r in rows if r["dataset"] == dataset]
