"""Warm stage workers for the local executor: a process per parallel slot imports the stage code
once and then runs `soar stage ...` command lines in process, one at a time (docs/design.md,
"Executors").

Starting a stage as its own process costs seconds (torch, transformers) where a tiny stage works
for one. A stage run in a worker behaves as the same command run alone: file descriptors 1 and 2
go to its log file, so C code and child processes write there too; `soar.cli.main` runs it, so
its exit code and `error: ` line are the command's own. A stage that kills its worker (SIGKILL, a
segfault, the OOM killer) ends with the worker's exit status, as a subprocess of its own would;
the executor then starts a fresh worker for later stages.

A worker keeps one math-verify answer checker for all its stages (grading.keep_answer_checker).
Workers are plain subprocesses talking over a socket pair, as the checker's are (soar/verify.py),
and die with the executor (PR_SET_PDEATHSIG).
"""

import ctypes
import gc
import os
import signal
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from multiprocessing.connection import Connection
from pathlib import Path

from soar.contract import EXIT_TRANSIENT
from soar.grading import keep_answer_checker

# The worker runs each command line with the `soar` command's own main function.
WORKER_COMMAND = (
    "import sys; from soar.cli import main; from soar.worker import serve; "
    "serve(int(sys.argv[1]), main)"
)

Main = Callable[[list[str]], int]


def die_with_parent() -> None:
    """Children get SIGKILL when the executor dies, so a killed run leaves no stray writers."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


# --- worker side: runs in the worker process ------------------------------------------------------


def serve(fd: int, main: Main) -> None:
    """Run each (argv, log path) the executor sends and answer with its exit code, until the
    executor closes its end of the socket."""
    conn = Connection(fd)
    with keep_answer_checker():
        while True:
            try:
                argv, log = conn.recv()
            except (EOFError, KeyboardInterrupt):  # Ctrl-C stops the executor, which kills us
                return
            with _output_to(Path(log)), _own_environment():
                code = _run(main, argv)
            _release_cuda_memory()
            conn.send(code)


def _run(main: Main, argv: list[str]) -> int:
    """main's exit code; an exception it lets through prints its traceback and counts as exit 1,
    as it would end the `soar` command."""
    try:
        return main(argv)
    except Exception:
        traceback.print_exc()
        return EXIT_TRANSIENT


@contextmanager
def _output_to(log: Path) -> Iterator[None]:
    """Point file descriptors 1 and 2 at the log (appending), and back afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "ab") as out:
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)


@contextmanager
def _own_environment() -> Iterator[None]:
    """Environment variables a stage sets (HF_HUB_OFFLINE, say) and a directory it changes to
    are its own, as in a process of its own: restored when it ends."""
    env, cwd = dict(os.environ), os.getcwd()
    try:
        yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)


def _release_cuda_memory() -> None:
    """Hand the CUDA memory a finished stage held back to the device, for other workers' stages:
    torch's allocator keeps freed blocks cached. On CPU nothing is done: a stage's models are
    freed by reference counting when it returns, and a full collection (0.2 s with torch loaded)
    would cost a tiny stage a fifth of its time."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()  # tensors held only by reference cycles
        torch.cuda.empty_cache()


# --- executor side ------------------------------------------------------------------------------


class Worker:
    """One warm worker process; runs one command line at a time."""

    def __init__(self) -> None:
        parent_end, child_end = socket.socketpair()
        with child_end:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER_COMMAND, str(child_end.fileno())],
                pass_fds=[child_end.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
        self.conn = Connection(parent_end.detach())

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def start(self, argv: list[str], log: Path) -> bool:
        """Hand the worker `soar` arguments to run, writing to `log`; False if it has died."""
        if not self.alive:
            return False
        try:
            self.conn.send((argv, str(log)))
        except OSError:
            return False
        return True

    def poll(self) -> int | None:
        """The exit code of the command in flight once it has ended, else None: the command's
        own, or the worker's exit status if the command killed it."""
        if self.conn.poll():
            try:
                return self.conn.recv()
            except (EOFError, OSError):  # reset, not EOF, if it died with our command unread
                return self.process.wait()
        return self.process.poll()

    def stop(self) -> None:
        """Kill the worker, idle or mid-command, and reap it."""
        self.process.kill()
        self.process.wait()
        self.conn.close()
