"""The Session mapping: JSON values, size limit, change tracking, lifecycle requests."""

from __future__ import annotations

import math

import pytest

from coatcheck import Session, SessionConfig, SessionManager, SessionTooLargeError
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
