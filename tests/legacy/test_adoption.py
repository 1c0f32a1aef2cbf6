"""Adopting a legacy session, on every store, sync and async: once, into one session, with its
user bound, its remaining lifetime kept, its cookie cleared and a replay refused.

The reader here is a home-made one (the public :class:`~coatcheck.legacy.LegacyReader` protocol)
over a dict, so each rule is checked on its own; the readers of real packages are tested against
sessions those packages made, in the other modules of this directory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

import pytest

from coatcheck import ConfigurationError, SessionConfig, SessionManager, StoreError
from coatcheck._http import WSGI_HEADERS, session_headers
from coatcheck._ids import store_key
from coatcheck.legacy import LegacyCookie, LegacyReader, LegacySession
from coatcheck.session import Session
from coatcheck.stores import SupportsAsyncUserIndex, SupportsUserIndex
from coatcheck.testing import FakeClock, cookie_id

pytestmark = pytest.mark.anyio


class DictReader:
    """A legacy system that kept ``{cookie value: LegacySession}`` server-side."""

    name = "home-made"

    def __init__(self, cookie: LegacyCookie | None = None) -> None:
        self.cookie = cookie or LegacyCookie("oldsid", "/app", "example.com")
        self.records: dict[str, LegacySession] = {}
        self.reads = 0
        self.forgotten: list[str] = []
        self.fail = False

    def read(self, value: str) -> LegacySession | None:
        self.reads += 1
        if self.fail:
            raise OSError("legacy database down")
        return self.records.get(value)

    def forget(self, value: str) -> None:
        self.forgotten.append(value)
        self.records.pop(value, None)

    async def aread(self, value: str) -> LegacySession | None:
        return self.read(value)

    async def aforget(self, value: str) -> None:
        self.forget(value)


@pytest.fixture(params=["sync", "async"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Client:
    """The manager's load and commit in the test's flavour."""

    def __init__(self, mode: str, manager: SessionManager) -> None:
        self.mode, self.manager = mode, manager

    async def load(self, cookie: str | Iterable[str] | None) -> Session:
        return self.manager.load(cookie) if self.mode == "sync" else await self.manager.aload(cookie)

    async def commit(self, session: Session) -> str | None:
        if self.mode == "sync":
            return self.manager.commit(session)
        return await self.manager.acommit(session)


def client(mode: str, store: Any, clock: FakeClock, reader: LegacyReader, **options: Any) -> Client:
    config = SessionConfig(idle_timeout=3600, absolute_timeout=86400)
    return Client(mode, SessionManager(store, config=config, clock=clock, legacy=[reader], **options))


def cookies(headers: list[tuple[str, str]] | None) -> list[str]:
    return [value for name, value in headers or [] if name == "Set-Cookie"]


async def test_adopted_once_with_user_lifetime_and_cookies(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    reader.records["old1"] = LegacySession({"cart": [1, 2], "_user": "42"}, "42", clock() + 600)
    app = client(mode, store, clock, reader)

    session = await app.load("oldsid=old1; other=x")
    assert session["cart"] == [1, 2] and session.user_id == "42"
    assert not session.is_new  # stored already: usable in this request and by a concurrent one
    assert session.expires_at == clock() + 600  # the legacy session's remaining lifetime (under the idle timeout)
    assert reader.forgotten == ["old1"]  # the legacy record is deleted: adopted at most once

    set_cookie = await app.commit(session)
    assert set_cookie is not None and cookie_id(set_cookie) == session.id  # the browser gets the new ID
    headers = cookies(session_headers(session, set_cookie, [], WSGI_HEADERS))
    assert headers[0] == set_cookie
    assert headers[1].startswith("oldsid=; Max-Age=0; ") and "Path=/app" in headers[1] and "Domain=example.com" in headers[1]

    again = await app.load(f"sessionid={session.id}; oldsid=old1")
    assert again["cart"] == [1, 2] and again.id == session.id
    if isinstance(app.manager.store, SupportsUserIndex if mode == "sync" else SupportsAsyncUserIndex):
        listed = app.manager.list_sessions("42") if mode == "sync" else await app.manager.alist_sessions("42")
        assert [info.handle for info in listed] == [SessionManager.handle(session)]


async def test_idle_timeout_caps_the_legacy_lifetime(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, None, clock() + 10 * 86400)
    session = await client(mode, store, clock, reader).load("oldsid=old1")
    assert session.expires_at == clock() + 3600


async def test_expired_legacy_session_adopts_nothing(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, None, clock() - 1)
    app = client(mode, store, clock, reader)
    session = await app.load("oldsid=old1")
    assert session.is_new and dict(session) == {}
    assert reader.forgotten == [] and await app.commit(session) is None
    headers = cookies(session_headers(session, None, [], WSGI_HEADERS))
    assert len(headers) == 1 and headers[0].startswith("oldsid=; Max-Age=0")  # the dead cookie is cleared


async def test_replayed_cookie_adopts_nothing(mode: str, store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    """A copy of the cookie, sent after the adoption, finds the claim and adopts nothing, even
    when the old system still holds the record (a cookie-only system holds nothing to delete)."""
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, "7", clock() + 3000)
    app = client(mode, store, clock, reader)
    first = await app.load("oldsid=old1")
    await app.commit(first)
    reader.records["old1"] = LegacySession({"a": 1}, "7", clock() + 3000)  # as if the deletion never happened
    clock.advance(60)
    with caplog.at_level(logging.INFO, logger="coatcheck.security"):
        replay = await app.load("oldsid=old1")
    assert replay.is_new and dict(replay) == {} and replay.user_id is None
    assert "replayed" in caplog.text


async def test_concurrent_requests_adopt_into_one_session(mode: str, store: Any, clock: FakeClock) -> None:
    """Two requests carrying the same legacy cookie at once: the second finds the first's claim
    and gets the first's session (and its cookie), never a second session."""
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, "7", clock() + 3000)
    app = client(mode, store, clock, reader)
    first = await app.load("oldsid=old1")
    second = await app.load("oldsid=old1")  # before the first response went out
    assert second.id == first.id and second["a"] == 1
    assert reader.forgotten == ["old1"]
    assert cookie_id(await app.commit(second)) == first.id
    assert cookie_id(await app.commit(first)) == first.id


