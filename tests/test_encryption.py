"""Encryption at rest on every store: what a copy of the store holds (read behind the store's
back) shows neither a session's data nor its ID; a session's record opens only under its own ID
and store key; key rotation; records written before encryption was turned on."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from coatcheck import ConfigurationError, Record, SessionConfig, SessionManager, _codec
from coatcheck._codec import FRAME
from coatcheck._ids import store_key
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock

from .backends import dump
from .test_conformance import NoRotateStore

pytestmark = pytest.mark.anyio

OLD, NEW, OTHER = b"o" * 32, b"n" * 32, b"x" * 32
SECRET = "4111 1111 1111 1111, the card kept in the session"


def _cookie(session_id: str) -> str:
    return f"sessionid={session_id}"


def _sealing(store: Any, clock: FakeClock, *keys: bytes, devices: bool = False) -> SessionManager:
    return SessionManager(store, config=SessionConfig(encryption_keys=list(keys), devices=devices), clock=clock)


async def test_a_store_copy_holds_neither_data_nor_ids(store: Any, clock: FakeClock) -> None:
    manager = _sealing(store, clock, NEW)
    session = manager.new_session()
    session["card"] = SECRET
    session.login("alice")
    await manager.acommit(session)
    first_id = session.id
    loaded = await manager.aload(_cookie(first_id))
    assert loaded == {"card": SECRET}
    loaded["seen"] = 2
    loaded.rotate()
    await manager.acommit(loaded)
    again = await manager.aload(_cookie(loaded.id))
    assert again == {"card": SECRET, "seen": 2} and again.user_id == "alice"
    at_rest = await dump(store)
    assert SECRET.encode() not in at_rest and b"4111" not in at_rest and b"seen" not in at_rest
    assert first_id.encode() not in at_rest and loaded.id.encode() not in at_rest
    (info,) = await manager.alist_sessions("alice")  # the header stays readable: the listing needs no ID
    assert info.handle == manager.handle(loaded) and info.user_id == "alice"


async def test_a_sealed_record_opens_only_under_its_own_id_and_key(store: Any, clock: FakeClock) -> None:
    manager = _sealing(store, clock, NEW)
    rejected: list[str] = []
    manager.events.on_reject(lambda event: rejected.append(str(event.detail)))
    mine, theirs = manager.new_session(), manager.new_session()
    mine["who"], theirs["who"] = "mine", "theirs"
    await manager.acommit(mine)
    await manager.acommit(theirs)
    sealed = await store.aload(store_key(mine.id))
    assert sealed.data.startswith(FRAME)
    # my record moved under their key: it does not open with their ID
    target = await store.aload(store_key(theirs.id))
    assert await store.asave(store_key(theirs.id), sealed._replace(version=target.version + 1), expected_version=target.version)
    assert (await manager.aload(_cookie(theirs.id))).is_new
    # a header edited at rest (a creation time moved ahead to outlive the absolute timeout) does not open either
    head_end = len(FRAME) + 2 + int.from_bytes(sealed.data[len(FRAME) : len(FRAME) + 2], "big")
    header = sealed.data[len(FRAME) + 2 : head_end]
    edited = header.replace(b'"c":1', b'"c":2', 1)  # still valid JSON, 30 years ahead
    assert edited != header
    forged = sealed.data[: len(FRAME)] + len(edited).to_bytes(2, "big") + edited + sealed.data[head_end:]
    assert await store.asave(
        store_key(mine.id), sealed._replace(data=forged, version=sealed.version + 1), expected_version=sealed.version
    )
    assert (await manager.aload(_cookie(mine.id))).is_new
    assert rejected == ["corrupt", "corrupt"]


async def test_keys_rotate_first_seals_every_one_opens(store: Any, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    before = _sealing(store, clock, OLD)
    session = before.new_session()
    session["n"] = 1
    await before.acommit(session)
    rotating = _sealing(store, clock, NEW, OLD)  # NEW seals from now on; OLD still opens
    loaded = await rotating.aload(_cookie(session.id))
    assert loaded == {"n": 1}
    loaded["n"] = 2
    await rotating.acommit(loaded)
    assert (await _sealing(store, clock, NEW).aload(_cookie(session.id))) == {"n": 2}  # resealed under NEW
    untouched = before.new_session()
    untouched["n"] = 3
    await before.acommit(untouched)
    after = _sealing(store, clock, NEW)  # OLD removed: what only it sealed reads as no session
    rejected: list[object] = []
    after.events.on_reject(lambda event: rejected.append(event.detail))
    with caplog.at_level(logging.INFO, logger="coatcheck.security"):
        assert (await after.aload(_cookie(untouched.id))).is_new
    assert rejected == ["unknown_key"]
    assert after.handle(untouched) in caplog.text and untouched.id not in caplog.text
    assert "no longer among encryption_keys" in caplog.text


async def test_plain_records_open_only_while_accepted_and_are_sealed_when_next_written(store: Any, clock: FakeClock) -> None:
    plain = SessionManager(store, clock=clock)
    session = plain.new_session()
    session["card"] = SECRET
    await plain.acommit(session)
    assert SECRET.encode() in await dump(store)
    strict = _sealing(store, clock, NEW)
    rejected: list[object] = []
    strict.events.on_reject(lambda event: rejected.append(event.detail))
    assert (await strict.aload(_cookie(session.id))).is_new  # a plain record could be a planted one
    assert rejected == ["unsealed"]
    migrating = SessionManager(store, config=SessionConfig(encryption_keys=[NEW], accept_unsealed=True), clock=clock)
    loaded = await migrating.aload(_cookie(session.id))
    assert loaded == {"card": SECRET}
    loaded["more"] = 1
    await migrating.acommit(loaded)
    assert SECRET.encode() not in await dump(store)
    assert await strict.aload(_cookie(session.id)) == {"card": SECRET, "more": 1}
    assert (await plain.aload(_cookie(session.id))).is_new  # without the keys, a sealed record is no session


async def test_a_store_writer_can_neither_downgrade_nor_move_a_session_to_another_user(store: Any, clock: FakeClock) -> None:
    manager = _sealing(store, clock, NEW, devices=True)
    rejected: list[object] = []
    manager.events.on_reject(lambda event: rejected.append(event.detail))
    mallory = manager.new_session()
    mallory.login("mallory")
    await manager.acommit(mallory)
    key = store_key(mallory.id)
    sealed = await store.aload(key)
    # the same sealed bytes, filed under another user: the user is bound into the seal
    moved = Record(sealed.data, sealed.expires_at, sealed.version + 1, "admin")
    assert await store.asave(key, moved, expected_version=sealed.version)
    assert (await manager.aload(_cookie(mallory.id))).is_new
    # a plain record planted under the session's key: refused, however well-formed
    planted = Record(_codec.encode(clock.now, {"role": "admin"}), sealed.expires_at, sealed.version + 2, "admin")
    assert await store.asave(key, planted, expected_version=sealed.version + 1)
    assert (await manager.aload(_cookie(mallory.id))).is_new
    # a framed record without a key ID, and one cut short after its header
    head = b'{"c":%d}' % int(clock.now)
    for body in (_codec.encode(clock.now, {"role": "admin"}), b"abc"):
        header = head if body != b"abc" else b'{"c":%d,"k":"%s"}' % (int(clock.now), manager.records.sealer.seal_id.encode())  # type: ignore[union-attr]
        framed = FRAME + len(header).to_bytes(2, "big") + header + body
        current = await store.aload(key)
        assert await store.asave(
            key, Record(framed, sealed.expires_at, current.version + 1, "admin"), expected_version=current.version
        )
        assert (await manager.aload(_cookie(mallory.id))).is_new
    assert rejected == ["corrupt", "unsealed", "unsealed", "corrupt"]


def test_a_rotation_by_parts_seals_the_new_record_for_the_new_id() -> None:
    clock = FakeClock()
    manager = _sealing(NoRotateStore(MemoryStore(clock=clock)), clock, NEW)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    loaded = manager.load(_cookie(session.id))
    loaded.rotate()
    manager.commit(loaded)
    assert loaded.id != session.id
    assert manager.load(_cookie(loaded.id)) == {"a": 1}
    assert manager.load(_cookie(session.id)).is_new


def test_max_size_counts_the_data_not_the_seal() -> None:
    manager = SessionManager(MemoryStore(), config=SessionConfig(encryption_keys=[NEW], max_size=100))
    session = manager.new_session()
    session["a"] = "x" * 50  # fits: the seal's own bytes (header, nonce, tag) do not count against max_size
    manager.commit(session)
    assert manager.load(_cookie(session.id)) == {"a": "x" * 50}
    assert len(manager.store.load(store_key(session.id)).data) > 100


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([b"short"], "at least 32 bytes"),
        ([NEW, NEW], "same secret twice"),
        (NEW, "a list of secrets"),
        ([42], "bytes or str secrets"),
    ],
)
def test_bad_keys_fail_at_startup(keys: Any, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        SessionConfig(encryption_keys=keys)


def test_a_str_secret_is_taken_as_utf8() -> None:
    manager = SessionManager(MemoryStore(), config=SessionConfig(encryption_keys=["k" * 32]))
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    bytes_keyed = SessionManager(manager.store, config=SessionConfig(encryption_keys=[b"k" * 32]))
    assert bytes_keyed.load(_cookie(session.id)) == {"a": 1}


def test_without_the_crypto_extra_the_manager_refuses_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cryptography.hazmat.primitives.ciphers.aead", None)
    with pytest.raises(ConfigurationError, match=r"pip install 'coatcheck\[crypto\]'"):
        SessionManager(MemoryStore(), config=SessionConfig(encryption_keys=[NEW]))


def test_a_plain_record_is_never_mistaken_for_a_framed_one() -> None:
    """The frame's first byte is NUL: never the start of a JSON envelope, the tombstone or a claim."""
    record = Record(b'{"v":1,"c":1,"d":{}}', 0.0, 1)
    assert not record.data.startswith(FRAME) and FRAME[0] == 0


@pytest.mark.parametrize("created", [b"1" + b"0" * 400, b"NaN", b'"soon"'])
def test_a_creation_time_that_is_no_finite_number_reads_as_no_session(created: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """Python's own JSON reads 1e400 digits as an int too large for a float, and NaN as a float."""
    monkeypatch.setattr(_codec, "fast_json", None)
    clock = FakeClock()
    store = MemoryStore(clock=clock)
    manager = SessionManager(store, config=SessionConfig(devices=True), clock=clock)
    session = manager.new_session()
    session.login("alice")
    manager.commit(session)
    for raw in (
        b'{"v":1,"c":%s,"d":{}}' % created,  # a plain record
        FRAME + len(b'{"c":%s}' % created).to_bytes(2, "big") + b'{"c":%s}' % created + _codec.encode(clock.now, {}),
    ):
        current = store.load(store_key(session.id))
        assert current is not None
        store.save(
            store_key(session.id), Record(raw, current.expires_at, current.version + 1, "alice"), expected_version=current.version
        )
        assert manager.list_sessions("alice") == []  # skipped, not a crash of the listing
        if raw.startswith(b"{"):
            assert manager.load(_cookie(session.id)).is_new
