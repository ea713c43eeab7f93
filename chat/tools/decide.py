"""What answers a call: the decision made once, when the call is recorded, before anything runs.

In order: a function the run was not offered is unknown; arguments that are not a JSON object,
or that fail the function's JSON Schema, go back to the model as an error; a registry function
runs as registered (if the user's groups may run it); a function defined on the assistant that
no registry entry runs is answered by the user.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

from chat.tools import python
from chat.tools.models import Function, FunctionCall

Status = FunctionCall.Status
Kind = FunctionCall.Kind


@dataclass
class Decision:
    kind: str
    status: str
    function: Function | None = None
    definition: dict[str, Any] = field(default_factory=dict)
    output: str = ""  # set when the call is refused: the error the model reads
    problem: str = ""  # the same, for the person


def error_output(message: str) -> str:
    """An error as the model reads it: a JSON object with an `error`."""
    return json.dumps({"error": message}, ensure_ascii=False)


def refused(message: str, function: Function | None = None) -> Decision:
    return Decision(
        Kind.NONE, Status.REFUSED, function, output=error_output(message), problem=message
    )


def offered_functions(run: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The function definitions the run was given, by name."""
    offered = {}
    for tool in run.get("tools") or []:
        function = tool.get("function") if tool.get("type") == "function" else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            offered[function["name"]] = function
    return offered


def decide(name: str, arguments: str, user: User, offered: dict[str, dict[str, Any]]) -> Decision:
    definition = offered.get(name)
    if definition is None:
        shown = name[:64] or "(no name)"
        return refused(f"There is no function called {shown} here; it was not run.")
    function = Function.objects.filter(name=name).first()
    parameters = function.parameters if function is not None else definition.get("parameters")
    _, problem = parse_arguments(name, arguments, parameters or {})
    if problem:
        return refused(problem, function)
    if function is None or function.kind == Function.Kind.USER:
        asked = function.definition() if function is not None else definition
        return Decision(Kind.USER, Status.WAITING_ANSWER, function, definition=asked)
    if not may_run(user, function):
        return refused(f"{user.get_username()} may not run {name}; it was not run.", function)
    if function.kind == Function.Kind.PYTHON and python.registered(name) is None:
        return refused(f"{name} is not set up on this server (no Python function).", function)
    if function.kind == Function.Kind.WEBHOOK and not function.url:
        return refused(f"{name} is not set up on this server (no webhook URL).", function)
    if function.kind == Function.Kind.MCP and function.mcp_server_id is None:
        return refused(f"{name} is not set up on this server (no MCP server).", function)
    status = Status.WAITING_APPROVAL if function.approval else Status.QUEUED
    return Decision(function.kind, status, function)


def parse_arguments(
    name: str, arguments: str, parameters: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """The arguments as an object, or "" and what is wrong with them."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError as bad_json:
        return {}, f"The arguments for {name} are not valid JSON ({bad_json}); it was not run."
    if not isinstance(parsed, dict):
        return {}, f"The arguments for {name} must be a JSON object; it was not run."
    try:
        validator = Draft202012Validator(parameters)
        error: ValidationError | None = best_match(validator.iter_errors(parsed))
    except Exception:  # a schema the validator cannot use: the admin's form checks it too
        return parsed, ""
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path)
        at = f" at {where}" if where else ""
        return {}, (
            f"The arguments for {name} do not match its parameters{at}: {error.message}; "
            "it was not run."
        )
    return parsed, ""


def may_run(user: User, function: Function) -> bool:
    """Checked at every call: the function's groups, when it has any."""
    groups = list(function.groups.values_list("pk", flat=True))
    return not groups or user.groups.filter(pk__in=groups).exists()
