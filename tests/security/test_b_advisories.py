"""Checklist section (b): known CVEs and advisories of session libraries, each attack replayed
against coatcheck. B-2 (weak encryption of cookie sessions) does not apply: coatcheck has no
client-side session store, so it encrypts nothing."""

from __future__ import annotations

import ast
import base64
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import flask
import pytest
from starlette.responses import PlainTextResponse

import coatcheck
from coatcheck import ConfigurationError, CookieConfig, SessionConfig, SessionManager, _codec
from coatcheck._ids import new_session_id, store_key
from coatcheck.asgi import get_session as asgi_session
from coatcheck.stores.memory import MemoryStore
from coatcheck.stores.sqlite import SQLiteStore
from coatcheck.testing import FakeClock, SpyStore
from coatcheck.wsgi import get_session as wsgi_session
from tests.apps import Browser, FlakyStore, set_cookies
from tests.backends import dump
from tests.backends.redis import admin
from tests.security.conftest import (
    PARSE_BOUND,
    bare_request,
    hashed,
    issued_id,
    open_browser,
    pickled_payload,
    plant,
    send_with,
    shared_cacheable,
    stored,
    varies_on_cookie,
)

pytestmark = pytest.mark.anyio

ANON = b'{"data":{},"user":null}'


def files_under(root: Path) -> set[Path]:
    return set(root.rglob("*"))


async def anonymous_peek(browser: Browser, cookie_header: str) -> bool:
    """Whether ``GET /peek`` with exactly this Cookie header sees an empty, anonymous session."""
    return (await bare_request(browser, "GET", "/peek", cookie_header)).body.strip() == ANON


# -- deserialization and crypto ------------------------------------------------------------------------


async def test_b01_cve_2013_7489_beaker_pickled_record_is_never_executed(
    browser: Browser, spy: FlakyStore, clock: FakeClock, tmp_path: Path
) -> None:
    """B-1 (Beaker CVE-2013-7489): a pickle whose ``__reduce__`` runs code, written into the
    store record of a valid ID, is never unpickled."""
    sentinel = tmp_path / "executed"
    session_id = await plant(spy.wrapped, pickled_payload(sentinel), clock() + 600)
    assert await anonymous_peek(browser, f"sessionid={session_id}")
    assert not sentinel.exists()


async def test_b03_cve_2021_33026_pickle_poisoned_into_redis_is_never_loaded(
    kind: str, redis_store: Any, clock: FakeClock, tmp_path: Path
) -> None:
    """B-3 (flask-caching CVE-2021-33026, Flask-Session #29): whoever can write to Redis plants
    a pickle under a session's key, with every field a record has; it is never unpickled."""
    sentinel = tmp_path / "executed"
    session_id = new_session_id()
    fields = {"d": pickled_payload(sentinel), "e": repr(clock() + 600), "v": "1", "c": repr(clock()), "u": "admin"}
    admin(redis_store).hset(redis_store._session_key(store_key(session_id)), mapping=fields)
    async with open_browser(kind, SessionManager(redis_store, clock=clock)) as browser:
        assert await anonymous_peek(browser, f"sessionid={session_id}")
    assert not sentinel.exists()


async def test_b04_cve_2016_3957_pickled_cookie_value_is_never_loaded(browser: Browser, spy: FlakyStore, tmp_path: Path) -> None:
    """B-4 (web2py CVE-2016-3957, pickle.loads of cookie data): a pickle sent as the cookie
    value is never decoded, nor even looked up."""
    sentinel = tmp_path / "executed"
    for encoded in (
        base64.urlsafe_b64encode(pickled_payload(sentinel)).decode(),
        base64.b64encode(pickled_payload(sentinel)).decode(),
    ):
        assert await anonymous_peek(browser, f"sessionid={encoded}")
    assert (spy.calls, sentinel.exists()) == ({}, False)


