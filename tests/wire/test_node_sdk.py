"""The cookbook's Assistants flows with the official Node SDK, unchanged, against live servers.

`tests/wire/node/flows.mjs` holds the flows as the SDK's README writes them, uploads from
`fs.createReadStream` included (sent chunked, with no length). The SDK is pinned in
`tests/wire/node/package-lock.json` and installed by `make test` (`npm ci`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

from tests.engine.test_file_search_runs import GEOBASE
from tests.fake_model import FakeModelServer, Reply, ToolCall
from tests.servers import ENGINE_KEY, ROOT, ThreadlineServer

NODE_DIR = ROOT / "tests" / "wire" / "node"


def run_flow(server: ThreadlineServer, flow: str, **inputs: str) -> None:
    node = shutil.which("node")
    assert node, "node is not installed (.ci/run installs Debian's nodejs)"
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `make test`: it runs npm ci"
    env = {
        **os.environ,
        "OPENAI_BASE_URL": server.api_url,
        "OPENAI_API_KEY": ENGINE_KEY,
        **{f"THREADLINE_{name.upper()}": value for name, value in inputs.items()},
    }
    result = subprocess.run(
        [node, "flows.mjs", flow],
        cwd=NODE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, f"{flow} failed:\n{result.stderr}\n{result.stdout}"
    assert result.stdout.strip().endswith(f"ok {flow}")


def echo_model() -> str:
    """Unscripted, the model API answers "Echo: " and the last user message."""
    return f"echo-{uuid.uuid4().hex[:8]}"


def test_basics(model_engine: ThreadlineServer) -> None:
    run_flow(model_engine, "basics", model=echo_model())


def test_create_and_poll_at_the_servers_pace(model_engine: ThreadlineServer) -> None:
    run_flow(model_engine, "createAndPoll", model=echo_model(), answer="Echo: Echo this back")


def test_stream(model_engine: ThreadlineServer) -> None:
    run_flow(model_engine, "stream", model=echo_model(), answer="Echo: Stream this back")


def test_function_calling(model_engine: ThreadlineServer, model_server: FakeModelServer) -> None:
    model = echo_model()
    answer = "It is 12°C and clear in Oslo."
    model_server.script(
        model, [Reply(tool_calls=[ToolCall("get_weather", '{"city": "Oslo"}')]), Reply(answer)]
    )
    run_flow(model_engine, "functionCalling", model=model, answer=answer)


def test_file_search_with_streamed_uploads(offline_engine: ThreadlineServer) -> None:
    run_flow(
        offline_engine,
        "fileSearch",
        pdf=str(GEOBASE),
        question="What does the abbreviation LRM stand for?",
        evidence="Linear Reference Method",
    )


def test_files(offline_engine: ThreadlineServer) -> None:
    run_flow(offline_engine, "files", pdf=str(GEOBASE))


def test_errors(offline_engine: ThreadlineServer) -> None:
    run_flow(offline_engine, "errors")
