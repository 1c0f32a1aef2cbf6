"""Fixtures: ``serve(store, **settings)`` builds the app of ``apps.py`` on a store (closing its
``Sessions`` afterwards) and returns it; tests drive it through Flask's own test client. The
project's ``store`` fixture gives every store of the matrix; ``clock`` is the fake clock it uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest
from flask.testing import FlaskClient

from coatcheck.testing import FakeClock
from tests.integrations.flask.apps import Gate, build

Serve = Callable[..., flask.Flask]
COOKIE = "session"  # Flask's SESSION_COOKIE_NAME


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
def serve(clock: FakeClock, gate: Gate) -> Iterator[Serve]:
    closing: list[Any] = []

    def start(store: object, **settings: Any) -> flask.Flask:
        app, sessions = build(store, clock, gate, **settings)
        closing.append(sessions)
        return app

    yield start
    for sessions in closing:
        sessions.close()


def session_id(client: FlaskClient) -> str | None:
    """The session cookie the client holds, if any."""
    cookie = client.get_cookie(COOKIE)
    return None if cookie is None else cookie.value


def client_with(app: flask.Flask, sid: str | None) -> FlaskClient:
    """A new test client (a browser of its own) holding session cookie ``sid``."""
    client = app.test_client()
    if sid is not None:
        client.set_cookie(COOKIE, sid)
    return client
