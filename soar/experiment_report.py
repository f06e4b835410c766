"""The results of `soar experiment`: the paper's table as Markdown and JSON, and PNG plots.

Rows are methods, columns pass@k on the hard test split as mean +- sd over seeds: each fresh
student's protocol pass@k (the smoothed-slope checkpoint choice, averaged after it), and PS's
pass@k averaged over its sampling seeds. Below: the Vendi score of every question set
(bootstrap-standardised), promotions per SOAR run, and where the plots are.
"""

import json
from pathlib import Path
from statistics import fmean, stdev

from soar import layout, records
from soar.evaluation import embed_questions, standardised_vendi
from soar.hardset import read_problems
from soar.protocol import centred_moving_average
from soar.runstate import Run
from soar.spec import SoarRunSpec
from soar.store import Store

ROWS = {
    "hard-only": "Hard-Only",
    "pq": "SOAR-PQ",
    "ps": "SOAR-PS",
    "grounded-t": "Grounded-T",
    "intrinsic-t": "Intrinsic-T",
    "base-t": "Base-T",
}
QUESTION_SETS = ("pq", "grounded-t", "intrinsic-t", "base-t")


def mean_sd(values: list[float]) -> dict:
    """Mean and sample standard deviation over seeds (sd None for one seed)."""
    return {
        "mean": fmean(values) if values else None,
        "sd": stdev(values) if len(values) > 1 else None,
        "n": len(values),
    }


def fmt(stats: dict, scale: float = 100.0) -> str:
    """`12.5 +- 3.1` (percent by default), `-` when nothing was measured."""
    if stats["mean"] is None:
        return "-"
    text = f"{stats['mean'] * scale:.1f}"
    return text + (f" +- {stats['sd'] * scale:.1f}" if stats["sd"] is not None else "")


def pass_at_k_by_method(seeds: list[int], stores: dict[str, Store]) -> dict[str, dict]:
    """{method: {seed: {k: pass@k}}} for every method that has a result."""
    found: dict[str, dict] = {method: {} for method in ROWS}
    for seed in seeds:
        for method in ROWS:
            if method == "ps":
                store = stores[f"soar-s{seed}"]
                if store.exists(layout.PS):
                    ps = layout.load(store, layout.PS, records.PromotedStudentChoice)
                    if ps.pass_at_k:
                        found["ps"][seed] = ps.pass_at_k
                continue
            store = stores.get(f"{method}-s{seed}")
            if store is not None and store.exists(layout.PROTOCOL_RESULT):
                result = layout.load(store, layout.PROTOCOL_RESULT, records.ProtocolResult)
                found[method][seed] = result.pass_at_k
    return found


def vendi_by_set(output: Path, seeds: list[int], size: int) -> dict[str, dict[int, float]]:
    """Standardised Vendi score of every question set the experiment trained on."""
    scores: dict[str, dict[int, float]] = {name: {} for name in QUESTION_SETS}
    for name in QUESTION_SETS:
        for seed in seeds:
            path = output / "questions" / f"{name}-s{seed}.jsonl"
            if path.exists():
                questions = [row["question"] for row in read_problems(path)]
                scores[name][seed] = standardised_vendi(embed_questions(questions), size, seed=seed)
    return scores


def teacher_rewards(store: Store) -> list[float]:
    run = Run.open(store)
    return [run.record(t).teacher_reward for t in range(1, run.spec.steps + 1)]


def training_rewards(store: Store) -> list[float]:
    """Mean training reward of every RLOO step of a fresh student."""
    run = Run.open(store)
    rows = []
    for t in range(1, run.spec.freshStudent.segments() + 1):
        segment = layout.load(store, layout.fresh_segment(t), records.TrainSegment)
        rows += [s["reward"] for s in segment.steps]
    return rows


