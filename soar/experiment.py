"""`soar experiment CONFIG`: SOAR against its baselines with several seeds, evaluated by the
paper's protocol, written as the paper's table (docs/design.md, "Experiments").

Every piece is a run with its own store under `<output>/runs/`, driven like `soar run`, so the
experiment resumes where it stopped. Per seed s:

    soar-s          SOAR (grounded reward): its PQ, PS and final teacher
    intrinsic-s     Intrinsic-T (learnability reward): its final teacher
    hard-only-s     Hard-Only: a fresh student on the hard train split
    pq-s            a fresh student on soar-s's PQ + the hard train split (if it promoted)
    grounded-t-s    ... on sampleQuestions questions sampled from soar-s's final teacher
    intrinsic-t-s   ... from intrinsic-s's final teacher
    base-t-s        ... from the base model

The table reports each method's protocol pass@k (mean +- sd over seeds), PS's pass@k, the Vendi
score of each question set, promotions, and plots of the teacher rewards and training curves.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from soar import layout
from soar.experiment_report import write_results
from soar.hardset import write_jsonl
from soar.manifest import load_run, parse_run
from soar.runstate import Run
from soar.spec_base import Model
from soar.store import Store

FRESH_METHODS = ("hard-only", "pq", "grounded-t", "intrinsic-t", "base-t")


class ExperimentConfig(Model):
    """What `soar experiment` runs; paths are relative to the config file."""

    base: str = Field(description="SoarRun manifest of the SOAR runs (its seed is replaced).")
    seeds: list[int] = Field(min_length=1, max_length=64, description="One of each run per seed.")
    output: str = Field("experiment", description="Folder for stores, manifests and results.")
    sampleQuestions: int = Field(
        128, ge=1, le=100_000, description="Questions sampled from each teacher (the paper: 128)."
    )
    freshStudent: dict[str, Any] = Field(
        default_factory=dict,
        description="spec.freshStudent of the evaluation runs (questions are set per run).",
    )
    parallelism: int | None = Field(None, ge=1, description="Stages at once in each run.")


def load_config(path: Path) -> ExperimentConfig:
    return ExperimentConfig.model_validate(yaml.safe_load(path.read_text()) or {})


class Experiment:
    """The pieces of one experiment and where they live."""

    def __init__(self, config: ExperimentConfig, folder: Path):
        self.config = config
        self.folder = folder
        self.output = (folder / config.output).resolve()
        self.base = load_run(folder / config.base)
        self.hard_split: dict[str, str] | None = None  # set once the first run has built it

    def manifest(self, name: str, seed: int, spec: dict[str, Any]) -> Path:
        """The piece's manifest, written once under <output>/manifests/ (kubectl-appliable once
        storage.uri points at a shared store)."""
        doc = self.base.model_dump(mode="json", exclude_none=True)
        doc["metadata"] = {"name": name}
        doc["spec"] = merged(doc["spec"], spec | {"seed": seed})
        doc["spec"]["storage"] = {"uri": (self.output / "runs" / name).as_uri()}
        data = doc["spec"]["data"]
        if self.hard_split is not None:  # every run evaluates on the same hard split
            data.pop("builtin", None)
            data |= self.hard_split | {"questionField": "question", "answerField": "answer"}
        for field in ("hardTrain", "hardTest"):
            if data.get(field) and "://" not in data[field]:  # relative to the base manifest
                data[field] = str((self.folder / self.config.base).parent / data[field])
        parse_run(doc)  # a bad piece fails here, before anything runs
        path = self.output / "manifests" / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def fresh(self, method: str, seed: int, questions: Path | None) -> Path:
        mode = "hard-only" if questions is None else "evaluate-questions"
        fresh = dict(self.config.freshStudent)
        if questions is not None:
            fresh["questions"] = str(questions)
        return self.manifest(f"{method}-s{seed}", seed, {"mode": mode, "freshStudent": fresh})

    def keep_hard_split(self, store: Store) -> None:
        """The hard split the first run prepared (built by fail@k, or copied), for the others:
        every method is evaluated on the same problems whatever its seed."""
        self.hard_split = {}
        for split, field in (("train", "hardTrain"), ("test", "hardTest")):
            path = self.output / "data" / f"hard-{split}.jsonl"
            write_jsonl(path, layout.load_rows(store, layout.hard_split(split)))
            self.hard_split[field] = str(path)

    def questions_file(self, name: str) -> Path:
        return self.output / "questions" / f"{name}.jsonl"


def merged(base: dict, over: dict) -> dict:
    """`base` with `over` merged in, nested mappings field by field."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def run_experiment(
    config: ExperimentConfig,
    folder: Path,
    drive: Callable[[Path, int | None], Store],
    say: Callable[[str], None] = print,
) -> dict:
    """Run (or resume) every piece, then write the results; `drive(manifest, parallelism)` runs
    one manifest to completion and returns its store."""
    experiment = Experiment(config, folder)
    stores: dict[str, Store] = {}
    for seed in config.seeds:
        # 1) the teachers: SOAR and Intrinsic-T
        for name, spec in (
            (f"soar-s{seed}", {"mode": "soar"}),
            (f"intrinsic-s{seed}", {"mode": "soar", "reward": {"kind": "learnability"}}),
        ):
            say(f"== {name}")
            stores[name] = drive(experiment.manifest(name, seed, spec), config.parallelism)
            if experiment.hard_split is None:
                experiment.keep_hard_split(stores[name])
        # 2) the question sets: PQ, and sampleQuestions from each teacher
        sets = {"pq": copy_pq(stores[f"soar-s{seed}"], experiment.questions_file(f"pq-s{seed}"))}
        for method, source, final in (
            ("grounded-t", f"soar-s{seed}", True),
            ("intrinsic-t", f"intrinsic-s{seed}", True),
            ("base-t", f"soar-s{seed}", False),
        ):
            path = experiment.questions_file(f"{method}-s{seed}")
            run = Run.open(stores[source])
            step = run.spec.steps if final else 0
            sets[method] = sampled(run, step, config.sampleQuestions, seed, path, say)
        # 3) the fresh students: Hard-Only and one per question set
        for method in FRESH_METHODS:
            questions = None if method == "hard-only" else sets[method]
            if method != "hard-only" and questions is None:
                say(f"== {method}-s{seed}: skipped, soar-s{seed} promoted nothing (no PQ)")
                continue
            say(f"== {method}-s{seed}")
            manifest = experiment.fresh(method, seed, questions)
            stores[f"{method}-s{seed}"] = drive(manifest, config.parallelism)
    return write_results(experiment.output, config, experiment.base.spec, stores)


def copy_pq(store: Store, path: Path) -> Path | None:
    """The SOAR run's PQ as a question file, or None when it never promoted."""
    if not store.exists(layout.PQ):
        return None
    rows = layout.load_rows(store, layout.PQ)
    write_jsonl(path, [{"question": r["question"], "answer": r["answer"]} for r in rows])
    return path


def sampled(run: Run, step: int, count: int, seed: int, path: Path, say) -> Path:
    """`count` questions from the run's teacher after `step`, sampled once (kept on resume)."""
    if not path.exists():
        from soar.stages.teacher import sample_questions

        say(f"== sampling {count} questions from {run.store.uri} step {step}")
        write_jsonl(path, sample_questions(run, step, count, seed))
    return path
