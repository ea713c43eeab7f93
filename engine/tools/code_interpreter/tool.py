"""code_interpreter on the run side: the function a model sees, the files staged, the call run.

A language model calls code interpreter as a function named `python` with one string parameter
`code` (a contract: tests script it). The engine runs the code in the thread's sandbox session
on the run worker's loop and records OpenAI's `code_interpreter` tool call in the run step:
`input`, then `outputs` of type `logs` and `image` (figures stored as files of purpose
`assistants_output`). Files the code writes to /mnt/data are stored the same way, so the
answer's `sandbox:/mnt/data/NAME` links get `file_path` annotations.

Sessions live in the server process that runs the call. A thread's next run may execute in
another process (README, "Scaling out"): its files move with it (they are staged again from the
database) and its variables are reported as reset, since that process knows from the run steps
that the thread ran code before. A session is trusted only while it ran the thread's last code
call: one left behind in a process while the thread's code ran elsewhere is ended, never
resumed with stale variables.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from engine.models import Assistant, File, Message, Run, RunStep
from engine.providers.interface import ToolCallRequest
from engine.tools.code_interpreter.sessions import (
    Execution,
    InputFile,
    Sessions,
    Unavailable,
    sandbox_names,
)

TYPE = "code_interpreter"
NAME = "python"
# OpenAI's limit on a code interpreter's files per assistant and per thread.
MAX_INPUT_FILES = 20
LINK = re.compile(r"sandbox:(/mnt/data/[^\s)\]\"'<>]+)")

_sessions: Sessions | None = None


def sessions() -> Sessions:
    """This process's sessions, created on first use on the run worker's loop."""
    global _sessions
    if _sessions is None:
        _sessions = Sessions()
    return _sessions


def function(files: list[InputFile]) -> dict[str, Any]:
    names = sandbox_names(files)
    listed = "".join(f"\n- /mnt/data/{names[file.file_id]}" for file in files)
    inputs = f" The user's files are there:{listed}" if files else ""
    return {
        "type": "function",
        "function": {
            "name": NAME,
            "description": (
                "Run Python 3.11 code in a Jupyter-like session that keeps its variables between "
                "calls in this conversation. The last expression is shown; print() output, "
                "errors and figures (plt.show(), or figures left open) come back. Packages: "
                "numpy, pandas, matplotlib, scipy, sympy, openpyxl. No internet access. Read "
                "and write files in /mnt/data; to give the user a file you wrote, link it as "
                f"sandbox:/mnt/data/NAME.{inputs}"
            ),
            "parameters": {
                "type": "object",
                "properties": {"code": {"type": "string", "description": "The code to run."}},
                "required": ["code"],
            },
        },
    }


def enabled(run: Run) -> bool:
    return any(tool["type"] == TYPE for tool in run.tools)


def call_details(call: ToolCallRequest) -> dict[str, Any]:
    """The run step's record of a model's `python` call, outputs still to come."""
    try:
        arguments = json.loads(call.arguments or "{}")
        code = arguments.get("code", "") if isinstance(arguments, dict) else str(arguments)
    except ValueError:
        # Some models send the code itself rather than JSON arguments.
        code = call.arguments
    return {"id": call.id, "type": TYPE, "code_interpreter": {"input": code, "outputs": []}}


def input_files(run: Run) -> list[InputFile]:
    """The files a run's code sees in /mnt/data: the assistant's and the thread's
    `tool_resources.code_interpreter.file_ids`, then the thread's message attachments for
    code interpreter, in that order."""
    file_ids: list[str] = []
    assistant = Assistant.objects.filter(pk=run.assistant_id).first()
    for owner in (assistant, run.thread):
        if owner is not None:
            resources = owner.tool_resources.get(TYPE, {}).get("file_ids", [])
            file_ids += resources[:MAX_INPUT_FILES]
    for message in Message.objects.filter(thread_id=run.thread_id).order_by("created_at", "id"):
        for attachment in message.attachments or []:
            if any(tool.get("type") == TYPE for tool in attachment.get("tools", [])):
                file_ids.append(attachment["file_id"])
    found = File.objects.filter(pk__in=file_ids, project_id=run.project_id).in_bulk()
    return [
        InputFile(
            file_id, found[file_id].filename, settings.FILES_DIR / found[file_id].storage_name
        )
        for file_id in dict.fromkeys(file_ids)
        if file_id in found
    ]


def last_call(run: Run) -> str | None:
    """The id of the thread's last code call before this run, wherever it ran (maybe in
    another process): the session that ran it is the one that holds the thread's state."""
    steps = (
        RunStep.objects.filter(thread_id=run.thread_id, type="tool_calls")
        .exclude(run=run)
        .order_by("-created_at", "-id")
        .only("step_details")
    )
    for step in steps:
        calls = step.step_details.get("tool_calls", [])
        for call in reversed(calls):
            if call.get("type") == TYPE:
                return str(call.get("id"))
    return None


