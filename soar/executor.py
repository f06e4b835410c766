"""The local executor: runs planned stages as subprocesses, a few at a time, until the run is done.

It keeps no state of its own: each loop asks the planner what the store still lacks, so killing
it at any moment and starting it again continues the run without redoing completed stages.
"""

import ctypes
import json
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from soar.planner import Stage, plan
from soar.spec import SoarRun, SoarRunSpec, SpecError
from soar.store import Store, open_store, read_json

LOG_TAIL_LINES = 15
# How a run executes, not what it computes: a resumed run may change these.
OPERATIONAL_FIELDS = {"execution", "suspend", "storage", "pods", "retries", "activeDeadlineSeconds"}


class ExecutorError(RuntimeError):
    """A stage failed; the message names it and ends with the tail of its log."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def store_uri(run: SoarRun, cwd: Path) -> str:
    """spec.storage.uri, or a folder named after the run under the working directory."""
    return run.spec.storage.uri or (cwd / run.metadata.name).resolve().as_uri()


def frozen_spec(run: SoarRun, manifest_dir: Path) -> SoarRunSpec:
    """The spec as stored in run.json: data paths made absolute against the manifest's folder."""
    spec = run.spec.model_copy(deep=True)
    for field in ("hardTrain", "hardTest"):
        value = getattr(spec.data, field)
        if value and "://" not in value:
            setattr(spec.data, field, str((manifest_dir / value).resolve()))
    return spec


def init_store(store: Store, run: SoarRun, manifest_dir: Path) -> SoarRunSpec:
    """Write run.json once; on resume, refuse a manifest whose algorithm settings changed."""
    spec = frozen_spec(run, manifest_dir)
    record = {"name": run.metadata.name, "uid": str(uuid.uuid4()), "spec": spec.model_dump()}
    store.create("run.json", json.dumps(record, indent=1, sort_keys=True).encode())
    stored = SoarRunSpec.model_validate(read_json(store, "run.json")["spec"])
    ignore = OPERATIONAL_FIELDS
    if stored.model_dump(exclude=ignore) != spec.model_dump(exclude=ignore):
        changed = [
            k
            for k in spec.model_fields
            if k not in ignore and getattr(stored, k) != getattr(spec, k)
        ]
        raise SpecError(
            f"{store.uri} holds a run with different spec.{', spec.'.join(changed)}; "
            "rename the run or set spec.storage.uri to start a new one"
        )
    return stored


def completed(store: Store) -> set[str]:
    """Keys of the completion manifests present in the store."""
    return {key[len("done/") : -len(".json")] for key in store.list("done")}


def _die_with_parent() -> None:
    """Children get SIGKILL when the executor dies, so a killed run leaves no stray writers."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class LocalExecutor:
    """Runs `python -m soar stage ...` subprocesses with bounded parallelism."""

    def __init__(
        self,
        store: Store,
        spec: SoarRunSpec,
        parallelism: int,
        on_event: Callable[[str, Stage, dict], None] = lambda *a: None,
    ):
        self.store = store
        self.spec = spec
        self.parallelism = parallelism
        self.on_event = on_event
        self.logs = Path(tempfile.mkdtemp(prefix="soar-logs-"))

    def _start(self, stage: Stage) -> tuple[subprocess.Popen, Path]:
        log = self.logs / (stage.key.replace("/", "_") + ".log")
        argv = [sys.executable, "-m", "soar", *stage.argv(self.store.uri)[1:]]
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
        self.on_event("started", stage, {})
        return proc, log

    def run(self) -> None:
        """Run until the planner has nothing left; raise ExecutorError on the first failure."""
        running: dict[Stage, tuple[subprocess.Popen, Path]] = {}
        try:
            while True:
                ready = [s for s in plan(self.spec, completed(self.store)) if s not in running]
                if not ready and not running:
                    return
                for stage in ready[: self.parallelism - len(running)]:
                    running[stage] = self._start(stage)
                time.sleep(0.05)
                for stage, (proc, log) in list(running.items()):
                    if proc.poll() is None:
                        continue
                    del running[stage]
                    self._finish(stage, proc.returncode, log)
        finally:
            for proc, _ in running.values():
                proc.kill()
                proc.wait()

    def _finish(self, stage: Stage, code: int, log: Path) -> None:
        self.store.write_bytes(f"logs/{stage.key}.log", log.read_bytes())
        if code != 0:
            tail = log.read_text(errors="replace").strip().splitlines()[-LOG_TAIL_LINES:]
            errors = [line.removeprefix("error: ") for line in tail if line.startswith("error: ")]
            reason = errors[-1] if errors else None
            # A stage that says what is wrong gets one line; a crash shows its traceback.
            detail = reason or "see log below\n" + "\n".join("  | " + line for line in tail)
            raise ExecutorError(f"stage {stage.key} failed (exit {code}): {detail}", code)
        manifest = read_json(self.store, f"done/{stage.key}.json")
        self.on_event("finished", stage, manifest)


def open_run(run: SoarRun, manifest_dir: Path, cwd: Path) -> tuple[Store, SoarRunSpec]:
    store = open_store(store_uri(run, cwd))
    return store, init_store(store, run, manifest_dir)
