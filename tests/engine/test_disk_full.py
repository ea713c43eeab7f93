"""A full disk is said as what it is: an upload that does not fit, a run it stopped.

The data directory is a small tmpfs that the test fills with a file of its own: a real full
disk, where every write of the server (its SQLite database, the uploaded files) fails with
ENOSPC. Mounting it takes root (CI runs as root); elsewhere the test is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.engine.test_runs import unique_model, wait_for
from tests.fake_model import FakeModelServer, Reply
from tests.servers import ThreadlineServer, model_env, sdk


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(where)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (root only): {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def fill(disk: Path) -> Path:
    """Take every free byte of the disk; the file returned gives them back when removed."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for size in (1024 * 1024, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


@pytest.fixture
def server(small_disk: Path, model_server: FakeModelServer) -> Iterator[ThreadlineServer]:
    server = ThreadlineServer(env=model_env(model_server), data_dir=small_disk).start()
    try:
        yield server
    finally:
        server.stop()


def test_an_upload_that_does_not_fit_says_the_server_is_out_of_space(
    server: ThreadlineServer, small_disk: Path
) -> None:
    filler = fill(small_disk)
    with sdk(server) as client:
        big = io.BytesIO(b"x" * (2 * 1024 * 1024))
        with pytest.raises(openai.APIStatusError) as caught:
            client.files.create(file=("big.txt", big), purpose="assistants")
        assert caught.value.status_code == 507
        assert "out of disk space" in caught.value.message
        filler.unlink()
        stored = small_disk / "files"
        assert not stored.exists() or list(stored.iterdir()) == []  # nothing half-written kept
        big.seek(0)
        assert client.files.create(file=("big.txt", big), purpose="assistants").bytes > 0


@pytest.mark.skipif(
    bool(os.environ.get("THREADLINE_TEST_POSTGRES")),
    reason="the run's answer is written to PostgreSQL, whose disk is not the full one",
)
def test_a_run_stopped_by_a_full_disk_says_so_and_leaves_no_answer_in_progress(
    server: ThreadlineServer, small_disk: Path, model_server: FakeModelServer
) -> None:
    model = unique_model()
    model_server.script(model, [Reply("word " * 150, chunk_delay=0.02)])
    with sdk(server) as client:
        assistant = client.beta.assistants.create(model=model)
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Talk"}])
        run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
        wait_for(client, run, ("in_progress",))
        time.sleep(0.5)
        filler = fill(small_disk)
        time.sleep(6)  # the answer ends meanwhile, and cannot be saved
        filler.unlink()
        failed = wait_for(client, run, ("failed", "completed"), timeout=20)
        assert failed.status == "failed", failed
        assert failed.last_error is not None
        assert "out of disk space" in failed.last_error.message
        assert "restarted" not in failed.last_error.message
        answer = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
        assert answer and all(m.status != "in_progress" for m in answer)
