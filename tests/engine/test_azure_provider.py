"""The engine calls Azure OpenAI when the Azure variables are set."""

from tests.conftest import sdk
from tests.fake_model import FakeModelServer, Reply
from tests.servers import ThreadlineServer


def test_runs_use_azure_deployments(model_server: FakeModelServer) -> None:
    env = {
        "AZURE_OPENAI_ENDPOINT": model_server.root_url,
        "AZURE_OPENAI_API_KEY": model_server.api_key,
        "OPENAI_API_VERSION": "2024-10-21",
    }
    server = ThreadlineServer(env=env).start()
    try:
        model_server.script("azure-deployment", [Reply("Hello from Azure")])
        with sdk(server) as client:
            assistant = client.beta.assistants.create(model="azure-deployment")
            run = client.beta.threads.create_and_run_poll(
                assistant_id=assistant.id,
                thread={"messages": [{"role": "user", "content": "hi"}]},
                poll_interval_ms=50,
            )
            assert run.status == "completed", run.last_error
            answer = client.beta.threads.messages.list(thread_id=run.thread_id).data[0]
            assert answer.content[0].text.value == "Hello from Azure"
        sent = [r for r in model_server.requests if "azure-deployment" in r["path"]][-1]
        assert sent["path"].startswith("/openai/deployments/azure-deployment/chat/completions")
        assert sent["headers"]["api-key"] == model_server.api_key
    finally:
        server.stop()
