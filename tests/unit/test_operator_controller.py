"""One reconcile pass with a stand-in for the API: what it writes, posts and creates."""

import json
from pathlib import Path

import pytest

from soar import layout
from soar.manifest import parse_run
from soar.runstate import completed, frozen_spec
from soar.spec_execution import PodSettings
from soar.store import FileStore, StoreError
from soar_operator import cluster_run
from soar_operator import controller as controller_module
from soar_operator.controller import Controller
from soar_operator.jobs import FAILED, JobView
from soar_operator.kube import InvalidJob, StoreSecretError
from tests.support.manifests import MINIMAL, soarrun

NOW = 1_767_225_600.0


class FakeKube:
    def __init__(self):
        self.created, self.deleted, self.patches, self.details = [], [], [], 0
        self.refuse = None
        self.refusals, self.lookups = {}, []
        self.secrets, self.secret_reads = {}, []

    def create_job(self, namespace, manifest):
        if self.refuse:
            raise InvalidJob(self.refuse)
        self.created.append(manifest["metadata"]["name"])
        return True

    def delete_job(self, namespace, name):
        self.deleted.append(name)

    def delete_run(self, namespace, name):
        self.deleted.append(f"soarrun/{name}")

    def patch_status(self, namespace, name, patch):
        self.patches.append(patch)

    def failure_detail(self, namespace, job):
        self.details += 1
        return "exit 1: error: boom"

    def store_credentials(self, namespace, secret):
        self.secret_reads.append((namespace, secret))
        if secret not in self.secrets:
            raise StoreSecretError(f"spec.storage.secretRef: Secret {namespace}/{secret} not found")
        return self.secrets[secret]

    def pod_creation_refusal(self, namespace, job):
        self.lookups.append(job)
        return self.refusals.get(job)


def body(store: Path, **spec):
    run = MINIMAL | {"steps": 1, "teacher": {"datasets": 2}, "storage": {"uri": store.as_uri()}}
    metadata = {"namespace": "ns", "uid": "u1", "generation": 1}
    return soarrun("r", run, metadata=metadata, **spec)


@pytest.fixture
def kube():
    return FakeKube()


@pytest.fixture
def events():
    return []


@pytest.fixture
def ctl(kube, events):
    post = lambda body, event: events.append((event.type, event.reason))  # noqa: E731
    return Controller(kube, PodSettings(image="w:1"), post, clock=lambda: NOW)


def test_first_pass_writes_run_json_like_soar_run_and_starts_prepare(ctl, kube, events, tmp_path):
    run = body(tmp_path / "store")
    status = ctl.reconcile(run, [], {})
    stored = json.loads((tmp_path / "store" / layout.RUN).read_text())
    assert stored["name"] == "r"
    assert stored["spec"] == frozen_spec(parse_run(run), Path("/")).model_dump()
    assert kube.created == ["r-0-prepare-1"]
    assert status["phase"] == "Pending" and status["stage"] == "prepare"
    assert kube.patches == [status]
    assert events == [("Normal", "JobCreated"), ("Normal", "RunStarted")]


def test_a_pass_that_changes_nothing_writes_nothing(ctl, kube, events, tmp_path):
    run, memo = body(tmp_path / "store"), {}
    ctl.reconcile(run, [], memo)
    prepare = JobView("r-0-prepare-1", "j1", "prepare", 0, 1, "active", running=True)
    ctl.reconcile(run, [prepare], memo)  # the watched copy of the run still has no status
    patches, posted = len(kube.patches), len(events)
    ctl.reconcile(run, [prepare], memo)
    assert (len(kube.patches), len(events), kube.created) == (patches, posted, ["r-0-prepare-1"])


def test_a_failed_attempt_is_looked_up_once(ctl, kube, tmp_path):
    run, memo = body(tmp_path / "store"), {}
    failed = JobView(
        "r-0-prepare-1", "j1", "prepare", 0, 1, FAILED, NOW - 1, "BackoffLimitExceeded"
    )
    first = ctl.reconcile(run, [failed], memo)
    second = ctl.reconcile(run, [failed], memo)
    assert kube.details == 1
    assert first["lastFailure"] == second["lastFailure"] == "r-0-prepare-1: exit 1: error: boom"
    assert first["reason"] == "BackingOff"


def test_an_unreadable_store_is_reported_and_retried(ctl, kube, events, tmp_path, monkeypatch):
    run, memo = body(tmp_path / "store"), {}
    ctl.reconcile(run, [], memo)
    running = JobView("r-0-prepare-1", "j1", "prepare", 0, 1, "active", running=True)
    ctl.reconcile(run, [running], memo)

    def down(store):
        raise StoreError(f"{store.uri}: cannot list {layout.DONE!r}: AccessDenied")

    monkeypatch.setattr(controller_module, "completed", down)
    status = ctl.reconcile(run, [running], memo)
    assert (status["phase"], status["reason"]) == ("Running", "StoreUnavailable")
    assert "AccessDenied" in status["message"] and kube.created == ["r-0-prepare-1"]
    assert events[-1] == ("Warning", "StoreUnavailable")
    monkeypatch.undo()
    assert ctl.reconcile(run, [running], memo)["reason"] == "StagesRunning"


def test_pod_settings_the_server_refuses_fail_the_run(ctl, kube, events, tmp_path):
    kube.refuse = 'Job.batch "r-0-prepare-1" is invalid: spec.template.spec.tolerations[0]'
    status = ctl.reconcile(body(tmp_path / "store"), [], {})
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidPodSettings")
    assert status["message"].startswith(
        "pod settings of stage prepare (spec.pods.prepare, spec.pods.default): Job.batch"
    )
    assert ("Warning", "InvalidPodSettings") in events


