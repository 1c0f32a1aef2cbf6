"""The Session mapping: JSON values, size limit, change tracking, lifecycle requests."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest

from coatcheck import Session, SessionConfig, SessionManager, SessionTooLargeError, _codec
from coatcheck._ids import new_session_id
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock


def new(max_size: int = 64 * 1024) -> Session:
    return Session(new_session_id(), id_factory=new_session_id, max_size=max_size)


@pytest.mark.parametrize("value", [object(), {1, 2}, b"bytes", math.nan, {"nested": [object()]}])
def test_non_json_values_raise_type_error_naming_the_key(value: object) -> None:
    session = new()
    with pytest.raises(TypeError, match=r"session\['cart'\]"):
        session["cart"] = value
    assert "cart" not in session
    assert not session.modified


def test_keys_must_be_strings() -> None:
    with pytest.raises(TypeError, match="keys must be str"):
        new()[1] = "x"  # type: ignore[index]


def test_oversized_session_raises_when_set_and_keeps_the_old_value() -> None:
    session = new(max_size=200)
    session["a"] = "x" * 50
    with pytest.raises(SessionTooLargeError, match=r"session\['b'\].*max_size=200"):
        session["b"] = "y" * 300
    assert dict(session) == {"a": "x" * 50}
    session["a"] = "z" * 100  # overwriting within the limit is fine
    assert session["a"] == "z" * 100


def test_oversized_session_through_in_place_growth_raises_at_commit() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), config=SessionConfig(max_size=256), clock=clock)
    session = manager.new_session()
    session["items"] = []
    manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    loaded["items"].extend(["x" * 50] * 10)
    with pytest.raises(SessionTooLargeError):
        manager.commit(loaded)


def test_in_place_mutation_of_a_read_value_is_a_change() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    session = manager.new_session()
    session["cart"] = [1]
    session["prefs"] = {"theme": "dark"}
    manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    assert not loaded.modified
    loaded["cart"].append(2)
    assert loaded.modified
    loaded.get("prefs", {})["theme"] = "light"
    manager.commit(loaded)
    assert dict(manager.load(f"sessionid={session.id}")) == {"cart": [1, 2], "prefs": {"theme": "light"}}


def test_reading_without_changing_is_not_a_change() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    session = manager.new_session()
    session["cart"] = [1]
    manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    assert loaded["cart"] == [1]
    assert list(loaded.items()) == [("cart", [1])]
    assert not loaded.modified


def test_logout_of_a_new_session_requests_nothing() -> None:
    session = new()
    session["a"] = 1
    session.logout()
    assert not session.modified
    assert session.is_new and dict(session) == {}


def test_login_as_another_user_clears_the_data() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    session = manager.new_session()
    session.login("alice")
    session["secret"] = "alice's"
    manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    loaded.login("bob")
    assert dict(loaded) == {}
    manager.commit(loaded)
    assert manager.load(f"sessionid={loaded.id}").user_id == "bob"


@pytest.mark.parametrize("user_id", ["", "x" * 256, None, 5])
def test_login_needs_a_sensible_user_id(user_id: object) -> None:
    with pytest.raises(ValueError, match="user_id"):
        new().login(user_id)  # type: ignore[arg-type]


def test_repr_shows_no_session_id() -> None:
    session = new()
    session["a"] = 1
    assert session.id not in repr(session)
    assert repr(session) == "<Session new user_id=None keys=['a']>"


def test_login_restarts_the_absolute_timeout_but_rotate_does_not() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    session = manager.new_session()
    session["a"] = 1
    manager.commit(session)
    created = session.created_at
    clock.advance(600)
    loaded = manager.load(f"sessionid={session.id}")
    loaded.rotate()
    manager.commit(loaded)
    assert loaded.created_at == created
    clock.advance(600)
    again = manager.load(f"sessionid={loaded.id}")
    again.login("alice")
    manager.commit(again)
    assert again.created_at == clock()


# -- a dict wherever a dict is taken -----------------------------------------------------------------


def test_a_session_is_a_dict_that_json_encoders_take() -> None:
    import json

    from starlette.responses import JSONResponse

    session = new()
    session.update({"cart": [1, 2], "user": {"name": "alice"}})
    assert isinstance(session, dict)
    assert json.loads(json.dumps(session)) == {"cart": [1, 2], "user": {"name": "alice"}}
    assert json.loads(bytes(JSONResponse({"session": session}).body)) == {"session": {"cart": [1, 2], "user": {"name": "alice"}}}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s.update({"b": 2}, c=3), {"a": [1], "b": 2, "c": 3}),
        (lambda s: s.__ior__({"b": 2}), {"a": [1], "b": 2}),
        (lambda s: s.setdefault("b", 2), {"a": [1], "b": 2}),
        (lambda s: s.pop("a"), {}),
        (lambda s: s.popitem(), {}),
        (lambda s: s.get("a").append(2), {"a": [1, 2]}),
        (lambda s: next(iter(s.values())).append(2), {"a": [1, 2]}),
        (lambda s: next(iter(s.items()))[1].append(2), {"a": [1, 2]}),
        (lambda s: s.copy()["a"].append(2), {"a": [1, 2]}),
        (lambda s: s.clear(), {}),
    ],
    ids=[
        "update",
        "ior",
        "setdefault",
        "pop",
        "popitem",
        "get-in-place",
        "values-in-place",
        "items-in-place",
        "copy-in-place",
        "clear",
    ],
)
def test_every_dict_method_is_tracked_and_saved(change: Any, expected: dict[str, Any]) -> None:
    """A change through any dict method (or in place, through a value any of them returned) is
    committed and merged like ``session[key] = value``."""
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    created = manager.new_session()
    created["a"] = [1]
    manager.commit(created)
    session = manager.load(f"sessionid={created.id}")
    change(session)
    assert session.modified
    manager.commit(session)
    assert manager.load(f"sessionid={created.id}").copy() == expected


def test_reading_through_any_dict_method_marks_the_session_accessed() -> None:
    for read in (len, list, dict, lambda s: "a" in s, lambda s: s.get("a"), lambda s: s == {}, lambda s: s.copy()):
        session = new()
        assert not session.accessed
        read(session)
        assert session.accessed


def test_a_pickled_session_would_lose_its_tracking_so_pickling_is_refused() -> None:
    import pickle

    with pytest.raises(TypeError, match=r"dict\(session\)"):
        pickle.dumps(new())


class BytesCodec(_codec.JSONCodec):
    """A codec that also takes bytes, stored as {"b": latin-1 text}: an integration's kind of codec."""

    def _wrap(self, value: Any) -> Any:
        if isinstance(value, bytes):
            return {"b": value.decode("latin-1")}
        if isinstance(value, list):
            return [self._wrap(item) for item in value]
        return value

    def _unwrap(self, value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"b"}:
            return value["b"].encode("latin-1")
        if isinstance(value, list):
            return [self._unwrap(item) for item in value]
        return value

    def check(self, value: Any) -> bytes:
        return super().check(self._wrap(value))

    def encode(self, created_at: float, data: Mapping[str, Any]) -> bytes:
        return super().encode(created_at, {key: self._wrap(value) for key, value in data.items()})

    def decode(self, raw: bytes) -> tuple[float, dict[str, Any]]:
        created_at, data = super().decode(raw)
        return created_at, {key: self._unwrap(value) for key, value in data.items()}


