"""The chat against the real product: a live Threadline server (chat pages and engine in one
process) whose model API is the scripted fake, driven over HTTP like a browser would.

The server has its own SQLite database, so people and assistant profiles are made in it with
`manage.py shell` subprocesses, once per session; each test takes assistants of its own from a
pool, each on a model name of its own, so scripted turns never leak between tests.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from chat import assistants_api as api
from chat import titles
from tests.fake_model import FakeModelServer
from tests.servers import (
    ENGINE_KEY,
    REDIS_SERVER,
    ROOT,
    ThreadlineServer,
    model_env,
    sdk,
    shell,
    start_chat_server,
)

CORPUS = ROOT.parent / "shared" / "corpus" / "pdf"
# Function calling: the tests' Python functions, and their webhook receiver on 127.0.0.1.
FUNCTIONS_ENV = {
    "THREADLINE_PYTHON_FUNCTIONS": ",".join(
        f"tests.chat.python_functions.{name}" for name in ("local_time", "explode", "doze")
    ),
    "THREADLINE_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
}
PASSWORD = "a-long-test-password-42"
POOL = 150
# Small, so that the server-side size check runs on small files; the browser test shows the
# 600 MB case, which the page refuses before uploading anything.
UPLOAD_LIMIT = 2 * 1024 * 1024


SETUP = """
import json
from django.contrib.auth.models import User
from chat.models import AssistantProfile
for name in ("owner", "other"):
    User.objects.create_user(name, password={password!r})
User.objects.create_superuser("admin", password={password!r})
ids = [
    AssistantProfile.objects.create(
        name=f"Scripted {{i}}", model=f"scripted-{{i}}", published=True
    ).pk
    for i in range({pool})
]
print(json.dumps(ids))
"""


@dataclass
class ChatServer:
    server: ThreadlineServer
    profiles: Iterator[tuple[int, str]]

    @property
    def url(self) -> str:
        return self.server.url

    def assistant(self) -> tuple[int, str]:
        """A published assistant profile of the test's own: (profile id, model name)."""
        return next(self.profiles)


@pytest.fixture(scope="session")
def chat_model() -> Iterator[FakeModelServer]:
    """The chat's own scripted model API: what it records is none of the engine tests' business.

    The chat asks the model for a title after a conversation's first answer; those requests
    are answered apart (with the first message, unless a test scripts a title), so they never
    take a turn a test scripted for its conversation."""
    server = FakeModelServer()
    server.start()
    server.script_instructions(titles.INSTRUCTIONS)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def chat_server(chat_model: FakeModelServer) -> Iterator[ChatServer]:
    env = {
        **model_env(chat_model),
        "THREADLINE_CHAT_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
        **FUNCTIONS_ENV,
    }
    server = start_chat_server(env)
    try:
        ids = shell(server, SETUP.format(password=PASSWORD, pool=POOL))
        profiles = ((pk, f"scripted-{i}") for i, pk in enumerate(ids))
        yield ChatServer(server, iter(profiles))
    finally:
        server.stop()


# --- A browser-like HTTP client -------------------------------------------------------------------


@dataclass
class Event:
    id: int
    event: str
    data: str
    at: float


@dataclass
class Sent:
    response: httpx2.Response
    conversation_id: int | None = None
    events_url: str | None = None


class ChatClient:
    """Session cookies, CSRF and htmx headers, as the page's own requests carry them."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx2.Client(base_url=base_url, timeout=30, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def login(self, username: str, password: str = PASSWORD) -> None:
        self.http.get("/accounts/login/")
        response = self.http.post(
            "/accounts/login/",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": self.http.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302, response.text

    def headers(self, htmx: bool = True) -> dict[str, str]:
        headers = {"X-CSRFToken": self.http.cookies.get("csrftoken", "")}
        if htmx:
            headers["HX-Request"] = "true"
        return headers

    def get(self, url: str, **kwargs: Any) -> httpx2.Response:
        return self.http.get(url, **kwargs)

    def post(self, url: str, data: dict[str, Any] | None = None, **kwargs: Any) -> httpx2.Response:
        if "csrftoken" not in self.http.cookies:
            self.http.get("/")
        return self.http.post(url, data=data or {}, headers=self.headers(), **kwargs)

    def send(
        self,
        text: str,
        *,
        assistant: int | None = None,
        conversation_id: int | None = None,
        files: list[tuple[str, bytes, str]] | None = None,
    ) -> Sent:
        """Send as the page does (htmx); the answer streams from `events_url`."""
        url = f"/c/{conversation_id}/send" if conversation_id else "/c/new/send"
        data = {"text": text}
        if assistant is not None:
            data["assistant"] = str(assistant)
        upload = [("files", (name, content, kind)) for name, content, kind in files or []]
        response = self.post(url, data, files=upload or None)
        sent = Sent(response, conversation_id, events_url(response.text))
        if response.headers.get("HX-Push-Url"):  # a new thread's page
            sent.conversation_id = int(response.headers["HX-Push-Url"].split("/")[2])
        return sent

    def events(
        self,
        url: str,
        *,
        last_event_id: int | None = None,
        stop_after: int | None = None,
        until: Callable[[Event], bool] | None = None,
        timeout: float = 30,
    ) -> tuple[int, list[Event]]:
        """Read the stream until its end (or `stop_after` events, or one that `until` likes);
        (status, events)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = str(last_event_id)
        events: list[Event] = []
        start = time.monotonic()
        with self.http.stream("GET", url, headers=headers, timeout=timeout) as response:
            if response.status_code != 200:
                return response.status_code, events
            fields: dict[str, list[str]] = {}
            for line in response.iter_lines():
                if line == "":
                    if "id" in fields:
                        events.append(
                            Event(
                                int(fields["id"][0]),
                                fields.get("event", ["message"])[0],
                                "\n".join(fields.get("data", [])),
                                time.monotonic() - start,
                            )
                        )
                        if events[-1].event == "end" or len(events) == stop_after:
                            break
                        if until is not None and until(events[-1]):
                            break
                    fields = {}
                    continue
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                fields.setdefault(name, []).append(value.removeprefix(" "))
            return response.status_code, events


