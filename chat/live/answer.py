"""The answer as the page shows it: `RunView`, the state of one run's answer and the only place
that knows what each run event means for the page.

Plain Python, testable without a server. The relay feeds it the run's events and publishes the
fragments it returns; the pages render it as a live section that subscribes to those, or, for a
run that ended without an answer, as its notice. While an answer streams, its text is only
escaped and appended; `Checkpoints` says when to render markdown on the way, at doubling
lengths, so the work stays linear in the answer's length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from chat.highlighting import highlighted
from chat.live.routing import events_url
from chat.rendering import MessageView, dom_id, escape_text, file_url, markdown_html
from chat.rendering import message_view as render_message
from chat.tools.cards import Card


def plural(count: int, word: str) -> str:
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


class Checkpoints:
    """When to re-render a streaming answer as markdown: at ends of blocks, at doubling lengths.

    Each checkpoint renders the text so far, and the next one waits until the text has doubled,
    so all checkpoints together render fewer than twice the answer's characters: linear, not
    quadratic. Between checkpoints the unfinished block streams as escaped text after them.
    """

    FIRST = 160

    def __init__(self) -> None:
        self.next_at = self.FIRST

    def due(self, text: str) -> int:
        """The length of the prefix to render now (a block boundary outside code), or 0."""
        if len(text) < self.next_at:
            return 0
        # Looked at once per doubling, found or not: the scans are linear in total too.
        self.next_at = 2 * len(text)
        boundary = text.rfind("\n\n")
        if boundary > 0 and text.count("```", 0, boundary) % 2:
            # Inside a code block: end before the fence that opened it.
            boundary = text.rfind("\n\n", 0, text.rfind("```", 0, boundary))
        return boundary + 2 if boundary > 0 else 0


@dataclass
class Call:
    """One tool call of a step, as the page shows it."""

    kind: str  # file_search | function | code_interpreter
    name: str = ""
    arguments: str = ""
    output: str = ""
    results: int | None = None  # file_search hits
    running: bool = True
    call_id: str = ""
    # A function call the chat answers: its card, from the call's record (chat.tools).
    card: Card | None = None
    # Code interpreter: the images the code showed (through the chat's file route).
    image_urls: list[str] = field(default_factory=list)

    @property
    def code_html(self) -> SafeString:
        """A code interpreter call's code, highlighted as Python (Pygments escapes it)."""
        return mark_safe(highlighted(self.arguments, "python"))  # noqa: S308

    @property
    def problem(self) -> str | None:
        """What went wrong with a code interpreter call, in words, from its log."""
        return code_problem(self.output) if self.kind == "code_interpreter" else None

    def label(self, file_count: int | None) -> str:
        files = plural(file_count, "file") if file_count is not None else "files"
        if self.kind == "file_search":
            if self.running:
                return f"Searching {files}…"
            found = f" · {plural(self.results, 'result')}" if self.results is not None else ""
            return f"Searched {files}{found}"
        if self.kind == "code_interpreter":
            return "Running code…" if self.running else "Ran code"
        if self.card is not None:
            return self.card.label
        return f"Calling {self.name}…" if self.running else f"Called {self.name}"


@dataclass
class Step:
    step_id: str
    dom_id: str
    calls: list[Call] = field(default_factory=list)
    file_count: int | None = None
    kind: str = "step"

    @property
    def labels(self) -> list[tuple[str, Call]]:
        return [(call.label(self.file_count), call) for call in self.calls]


def images_shown(steps: Iterable[Step]) -> set[str]:
    """The file ids of the images these steps' code showed."""
    return {
        url.rsplit("/", 1)[-1] for step in steps for call in step.calls for url in call.image_urls
    }


@dataclass
class Reply:
    message_id: str
    dom_id: str
    parts: list[str] = field(default_factory=list)
    length: int = 0
    rendered: SafeString = field(default_factory=SafeString)  # the checkpointed markdown
    rendered_upto: int = 0  # characters of the text that `rendered` covers
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    final: MessageView | None = None
    kind: str = "reply"

    def text(self) -> str:
        if len(self.parts) > 1:
            self.parts = ["".join(self.parts)]
        return self.parts[0] if self.parts else ""

    @property
    def tail(self) -> str:
        """The text after the last checkpoint, streamed as plain text (the template escapes it)."""
        return self.text()[self.rendered_upto :]


@dataclass
class Notice:
    lines: list[str]
    error: bool = False
    retry: bool = False


@dataclass
class TextPiece:
    """Escaped text to append to an element; adjacent pieces for one element merge."""

    target: str
    html: str


