from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from chat import assistants_api as api
from chat.models import AssistantProfile


class SuggestingInput(forms.TextInput):
    """A text box with suggestions (a <datalist>); any other value stays possible."""

    def __init__(self, suggestions: list[str]) -> None:
        super().__init__()
        self.suggestions = suggestions

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        attrs = {**(attrs or {}), "list": f"{name}-suggestions"}
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((s,) for s in self.suggestions))
        return format_html('{}<datalist id="{}-suggestions">{}</datalist>', box, name, options)


@admin.register(AssistantProfile)
class AssistantProfileAdmin(admin.ModelAdmin):
    list_display = ["name", "model", "published", "file_search", "assistant_id", "updated_at"]
    list_filter = ["published", "file_search"]
    search_fields = ["name", "description", "model"]
    filter_horizontal = ["groups"]
    fieldsets = [
        (None, {"fields": ["name", "description", "published", "groups"]}),
        ("Behaviour", {"fields": ["model", "instructions", "file_search"]}),
        (
            "Remote assistant",
            {
                "fields": ["assistant_id"],
                "description": "Changes reach the remote assistant the next time someone uses it.",
            },
        ),
    ]

    def formfield_for_dbfield(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "model":
            try:
                suggestions = api.model_names()
            except api.AssistantsError:
                suggestions = []  # the API is away: the box still takes any name
            kwargs["widget"] = SuggestingInput(suggestions)
        return super().formfield_for_dbfield(db_field, request, **kwargs)
