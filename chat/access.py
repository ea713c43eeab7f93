"""Who may see what: the chat's access rules, each in one function.

A thread, run or file of someone else is a 404, never a 403: a 403 would confirm it exists.
"""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import Q, QuerySet
from django.http import Http404

from chat.models import AssistantProfile, Conversation
from chat.search import matching


def conversation_for(user: User | AnonymousUser, conversation_id: int | str) -> Conversation:
    """The user's conversation with this id; Http404 for anyone else's, or for no one's."""
    if not user.is_authenticated:
        raise Http404("No such conversation.")
    try:
        return Conversation.objects.select_related("assistant").get(
            pk=int(conversation_id), owner=user
        )
    except (Conversation.DoesNotExist, ValueError):
        raise Http404("No such conversation.") from None


aconversation_for = sync_to_async(conversation_for)


def conversations_of(user: User, search: str = "") -> QuerySet[Conversation]:
    """The user's conversations; with `search`, those whose title or messages hold its words."""
    return matching(Conversation.objects.filter(owner=user), search)


def assistants_for(user: User) -> QuerySet[AssistantProfile]:
    """Published assistants the user may use: those open to everyone, and their groups' ones."""
    return (
        AssistantProfile.objects.filter(published=True)
        .filter(Q(groups__isnull=True) | Q(groups__in=user.groups.all()))
        .distinct()
    )


def assistant_for(user: User, profile_id: int | str | None) -> AssistantProfile | None:
    try:
        return assistants_for(user).get(pk=int(profile_id or 0))
    except (AssistantProfile.DoesNotExist, ValueError):
        return None


def may_use(user: User, profile: AssistantProfile | None) -> bool:
    return profile is not None and assistants_for(user).filter(pk=profile.pk).exists()