async def test_b05_cve_2020_9484_an_id_naming_a_planted_file_is_never_read(kind: str, clock: FakeClock, tmp_path: Path) -> None:
    """B-5 (Tomcat CVE-2020-9484, CVE-2025-24813): the attacker uploads a pickle file and sends
    its path as the session ID, against the file-backed SQLite store: no store call, no file
    read or created, nothing executed."""
    sentinel, uploads = tmp_path / "executed", tmp_path / "uploads"
    uploads.mkdir()
    (uploads / "evil.session").write_bytes(pickled_payload(sentinel))
    (tmp_path / "store").mkdir()
    spy = SpyStore(SQLiteStore(tmp_path / "store" / "sessions.db", clock=clock))
    async with open_browser(kind, SessionManager(spy, clock=clock)) as browser:
        await browser.post("/set", params={"k": "a", "v": "1"})
        before, spy.calls = files_under(tmp_path), {}
        for traversal in ["../uploads/evil", "../../uploads/evil.session", str(uploads / "evil.session"), "..\\uploads\\evil"]:
            assert await anonymous_peek(browser, f"sessionid={traversal}")
    outcome = (spy.calls, files_under(tmp_path) - before, sentinel.exists())
    spy.wrapped.close()
    assert outcome == ({}, set(), False)


async def _unsafe_id(browser: Browser, clock: FakeClock) -> None:
    response = await send_with(browser, "GET", "/whoami", "abc\r\nSet-Cookie: evil=1")
    assert (response.text, set_cookies(response)) == ("anon", [])


async def _regenerate_deletes_the_old_session(browser: Browser, clock: FakeClock) -> None:
    old = issued_id(await browser.post("/set", params={"k": "a", "v": "1"}))
    await browser.post("/login", params={"user": "alice"})
    assert await stored(browser.app.manager.store, old) is None


async def _ttl_counts_seconds(browser: Browser, clock: FakeClock) -> None:
    ids = [issued_id(await send_with(browser, "POST", "/set?k=a&v=1", None)) for _ in range(2)]
    clock.advance(59)
    assert (await send_with(browser, "GET", "/peek", ids[0])).json()["data"] == {"a": "1"}
    clock.advance(2)
    assert (await send_with(browser, "GET", "/peek", ids[1])).json()["data"] == {}


async def _server_config_decides_the_lifetime(browser: Browser, clock: FakeClock) -> None:
    session_id = issued_id(await browser.post("/set", params={"k": "a", "v": "1"}))
    clock.advance(50)
    stricter = SessionConfig(idle_timeout=30, absolute_timeout=40, touch_interval=10)  # a redeploy shortened it
    async with open_browser(browser.kind, SessionManager(browser.app.manager.store, config=stricter, clock=clock)) as redeployed:
        assert (await send_with(redeployed, "GET", "/peek", session_id)).json()["data"] == {}


STARSESSIONS_FINDINGS: dict[str, Callable[[Browser, FakeClock], Awaitable[None]]] = {
    "header-unsafe ID accepted": _unsafe_id,
    "regenerate kept the old session": _regenerate_deletes_the_old_session,
    "in-memory TTL in the wrong unit": _ttl_counts_seconds,
    "stored lifetime overrode the server's": _server_config_decides_the_lifetime,
}


@pytest.mark.parametrize("finding", list(STARSESSIONS_FINDINGS))
async def test_b06_starsessions_audit_14977bf(kind: str, clock: FakeClock, finding: str) -> None:
    """B-6 (starsessions security commit 14977bf): the audit's findings that apply to a
    server-side store, each replayed (its cookie-size and memory-bound findings are C-12, C-46)."""
    config = SessionConfig(idle_timeout=60, absolute_timeout=3600, touch_interval=10)
    async with open_browser(kind, SessionManager(MemoryStore(clock=clock), config=config, clock=clock)) as browser:
        await STARSESSIONS_FINDINGS[finding](browser, clock)


# -- identifier handling, fixation and strict mode ----------------------------------------------------------


async def test_b07_cve_2011_4718_an_attacker_chosen_id_is_never_adopted(browser: Browser, spy: FlakyStore) -> None:
    """B-7 (PHP CVE-2011-4718, session adoption): a well-formed ID the attacker chose and
    planted in the victim's browser is replaced on the first write and at login; it never names
    a record, so the attacker holding it stays anonymous."""
    chosen = new_session_id()
    browser.client.cookies.set("sessionid", chosen)
    issued = [issued_id(await browser.post("/set", params={"k": "cart", "v": "1"}))]
    issued.append(issued_id(await browser.post("/login", params={"user": "victim"})))
    assert chosen not in issued
    assert await stored(spy, chosen) is None
    assert (await send_with(browser, "GET", "/whoami", chosen)).text == "anon"


