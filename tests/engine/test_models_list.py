"""/v1/models lists the model API's models and the offline model."""

import openai

from tests.fake_model import FakeModelServer


def test_models_lists_the_model_api_and_the_offline_model(
    client: openai.OpenAI, model_server: FakeModelServer
) -> None:
    names = [model.id for model in client.models.list()]
    assert "gpt-4o-mini" in names
    assert names[-1] == "threadline-retrieval"


def test_without_a_model_api_only_the_offline_model_is_listed(
    offline_client: openai.OpenAI,
) -> None:
    assert [model.id for model in offline_client.models.list()] == ["threadline-retrieval"]
