"""Settings: Flask's ``SESSION_COOKIE_*`` and coatcheck's ``COATCHECK_*`` read in one place when
``init_app`` runs (a bad value or an unreachable store fails there), the secure default, the
``Partitioned`` attribute, settings changed after ``init_app``, and the extension's API."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import flask
import pytest

import coatcheck.flask
from coatcheck import ConfigurationError, MiddlewareNotInstalledError, StoreUnavailableError
from coatcheck.flask import Sessions, get_session, read_settings
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.integrations.flask.conftest import Serve


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def cookie_of(app: flask.Flask, url: str = "/set?k=a&v=1", base_url: str = "http://localhost") -> str:
    [set_cookie] = app.test_client().post(url, base_url=base_url).headers.get_all("Set-Cookie")
    return set_cookie


def test_flasks_defaults_give_coatchecks_secure_cookie(serve: Serve, memory: Any) -> None:
    set_cookie = cookie_of(serve(memory))
    assert set_cookie.startswith("session=")  # Flask's SESSION_COOKIE_NAME
    assert set_cookie.endswith("; Path=/; Secure; HttpOnly; SameSite=Lax")  # Secure although Flask's default is False


def test_flasks_cookie_settings_are_honoured(serve: Serve, memory: Any) -> None:
    app = serve(
        memory,
        SESSION_COOKIE_NAME="sid",
        SESSION_COOKIE_DOMAIN=".example.com",
        SESSION_COOKIE_PATH="/app",
        SESSION_COOKIE_HTTPONLY=False,
        SESSION_COOKIE_SAMESITE="Strict",
    )
    set_cookie = cookie_of(app, base_url="https://www.example.com")
    assert set_cookie.partition("=")[0] == "sid"
    assert set_cookie.endswith("; Path=/app; Domain=example.com; Secure; SameSite=Strict")


def test_the_path_falls_back_to_application_root(serve: Serve, memory: Any) -> None:
    assert "; Path=/shop;" in cookie_of(serve(memory, APPLICATION_ROOT="/shop"))


@pytest.mark.parametrize(("choice", "http", "https"), [("auto", False, True), (False, False, False), (True, True, True)])
def test_coatcheck_cookie_secure_is_the_explicit_choice(serve: Serve, memory: Any, choice: Any, http: bool, https: bool) -> None:
    app = serve(memory, COATCHECK_COOKIE_SECURE=choice)
    assert ("; Secure" in cookie_of(app, base_url="http://localhost")) is http
    assert ("; Secure" in cookie_of(app, base_url="https://localhost")) is https


def test_partitioned_is_sent_on_setting_and_on_clearing_the_cookie(serve: Serve, memory: Any) -> None:
    client = serve(memory, SESSION_COOKIE_PARTITIONED=True, SESSION_COOKIE_SAMESITE="None").test_client()
    [created] = client.post("/set?k=a&v=1").headers.get_all("Set-Cookie")
    assert created.endswith("; Secure; HttpOnly; SameSite=None; Partitioned")
    [cleared] = client.post("/logout").headers.get_all("Set-Cookie")
    assert cleared.startswith("session=; Max-Age=0;") and cleared.endswith("; Partitioned")


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"SESSION_COOKIE_SAMESITE": "sometimes"}, "SESSION_COOKIE_SAMESITE must be 'Strict', 'Lax', 'None' or None"),
        ({"SESSION_COOKIE_NAME": "my session"}, "cookie name 'my session' is not a valid RFC 6265 token"),
        ({"SESSION_COOKIE_HTTPONLY": "yes"}, "SESSION_COOKIE_HTTPONLY must be True or False, not 'yes'"),
        ({"SESSION_COOKIE_SECURE": True, "COATCHECK_COOKIE_SECURE": "auto"}, "SESSION_COOKIE_SECURE = True contradicts"),
        ({"SESSION_COOKIE_PARTITIONED": True, "COATCHECK_COOKIE_SECURE": "auto"}, "PARTITIONED = True needs a Secure cookie"),
        ({"SESSION_COOKIE_NAME": "__Host-sid", "SESSION_COOKIE_PATH": "/app"}, "a '__Host-' cookie needs"),
        ({"PERMANENT_SESSION_LIFETIME": 0}, "PERMANENT_SESSION_LIFETIME must be a timedelta or seconds"),
        ({"COATCHECK_IDLE_TIMEOUT": timedelta(days=1)}, "idle_timeout cannot be longer than absolute_timeout"),
        ({"COATCHECK_MAX_SIZE": "big"}, "max_size must be an int"),
        ({"COATCHECK_SAVE_ON_SERVER_ERROR": "yes"}, "COATCHECK_SAVE_ON_SERVER_ERROR must be True or False"),
        ({"COATCHECK_IDLE_TIMOUT": 60}, "unknown setting COATCHECK_IDLE_TIMOUT"),
        ({"COATCHECK_STORE": "nosuch://x"}, "unknown store URL scheme 'nosuch'"),
    ],
)
def test_a_bad_setting_fails_in_init_app(memory: Any, settings: dict[str, Any], message: str) -> None:
    app = flask.Flask(__name__)
    app.config.update({"COATCHECK_STORE": memory, **settings})
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace("*", r"\*")):
        Sessions(app)
    assert "coatcheck" not in app.extensions


def test_an_unreachable_store_fails_in_init_app() -> None:
    app = flask.Flask(__name__)
    app.config["COATCHECK_STORE"] = "redis://127.0.0.1:9/0?socket_timeout=1"  # the discard port: nothing listens
    with pytest.raises(StoreUnavailableError):
        Sessions(app)


def test_a_setting_changed_after_init_app_is_read_at_the_next_request(serve: Serve, memory: Any) -> None:
    app = serve(memory)
    assert cookie_of(app).startswith("session=")
    app.config["SESSION_COOKIE_NAME"] = "sid"
    assert cookie_of(app).startswith("sid=")
    app.config["SESSION_COOKIE_SAMESITE"] = "sometimes"
    with pytest.raises(ConfigurationError, match="SESSION_COOKIE_SAMESITE"):
        app.test_client().get("/public")
    app.config["SESSION_COOKIE_SAMESITE"] = "Strict"
    assert cookie_of(app).endswith("SameSite=Strict")
    app.config["COATCHECK_STORE"] = MemoryStore()
    with pytest.raises(ConfigurationError, match="COATCHECK_STORE changed after init_app"):
        app.test_client().get("/public")


class _Incomparable:
    """A config value whose ``==`` cannot answer, as a NumPy array's cannot."""

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value of this comparison is ambiguous")

    __hash__ = None  # type: ignore[assignment]