async def test_b08_flask_session_storage_miss_never_reuses_the_id(browser: Browser, spy: FlakyStore, clock: FakeClock) -> None:
    """B-8 (Flask-Session 0.7.0 #76, 0.6.0 uuid4 IDs): once a session's record is gone, the
    browser's old ID is not reused for the next write; IDs carry 256 bits, not a uuid4's 122."""
    old = issued_id(await browser.post("/set", params={"k": "a", "v": "1"}))
    clock.advance(browser.app.manager.config.idle_seconds + 1)
    assert spy.wrapped.delete_expired(clock()) == 1
    new = issued_id(await send_with(browser, "POST", "/set?k=a&v=2", old))
    assert new != old
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", sid) for sid in (old, new))  # base64url of 32 bytes


async def test_b09_cve_2015_3982_an_empty_session_key_is_never_shared(browser: Browser, spy: FlakyStore) -> None:
    """B-9 (Django CVE-2015-3982): an empty cookie value is no session; users who send one, or
    who logged out and in again, each get their own fresh, non-empty ID."""
    issued = [issued_id(await send_with(browser, "POST", f"/set?k=who&v={n}", "")) for n in range(2)]
    for user in ("alice", "bob"):
        session_id = issued_id(await send_with(browser, "POST", f"/login?user={user}", None))
        assert issued_id(await send_with(browser, "POST", "/logout", session_id)) == ""
        issued.append(issued_id(await send_with(browser, "POST", f"/login?user={user}", "")))
    assert "" not in issued and len(set(issued)) == len(issued)
    assert await stored(spy, "") is None


async def test_b10_cve_2014_0482_identity_change_clears_and_rotates(browser: Browser) -> None:
    """B-10 (Django CVE-2014-0482): logging in as another user on a session bound to alice
    clears her data and gives a new ID; her old ID is dead."""
    alice = issued_id(await browser.post("/login", params={"user": "alice"}))
    await browser.post("/set", params={"k": "secret", "v": "alice's"})
    bob = issued_id(await browser.post("/login", params={"user": "bob"}))
    assert bob != alice
    assert (await browser.get("/peek")).json() == {"data": {}, "user": "bob"}
    assert (await send_with(browser, "GET", "/whoami", alice)).text == "anon"


async def test_b11_cve_2011_4136_data_cached_under_a_session_id_is_no_session(
    kind: str, redis_store: Any, clock: FakeClock
) -> None:
    """B-11 (Django CVE-2011-4136, sessions in the cache's root namespace): app data stored in
    Redis under the raw ID, its hash without the prefix, or the raw ID inside the namespace,
    never loads as that session."""
    session_id = new_session_id()
    envelope = _codec.encode(clock(), {"role": "admin"})
    fields = {"d": envelope, "e": repr(clock() + 600), "v": "1", "c": repr(clock()), "u": "admin"}
    redis = admin(redis_store)
    keys = [session_id, store_key(session_id), redis_store._session_key(session_id)]
    redis.set(f"{redis_store.key_prefix}{session_id}", envelope)
    for key in keys:
        redis.hset(key, mapping=fields)
    try:
        async with open_browser(kind, SessionManager(redis_store, clock=clock)) as browser:
            assert await anonymous_peek(browser, f"sessionid={session_id}")
    finally:
        redis.delete(*keys[:2])


TRAVERSALS = ["../../etc/passwd", "..poc", "..\\..\\boot.ini", "/etc/passwd", "....//....//x", "../" * 14 + "a", "%2e%2e%2f" * 4]


@pytest.mark.parametrize("traversal", TRAVERSALS)
async def test_b12_cve_2011_0698_traversal_ids_never_reach_a_store(browser: Browser, spy: FlakyStore, traversal: str) -> None:
    """B-12 (Django CVE-2011-0698, gorilla GO-2024-2730, Beaker #248): path-traversal IDs, even
    one exactly as long as an ID, are refused before any store call."""
    assert await anonymous_peek(browser, f"sessionid={traversal}")
    assert spy.calls == {}


