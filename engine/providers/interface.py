"""What every model provider speaks: a request in, a stream of text deltas and one turn end out.

A provider turns a `ModelRequest` into a stream of `TextDelta`s (and `ToolCallDelta`s, where
the model API streams its calls) ending with one `TurnEnd` (finish reason, tool calls, usage).
Failures become a `ModelError` whose message a person can act on. The Chat Completions
provider and the offline model both speak it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class ModelRequest:
    model: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    tool_choice: Any = None
    parallel_tool_calls: bool = True
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None
    response_format: Any = None
    # What the offline model answers from; a language model gets it through tool messages.
    knowledge: Knowledge | None = None


@dataclass
class Knowledge:
    has_stores: bool
    # The run's file_search calls so far, each {"query", "results": [...]}.
    searches: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class TextDelta:
    text: str


@dataclass
class ToolCallRequest:
    id: str
    name: str
    arguments: str


@dataclass
class ToolCallDelta:
    """A piece of a tool call as the model writes it: its id and name come first, then the
    arguments a piece at a time (so code can be shown before the call is complete)."""

    index: int
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class TurnEnd:
    finish_reason: str = "stop"
    tool_calls: list[ToolCallRequest] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0


ModelEvent = TextDelta | ToolCallDelta | TurnEnd


class ModelError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Provider(Protocol):
    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...
