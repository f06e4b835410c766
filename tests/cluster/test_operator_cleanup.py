"""Cleanup: the Jobs of old committed steps are deleted once their work is in the store, their
pods' output is in the store's logs/ (each stage archives its own), retries of unfinished work are
still counted, and an ended run with spec.ttlSecondsAfterFinished is deleted."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s

from soar import layout
from soar.contract import GROUP, PLURAL, VERSION
from tests.infra.processes import wait_until
from tests.support.cluster import TERMINAL, Cluster, Operator, stage_runs, store_of, stub_run

pytestmark = pytest.mark.slow


def test_jobs_of_old_steps_go_and_their_logs_stay(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    spec = {"steps": 3, "cleanup": {"keepSteps": 1}}
    run = stub_run("tidy", tmp_path, {"1/baseline": {"fail": 1}}, spec=spec)
    cluster.apply(run)
    status = cluster.wait_phase("tidy", *TERMINAL)
    assert status["phase"] == "Succeeded", status

    # keepSteps 1 of 3 committed steps: only step 3's Jobs are left.
    expected = [f"tidy-3-{s}-1" for s in ("teacher-generate", "baseline", "student")]
    expected += ["tidy-3-teacher-update-1", "tidy-3-evaluate-1"]
    wait_until(
        lambda: sorted(cluster.job_names("tidy")) == sorted(expected),
        timeout=30,
        what="the Jobs of steps 0-2 deleted",
    )
    # Each stage run left its output in the store, both attempts of the retried one included.
    store = store_of(run)
    logs = {str(p.relative_to(store / "logs")) for p in (store / "logs").rglob("*.log")}
    assert len(logs) == sum(stage_runs(run).values())
    baseline = sorted((store / "logs" / "1" / "baseline").iterdir())
    assert [p.name.startswith("tidy-1-baseline-") for p in baseline] == [True, True]
    texts = [p.read_text() for p in baseline]  # attempt 1's pod name sorts first
    assert texts == [
        "stub 1/baseline run 1\nerror: 1/baseline: injected failure 1\n",
        "stub 1/baseline run 2\n",
    ]
    assert stage_runs(run)["1/baseline"] == 2


def test_failed_attempts_of_unfinished_work_are_kept_and_counted(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    """keepSteps 0 deletes everything completed, yet the retry limit still ends the run: the
    failed attempts it counts are of work not done, and stay."""
    spec = {"steps": 2, "cleanup": {"keepSteps": 0}}
    run = stub_run("stuck", tmp_path, {"2/baseline": {"exit": 1}}, spec=spec)
    cluster.apply(run)
    status = cluster.wait_phase("stuck", *TERMINAL)
    assert (status["phase"], status["reason"]) == ("Failed", "BackoffLimitExceeded"), status
    assert stage_runs(run)["2/baseline"] == 3  # spec.retries.limit 2: three attempts, no more
    names = cluster.job_names("stuck")
    assert {f"stuck-2-baseline-{a}" for a in (1, 2, 3)} <= set(names)
    assert not [n for n in names if n.startswith(("stuck-0-", "stuck-1-"))]


def test_an_ended_run_is_deleted_after_its_ttl_and_its_store_stays(
    cluster: Cluster, operator: Operator, tmp_path: Path
) -> None:
    run = stub_run("brief", tmp_path, spec={"steps": 1, "ttlSecondsAfterFinished": 1})
    cluster.apply(run)

    def gone() -> bool:
        try:
            cluster.custom.get_namespaced_custom_object(
                GROUP, VERSION, cluster.namespace, PLURAL, "brief"
            )
        except k8s.ApiException as err:
            return err.status == 404
        return False

    wait_until(gone, timeout=120, what="SoarRun brief deleted after its TTL")
    assert (store_of(run) / layout.step_record(1)).exists()
