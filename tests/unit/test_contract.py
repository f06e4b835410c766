"""The stage index an Indexed Job's pod runs, and the phases every module names."""

import pytest

from soar.contract import STAGE_INDEX_ENV, Phase, stage_index


@pytest.mark.parametrize(
    ("flag", "env", "expected"),
    [
        (None, {}, None),
        (None, {STAGE_INDEX_ENV: ""}, None),
        (None, {STAGE_INDEX_ENV: "7"}, 7),
        (3, {STAGE_INDEX_ENV: "7"}, 3),  # --index wins over the Job's index
        (0, {}, 0),
    ],
)
def test_stage_index(flag, env, expected):
    assert stage_index(flag, env) == expected


def test_phases_are_the_status_strings_and_only_two_are_terminal():
    assert [str(p) for p in Phase] == ["Pending", "Running", "Suspended", "Succeeded", "Failed"]
    assert {p for p in Phase if p.terminal} == {Phase.SUCCEEDED, Phase.FAILED}