async def test_b13_cve_2020_13254_malformed_keys_cannot_collide_with_a_live_one(browser: Browser, spy: FlakyStore) -> None:
    """B-13 (Django CVE-2020-13254, memcached key collision): values that a truncating or
    whitespace-stripping key scheme would map onto a live ID are refused unread, and the keys
    stores see are all fixed-length hex."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    spy.reset()
    for lookalike in [session_id + "X", session_id + "A" * 250, session_id + "\x01", session_id[:42] + " "]:
        assert await anonymous_peek(browser, f"sessionid={lookalike}")
    assert spy.calls == {}
    assert [key for key in spy.wrapped._records if not re.fullmatch(r"[0-9a-f]{64}", key)] == []


async def test_b14_cve_2019_16782_stores_hold_only_hashes_and_a_hash_is_no_cookie(store_browser: Browser, store: Any) -> None:
    """B-14 (Rack CVE-2019-16782): what is at rest holds SHA-256 of the ID, never the ID; the
    hash (or its first 43 characters) sent as a cookie is refused (no fallback lookup)."""
    session_id = issued_id(await store_browser.post("/login", params={"user": "alice"}))
    at_rest = await dump(store)
    assert hashed(session_id).encode() in at_rest and session_id.encode() not in at_rest
    for forged in (hashed(session_id), hashed(session_id)[:43]):
        assert (await send_with(store_browser, "GET", "/whoami", forged)).text == "anon"


async def test_b15_cookie_store_replay_fails_once_logged_out(browser: Browser, spy: FlakyStore) -> None:
    """B-15 (Rails CookieStore replay): a copy of the cookie taken before logout is worthless
    after it; the server-side record is gone."""
    copied = issued_id(await browser.post("/login", params={"user": "alice"}))
    await browser.post("/logout")
    assert (await send_with(browser, "GET", "/whoami", copied)).text == "anon"
    assert await stored(spy, copied) is None


# -- store-filling DoS and lazy creation -----------------------------------------------------------------


async def test_b16_cve_2015_5143_load_never_creates_a_record(store_browser: Browser, store: Any) -> None:
    """B-16 (Django CVE-2015-5143): requests carrying unknown well-formed IDs, on pages that
    read the session or not, leave the store empty and set no cookie."""
    for n in range(50):
        for url in ("/peek", "/whoami", "/public"):
            response = await send_with(store_browser, "GET", url, new_session_id())
            assert (response.status_code, set_cookies(response)) == (200, []), n
    assert await dump(store) == b""


async def test_b17_cve_2015_5963_anonymous_logout_creates_nothing(browser: Browser, spy: FlakyStore) -> None:
    """B-17 (Django CVE-2015-5963/5964): 1,000 logouts without a session, and 100 with unknown
    IDs, write nothing and set no cookie."""
    cookies: Iterable[str | None] = [None] * 1_000 + [f"sessionid={new_session_id()}" for _ in range(100)]
    for cookie in cookies:
        response = await bare_request(browser, "POST", "/logout", cookie)
        assert "set-cookie" not in dict(response.headers)
    assert (spy.writes, len(spy.wrapped)) == (0, 0)


async def test_b18_express_memorystore_leak_is_bounded(kind: str, clock: FakeClock) -> None:
    """B-18 (express-session MemoryStore "will leak memory"): the memory store, configured by
    URL, holds at most ``max_entries`` sessions and ``max_bytes`` of them under a flood of
    1 KiB sessions."""
    manager = SessionManager("memory://?max_entries=50&max_bytes=32768", clock=clock)
    memory = manager.store
    async with open_browser(kind, manager) as browser:
        for _ in range(500):
            assert (await bare_request(browser, "POST", "/set?k=blob&v=" + "x" * 1024)).status == 200
            assert len(memory) <= 50
            assert sum(len(key) + len(record.data) for key, record in memory._records.items()) <= 32768
            clock.advance(1)


# -- expiry --------------------------------------------------------------------------------------------


async def test_b19_cve_2024_35220_an_expired_session_is_detected_on_restore(kind: str, store: Any, clock: FakeClock) -> None:
    """B-19 (@fastify/session CVE-2024-35220): restored from the store after its expiry, a
    session is expired, whatever the cookie's lifetime setting (persistent or browser-session)."""
    for persistent in (True, False):
        config = SessionConfig(cookie=CookieConfig(persistent=persistent))
        async with open_browser(kind, SessionManager(store, config=config, clock=clock)) as browser:
            session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
            clock.advance(config.idle_seconds + 1)
            assert (await send_with(browser, "GET", "/whoami", session_id)).text == "anon"
            assert await stored(store, session_id) is None


