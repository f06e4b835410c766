"""The paper's evaluation protocol, as pure functions: which questions each RLOO step of a fresh
student trains on, and which checkpoint is reported (docs/design.md, "Fresh-student runs").

A fresh student starts from the base model and trains with RLOO for up to maxSteps steps on a
synthetic question set plus the hard train split (a *curriculum*: synthetic first, then hard; or
*mixed*: both together), or on the hard train split alone (Hard-Only). Its reported pass@k is
not the last one: the mean training reward is smoothed, the earliest step after the steepest
rise where the curve has flattened is chosen, and test pass@k is averaged over the steps after it.
"""

from statistics import fmean
from typing import Literal

Source = Literal["questions", "hard", "mixed"]


def phases(
    strategy: Literal["curriculum", "mixed"] | None, curriculum_steps: int, first: int, last: int
) -> list[tuple[Source, int, int]]:
    """The RLOO steps [first, last) of a train stage split by what they train on.

    strategy None is Hard-Only (the hard train split throughout); "mixed" samples the synthetic
    questions and the hard train split together; "curriculum" trains on the synthetic questions
    for steps [0, curriculum_steps), then on the hard train split.
    """
    if strategy is None:
        return [("hard", first, last)]
    if strategy == "mixed":
        return [("mixed", first, last)]
    spans: list[tuple[Source, int, int]] = [
        ("questions", first, min(last, curriculum_steps)),
        ("hard", max(first, curriculum_steps), last),
    ]
    return [(source, a, b) for source, a, b in spans if a < b]


def centred_moving_average(values: list[float], window: int) -> list[float]:
    """Each value replaced by the mean of the values within window // 2 on either side; near the
    ends the window is cut (fewer values), not padded."""
    half = window // 2
    return [fmean(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]


def chosen_step(rewards: list[float], window: int, fraction: float) -> int:
    """The paper's checkpoint choice from the mean training reward of each RLOO step.

    1) smooth the rewards with a centred moving average of `window` steps;
    2) slope_i = (s[i+1] - s[i]) / (max s - min s), the discrete slope normalised by the range;
    3) the chosen step is the earliest i after the steepest slope with slope_i < fraction x the
       steepest slope (the curve has flattened). Read literally, "the earliest step whose slope
       is below 15% of the maximum" would pick step 0 of any curve that starts flat, so we look
       only after the steepest rise.
    A curve that never rises (flat or falling: nothing learned) gives step 0; one that is still
    rising at its end gives its last step.
    """
    if not rewards:
        raise ValueError("the early-stopping rule needs at least one step's reward")
    smooth = centred_moving_average(rewards, window)
    spread = max(smooth) - min(smooth)
    if len(smooth) < 2 or spread == 0:
        return 0
    slopes = [(b - a) / spread for a, b in zip(smooth, smooth[1:], strict=False)]
    steepest = max(slopes)
    if steepest <= 0:
        return 0
    start = slopes.index(steepest)
    flat = [i for i in range(start + 1, len(slopes)) if slopes[i] < fraction * steepest]
    return flat[0] if flat else len(smooth) - 1


def averaged_pass_at_k(
    evaluations: dict[int, dict[int, float]], start: int, span: int
) -> tuple[list[int], dict[int, float]]:
    """Mean pass@k over the evaluations at RLOO steps in [start, start + span]; when none falls
    in that window (evaluations sparser than the span), the first one after it.
    Returns the steps averaged and the means per k."""
    steps = [s for s in sorted(evaluations) if start <= s <= start + span]
    steps = steps or [s for s in sorted(evaluations) if s >= start][:1]
    if not steps:
        raise ValueError(f"no evaluation at or after step {start}")
    ks = evaluations[steps[0]].keys()
    return steps, {k: fmean(evaluations[s][k] for s in steps) for k in ks}
