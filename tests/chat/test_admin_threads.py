"""Threads in the admin: read-only, runs from the API with an estimated cost, everything escaped."""

from __future__ import annotations

from typing import Any

import openai
import pytest
from django.contrib.auth.models import User
from django.test import Client

from chat.admin.threads import estimated_cost
from chat.models import AssistantProfile, Conversation

pytestmark = pytest.mark.django_db

SCRIPT = "<script>alert(1)</script>"


def test_a_thread_shows_its_runs_and_transcript_escaped_and_cannot_be_edited(
    admin_client: Client,
    remote: openai.OpenAI,
    settings: Any,
) -> None:
    settings.MODEL_PRICES = {"threadline-retrieval": [1.0, 2.0]}
    # Someone else's thread: the admin reads it, but it is not theirs to change.
    person = User.objects.create_user("person", password="a-long-test-password-42")
    made = remote.beta.assistants.create(model="threadline-retrieval", name="Helper")
    run = remote.beta.threads.create_and_run_poll(
        assistant_id=made.id,
        thread={"messages": [{"role": "user", "content": f"Hello {SCRIPT}"}]},
    )
    assert run.status == "completed"
    profile = AssistantProfile.objects.create(name="Helper", model="threadline-retrieval")
    conversation = Conversation.objects.create(
        owner=person, thread_id=run.thread_id, assistant=profile, title=f"Hi {SCRIPT}"
    )

    listing = admin_client.get("/admin/chat/conversation/").content.decode()
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt;" in listing and SCRIPT not in listing
    page = admin_client.get(f"/admin/chat/conversation/{conversation.pk}/change/")
    html = page.content.decode()
    assert run.id in html and "completed" in html
    assert SCRIPT not in html
    if run.usage is not None:
        assert "$" in html  # priced from THREADLINE_MODEL_PRICES
    assert 'name="_save"' not in html  # read-only
    assert admin_client.get("/admin/chat/conversation/add/").status_code == 403
    delete = f"/admin/chat/conversation/{conversation.pk}/delete/"
    assert admin_client.get(delete).status_code == 403

    transcript = admin_client.get(f"/admin/chat/conversation/{conversation.pk}/transcript/")
    text = transcript.content.decode()
    assert transcript.status_code == 200
    assert "Hello &lt;script&gt;alert(1)&lt;/script&gt;" in text and SCRIPT not in text
    assert 'article class="message assistant' in text


@pytest.mark.parametrize(
    ("prices", "cost"),
    [
        ({"m": [2.5, 10]}, "$0.0075"),  # 1,000 in at $2.50/1M + 500 out at $10/1M
        ({}, "-"),  # no price for the model: no estimate
        ({"m": "cheap"}, "-"),  # a setting of the wrong shape does not break the page
    ],
)
def test_estimated_cost_comes_from_the_price_setting(settings: Any, prices: Any, cost: str) -> None:
    settings.MODEL_PRICES = prices
    assert estimated_cost("m", 1000, 500) == cost
