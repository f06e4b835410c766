"""Answer checking with math-verify, isolated in worker processes with a hard per-check deadline.

math-verify (sympy underneath) can hang inside C code on inputs such as `9^{9^{9^{9}}}`, and its
own signal-based timeouts only work in a main thread. So every parse and comparison runs in a small
pool of worker processes, one check in flight per worker. The parent gives each check a deadline: a
worker that misses it is killed and replaced, and a worker that dies mid-check is replaced too.
Either way that check counts as wrong (or unparsable) and the batch goes on.

Workers are plain `python -c` subprocesses talking over a socket pair, not multiprocessing
children: spawn and forkserver re-import the caller's `__main__`, which breaks scripts without a
`__main__` guard, and fork would copy a parent that may hold torch threads.
"""

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

# A worker imports sympy and the LaTeX grammar before it is ready: seconds, not minutes.
STARTUP_TIMEOUT_S = 120.0

Task = tuple[str, str, str]  # (kind, answer, reference); kind is "check" or "parse"

WORKER_COMMAND = "import sys; from soar.verify import worker_main; worker_main(*sys.argv[1:])"


# --- worker side: runs in the subprocesses ------------------------------------------------------


def worker_main(fd: str, timeout_s: str) -> None:
    """Answer tasks with a bool, one at a time, until the parent closes its end of the socket."""
    conn = Connection(int(fd))
    # The parent enforces the deadline, so math-verify's own timeouts are off; hush its warning.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    # Import sympy and the LaTeX grammar before declaring readiness; a broken install dies here.
    if not _verifies("1", "1"):
        sys.exit("math-verify failed its self-check: 1 != 1")
    conn.send("ready")
    # Backstop if the parent is gone (SIGKILLed mid-check): SIGALRM's default action ends this
    # process even inside C code. The parent normally kills the worker long before.
    self_destruct_s = 2 * float(timeout_s) + 5
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        signal.setitimer(signal.ITIMER_REAL, self_destruct_s)
        verdict = _run_task(task)
        signal.setitimer(signal.ITIMER_REAL, 0)
        conn.send(verdict)


def _run_task(task: Task) -> bool:
    kind, answer, reference = task
    try:
        return _verifies(answer, reference) if kind == "check" else _parses(answer)
    except Exception:
        return False


def _parse_boxed(answer: str, fallback: bool) -> list:
    """math-verify finds the answer most reliably inside a \\boxed{} it extracts itself."""
    from math_verify import parse

    mode = "first_match" if fallback else "no_fallback"
    return parse(f"\\boxed{{{answer}}}", fallback_mode=mode, parsing_timeout=None)


def _verifies(answer: str, reference: str) -> bool:
    from math_verify import verify

    gold = _parse_boxed(reference, fallback=True)
    target = _parse_boxed(answer, fallback=True)
    return verify(gold, target, timeout_seconds=None)


def _parses(answer: str) -> bool:
    """True if math-verify turns the answer into a math object, not just the raw string."""
    return len(_parse_boxed(answer, fallback=False)) > 0


# --- parent side ----------------------------------------------------------------------------------


@dataclass
class _Worker:
    process: subprocess.Popen
    conn: Connection
    deadline: float  # for the startup while not ready, else for the task in flight
    ready: bool = False
    task: int | None = None  # index of the task in flight


