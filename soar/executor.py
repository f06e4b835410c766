"""The local executor: runs planned stages in warm worker processes (soar/worker.py), a few at a
time, until the run is done.

It keeps no state of its own: each loop asks the planner what the store still lacks, so killing
it at any moment and starting it again continues the run without redoing completed stages.
"""

import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from soar import layout
from soar.contract import EXIT_TRANSIENT
from soar.lease import Lease
from soar.planner import Stage, plan
from soar.runstate import completed, init_store
from soar.spec import SoarRun, SoarRunSpec
from soar.store import Store, StoreError, open_store, read_json
from soar.worker import Worker

LOG_TAIL_LINES = 15


class ExecutorError(RuntimeError):
    """A stage failed; the message names it and ends with the tail of its log."""

    def __init__(self, message: str, exit_code: int = EXIT_TRANSIENT):
        super().__init__(message)
        self.exit_code = exit_code


def store_uri(run: SoarRun, cwd: Path) -> str:
    """spec.storage.uri, or a folder named after the run under the working directory."""
    return run.spec.storage.uri or (cwd / run.metadata.name).resolve().as_uri()


class LocalExecutor:
    """Runs the planner's `soar stage ...` command lines with bounded parallelism, each in a warm
    worker: at most `parallelism` workers, started as needed and kept until the run ends."""

    def __init__(
        self,
        store: Store,
        spec: SoarRunSpec,
        parallelism: int,
        lease: Lease,
        on_event: Callable[[str, Stage, dict], None] = lambda *a: None,
    ):
        self.store = store
        self.lease = lease
        self.spec = spec
        self.parallelism = parallelism
        self.on_event = on_event
        self.logs = Path(tempfile.mkdtemp(prefix="soar-logs-"))

    def _start(self, stage: Stage, idle: list[Worker]) -> tuple[Worker, Path]:
        log = self.logs / (stage.key.replace("/", "_") + ".log")
        log.write_bytes(b"")
        worker = _hand_over(idle, stage.argv(self.store.uri)[1:], log)
        self.on_event("started", stage, {})
        return worker, log

    def run(self) -> None:
        """Run until the planner has nothing left; raise ExecutorError on the first failure."""
        idle: list[Worker] = []
        running: dict[Stage, tuple[Worker, Path]] = {}
        renewed = time.monotonic()
        try:
            while True:
                if time.monotonic() - renewed > self.lease.ttl / 4:
                    self.lease.renew()  # raises LeaseHeld if another writer took over
                    renewed = time.monotonic()
                ready = [s for s in plan(self.spec, completed(self.store)) if s not in running]
                if not ready and not running:
                    return
                for stage in ready[: self.parallelism - len(running)]:
                    running[stage] = self._start(stage, idle)
                time.sleep(0.05)
                for stage, (worker, log) in list(running.items()):
                    code = worker.poll()
                    if code is None:
                        continue
                    del running[stage]
                    if worker.alive:
                        idle.append(worker)
                    else:
                        worker.stop()  # closes its socket; the stage killed it
                    self._finish(stage, code, log)
        finally:
            for worker in idle + [worker for worker, _ in running.values()]:
                worker.stop()

    def _finish(self, stage: Stage, code: int, log: Path) -> None:
        """Copy the stage's log into the store (kept here when the store cannot take it: a full
        disk, say); raise ExecutorError with the stage's error line if it failed."""
        try:
            self.store.write_bytes(layout.stage_log(stage.key), log.read_bytes())
        except (StoreError, OSError):
            if code == 0:
                raise
            log_note = f"; its log is kept at {log}"
        else:
            log_note = ""
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-LOG_TAIL_LINES:]
            errors = [line.removeprefix("error: ") for line in tail if line.startswith("error: ")]
            reason = errors[-1] if errors else None
            # A stage that says what is wrong gets one line; a crash shows its traceback.
            detail = reason or "see log below\n" + "\n".join("  | " + line for line in tail)
            raise ExecutorError(f"stage {stage.key} failed (exit {code}): {detail}{log_note}", code)
        manifest = read_json(self.store, layout.done(stage.key))
        self.on_event("finished", stage, manifest)


def _hand_over(idle: list[Worker], argv: list[str], log: Path) -> Worker:
    """An idle worker that takes the command, or a fresh one: a worker can die while idle (the
    OOM killer picks large processes)."""
    while idle:
        worker = idle.pop()
        if worker.start(argv, log):
            return worker
        worker.stop()
    worker = Worker()
    worker.start(argv, log)  # one that dies at once ends the stage with its exit status
    return worker


def open_run(
    run: SoarRun, manifest_dir: Path, cwd: Path, wait: bool = False
) -> tuple[Store, SoarRunSpec, Lease]:
    """The run's store, with this process holding its lease, and the frozen spec."""
    store = open_store(store_uri(run, cwd))
    lease = Lease(store, f"soar run (pid {os.getpid()})")
    lease.acquire(wait=wait)
    try:
        return store, init_store(store, run, manifest_dir), lease
    except BaseException:
        lease.release()
        raise