def test_settings_are_read_again_whatever_else_in_the_config_changes(serve: Serve, memory: Any) -> None:
    """Each request compares the app's whole config with a copy: a change elsewhere in it, even
    to a value that cannot be compared, neither fails the request nor hides a change of
    coatcheck's settings (a setting deleted reads as not set)."""
    app = serve(memory)
    app.config["UNRELATED"] = _Incomparable()
    assert cookie_of(app).startswith("session=")
    app.config["UNRELATED"] = _Incomparable()  # another object: the comparison raises
    assert cookie_of(app).startswith("session=")
    app.config["SESSION_COOKIE_NAME"] = "sid"
    assert cookie_of(app).startswith("sid=")
    assert cookie_of(app).startswith("sid=")  # the copy was refreshed
    app.config["COATCHECK_COOKIE_SECURE"] = True
    assert "; Secure" in cookie_of(app)
    del app.config["COATCHECK_COOKIE_SECURE"]  # back to the default: Secure on http://localhost too
    app.config["SESSION_COOKIE_SECURE"] = False
    assert "; Secure" in cookie_of(app)


def test_init_app_installs_on_several_apps_and_finds_each_manager(memory: Any, clock: FakeClock) -> None:
    sessions = Sessions(clock=clock, purge_interval=None)
    first, second = flask.Flask("first"), flask.Flask("second")
    for app in (first, second):
        app.config["COATCHECK_STORE"] = memory
        sessions.init_app(app)
    with second.app_context():
        assert sessions.manager is sessions.get_manager(second)
    assert sessions.get_manager(first) is not sessions.get_manager(second)
    with pytest.raises(RuntimeError, match="pass the app"):
        sessions.manager  # noqa: B018 - no app context, two apps
    with pytest.raises(ConfigurationError, match="already installed"):
        sessions.init_app(first)
    with pytest.raises(MiddlewareNotInstalledError):
        Sessions().get_manager(first)


def test_read_settings_is_the_one_place(memory: Any) -> None:
    app = flask.Flask(__name__)
    app.config.update(COATCHECK_STORE=memory, COATCHECK_IDLE_TIMEOUT=300, PERMANENT_SESSION_LIFETIME=3600)
    settings = read_settings(app)
    assert settings.store is memory
    assert settings.config.idle_seconds == 300
    assert settings.config.cookie.name == "session"
    assert settings.permanent_lifetime == 3600
    assert settings.refresh_each_request is True


def test_get_session_without_sessions_says_how_to_install_it() -> None:
    app = flask.Flask(__name__)
    app.secret_key = "test"
    with app.test_request_context(), pytest.raises(MiddlewareNotInstalledError, match=r"install coatcheck\.flask\.Sessions"):
        get_session()


