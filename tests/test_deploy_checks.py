"""Production settings pass Django's deployment checks; settings that cannot work fail loudly."""

import os
import subprocess
import sys

import pytest

from tests.servers import ROOT, ThreadlineServer, free_port


def test_check_deploy_is_clean_with_production_settings(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {
        **os.environ,
        "DEBUG": "0",
        "THREADLINE_HTTPS": "1",
        "SECRET_KEY": "a-production-secret-key-of-fifty-or-more-random-chars-9f8e7d6c5b4a",
        "ALLOWED_HOSTS": "chat.example.com",
        "THREADLINE_DATA_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_bad_boolean_setting_fails_loudly(tmp_path) -> None:  # type: ignore[no-untyped-def]
    env = {**os.environ, "DEBUG": "maybe", "THREADLINE_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "DEBUG must be one of" in result.stderr


def test_server_refuses_to_start_when_redis_does_not_answer() -> None:
    # Nothing listens on the port: the process must say so, rather than serve a 500 at sign-in.
    server = ThreadlineServer(env={"REDIS_URL": f"redis://:s3cret@127.0.0.1:{free_port()}/0"})
    with pytest.raises(RuntimeError, match="exited early"):
        server.start()
    log = server.log()
    assert "REDIS_URL is set, but Redis at redis://:***@127.0.0.1:" in log
    assert "Connection refused" in log
    assert "s3cret" not in log