async def execute(
    run: Run,
    call: dict[str, Any],
    files: list[InputFile],
    after: str | None,
    on_output: Callable[[str], Awaitable[None]],
) -> Execution | str:
    """Run a call's code after the thread's call `after`; the execution, or why code
    interpreter is unavailable."""
    code = call[TYPE]["input"]
    try:
        return await sessions().execute(
            run.thread_id, code, files, on_output, after=after, call_id=call["id"]
        )
    except Unavailable as why:
        return f"Code interpreter is unavailable on this server: {why}. The code did not run."


class StreamedCode:
    """The `code` of a `python` call decoded from its JSON arguments as they stream in, so the
    code can be shown while the model writes it. Arguments that are not `{"code": "..."}`
    show nothing here; the whole call, once complete, is read by `call_details`."""

    START = re.compile(r'\s*\{\s*"code"\s*:\s*"')
    ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}

    def __init__(self) -> None:
        self.raw = ""
        self.at: int | None = None  # where the undecoded rest of the string starts
        self.ended = False

    def feed(self, piece: str) -> str:
        """The code that `piece` completes (an escape cut in two waits for its end)."""
        self.raw += piece
        if self.at is None:
            found = self.START.match(self.raw)
            if found is None:
                return ""
            self.at = found.end()
        raw, at, out = self.raw, self.at, []
        while at < len(raw) and not self.ended:
            char = raw[at]
            if char == '"':
                self.ended = True
            elif char != "\\":
                out.append(char)
            else:
                width = self.escape_width(raw, at)
                if at + width > len(raw):
                    break
                escape = raw[at : at + width]
                if escape[1] == "u":
                    out.append(json.loads(f'"{escape}"'))
                else:
                    out.append(self.ESCAPES.get(escape[1], escape[1]))
                at += width
                continue
            at += 1
        self.at = at
        return "".join(out)

    @staticmethod
    def escape_width(raw: str, at: int) -> int:
        if at + 1 >= len(raw):
            return 2
        if raw[at + 1] != "u":
            return 2
        # A high surrogate comes with its low half: decoded together.
        high = raw[at + 2 : at + 6]
        return 12 if len(high) == 4 and "d800" <= high.lower() < "dc00" else 6


def store_output(run: Run, name: str, data: bytes) -> File:
    """A file the code produced, kept as OpenAI kept them: purpose `assistants_output`."""
    settings.FILES_DIR.mkdir(parents=True, exist_ok=True)
    storage_name = secrets.token_hex(16)
    (settings.FILES_DIR / storage_name).write_bytes(data)
    return File.objects.create(
        project_id=run.project_id,
        filename=name,
        bytes=len(data),
        purpose="assistants_output",
        storage_name=storage_name,
    )


def record(run: Run, call: dict[str, Any], result: Execution | str) -> dict[str, str]:
    """Fill the call's outputs; the files the code wrote, by their /mnt/data path. The log
    names each file written, for the model and the reader."""
    outputs: list[dict[str, Any]] = call[TYPE]["outputs"]
    if isinstance(result, str):
        outputs.append({"type": "logs", "logs": result})
        return {}
    written = {}
    for output in result.files:
        written[output.path] = store_output(run, Path(output.path).name, output.data).id
    logs = "\n".join([result.logs, *(f"[file written: sandbox:{path}]" for path in written)]).strip(
        "\n"
    )
    if logs:
        outputs.append({"type": "logs", "logs": logs})
    for number, png in enumerate(result.images, 1):
        image = store_output(run, f"image-{number}.png", png)
        outputs.append({"type": "image", "image": {"file_id": image.id}})
    return written


def output_for_model(call: dict[str, Any]) -> str:
    """What the model reads back: the log, and a line per figure shown."""
    lines = []
    for output in call[TYPE]["outputs"]:
        if output["type"] == "logs":
            lines.append(output["logs"])
        elif output["type"] == "image":
            lines.append("[a figure was shown to the user]")
    return "\n".join(lines) or "[no output]"


def file_path_annotations(text: str, written: dict[str, str]) -> list[dict[str, Any]]:
    """`sandbox:/mnt/data/NAME` in an answer, for each file the run's code wrote."""
    annotations = []
    for match in LINK.finditer(text):
        file_id = written.get(match.group(1).rstrip(".,;:"))
        if file_id is None:
            continue
        link = match.group(0)[: len("sandbox:") + len(match.group(1).rstrip(".,;:"))]
        annotations.append(
            {
                "type": "file_path",
                "text": link,
                "start_index": match.start(),
                "end_index": match.start() + len(link),
                "file_path": {"file_id": file_id},
            }
        )
    return annotations
