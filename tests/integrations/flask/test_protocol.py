"""Flask's session protocol and coatcheck's HTTP rules through ``Sessions(app)``, on the memory
store: ``permanent`` and the cookie's lifetime, refreshes, ``new``/``modified``/``accessed``, the
response headers (one ``Set-Cookie``, one ``Vary``, the caching rules), 5xx, and a failing store
answered 503 without a traceback, while loading and while saving."""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import flask
import pytest

from coatcheck import SessionValueError
from coatcheck.flask import FlaskSession, get_session
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock
from tests.apps import FlakyStore
from tests.integrations.flask.conftest import Serve, session_id


@pytest.fixture
def memory(clock: FakeClock) -> MemoryStore:
    return MemoryStore(clock=clock)


def data(client: Any) -> Any:
    """The session data, as ``/peek`` shows it."""
    response = client.get("/peek")
    assert response.status_code == 200 and response.json is not None, response.text
    return response.json["data"]


def max_age(set_cookie: str) -> int | None:
    for part in set_cookie.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "Max-Age":
            return int(value)
    return None


def test_a_permanent_session_gets_a_persistent_cookie_and_any_other_a_browser_session_one(serve: Serve, memory: Any) -> None:
    client = serve(memory, COATCHECK_IDLE_TIMEOUT=600).test_client()
    [browser] = client.post("/permanent?on=0").headers.get_all("Set-Cookie")
    assert max_age(browser) is None and "Expires" not in browser
    [persistent] = client.post("/permanent?on=1").headers.get_all("Set-Cookie")
    assert max_age(persistent) == 600  # the time left server-side: the cookie never outlives the session
    assert session_id(client) is not None


def test_permanent_session_lifetime_caps_the_cookie(serve: Serve, memory: Any) -> None:
    client = serve(memory, PERMANENT_SESSION_LIFETIME=timedelta(minutes=5)).test_client()
    [set_cookie] = client.post("/permanent?on=1").headers.get_all("Set-Cookie")
    assert max_age(set_cookie) == 300


@pytest.mark.parametrize(("permanent", "refresh", "refreshed"), [(True, True, True), (True, False, False), (False, True, False)])
def test_a_refresh_resends_only_a_permanent_cookie(
    serve: Serve, memory: Any, clock: FakeClock, permanent: bool, refresh: bool, refreshed: bool
) -> None:
    client = serve(memory, COATCHECK_IDLE_TIMEOUT=600, SESSION_REFRESH_EACH_REQUEST=refresh).test_client()
    client.post(f"/permanent?on={int(permanent)}")
    assert "Set-Cookie" not in client.get("/public").headers  # the expiry moves at most once a touch interval
    clock.advance(120)
    response = client.get("/public")
    if refreshed:
        [set_cookie] = response.headers.get_all("Set-Cookie")
        assert max_age(set_cookie) == 600
        assert response.headers["Vary"] == "Cookie"
    else:
        assert "Set-Cookie" not in response.headers
    clock.advance(590)  # 12 minutes after the write: alive only because the read refreshed it server-side
    assert data(client) == ({"_permanent": True} if permanent else {}) | {"seen": True}


def test_the_permanent_flag_alone_stores_nothing(serve: Serve, memory: Any) -> None:
    app = serve(memory)

    @app.before_request
    def make_permanent() -> None:
        flask.session.permanent = True  # a common Flask idiom, on every request

    client = app.test_client()
    response = client.get("/public")
    assert "Set-Cookie" not in response.headers
    assert len(memory._records) == 0
    client.post("/set?k=a&v=1")
    assert "Set-Cookie" not in client.get("/public").headers  # set again, to the same: no change
    assert data(client) == {"_permanent": True, "a": "1"}


def test_new_modified_and_accessed_follow_flasks_protocol(serve: Serve, memory: Any) -> None:
    app = serve(memory)
    seen: list[tuple[bool, bool, bool]] = []

    @app.post("/protocol")
    def protocol() -> str:
        session = get_session()
        seen.append((session.new, session.modified, session.accessed))
        session["n"] = session.get("n", 0) + 1
        seen.append((session.new, session.modified, session.accessed))
        if "drop" in flask.request.args:
            session.modified = False  # Flask's way to say "do not save this"
        return "ok"

    client = app.test_client()
    with client:
        client.post("/protocol")
        assert flask.session["n"] == 1  # the session of the request, kept by the client's context
    assert seen == [(True, False, True), (True, True, True)]  # accessed: get_session() is flask.session
    client.post("/protocol?drop=1")
    assert seen[2:] == [(False, False, True), (False, True, True)]
    assert data(client) == {"n": 1}  # the dropped change was not saved
    client.post("/protocol")
    assert data(client) == {"n": 2}


def test_changes_in_place_are_saved_even_inside_a_tuple(serve: Serve, memory: Any) -> None:
    app = serve(memory)

    @app.post("/grow")
    def grow() -> str:
        session = flask.session
        if "box" not in session:
            session["box"] = ([],)
            session["cart"] = []
        else:
            session["box"][0].append(1)  # no session.modified = True needed
            session["cart"].append(("item", 2))
        return "ok"

    client = app.test_client()
    client.post("/grow")
    client.post("/grow")
    with client:
        client.get("/public")
        assert dict(flask.session) == {"box": ([1],), "cart": [("item", 2)]}


def test_a_value_that_would_not_come_back_is_refused_naming_the_key(serve: Serve, memory: Any) -> None:
    app = serve(memory)

    @app.post("/date")
    def store_date() -> str:
        flask.session["when"] = date(2024, 1, 1)  # Flask's cookie session turned it into a str
        return "ok"

    with pytest.raises(SessionValueError, match=r"session\['when'\]: date value"):
        app.test_client().post("/date")


