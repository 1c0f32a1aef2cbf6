"""Switching a Flask app to coatcheck: ``COATCHECK_LEGACY`` adopts the sessions of Flask's own
signed cookie (the app's ``SECRET_KEY`` and ``SECRET_KEY_FALLBACKS``, its tagged types kept) and
of Flask-Session 0.8 (Redis and SQLAlchemy, msgspec records), each made by the real package;
forged, expired, replayed and pickled ones adopt nothing."""

from __future__ import annotations

import logging
import pickle
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import flask
import pytest
import sqlalchemy
from flask.sessions import SecureCookieSessionInterface
from flask.testing import FlaskClient
from itsdangerous import Signer

from coatcheck import legacy
from coatcheck.testing import FakeClock
from tests.integrations.flask.apps import TAGGED, same
from tests.integrations.flask.conftest import COOKIE, Serve, client_with, session_id
from tests.legacy.helpers import emptied_redis

pytestmark = pytest.mark.server
OLD_SECRET = "the-secret-the-app-had"
FLASK_SESSION_REDIS = "redis://127.0.0.1:6379/8"


def old_app(**config: Any) -> flask.Flask:
    """The app before the switch: Flask's own session (or Flask-Session, by ``config``)."""
    app = flask.Flask("before")
    app.config.update(TESTING=True, SECRET_KEY=OLD_SECRET, **config)

    @app.post("/tagged")
    def tagged() -> str:
        flask.session.update(TAGGED)
        flask.session["user"] = "42"
        return "ok"

    @app.post("/set")
    def set_value() -> str:
        flask.session["cart"] = [1, 2]
        flask.session["user"] = "42"
        return "ok"

    return app


def legacy_cookie(client: FlaskClient, path: str = "/tagged") -> str:
    assert client.post(path).status_code == 200
    cookie = client.get_cookie(COOKIE)
    assert cookie is not None
    return cookie.value


def test_flask_cookie_adopted_with_its_types(serve: Serve) -> None:
    before = old_app()
    value = legacy_cookie(before.test_client())
    interface = before.session_interface
    assert isinstance(interface, SecureCookieSessionInterface)
    serializer = interface.get_signing_serializer(before)
    assert serializer is not None
    expected = serializer.loads(value)  # what the old app itself read back (Flask's datetimes are UTC, to the second)
    app = serve("memory://", SECRET_KEY=OLD_SECRET, COATCHECK_LEGACY=[legacy.flask_cookie(user_key="user")])

    @app.get("/as-before")
    def as_before() -> Any:
        return {key: same(flask.session.get(key), value) for key, value in expected.items()}

    returning = client_with(app, value)
    assert returning.get("/as-before").get_json() == dict.fromkeys(expected, True)  # tuple, bytes, Markup, UUID, datetime
    assert returning.get("/whoami").text == "42"
    new_id = session_id(returning)
    assert new_id is not None and new_id != value and len(new_id) == 43  # the same cookie name, now coatcheck's ID
    assert returning.get("/as-before").get_json() == dict.fromkeys(expected, True)  # and stored that way


def test_flask_cookie_signed_with_a_fallback_key(serve: Serve) -> None:
    value = legacy_cookie(old_app().test_client(), "/set")
    app = serve(
        "memory://", SECRET_KEY="a-new-secret", SECRET_KEY_FALLBACKS=[OLD_SECRET], COATCHECK_LEGACY=[legacy.flask_cookie()]
    )
    assert client_with(app, value).get("/peek").get_json()["data"]["cart"] == [1, 2]


