"""Kill the operator (SIGKILL) at random moments of a run and start it again: the run finishes
with the same result as an undisturbed one, no Job is ever created twice, no stage runs twice."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.infra.controlplane import Kube
from tests.support.cluster import (
    TERMINAL,
    Cluster,
    JobRecorder,
    Operator,
    stage_runs,
    store_of,
    stub_run,
)
from tests.support.manifests import decisions

pytestmark = pytest.mark.slow

KILLS = 12
SEED = int(os.environ.get("SOAR_TEST_CHAOS_SEED", random.randrange(1 << 30)))
# Each stage takes a moment, so kills land while Jobs run, between them and during a backoff.
STUB = {
    "teacher-generate": {"sleep": 1},
    "baseline": {"sleep": 0.5},
    "student": {"sleep": 1},
    "teacher-update": {"sleep": 0.5},
    "2/baseline": {"fail": 1, "sleep": 0.5},
}
SPEC = {"steps": 3}
RESULT_KEYS = (
    "step",
    "progress",
    "promotions",
    "teacherReward",
    "rewardMovingAverage",
    "baselineAccuracy",
    "passAtK",
    "passAtKStep",
)


def test_killing_the_operator_changes_nothing(
    kube: Kube, ns: str, operator: Operator, tmp_path: Path
) -> None:
    print(f"chaos seed {SEED} (set SOAR_TEST_CHAOS_SEED to replay)")
    rng = random.Random(SEED)
    cluster = Cluster(kube, ns)
    try:
        calm = stub_run("calm", tmp_path, STUB, SPEC)
        with JobRecorder(kube, ns) as calm_recorder:  # Jobs of old steps are cleaned up
            cluster.apply(calm)
            calm_status = cluster.wait_phase("calm", *TERMINAL, timeout=180)
        assert calm_status["phase"] == "Succeeded", calm_status

        chaos = stub_run("chaos", tmp_path, STUB, SPEC)
        with JobRecorder(kube, ns) as recorder:
            cluster.apply(chaos)
            kills = []
            while len(kills) < KILLS:
                time.sleep(rng.uniform(0.2, 2.5))
                kills.append(cluster.status("chaos").get("stage") or "-")
                operator.kill()
                time.sleep(rng.uniform(0, 1))
                operator.start()
            status = cluster.wait_phase("chaos", *TERMINAL, timeout=180)
            time.sleep(1)  # a last chance for a duplicate to show up
        print("killed during stages:", kills)
        assert status["phase"] == "Succeeded", status
        assert len({k for k in kills if k not in ("-", "")}) >= 3, kills  # across stages

        duplicates = {key: uids for key, uids in recorder.uids.items() if len(uids) > 1}
        assert duplicates == {}
        chaos_jobs = sorted(k[1:] for k in recorder.uids if k[0] == "chaos")
        calm_jobs = sorted(k[1:] for k in calm_recorder.uids if k[0] == "calm")
        assert chaos_jobs == calm_jobs
        assert stage_runs(chaos) == stage_runs(calm)
        assert max(stage_runs(chaos).values()) == 2  # only the injected failure ran twice
        steps = SPEC["steps"]
        assert decisions(store_of(chaos), steps) == decisions(store_of(calm), steps)
        assert {k: status.get(k) for k in RESULT_KEYS} == {
            k: calm_status.get(k) for k in RESULT_KEYS
        }
        assert operator.starts == KILLS + 1
    finally:
        cluster.close()