Fragment = str | TextPiece


class RunView:
    """What the page shows of one run, and the fragments that move the page along with it."""

    def __init__(self, conversation_id: int, run_id: str) -> None:
        self.conversation_id = conversation_id
        self.run_id = run_id
        self.dom_id = dom_id(run_id)
        self.items: list[Step | Reply] = []
        self.steps: dict[str, Step] = {}
        self.replies: dict[str, Reply] = {}
        self.notice: Notice | None = None
        self.status = "queued"
        self.live = True
        self.file_count: int | None = None
        self.file_names: dict[str, str] = {}

    @classmethod
    def started(
        cls, conversation_id: int, run_id: str, *, file_names: dict[str, str] | None = None
    ) -> RunView:
        """A run that is answering: nothing shown yet, and the page subscribes to its events.

        The relay feeds this one the events; a page renders its own, which the stream's first
        event (a snapshot) replaces. `file_names`: what the message's attachments are called.
        """
        view = cls(conversation_id, run_id)
        view.file_names.update(file_names or {})
        return view

    @classmethod
    def ended(cls, conversation_id: int, run: dict[str, Any], *, answered: bool) -> RunView:
        """A run that ended without a whole answer (it failed, say), from the API's run object:
        the notice the live page showed, and a Retry wherever it had one or there is no answer
        at all (`answered`: part of one was written)."""
        view = cls(conversation_id, run["id"])
        view.live = False
        view.run_changed(f"thread.run.{run['status']}", run)
        if view.notice is not None and not answered:
            view.notice.retry = True
        return view

    def file_link(self, file_id: str) -> str:
        return file_url(self.conversation_id, file_id)

    def shown_images(self) -> set[str]:
        """The images this run's code showed: its steps show them, so its answer need not."""
        return images_shown(self.steps.values())

    # -- template context --

    @property
    def events_url(self) -> str:
        return events_url(self.conversation_id, self.run_id)

    def render(self, partial: str, **context: Any) -> str:
        return render_to_string(f"chat/run.html#{partial}", {"run": self, **context})

    def append(self, html: str) -> str:
        return f'<div hx-swap-oob="beforeend:#run-{self.dom_id}">{html}</div>'

    def snapshot(self) -> str:
        """The whole answer so far, replacing what the page has: safe to apply at any time."""
        return self.render("run_body", body_oob=True)

    def final(self) -> str:
        """The finished answer, replacing the live section (which closes its event source)."""
        self.live = False
        answers = [r.final for r in self.replies.values() if r.final is not None]
        for answer in answers:
            answer.actions = True
        if answers:
            answers[-1].regenerable = True
        return self.render("live", live_oob=True) + self.render("idle_controls")

    # -- events --

    def apply(self, name: str, data: dict[str, Any]) -> list[Fragment]:
        if name == "thread.message.delta":
            return self.delta(data["message_id"], data["text"])
        if name == "thread.message.created":
            return self.message_created(data)
        if name in ("thread.message.completed", "thread.message.incomplete"):
            return self.message_done(data)
        if name in ("thread.run.step.created", "thread.run.step.delta"):
            return self.step_changed(data, delta=name.endswith("delta"))
        if name.startswith("thread.run.step."):
            return self.step_changed(data, delta=False, ended=True)
        if name.startswith("thread.run."):
            self.run_changed(name, data)
        return []

    def delta(self, message_id: str, text: str) -> list[Fragment]:
        reply = self.replies.get(message_id)
        if reply is None or reply.final is not None or not text:
            return []
        reply.parts.append(text)
        reply.length += len(text)
        fragments: list[Fragment] = [TextPiece(f"{reply.dom_id}-tail", escape_text(text))]
        if reply.length >= reply.checkpoints.next_at:
            whole = reply.text()
            upto = reply.checkpoints.due(whole)
            if upto:
                reply.rendered = markdown_html(whole[:upto])
                reply.rendered_upto = upto
                fragments.append(self.render("reply_text", reply=reply, text_oob=True))
        return fragments

    def message_created(self, data: dict[str, Any]) -> list[Fragment]:
        message_id = data["id"]
        if message_id in self.replies or data.get("role") != "assistant":
            return []
        # The same id as the finished message's (MessageView.dom_id): the final swap finds it.
        reply = Reply(message_id, f"m-{dom_id(message_id)}")
        self.replies[message_id] = reply
        self.items.append(reply)
        return [self.append(self.render("reply", reply=reply))]

    def message_done(self, data: dict[str, Any]) -> list[Fragment]:
        reply = self.replies.get(data["id"])
        if reply is None:
            created = self.message_created(data)
            reply = self.replies.get(data["id"])
            if reply is None:
                return created
        reply.final = render_message(
            data, self.conversation_id, self.file_names, skip_images=self.shown_images()
        )
        return [self.render("reply", reply=reply, reply_oob=True)]

    def step_changed(
        self, data: dict[str, Any], *, delta: bool, ended: bool = False
    ) -> list[Fragment]:
        details = (
            (data.get("delta") or {}).get("step_details") if delta else data.get("step_details")
        )
        if not details or details.get("type") != "tool_calls":
            return []
        step = self.steps.get(data["id"])
        new = step is None
        if step is None:
            step = Step(data["id"], f"s-{dom_id(data['id'])}")
            self.steps[step.step_id] = step
            self.items.append(step)
        step.file_count = self.file_count
        for position, call_data in enumerate(details.get("tool_calls") or []):
            index = call_data.get("index", position)
            while len(step.calls) <= index:
                step.calls.append(Call(kind=call_data.get("type") or "function"))
            merge_call(step.calls[index], call_data, append=delta, files=self.file_link)
        if ended:
            for call in step.calls:
                call.running = False
        # A step joins the page when it starts (empty steps are hidden), so the page keeps the
        # run's order; later it is replaced whole, which is cheap: steps are small.
        if new:
            return [self.append(self.render("step", step=step))]
        return [self.render("step", step=step, step_oob=True)]

    def run_changed(self, name: str, data: dict[str, Any]) -> None:
        self.status = data.get("status") or self.status
        if name == "thread.run.failed":
            reason = failure_reason(data.get("last_error") or {})
            self.notice = Notice([f"The answer failed: {reason}"], error=True, retry=True)
        elif name == "thread.run.expired":
            self.notice = Notice(["The answer took too long and was stopped."], True, True)
        elif name == "thread.run.cancelled":
            self.notice = Notice(["Stopped."])
        elif name == "thread.run.incomplete":
            reason = (data.get("incomplete_details") or {}).get("reason") or "a limit"
            self.notice = Notice([f"The answer was cut short ({reason.replace('_', ' ')})."])

    def show_cards(self, step_id: str, cards: list[Card]) -> list[Fragment]:
        """The function calls of a step as their records say (chat.tools): each call's card."""
        step = self.steps.get(step_id)
        new = step is None
        if step is None:
            step = Step(step_id, f"s-{dom_id(step_id)}")
            self.steps[step_id] = step
            self.items.append(step)
        by_id = {call.call_id: call for call in step.calls if call.call_id}
        changed, first = [], new
        for card in cards:
            call = by_id.get(card.call_id)
            if call is None:
                call = Call(kind="function", name=card.name, call_id=card.call_id)
                step.calls.append(call)
            first = first or call.card is None
            if call.card != card:
                changed.append(card)
            call.card = card
            call.running = card.running
        if new:
            return [self.append(self.render("step", step=step))]
        if first:  # no forms on the page yet: the step whole, its calls now as cards
            return [self.render("step", step=step, step_oob=True)]
        # Card by card: a form half filled in stays as it is while another call of the step ends.
        return [self.render("card", card=card, card_oob=True) for card in changed]

    def step_with(self, call_ids: set[str]) -> str | None:
        """The step that holds these calls, if the view has seen it."""
        for step in self.steps.values():
            if call_ids & {call.call_id for call in step.calls}:
                return step.step_id
        return None

    def rebuild(self, steps: list[dict[str, Any]], messages: list[dict[str, Any]]) -> None:
        """The run so far, from the API (a relay taking over from another process)."""
        by_id = {message["id"]: message for message in messages}
        for step in steps:
            details = step.get("step_details") or {}
            if details.get("type") == "tool_calls":
                self.step_changed(step, delta=False, ended=step.get("status") != "in_progress")
            elif details.get("type") == "message_creation":
                message = by_id.get((details.get("message_creation") or {}).get("message_id"))
                if message is not None:
                    self.message_created(message)
                    if message.get("status") != "in_progress":
                        self.message_done(message)

    def stopped_waiting(self, run: dict[str, Any]) -> None:
        """The run stopped waiting for its function calls before they were all answered."""
        if run.get("status") == "expired":
            self.notice = Notice(
                [
                    "No answer came in time, so the assistant stopped waiting. "
                    "Send a new message to go on."
                ],
                error=True,
            )

    def lost(self, reason: str) -> None:
        self.notice = Notice([reason], error=True, retry=True)

    def finish(self, messages: list[dict[str, Any]] | None = None) -> None:
        """Settle every reply: the API's final messages where known, else the streamed text."""
        for message in messages or []:
            if message["id"] not in self.replies:
                self.message_created(message)
            self.message_done(message)
        for reply in self.replies.values():
            if reply.final is None:
                partial = {
                    "id": reply.message_id,
                    "role": "assistant",
                    "status": "incomplete",
                    "content": [{"type": "text", "text": {"value": reply.text()}}],
                }
                reply.final = render_message(partial, self.conversation_id, self.file_names)
        for step in self.steps.values():
            for call in step.calls:
                call.running = False

    def add_file_problems(self, problems: list[str]) -> None:
        if not problems:
            return
        if self.notice is None:
            self.notice = Notice([], error=True)
        self.notice.lines.extend(problems)
        self.notice.error = True