class AnswerChecker:
    """A pool of math-verify workers; a check that hangs or crashes its worker counts as False.

    Use as a context manager (or call close()). Not thread-safe: one batch at a time. Identical
    tasks within a batch are checked once.
    """

    def __init__(self, workers: int = 1, timeout_s: float = 5.0):
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.timeout_s = timeout_s
        self._workers = [self._start_worker() for _ in range(workers)]
        self._run_tasks([], until_ready=True)  # so that a startup failure shows here

    def check_many(self, pairs: list[tuple[str, str]]) -> list[bool]:
        """Whether each (candidate, reference) pair of \\boxed{} contents is equal as math."""
        return self._run_deduplicated([("check", c, r) for c, r in pairs])

    def parses_many(self, answers: list[str]) -> list[bool]:
        """Whether math-verify parses each \\boxed{} content into a math object."""
        return self._run_deduplicated([("parse", a, "") for a in answers])

    @property
    def worker_pids(self) -> list[int]:
        """Current worker process ids, for monitoring (and for tests that kill a worker)."""
        return [w.process.pid for w in self._workers]

    def close(self) -> None:
        """Closing the socket ends a worker's loop; one that does not exit promptly is killed."""
        for worker in self._workers:
            worker.conn.close()
        for worker in self._workers:
            try:
                worker.process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
        self._workers = []

    def __enter__(self) -> "AnswerChecker":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def _start_worker(self) -> _Worker:
        parent_end, child_end = socket.socketpair()
        with child_end:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    WORKER_COMMAND,
                    str(child_end.fileno()),
                    str(self.timeout_s),
                ],
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
                env=_worker_env(),
            )
        conn = Connection(parent_end.detach())
        return _Worker(process, conn, deadline=time.monotonic() + STARTUP_TIMEOUT_S)

    def _run_deduplicated(self, tasks: list[Task]) -> list[bool]:
        unique = list(dict.fromkeys(tasks))
        verdicts = dict(zip(unique, self._run_tasks(unique), strict=True))
        return [verdicts[task] for task in tasks]

    def _run_tasks(self, tasks: list[Task], until_ready: bool = False) -> list[bool]:
        """Keep every ready worker busy with one task until all tasks have a verdict.

        A worker replaced during the batch finishes starting in the background, unless until_ready.
        """
        if not self._workers:
            raise RuntimeError("AnswerChecker is closed")
        verdicts = [False] * len(tasks)
        queue = deque(range(len(tasks)))
        try:
            while queue or any(
                w.task is not None or (until_ready and not w.ready) for w in self._workers
            ):
                self._dispatch(queue, tasks)
                self._collect(verdicts)
                self._expire()
        except BaseException:
            self.close()  # workers may hold tasks of this batch: the checker cannot be reused
            raise
        return verdicts

    def _dispatch(self, queue: deque[int], tasks: list[Task]) -> None:
        for worker in list(self._workers):
            if queue and worker.ready and worker.task is None:
                index = queue.popleft()
                try:
                    worker.conn.send(tasks[index])
                except OSError:  # the worker died while idle
                    self._replace(worker)
                    queue.appendleft(index)
                    continue
                worker.task = index
                worker.deadline = time.monotonic() + self.timeout_s

    def _collect(self, verdicts: list[bool]) -> None:
        """Wait for a message or the nearest deadline, then take every message that is in."""
        waiting = [w for w in self._workers if w.task is not None or not w.ready]
        if not waiting:
            return
        timeout = max(0.0, min(w.deadline for w in waiting) - time.monotonic())
        readable = set(wait([w.conn for w in waiting], timeout))
        for worker in [w for w in waiting if w.conn in readable]:
            try:
                message = worker.conn.recv()
            except (EOFError, OSError):
                self._on_worker_death(worker)
                continue
            if worker.ready:
                verdicts[worker.task] = message
                worker.task = None
            else:
                worker.ready = True

    def _expire(self) -> None:
        """Replace workers past their deadline; their task keeps its default verdict, False."""
        now = time.monotonic()
        for worker in list(self._workers):
            if worker.deadline > now or (worker.ready and worker.task is None):
                continue
            if not worker.ready:
                raise RuntimeError(
                    f"answer-check worker did not start within {STARTUP_TIMEOUT_S:.0f} s"
                )
            self._replace(worker)

    def _on_worker_death(self, worker: _Worker) -> None:
        if not worker.ready:
            raise RuntimeError(
                f"answer-check worker died while starting (exit code {worker.process.wait()})"
            )
        self._replace(worker)

    def _replace(self, worker: _Worker) -> None:
        worker.process.kill()
        worker.process.wait()
        worker.conn.close()
        self._workers[self._workers.index(worker)] = self._start_worker()


def _worker_env() -> dict[str, str]:
    """The parent's environment, with the directory holding this package first on the path."""
    package_root = str(Path(__file__).resolve().parent.parent)
    path = os.environ.get("PYTHONPATH")
    return os.environ | {"PYTHONPATH": package_root + (os.pathsep + path if path else "")}
