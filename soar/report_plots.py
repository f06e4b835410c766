"""The plots of `soar report RUN --html DIR`, which soar/report_html.py puts on its page.

This module holds the Plot type and its point series, the plots of each kind of run (from its
step records or train segments, its evaluations and its stage timings), the stage timings read
from the completion manifests (the page's tables show them too), and the drawing of each plot as a
PNG with matplotlib. matplotlib (the `experiment` extra) is imported only when a page is written
(pyplot(), draw()), so importing this module needs none.
"""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Literal

from soar import layout, records
from soar.protocol import centred_moving_average
from soar.runstate import Run
from soar.spec import SoarRunSpec
from soar.store import RecordError, Store, read_json

Points = list[tuple[float, float]]
Evaluations = dict[int, records.Evaluation | RecordError]


@dataclass(frozen=True)
class Timing:
    """One completed stage, from its completion manifest."""

    step: int
    stage: str
    started: float
    seconds: float


@dataclass
class Plot:
    """One PNG of the page: named series of (x, y) points on shared axes, drawn as lines,
    as a staircase (a count), or as bars stacked per x."""

    file: str
    title: str
    xlabel: str
    ylabel: str
    series: dict[str, Points]
    kind: Literal["line", "staircase", "stacked"] = "line"
    threshold: float | None = None  # drawn as a horizontal line

    def has_points(self) -> bool:
        return any(self.series.values())


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise ValueError(
            "soar report --html needs matplotlib, from the experiment extra: "
            "pip install 'soar[experiment]'"
        ) from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# ----------------------------------------------------------------------------------- SOAR runs
def soar_plots(
    run: Run,
    recorded: list[records.StepRecord | RecordError],
    evals: Evaluations,
    timings: list[Timing],
) -> list[Plot]:
    """Teacher reward, promotions, baseline accuracy, pass@k, Vendi and stage seconds."""
    readable = [r for r in recorded if not isinstance(r, RecordError)]
    window = run.spec.promotion.window
    return [
        Plot(
            "teacher-reward.png",
            "Teacher reward",
            "step",
            "R_hat",
            {
                "teacher reward": points(readable, "teacher_reward"),
                f"moving average ({window} steps)": points(readable, "moving_average"),
            },
            threshold=promotion_threshold(run.spec),
        ),
        Plot(
            "promotions.png",
            "Promotions so far",
            "step",
            "promotions",
            {"promotions": promotions(readable)},
            kind="staircase",
        ),
        Plot(
            "baseline-accuracy.png",
            "Baseline student on the reward questions",
            "step",
            "greedy accuracy",
            {"baseline accuracy": points(readable, "baseline_accuracy")},
        ),
        pass_at_k_plot(evals, "step"),
        Plot(
            "vendi.png",
            "Diversity of the teacher's questions",
            "step",
            "Vendi score",
            {"Vendi": [(r.step, vendi(r)) for r in readable if vendi(r) is not None]},
        ),
        stage_seconds_plot(timings, "step"),
    ]


def points(recorded: list[records.StepRecord], name: str) -> Points:
    """(step, value) of one field of the step records, where it has a value."""
    return [(r.step, getattr(r, name)) for r in recorded if getattr(r, name) is not None]


def promotions(recorded: list[records.StepRecord]) -> Points:
    """Promotions so far, from none at step 0 (where there are steps to show)."""
    counted = points(recorded, "promotions")
    return [(0, 0), *counted] if counted else []


def vendi(record: records.StepRecord) -> float | None:
    return (record.generation or {}).get("vendi")


def promotion_threshold(spec: SoarRunSpec) -> float | None:
    """tau, which the moving average must exceed to promote; none where nothing is promoted
    (the learnability reward never promotes)."""
    return None if spec.reward.kind == "learnability" else spec.promotion.threshold


