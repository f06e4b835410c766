"""Start-up cost of a stage under the local executor: one student stage of the tiny run, as a
subprocess of its own (`python -m soar stage ...`, how the executor ran every stage before warm
workers) and in a warm worker (soar/worker.py, how it runs them now), on the same run store.

First runs one step of the tests' tiny run (tests/support/manifests.py, TINY) with `soar run`, so
the student's inputs exist; then deletes the student's completion manifest before each try and
runs the stage again, alternating the two ways. The worker runs one untimed stage first (that one
pays the imports and starts the answer checker it keeps, as the first stage of each slot does in
a run). Prints the median wall time of each way, with the time the stage itself reported (its
manifest's `seconds`: the worker's is shorter, its answer checker is already running), and the
ratio. The tiny model must be cached already (any earlier run or `python -m soar.models
tiny-arith`).

    python benchmarks/stage_startup.py [--repeats 5]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from soar import layout  # noqa: E402
from soar.planner import Stage  # noqa: E402
from soar.worker import Worker, die_with_parent  # noqa: E402
from tests.support.manifests import TINY, merge, soarrun, write_manifest  # noqa: E402

STAGE = Stage("student", 1, 0)
POLL_S = 0.01


def prepare_store(folder: Path) -> Path:
    """One step of the tiny run, run to the end: every input of STAGE is in the store."""
    manifest = write_manifest(folder, soarrun("bench", merge(TINY, {"steps": 1})))
    cmd = [sys.executable, "-m", "soar", "run", str(manifest)]
    result = subprocess.run(cmd, cwd=folder, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"soar run failed:\n{result.stderr[-3000:]}")
    return folder / "bench"


def as_subprocess(argv: list[str], log: Path) -> int:
    """The stage as its own process, started as the executor started stages before workers."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "soar", *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=die_with_parent,
        )
    while proc.poll() is None:
        time.sleep(POLL_S)
    return proc.returncode


def in_worker(worker: Worker, argv: list[str], log: Path) -> int:
    """The stage in a warm worker, handed over as the executor does."""
    log.write_bytes(b"")
    worker.start(argv, log)
    while (code := worker.poll()) is None:
        time.sleep(POLL_S)
    return code


def timed(store: Path, run) -> tuple[float, float]:
    """(wall seconds, the stage's own seconds) of one fresh run of STAGE."""
    done = store / layout.done(STAGE.key)
    done.unlink(missing_ok=True)
    started = time.perf_counter()
    code = run()
    wall = time.perf_counter() - started
    if code != 0:
        sys.exit(f"stage {STAGE.key} failed (exit {code}); see its log")
    return wall, json.loads(done.read_text())["seconds"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        store = prepare_store(folder)
        argv = STAGE.argv(store.as_uri())[1:]
        log = folder / "stage.log"
        worker = Worker()
        try:
            first, _ = timed(store, lambda: in_worker(worker, argv, log))
            cold, warm = [], []
            for _ in range(args.repeats):
                cold.append(timed(store, lambda: as_subprocess(argv, log)))
                warm.append(timed(store, lambda: in_worker(worker, argv, log)))
        finally:
            worker.stop()
    before, after = median(cold), median(warm)
    print(f"stage {STAGE.key}, median of {args.repeats}, wall (the stage's own seconds):")
    print(f"  before (a subprocess per stage): {before[0]:6.2f} s ({before[1]:.2f} s)")
    print(f"  after (a warm worker):           {after[0]:6.2f} s ({after[1]:.2f} s)")
    print(f"  first stage of a fresh worker:   {first:6.2f} s (pays the imports once)")
    print(f"  before / after: {before[0] / after[0]:.1f}x")


def median(tries: list[tuple[float, float]]) -> tuple[float, float]:
    """Median wall and median own seconds."""
    return statistics.median(w for w, _ in tries), statistics.median(s for _, s in tries)


if __name__ == "__main__":
    main()