def events_url(html: str) -> str | None:
    found = re.search(r'sse-connect="([^"]+)"', html)
    return found.group(1) if found else None


def text_of(html: str) -> str:
    """The visible text of a fragment, roughly: tags dropped, entities left alone."""
    return re.sub(r"<[^>]+>", "", html)


@pytest.fixture
def owner(chat_server: ChatServer) -> Iterator[ChatClient]:
    """The person whose threads the test is about."""
    client = ChatClient(chat_server.url)
    client.login("owner")
    yield client
    client.close()


@pytest.fixture
def other(chat_server: ChatServer) -> Iterator[ChatClient]:
    """Someone else, signed in too: must never see the owner's threads, runs or files."""
    client = ChatClient(chat_server.url)
    client.login("other")
    yield client
    client.close()


@pytest.fixture
def assistant(chat_server: ChatServer) -> tuple[int, str]:
    return chat_server.assistant()


@dataclass
class Scripted:
    """An assistant of the test's own and the model server that answers for it."""

    profile_id: int
    model: str
    model_server: FakeModelServer
    turns: list[Any] = field(default_factory=list)

    def script(self, *turns: Any) -> None:
        self.model_server.script(self.model, list(turns))


@pytest.fixture
def scripted(assistant: tuple[int, str], chat_model: FakeModelServer) -> Scripted:
    return Scripted(assistant[0], assistant[1], chat_model)


def corpus(name: str) -> bytes:
    return Path(CORPUS / name).read_bytes()


# --- The admin in this process, against a live engine ------------------------------------------


def point_at(settings: Any, url: str) -> None:
    """Point the in-process chat (Django's test client) at an Assistants API."""
    settings.ASSISTANTS_URL = url
    settings.ASSISTANTS_KEY = ENGINE_KEY
    settings.ASSISTANTS_TIMEOUT_SECONDS = 5
    forget_sync_client()


def forget_sync_client() -> None:
    """Close the chat's cached client before dropping it: a dropped one's pooled socket would be
    reported unclosed (a ResourceWarning, an error here) in whichever test the collector runs."""
    if api.sync_client.cache_info().currsize:
        api.sync_client().close()
    api.sync_client.cache_clear()


@pytest.fixture(autouse=True)
def waiting_dir(settings: Any, tmp_path: Path) -> Path:
    """Knowledge files the in-process admin keeps for a later sync go in the test's own folder,
    not the project's var/."""
    settings.KNOWLEDGE_WAITING_DIR = tmp_path / "knowledge-waiting"
    return settings.KNOWLEDGE_WAITING_DIR


@pytest.fixture
def remote(offline_engine: ThreadlineServer, settings: Any) -> Iterator[openai.OpenAI]:
    """The admin's Assistants API is the offline engine; the SDK client checks what it holds."""
    point_at(settings, offline_engine.api_url)
    with sdk(offline_engine) as client:
        yield client
    forget_sync_client()


# --- Real Chromium --------------------------------------------------------------------------------

# Debian's Chromium; THREADLINE_CHROMIUM points elsewhere (or nowhere, to see the skip).
CHROMIUM = Path(os.environ.get("THREADLINE_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
NO_CHROMIUM = "Chromium not installed: apt-get install chromium"
NO_REDIS = "redis-server not installed: apt-get install redis-server"
ARTIFACTS = ROOT / "test-artifacts"
# axe-core, pinned in package.json; `make test` installs it (npm ci).
AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"
NO_AXE = "axe-core not installed: make node_modules/.installed (npm ci)"
# The two sizes the chat is looked at in: a laptop, and a phone held upright (touch, no mouse).
SCREENS: dict[str, dict[str, Any]] = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True},
}


# Module scope: Playwright's sync API runs an event loop in this thread while it lives, which
# would break asyncio.run() (and even ast.parse) in the tests that come after.
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(NO_CHROMIUM)
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


