"""The file run store: atomic writes, conditional create, listing, directories."""

import threading

import pytest

from soar.store import StoreError, open_store, read_json, write_json


def test_roundtrip_and_listing(tmp_path):
    store = open_store((tmp_path / "run").as_uri())
    write_json(store, "steps/1/record.json", {"a": 1})
    store.write_bytes("steps/2/x.bin", b"\x00\x01")
    assert read_json(store, "steps/1/record.json") == {"a": 1}
    assert store.list("steps") == ["steps/1/record.json", "steps/2/x.bin"]
    assert store.list("nothing") == []
    with pytest.raises(KeyError):
        store.read_bytes("steps/3/none.json")
    store.delete("steps/2")
    assert not store.exists("steps/2/x.bin")


def test_create_is_exclusive_even_when_racing(tmp_path):
    store = open_store(str(tmp_path))
    wins = []

    def commit(i: int) -> None:
        if store.create("done/1/teacher-update.json", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.read_bytes("done/1/teacher-update.json") == str(wins[0]).encode()
    assert not [p for p in tmp_path.rglob(".*")]  # no temp files left behind


def test_directories_and_escapes(tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"w")
    (src / "sub" / "c.json").write_text("{}")
    store = open_store(str(tmp_path / "run"))
    store.upload_dir(src, "checkpoints/a")
    store.download_dir("checkpoints/a", tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "c.json").read_text() == "{}"
    with pytest.raises(StoreError, match="escapes the run store"):
        store.read_bytes("../outside")
    with pytest.raises(StoreError, match="unsupported run store scheme"):
        open_store("gs://bucket/run")
