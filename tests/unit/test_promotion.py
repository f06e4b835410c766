"""Promotion decisions on scripted reward sequences (docs/design.md, "The algorithm", step 6)."""

from soar.promotion import decide_promotion, median_repeat


def test_no_promotion_until_window_is_full():
    d = decide_promotion([], [[0.5, 0.5], [0.5, 0.5]], threshold=0.01, window=3)
    assert d.moving_average is None and not d.promoted
    assert d.history == [0.5]


def test_promotes_when_moving_average_exceeds_threshold():
    grid = [[0.0, 0.0], [0.10, 0.04], [0.02, 0.02]]  # R_k = 0, 0.07, 0.02 -> R_hat = 0.03
    d = decide_promotion([0.0, 0.0], grid, threshold=0.009, window=3)
    assert abs(d.teacher_reward - 0.03) < 1e-12
    assert abs(d.moving_average - 0.01) < 1e-12
    assert d.promoted and d.dataset == 1
    assert d.student == 1 * 2 + 1  # median of repeats (0.10, 0.04) with r even: lower middle
    assert d.history == []  # the moving average restarts after a promotion


def test_threshold_is_strict():
    d = decide_promotion([0.01, 0.01], [[0.01, 0.01], [0.01, 0.01]], threshold=0.01, window=3)
    assert not d.promoted and abs(d.moving_average - 0.01) < 1e-12


def test_scripted_sequence():
    history: list[float] = []
    outcomes = []
    for r in [0.0, 0.02, 0.03, -0.01, 0.0, 0.0, 0.05]:
        d = decide_promotion(history, [[r, r], [r, r]], threshold=0.01, window=2)
        outcomes.append(d.promoted)
        history = d.history
    # step 2: MA (0.02+0.03)/2 > 0.01, then the history restarts; step 6: (0+0.05)/2 > 0.01
    assert outcomes == [False, False, True, False, False, False, True]


def test_median_repeat():
    assert median_repeat([0.3, 0.1, 0.2]) == 2
    assert median_repeat([0.4, 0.1, 0.3, 0.2]) == 3  # sorted 0.1, 0.2, 0.3, 0.4 -> lower middle 0.2
    assert median_repeat([0.5]) == 0
