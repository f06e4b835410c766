"""One writer per run store: a lease the local executor and the operator hold while they drive a
run (docs/design.md, "One writer per store").

The lease is a sequence of generations `lease/<n>.json`, each created with the store's
conditional create, so two contenders can never both take the same generation. The holder is the
newest generation; it renews by rewriting its own file with a later expiry. Another executor may
take over only by creating generation n+1, and only once generation n has expired, was released,
or belongs to a process on this host that is no longer alive (so a killed `soar run` can be
resumed at once). A holder that finds a newer generation has lost the lease and must stop.
"""

import os
import socket
import time
from dataclasses import dataclass

from soar import layout, records
from soar.store import RecordError, Store, StoreError, create_json, read_json, write_json


class LeaseHeld(RuntimeError):
    """Another writer holds the run's lease; the message names it."""


@dataclass
class Holder(records.Record):
    owner: str  # who drives the run: "soar run (pid 12, host a)" or "soar-operator ns/run"
    host: str
    pid: int
    expires: float  # seconds since the epoch; 0 once released


def this_process(owner: str, ttl: float, now: float) -> Holder:
    return Holder(owner=owner, host=socket.gethostname(), pid=os.getpid(), expires=now + ttl)


class Lease:
    """The lease on one run store for one owner. `acquire`, then `renew` more often than `ttl`,
    and `release` when done."""

    def __init__(self, store: Store, owner: str, ttl: float = 60.0):
        self.store = store
        self.owner = owner
        self.ttl = ttl
        self.generation: int | None = None

    def acquire(self, now: float | None = None, wait: bool = False, poll: float = 5.0) -> None:
        """Take the lease, or raise LeaseHeld naming the live holder; with `wait`, keep trying
        until the holder releases it or its lease expires."""
        while True:
            try:
                return self._acquire(time.time() if now is None else now)
            except LeaseHeld:
                if not wait:
                    raise
            time.sleep(poll)

    def _acquire(self, now: float) -> None:
        current, holder = self._newest()
        if holder is not None and holder.owner == self.owner and self._alive(holder):
            self.generation = current  # ours already (an operator reconciling again)
            if holder.expires - now < self.ttl / 2:
                self.renew(now)
            return
        if holder is not None and self._alive(holder) and holder.expires > now:
            left = holder.expires - now
            raise LeaseHeld(
                f"{self.store.uri} is driven by {holder.owner} on {holder.host} (lease expires in "
                f"{left:.0f} s unless renewed); only one executor may drive a run"
            )
        taken = this_process(self.owner, self.ttl, now)
        if not create_json(self.store, layout.lease(current + 1), taken.to_json()):
            _, winner = self._newest()
            who = winner.owner if winner else "another executor"
            raise LeaseHeld(f"{self.store.uri}: {who} took the lease at the same moment")
        self.generation = current + 1

    def renew(self, now: float | None = None) -> None:
        """Push the expiry forward; raise LeaseHeld if another writer has taken over."""
        now = time.time() if now is None else now
        current, holder = self._newest()
        if current != self.generation:
            who = holder.owner if holder else "another executor"
            raise LeaseHeld(f"{self.store.uri}: lost the lease to {who}; stopping")
        write_json(
            self.store, layout.lease(current), this_process(self.owner, self.ttl, now).to_json()
        )

    def release(self) -> None:
        """Let the next executor start at once (our generation expires now). Best effort: when
        the store cannot be reached, the lease simply runs out at its expiry."""
        if self.generation is None:
            return
        try:
            current, _ = self._newest()
            if current == self.generation:
                released = this_process(self.owner, 0.0, 0.0)
                write_json(self.store, layout.lease(current), released.to_json())
        except (StoreError, OSError):
            pass
        self.generation = None

    def _newest(self) -> tuple[int, Holder | None]:
        keys = self.store.list(layout.LEASES)
        numbers = [int(key.rsplit("/", 1)[1].split(".")[0]) for key in keys]
        if not numbers:
            return 0, None
        newest = max(numbers)
        try:
            return newest, Holder.from_json(read_json(self.store, layout.lease(newest)))
        except (KeyError, RecordError, TypeError):
            return newest, None  # unreadable: treated as expired, the next generation wins

    def _alive(self, holder: Holder) -> bool:
        """False only when the holder is a process on this host that no longer exists."""
        if holder.host != socket.gethostname():
            return True
        try:
            os.kill(holder.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
