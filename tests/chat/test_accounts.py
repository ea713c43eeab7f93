"""Signing in and out, and self sign-up (off unless the setting turns it on)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.chat.conftest import ChatClient, ChatServer
from tests.servers import ThreadlineServer, start_chat_server


def test_pages_need_signing_in(chat_server: ChatServer) -> None:
    visitor = ChatClient(chat_server.url)
    try:
        response = visitor.get("/")
        assert response.status_code == 302
        assert response.headers["location"] == "/accounts/login/?next=/"
        login = visitor.get("/accounts/login/")
        assert 'name="username"' in login.text and "Create one" not in login.text
    finally:
        visitor.close()


def test_wrong_password_is_refused_with_a_message(chat_server: ChatServer) -> None:
    visitor = ChatClient(chat_server.url)
    try:
        visitor.get("/accounts/login/")
        response = visitor.http.post(
            "/accounts/login/",
            data={
                "username": "owner",
                "password": "wrong",
                "csrfmiddlewaretoken": visitor.http.cookies["csrftoken"],
            },
        )
        assert response.status_code == 200
        assert "Please enter a correct username and password" in response.text
    finally:
        visitor.close()


def test_sign_out_is_a_post(owner: ChatClient) -> None:
    assert owner.get("/accounts/logout/").status_code == 405
    response = owner.post("/accounts/logout/")
    assert response.status_code == 302 and response.headers["location"] == "/accounts/login/"
    assert owner.get("/").status_code == 302


def test_sign_up_is_off_by_default(chat_server: ChatServer) -> None:
    visitor = ChatClient(chat_server.url)
    try:
        assert visitor.get("/accounts/signup/").status_code == 404
    finally:
        visitor.close()


@pytest.fixture(scope="module")
def open_server() -> Iterator[ThreadlineServer]:
    server = start_chat_server({"THREADLINE_SIGNUP": "1"})
    yield server
    server.stop()


def test_sign_up_when_turned_on(open_server: ThreadlineServer) -> None:
    visitor = ChatClient(open_server.url)
    try:
        assert "Create one" in visitor.get("/accounts/login/").text
        visitor.get("/accounts/signup/")
        response = visitor.http.post(
            "/accounts/signup/",
            data={
                "username": "newcomer",
                "password1": "a-fine-long-password-9",
                "password2": "a-fine-long-password-9",
                "csrfmiddlewaretoken": visitor.http.cookies["csrftoken"],
            },
        )
        assert response.status_code == 302 and response.headers["location"] == "/"
        assert "newcomer" in visitor.get("/").text
    finally:
        visitor.close()