def test_flask_cookie_forged_expired_or_replayed(serve: Serve, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    value = legacy_cookie(old_app().test_client(), "/set")
    app = serve("memory://", SECRET_KEY=OLD_SECRET, COATCHECK_LEGACY=[legacy.flask_cookie()])
    forged = value[:-2] + ("AA" if not value.endswith("AA") else "BB")
    assert client_with(app, forged).get("/peek").get_json()["data"] == {}
    with monkeypatch.context() as past:  # a cookie signed 32 days ago, past PERMANENT_SESSION_LIFETIME
        past.setattr("itsdangerous.timed.TimestampSigner.get_timestamp", lambda self: int(time.time()) - 32 * 86400)
        expired = legacy_cookie(old_app().test_client(), "/set")
    assert client_with(app, expired).get("/peek").get_json()["data"] == {}
    assert client_with(app, value).get("/peek").get_json()["data"]["cart"] == [1, 2]
    clock.advance(60)
    assert client_with(app, value).get("/peek").get_json()["data"] == {}  # a copy replayed later


@pytest.fixture
def flask_session_redis() -> Iterator[Any]:
    with emptied_redis(FLASK_SESSION_REDIS) as client:
        yield client


def test_flask_session_redis_adopted_once(serve: Serve, flask_session_redis: Any) -> None:
    from flask_session import Session as FlaskSession

    before = old_app(SESSION_TYPE="redis", SESSION_REDIS=flask_session_redis)
    FlaskSession(before)
    value = legacy_cookie(before.test_client(), "/set")
    assert flask_session_redis.exists(f"session:{value}")
    reader = legacy.flask_session(redis=FLASK_SESSION_REDIS, user_key="user")
    app = serve("memory://", COATCHECK_LEGACY=[reader])
    returning = client_with(app, value)
    assert returning.get("/peek").get_json() == {"data": {"cart": [1, 2], "user": "42", "_permanent": True}, "user": "42"}
    assert not flask_session_redis.exists(f"session:{value}")  # the legacy record is deleted
    assert session_id(returning) != value


def test_flask_session_pickled_record_is_never_loaded(
    serve: Serve, flask_session_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Boom:
        def __reduce__(self) -> Any:
            return (pytest.fail, ("the pickled legacy record was unpickled",))

    flask_session_redis.set("session:pickled-sid", pickle.dumps({"a": Boom()}))
    app = serve("memory://", COATCHECK_LEGACY=[legacy.flask_session(redis=FLASK_SESSION_REDIS)])
    with caplog.at_level(logging.INFO):
        assert client_with(app, "pickled-sid").get("/peek").get_json()["data"] == {}
    assert "pickle" in caplog.text
    assert flask_session_redis.exists("session:pickled-sid")  # left as it is


def test_flask_session_sqlalchemy_adopted(serve: Serve, tmp_path: Path, clock: FakeClock) -> None:
    from flask_session import Session as FlaskSession
    from flask_sqlalchemy import SQLAlchemy

    url = f"sqlite:///{tmp_path / 'old.db'}"
    before = old_app(SESSION_TYPE="sqlalchemy", SQLALCHEMY_DATABASE_URI=url)
    before.config["SESSION_SQLALCHEMY"] = SQLAlchemy(before)
    FlaskSession(before)
    value = legacy_cookie(before.test_client(), "/set")
    reader = legacy.flask_session(sqlalchemy=url, user_key="user")
    app = serve("memory://", COATCHECK_LEGACY=[reader])
    assert client_with(app, value).get("/whoami").text == "42"
    with sqlalchemy.create_engine(url).connect() as conn:  # the legacy row is deleted
        assert conn.execute(sqlalchemy.text("SELECT count(*) FROM sessions")).scalar() == 0
    assert client_with(app, value).get("/whoami").text == "42"  # within the grace: a request sent at once
    clock.advance(60)
    assert client_with(app, value).get("/whoami").text == "anon"  # a copy replayed later


def test_migrate_sessions_command(
    serve: Serve, flask_session_redis: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``coatcheck migrate-sessions``: counts what is left, adopts it offline with a progress
    report, and each browser then gets its session on its next request."""
    from flask_session import Session as FlaskSession

    from coatcheck.cli import main

    before = old_app(SESSION_TYPE="redis", SESSION_REDIS=flask_session_redis)
    FlaskSession(before)
    values = [legacy_cookie(before.test_client(), "/set") for _ in range(3)]
    store = f"sqlite:///{tmp_path / 'sessions.db'}"
    command = ["migrate-sessions", "--from", "flask-session-redis", "--legacy-url", FLASK_SESSION_REDIS, "--store", store]
    command += ["--user-key", "user"]
    assert main(command) == 0
    assert capsys.readouterr().out.startswith("3 legacy sessions left in flask-session-redis")
    assert main([*command, "--adopt"]) == 0
    report = capsys.readouterr()
    assert report.out.startswith("adopted 3 of 3 legacy sessions") and "100% 3/3" in report.err
    assert main(command) == 0 and capsys.readouterr().out.startswith("0 legacy sessions left")
    app = serve(store, COATCHECK_LEGACY=[legacy.flask_session(redis=FLASK_SESSION_REDIS, user_key="user")])
    for value in values:
        assert client_with(app, value).get("/whoami").text == "42"


def test_flask_session_signed_ids_forged_or_unknown(serve: Serve, flask_session_redis: Any, clock: FakeClock) -> None:
    """With ``SESSION_USE_SIGNER``, the cookie is the signed ID: a bad signature, or a signed ID
    the store does not hold, adopts nothing; a good one is adopted once."""
    from flask_session import Session as FlaskSession

    before = old_app(SESSION_TYPE="redis", SESSION_REDIS=flask_session_redis, SESSION_USE_SIGNER=True)
    with pytest.warns(DeprecationWarning, match="use_signer"):  # Flask-Session 0.8 deprecates it; apps still have it
        FlaskSession(before)
    value = legacy_cookie(before.test_client(), "/set")
    reader = legacy.flask_session(redis=FLASK_SESSION_REDIS, use_signer=True, secret_key=OLD_SECRET, user_key="user")
    app = serve("memory://", COATCHECK_LEGACY=[reader])
    sid, _, signature = value.rpartition(".")
    assert client_with(app, f"{sid}.{signature[::-1]}").get("/whoami").text == "anon"
    unknown = Signer(OLD_SECRET, salt="flask-session", key_derivation="hmac").sign(sid + "x").decode()  # as Flask-Session signs
    assert client_with(app, unknown).get("/whoami").text == "anon"
    assert client_with(app, value).get("/whoami").text == "42"
    clock.advance(60)
    assert client_with(app, value).get("/whoami").text == "anon"
