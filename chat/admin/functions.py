"""The function registry in the admin, and the list of calls the chat answered.

Parameters are JSON Schema, typed by hand: shown indented, with an example, and an error says
the line it is on. A webhook's signing secret and its extra headers' values are write-only: the
form never shows them again (a new secret is shown once, in the message after saving).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError

from chat import assistants_api as api
from chat import remote_assistant
from chat.models import AssistantProfile
from chat.tools import python, webhook
from chat.tools.models import Function, FunctionCall

EXAMPLE = {
    "type": "object",
    "properties": {
        "city": {"type": "string", "description": "The city, e.g. Oslo"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["city"],
}
EXAMPLE_TEXT = json.dumps(EXAMPLE, indent=2)
KEEP = "Leave empty to keep the current one."
OUTPUT_CHARS = 200


def line_of(text: str, path: list[str]) -> int:
    """The line (from 1) of the key at the end of `path`, found key by key down the text."""
    at = 0
    for part in path:
        found = text.find(f'"{part}"', at)
        if found >= 0:
            at = found
    return text.count("\n", 0, at) + 1


def schema_problem(text: str, value: Any) -> str | None:
    """What is wrong with a JSON Schema for function parameters, saying where; None if fine."""
    if not isinstance(value, dict):
        return "The parameters must be a JSON object (a JSON Schema), like the example."
    try:
        Draft202012Validator.check_schema(value)
    except SchemaError as error:
        path = [str(part) for part in error.absolute_path]
        where = f" ({'/'.join(path)})" if path else ""
        return f"Line {line_of(text, path)}{where}: {error.message}."
    if value.get("type", "object") != "object":
        return 'Line 1: function parameters are an object schema ("type": "object").'
    return None


class SchemaField(forms.CharField):
    """JSON Schema typed by hand: shown indented, parsed on submit, errors at their line."""

    widget = forms.Textarea(
        attrs={"rows": 14, "class": "vLargeTextField schema", "spellcheck": "false"}
    )

    def prepare_value(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        return json.dumps(value if value else EXAMPLE, indent=2, ensure_ascii=False)

    def to_python(self, value: Any) -> Any:
        text = (super().to_python(value) or "").strip()
        if not text:
            return {"type": "object", "properties": {}}
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as error:
            shown = text.splitlines()[error.lineno - 1].strip() if text else ""
            raise forms.ValidationError(
                f"Line {error.lineno}, column {error.colno}: {error.msg} (in: {shown[:80]})."
            ) from None
        problem = schema_problem(text, parsed)
        if problem:
            raise forms.ValidationError(problem)
        return parsed


class FunctionForm(forms.ModelForm):
    parameters = SchemaField(
        required=False,
        help_text=(
            "The JSON Schema of the arguments, checked against Draft 2020-12. Calls whose "
            "arguments do not match never run; the model is told why. Example:"
            f"<pre>{EXAMPLE_TEXT}</pre>"
        ),
    )
    url = forms.URLField(
        label="Webhook URL",
        required=False,
        max_length=2000,
        assume_scheme="https",
        help_text="Where a webhook's calls are POSTed (README: “Webhooks”).",
    )
    new_secret = forms.CharField(
        label="Signing secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=(
            f"Webhooks are signed with it (README: “Webhooks”). {KEEP} A new function gets one "
            "made for it, shown once after saving."
        ),
    )
    new_headers = forms.CharField(
        label="Extra headers",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=(
            "Sent with each webhook request, one per line: <code>Name: value</code>. Values are "
            f"never shown again. {KEEP} Write <code>-</code> alone to remove them all."
        ),
    )

    class Meta:
        model = Function
        fields = [
            "name",
            "description",
            "parameters",
            "kind",
            "url",
            "timeout_seconds",
            "approval",
            "groups",
        ]

    def clean_new_headers(self) -> dict[str, str] | None:
        text = self.cleaned_data.get("new_headers", "").strip()
        if not text:
            return None
        if text == "-":
            return {}
        headers = {}
        for number, line in enumerate(text.splitlines(), start=1):
            name, colon, value = line.partition(":")
            if not line.strip():
                continue
            if not colon or not name.strip() or any(c in name for c in " \t"):
                raise forms.ValidationError(f"Line {number}: write it as Name: value.")
            headers[name.strip()] = value.strip()
        return headers

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        kind, name = cleaned.get("kind"), cleaned.get("name")
        if kind == Function.Kind.WEBHOOK:
            url = cleaned.get("url") or ""
            if not url:
                self.add_error("url", "A webhook needs its URL.")
            else:
                try:
                    webhook.check_url(url)
                except webhook.WebhookError as error:
                    self.add_error("url", str(error))
        if kind == Function.Kind.MCP and self.instance.mcp_server_id is None:
            self.add_error(
                "kind", "Tools of an MCP server become functions from the server's admin page."
            )
        if kind == Function.Kind.PYTHON and name and python.registered(name) is None:
            known = ", ".join(python.names()) or "none yet"
            self.add_error(
                "name",
                f"No Python function is registered as {name} on this server (registered: "
                f"{known}). Register one with @chat.tools.python.function in an app's "
                "functions module, or list it in THREADLINE_PYTHON_FUNCTIONS.",
            )
        return cleaned


@admin.register(Function)
class FunctionAdmin(admin.ModelAdmin):
    form = FunctionForm
    list_display = ["name", "kind", "approval", "group_names", "timeout_seconds", "updated_at"]
    list_select_related = ["mcp_server"]
    list_filter = ["kind", "approval"]
    search_fields = ["name", "description"]
    filter_horizontal = ["groups"]
    readonly_fields = ["header_names", "mcp_source"]
    fieldsets = [
        (None, {"fields": ["name", "description", "parameters"]}),
        ("How it runs", {"fields": ["kind", "mcp_source", "url", "timeout_seconds"]}),
        ("Webhook signing and headers", {"fields": ["new_secret", "header_names", "new_headers"]}),
        ("Who and when", {"fields": ["approval", "groups"]}),
    ]

    class Media:
        css = {"all": ["chat/admin.css"]}

    @admin.display(description="groups")
    def group_names(self, function: Function) -> str:
        return ", ".join(g.name for g in function.groups.all()) or "everyone"

    @admin.display(description="MCP server")
    def mcp_source(self, function: Function) -> str:
        server = function.mcp_server
        if server is None:
            return "-"
        listed = server.listed(function.mcp_tool) is not None or server.refreshed_at is None
        state = (
            "available"
            if server.available and listed
            else "unavailable: "
            + (server.problem if not server.available else "no longer listed by the server")
        )
        return (
            f"{server.name}, tool {function.mcp_tool} ({state}). Its description and parameters "
            "follow the server's at each refresh."
        )

    @admin.display(description="current headers")
    def header_names(self, function: Function) -> str:
        names = sorted(function.headers or {})
        return ", ".join(f"{n}: (hidden)" for n in names) if names else "none"

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if form.cleaned_data.get("new_secret"):
            obj.secret = form.cleaned_data["new_secret"]
        if form.cleaned_data.get("new_headers") is not None:
            obj.headers = form.cleaned_data["new_headers"]
        super().save_model(request, obj, form, change)
        if not change and obj.kind == Function.Kind.WEBHOOK and not form.cleaned_data["new_secret"]:
            messages.info(
                request,
                f"The signing secret of {obj.name} is {obj.secret} — copy it to the webhook's "
                "receiver now: it is not shown again.",
            )

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        function = form.instance
        # The assistants offering it get the new definition (their remote assistants are
        # brought in line after the commit, as the assistant admin does).
        profiles = list(AssistantProfile.objects.filter(registry_functions=function))
        AssistantProfile.objects.filter(pk__in=[p.pk for p in profiles]).update(
            updated_at=timezone.now()
        )
        transaction.on_commit(lambda: resync(request, [p.pk for p in profiles]))


def resync(request: HttpRequest, profile_ids: list[int]) -> None:
    for profile in AssistantProfile.objects.filter(pk__in=profile_ids):
        try:
            remote_assistant.save(profile)
        except api.AssistantsError as error:
            profile.mark_unsynced(str(error))
            messages.warning(
                request,
                f"{profile.name} offers this function, but its remote assistant was not "
                f"updated: {error} It is brought in line on its next use.",
            )


@admin.register(FunctionCall)
class FunctionCallAdmin(admin.ModelAdmin):
    """Every call the chat answered: who, which function, with what, and how it went."""

    list_display = [
        "created_at",
        "user",
        "name",
        "short_arguments",
        "status",
        "short_output",
        "duration_text",
    ]
    list_filter = ["status", "kind"]
    search_fields = ["name", "user__username", "run_id", "call_id"]
    list_select_related = ["user"]
    date_hierarchy = "created_at"
    # One sequence for both: a tuple, which type-checks as either (a list would not).
    readonly_fields = (
        "name",
        "kind",
        "status",
        "user",
        "arguments",
        "output",
        "problem",
        "run_id",
        "call_id",
        "created_at",
        "started_at",
        "finished_at",
    )
    fields = readonly_fields

    @admin.display(description="arguments")
    def short_arguments(self, call: FunctionCall) -> str:
        return shorten(call.arguments)

    @admin.display(description="output")
    def short_output(self, call: FunctionCall) -> str:
        return shorten(call.problem or call.output)

    @admin.display(description="duration")
    def duration_text(self, call: FunctionCall) -> str:
        seconds = call.duration
        return "-" if seconds is None else f"{seconds:.1f} s"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def shorten(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= OUTPUT_CHARS else line[: OUTPUT_CHARS - 1] + "…"