# -- caching and headers -----------------------------------------------------------------------------------


async def test_b20_cve_2023_30861_a_merely_refreshed_session_varies_on_cookie(
    browser: Browser, clock: FakeClock, manager: SessionManager
) -> None:
    """B-20 (Flask CVE-2023-30861): a permanent session only refreshed by a request (nothing
    changed) sends its Set-Cookie with ``Vary: Cookie`` and never shared-cacheable."""
    await browser.post("/login", params={"user": "alice"})
    for url in ("/peek", "/whoami", "/public"):
        clock.advance(manager.config.touch_seconds + 1)
        response = await browser.get(url)
        assert len(set_cookies(response)) == 1, url
        assert (varies_on_cookie(response), shared_cacheable(response)) == (True, False), url


APP_COOKIES = ["theme=dark; Path=/", "lang=en; Path=/"]


def _header_app(kind: str, container: str) -> Any:
    """An app that writes the session and sends two Set-Cookie headers of its own, its headers
    in a ``list``, a ``tuple``, or built by its framework (Starlette's MutableHeaders, Flask)."""
    raw = [("content-type", "text/plain"), *(("set-cookie", value) for value in APP_COOKIES)]
    if kind == "asgi":

        async def asgi(scope: Any, receive: Any, send: Any) -> None:
            asgi_session(scope)["k"] = "v"
            if container == "framework":
                response = PlainTextResponse("ok")
                for value in APP_COOKIES:
                    name, _, rest = value.partition("=")
                    response.set_cookie(name, rest.split(";")[0])
                await response(scope, receive, send)
                return
            encoded = [(name.encode(), value.encode()) for name, value in raw]
            headers = tuple(encoded) if container == "tuple" else encoded
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"ok"})

        return asgi
    if container == "framework":
        app = flask.Flask(__name__)

        @app.get("/")
        def index() -> flask.Response:
            wsgi_session(flask.request.environ)["k"] = "v"
            response = flask.Response("ok", mimetype="text/plain")
            for value in APP_COOKIES:
                name, _, rest = value.partition("=")
                response.set_cookie(name, rest.split(";")[0])
            return response

        return app.wsgi_app

    def wsgi(environ: Any, start_response: Any) -> list[bytes]:
        wsgi_session(environ)["k"] = "v"
        start_response("200 OK", tuple(raw) if container == "tuple" else list(raw))
        return [b"ok"]

    return wsgi


@pytest.mark.parametrize("container", ["list", "tuple", "framework"])
async def test_b21_cve_2025_7339_app_set_cookie_headers_survive_in_any_container(browser: Browser, container: str) -> None:
    """B-21 (on-headers CVE-2025-7339 via express-session): however the app hands its headers
    over, its own two Set-Cookie headers survive and the session's is added exactly once."""
    browser.app.app = _header_app(browser.kind, container)
    response = await browser.get("/")
    cookies = set_cookies(response)
    assert [c.split("=")[0] for c in cookies].count("sessionid") == 1
    assert sorted(c.split(";")[0] for c in cookies if not c.startswith("sessionid=")) == ["lang=en", "theme=dark"]
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.parametrize(
    "options", [{"name": "id; Domain=evil.com"}, {"path": "/; Domain=evil.com"}, {"domain": "example.com; SameSite=None"}]
)
def test_b22_cve_2024_47764_cookie_name_path_and_domain_cannot_inject_attributes(options: dict[str, str]) -> None:
    """B-22 (npm cookie CVE-2024-47764): a name, path or domain carrying extra attributes is
    refused when the configuration is built."""
    with pytest.raises(ConfigurationError):
        CookieConfig(**options)  # type: ignore[arg-type]


DIGESTS = {"digest", "hexdigest", "store_key", "log_handle", "sha256"}


