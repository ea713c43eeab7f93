"""Limits per person, through the live chat: each limit refuses the next message with when it
resets, where the person pressed Send; admins set limits in the admin and a change applies to
the very next message; sends at once never slip past a limit; the usage page counts it all.

Each test signs in a person of its own (made once per module), so one test's limits and usage
never reach another's. Limits are set through the admin's own forms, as an admin would.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx2
import pytest

from chat.limits.rules import NAMES
from tests.chat.conftest import PASSWORD, ChatClient, ChatServer, Scripted, corpus, text_of
from tests.fake_model import Fail, Reply
from tests.servers import shell

PEOPLE = 16
PEOPLE_SETUP = """
import json
from django.contrib.auth.models import Group, User
ids = [User.objects.create_user(f"limited-{{i}}", password={password!r}).pk for i in range({count})]
groups = [Group.objects.create(name=f"limited-group-{{i}}").pk for i in range(2)]
print(json.dumps({{"people": ids, "groups": groups}}))
"""


LIMITS_URL = "/admin/chat/usagelimits/"


class Admin:
    """The admin, signed in, filling in the admin's forms over HTTP."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx2.Client(base_url=base_url, timeout=30)
        self.http.get("/admin/login/")
        signed_in = self.http.post(
            "/admin/login/",
            data={
                "username": "admin",
                "password": PASSWORD,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
                "next": "/admin/",
            },
        )
        assert signed_in.status_code == 302, signed_in.text
        self.added: dict[tuple[int | None, int | None], int] = {}

    def post(self, url: str, data: dict[str, str]) -> httpx2.Response:
        return self.http.post(
            url, data={**data, "csrfmiddlewaretoken": self.http.cookies["csrftoken"]}
        )

    def set_limits(
        self, *, user: int | None = None, group: int | None = None, **limits: int
    ) -> int:
        """Add limits for a person or a group, or change the ones added before; their id."""
        assert set(limits) <= set(NAMES)
        data = {
            "user": str(user or ""),
            "group": str(group or ""),
            **{name: str(limits.get(name, "")) for name in NAMES},
            "_continue": "Save and continue editing",
        }
        known = self.added.get((user, group))
        url = (
            f"/admin/chat/usagelimits/{known}/change/" if known else "/admin/chat/usagelimits/add/"
        )
        saved = self.post(url, data)
        assert saved.status_code == 302, text_of(saved.text)
        found = re.search(r"/usagelimits/(\d+)/change/", saved.headers["location"])
        assert found
        self.added[(user, group)] = int(found.group(1))
        return self.added[(user, group)]

    def close(self) -> None:
        self.http.close()


@dataclass
class Person:
    id: int
    username: str
    client: ChatClient


@pytest.fixture(scope="module")
def made(chat_server: ChatServer) -> dict[str, Iterator[int] | list[int]]:
    ids = shell(chat_server.server, PEOPLE_SETUP.format(password=PASSWORD, count=PEOPLE))
    return {"people": iter(enumerate(ids["people"])), "groups": ids["groups"]}


@pytest.fixture
def person(chat_server: ChatServer, made: dict) -> Iterator[Person]:
    """Someone whose limits and usage are this test's alone."""
    index, user_id = next(made["people"])
    client = ChatClient(chat_server.url)
    client.login(f"limited-{index}")
    yield Person(user_id, f"limited-{index}", client)
    client.close()


@pytest.fixture(scope="module")
def admin(chat_server: ChatServer) -> Iterator[Admin]:
    client = Admin(chat_server.url)
    yield client
    client.close()


def answered(person: Person, sent) -> str:  # type: ignore[no-untyped-def]
    """Follow the answer to its end; its final text."""
    assert sent.events_url, text_of(sent.response.text)
    status, events = person.client.events(sent.events_url)
    assert status == 200 and events[-1].event == "end"
    return text_of(events[-2].data)


def refusal(sent) -> str:  # type: ignore[no-untyped-def]
    """The message box came back with the person's text and why it was not sent."""
    html = sent.response.text
    assert sent.response.status_code == 200
    assert sent.events_url is None and sent.response.headers.get("HX-Push-Url") is None, html
    errors = re.search(r'<div class="errors" role="alert">(.*?)</div>', html, re.S)
    assert errors, html
    return " ".join(text_of(errors.group(1)).split())