def test_a_codec_decides_which_values_a_session_takes_and_they_come_back_exactly() -> None:
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock, codec=BytesCodec())
    session = manager.new_session()
    session["raw"] = [b"\x00\xff", "text"]
    manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    assert loaded["raw"] == [b"\x00\xff", "text"]
    loaded["raw"].append(b"more")  # in place: tracked through the codec's encoding
    manager.commit(loaded)
    assert manager.load(f"sessionid={session.id}")["raw"] == [b"\x00\xff", "text", b"more"]
    with pytest.raises(TypeError):
        loaded["set"] = {1}


def test_committing_reads_nothing_through_the_tracked_methods() -> None:
    """The manager reads the content for encoding and merging without marking the session
    accessed or snapshotting its values (a dict's copy of a subclass would call ``__iter__``)."""
    clock = FakeClock()
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    created = manager.new_session()
    created["cart"] = [1]
    created["n"] = 1
    manager.commit(created)
    session = manager.load(f"sessionid={created.id}")
    other = manager.load(f"sessionid={created.id}")
    other["n"] = 2
    manager.commit(other)
    session._snapshots.clear()
    session._accessed = False
    assert session._plain() == {"cart": [1], "n": 1}
    session._dirty.add("x")  # a change to merge, so the commit runs the whole write path
    manager.commit(session)
    assert not session.accessed and session._snapshots == {}