async def test_concurrent_adoption_that_loses_the_claim(mode: str, store: Any, clock: FakeClock) -> None:
    """The race inside the adoption: both requests read the legacy record before either claimed
    it. The one that loses the claim deletes what it stored and joins the winner."""
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, "7", clock() + 3000)
    winner = client(mode, store, clock, reader)
    loser = client(mode, store, clock, reader)
    original_read = reader.read
    joined: list[Session] = []
    racing: list[bool] = []

    def read_then_race(value: str) -> LegacySession | None:
        found = original_read(value)
        if not racing:
            racing.append(True)
            joined.append(winner.manager.load("oldsid=old1"))  # the other request adopts meanwhile
        return found

    reader.read = read_then_race  # type: ignore[method-assign]
    if mode == "async":
        winner.mode = "sync"  # the interleaving is driven from inside the reader, synchronously

        async def aread(value: str) -> LegacySession | None:
            return read_then_race(value)

        reader.aread = aread  # type: ignore[method-assign]
    session = await loser.load("oldsid=old1")
    assert session.id == joined[0].id and session["a"] == 1
    assert reader.forgotten == ["old1"]  # forgotten once, by the winner


async def test_live_session_or_no_cookie_never_calls_the_reader(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    app = client(mode, store, clock, reader)
    fresh = await app.load(None)
    assert fresh.is_new and reader.reads == 0
    fresh["a"] = 1
    sid = cookie_id(await app.commit(fresh))
    live = await app.load(f"sessionid={sid}; oldsid=whatever")
    assert live["a"] == 1 and reader.reads == 0


async def test_a_failing_reader_is_a_store_error(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    reader.fail = True
    with pytest.raises(StoreError, match="home-made"):
        await client(mode, store, clock, reader).load("oldsid=old1")


@pytest.mark.parametrize("policy", ["drop", "refuse"])
async def test_values_the_session_cannot_hold(
    mode: str, store: Any, clock: FakeClock, policy: str, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("coatcheck.legacy._reported", set())  # each key is reported once per process
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1, "when": object(), 5: "x"}, None, clock() + 600)  # type: ignore[dict-item]
    with caplog.at_level(logging.WARNING, logger="coatcheck.legacy"):
        session = await client(mode, store, clock, reader, legacy_bad_values=policy).load("oldsid=old1")
    if policy == "drop":
        assert dict(session) == {"a": 1} and not session.is_new
    else:
        assert session.is_new and dict(session) == {} and reader.records  # nothing adopted, nothing deleted
    assert "'when'" in caplog.text


async def test_same_cookie_name_is_replaced_not_cleared(
    mode: str, store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A legacy cookie of coatcheck's own name (Flask's ``session``, Django's ``sessionid``) is
    the reader's to judge: not logged as a malformed session ID, and replaced by the new cookie."""
    reader = DictReader(LegacyCookie("sessionid"))
    reader.records["old-flask-value.sig"] = LegacySession({"a": 1}, None, clock() + 600)
    app = client(mode, store, clock, reader)
    with caplog.at_level(logging.INFO, logger="coatcheck.security"):
        session = await app.load("sessionid=old-flask-value.sig")
    assert "malformed" not in caplog.text
    set_cookie = await app.commit(session)
    assert cookies(session_headers(session, set_cookie, [], WSGI_HEADERS)) == [set_cookie]


def test_legacy_option_is_checked() -> None:
    with pytest.raises(ConfigurationError, match="legacy reader"):
        SessionManager("memory://", legacy=[object()])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match="list of legacy readers"):
        SessionManager("memory://", legacy="django")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="share a name"):
        SessionManager("memory://", legacy=[DictReader(), DictReader()])
    with pytest.raises(ConfigurationError, match="legacy_bad_values"):
        SessionManager("memory://", legacy=[DictReader()], legacy_bad_values="keep")  # type: ignore[arg-type]


