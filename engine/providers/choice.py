"""Which provider serves a run's model: the configured model API, or the offline model."""

from __future__ import annotations

from engine.providers.chat_completions import ChatCompletionsProvider, model_api_configured
from engine.providers.interface import Provider
from engine.providers.offline import OfflineModel

# Asking for this model always selects the offline model, even when a model API is configured.
OFFLINE_MODEL = "threadline-retrieval"


def is_offline(model: str) -> bool:
    return model == OFFLINE_MODEL or not model_api_configured()


_chat_provider: ChatCompletionsProvider | None = None


def provider_for(model: str) -> Provider:
    """The provider for a run's model. Called on the worker loop, which owns the HTTP client."""
    global _chat_provider
    if is_offline(model):
        return OfflineModel()
    if _chat_provider is None:
        _chat_provider = ChatCompletionsProvider()
    return _chat_provider
