"""Child processes that cannot outlive the test session.

Each child runs in its own process group (so its own children are stopped with it) and, on Linux,
asks the kernel to kill it if the thread that started it dies: a crashed or killed pytest leaves
no etcd or apiserver behind holding ports and data directories.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TypeVar

T = TypeVar("T")

_PR_SET_PDEATHSIG = 1
try:
    _libc: ctypes.CDLL | None = ctypes.CDLL(None, use_errno=True)
except OSError:  # not glibc-like: the process group is then the only safety net
    _libc = None


def _die_with_parent() -> None:
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float,
    what: str,
    interval: float = 0.2,
    alive: ManagedProcess | None = None,
) -> T:
    """Polls ``probe`` until it returns something other than None/False, or fails loudly.

    Exceptions from the probe count as "not yet"; the last one is quoted in the timeout error.
    With ``alive``, a child that exits early fails at once with the tail of its log.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result is not None and result is not False:
                return result
        except Exception as exc:  # any failure means "not ready yet"
            last_error = exc
        if alive is not None and alive.returncode is not None:
            raise RuntimeError(
                f"{alive.name} exited with {alive.returncode} while waiting for {what}\n"
                f"{alive.log_tail()}"
            )
        if time.monotonic() > deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            tail = f"\n{alive.log_tail()}" if alive is not None else ""
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}{detail}{tail}")
        time.sleep(interval)


class ManagedProcess:
    """A child process with its output in a log file, stopped as a whole process group."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | str | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log: IO[bytes] = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self._log.write(f"$ {' '.join(self.argv)}\n".encode())
        self._log.flush()
        try:
            self.popen = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
                preexec_fn=_die_with_parent,  # only a prctl call: fork-safe
            )
        except BaseException:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log_tail(self, lines: int = 40) -> str:
        """The end of the child's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return f"[{self.name}: no log at {self.log_path}]"
        tail = "\n".join(text.splitlines()[-lines:])
        return f"--- last lines of {self.log_path} ---\n{tail}"

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM to the group, SIGKILL after ``grace`` seconds; returns the exit code."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.signal_group(signal.SIGKILL)
                self.popen.wait()
        # Grandchildren that ignored SIGTERM (or outlived the leader) go too.
        self.signal_group(signal.SIGKILL)
        self._log.close()
        return self.popen.returncode


def reap_all(processes: Sequence[ManagedProcess]) -> list[BaseException]:
    """Stops processes in the order given, carrying on past failures; returns those failures."""
    errors: list[BaseException] = []
    for proc in processes:
        try:
            proc.stop()
        except BaseException as exc:  # every child gets its chance to stop
            errors.append(exc)
    return errors