def test_a_url_store_is_closed_by_close(tmp_path: Any) -> None:
    app = flask.Flask(__name__)
    app.config["COATCHECK_STORE"] = f"sqlite:///{tmp_path}/sessions.db"
    sessions = Sessions(app)
    client = app.test_client()
    client.post("/nowhere")  # a 404 starts the expirer all the same
    expirer = app.extensions["coatcheck"].expirer
    assert expirer is not None and expirer.running
    sessions.close()
    assert not expirer.running


def test_devices_and_encryption_settings_reach_the_manager(memory: Any) -> None:
    app = flask.Flask(__name__)
    app.config.update(COATCHECK_STORE=memory, COATCHECK_DEVICES=True, COATCHECK_ENCRYPTION_KEYS=["s" * 32])
    sessions = Sessions(app, purge_interval=None)

    @app.post("/login")
    def login() -> str:
        get_session().login("alice")
        flask.session["secret"] = "kept sealed"
        return "ok"

    client = app.test_client()
    client.post(
        "/login",
        headers={"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"},
        environ_base={"REMOTE_ADDR": "203.0.113.9"},
    )
    [listed] = sessions.manager.list_sessions("alice")
    assert (listed.browser, listed.os, listed.address) == ("Firefox", "Linux", "203.0.113.0/24")
    [(_, record)] = memory.list_user("alice")
    assert b"kept sealed" not in record.data


def test_a_setting_written_while_the_settings_are_read_again_is_read_at_the_next_request(
    serve: Serve, memory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another thread's write that lands after the settings were compared is not hidden by the
    copy of the config kept for the next comparison: the copy is taken first."""
    app = serve(memory)
    assert cookie_of(app).startswith("session=")
    app.config["UNRELATED"] = 1  # the next request compares coatcheck's settings
    read = coatcheck.flask._snapshot

    def read_then_another_thread_writes(config: Any) -> tuple[Any, ...]:
        seen = read(config)
        monkeypatch.setattr(coatcheck.flask, "_snapshot", read)
        app.config["SESSION_COOKIE_NAME"] = "sid"
        return seen

    monkeypatch.setattr(coatcheck.flask, "_snapshot", read_then_another_thread_writes)
    assert cookie_of(app).startswith("session=")  # read before the write
    assert cookie_of(app).startswith("sid=")


def test_the_commit_is_judged_by_the_settings_the_session_was_loaded_with(memory: Any, clock: FakeClock) -> None:
    """A request whose view changes a setting (and so rebuilds the manager) is committed, or not,
    by the manager that loaded its session: here its shorter touch interval moves the expiry, and
    that manager's subscriber hears it."""
    app = flask.Flask(__name__)
    app.config.update(COATCHECK_STORE=memory, COATCHECK_TOUCH_INTERVAL=60, COATCHECK_IDLE_TIMEOUT=1800)
    sessions = Sessions(app, clock=clock, purge_interval=None)
    heard: list[object] = []
    sessions.manager.events.on_commit(lambda event: heard.append(event.detail))

    @app.post("/set")
    def set_value() -> str:
        flask.session["a"] = 1
        return "ok"

    @app.get("/read")
    def read() -> str:
        flask.session.get("a")
        app.config["COATCHECK_TOUCH_INTERVAL"] = 600
        assert sessions.manager is not None  # rebuilds the settings in the middle of the request
        return "ok"

    client = app.test_client()
    client.post("/set", base_url="https://localhost")
    clock.advance(120)  # past the loading settings' touch interval, not the new ones'
    heard.clear()
    client.get("/read", base_url="https://localhost")
    assert heard == ["touched"]
    cookie = client.get_cookie("session")
    assert cookie is not None
    session = sessions.manager.load(f"session={cookie.value}")
    assert session.expires_at == clock() + 1800


def test_subscribers_and_the_store_observer_stay_on_when_the_settings_change(memory: Any, clock: FakeClock) -> None:
    app = flask.Flask(__name__)
    app.config.update(COATCHECK_STORE=memory)
    sessions = Sessions(app, clock=clock, purge_interval=None)
    heard: list[str] = []
    seen_ops: list[str] = []
    sessions.manager.events.on_login(lambda event: heard.append(event.kind))
    sessions.manager.observe = lambda op, seconds, error: seen_ops.append(type(op).__name__)

    @app.post("/login")
    def login() -> str:
        flask.session.login("alice")  # type: ignore[attr-defined]
        return "ok"

    app.config["COATCHECK_TOUCH_INTERVAL"] = 120  # the settings are rebuilt at the next request
    app.test_client().post("/login", base_url="https://localhost")
    assert sessions.manager.config.touch_interval == 120
    assert heard == ["login"]
    assert "Save" in seen_ops
