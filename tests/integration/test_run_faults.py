"""Faults around whole `soar run`s on the tiny model, with real processes, stores and files: a
second executor, a corrupted record or checkpoint, a data path typo, a full disk, and an S3
endpoint that only the spec names. Each is named in one line and loses nothing."""

import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from soar import layout
from tests.support.manifests import TINY, decisions, merge, soarrun, write_manifest
from tests.support.runs import soar, start_run, tiny_manifest, wait_for

pytestmark = pytest.mark.slow


def error_line(result: subprocess.CompletedProcess) -> str:
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("error: "), result.stderr[-2000:]
    return lines[-1]


def copy_run(finished_run: Path, folder: Path) -> tuple[Path, Path]:
    """A copy of the finished tiny run in `folder`: its manifest and its store."""
    shutil.copytree(finished_run, folder / "e2e")
    return tiny_manifest(folder), folder / "e2e"


def test_a_second_executor_is_refused_and_the_first_is_undisturbed(finished_run, tmp_path):
    manifest = tiny_manifest(tmp_path)
    store = tmp_path / "e2e"
    first = start_run(manifest, tmp_path, stderr=subprocess.PIPE, text=True)
    wait_for(store / layout.lease(1), first, 120)
    second = soar("run", str(manifest), cwd=tmp_path)
    assert second.returncode == 1
    line = error_line(second)
    assert f"is driven by soar run (pid {first.pid}) on " in line
    assert first.wait(timeout=900) == 0, first.stderr.read()[-2000:]
    assert decisions(store, 2) == decisions(finished_run, 2)


def test_a_corrupt_record_stops_the_run_and_says_how_to_recompute_it(finished_run, tmp_path):
    manifest, store = copy_run(finished_run, tmp_path)
    (store / layout.step_record(1)).write_bytes(b'{"step": 1, "base')
    (store / layout.done("2/teacher-update")).unlink()  # so step 2 reads record 1 again
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: stage 2/teacher-update failed (exit 2): {store.as_uri()}/steps/1/record.json: "
        "corrupt, not JSON (Unterminated string starting at); delete "
        "done/1/teacher-update.json to run stage 1/teacher-update again"
    )
    report = soar("report", store.as_uri(), cwd=tmp_path)
    assert report.returncode == 0
    assert "   1  unreadable: " in report.stdout and "after step 2" in report.stdout
    # The advice works: the run recomputes step 1's record and ends as if nothing happened.
    (store / layout.done("1/teacher-update")).unlink()
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert decisions(store, 2) == decisions(finished_run, 2)