def test_b23_cookie_signature_timing_no_digest_is_compared_with_eq() -> None:
    """B-23 (cookie-signature and Beaker timing attacks): coatcheck signs nothing and looks IDs
    up by their SHA-256; a static check that no digest is ever compared with ``==``/``!=``
    (a comparison of secrets would need ``hmac.compare_digest``)."""

    def is_digest(node: ast.AST) -> bool:
        target = node.func if isinstance(node, ast.Call) else None
        name = target.attr if isinstance(target, ast.Attribute) else target.id if isinstance(target, ast.Name) else None
        return name in DIGESTS

    found = []
    for path in Path(coatcheck.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare) or not any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
                continue
            if any(is_digest(operand) for operand in [node.left, *node.comparators]):
                found.append(f"{path.name}:{node.lineno}")
    assert found == []


async def test_b24_express_session_a_signed_looking_cookie_is_never_unwrapped(browser: Browser, spy: FlakyStore) -> None:
    """B-24 (express-session 1.18.0, cookies without a valid signature): a live ID wrapped in a
    signed cookie's format is not unwrapped and looked up."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    spy.reset()
    for wrapped in (f"s:{session_id}.c2lnbmF0dXJl", f"s%3A{session_id}.sig", f"{session_id}.sig"):
        assert await anonymous_peek(browser, f"sessionid={wrapped}")
    assert spy.calls == {}


# -- cookie parsing (Python-specific) ---------------------------------------------------------------------


async def test_b25_cve_2024_7592_backslash_quoted_cookies_are_parsed_in_linear_time(browser: Browser, spy: FlakyStore) -> None:
    """B-25 (CPython CVE-2024-7592): a 64 KiB quoted session value of backslash and octal
    escapes is refused unread and quickly; in front of the real cookie it hides nothing."""
    session_id = issued_id(await browser.post("/login", params={"user": "alice"}))
    escaped = '"' + "\\\\\\012" * 10_923 + '"'
    spy.reset()
    start = time.perf_counter()
    assert await anonymous_peek(browser, f"sessionid={escaped}")
    response = await bare_request(browser, "GET", "/whoami", f"sessionid={escaped}; sessionid={session_id}")
    assert time.perf_counter() - start < PARSE_BOUND
    assert (response.body, spy.calls) == (b"alice", {"load": 1})


async def test_b26_cve_2023_23934_a_nameless_cookie_cannot_shadow_a_host_cookie(
    kind: str, spy: FlakyStore, clock: FakeClock
) -> None:
    """B-26 (Werkzeug CVE-2023-23934): a sibling domain sets the nameless cookie
    ``=__Host-id=<its own live session>``; before or after the victim's ``__Host-id`` it is not
    taken for it."""
    manager = SessionManager(spy, config=SessionConfig(cookie=CookieConfig(name="__Host-id")), clock=clock)
    async with open_browser(kind, manager) as browser:
        ids = {}
        for user in ("mallory", "victim"):
            browser.client.cookies.clear()
            ids[user] = issued_id(await browser.post("/login", params={"user": user}))
        pairs = [f"=__Host-id={ids['mallory']}", f"__Host-id={ids['victim']}"]
        seen = [(await bare_request(browser, "GET", "/whoami", "; ".join(order))).body for order in (pairs, pairs[::-1])]
    assert seen == [b"victim", b"victim"]


# -- identity and privilege binding -------------------------------------------------------------------------


async def test_b27_asvs_half_open_session_is_not_authenticated_until_login(
    browser: Browser, clock: FakeClock, manager: SessionManager
) -> None:
    """B-27 (ASVS 4.0.3 V3.7 half-open attack, WSTG-SESS-08 puzzling): data an unfinished flow
    left in the session (a verified reset step) authenticates nobody; only ``login()`` binds a
    user, with a new ID and a creation time that starts at the login."""
    started = issued_id(await browser.post("/set", params={"k": "password_reset_verified", "v": "alice"}))
    assert (await browser.get("/whoami")).text == "anon"
    clock.advance(600)
    logged_in = issued_id(await browser.post("/login", params={"user": "alice"}))
    session = manager.load(f"sessionid={logged_in}")
    assert (logged_in != started, session.user_id, session.created_at) == (True, "alice", clock())
    assert (await send_with(browser, "GET", "/whoami", started)).text == "anon"