def shown_reset(message: str, today: datetime) -> datetime:
    """The reset time in the message ("at 14:32 UTC", maybe "tomorrow")."""
    found = re.search(r"at (\d\d):(\d\d) UTC( tomorrow)?", message)
    assert found, message
    day = today + timedelta(days=1) if found.group(3) else today
    return day.replace(
        hour=int(found.group(1)), minute=int(found.group(2)), second=0, microsecond=0
    )


def ceil_minute(moment: datetime) -> datetime:
    whole = moment.replace(second=0, microsecond=0)
    return whole if whole == moment else whole + timedelta(minutes=1)


def now() -> datetime:
    return datetime.now(UTC)


# --- Each limit, its message and when it resets ---------------------------------------------------


def test_messages_per_hour_refuse_the_next_with_when_it_resets(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, messages_per_hour=1)
    scripted.script(Reply("First answer."))
    before = now()
    first = person.client.send("One", assistant=scripted.profile_id)
    after = now()
    assert "First answer." in answered(person, first)

    second = person.client.send("Two, please", conversation_id=first.conversation_id)
    message = refusal(second)
    assert message.startswith("You have reached your limit of 1 message an hour.")
    assert re.search(
        r"You can send again at \d\d:\d\d UTC( tomorrow)? \(in (59 minutes|1 hour)\)\.$", message
    )
    shown = shown_reset(message, before)
    assert (
        ceil_minute(before + timedelta(hours=1)) <= shown <= ceil_minute(after + timedelta(hours=1))
    )
    assert "Two, please</textarea>" in second.response.text, "the text stays in the box"
    page = person.client.get(f"/c/{first.conversation_id}/").text
    assert "Two, please" not in page.split("<textarea")[0], "nothing was sent"


