"""``TaggedJSONCodec``: every value it accepts comes back from the record bytes equal, type
included, at any depth; anything else is refused when set, naming the key; a malformed record
reads as no session; plain coatcheck JSON records stay readable."""

from __future__ import annotations

import json
from collections import OrderedDict, namedtuple
from datetime import date, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from markupsafe import Markup

from coatcheck import SessionValueError, _codec
from coatcheck._codec import JSON, CorruptRecordError
from coatcheck.flask import CODEC, FlaskSession
from coatcheck.session import Session
from tests.integrations.flask.apps import TAGGED, same

LOOKALIKES = [" t", " di", " b", " m", " u", " dt", " d", " t__", " di__", "x__"]  # keys that look like tags
offsets = st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
zones: st.SearchStrategy[tzinfo | None] = st.none() | st.just(timezone.utc) | st.builds(timezone, offsets)
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
    | st.builds(Markup, st.text())
    | st.uuids()
    | st.datetimes(timezones=zones)
)
keys = st.sampled_from(LOOKALIKES) | st.text(max_size=8)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple) | st.dictionaries(keys, inner, max_size=4),
    max_leaves=24,
)


@given(st.dictionaries(keys, values, max_size=6))
def test_every_accepted_value_comes_back_equal_type_included(data: dict[str, Any]) -> None:
    for value in data.values():
        CODEC.check(value)
    created_at, decoded = CODEC.decode(CODEC.encode(1700000000.5, data))
    assert created_at == 1700000000.5
    assert same(decoded, data)


def test_the_apps_tagged_values_come_back() -> None:
    _, decoded = CODEC.decode(CODEC.encode(0.0, TAGGED))
    assert same(decoded, TAGGED)


def test_the_record_is_flasks_tagged_json_in_a_versioned_envelope() -> None:
    raw = CODEC.encode(5.0, {"t": (1, b"\x00"), "m": Markup("<i>"), "d": {" t": 1}})
    assert json.loads(raw) == {
        "v": "flask/1",
        "c": 5.0,
        "d": {"t": {" t": [1, {" b": "AA=="}]}, "m": {" m": "<i>"}, "d": {" di": {" t__": 1}}},
    }


Point = namedtuple("Point", "x y")


class Tagged(str):
    __slots__ = ()


class Opaque(tzinfo):
    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        return None

    def dst(self, dt: datetime | None) -> timedelta | None:
        return None

    def tzname(self, dt: datetime | None) -> str | None:
        return None


class Zone(tzinfo):
    """A zone whose offset depends on the date (as ZoneInfo's): back as a fixed offset, a time in
    its repeated hour would no longer compare equal."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        return timedelta(hours=-4 if dt is not None and dt.month in range(4, 11) else -5)

    def dst(self, dt: datetime | None) -> timedelta:
        return timedelta(0)

    def tzname(self, dt: datetime | None) -> str:
        return "EDT" if self.utcoffset(dt) == timedelta(hours=-4) else "EST"


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (date(2024, 1, 1), "date is neither JSON"),
        (Decimal("1.5"), "Decimal is neither JSON"),
        ({1, 2}, "set is neither JSON"),
        (Point(1, 2), "Point is neither JSON"),
        (OrderedDict(a=1), "OrderedDict is neither JSON"),
        (Tagged("x"), "Tagged is neither JSON"),
        (bytearray(b"x"), "bytearray is neither JSON"),
        (2**64, "outside the 64-bit range"),
        (float("nan"), "is not valid JSON"),
        ({1: "a"}, "dict key 1 is not a str"),
        ([(1, [date(2024, 1, 1)])], "date is neither JSON"),
        (datetime(2024, 1, 1, tzinfo=Opaque()), "would come back with a plain UTC offset"),
        (datetime(2024, 11, 3, 1, 30, fold=1, tzinfo=Zone()), "would come back with a plain UTC offset"),
        (datetime(2024, 1, 1, tzinfo=timezone(timedelta(hours=1), "CET")), "would come back with a plain UTC offset"),
    ],
)
def test_anything_else_is_refused_when_set_naming_the_key(value: Any, reason: str) -> None:
    session = FlaskSession(id_factory=lambda: "x" * 43, max_size=64 * 1024, codec=CODEC)
    with pytest.raises(SessionValueError, match=rf"session\['k'\]: .*{reason}"):
        session["k"] = value
    assert dict(session) == {}


@pytest.mark.parametrize(
    "raw",
    [
        b"\xff not json",
        b"[1]",
        b'{"v": "flask/1", "d": {}}',
        b'{"v": "flask/9", "c": 1, "d": {}}',
        b'{"v": "flask/1", "c": 1, "d": {"k": {" b": 5}}}',
        b'{"v": "flask/1", "c": 1, "d": {"k": {" u": "zz"}}}',
        b'{"v": "flask/1", "c": 1, "d": {"k": {" dt": 5}}}',
        b'{"v": "flask/1", "c": 1, "d": {"k": {" t": 5}}}',
        b'{"v": "flask/1", "c": 1, "d": {"k": {" di": {}}}}',
    ],
)
def test_a_malformed_record_is_refused(raw: bytes) -> None:
    with pytest.raises(CorruptRecordError):
        CODEC.decode(raw)


NOT_FINITE = [b"1" + b"0" * 400, b"1e400", b"-1e400", b"NaN", b"Infinity", b"-Infinity", b"true", b'"1"', b"null"]


@pytest.mark.parametrize("json_library", ["orjson", "stdlib"])
@pytest.mark.parametrize("created", NOT_FINITE)
def test_a_creation_time_that_is_not_a_finite_number_is_refused(
    created: bytes, json_library: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The standard library's JSON (without the fast extra) reads NaN, infinities and huge integers."""
    if json_library == "stdlib":
        monkeypatch.setattr(_codec, "fast_json", None)
    for version in (b'"flask/1"', b"1"):
        with pytest.raises(CorruptRecordError):
            CODEC.decode(b'{"v":' + version + b',"c":' + created + b',"d":{}}')


def test_plain_json_records_are_read_as_they_are_and_the_json_codec_refuses_tagged_ones() -> None:
    plain = JSON.encode(7.0, {"k": {" t": [1, 2]}})  # written by coatcheck.wsgi, say
    assert CODEC.decode(plain) == (7.0, {"k": {" t": [1, 2]}})
    with pytest.raises(CorruptRecordError):
        JSON.decode(CODEC.encode(7.0, {"k": (1, 2)}))  # never misread as a dict


def test_a_flask_session_is_a_coatcheck_session_and_a_flask_one() -> None:
    from flask.sessions import SessionMixin

    session = FlaskSession(id_factory=lambda: "x" * 43, max_size=64 * 1024, codec=CODEC)
    assert isinstance(session, Session) and isinstance(session, SessionMixin) and isinstance(session, dict)
    session["t"] = (1, 2)
    assert session.permanent is False and session.new is True
    session.permanent = True
    assert session.permanent is True and session["_permanent"] is True