def test_claim_key_is_not_a_session(clock: FakeClock) -> None:
    """The claim kept on an adopted cookie lives under a key no browser is given; a browser that
    computes it and sends it as a session ID gets a fresh session."""
    from coatcheck._core import legacy_claim_id

    manager = SessionManager("memory://", clock=clock, legacy=[DictReader()])
    reader = manager.legacy[0]
    assert isinstance(reader, DictReader)
    reader.records["old1"] = LegacySession({"a": 1}, None, clock() + 600)
    manager.load("oldsid=old1")
    claim = legacy_claim_id("home-made", "old1")
    assert manager.store.load(store_key(claim)) is not None
    assert manager.load(f"sessionid={claim}").is_new


async def test_offline_adoption_waits_for_its_browser(store: Any, clock: FakeClock) -> None:
    """``adopt_legacy`` (what ``coatcheck migrate-sessions --adopt`` runs) stores the session and
    deletes the legacy record at once; the first browser that brings the legacy cookie gets the
    session, requests sent with it at once share it, and a copy replayed later gets nothing."""
    reader = DictReader()
    reader.records["old1"] = LegacySession({"cart": [1]}, "7", clock() + 3000)
    manager = SessionManager(store, clock=clock, legacy=[reader])
    assert manager.adopt_legacy(reader, "old1") is True
    assert reader.forgotten == ["old1"] and not reader.records
    assert manager.adopt_legacy(reader, "old1") is False  # once
    clock.advance(2400)  # the browser comes back after more than the idle timeout (30 minutes)
    first = manager.load("oldsid=old1")
    second = manager.load("oldsid=old1")
    assert first["cart"] == [1] and first.user_id == "7" and second.id == first.id
    assert first.created_at == clock() and first.expires_at == clock() + 1800  # its timeouts start now
    assert cookie_id(manager.commit(first)) == first.id
    clock.advance(60)
    assert manager.load("oldsid=old1").is_new