def test_the_limit_that_resets_last_is_the_one_shown(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    """Told "in an hour" while a daily limit holds, a person would come back in vain."""
    admin.set_limits(user=person.id, messages_per_hour=1, messages_per_day=1)
    scripted.script(Reply("Done."))
    first = person.client.send("One", assistant=scripted.profile_id)
    answered(person, first)
    message = refusal(person.client.send("Two", conversation_id=first.conversation_id))
    assert message.startswith("You have reached your limit of 1 message a day.")
    assert re.search(r"tomorrow \(in (23 hours 59 minutes|24 hours)\)\.$", message), message


def test_a_retry_counts_as_a_message(person: Person, admin: Admin, scripted: Scripted) -> None:
    admin.set_limits(user=person.id, messages_per_hour=1)
    scripted.script(Fail(400, "The model says no."), Reply("Never asked for."))
    sent = person.client.send("Please", assistant=scripted.profile_id)
    assert "The answer failed" in answered(person, sent)
    retried = person.client.post(f"/c/{sent.conversation_id}/retry")
    assert retried.headers["HX-Retarget"] == "#alerts"
    assert "You have reached your limit of 1 message an hour." in text_of(retried.text)


def test_answers_running_at_once(person: Person, admin: Admin, scripted: Scripted) -> None:
    admin.set_limits(user=person.id, answers_at_once=1)
    scripted.script(Reply(" ".join(f"w{i}" for i in range(60)), chunk_delay=0.05), Reply("Next."))
    slow = person.client.send("Take your time", assistant=scripted.profile_id)
    assert slow.events_url
    message = refusal(person.client.send("Meanwhile", assistant=scripted.profile_id))
    assert message == (
        "You already have 1 answer being written, as many as you may have at once. "
        "You can send this as soon as one of them has finished."
    )
    answered(person, slow)
    # Once a browser has seen the end, the next message goes through.
    assert "Next." in answered(person, person.client.send("Now", assistant=scripted.profile_id))


def test_tokens_per_day_count_the_runs_usage(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, tokens_per_day=100)
    usage = {"prompt_tokens": 120, "completion_tokens": 30, "total_tokens": 150}
    scripted.script(Reply("An expensive answer.", usage=usage))
    before = now()
    first = person.client.send("Spend", assistant=scripted.profile_id)
    answered(person, first)
    message = refusal(person.client.send("More", conversation_id=first.conversation_id))
    assert message.startswith(
        "Your answers in the last 24 hours used 150 tokens; your limit is 100 a day."
    )
    shown = shown_reset(message, before)
    assert before + timedelta(hours=24) <= shown <= now() + timedelta(hours=24, minutes=1)


def test_tokens_per_month_reset_on_the_first(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, tokens_per_month=100)
    scripted.script(Reply("Costly.", usage={"prompt_tokens": 90, "completion_tokens": 20}))
    first = person.client.send("Spend", assistant=scripted.profile_id)
    answered(person, first)
    message = refusal(person.client.send("More", conversation_id=first.conversation_id))
    today = now()
    first_of_next = (today.replace(day=28) + timedelta(days=4)).replace(day=1)
    used = "Your answers this month used 110 tokens; your limit is 100 a month. "
    if first_of_next.date() == today.date() + timedelta(days=1):
        # On the last day of a month the first is tomorrow, said as for any reset tomorrow.
        assert message.startswith(f"{used}You can send again at 00:00 UTC tomorrow (in "), message
    else:
        assert message == f"{used}You can send again on 1 {first_of_next:%B} at 00:00 UTC."


def text_file(kilobytes: int) -> tuple[str, bytes, str]:
    return (f"notes-{kilobytes}.txt", b"word " * (kilobytes * 1024 // 5), "text/plain")


def test_upload_bytes_per_day_refuse_the_files_but_not_the_message(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, upload_mb_per_day=1)
    scripted.script(Reply("Read it."), Reply("Without files."))
    before = now()
    first = person.client.send("Read", assistant=scripted.profile_id, files=[text_file(600)])
    answered(person, first)
    second = person.client.send(
        "And this", conversation_id=first.conversation_id, files=[text_file(600)]
    )
    message = refusal(second)
    assert message.startswith(
        "You have attached 600 KB of files in the last 24 hours; with these (600 KB) that "
        "would be more than your limit of 1 MB a day. You can attach them at "
    )
    assert " UTC tomorrow (in " in message
    assert message.endswith("or send your message without them now.")
    assert shown_reset(message, before) >= before + timedelta(hours=24)
    without = person.client.send("Just text", conversation_id=first.conversation_id)
    assert "Without files." in answered(person, without)


def test_stored_files_make_room_when_a_conversation_is_deleted(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, stored_mb=1)
    scripted.script(Reply("Kept."), Reply("Room again."))
    first = person.client.send("Keep", assistant=scripted.profile_id, files=[text_file(700)])
    answered(person, first)
    message = refusal(
        person.client.send("More", assistant=scripted.profile_id, files=[text_file(700)])
    )
    assert message == (
        "Your conversations keep 700 KB of attached files; with these (700 KB) that would be "
        "more than your limit of 1 MB. Delete conversations whose files you no longer need, "
        "or send without files."
    )
    person.client.post(f"/c/{first.conversation_id}/delete")
    again = person.client.send("More", assistant=scripted.profile_id, files=[text_file(700)])
    assert "Room again." in answered(person, again)


def test_a_send_that_fails_does_not_count(person: Person, admin: Admin, scripted: Scripted) -> None:
    admin.set_limits(user=person.id, messages_per_hour=1)
    scan = person.client.send(
        "Read my scan",
        assistant=scripted.profile_id,
        files=[("scan.pdf", corpus("git.pdf"), "application/pdf")],
    )
    assert "scan.pdf could not be read" in refusal(scan)
    scripted.script(Reply("Counted once."))
    assert "Counted once." in answered(
        person, person.client.send("Plain text", assistant=scripted.profile_id)
    )


# --- Admins change limits; groups ---------------------------------------------------------------


def test_a_changed_limit_applies_to_the_next_message(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, messages_per_hour=1)
    scripted.script(Reply("One."), Reply("Two."))
    first = person.client.send("One", assistant=scripted.profile_id)
    answered(person, first)
    assert "limit of 1 message" in refusal(
        person.client.send("Two", conversation_id=first.conversation_id)
    )
    admin.set_limits(user=person.id, messages_per_hour=2)
    second = person.client.send("Two", conversation_id=first.conversation_id)
    assert "Two." in answered(person, second)


def test_groups_grant_the_most_generous_and_a_persons_own_limit_wins(
    person: Person, admin: Admin, scripted: Scripted, made: dict, chat_server: ChatServer
) -> None:
    strict, generous = made["groups"]
    shell(
        chat_server.server,
        f"""
import json
from django.contrib.auth.models import User
User.objects.get(pk={person.id}).groups.add({strict}, {generous})
print("null")
""",
    )
    admin.set_limits(group=strict, messages_per_hour=1)
    admin.set_limits(group=generous, messages_per_hour=2, tokens_per_day=1_000_000)
    scripted.script(Reply("a"), Reply("b"), Reply("c"))
    first = person.client.send("One", assistant=scripted.profile_id)
    answered(person, first)
    second = person.client.send("Two", conversation_id=first.conversation_id)
    answered(person, second)
    assert "your limit of 2 messages an hour" in refusal(
        person.client.send("Three", conversation_id=first.conversation_id)
    )
    # Their own limit, lower or higher than the groups', is the one that holds.
    admin.set_limits(user=person.id, messages_per_hour=3)
    third = person.client.send("Three", conversation_id=first.conversation_id)
    answered(person, third)


# --- Races ----------------------------------------------------------------------------------------


def test_sends_at_once_never_slip_past_a_limit(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, messages_per_hour=2)
    scripted.script(*(Reply(f"Answer {i}.") for i in range(6)))
    clients = []
    for _ in range(6):
        client = ChatClient(person.client.http.base_url)
        client.http.cookies.update(person.client.http.cookies)
        clients.append(client)
    try:
        with ThreadPoolExecutor(len(clients)) as pool:
            sends = list(
                pool.map(
                    lambda c: c.send(f"At once {id(c)}", assistant=scripted.profile_id), clients
                )
            )
        accepted = [sent for sent in sends if sent.events_url]
        refused = [sent for sent in sends if not sent.events_url]
        assert len(accepted) == 2, [text_of(s.response.text)[:200] for s in refused]
        assert all("limit of 2 messages an hour" in refusal(sent) for sent in refused)
        for sent in accepted:
            answered(person, sent)
    finally:
        for client in clients:
            client.close()


def test_an_answer_whose_relay_died_is_settled_from_the_api(
    person: Person, admin: Admin, scripted: Scripted, chat_server: ChatServer
) -> None:
    """A process that dies never records its answers' end: the next send asks the API."""
    admin.set_limits(user=person.id, answers_at_once=1)
    scripted.script(Reply("Finished.", usage={"prompt_tokens": 7, "completion_tokens": 3}))
    answered(person, person.client.send("One", assistant=scripted.profile_id))
    lost = """
import json
from datetime import timedelta
from django.db.models import F
from chat.models import AnswerUsage
rows = AnswerUsage.objects.filter(user_id={user})
{action}
print(json.dumps(list(rows.values_list("total_tokens", "ended_at"))[:1], default=str))
"""
    # As a relay that died would leave it: open, no tokens, started over a minute ago.
    forget = (
        "rows.update(ended_at=None, total_tokens=None,"
        " started_at=F('started_at') - timedelta(minutes=2))"
    )
    assert shell(chat_server.server, lost.format(user=person.id, action=forget)) == [[None, None]]
    scripted.script(Reply("Let through."))
    assert "Let through." in answered(
        person, person.client.send("Two", assistant=scripted.profile_id)
    )
    settled = shell(
        chat_server.server,
        lost.format(user=person.id, action="rows = rows.order_by('started_at')"),
    )
    assert settled[0][0] == 10 and settled[0][1] is not None


# --- The admin's usage page -----------------------------------------------------------------------


def test_usage_page_shows_each_persons_use_against_their_limits(
    person: Person, admin: Admin, scripted: Scripted
) -> None:
    admin.set_limits(user=person.id, messages_per_hour=1, tokens_per_day=10_000)
    usage = {"prompt_tokens": 1200, "completion_tokens": 34, "total_tokens": 1234}
    scripted.script(Reply("Counted.", usage=usage))
    answered(person, person.client.send("Count me", assistant=scripted.profile_id))

    page = admin.http.get("/admin/chat/answerusage/")
    assert page.status_code == 200
    row = re.search(
        rf"<tr>\s*<th scope=\"row\">\s*<a [^>]*>{person.username}</a>.*?</tr>", page.text, re.S
    )
    assert row, page.text
    cells = [
        " ".join(text_of(c).split()) for c in re.findall(r"<td[^>]*>(.*?)</td>", row.group(0), re.S)
    ]
    # Messages an hour (at the limit), a day, running, tokens a day, a month, uploads, stored,
    # and tokens in the period.
    assert cells[0] == "1 / 1 (at the limit)"
    assert cells[1:4] == ["1", "0", "1,234 / 10,000"]
    assert cells[-1] == "1,234"
    assert 'class="number over"' in row.group(0)

    mine = admin.http.get(f"/admin/chat/answerusage/?days=7&user={person.id}").text
    assert f"Tokens per day for <strong>{person.username}</strong>" in mine
    assert re.search(r"<title>\d+ \w+ \d{4}: 1,234 tokens</title>", mine)
    assert "style=" not in mine.split('id="content-main"')[1], "no inline styles (CSP)"


def test_usage_page_is_for_admins_only(person: Person) -> None:
    page = person.client.get("/admin/chat/answerusage/")
    assert page.status_code == 302 and "/admin/login/" in page.headers["location"]