OUT_OF_CREDIT = (
    "the assistant's model account is out of credit. Whoever runs this service has to add "
    "credit; trying again will not help until then."
)
RATE_LIMITED = "the assistant's model service is busy (rate-limited). Try again in a minute."


def failure_reason(error: dict[str, Any]) -> str:
    """Why a run failed, for the person chatting; admins read the API's own words in the admin."""
    message = str(error.get("message") or "The assistant could not answer.")
    if error.get("code") == "rate_limit_exceeded":
        # OpenAI used this code for an exhausted quota too; its words tell the two apart.
        return OUT_OF_CREDIT if "quota" in message.lower() else RATE_LIMITED
    return message


def merge_call(
    call: Call,
    data: dict[str, Any],
    *,
    append: bool,
    files: Callable[[str], str] | None = None,
) -> None:
    """Fold a tool call (a whole one, or a delta to `append`) into what the page shows;
    `files` gives a file's URL on the page (code interpreter's images)."""
    call.kind = data.get("type") or call.kind
    call.call_id = data.get("id") or call.call_id
    if call.kind == "function":
        function = data.get("function") or {}
        call.name = function.get("name") or call.name
        arguments = function.get("arguments") or ""
        call.arguments = call.arguments + arguments if append else arguments or call.arguments
        if function.get("output") is not None:
            call.output = str(function["output"])
    elif call.kind == "file_search":
        results = (data.get("file_search") or {}).get("results")
        if results is not None:
            call.results = len(results)
    elif call.kind == "code_interpreter":
        code = data.get("code_interpreter") or {}
        piece = code.get("input") or ""
        call.arguments = call.arguments + piece if append else piece or call.arguments
        outputs = code.get("outputs") or []
        logs = "".join(o.get("logs") or "" for o in outputs if o.get("type") == "logs")
        if append:
            # The log streams in pieces as the code prints; the step's record has it whole.
            call.output += logs
        elif outputs:
            call.output = logs
            call.image_urls = []
        for output in outputs:
            file_id = (output.get("image") or {}).get("file_id")
            if output.get("type") == "image" and file_id and files is not None:
                url = files(str(file_id))
                if url not in call.image_urls:
                    call.image_urls.append(url)


