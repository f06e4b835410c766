"""When the baseline student is promoted, and which student replaces it (docs/design.md,
"The algorithm", step 6)."""

from dataclasses import dataclass
from statistics import fmean


@dataclass(frozen=True)
class PromotionDecision:
    teacher_reward: float  # R_hat_t = mean_k R_k
    moving_average: float | None  # None until the window is full
    promoted: bool
    dataset: int | None  # argmax_k R_k, when promoted
    student: int | None  # flat student index k*r + j of the median repeat, when promoted
    history: list[float]  # R_hat values since the last promotion, this step included


def dataset_rewards(student_rewards: list[list[float]]) -> list[float]:
    """R_k = mean_j R_kj."""
    return [fmean(repeats) for repeats in student_rewards]


def median_repeat(repeats: list[float]) -> int:
    """Index of the repeat whose reward is the median; the lower middle when the count is even."""
    order = sorted(range(len(repeats)), key=lambda j: (repeats[j], j))
    return order[(len(repeats) - 1) // 2]


def decide_promotion(
    history: list[float], student_rewards: list[list[float]], threshold: float, window: int
) -> PromotionDecision:
    """Promote when the moving average of the last `window` teacher rewards exceeds `threshold`.

    The average needs a full window, so one lucky step cannot promote. After a promotion the
    history restarts (our choice; the paper is silent), since rewards are measured against the
    new baseline from then on.
    """
    rewards = dataset_rewards(student_rewards)
    r_hat = fmean(rewards)
    history = [*history, r_hat]
    ma = fmean(history[-window:]) if len(history) >= window else None
    if ma is None or ma <= threshold:
        return PromotionDecision(r_hat, ma, False, None, None, history)
    best = max(range(len(rewards)), key=lambda k: (rewards[k], -k))
    repeats = student_rewards[best]
    student = best * len(repeats) + median_repeat(repeats)
    return PromotionDecision(r_hat, ma, True, best, student, [])