def test_one_set_cookie_one_vary_and_no_store(serve: Serve, memory: Any) -> None:
    app = serve(memory)

    @app.post("/varied")
    def varied() -> flask.Response:
        flask.session["k"] = "v"
        response = flask.Response("ok")
        response.vary.update(("Accept-Encoding", "Accept-Language"))
        return response

    response = app.test_client().post("/varied")
    assert len(response.headers.get_all("Set-Cookie")) == 1
    assert response.headers.get_all("Vary") == ["Accept-Encoding, Accept-Language, Cookie"]
    assert response.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize(
    ("app_vary", "sent"),
    [
        ([], ["Cookie"]),
        (["Accept-Encoding"], ["Accept-Encoding, Cookie"]),
        (["COOKIE"], ["COOKIE"]),
        (["Accept, cookie"], ["Accept, cookie"]),
        (["*"], ["*, Cookie"]),
        ([""], ["Cookie"]),
        (["Accept-Encoding, "], ["Accept-Encoding, Cookie"]),
        (["Accept", "Origin"], ["Accept, Origin, Cookie"]),  # a later Vary header (a CORS layer's) is kept
        (["Accept", "Cookie"], ["Accept", "Cookie"]),
    ],
)
def test_the_response_varies_on_cookie_in_one_vary_header(
    serve: Serve, memory: Any, app_vary: list[str], sent: list[str]
) -> None:
    app = serve(memory)

    @app.get("/vary")
    def vary() -> flask.Response:
        flask.session.get("k")
        response = flask.Response("ok")
        for value in app_vary:
            response.headers.add("Vary", value)
        return response

    assert app.test_client().get("/vary").headers.get_all("Vary") == sent


@pytest.mark.parametrize(
    ("app_cache_control", "sent"),
    [
        ("public, max-age=60", "private, max-age=60"),
        ("private, max-age=60", "private, max-age=60"),
        ("no-cache", "private, no-cache"),
    ],
)
def test_a_response_with_a_session_cookie_is_never_shared_cacheable(
    serve: Serve, memory: Any, app_cache_control: str, sent: str
) -> None:
    response = serve(memory).test_client().get(f"/cached?cc={app_cache_control}")
    assert "Set-Cookie" in response.headers
    assert response.headers.get_all("Cache-Control") == [sent]


def test_changes_made_while_answering_a_server_error_are_not_saved(serve: Serve, memory: Any) -> None:
    client = serve(memory).test_client()
    response = client.get("/fail")
    assert response.status_code == 500
    assert "Set-Cookie" not in response.headers
    assert len(memory._records) == 0


def test_a_session_emptied_while_answering_a_server_error_is_kept(serve: Serve, memory: Any) -> None:
    app = serve(memory)

    @app.post("/empty-and-fail")
    def empty_and_fail() -> tuple[str, int]:
        flask.session.pop("a")
        return "boom", 500

    client = app.test_client()
    client.post("/set?k=a&v=1")
    assert "Set-Cookie" not in client.post("/empty-and-fail").headers
    assert data(client) == {"a": "1"}


def no_traceback(caplog: pytest.LogCaptureFixture) -> list[str]:
    assert all(record.exc_info is None for record in caplog.records)
    return [record.getMessage() for record in caplog.records if record.name == "coatcheck"]


def test_a_store_failing_while_loading_answers_503_without_a_traceback(
    serve: Serve, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(MemoryStore(clock=clock))
    app = serve(store)
    ran: list[str] = []
    app.before_request(lambda: ran.append("hook"))
    client = app.test_client()
    client.post("/set?k=a&v=1")
    store.down = True
    with caplog.at_level(logging.ERROR):
        response = client.get("/peek")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert "Set-Cookie" not in response.headers
    assert ran == ["hook"]  # neither hooks nor the view ran: no anonymous fallback
    assert no_traceback(caplog) == ["session store failure: StoreUnavailableError: store is down (test)"]
    store.down = False
    assert data(client) == {"a": "1"}  # recovered, no restart


def test_a_store_failing_while_saving_answers_503_without_a_traceback(
    serve: Serve, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    store = FlakyStore(MemoryStore(clock=clock))
    app = serve(store)

    @app.after_request
    def fail_the_store(response: flask.Response) -> flask.Response:
        store.down = flask.request.args.get("k") == "b"  # after the load, before the save
        return response

    client = app.test_client()
    client.post("/set?k=a&v=1")

    with caplog.at_level(logging.ERROR):
        response = client.post("/set?k=b&v=2")
    assert response.status_code == 503
    assert response.text == "503 Service Unavailable\n"
    assert "Set-Cookie" not in response.headers
    assert no_traceback(caplog) == ["session store failure: StoreUnavailableError: store is down (test)"]
    store.down = False
    assert data(client) == {"a": "1"}  # the failed request's change was not saved


def test_a_session_is_a_flask_session_everywhere(serve: Serve, memory: Any) -> None:
    app = serve(memory)
    with app.test_request_context():
        assert isinstance(flask.session._get_current_object(), FlaskSession)  # type: ignore[attr-defined]
        assert get_session() is flask.session._get_current_object()  # type: ignore[attr-defined]
    client = app.test_client()
    with client.session_transaction() as session:  # Flask's way to prepare a session in tests
        session["prepared"] = [1]
    assert data(client) == {"prepared": [1]}
