"""Admins create engine keys in Django admin: shown once, stored hashed, revocable."""

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from engine.api.access import project_for_key
from engine.models import ApiKey, Project


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
