"""Limits per person and per group, set in the admin, and the usage page that shows each
person's use against them with a chart of tokens per day."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.template.response import TemplateResponse

from chat.limits.report import report
from chat.limits.rules import NAMES
from chat.models import AnswerUsage, UsageLimits

RULE = (
    "Where a person has a limit of their own, it applies. Otherwise the most generous limit "
    "among their groups applies, and where no group sets one, everyone's. Empty: no limit "
    "from here. Changes apply to the next message."
)


@admin.register(UsageLimits)
class UsageLimitsAdmin(admin.ModelAdmin):
    list_display = ["__str__", *NAMES]
    list_filter = ["scope"]
    autocomplete_fields = ["user", "group"]
    fieldsets = [
        (None, {"fields": ["user", "group"], "description": RULE}),
        ("Messages", {"fields": ["messages_per_hour", "messages_per_day", "answers_at_once"]}),
        ("Tokens", {"fields": ["tokens_per_day", "tokens_per_month"]}),
        ("Attached files", {"fields": ["upload_mb_per_day", "stored_mb"]}),
    ]


class LimitsInline(admin.StackedInline):
    model = UsageLimits
    fieldsets = [(None, {"fields": list(NAMES), "description": RULE})]
    max_num = 1
    verbose_name = verbose_name_plural = "usage limits"


class PersonLimitsInline(LimitsInline):
    fk_name = "user"


class GroupLimitsInline(LimitsInline):
    fk_name = "group"


# The group page as Django makes it, with its limits at the end (a person's page has theirs:
# chat.admin.people).
admin.site.unregister(Group)


@admin.register(Group)
class GroupWithLimitsAdmin(GroupAdmin):
    inlines = [*GroupAdmin.inlines, GroupLimitsInline]


@admin.register(AnswerUsage)
class UsageAdmin(admin.ModelAdmin):
    """The usage page in place of a list: the records are counted, not edited."""

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> TemplateResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        person = User.objects.filter(pk=number(request.GET.get("user"), 0)).first()
        found = report(number(request.GET.get("days"), 30), person, request.GET.get("page"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Usage",
            "report": found,
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/chat/answerusage/usage.html", context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def number(text: str | None, default: int) -> int:
    try:
        return int(text or default)
    except ValueError:
        return default
