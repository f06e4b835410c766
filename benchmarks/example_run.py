"""Wall time and peak memory of the README's example run (`soar run examples/tiny-cpu.yaml`).

Peak memory is the largest sum of RSS over the executor and all its stage processes at once
(sampled every 0.2 s), which is what a laptop must have free. The tiny model must be cached
already (any earlier run or `python -m soar.models tiny-arith`), so training time is not counted.

    python benchmarks/example_run.py [manifest]
"""

import contextlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            total += p.memory_info().rss
    return total


def main() -> None:
    manifest = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / "examples/tiny-cpu.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "soar", "run", str(manifest.resolve())],
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        proc, peak = psutil.Process(child.pid), 0
        while child.poll() is None:
            peak = max(peak, tree_rss(proc))
            time.sleep(0.2)
        seconds = time.perf_counter() - started
        if child.returncode != 0:
            sys.exit(f"run failed: {child.stderr.read().decode()[-2000:]}")
    print(
        f"{manifest.name}: {seconds:.1f} s wall, peak memory {peak / 2**30:.2f} GiB (all processes)"
    )


if __name__ == "__main__":
    main()