# Every page of every browser test reports what its Content-Security-Policy refused: Chromium
# says so on the console, and the page's securitypolicyviolation event is echoed there too
# (with the script that tried).
CSP_WATCH = """
document.addEventListener("securitypolicyviolation", (event) => {
  const where = event.sourceFile ? " (" + event.sourceFile + ":" + event.lineNumber + ")" : "";
  console.error("CSP violation: " + event.violatedDirective + " refused " +
    (event.blockedURI || "inline code") + " on " + event.documentURI + where);
});
"""


class Browser:
    """One person's browser: a context of its own (cookies), signed in, with a page.

    Closing it fails the test if any page broke the Content-Security-Policy.
    """

    def __init__(
        self,
        chromium: Any,
        base_url: str,
        test_name: str,
        screen: str = "desktop",
        scheme: str = "light",
    ) -> None:
        options = SCREENS[screen]
        self.context = chromium.new_context(base_url=base_url, color_scheme=scheme, **options)
        self.context.grant_permissions(["clipboard-read", "clipboard-write"])
        self.csp_violations: list[str] = []
        self.context.add_init_script(CSP_WATCH)
        self.context.on("console", self.watch_console)
        self.page = self.context.new_page()
        self.test_name = test_name
        self.screen = screen
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))

    def watch_console(self, message: Any) -> None:
        text = message.text
        if text.startswith(("Refused to", "CSP violation")) or "Content Security Policy" in text:
            self.csp_violations.append(text)

    @property
    def phone(self) -> bool:
        return self.screen == "phone"

    def violations(self) -> list[dict[str, Any]]:
        """What axe-core finds wrong with the page as it is now, serious or critical only."""
        if not AXE.exists():
            pytest.skip(NO_AXE)
        # Evaluated through the DevTools protocol, which a page's CSP does not apply to. While
        # it checks, axe-core adds a <style> element of its own, which the CSP refuses: those
        # refusals are the checker's, not the page's, and are not counted against the page.
        before = len(self.csp_violations)
        self.page.evaluate(AXE.read_text())
        found = self.page.evaluate(
            """async () => (await axe.run(document, {
                runOnly: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"],
            })).violations.map(v => ({
                id: v.id, impact: v.impact, help: v.help,
                targets: v.nodes.slice(0, 5).map(n => n.target.join(" ")),
            }))"""
        )
        self.csp_violations[before:] = [
            text
            for text in self.csp_violations[before:]
            if "style-src-elem" not in text and "Applying inline style" not in text
        ]
        return [v for v in found if v["impact"] in ("serious", "critical")]

    def login(self, username: str) -> None:
        self.page.goto("/accounts/login/")
        self.page.get_by_label("Username").fill(username)
        self.page.get_by_label("Password").fill(PASSWORD)
        self.page.get_by_role("button", name="Sign in").click()
        self.page.wait_for_url("**/")

    def shot(self, name: str) -> Path:
        path = ARTIFACTS / f"{self.test_name}--{name}.png"
        # caret="initial": hiding the caret leaves style="" on every field, which htmx then
        # copies when it swaps them (a breach of the page's policy that no person would cause).
        self.page.screenshot(path=str(path), caret="initial")
        return path

    def close(self) -> None:
        self.context.close()
        violations = "\n".join(self.csp_violations)
        assert not violations, f"The Content-Security-Policy refused:\n{violations}"


@pytest.fixture
def screen() -> str:
    """The size the test looks at the chat in; tests parametrize it (desktop, phone)."""
    return "desktop"


@pytest.fixture
def browser(
    chromium: Any, chat_server: ChatServer, request: pytest.FixtureRequest, screen: str
) -> Iterator[Browser]:
    """The owner's browser, signed in."""
    session = Browser(chromium, chat_server.url, request.node.name, screen)
    session.login("owner")
    yield session
    session.shot("last")
    session.close()
    assert session.errors == [], "JavaScript errors in the page"


# Tests that need a program the machine may lack, by marker: (what they are, missing?, why).
# Their fixtures skip them; the summary at the end says how many and why, so a run on a bare
# machine does not pass quietly with parts of the suite never run.
NEEDS: dict[str, tuple[str, Callable[[], bool], str]] = {
    "browser": ("browser", lambda: not CHROMIUM.exists(), NO_CHROMIUM),
    "axe": ("accessibility", lambda: not AXE.exists(), NO_AXE),
    "redis": ("scale-out", lambda: not REDIS_SERVER.exists(), NO_REDIS),
}
_skipped: dict[str, list[str]] = {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for marker, (_, missing, _) in NEEDS.items():
        if missing():
            _skipped[marker] = [item.nodeid for item in items if item.get_closest_marker(marker)]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for marker, nodeids in _skipped.items():
        if nodeids:
            kind, _, why = NEEDS[marker]
            terminalreporter.write_line(f"Skipped {len(nodeids)} {kind} tests: {why}", yellow=True)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    """Each test starts with an empty in-process cache (the admin remembers the model list)."""
    from django.core.cache import cache

    cache.clear()
    yield
