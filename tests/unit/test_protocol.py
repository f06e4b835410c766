"""The evaluation protocol's pure parts, on scripted curves whose answers are worked out by hand."""

import pytest

from soar.protocol import averaged_pass_at_k, centred_moving_average, chosen_step, phases


def test_centred_moving_average_cuts_the_window_at_the_ends():
    assert centred_moving_average([1, 2, 3, 4, 5], 3) == [1.5, 2, 3, 4, 4.5]
    assert centred_moving_average([1, 2, 3, 4, 5], 1) == [1, 2, 3, 4, 5]


def test_chosen_step_is_where_a_ramp_flattens():
    # flat 0 for 10 steps, +10 a step to 100 at step 19, flat after: slopes (range 100) are 0.1
    # from step 9 to 18, then 0; the steepest is first at 9, the first flat one after it is 19.
    rewards = [0.0] * 10 + [10.0 * (j + 1) for j in range(10)] + [100.0] * 20
    assert chosen_step(rewards, window=1, fraction=0.15) == 19


def test_chosen_step_on_a_smoothed_step_function():
    # window 3 turns 0,0,0,0,10,10,10,10 into 0,0,0,10/3,20/3,10,10,10; normalised slopes
    # 0,0,1/3,1/3,1/3,0,0; steepest first at 2; the first below 0.15/3 after it is 5.
    rewards = [0.0] * 4 + [10.0] * 4
    assert chosen_step(rewards, window=3, fraction=0.15) == 5


def test_chosen_step_ignores_a_flat_start():
    # Read literally ("earliest step whose slope is below 15% of the maximum") step 0 would win.
    rewards = [0.0, 0.0, 0.0, 5.0, 10.0, 10.0]
    assert chosen_step(rewards, window=1, fraction=0.15) == 4


@pytest.mark.parametrize(
    ("rewards", "expected"),
    [
        ([3.0] * 6, 0),  # nothing learned
        ([5.0, 4.0, 3.0, 2.0], 0),  # only falling
        ([0.0, 1.0, 2.0, 3.0], 3),  # still rising at the end: the last step
        ([7.0], 0),
    ],
)
def test_chosen_step_edge_curves(rewards, expected):
    assert chosen_step(rewards, window=1, fraction=0.15) == expected


def test_pass_at_k_is_averaged_over_the_window_after_the_chosen_step():
    evaluations = {0: {1: 0.0, 4: 0.1}, 10: {1: 0.2, 4: 0.5}, 20: {1: 0.4, 4: 0.7}, 30: {1: 0.9}}
    steps, means = averaged_pass_at_k(evaluations, start=5, span=20)
    assert steps == [10, 20]
    assert means == pytest.approx({1: 0.3, 4: 0.6})
    # a window with no evaluation in it takes the next one
    steps, means = averaged_pass_at_k({0: {1: 0.0}, 50: {1: 0.5}}, start=5, span=20)
    assert (steps, means) == ([50], {1: 0.5})
    with pytest.raises(ValueError, match="no evaluation at or after step 60"):
        averaged_pass_at_k({0: {1: 0.0}, 50: {1: 0.5}}, start=60, span=20)


@pytest.mark.parametrize(
    ("strategy", "first", "last", "expected"),
    [
        ("curriculum", 0, 50, [("questions", 0, 50)]),
        ("curriculum", 50, 100, [("questions", 50, 64), ("hard", 64, 100)]),
        ("curriculum", 100, 150, [("hard", 100, 150)]),
        ("mixed", 50, 100, [("mixed", 50, 100)]),
        (None, 50, 100, [("hard", 50, 100)]),
    ],
)
def test_phases_split_a_train_stage_at_the_curriculum_boundary(strategy, first, last, expected):
    assert phases(strategy, 64, first, last) == expected
