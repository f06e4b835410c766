"""Status as cursor and summary, the Events its changes produce, and the store mirror."""

import json

import yaml

from soar import layout, records
from soar.crd import STATUS_SCHEMA
from soar.planner import Stage
from soar.store import FileStore
from soar_operator.progress import read_progress
from soar_operator.reconcile import Decision, Unit, UnitState
from soar_operator.status import build_status, transitions
from tests.support.manifests import parsed

NOW = 1_767_225_600.0  # 2026-01-01T00:00:00Z


def spec(steps=3, mode="soar", **fields):
    evaluation = {"every": 2, "samples": 4, "ks": [1, 4]}
    return parsed("r", steps=steps, mode=mode, evaluation=evaluation, **fields).spec


def running(*units, attempt=1):
    states = tuple(UnitState(Unit(s, t), attempt, "running") for s, t in units)
    return Decision(
        "Running", "StagesRunning", "1/3 steps done; student running", states, started_at=NOW
    )


class CountingStore(FileStore):
    def __init__(self, root):
        super().__init__(root)
        self.reads = []

    def read_bytes(self, key):
        self.reads.append(key)
        return super().read_bytes(key)


def committed_store(tmp_path, steps):
    store = CountingStore(tmp_path)
    done = {"prepare"}
    for t in range(1, steps + 1):
        record = records.StepRecord(
            step=t,
            baseline=None,
            promotions=t - 1,
            history=[],
            student_rewards=[],
            moving_average=-0.125,
            teacher_reward=0.25 * t,
            baseline_accuracy=0.5,
        )
        layout.save(store, layout.step_record(t), record)
        done.add(Stage("teacher-update", t).key)
    evaluation = records.Evaluation(
        step=2, baseline=None, problems=4, pass_at_k={1: 0.25, 4: 0.5}, hard_train_accuracy=0.5
    )
    layout.save(store, layout.evaluation(2), evaluation)
    done |= {Stage("evaluate", 0).key, Stage("evaluate", 2).key}
    return store, done


def test_progress_mirrors_the_latest_record_and_evaluation(tmp_path):
    store, done = committed_store(tmp_path, 2)
    progress = read_progress(store, spec(), done, {})
    assert progress == {
        "step": 2,
        "totalSteps": 3,
        "progress": "2/3",
        "promotions": 1,
        "teacherReward": 0.5,
        "rewardMovingAverage": "-0.1250",
        "baselineAccuracy": 0.5,
        "lastCheckpoint": f"{store.uri}/{layout.teacher_checkpoint(2)}",
        "lastPromotionStep": 2,
        "passAtK": {"1": 0.25, "4": 0.5},
        "passAtKStep": 2,
    }
    # Nothing new committed: nothing is read again.
    store.reads.clear()
    assert read_progress(store, spec(), done, progress) == progress
    assert store.reads == []


def test_fresh_student_progress_counts_train_stages(tmp_path):
    store = CountingStore(tmp_path)
    fresh = spec(mode="hard-only", freshStudent={"maxSteps": 25, "segmentSteps": 10})
    done = {"prepare", Stage("train", 1).key, Stage("train", 2).key}
    progress = read_progress(store, fresh, done, {})
    assert (progress["step"], progress["totalSteps"], progress["progress"]) == (2, 3, "2/3")
    assert progress["lastCheckpoint"] == f"{store.uri}/{layout.fresh_checkpoint(2)}"
    assert "teacherReward" not in progress


def test_status_is_bounded_whatever_the_number_of_steps(tmp_path):
    small_store, small_done = committed_store(tmp_path / "a", 2)
    big_store, big_done = committed_store(tmp_path / "b", 200)
    small = build_status(running(), read_progress(small_store, spec(3), small_done, {}), {}, 1, NOW)
    big = build_status(running(), read_progress(big_store, spec(200), big_done, {}), {}, 1, NOW)
    assert small.keys() == big.keys()
    assert abs(len(json.dumps(big)) - len(json.dumps(small))) < 40