# ------------------------------------------------------------------------- fresh-student runs
def fresh_plots(
    run: Run,
    segments: list[records.TrainSegment | RecordError],
    evals: Evaluations,
    timings: list[Timing],
) -> list[Plot]:
    """Training reward per RLOO step (a fresh student has no teacher), pass@k, stage seconds."""
    steps = [s for seg in segments if not isinstance(seg, RecordError) for s in seg.steps]
    rewards = [(s["step"], s["reward"]) for s in steps]
    window = run.spec.freshStudent.smoothing
    smoothed = centred_moving_average([reward for _, reward in rewards], window)
    return [
        Plot(
            "training-reward.png",
            "Training reward",
            "RLOO step",
            "mean reward",
            {
                "reward": rewards,
                f"centred moving average ({window} steps)": [
                    (step, value) for (step, _), value in zip(rewards, smoothed, strict=True)
                ],
            },
        ),
        pass_at_k_plot(evals, "RLOO step"),
        stage_seconds_plot(timings, "train stage"),
    ]


# --------------------------------------------------------------------------- both kinds of run
def pass_at_k_plot(evals: Evaluations, xlabel: str) -> Plot:
    readable = [ev for ev in evals.values() if isinstance(ev, records.Evaluation)]
    series = {
        f"pass@{k}": [(ev.step, ev.pass_at_k[k]) for ev in readable if k in ev.pass_at_k]
        for k in sorted({k for ev in readable for k in ev.pass_at_k})
    }
    return Plot("pass-at-k.png", "pass@k on the hard test split", xlabel, "pass@k", series)


def stage_seconds_plot(timings: list[Timing], xlabel: str) -> Plot:
    """Seconds of work per step, stacked by stage (a step's students summed)."""
    per_stage: dict[str, dict[int, float]] = {}
    for timing in timings:
        steps = per_stage.setdefault(timing.stage, {})
        steps[timing.step] = steps.get(timing.step, 0.0) + timing.seconds
    series = {stage: sorted(steps.items()) for stage, steps in sorted(per_stage.items())}
    return Plot("stage-seconds.png", "Stage durations", xlabel, "seconds", series, kind="stacked")


# -------------------------------------------------------------------------------- stage timings
def stage_timings(store: Store, done: set[str]) -> list[Timing]:
    """Every completed stage's step, name and duration, from the completion manifests (read in
    parallel: on S3 each is a request); a manifest that cannot be read is left out."""

    def read(key: str) -> Timing | None:
        try:
            manifest = read_json(store, layout.done(key))
            return Timing(
                manifest["step"], manifest["stage"], manifest["started"], manifest["seconds"]
            )
        except (KeyError, TypeError, RecordError):
            return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return [timing for timing in pool.map(read, sorted(done)) if timing is not None]


def seconds_per_step(timings: list[Timing]) -> dict[int, float]:
    seconds: dict[int, float] = {}
    for timing in timings:
        seconds[timing.step] = seconds.get(timing.step, 0.0) + timing.seconds
    return seconds


# ------------------------------------------------------------------------------------- drawing
def draw(plt: Any, folder: Path, plot: Plot) -> str:
    """Save one plot as folder/<plot.file>; returns its <figure>."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if plot.kind == "stacked":
        stack_bars(ax, plot.series)
    else:
        style = "steps-post" if plot.kind == "staircase" else "default"
        for label, series in plot.series.items():
            if series:
                xs, ys = zip(*series, strict=True)
                ax.plot(xs, ys, marker="o", drawstyle=style, label=label)
    if plot.threshold is not None:
        ax.axhline(plot.threshold, color="grey", linestyle="--", label="promotion threshold")
    ax.set(title=plot.title, xlabel=plot.xlabel, ylabel=plot.ylabel)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if plot.kind == "staircase":
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=7)
    fig.savefig(folder / plot.file, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return f'<figure><img src="{escape(plot.file)}" alt="{escape(plot.title)}"></figure>'


def stack_bars(ax: Any, series: dict[str, Points]) -> None:
    tops: dict[float, float] = {}
    for label, bars in series.items():
        xs = [x for x, _ in bars]
        ys = [y for _, y in bars]
        ax.bar(xs, ys, bottom=[tops.get(x, 0.0) for x in xs], label=label)
        for x, y in bars:
            tops[x] = tops.get(x, 0.0) + y
