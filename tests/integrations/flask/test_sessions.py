"""``flask.session`` through ``Sessions(app)`` and Flask's own test client, on every store of the
matrix (memory, SQLite, Redis, Redis Cluster, PostgreSQL, MariaDB): laziness, strict mode,
rotation on login, logout (coatcheck's and Flask's ``session.clear()``), idle and absolute
timeouts, per-key merge of concurrent requests, "log out everywhere", ``flash()`` and a template
reading ``session``, and Flask's tagged types coming back from the store."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import pytest

from coatcheck import _codec
from coatcheck._ids import new_session_id, store_key
from coatcheck.stores import Record
from coatcheck.testing import FakeClock
from tests.backends import dump
from tests.integrations.flask.apps import TAGGED
from tests.integrations.flask.conftest import Serve, client_with, session_id

pytestmark = pytest.mark.usefixtures("anyio_backend")  # runs the project's async store fixture


def peek(client: Any) -> Any:
    response = client.get("/peek")
    assert response.status_code == 200, response.text
    return response.json


async def test_a_request_that_does_not_write_sets_no_cookie_and_stores_nothing(serve: Serve, store: Any) -> None:
    client = serve(store).test_client()
    public = client.get("/public")
    assert public.status_code == 200
    assert "Set-Cookie" not in public.headers
    assert "Vary" not in public.headers  # the session was not used
    read = client.get("/peek")
    assert read.json == {"data": {}, "user": None}
    assert "Set-Cookie" not in read.headers
    assert read.headers["Vary"] == "Cookie"  # the answer depended on the (absent) cookie
    assert await dump(store) == b""
    assert client.post("/set?k=a&v=1").headers.get_all("Set-Cookie")[0].startswith("session=")
    assert "Set-Cookie" not in client.get("/peek").headers  # reading a stored session writes no cookie


async def test_an_unknown_session_id_is_never_adopted(serve: Serve, store: Any) -> None:
    app = serve(store)
    planted = new_session_id()
    client = client_with(app, planted)
    assert peek(client) == {"data": {}, "user": None}
    client.post("/set?k=a&v=1")
    assert session_id(client) not in (None, planted)
    assert peek(client_with(app, planted)) == {"data": {}, "user": None}
    assert peek(client) == {"data": {"a": "1"}, "user": None}


@pytest.mark.parametrize("created", [b"1" + b"0" * 400, b"1e400", b"NaN"])
async def test_a_record_whose_creation_time_is_not_a_finite_number_reads_as_no_session(
    serve: Serve, store: Any, created: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_codec, "fast_json", None)  # the standard library's JSON, as without the fast extra
    client = serve(store).test_client()
    client.post("/set?k=a&v=1")
    sid = session_id(client)
    assert sid is not None
    key = store_key(sid)
    record = store.load(key)
    corrupt = Record(b'{"v":"flask/1","c":' + created + b',"d":{"a":"1"}}', record.expires_at, record.version + 1, None)
    assert store.save(key, corrupt, expected_version=record.version)
    assert peek(client) == {"data": {}, "user": None}  # a fresh session: no 500, no session that never expires


async def test_login_rotates_the_id_and_keeps_the_data(serve: Serve, store: Any) -> None:
    app = serve(store)
    client = app.test_client()
    client.post("/set?k=cart&v=3 apples")
    anonymous = session_id(client)
    assert client.post("/login?user=alice").status_code == 200
    assert session_id(client) not in (None, anonymous)
    assert peek(client) == {"data": {"cart": "3 apples"}, "user": "alice"}
    assert peek(client_with(app, anonymous)) == {"data": {}, "user": None}  # the old ID died at once


@pytest.mark.parametrize("way", ["logout", "clear"])
async def test_logout_deletes_the_session_and_clears_the_cookie(serve: Serve, store: Any, way: str) -> None:
    app = serve(store)
    client = app.test_client()
    client.post("/login?user=alice")
    client.post("/set?k=secret&v=s3cr3t")
    old = session_id(client)
    response = client.post(f"/{way}")
    [set_cookie] = response.headers.get_all("Set-Cookie")
    assert set_cookie.startswith("session=; Max-Age=0;")
    assert session_id(client) is None
    assert client.get("/whoami").text == "anon"
    assert peek(client_with(app, old)) == {"data": {}, "user": None}
    assert b"s3cr3t" not in await dump(store)  # the record is gone, not just unreachable


async def test_clear_then_flash_starts_a_new_session(serve: Serve, store: Any) -> None:
    app = serve(store)
    client = app.test_client()
    client.post("/login?user=alice")
    old = session_id(client)
    client.post("/clear?m=You are logged out")  # Flask's idiom: clear, then say goodbye
    assert session_id(client) not in (None, old)
    page = client.get("/page").text
    assert '<p class="flash">You are logged out</p>' in page and "user: anon" in page
    assert client.get("/whoami").text == "anon"
    assert peek(client_with(app, old)) == {"data": {}, "user": None}


async def test_sessions_end_after_the_idle_timeout(serve: Serve, store: Any, clock: FakeClock) -> None:
    client = serve(store, COATCHECK_IDLE_TIMEOUT=timedelta(minutes=10)).test_client()
    client.post("/login?user=alice")
    clock.advance(9 * 60)
    assert client.get("/whoami").text == "alice"  # and the idle expiry slides
    clock.advance(9 * 60)
    assert client.get("/whoami").text == "alice"
    clock.advance(10 * 60 + 1)
    assert client.get("/whoami").text == "anon"


async def test_sessions_end_at_the_absolute_timeout_however_active(serve: Serve, store: Any, clock: FakeClock) -> None:
    client = serve(store, COATCHECK_IDLE_TIMEOUT=600, COATCHECK_ABSOLUTE_TIMEOUT=1800).test_client()
    client.post("/login?user=alice")
    for _ in range(3):
        clock.advance(9 * 60)
        assert client.get("/whoami").text == "alice"
    clock.advance(4 * 60)  # 31 minutes after the login
    assert client.get("/whoami").text == "anon"


async def test_concurrent_requests_changing_different_keys_both_persist(serve: Serve, store: Any) -> None:
    app = serve(store)
    client = app.test_client()
    client.post("/set?k=base&v=0")
    sid = session_id(client)
    tabs = [client_with(app, sid), client_with(app, sid)]  # two tabs of one browser, each in a thread

    def held(tab: int) -> int:
        return tabs[tab].post(f"/hold?k=tab{tab}&v={tab}").status_code

    with ThreadPoolExecutor(max_workers=2) as pool:  # both load, then both commit: the second merges
        assert list(pool.map(held, [0, 1])) == [200, 200]
    assert peek(client) == {"data": {"base": "0", "tab0": "0", "tab1": "1"}, "user": None}


async def test_revoke_user_logs_out_every_session_of_the_user(serve: Serve, store: Any) -> None:
    app = serve(store)
    laptop, phone, bob = app.test_client(), app.test_client(), app.test_client()
    for client, user in ((laptop, "alice"), (phone, "alice"), (bob, "bob")):
        client.post(f"/login?user={user}")
    assert phone.post("/revoke?user=alice").text == "2"
    assert laptop.get("/whoami").text == "anon"
    assert phone.get("/whoami").text == "anon"
    assert bob.get("/whoami").text == "bob"


async def test_flash_and_a_template_reading_the_session(serve: Serve, store: Any) -> None:
    client = serve(store).test_client()
    client.post("/flash?m=<b>saved</b>&name=Ada")
    page = client.get("/page")
    assert '<p class="flash">&lt;b&gt;saved&lt;/b&gt;</p>' in page.text  # autoescaped, as in Flask
    assert "name: Ada, user: anon" in page.text
    assert page.headers["Vary"] == "Cookie"
    again = client.get("/page").text
    assert "flash" not in again and "name: Ada" in again  # a flashed message shows once


async def test_flashes_alone_leave_no_session_behind(serve: Serve, store: Any) -> None:
    client = serve(store).test_client()
    client.post("/flash?m=hello")
    assert "hello" in client.get("/page").text  # reading the message empties the session
    assert session_id(client) is None
    assert await dump(store) == b""


async def test_flasks_tagged_types_come_back_from_the_store(serve: Serve, store: Any) -> None:
    app = serve(store)
    client = app.test_client()
    client.post("/tagged")
    assert client.get("/tagged").json == dict.fromkeys(TAGGED, True)
    assert client_with(app, session_id(client)).get("/tagged").json == dict.fromkeys(TAGGED, True)
