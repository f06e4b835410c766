"""One writer per run store: the lease refuses a second executor, hands over when the holder
expires, releases or died on this host, and lets exactly one of two contenders win."""

import socket
import subprocess
import sys
import threading

import pytest

from soar import layout
from soar.lease import Holder, Lease, LeaseHeld
from soar.store import FileStore, write_json


@pytest.fixture
def store(tmp_path):
    return FileStore(tmp_path)


def test_second_executor_is_refused_naming_the_holder(store):
    first = Lease(store, "soar run (pid 1)", ttl=60)
    first.acquire(now=1000.0)
    with pytest.raises(LeaseHeld) as err:
        Lease(store, "soar run (pid 2)", ttl=60).acquire(now=1030.0)
    message = str(err.value)
    assert "driven by soar run (pid 1)" in message and "expires in 30 s" in message


def test_an_expired_lease_is_taken_over_and_the_old_holder_finds_out(store):
    first = Lease(store, "soar run (pid 1)", ttl=60)
    first.acquire(now=1000.0)
    second = Lease(store, "soar run (pid 2)", ttl=60)
    second.acquire(now=1061.0)  # 1 s after first's expiry
    assert (first.generation, second.generation) == (1, 2)
    with pytest.raises(LeaseHeld, match="lost the lease to soar run \\(pid 2\\)"):
        first.renew(now=1062.0)


def test_renewing_keeps_others_out(store):
    first = Lease(store, "a", ttl=60)
    first.acquire(now=1000.0)
    first.renew(now=1050.0)  # now expires at 1110
    with pytest.raises(LeaseHeld):
        Lease(store, "b", ttl=60).acquire(now=1100.0)


def test_release_lets_the_next_executor_start_at_once(store):
    first = Lease(store, "a", ttl=60)
    first.acquire(now=1000.0)
    first.release()
    second = Lease(store, "b", ttl=60)
    second.acquire(now=1001.0)
    assert second.generation == 2


def test_a_dead_holder_on_this_host_is_taken_over_before_expiry(store):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        text=True,
        capture_output=True,
        check=True,
    )
    pid = int(dead.stdout)
    holder = Holder(owner="soar run (killed)", host=socket.gethostname(), pid=pid, expires=1e12)
    write_json(store, layout.lease(1), holder.to_json())
    Lease(store, "soar run (new)", ttl=60).acquire(now=1000.0)


def test_a_holder_on_another_host_is_trusted_until_expiry(store):
    holder = Holder(owner="soar-operator ns/r", host="elsewhere", pid=1, expires=2000.0)
    write_json(store, layout.lease(1), holder.to_json())
    with pytest.raises(LeaseHeld, match="soar-operator ns/r on elsewhere"):
        Lease(store, "soar run (pid 2)", ttl=60).acquire(now=1999.0)
    Lease(store, "soar run (pid 2)", ttl=60).acquire(now=2001.0)


def test_the_same_owner_picks_its_lease_up_again(store):
    # An operator restarted in a new pod drives the run it drove before.
    holder = Holder(owner="soar-operator ns/r", host="old-pod", pid=1, expires=2000.0)
    write_json(store, layout.lease(3), holder.to_json())
    lease = Lease(store, "soar-operator ns/r", ttl=300)
    lease.acquire(now=1990.0)
    assert lease.generation == 3


def test_of_two_contenders_for_an_expired_lease_exactly_one_wins(store):
    Lease(store, "old", ttl=1).acquire(now=0.0)
    results: list[str] = []
    barrier = threading.Barrier(8)

    def contend(i: int) -> None:
        barrier.wait()
        try:
            Lease(store, f"contender {i}", ttl=60).acquire(now=100.0)
            results.append("won")
        except LeaseHeld:
            results.append("refused")

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["refused"] * 7 + ["won"]
    assert store.list(layout.LEASES) == [layout.lease(1), layout.lease(2)]