def test_an_invalid_run_fails_without_touching_its_store(ctl, kube, tmp_path):
    status = ctl.reconcile(body(tmp_path / "store", storage={}), [], {})
    assert (status["phase"], status["reason"]) == ("Failed", "InvalidSpec")
    assert not (tmp_path / "store").exists() and kube.created == []


def test_a_job_whose_pods_are_refused_says_why_in_the_status(ctl, kube, tmp_path):
    run, memo = body(tmp_path / "store"), {}
    ctl.reconcile(run, [], memo)
    refused = 'pods "r-0-prepare-1-x" is forbidden: violates PodSecurity "restricted:latest"'
    kube.refusals["r-0-prepare-1"] = refused
    young = JobView("r-0-prepare-1", "j1", "prepare", 0, 1, "active", created_at=NOW - 19)
    status = ctl.reconcile(run, [young], memo)
    assert kube.lookups == [] and "cannot create pods" not in status["message"]
    podless = JobView("r-0-prepare-1", "j1", "prepare", 0, 1, "active", created_at=NOW - 21)
    status = ctl.reconcile(run, [podless], memo)
    assert status["reason"] == "WaitingForPods"
    assert f"Job r-0-prepare-1 cannot create pods: {refused}" in status["message"]
    # a Job with a pod is not looked up at all
    kube.lookups.clear()
    pending = JobView("r-0-prepare-1", "j1", "prepare", 0, 1, "active", pods=1, created_at=NOW - 60)
    status = ctl.reconcile(run, [pending], memo)
    assert kube.lookups == [] and "cannot create pods" not in status["message"]


def test_a_podless_jobs_refusal_is_looked_up_again_only_after_30_s(ctl, kube, tmp_path):
    run, memo = body(tmp_path / "store"), {}
    ctl.reconcile(run, [], memo)
    refused = 'pods "r-0-prepare-1-x" is forbidden: exceeded quota'
    kube.refusals["r-0-prepare-1"] = refused
    podless = JobView("r-0-prepare-1", "j1", "prepare", 0, 1, "active", created_at=NOW - 21)
    kube.lookups.clear()
    for seconds in (0, 10, 29.9, 30, 45, 60):  # passes at these times after the first lookup
        ctl.clock = lambda seconds=seconds: NOW + seconds
        status = ctl.reconcile(run, [podless], memo)
        assert f"cannot create pods: {refused}" in status["message"], seconds
    assert len(kube.lookups) == 3  # at 0, 30 and 60 s


@pytest.mark.parametrize("phase", ["Succeeded", "Failed"])
def test_an_ended_run_is_not_read_again_until_its_spec_changes(
    ctl, kube, tmp_path, monkeypatch, phase
):
    run = body(tmp_path / "store")
    finished = {"phase": phase, "reason": "Ended", "observedGeneration": 1}

    def unread(store):
        raise StoreError("the store was read")

    monkeypatch.setattr(controller_module, "completed", unread)
    assert ctl.reconcile(run, [], {"status": finished}) == finished
    assert kube.patches == [] and kube.created == []
    run["metadata"]["generation"] = 2  # an edited spec is looked at
    with pytest.raises(StoreError, match="the store was read"):
        ctl.reconcile(run, [], {"status": finished})


def test_an_s3_store_is_read_with_the_runs_own_secret(ctl, kube, tmp_path, monkeypatch):
    """The operator signs with the keys of the run's Secret, reads the Secret once per refresh
    window (and again after a store error), and waits, naming the Secret, while it is missing."""
    opened = []

    def open_store(uri, options):  # no S3 server in unit tests: a file store stands in
        opened.append(options.credentials)
        return FileStore(tmp_path / "store")

    monkeypatch.setattr(cluster_run, "open_store", open_store)
    storage = {"uri": "s3://bucket/runs/r", "secretRef": {"name": "store"}}
    run, memo = body(tmp_path / "unused", storage=storage), {}

    status = ctl.reconcile(run, [], memo)
    assert (status["phase"], status["reason"]) == ("Pending", "StoreUnavailable")
    assert "Secret ns/store not found" in status["message"] and opened == []

    keys = {"AWS_ACCESS_KEY_ID": "run-key", "AWS_SECRET_ACCESS_KEY": "run-secret"}
    kube.secrets["store"] = keys
    assert ctl.reconcile(run, [], memo)["reason"] == "WaitingForPods"
    ctl.reconcile(run, [], memo)
    assert opened == [keys, keys] and len(kube.secret_reads) == 2  # cached on the second pass

    def denied(store):
        raise StoreError(f"{store.uri}: cannot list 'done/': AccessDenied")

    monkeypatch.setattr(controller_module, "completed", denied)
    assert ctl.reconcile(run, [], memo)["reason"] == "StoreUnavailable"
    monkeypatch.setattr(controller_module, "completed", completed)
    ctl.reconcile(run, [], memo)
    assert len(kube.secret_reads) == 3  # the error dropped the cached keys: read again
    assert "run-secret" not in json.dumps(kube.patches)


@pytest.mark.parametrize(("ttl", "deleted"), [(None, []), (200, []), (100, ["soarrun/r"])])
def test_an_ended_run_is_deleted_once_its_ttl_has_passed(ctl, kube, tmp_path, ttl, deleted):
    run = body(tmp_path / "store", ttlSecondsAfterFinished=ttl)
    ended = {
        "phase": "Succeeded",
        "observedGeneration": 1,
        "completionTime": "2025-12-31T23:58:20Z",  # NOW - 100 s
    }
    ctl.reconcile(run, [], {"status": ended})
    assert kube.deleted == deleted
