"""IDs, store keys, cookie parsing and headers, record decoding: the pure parts."""

from __future__ import annotations

import hashlib
import logging
import pickle
import random
import re
import secrets
import time
from pathlib import Path
from typing import Any

import pytest

from coatcheck import ConcurrentUpdateError, SessionConfig, SessionManager, _codec, _cookies, _ids
from coatcheck._logs import RateLimitedLog
from coatcheck.config import CookieConfig
from coatcheck.stores import Record
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock, SpyStore

from .core_stores import SyncCoreStore


def test_ids_are_256_bit_url_safe_fixed_length_and_unique() -> None:
    ids = {_ids.new_session_id() for _ in range(100_000)}
    assert len(ids) == 100_000
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{43}", i) for i in ids)
    assert len(_ids.new_session_id().encode()) * 6 >= 256


def test_ids_come_from_secrets_not_random(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any) -> float:
        raise AssertionError("random module used")

    monkeypatch.setattr(random, "random", broken)
    monkeypatch.setattr(random, "getrandbits", broken)
    assert _ids.is_valid_id(_ids.new_session_id())
    monkeypatch.setattr(secrets, "token_urlsafe", lambda n: "S" * 43)
    assert _ids.new_session_id() == "S" * 43


def test_store_key_is_sha256_hex_and_a_hash_is_not_a_valid_id() -> None:
    sid = _ids.new_session_id()
    key = _ids.store_key(sid)
    assert key == hashlib.sha256(sid.encode()).hexdigest()
    assert not _ids.is_valid_id(key)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("sessionid=" + "A" * 43, ["A" * 43]),
        ("a=1; sessionid=" + "A" * 43 + "; b=2", ["A" * 43]),
        ("sessionid=" + "é" * 43, []),
        ("=sessionid=" + "A" * 43, []),
        ("xsessionid=" + "A" * 43, []),
        ("sessionid=" + "A" * 43 + "; sessionid=" + "B" * 43, ["A" * 43, "B" * 43]),
        ("sessionid=" + '"' + "A" * 41 + '"', []),
    ],
)
def test_cookie_candidates(header: str, expected: list[str]) -> None:
    assert _cookies.cookie_candidates([header], "sessionid") == expected


def test_cookie_parsing_is_linear_on_pathological_headers() -> None:
    header = 'x="' + '\\"' * 32_000 + '"; ' + "; ".join(f"c{i}=v" for i in range(1000)) + "; sessionid=" + "A" * 43
    start = time.perf_counter()
    assert _cookies.cookie_candidates([header], "sessionid") == ["A" * 43]
    assert time.perf_counter() - start < 0.05


def test_candidates_are_bounded() -> None:
    header = "; ".join(f"sessionid={_ids.new_session_id()}" for _ in range(100))
    assert len(_cookies.cookie_candidates([header], "sessionid")) == _cookies.MAX_COOKIE_CANDIDATES


def test_set_cookie_header_never_contains_crlf() -> None:
    cookie = CookieConfig(name="__Host-id")
    for secure in (True, False):
        attributes = _cookies.cookie_attributes(cookie, secure=secure)
        for header in (
            _cookies.set_cookie_header(cookie, "A" * 43, 60, attributes),
            _cookies.clear_cookie_header(cookie, attributes),
        ):
            assert "\r" not in header and "\n" not in header
    assert (
        _cookies.set_cookie_header(cookie, "A" * 43, 60, _cookies.cookie_attributes(cookie, secure=True))
        == "__Host-id=" + "A" * 43 + "; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax"
    )


def test_browser_session_cookie_has_no_max_age() -> None:
    cookie = CookieConfig(persistent=False)
    header = _cookies.set_cookie_header(cookie, "A" * 43, 60, _cookies.cookie_attributes(cookie, secure=True))
    assert "Max-Age" not in header


