"""Request rate limits per engine key, through the official SDK over real HTTP: OpenAI's 429 with
Retry-After, a retrying client that gets through, no slipping past a limit at once, a changed
limit that applies at once, and the default from THREADLINE_API_RATE_LIMIT."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx2
import openai
import pytest

from tests.servers import ENGINE_KEY, ThreadlineServer, sdk, shell

SET_RATE = """
import json
from engine.models import ApiKey
ApiKey.objects.filter(prefix={prefix!r}).update(rate_limit={rate!r})
print("null")
"""
NEW_KEYS = """
import json
from engine.models import ApiKey, Project
print(json.dumps([ApiKey.issue(Project.default(), "a script", r)[1] for r in {rates!r}]))
"""


def new_key(server: ThreadlineServer, rate: str | None = None) -> str:
    """A key as a script's owner gets one: `create_api_key`, with a rate of its own or not."""
    args = ["--rate-limit", rate] if rate is not None else []
    return server.manage("create_api_key", "a script", *args).strip()


def new_keys(server: ThreadlineServer, *rates: str) -> list[str]:
    """Several keys at once, as an admin makes them (one process start, not one per key)."""
    return shell(server, NEW_KEYS.format(rates=list(rates)))


def set_rate(server: ThreadlineServer, key: str, rate: str) -> None:
    """What an admin does on the key's page: its rate is read again on the next request."""
    shell(server, SET_RATE.format(prefix=key[:10], rate=rate))


@pytest.fixture(scope="module")
def default_limited() -> Iterator[ThreadlineServer]:
    """An engine whose stored keys allow 2 requests an hour unless they say otherwise."""
    server = ThreadlineServer(env={"THREADLINE_API_RATE_LIMIT": "2/hour"}).start()
    yield server
    server.stop()


def test_over_the_limit_is_openais_429_with_retry_after(offline_engine: ThreadlineServer) -> None:
    with sdk(offline_engine, key=new_key(offline_engine, "3/hour")) as client:
        remaining = []
        for _ in range(3):
            response = client.models.with_raw_response.list()
            assert response.headers["x-ratelimit-limit-requests"] == "3"
            remaining.append(response.headers["x-ratelimit-remaining-requests"])
        assert remaining == ["2", "1", "0"]
        with pytest.raises(openai.RateLimitError) as caught:
            client.models.list()
    error = caught.value
    assert error.status_code == 429
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert error.body["param"] is None
    assert error.body["message"].startswith(
        "Rate limit reached for this API key on requests per hour (RPH): Limit 3, Used 3, "
        "Requested 1. Please try again in "
    )
    retry_after = int(error.response.headers["Retry-After"])
    assert 1 <= retry_after <= 3600
    assert f"try again in {retry_after}s." in error.body["message"]
    retry_ms = int(error.response.headers["retry-after-ms"])
    assert (retry_after - 1) * 1000 < retry_ms <= retry_after * 1000
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_a_retrying_client_waits_as_told_and_gets_through(
    offline_engine: ThreadlineServer,
) -> None:
    (key,) = new_keys(offline_engine, "2/second")
    statuses: list[int] = []
    http = httpx2.Client(event_hooks={"response": [lambda r: statuses.append(r.status_code)]})
    # The SDK's own retries (max_retries) follow retry-after-ms.
    client = openai.OpenAI(
        api_key=key, base_url=offline_engine.api_url, max_retries=4, http_client=http
    )
    with client:
        started = time.monotonic()
        for _ in range(6):
            assert client.models.list().data
        elapsed = time.monotonic() - started
    assert statuses.count(200) == 6
    assert 429 in statuses, "some requests were over the limit and waited"
    assert elapsed >= 1.0, "six requests at two a second span at least two windows"


def test_requests_at_once_never_slip_past_the_limit(offline_engine: ThreadlineServer) -> None:
    (key,) = new_keys(offline_engine, "5/hour")

    def one(_: int) -> int:
        with sdk(offline_engine, key=key) as client:
            try:
                client.models.list()
            except openai.RateLimitError:
                return 429
            return 200

    with ThreadPoolExecutor(12) as pool:
        statuses = list(pool.map(one, range(12)))
    assert statuses.count(200) == 5 and statuses.count(429) == 7


def test_a_changed_key_limit_applies_to_the_next_request(
    offline_engine: ThreadlineServer,
) -> None:
    (key,) = new_keys(offline_engine, "1/hour")
    with sdk(offline_engine, key=key) as client:
        client.models.list()
        with pytest.raises(openai.RateLimitError):
            client.models.list()
        set_rate(offline_engine, key, "none")
        for _ in range(3):
            response = client.models.with_raw_response.list()
            assert "x-ratelimit-limit-requests" not in response.headers
        set_rate(offline_engine, key, "1/hour")  # the hour's count kept going meanwhile
        with pytest.raises(openai.RateLimitError):
            client.models.list()


def test_the_setting_limits_stored_keys_without_a_rate_of_their_own(
    default_limited: ThreadlineServer,
) -> None:
    plain, unlimited, own = new_keys(default_limited, "", "none", "3/hour")
    with sdk(default_limited, key=plain) as client:
        client.models.list()
        client.models.list()
        with pytest.raises(openai.RateLimitError) as caught:
            client.models.list()
    assert "Limit 2" in caught.value.body["message"]
    # A key's own rate, "none" included, wins over the default.
    with sdk(default_limited, key=unlimited) as client:
        for _ in range(4):
            client.models.list()
    with sdk(default_limited, key=own) as client:
        for _ in range(3):
            client.models.list()
        with pytest.raises(openai.RateLimitError):
            client.models.list()
    # The operator's THREADLINE_API_KEYS (the chat frontend often uses one) are not limited.
    with sdk(default_limited, key=ENGINE_KEY) as client:
        for _ in range(4):
            client.models.list()


def test_a_mistyped_default_stops_the_server() -> None:
    server = ThreadlineServer(env={"THREADLINE_API_RATE_LIMIT": "lots"})
    with pytest.raises(RuntimeError) as caught:
        server.manage("check")
    assert "THREADLINE_API_RATE_LIMIT: 'lots' is not a rate limit" in str(caught.value)


def test_create_api_key_refuses_a_mistyped_rate(offline_engine: ThreadlineServer) -> None:
    with pytest.raises(RuntimeError) as caught:
        new_key(offline_engine, "fast")
    assert "'fast' is not a rate limit" in str(caught.value)