def write_results(output: Path, config, base: SoarRunSpec, stores: dict[str, Store]) -> dict:
    """results.json, results.md and the plots, in `output`; returns the JSON document."""
    seeds, ks = config.seeds, base.evaluation.ks
    passes = pass_at_k_by_method(seeds, stores)
    table = {
        method: {k: mean_sd([by_seed[s][k] for s in by_seed]) for k in ks}
        for method, by_seed in passes.items()
    }
    vendi = vendi_by_set(output, seeds, base.evaluation.vendiQuestions)
    promotions = {s: Run.open(stores[f"soar-s{s}"]).record(base.steps).promotions for s in seeds}
    doc = {
        "seeds": seeds,
        "pass_at_k": {m: {str(s): v for s, v in by.items()} for m, by in passes.items()},
        "table": {m: {str(k): v for k, v in row.items()} for m, row in table.items()},
        "vendi": {name: mean_sd(list(by.values())) | {"by_seed": by} for name, by in vendi.items()},
        "promotions": promotions,
        "teacher_rewards": {
            name: teacher_rewards(stores[name])
            for name in sorted(stores)
            if name.startswith(("soar-", "intrinsic-s"))
        },
    }
    (output / "results.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
    smoothing = config.freshStudent.get("smoothing", base.freshStudent.smoothing)
    plots = plot(output, doc, stores, ks, smoothing)
    (output / "results.md").write_text(markdown(doc, table, ks, plots))
    return doc


def markdown(doc: dict, table: dict, ks: list[int], plots: list[str]) -> str:
    seeds = doc["seeds"]
    lines = [
        f"pass@k (%) on the hard test split, mean +- sd over seeds {seeds}",
        "",
        "| method | seeds | " + " | ".join(f"pass@{k}" for k in ks) + " |",
        "|---|---|" + "---|" * len(ks),
    ]
    for method, label in ROWS.items():
        n = next(iter(table[method].values()))["n"]
        lines.append(f"| {label} | {n} | " + " | ".join(fmt(table[method][k]) for k in ks) + " |")
    lines += ["", "| question set | Vendi (standardised) |", "|---|---|"]
    for name in QUESTION_SETS:
        lines.append(f"| {ROWS[name]} | {fmt(doc['vendi'][name], scale=1.0)} |")
    shown = ", ".join(f"seed {s}: {p}" for s, p in doc["promotions"].items())
    lines += ["", f"SOAR promotions: {shown}", ""]
    lines += [f"![{name}]({name})" for name in plots]
    return "\n".join(lines) + "\n"


def plot(
    output: Path, doc: dict, stores: dict[str, Store], ks: list[int], smoothing: int
) -> list[str]:
    """teacher-rewards.png, pass-at-k.png and training-rewards.png; their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, rewards in doc["teacher_rewards"].items():
        style = "-" if name.startswith("soar-") else "--"
        ax.plot(range(1, len(rewards) + 1), rewards, style, label=name)
    ax.set(xlabel="outer step", ylabel="teacher reward R_hat", title="Teacher rewards")
    ax.legend(fontsize=7)
    fig.savefig(output / "teacher-rewards.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    width = 0.8 / len(ks)
    for i, k in enumerate(ks):
        stats = [doc["table"][m][str(k)] for m in ROWS]
        means = [100 * (s["mean"] or 0.0) for s in stats]
        errors = [100 * (s["sd"] or 0.0) for s in stats]
        xs = [j + i * width for j in range(len(ROWS))]
        ax.bar(xs, means, width, yerr=errors, capsize=2, label=f"pass@{k}")
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(ROWS))], list(ROWS.values()))
    ax.set(ylabel="% of hard test problems", title="pass@k, mean +- sd over seeds")
    ax.legend(fontsize=7)
    fig.savefig(output / "pass-at-k.png", dpi=100, bbox_inches="tight")
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in sorted(stores):
        method = name.rsplit("-s", 1)[0]
        if method in ROWS and method != "ps":
            rewards = training_rewards(stores[name])
            ax.plot(centred_moving_average(rewards, smoothing), label=name, linewidth=1)
    ax.set(xlabel="RLOO step", ylabel="mean training reward (smoothed)", title="Fresh students")
    ax.legend(fontsize=6, ncol=2)
    fig.savefig(output / "training-rewards.png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return ["pass-at-k.png", "teacher-rewards.png", "training-rewards.png"]