@pytest.fixture(params=["orjson", "stdlib"], autouse=True)
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test here runs with the fast codec and with the standard-library fallback."""
    if request.param == "stdlib":
        monkeypatch.setattr(_codec, "fast_json", None)
    else:
        assert _codec.fast_json is not None, "the test environment installs the fast extra"
    return str(request.param)


@pytest.mark.parametrize(
    "value", [{"a": [1, 2.5, None, True, "é"]}, 2**64 - 1, -(2**63), -0.0, 1.0, 10**-300, [], {}, "", "\x00"]
)
def test_codecs_accept_the_same_values_and_return_them_exactly(value: object) -> None:
    _codec.encode_value(value)
    _, data = _codec.decode(_codec.encode(1.0, {"k": value}))
    assert data == {"k": value} and type(data["k"]) is type(value)


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, 2**70, [1, {"deep": -(2**100)}]])
def test_integers_past_64_bits_are_refused_not_turned_into_floats(value: object) -> None:
    """orjson reads integers past 64 bits back as floats, so no codec accepts them."""
    with pytest.raises(ValueError, match="64-bit"):
        _codec.encode_value(value)


def test_tuples_are_refused_since_they_would_come_back_as_lists() -> None:
    with pytest.raises(TypeError, match="store a list"):
        _codec.encode_value({"pair": (1, 2)})


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        {1: "int key"},
        object(),
        b"bytes",
        {"a": {"b": [set()]}},
        __import__("uuid").uuid4(),
        __import__("datetime").date.today(),
    ],
)
def test_codecs_refuse_the_same_values(value: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        _codec.encode_value(value)


def test_codec_round_trip_and_envelope() -> None:
    raw = _codec.encode(12.5, {"a": [1, "é"], "__meta__": {"v": 99}})
    assert _codec.decode(raw) == (12.5, {"a": [1, "é"], "__meta__": {"v": 99}})


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff{not json",
        b'{"v":1,"c":1',
        b'{"v":99,"c":1,"d":{}}',
        b'{"v":1,"c":"x","d":{}}',
        b'{"v":1,"c":1,"d":[]}',
        b"[]",
        b"[" * 100_000,
        pickle.dumps({"a": 1}),
    ],
)
def test_corrupt_records_are_refused(raw: bytes) -> None:
    with pytest.raises(_codec.CorruptRecordError):
        _codec.decode(raw)


def test_corrupt_or_pickled_record_reads_as_fresh_session_with_a_hashed_log(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    manager = SessionManager(store, clock=clock)
    sentinel = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> Any:
            return (Path.touch, (sentinel,))

    for raw in (b"\xff{not json", pickle.dumps(Payload())):
        sid = _ids.new_session_id()
        store.save(_ids.store_key(sid), Record(raw, clock() + 60, 1), expected_version=None)
        with caplog.at_level(logging.WARNING, "coatcheck.security"):
            session = manager.load(f"sessionid={sid}")
        assert session.is_new
        assert session.id != sid
        assert any("corrupt" in r.getMessage() for r in caplog.records)
        assert all(sid not in r.getMessage() for r in caplog.records)
        caplog.clear()
    assert not sentinel.exists()


def test_forged_far_future_expiry_does_not_beat_the_absolute_timeout() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    manager = SessionManager(store, clock=clock)
    sid = _ids.new_session_id()
    created = clock() - manager.config.absolute_seconds - 1
    store.save(_ids.store_key(sid), Record(_codec.encode(created, {"a": 1}), clock() + 10**9, 1), expected_version=None)
    assert manager.load(f"sessionid={sid}").is_new


def test_creation_never_overwrites_an_existing_session() -> None:
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    victim_id = _ids.new_session_id()
    ids = iter([victim_id, victim_id])
    manager = SessionManager(store, clock=clock, id_factory=lambda: next(ids, None) or _ids.new_session_id())
    victim = manager.new_session()
    victim["owner"] = "victim"
    manager.commit(victim)
    assert victim.id == victim_id
    attacker = manager.new_session()
    attacker["owner"] = "attacker"
    set_cookie = manager.commit(attacker)
    assert set_cookie is not None
    assert attacker.id != victim_id
    assert dict(manager.load(f"sessionid={victim_id}")) == {"owner": "victim"}


def test_loading_unknown_ids_never_creates_records() -> None:
    clock = FakeClock()
    spy = SpyStore(MemoryStore(clock=clock))
    manager = SessionManager(spy, clock=clock)
    for _ in range(200):
        session = manager.load(f"sessionid={_ids.new_session_id()}")
        assert manager.commit(session) is None
    assert spy.writes == 0
    assert len(spy.wrapped) == 0


def test_commit_fallbacks_without_touch_and_rotate() -> None:
    """A store with only the five core methods still rotates and refreshes correctly."""
    clock = FakeClock()
    memory = MemoryStore(clock=clock)

    class CoreOnly:
        load, save, delete = memory.load, memory.save, memory.delete
        delete_expired, close = memory.delete_expired, memory.close

    manager = SessionManager(CoreOnly(), clock=clock)
    session = manager.new_session()
    session["a"] = 1
    old = session.id
    manager.commit(session)
    clock.advance(120)
    read_only = manager.load(f"sessionid={old}")
    assert manager.commit(read_only) is not None  # refreshed by a full CAS save
    record = memory.load(_ids.store_key(old))
    assert record is not None and record.expires_at == clock() + manager.config.idle_seconds
    loaded = manager.load(f"sessionid={old}")
    loaded.rotate()
    manager.commit(loaded)
    assert loaded.id != old
    assert manager.load(f"sessionid={old}").is_new
    assert dict(manager.load(f"sessionid={loaded.id}")) == {"a": 1}


def test_r14_security_log_lines_are_rate_limited_per_kind(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock(start=1000.0)
    limited = RateLimitedLog(logging.getLogger("coatcheck.security.test"), burst=3, window=10.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="coatcheck.security.test"):
        for i in range(50):
            limited(logging.INFO, "flood %d", i)
        limited(logging.WARNING, "rare %s", "event")  # a flood of one kind never hides another
        assert [r.getMessage() for r in caplog.records] == ["flood 0", "flood 1", "flood 2", "rare event"]
        clock.advance(10)
        limited(logging.INFO, "flood %d", 50)
    assert [r.getMessage() for r in caplog.records][4:] == [
        "47 lines like 'flood %d' were suppressed (at most 3 every 10 s)",
        "flood 50",
    ]


class _LosingEveryRace(SyncCoreStore):
    """The five core methods over a memory store, where another writer gets in before each
    compare-and-set while ``racing`` (it moves the expiry on and bumps the version)."""

    def __init__(self, inner: MemoryStore) -> None:
        super().__init__(inner)
        self.racing, self.saves = True, 0

    def save(self, key: str, record: Record, *, expected_version: int | None) -> bool:
        self.saves += 1
        current = self.load(key)
        if expected_version is not None and self.racing and current is not None:
            moved = current._replace(version=current.version + 1, expires_at=current.expires_at + 7)
            assert super().save(key, moved, expected_version=current.version)
        return super().save(key, record, expected_version=expected_version)


def test_a_commit_that_lost_every_race_leaves_the_session_as_the_store_holds_it() -> None:
    """After ConcurrentUpdateError the session carries the last record it read (its expiry and
    version), so committing it again, once the other writer is gone, takes one write."""
    clock = FakeClock(1_000_000.0)
    inner = MemoryStore(clock=clock)
    store = _LosingEveryRace(inner)
    manager = SessionManager(store, config=SessionConfig(cookie=CookieConfig(secure=False), max_commit_attempts=3), clock=clock)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session, scheme="http")
    session["b"] = 2
    with pytest.raises(ConcurrentUpdateError):
        manager.commit(session, scheme="http")
    stored = inner.load(_ids.store_key(session.id))
    assert stored is not None and session.expires_at == stored.expires_at
    store.racing, store.saves = False, 0
    manager.commit(session, scheme="http")
    assert store.saves == 1
    assert manager.load(f"sessionid={session.id}") == {"a": 1, "b": 2}


def test_a_login_on_a_new_session_is_done_by_its_first_commit() -> None:
    """A second commit of the same session in the request writes nothing again (and does not
    restart the absolute timeout once more)."""
    clock = FakeClock(1_000_000.0)
    store = SpyStore(MemoryStore(clock=clock))
    manager = SessionManager(store, clock=clock)
    session = manager.new_session()
    session.login("alice")
    assert manager.commit(session) is not None
    created_at, writes = session.created_at, store.writes
    clock.advance(5)
    assert manager.commit(session) is None
    assert store.writes == writes and session.created_at == created_at
