"""The engine's HTTP edge as clients nobody here wrote meet it: every error in OpenAI's shape
under /v1 and /openai, keys in headers only (never a cookie, so no CSRF), a request id on every
response, hostile bodies refused without a traceback, keys never over plain HTTP behind TLS."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2 as httpx
import pytest

from tests.servers import ENGINE_KEY, ThreadlineServer, shell

KEY = {"Authorization": f"Bearer {ENGINE_KEY}"}


def assert_openai_error(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize("prefix", ["/v1", "/openai"])
@pytest.mark.parametrize("method", ["GET", "POST", "DELETE", "PUT"])
def test_an_unknown_path_is_a_json_404_for_every_verb(
    offline_engine: ThreadlineServer, prefix: str, method: str
) -> None:
    # POST and DELETE met Django's HTML CSRF page before.
    response = httpx.request(method, f"{offline_engine.url}{prefix}/no/such/thing", headers=KEY)
    error = assert_openai_error(response, 404)
    assert error["code"] == "not_found"
    assert f"{method} {prefix}/no/such/thing" in str(error["message"])


def test_a_wrong_verb_is_405_with_allow(offline_engine: ThreadlineServer) -> None:
    for headers in (KEY, {}):  # wrong for every key, so said before the key is checked
        response = httpx.put(f"{offline_engine.api_url}/assistants", headers=headers)
        error = assert_openai_error(response, 405)
        assert error["code"] == "method_not_allowed"
        assert response.headers["allow"] == "GET, POST"
    steps = httpx.delete(f"{offline_engine.api_url}/threads/t/runs/r/steps", headers=KEY)
    assert_openai_error(steps, 405)
    assert steps.headers["allow"] == "GET"


def test_every_response_carries_a_request_id(offline_engine: ThreadlineServer) -> None:
    responses = [
        httpx.get(f"{offline_engine.api_url}/models", headers=KEY),
        httpx.get(f"{offline_engine.api_url}/models"),
        httpx.post(f"{offline_engine.api_url}/nowhere", headers=KEY),
        httpx.get(f"{offline_engine.url}/accounts/login/"),
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(id.startswith("req_") and len(id) == 36 for id in ids)
    assert len(set(ids)) == len(ids)


def test_the_api_key_header_is_a_key_and_nothing_else_is(
    offline_engine: ThreadlineServer,
) -> None:
    url = f"{offline_engine.url}/openai/assistants?api-version=2024-05-01-preview"
    assert httpx.get(url, headers={"api-key": ENGINE_KEY}).status_code == 200
    error = assert_openai_error(httpx.get(url, headers={"api-key": "sk-wrong"}), 401)
    assert error["code"] == "invalid_api_key"
    # A bearer header says which key is meant: a wrong one is not saved by a right api-key.
    both = {"Authorization": "Bearer sk-wrong", "api-key": ENGINE_KEY}
    assert_openai_error(httpx.get(url, headers=both), 401)
    for header in ("x-api-key", "openai-api-key", "api_key"):
        assert_openai_error(httpx.get(url, headers={header: ENGINE_KEY}), 401)


def test_a_signed_in_session_opens_nothing_and_needs_no_csrf(
    offline_engine: ThreadlineServer,
) -> None:
    """Dropping CSRF on the engine is safe because a cookie never authenticates there."""
    session = shell(
        offline_engine,
        "import json\n"
        "from django.contrib.auth import SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY\n"
        "from django.contrib.auth.models import User\n"
        "from django.contrib.sessions.backends.cached_db import SessionStore\n"
        "user, _ = User.objects.get_or_create(\n"
        "    username='cookie-person', is_staff=True, is_superuser=True\n"
        ")\n"
        "s = SessionStore()\n"
        "s[SESSION_KEY] = str(user.pk)\n"
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s[HASH_SESSION_KEY] = user.get_session_auth_hash()\n"
        "s.create()\n"
        "print(json.dumps(s.session_key))",
    )
    cookies = {"sessionid": session, "csrftoken": "x" * 32}
    with httpx.Client(cookies=cookies) as browser:
        # The session is real: the admin does not send this person to sign in, as it does
        # someone without it.
        assert httpx.get(f"{offline_engine.url}/admin/").status_code == 302
        assert browser.get(f"{offline_engine.url}/admin/").status_code != 302
        for path in ("/v1/assistants", "/openai/files"):
            error = assert_openai_error(browser.get(f"{offline_engine.url}{path}"), 401)
            assert error["code"] == "missing_api_key"
        # No CSRF token, a cookie that asks for one, and a key: the key is all that counts.
        made = browser.post(
            f"{offline_engine.api_url}/assistants",
            json={"model": "threadline-retrieval"},
            headers={**KEY, "Origin": "https://evil.example"},
        )
        assert made.status_code == 200, made.text


def test_json_nested_100000_deep_is_a_400_without_a_traceback(
    offline_engine: ThreadlineServer,
) -> None:
    deep = b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = httpx.post(
        f"{offline_engine.api_url}/threads",
        content=deep,
        headers={**KEY, "Content-Type": "application/json"},
    )
    error = assert_openai_error(response, 400)
    assert "nested too deeply" in str(error["message"])
    assert "RecursionError" not in offline_engine.log()


def test_message_text_is_capped_at_256000_characters(offline_engine: ThreadlineServer) -> None:
    thread = httpx.post(f"{offline_engine.api_url}/threads", headers=KEY).json()
    url = f"{offline_engine.api_url}/threads/{thread['id']}/messages"
    fits = httpx.post(url, json={"role": "user", "content": "x" * 256_000}, headers=KEY)
    assert fits.status_code == 200
    for content, param in (
        ("x" * 256_001, "content"),
        ([{"type": "text", "text": "x" * 256_001}], "content[0].text"),
    ):
        response = httpx.post(url, json={"role": "user", "content": content}, headers=KEY)
        error = assert_openai_error(response, 400)
        assert (error["param"], error["code"]) == (param, "string_above_max_length")
        assert "maximum length 256000, but got a string with length 256001" in str(error["message"])


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "json_schema", "json_schema": {"name": "has spaces"}}, "json_schema.name"),
        ({"type": "json_schema"}, "json_schema"),
        ({"type": "json_schema", "json_schema": {"name": "ok", "strict": "very"}}, "strict"),
        ("sometimes", ""),
    ],
)
def test_a_bad_response_format_names_its_param(
    offline_engine: ThreadlineServer, response_format: object, param: str
) -> None:
    body = {"model": "threadline-retrieval", "response_format": response_format}
    response = httpx.post(f"{offline_engine.api_url}/assistants", json=body, headers=KEY)
    error = assert_openai_error(response, 400)
    expected = "response_format" if not param else f"response_format.{param}"
    if param == "strict":
        expected = "response_format.json_schema.strict"
    assert error["param"] == expected


@pytest.fixture(scope="module")
def https_engine() -> Iterator[ThreadlineServer]:
    """Served behind TLS: a proxy in front says how each request came in."""
    server = ThreadlineServer(env={"THREADLINE_HTTPS": "1"}).start()
    yield server
    server.stop()


def test_behind_https_no_key_crosses_plain_http(https_engine: ThreadlineServer) -> None:
    for prefix in ("/v1", "/openai"):
        url = f"{https_engine.url}{prefix}/assistants"
        plain = httpx.get(url, headers={**KEY, "X-Forwarded-Proto": "http"})
        error = assert_openai_error(plain, 403)
        assert error["code"] == "https_required"
        assert "https://" in str(error["message"])
        # Not a redirect, which an SDK would follow, sending the key in the clear again.
        assert "location" not in plain.headers
        secure = httpx.get(url, headers={**KEY, "X-Forwarded-Proto": "https"})
        assert secure.status_code == 200
    # The server's own chat calls its engine on this machine, with no proxy in between.
    assert httpx.get(f"{https_engine.api_url}/assistants", headers=KEY).status_code == 200
    # Pages are still redirected to HTTPS.
    page = httpx.get(f"{https_engine.url}/accounts/login/", headers={"X-Forwarded-Proto": "http"})
    assert page.status_code == 301
    assert page.headers["location"].startswith("https://")


def test_server_errors_under_the_engine_paths_are_json(offline_engine: ThreadlineServer) -> None:
    """Django answers a bad Host header itself, before any view: in OpenAI's shape here."""
    response = httpx.get(
        f"{offline_engine.api_url}/models", headers={**KEY, "Host": "evil.example"}
    )
    error = assert_openai_error(response, 400)
    assert error["type"] == "invalid_request_error"
    page = httpx.get(f"{offline_engine.url}/accounts/login/", headers={"Host": "evil.example"})
    assert page.status_code == 400
    assert not page.headers["content-type"].startswith("application/json")
