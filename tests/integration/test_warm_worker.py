"""The local executor's warm workers (soar/worker.py) on the tiny run: a stage in a worker writes
what the same `soar stage` command writes, fails with its exit code and error line, and a worker
that dies (mid-stage or idle) costs no more than a crashed stage process did."""

import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from soar import layout
from soar.executor import ExecutorError, LocalExecutor, open_run
from soar.manifest import load_run
from soar.planner import Stage
from soar.worker import Worker
from tests.support.manifests import decisions
from tests.support.runs import checkpoint_files, soar, tiny_manifest

pytestmark = pytest.mark.slow

# Step 2 of the tiny run from its students on: what each test runs again.
REDO = [Stage("student", 2, i) for i in range(4)] + [
    Stage("teacher-update", 2),
    Stage("evaluate", 2),
]


def copy_without(finished_run: Path, folder: Path, stages: list[Stage]) -> Path:
    """A copy of the finished tiny run in folder/e2e (with its manifest) that lacks `stages`."""
    store = folder / "e2e"
    shutil.copytree(finished_run, store)
    tiny_manifest(folder)
    for stage in stages:
        (store / layout.done(stage.key)).unlink()
    return store


def run_in(worker: Worker, argv: list[str], log: Path, timeout: float = 600) -> int:
    """Hand the worker a `soar` command line and wait for its exit code."""
    log.write_bytes(b"")
    assert worker.start(argv, log)
    deadline = time.monotonic() + timeout
    while (code := worker.poll()) is None:
        assert time.monotonic() < deadline, f"{argv} still running after {timeout} s"
        time.sleep(0.05)
    return code


def drive(folder: Path, on_event: Callable[[LocalExecutor, str, Stage], None]) -> None:
    """`soar run` of folder/run.yaml in this process, two stages at a time; on_event sees each
    stage start and finish."""
    manifest = folder / "run.yaml"
    store, spec, lease = open_run(load_run(manifest), folder, folder)
    executor = LocalExecutor(
        store, spec, 2, lease, lambda kind, stage, _: on_event(executor, kind, stage)
    )
    try:
        executor.run()
    finally:
        lease.release()


def workers() -> dict[int, str]:
    """This process's worker children, by pid, with where their stdout points."""
    found = {}
    for child in psutil.Process().children():
        try:
            if "soar.worker" in " ".join(child.cmdline()):
                found[child.pid] = os.readlink(f"/proc/{child.pid}/fd/1")
        except (psutil.NoSuchProcess, FileNotFoundError):
            continue
    return found


def kill(pid: int) -> None:
    """SIGKILL this process's child, then wait until the executor could reap it (without reaping
    it: WNOWAIT). A zombie leader whose threads are still exiting cannot be reaped yet."""
    os.kill(pid, signal.SIGKILL)
    while os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
        time.sleep(0.01)


def stage_outputs(store: Path) -> dict[str, object]:
    """What students 2/0, 2/1 and evaluation 2 wrote, without timings."""
    found: dict[str, object] = {layout.evaluation(2): (store / layout.evaluation(2)).read_text()}
    for i in (0, 1):
        found[layout.student_result(2, i)] = (store / layout.student_result(2, i)).read_text()
        found[layout.student_model(2, i)] = checkpoint_files(store, layout.student_model(2, i))
        done = json.loads((store / layout.done(Stage("student", 2, i).key)).read_text())
        found[f"summary {i}"] = {k: v for k, v in done["summary"].items() if "seconds" not in k}
    return found