async def test_offline_adoption_of_what_does_not_verify(store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    manager = SessionManager(store, clock=clock, legacy=[reader])
    assert manager.adopt_legacy(reader, "unknown") is False
    assert reader.forgotten == []


async def test_a_failing_forget_keeps_the_adoption(
    mode: str, store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Deleting the legacy record is best effort: the claim already stops a second adoption, so
    the browser still gets its new session (and the failure is logged)."""
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, "7", clock() + 600)

    def forget(value: str) -> None:
        raise OSError("legacy database read-only")

    async def aforget(value: str) -> None:
        forget(value)

    reader.forget, reader.aforget = forget, aforget  # type: ignore[method-assign]
    app = client(mode, store, clock, reader)
    with caplog.at_level(logging.WARNING, logger="coatcheck.legacy"):
        session = await app.load("oldsid=old1")
    assert session["a"] == 1 and cookie_id(await app.commit(session)) == session.id
    assert "not deleted" in caplog.text


async def test_claim_outlives_the_idle_timeout_when_the_reader_cannot_tell(mode: str, store: Any, clock: FakeClock) -> None:
    """A reader that cannot tell when the legacy session ends (expires_at None): the claim on the
    cookie lasts the absolute timeout, not just the new session's idle timeout."""
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, "7", None)
    app = client(mode, store, clock, reader)
    await app.commit(await app.load("oldsid=old1"))
    reader.records["old1"] = LegacySession({"a": 1}, "7", None)  # a signed cookie: still verifies
    clock.advance(3600 + 60)  # past the idle timeout
    assert (await app.load("oldsid=old1")).is_new


@pytest.mark.parametrize(
    "answer",
    [
        {"a": 1},
        LegacySession(["not", "a", "dict"], None, None),  # type: ignore[arg-type]
        LegacySession({"a": 1}, None, float("nan")),
        LegacySession({"a": 1}, None, float("inf")),
        LegacySession({"a": 1}, None, "tomorrow"),  # type: ignore[arg-type]
    ],
    ids=["dict", "list-data", "nan", "inf", "str-expiry"],
)
async def test_a_malformed_answer_adopts_nothing(
    mode: str, store: Any, clock: FakeClock, answer: Any, caplog: pytest.LogCaptureFixture
) -> None:
    reader = DictReader()
    reader.records["old1"] = answer
    app = client(mode, store, clock, reader)
    with caplog.at_level(logging.WARNING, logger="coatcheck.legacy"):
        session = await app.load("oldsid=old1")
    assert session.is_new and dict(session) == {} and reader.forgotten == []
    assert "not adopted" in caplog.text


async def test_an_integer_user_id_is_bound(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, 42, clock() + 600)
    assert (await client(mode, store, clock, reader).load("oldsid=old1")).user_id == "42"


async def test_cookie_headers_given_as_an_iterator(mode: str, store: Any, clock: FakeClock) -> None:
    reader = DictReader()
    reader.records["old1"] = LegacySession({"a": 1}, None, clock() + 600)
    session = await client(mode, store, clock, reader).load(iter(["other=1", "oldsid=old1"]))
    assert session["a"] == 1


@pytest.mark.parametrize(
    ("name", "path", "domain"),
    [("bad name", "/", None), ("ok", "/caf\u20ac", None), ("ok", "/\x00", None), ("ok", "/", "ex\tample.com"), ("ok", "x", None)],
)
def test_legacy_cookie_fields_are_checked(name: str, path: str, domain: str | None) -> None:
    """What goes into the clearing Set-Cookie is checked when the reader is built."""
    with pytest.raises(ConfigurationError):
        LegacyCookie(name, path, domain)