def test_status_fields_and_conditions():
    decision = running(("evaluate", 0), ("teacher-generate", 1), ("baseline", 1), attempt=2)
    status = build_status(decision, {"step": 0, "progress": "0/3"}, {}, 4, NOW)
    assert status["phase"] == "Running"
    assert status["stage"] == "evaluate,teacher-generate,baseline" and status["attempt"] == 2
    assert status["startTime"] == "2026-01-01T00:00:00Z" and status["observedGeneration"] == 4
    conditions = {c["type"]: c for c in status["conditions"]}
    assert list(conditions) == [
        "Running",
        "Suspended",
        "Succeeded",
        "Failed",
        "CheckpointAvailable",
    ]
    assert conditions["Running"]["status"] == "True"
    assert conditions["Running"]["message"] == decision.message
    assert conditions["Failed"] == {
        "type": "Failed",
        "status": "False",
        "reason": "StagesRunning",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    assert conditions["CheckpointAvailable"]["status"] == "False"
    # Unchanged conditions keep their transition time; flipped ones move.
    failed = Decision("Failed", "DeadlineExceeded", "too slow", started_at=NOW)
    later = build_status(failed, {"step": 0}, status, 4, NOW + 60)
    after = {c["type"]: c for c in later["conditions"]}
    assert after["Failed"]["status"] == "True"
    assert after["Failed"]["lastTransitionTime"] == "2026-01-01T00:01:00Z"
    assert after["Suspended"]["lastTransitionTime"] == "2026-01-01T00:00:00Z"
    assert later["completionTime"] == "2026-01-01T00:01:00Z" and "stage" not in later


def test_status_matches_the_crd_schema():
    status = build_status(running(("student", 1)), {"passAtK": {"1": 0.5}}, {}, 1, NOW)
    properties = STATUS_SCHEMA["properties"]
    assert set(status) <= set(properties)
    types = {"string": str, "integer": int, "number": (int, float), "object": dict, "array": list}
    for key, value in status.items():
        assert isinstance(value, types[properties[key]["type"]]), key
    assert yaml.safe_dump(STATUS_SCHEMA)  # plain data


def test_events_follow_status_changes():
    before = {"phase": "Running", "step": 1, "promotions": 0, "progress": "1/3"}
    after = {
        **before,
        "step": 2,
        "progress": "2/3",
        "promotions": 1,
        "teacherReward": 0.031,
        "rewardMovingAverage": "+0.0200",
        "passAtK": {"1": 0.25},
        "passAtKStep": 2,
        "lastFailure": "r-2-student-1: exit 1: error: CUDA out of memory",
    }
    events = transitions(before, after)
    assert [(e.type, e.reason) for e in events] == [
        ("Warning", "StageFailed"),
        ("Normal", "StepCompleted"),
        ("Normal", "StudentPromoted"),
        ("Normal", "Evaluated"),
    ]
    assert events[1].message == "step 2/3, teacher reward +0.0310, moving average +0.0200"
    assert events[3].message == "hard test after step 2: pass@1=0.250"
    assert transitions(after, after) == []


def test_phase_events():
    failed = {"phase": "Failed", "reason": "PermanentError", "message": "stage x failed"}
    assert [(e.type, e.reason) for e in transitions({"phase": "Running"}, failed)] == [
        ("Warning", "PermanentError")
    ]
    reasons = [
        transitions({"phase": old} if old else {}, {"phase": new})[0].reason
        for old, new in [
            (None, "Pending"),
            ("Pending", "Running"),
            ("Running", "Suspended"),
            ("Suspended", "Running"),
            ("Running", "Succeeded"),
            ("Failed", "Running"),
        ]
    ]
    assert reasons == [
        "RunStarted",
        "PodsRunning",
        "Suspended",
        "Resumed",
        "RunSucceeded",
        "Restarted",
    ]


def test_queued_is_an_event_whether_or_not_the_phase_changes():
    queued = {"phase": "Pending", "reason": "Queued", "message": "queued: Job(s) r-0-prepare-1"}
    for before in ({"phase": "Pending", "reason": "WaitingForPods"}, {"phase": "Running"}):
        assert [(e.type, e.reason) for e in transitions(before, queued)] == [("Normal", "Queued")]
    assert transitions(queued, queued) == []