def test_a_stage_in_a_warm_worker_writes_what_its_own_process_writes(finished_run, tmp_path):
    stages = [Stage("student", 2, 0), Stage("student", 2, 1), Stage("evaluate", 2)]
    alone = copy_without(finished_run, tmp_path / "alone", stages)
    warm = copy_without(finished_run, tmp_path / "warm", stages)
    for stage in stages:
        result = soar(*stage.argv(alone.as_uri())[1:], cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-2000:]
    worker = Worker()
    try:
        for stage in stages:  # one after another in the same process: nothing leaks between them
            code = run_in(worker, stage.argv(warm.as_uri())[1:], tmp_path / "stage.log")
            assert code == 0, (tmp_path / "stage.log").read_text()[-2000:]
    finally:
        worker.stop()
    assert stage_outputs(warm) == stage_outputs(alone)


def test_a_failing_stage_ends_with_the_commands_exit_code_and_error_line(finished_run, tmp_path):
    uri = finished_run.as_uri()
    permanent = ["stage", "student", "--run", uri, "--step", "2", "--index", "99"]
    transient = ["stage", "student", "--run", "file:///proc/version", "--step", "2"]
    worker = Worker()
    log = tmp_path / "stage.log"
    try:
        for argv, expected in [(permanent, 2), (transient, 1)]:
            alone = soar(*argv, cwd=tmp_path)
            assert alone.returncode == expected, alone.stderr[-2000:]
            assert run_in(worker, argv, log) == expected
            line = log.read_text().strip().splitlines()[-1]
            assert line.startswith("error: ") and line == alone.stderr.strip().splitlines()[-1]
            assert worker.alive  # a stage that fails does not cost its worker
    finally:
        worker.stop()
    assert line == "error: [Errno 20] Not a directory: '/proc/version/run.json'"


def running(executor: LocalExecutor, stage: Stage) -> int:
    """The worker running `stage`, once it has started it (its stdout is the stage's log)."""
    log = str(executor.logs / (stage.key.replace("/", "_") + ".log"))
    deadline = time.monotonic() + 300
    while not (busy := [pid for pid, out in workers().items() if out == log]):
        assert time.monotonic() < deadline, f"{stage.key} never started in a worker"
        time.sleep(0.01)
    return busy[0]


def test_a_worker_killed_mid_stage_fails_its_stage_and_the_run_resumes(finished_run, tmp_path):
    store = copy_without(finished_run, tmp_path, REDO)
    target = Stage("student", 2, 1)
    killed = []

    def kill_mid_stage(executor: LocalExecutor, kind: str, stage: Stage) -> None:
        if kind == "started" and stage == target:
            killed.append(running(executor, stage))
            kill(killed[0])

    with pytest.raises(ExecutorError) as failed:
        drive(tmp_path, kill_mid_stage)
    assert len(killed) == 1
    assert str(failed.value).startswith(f"stage {target.key} failed (exit -9): see log below")
    assert (store / layout.stage_log(target.key)).exists()
    assert not (store / layout.done(target.key)).exists()
    assert workers() == {}  # the executor stopped every worker it started
    drive(tmp_path, lambda *_: None)
    assert decisions(store, 2) == decisions(finished_run, 2)


def test_a_worker_that_dies_idle_is_replaced_and_each_stage_logs_to_the_store(
    finished_run, tmp_path
):
    store = copy_without(finished_run, tmp_path, REDO)
    ran: dict[Stage, int] = {}
    killed = []

    def kill_idle(executor: LocalExecutor, kind: str, stage: Stage) -> None:
        if not ran and kind == "started":
            ran[stage] = running(executor, stage)
        elif kind == "finished" and stage in ran and not killed:
            # It has answered and waits for the next stage, which the executor hands out next.
            killed.append(ran[stage])
            kill(ran[stage])

    drive(tmp_path, kill_idle)
    assert len(killed) == 1
    assert decisions(store, 2) == decisions(finished_run, 2)
    for stage in REDO:
        log = (store / layout.stage_log(stage.key)).read_text()
        # Its own output only: fds 1 and 2 went back to the worker after each stage.
        assert [line for line in log.splitlines() if " done in " in line] == [
            f"stage {stage.name} step 2 done in "
            + str(json.loads((store / layout.done(stage.key)).read_text())["seconds"])
            + "s"
        ]
