"""Admins create engine keys in Django admin: shown once, stored hashed, revocable."""

import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client

from engine.api import key_use
from engine.api.access import project_for_key
from engine.models import ApiKey, Project


@pytest.fixture(autouse=True)
def no_key_use_left_behind() -> Iterator[None]:
    # Looking a key up notes its use for a timer thread to write; this test's database is gone
    # by then.
    yield
    key_use.discard_pending()


@pytest.fixture
def admin_client(db) -> Client:  # type: ignore[no-untyped-def]
    # An admin: the only person who may create or revoke keys.
    admin = User.objects.create_superuser("root", password="a-long-admin-password")
    client = Client()
    client.force_login(admin)
    return client


def test_new_key_is_shown_once_and_only_its_hash_is_stored(admin_client: Client) -> None:
    project = Project.objects.create(name="reporting")
    response = admin_client.post(
        "/admin/engine/apikey/add/", {"name": "nightly export", "project": project.pk}, follow=True
    )
    page = response.content.decode()
    plaintext = re.search(r"The new key is (tl-[\w-]+)", page).group(1)
    key = ApiKey.objects.get(name="nightly export")
    assert key.key_hash == ApiKey.hash(plaintext)
    assert plaintext not in (key.prefix, key.key_hash)
    assert project_for_key(plaintext) == project

    again = admin_client.get(f"/admin/engine/apikey/{key.pk}/change/").content.decode()
    assert plaintext not in again


def test_revoked_key_no_longer_authenticates(admin_client: Client) -> None:
    key, plaintext = ApiKey.issue(Project.default(), "old script")
    response = admin_client.post(
        "/admin/engine/apikey/",
        {"action": "revoke", "_selected_action": [key.pk]},
        follow=True,
    )
    assert "Revoked 1 key" in response.content.decode()
    assert project_for_key(plaintext) is None


def test_a_keys_rate_limit_is_checked_and_listed(admin_client: Client, settings: Any) -> None:
    settings.API_RATE_LIMIT = "600/minute"
    project = Project.default()
    refused = admin_client.post(
        "/admin/engine/apikey/add/", {"name": "greedy", "project": project.pk, "rate_limit": "fast"}
    )
    assert "&#x27;fast&#x27; is not a rate limit" in refused.content.decode()
    assert not ApiKey.objects.filter(name="greedy").exists()
    for name, rate in (("hourly", "100/hour"), ("unlimited", "none"), ("plain", "")):
        admin_client.post(
            "/admin/engine/apikey/add/", {"name": name, "project": project.pk, "rate_limit": rate}
        )
    listed = admin_client.get("/admin/engine/apikey/").content.decode()
    assert "100/hour" in listed and "600/minute (default)" in listed
    assert ApiKey.objects.get(name="unlimited").rate() is None


def test_the_chat_frontends_key_is_not_rate_limited(
    db: None, settings: Any, tmp_path: Path
) -> None:
    """The chat limits each person itself; a default meant for scripts must not throttle it."""
    settings.ASSISTANTS_KEY = ""
    settings.ASSISTANTS_KEY_FILE = tmp_path / "frontend-engine.key"
    settings.API_RATE_LIMIT = "10/minute"
    call_command("issue_frontend_key", stdout=io.StringIO())
    key = ApiKey.objects.get(key_hash=ApiKey.hash(settings.ASSISTANTS_KEY_FILE.read_text().strip()))
    assert key.rate_limit == "none" and key.rate() is None
    # A key issued before rate limits existed gets "none" on the next start; one an admin
    # limited on purpose keeps its rate.
    key.rate_limit = ""
    key.save()
    call_command("issue_frontend_key", stdout=io.StringIO())
    key.refresh_from_db()
    assert key.rate_limit == "none"
    key.rate_limit = "100/second"
    key.save()
    call_command("issue_frontend_key", stdout=io.StringIO())
    key.refresh_from_db()
    assert key.rate_limit == "100/second"
