"""Which limits apply to a person: their own where set, else the most generous of their groups',
else everyone's.

Groups grant, as Django's permissions do: joining a group never takes anything away, so a
person in a "students" group (20 messages an hour) and a "staff" group (200) gets 200. Only
groups that set a limit take part: a group made to share assistants says nothing about
messages. A person's own limit wins either way, so an admin can hold one person back or let
them do more than their groups.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

from django.contrib.auth.models import User
from django.db.models import Q

from chat.models import UsageLimits

MB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """The limits that apply to one person; None: no limit."""

    messages_per_hour: int | None = None
    messages_per_day: int | None = None
    answers_at_once: int | None = None
    tokens_per_day: int | None = None
    tokens_per_month: int | None = None
    upload_mb_per_day: int | None = None
    stored_mb: int | None = None

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in NAMES)

    @property
    def upload_bytes_per_day(self) -> int | None:
        return None if self.upload_mb_per_day is None else self.upload_mb_per_day * MB

    @property
    def stored_bytes(self) -> int | None:
        return None if self.stored_mb is None else self.stored_mb * MB


NAMES = tuple(f.name for f in fields(Limits))


def combine(
    own: UsageLimits | None, groups: Iterable[UsageLimits], everyone: UsageLimits | None
) -> Limits:
    groups = list(groups)
    values: dict[str, int | None] = {}
    for name in NAMES:
        mine = getattr(own, name) if own is not None else None
        granted = [value for g in groups if (value := getattr(g, name)) is not None]
        if mine is not None:
            values[name] = mine
        elif granted:
            values[name] = max(granted)
        else:
            values[name] = getattr(everyone, name) if everyone is not None else None
    return Limits(**values)


def limits_for(user: User) -> Limits:
    """Read afresh on every call: a limit an admin changes applies to the next message."""
    return limits_for_people([user.pk])[user.pk]


def limits_for_people(user_ids: Iterable[int]) -> dict[int, Limits]:
    """Each person's limits, in three queries however many people (the admin's usage table)."""
    user_ids = list(user_ids)
    memberships = User.groups.through.objects.filter(user_id__in=user_ids)
    groups_of: dict[int, list[int]] = {pk: [] for pk in user_ids}
    for user_id, group_id in memberships.values_list("user_id", "group_id"):
        groups_of[user_id].append(group_id)
    group_ids = {g for ids in groups_of.values() for g in ids}
    rows = UsageLimits.objects.filter(
        Q(user_id__in=user_ids) | Q(group_id__in=group_ids) | Q(scope=UsageLimits.Scope.EVERYONE)
    )
    own: dict[int, UsageLimits] = {}
    of_group: dict[int, UsageLimits] = {}
    everyone = None
    for row in rows:
        if row.user_id is not None:
            own[row.user_id] = row
        elif row.group_id is not None:
            of_group[row.group_id] = row
        else:
            everyone = row
    return {
        pk: combine(own.get(pk), (of_group[g] for g in groups_of[pk] if g in of_group), everyone)
        for pk in user_ids
    }
