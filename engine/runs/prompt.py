"""What a run shows the model: instructions, the thread's messages, and the run's own steps.

`truncation_strategy` decides which thread messages fit: `last_messages` keeps the newest N,
`auto` drops the oldest until the prompt fits the model's context (or `max_prompt_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from engine.knowledge import citations
from engine.knowledge.chunking import count_tokens
from engine.models import Message, Run, RunStep
from engine.tools import file_search
from engine.tools.code_interpreter import tool as code_interpreter
from engine.tools.code_interpreter.sessions import InputFile

# Tokens kept free for the answer when the run sets no max_completion_tokens.
ANSWER_RESERVE = 4096
# Per-message framing tokens (role, separators), as OpenAI's chat format adds.
MESSAGE_OVERHEAD = 4


@dataclass
class Prompt:
    messages: list[dict[str, Any]]
    tokens: int
    fits: bool


def message_tokens(message: dict[str, Any]) -> int:
    content = message.get("content") or ""
    if not isinstance(content, str):
        content = json.dumps(content)
    extra = json.dumps(message["tool_calls"]) if message.get("tool_calls") else ""
    return count_tokens(content) + count_tokens(extra) + MESSAGE_OVERHEAD


def chat_content(message: Message) -> str:
    parts = []
    for part in message.content:
        if part.get("type") == "text":
            parts.append(part["text"]["value"])
        elif part.get("type") == "image_file":
            parts.append(f"[image file {part['image_file']['file_id']}]")
        elif part.get("type") == "image_url":
            parts.append(f"[image {part['image_url']['url']}]")
    return "\n\n".join(parts)


def history(run: Run) -> list[dict[str, Any]]:
    """The thread's messages before this run, oldest first, in chat format."""
    messages = Message.objects.filter(thread_id=run.thread_id).exclude(run_id=run.id)
    return [
        {"role": message.role, "content": chat_content(message)}
        for message in messages.order_by("created_at", "id")
    ]


def run_items(run: Run) -> list[dict[str, Any]]:
    """The run's own progress so far: its answers, tool calls and their outputs."""
    items: list[dict[str, Any]] = []
    searches = 0
    for step in RunStep.objects.filter(run=run).order_by("created_at", "id"):
        details = step.step_details
        if step.type == "message_creation":
            message = Message.objects.filter(pk=details["message_creation"]["message_id"]).first()
            if message and message.text():
                items.append({"role": "assistant", "content": chat_content(message)})
            continue
        calls = details.get("tool_calls", [])
        if not calls:
            continue
        items.append(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": call["id"], "type": "function", "function": call_function(call)}
                    for call in calls
                ],
            }
        )
        for call in calls:
            if call["type"] == "function":
                output = call["function"].get("output") or ""
            elif call["type"] == code_interpreter.TYPE:
                output = code_interpreter.output_for_model(call)
            else:
                search = call["file_search"]
                output = citations.results_for_model(
                    searches, search.get("query", ""), search.get("results", [])
                )
                searches += 1
            items.append({"role": "tool", "tool_call_id": call["id"], "content": output})
    return items


def call_function(call: dict[str, Any]) -> dict[str, str]:
    if call["type"] == "function":
        return {"name": call["function"]["name"], "arguments": call["function"]["arguments"]}
    if call["type"] == code_interpreter.TYPE:
        code = call[code_interpreter.TYPE]["input"]
        return {"name": code_interpreter.NAME, "arguments": json.dumps({"code": code})}
    query = call.get("file_search", {}).get("query", "")
    return {"name": "file_search", "arguments": json.dumps({"query": query})}


def build_prompt(run: Run) -> Prompt:
    system = [{"role": "system", "content": run.instructions}] if run.instructions else []
    older = history(run)
    strategy = run.truncation_strategy or {"type": "auto"}
    if strategy.get("type") == "last_messages" and strategy.get("last_messages"):
        older = older[-strategy["last_messages"] :]
    own = run_items(run)
    budget = prompt_budget(run)
    fixed = sum(message_tokens(m) for m in system + own)
    sizes = [message_tokens(m) for m in older]
    total = fixed + sum(sizes)
    # Drop the oldest messages until the prompt fits, but always keep the newest one.
    start = 0
    while total > budget and start < len(older) - 1:
        total -= sizes[start]
        start += 1
    return Prompt(messages=system + older[start:] + own, tokens=total, fits=total <= budget)


def prompt_budget(run: Run) -> int:
    reserve = run.max_completion_tokens or ANSWER_RESERVE
    budget = settings.MODEL_CONTEXT_TOKENS - reserve
    if run.max_prompt_tokens:
        budget = min(budget, run.max_prompt_tokens)
    return max(budget, 1)


def chat_tools(run: Run, code_files: list[InputFile]) -> list[dict[str, Any]]:
    """The run's tools in Chat Completions form; file_search and code_interpreter become
    functions we execute (code_interpreter's names the files in /mnt/data)."""
    tools = []
    for tool in run.tools:
        if tool["type"] == "function":
            tools.append({"type": "function", "function": tool["function"]})
        elif tool["type"] == file_search.NAME:
            tools.append(file_search.FUNCTION)
        elif tool["type"] == code_interpreter.TYPE:
            tools.append(code_interpreter.function(code_files))
    return tools


def chat_tool_choice(run: Run) -> Any:
    choice = run.tool_choice
    if isinstance(choice, dict):
        if choice["type"] == "function":
            return choice
        if choice["type"] == "file_search":
            return {"type": "function", "function": {"name": "file_search"}}
        if choice["type"] == code_interpreter.TYPE:
            return {"type": "function", "function": {"name": code_interpreter.NAME}}
        return "auto"
    return choice if choice in ("none", "auto", "required") else None


def chat_response_format(run: Run) -> Any:
    fmt = run.response_format
    return fmt if isinstance(fmt, dict) else None
