"""A stage pod archives its own output to the run store when it ends (docs/design.md, "Cleanup"):
the operator deletes the Jobs of old committed steps, and their pods' logs go with them.

The output is copied at the file-descriptor level, so C code, tracebacks and child processes are
archived too, and it still reaches the container log (`kubectl logs`), where stderr now comes
through stdout (the container log holds both streams in one either way). A pod killed
with SIGKILL (the OOM killer, a lost node) archives nothing; SIGTERM (deletion, eviction) ends
the stage with exit 143 after its log is written.
"""

import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import replace

from soar.contract import EXIT_TERMINATED
from soar.store import StoreError, open_store
from soar.store_s3 import S3Options

CHUNK = 1 << 16
DRAIN_SECONDS = 5.0  # a child process still holding the output open is not waited for longer


@contextmanager
def archived_output(store_uri: str, key: str) -> Iterator[None]:
    """Everything written to fds 1 and 2 inside the block also goes to `key` in the store at its
    end, whatever the exit; a store that cannot take it within 30 s costs a warning, not the
    stage."""
    sys.stdout.flush()
    sys.stderr.flush()
    out = os.dup(1)  # the container log: the stage's output still goes there
    saved_err = os.dup(2)
    read_end, write_end = os.pipe()
    os.dup2(write_end, 1)
    os.dup2(write_end, 2)
    os.close(write_end)
    with tempfile.TemporaryFile() as copy:
        copier = threading.Thread(target=_copy, args=(read_end, out, copy), daemon=True)
        copier.start()
        previous = signal.signal(signal.SIGTERM, _exit_terminated)
        try:
            yield
        finally:
            signal.signal(signal.SIGTERM, previous)
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(out, 1)  # drops the pipe's last write end held here: the copier ends
            os.dup2(saved_err, 2)
            os.close(saved_err)
            copier.join(DRAIN_SECONDS)
            copy.seek(0)
            try:
                store = open_store(store_uri, replace(S3Options.from_env(), retry_seconds=30.0))
                store.write_bytes(key, copy.read())
            except (StoreError, OSError) as err:
                print(f"warning: the stage's log was not archived to {key}: {err}", file=sys.stderr)
            os.close(out)


def _copy(read_end: int, out: int, copy) -> None:
    """Tee the pipe into the container log and the archive copy until every writer is gone."""
    with suppress(OSError, ValueError):  # ValueError: the block ended without waiting for us
        while chunk := os.read(read_end, CHUNK):
            copy.write(chunk)
            while chunk:
                chunk = chunk[os.write(out, chunk) :]
    os.close(read_end)


def _exit_terminated(signum: int, frame: object) -> None:
    raise SystemExit(EXIT_TERMINATED)