TIME_LIMIT = "Note: Execution interrupted"
SESSION_ENDED = re.compile(r"^Note: the Python session was ended because (.+?)\. The next", re.M)
RAISED = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)\b.*)$", re.M)


def code_problem(logs: str) -> str | None:
    """Why code did not run to its end, in words: the engine's notes, or the exception."""
    if logs.startswith("Code interpreter is unavailable"):
        return logs.splitlines()[0]
    if TIME_LIMIT in logs:
        return "The code was still running at the time limit, so it was stopped."
    ended = SESSION_ENDED.search(logs)
    if ended:
        return f"The code was stopped: {ended.group(1)}."
    if "Traceback (most recent call last)" in logs or logs.startswith("Cell In"):
        raised = RAISED.findall(logs)
        if raised:
            return f"The code failed with {raised[-1]}"
    return None


def merged(fragments: list[Fragment]) -> str:
    out: list[str] = []
    pending: TextPiece | None = None
    for fragment in fragments:
        if isinstance(fragment, TextPiece):
            if pending is not None and pending.target == fragment.target:
                pending.html += fragment.html
                continue
            if pending is not None:
                out.append(text_html(pending))
            pending = TextPiece(fragment.target, fragment.html)
            continue
        if pending is not None:
            out.append(text_html(pending))
            pending = None
        out.append(fragment)
    if pending is not None:
        out.append(text_html(pending))
    return "".join(out)


def text_html(piece: TextPiece) -> str:
    # beforeend on an out-of-band element appends its children: here, the escaped text alone.
    return f'<span hx-swap-oob="beforeend:#{piece.target}">{piece.html}</span>'
