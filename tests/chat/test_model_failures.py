"""What a person is told when the assistant's model API fails, and what the admin sees."""

from __future__ import annotations

from tests.chat.conftest import ChatClient, ChatServer, Scripted
from tests.fake_model import Cut, Fail

QUOTA = "You exceeded your current quota, please check your plan and billing details."


def test_an_exhausted_quota_tells_people_the_account_is_out_of_credit(
    owner: ChatClient, scripted: Scripted, chat_server: ChatServer
) -> None:
    scripted.script(Fail(429, message=QUOTA, code="insufficient_quota"))
    sent = owner.send("Hello?", assistant=scripted.profile_id)
    assert sent.events_url and sent.conversation_id
    _, events = owner.events(sent.events_url)
    final = events[-2].data
    assert "model account is out of credit" in final
    assert QUOTA not in final and "rate-limit" not in final and "a minute" not in final
    page = owner.get(f"/c/{sent.conversation_id}/").text  # after a reload too
    assert "model account is out of credit" in page and QUOTA not in page

    # The admin reads the provider's own words beside the run.
    admin = ChatClient(chat_server.url)
    try:
        admin.login("admin")
        html = admin.get(f"/admin/chat/conversation/{sent.conversation_id}/change/").text
        assert QUOTA in html and "insufficient_quota" in html
    finally:
        admin.close()
    # Asked once: trying again cannot help.
    requests = scripted.model_server.requests
    asked = [r for r in requests if (r["body"] or {}).get("model") == scripted.model]
    assert len(asked) == 1


def test_an_answer_that_failed_mid_way_says_why_after_a_reload_too(
    owner: ChatClient, scripted: Scripted
) -> None:
    scripted.script(Cut(after_tokens=3, text="one two three four five"))
    sent = owner.send("Count for me", assistant=scripted.profile_id)
    assert sent.events_url and sent.conversation_id
    _, events = owner.events(sent.events_url)
    live = events[-2].data
    assert "one two three" in live and "The answer failed" in live and "broke off" in live
    assert ">Retry</button>" in live

    page = owner.get(f"/c/{sent.conversation_id}/").text
    assert "one two three" in page and "The answer stopped here." in page
    assert "The answer failed" in page and "broke off" in page
    assert ">Retry</button>" in page
