"""The run store, file:// and s3:// (moto's real HTTP server): atomic writes, conditional create,
listing, directories, and one-line errors."""

import threading
import uuid

import pytest

from soar.store import StoreError, open_store, read_json, write_json


@pytest.fixture(params=["file", "s3"])
def store(request, tmp_path):
    if request.param == "file":
        return open_store((tmp_path / "run").as_uri())
    server = request.getfixturevalue("s3_server")
    bucket = f"runs-{uuid.uuid4().hex[:8]}"
    server.client().create_bucket(Bucket=bucket)
    return open_store(f"s3://{bucket}/team/run-1")


def test_roundtrip_and_listing(store):
    write_json(store, "steps/1/record.json", {"a": 1})
    store.write_bytes("steps/2/x.bin", b"\x00\x01")
    store.write_bytes("steps-other/y.bin", b"y")
    assert read_json(store, "steps/1/record.json") == {"a": 1}
    assert store.list("steps") == ["steps/1/record.json", "steps/2/x.bin"]
    assert store.list("nothing") == []
    with pytest.raises(KeyError):
        store.read_bytes("steps/3/none.json")
    store.delete("steps/2")
    assert not store.exists("steps/2/x.bin") and store.exists("steps/1/record.json")


def test_create_is_exclusive_even_when_racing(store):
    wins = []

    def commit(i: int) -> None:
        if store.create("done/1/teacher-update.json", str(i).encode()):
            wins.append(i)

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1
    assert store.read_bytes("done/1/teacher-update.json") == str(wins[0]).encode()
    assert store.list("done") == ["done/1/teacher-update.json"]  # no temp files left behind


def test_directories(store, tmp_path):
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "w.bin").write_bytes(b"w" * 100_000)
    (src / "sub" / "c.json").write_text("{}")
    store.upload_dir(src, "checkpoints/a")
    store.download_dir("checkpoints/a", tmp_path / "out")
    assert (tmp_path / "out" / "sub" / "c.json").read_text() == "{}"
    assert (tmp_path / "out" / "w.bin").read_bytes() == b"w" * 100_000
    with pytest.raises(KeyError):
        store.download_dir("checkpoints/missing", tmp_path / "none")


def test_bad_uris_and_escapes(tmp_path):
    with pytest.raises(StoreError, match="escapes the run store"):
        open_store(str(tmp_path)).read_bytes("../outside")
    with pytest.raises(StoreError, match="unsupported run store scheme 'gs'"):
        open_store("gs://bucket/run")
    with pytest.raises(StoreError, match="needs a bucket"):
        open_store("s3:///run")


def test_dead_s3_endpoint_is_one_clear_line(monkeypatch):
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")  # nothing listens on port 9
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-value")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    store = open_store("s3://bucket/run")
    with pytest.raises(StoreError) as info:
        store.read_bytes("run.json")
    message = str(info.value)
    assert message.startswith("s3://bucket/run: cannot read 'run.json': ")
    assert "\n" not in message and "very-secret-value" not in message