def test_a_corrupt_checkpoint_is_named_and_never_loaded(finished_run, tmp_path):
    manifest, store = copy_run(finished_run, tmp_path)
    prefix = layout.promoted_student(2)  # the baseline that step 2's evaluation loads
    weights = next((store / prefix).glob("*/model.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-100] ^= 0xFF
    weights.write_bytes(bytes(data))
    (store / layout.done("2/evaluate")).unlink()
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: stage 2/evaluate failed (exit 2): checkpoint {store.as_uri()}/{prefix}: "
        "model.safetensors does not match its size and SHA-256; it is promoted student 2, a copy "
        "of the student model of the step whose record promoted it: restore it from there or "
        "start a new run"
    )


def test_a_data_path_typo_can_be_fixed_after_prepare_failed(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"question": "12345+54321", "answer": "66666"}\n')
    (tmp_path / "test.jsonl").write_text('{"question": "23456+65432", "answer": "88888"}\n')
    data = {"domain": "arith", "hardTrain": "trian.jsonl", "hardTest": "test.jsonl"}
    typo = write_manifest(tmp_path, soarrun("e2e", merge(TINY, {"steps": 1}), data=data))
    result = soar("run", str(typo), cwd=tmp_path)
    assert result.returncode == 2
    assert error_line(result) == (
        f"error: stage prepare failed (exit 2): {tmp_path / 'trian.jsonl'}: no such file"
    )
    fixed = write_manifest(
        tmp_path,
        soarrun("e2e", merge(TINY, {"steps": 1}), data=data | {"hardTrain": "train.jsonl"}),
    )
    proc = start_run(fixed, tmp_path)
    done = tmp_path / "e2e" / layout.done("prepare")
    wait_for(done, proc, 120)
    proc.kill()
    proc.wait()
    assert done.exists()
    rows = (tmp_path / "e2e" / layout.hard_split("train")).read_text()
    assert "66666" in rows


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_full_disk_names_the_path_and_stage_and_leaves_no_temp_file(small_disk, tmp_path):
    store = small_disk / "e2e"
    manifest = tiny_manifest(tmp_path, storage={"uri": store.as_uri()})
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith("error: stage ") and "No space left on device" in line
    assert f"{store.as_uri()}: cannot write '" in line
    stage = line.split()[2]
    log = Path(line.rsplit("its log is kept at ", 1)[1]) if "log is kept" in line else None
    assert log is None or (log.exists() and log.stat().st_size > 0)
    assert (log is not None) or (store / layout.stage_log(stage)).exists()
    assert [p for p in store.rglob(".*") if p.is_file()] == []  # no half-written temp files


def test_the_s3_endpoint_in_the_spec_reaches_every_stage(s3_server, tmp_path):
    bucket = f"spec-endpoint-{uuid.uuid4().hex[:8]}"
    s3_server.client().create_bucket(Bucket=bucket)
    storage = {"uri": f"s3://{bucket}/e2e", "endpoint": s3_server.endpoint_url}
    manifest = tiny_manifest(tmp_path, **merge(TINY, {"steps": 1, "storage": storage}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    result = soar("run", str(manifest), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    keys = s3_server.client().list_objects_v2(Bucket=bucket, Prefix="e2e/done/")["Contents"]
    assert f"e2e/{layout.done('1/teacher-update')}" in {k["Key"] for k in keys}


def test_an_emptied_completion_manifest_reruns_its_stage(finished_run, tmp_path):
    manifest, store = copy_run(finished_run, tmp_path)
    (store / layout.done("2/evaluate")).write_bytes(b"")
    (store / layout.evaluation(2)).unlink()
    result = soar("run", str(manifest), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "step 2/2 evaluate" in result.stdout
    assert decisions(store, 2) == decisions(finished_run, 2)


def s3_decisions(client, bucket: str, prefix: str, steps: int) -> dict[str, str]:
    """`decisions` of a run whose store is s3://bucket/prefix."""
    keys = [layout.step_record(t) for t in range(1, steps + 1)]
    keys += [layout.evaluation(t) for t in range(steps + 1)] + [layout.PQ]
    found = {}
    for key in keys:
        try:
            body = client.get_object(Bucket=bucket, Key=f"{prefix}/{key}")["Body"]
        except client.exceptions.NoSuchKey:
            continue
        found[key] = body.read().decode()
    return found


def test_an_s3_outage_longer_than_the_retry_window_fails_and_resumes(
    finished_run, s3_server, tmp_path
):
    from tests.support.proxy import CuttableProxy

    endpoint = s3_server.endpoint_url.rsplit(":", 1)
    proxy = CuttableProxy(("127.0.0.1", int(endpoint[1])))
    client = s3_server.client()
    bucket = f"outage-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=bucket)
    storage = {"uri": f"s3://{bucket}/e2e", "endpoint": proxy.url, "retrySeconds": 5}
    manifest = tiny_manifest(tmp_path, storage=storage)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    run = start_run(manifest, tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    marker = f"e2e/{layout.done('1/baseline')}"
    deadline = time.time() + 600
    while run.poll() is None and time.time() < deadline:
        listed = client.list_objects_v2(Bucket=bucket, Prefix=marker).get("Contents", [])
        if listed:
            break
        time.sleep(0.5)
    proxy.cut()  # away for longer than retrySeconds
    try:
        assert run.wait(timeout=300) != 0
    finally:
        proxy.restore()
    last = run.stderr.read().strip().splitlines()[-1]
    assert last.startswith("error: ") and "still failing after 5 s of retries" in last
    result = soar("run", str(manifest), cwd=tmp_path, env=env)
    proxy.close()
    assert result.returncode == 0, result.stderr[-2000:]
    assert s3_decisions(client, bucket, "e2e", 2) == decisions(finished_run, 2)
