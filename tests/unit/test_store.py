"""The run store on file://: atomic writes, conditional create, listing, directories, and
one-line errors. tests/integration/test_store_s3.py runs the same tests on s3:// (moto)."""

import threading

import pytest

from soar import layout
from soar.store import StoreError, open_store, read_json, write_json


@pytest.fixture
def store(tmp_path):
    return open_store((tmp_path / "run").as_uri())


def test_roundtrip_and_listing(store):
    write_json(store, "a/1/x.json", {"a": 1})
    store.write_bytes("a/2/x.bin", b"\x00\x01")
    store.write_bytes("a-other/y.bin", b"y")
    assert read_json(store, "a/1/x.json") == {"a": 1}
    assert store.list("a") == ["a/1/x.json", "a/2/x.bin"]
    assert store.list("nothing") == []
    with pytest.raises(KeyError):
        store.read_bytes("a/3/none.json")
    store.delete("a/2")
    assert not store.exists("a/2/x.bin") and store.exists("a/1/x.json")


def test_create_is_exclusive_even_when_racing(store):
    wins = []
    manifest = layout.done("1/teacher-update")

    def commit(i: int) -> None:
        if store.create(manifest, str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.read_bytes(manifest) == str(wins[0]).encode()
    assert store.list(layout.DONE) == [manifest]  # no temp files left behind


def test_directories(store, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"w" * 100_000)
    (src / "sub" / "c.json").write_text("{}")
    store.upload_dir(src, "models/a")
    store.download_dir("models/a", tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "c.json").read_text() == "{}"
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"w" * 100_000
    with pytest.raises(KeyError):
        store.download_dir("models/missing", tmp_path / "none")


def test_bad_uris_and_escapes(tmp_path):
    with pytest.raises(StoreError, match="escapes the run store"):
        open_store(str(tmp_path)).read_bytes("../outside")
    with pytest.raises(StoreError, match="unsupported run store scheme 'gs'"):
        open_store("gs://bucket/run")
    with pytest.raises(StoreError, match="needs a bucket"):
        open_store("s3:///run")
