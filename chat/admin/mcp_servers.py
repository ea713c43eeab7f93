"""MCP servers in the admin: where each is, how it is authenticated, its tools at the last refresh
(with what changed), and which of them assistants may be given as functions.

Secrets are write-only. A new server is asked for its tools when it is saved; "Refresh tools"
asks again. Approval and groups are set on each tool's function, as for any function: the
server's annotations (read-only, destructive…) are shown, never obeyed.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from chat.admin.functions import resync
from chat.models import AssistantProfile
from chat.tools import mcp_catalog, webhook
from chat.tools.mcp_models import McpServer
from chat.tools.models import Function

REFRESH = "_refresh"


class McpServerForm(forms.ModelForm):
    url = forms.URLField(
        label="Streamable HTTP URL",
        max_length=2000,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"class": "vURLField", "size": 60}),
        help_text="The server's MCP endpoint, e.g. https://tools.example.com/mcp. Servers that "
        "run as local commands (stdio) are not offered here (README: “MCP servers”).",
    )
    new_secret = forms.CharField(
        label="Deployment secret",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Sent to the server with every call when authentication is “one secret for "
        "the whole deployment”. Never shown again; leave empty to keep the current one.",
    )
    offered_tools = forms.MultipleChoiceField(
        label="Tools offered as functions",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Each becomes the function server__tool; give it to assistants on their "
        "page, and set its approval and groups under Functions.",
    )

    class Meta:
        model = McpServer
        fields = ["name", "url", "auth", "header", "scheme"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        server = self.instance
        listed = [tool["name"] for tool in server.tools] if server.pk else []
        offered = mcp_catalog.offered(server) if server.pk else []
        field = self.fields["offered_tools"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(name, name) for name in sorted(set(listed) | set(offered))]
        field.initial = offered

    def clean_url(self) -> str:
        url = str(self.cleaned_data["url"])
        try:
            webhook.check_url(url)
        except webhook.WebhookError as error:
            raise forms.ValidationError(str(error).replace("webhook", "MCP server")) from None
        return url

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        name, tools = cleaned.get("name"), cleaned.get("offered_tools") or []
        if name and tools:
            server = McpServer(pk=self.instance.pk, name=name)
            for problem in mcp_catalog.collisions(server, tools):
                self.add_error("offered_tools", problem)
        return cleaned


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    form = McpServerForm
    list_display = ["name", "url", "auth", "state", "tool_count", "offered_count", "refreshed_at"]
    search_fields = ["name", "url"]
    actions = ["refresh_tools"]
    readonly_fields = ["state", "secret_state", "user_secret_count", "tool_listing", "changes_text"]
    change_form_template = "admin/chat/mcpserver/change_form.html"

    class Media:
        css = {"all": ["chat/admin.css"]}

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        connection = ["name", "url", "auth", "header", "scheme", "new_secret", "secret_state"]
        if obj is None:
            return [(None, {"fields": connection})]
        return [
            (None, {"fields": [*connection, "user_secret_count"]}),
            ("Tools", {"fields": ["state", "changes_text", "tool_listing", "offered_tools"]}),
        ]

    @admin.display(description="state")
    def state(self, server: McpServer) -> str:
        checked = f" (checked {timezone.localtime(server.checked_at):%Y-%m-%d %H:%M})"
        when = checked if server.checked_at else ""
        if server.available:
            return f"available{when}"
        return f"unavailable{when}: {server.problem}"

    @admin.display(description="current deployment secret")
    def secret_state(self, server: McpServer) -> str:
        return "set (hidden)" if server.secret else "not set"

    @admin.display(description="people's own secrets")
    def user_secret_count(self, server: McpServer) -> str:
        count = server.user_secrets.count()
        return f"{count} people have entered theirs (in their settings)"

    @admin.display(description="tools")
    def tool_count(self, server: McpServer) -> int:
        return len(server.tools)

    @admin.display(description="offered")
    def offered_count(self, server: McpServer) -> int:
        return server.functions.count()

    @admin.display(description="since the refresh before")
    def changes_text(self, server: McpServer) -> str:
        if server.refreshed_at is None:
            return "never refreshed"
        changes = server.changes or {}
        parts = [
            f"{label}: {', '.join(changes[key])}"
            for key, label in (("added", "new"), ("removed", "gone"), ("changed", "changed"))
            if changes.get(key)
        ]
        when = f"{timezone.localtime(server.refreshed_at):%Y-%m-%d %H:%M}"
        return f"Refreshed {when}. " + ("; ".join(parts) if parts else "Nothing changed.")

    @admin.display(description="the server's tools")
    def tool_listing(self, server: McpServer) -> str:
        if not server.tools:
            return "No tools listed yet: use “Refresh tools”."
        offered = {f.mcp_tool: f for f in server.functions.all()}
        rows = []
        for tool in server.tools:
            function = offered.get(tool["name"])
            would_be = mcp_catalog.function_name(server.name, tool["name"])
            as_function = (
                f"offered as {function.name}" + (" (asks first)" if function.approval else "")
                if function
                else f"not offered (would be {would_be})"
            )
            hints = ", ".join(f"{k}: {v}" for k, v in (tool.get("annotations") or {}).items())
            rows.append(
                (
                    tool["name"],
                    tool.get("description") or "(no description)",
                    as_function,
                    f"The server says: {hints} (shown only; approval is set here)" if hints else "",
                    json.dumps(tool.get("input_schema") or {}, indent=2, ensure_ascii=False),
                )
            )
        body = format_html_join(
            "",
            '<div class="mcp-tool"><h4>{}</h4><p>{}</p><p class="mcp-note">{}</p>'
            '<p class="mcp-note">{}</p><details><summary>Input schema</summary><pre>{}</pre>'
            "</details></div>",
            rows,
        )
        return format_html('<div class="mcp-tools">{}</div>', body)

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        if form.cleaned_data.get("new_secret"):
            obj.secret = form.cleaned_data["new_secret"]
        super().save_model(request, obj, form, change)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        server = form.instance
        if not change:
            refresh(request, server)
            return
        wanted = list(form.cleaned_data.get("offered_tools") or [])
        bring_in_line(request, mcp_catalog.offer(server, wanted))

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.delete_queryset(request, McpServer.objects.filter(pk=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        # Its functions go with it: the assistants that offered them must stop offering them.
        functions = Function.objects.filter(mcp_server__in=queryset)
        profiles = mcp_catalog.profiles_offering(functions)
        super().delete_queryset(request, queryset)
        bring_in_line(request, profiles)

    def response_change(self, request: HttpRequest, obj: Any) -> HttpResponse:
        if REFRESH in request.POST:
            refresh(request, obj)
            return HttpResponseRedirect(request.path)
        return super().response_change(request, obj)

    @admin.action(description="Refresh tools of the selected servers")
    def refresh_tools(self, request: HttpRequest, queryset: QuerySet[McpServer]) -> None:
        for server in queryset:
            refresh(request, server)


def bring_in_line(request: HttpRequest, profiles: list[int]) -> None:
    """The remote assistants of these profiles get their functions' new definitions after the
    commit, as the function admin does."""
    AssistantProfile.objects.filter(pk__in=profiles).update(updated_at=timezone.now())
    transaction.on_commit(lambda: resync(request, profiles))


def refresh(request: HttpRequest, server: McpServer) -> None:
    """Ask the server for its tools as the admin (their own secret, for a per-user server)."""
    user = request.user if request.user.is_authenticated else None
    bring_in_line(request, mcp_catalog.refresh(server, user))
    if not server.available:
        messages.error(request, f"{server.name}: {server.problem}")
        return
    changes = server.changes
    summary = ", ".join(
        f"{len(changes[key])} {label}"
        for key, label in (("added", "new"), ("removed", "gone"), ("changed", "changed"))
        if changes.get(key)
    )
    messages.success(
        request,
        f"{server.name} lists {len(server.tools)} tools"
        + (f" ({summary} since the refresh before)." if summary else "; nothing changed."),
    )
