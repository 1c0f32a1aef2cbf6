"""Property-based tests (hypothesis) of what faces the client and what reaches the store.

* The Cookie parser never raises, finds only well-formed IDs, never lets one bad pair hide the
  session cookie, and takes time linear in the header's size.
* The Set-Cookie builder either refuses a configuration when it is built or emits a header with
  no CR, LF or other control character, whose value is the session ID.
* The codec: every value a session accepts comes back equal, type included, with either JSON
  encoder; every value it does not accept is refused with TypeError or ValueError.

Examples are derandomized (the same every run: see the profiles in tests/conftest.py).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from coatcheck import ConfigurationError, CookieConfig, Session, SessionManager, _codec, _cookies, _core
from coatcheck._ids import ID_LENGTH, is_valid_id, new_session_id
from coatcheck.stores.memory import MemoryStore
from coatcheck.testing import FakeClock

NAME = "sessionid"
ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

session_ids = st.text(alphabet=ID_ALPHABET, min_size=ID_LENGTH, max_size=ID_LENGTH)
# Anything a client can put in a Cookie header (latin-1, as servers decode it), weighted towards
# the characters that matter to the parser.
header_text = st.text(alphabet=st.sampled_from(list(';= \t"\\,%$\x00\r\nsessionidA_-') + [chr(c) for c in range(0x20, 0x100)]))
junk_pairs = st.lists(header_text, max_size=20).map("; ".join)


@given(header_text)
def test_cookie_parser_never_raises_and_finds_only_well_formed_ids(header: str) -> None:
    candidates = _cookies.cookie_candidates([header], NAME)
    assert len(candidates) <= _cookies.MAX_COOKIE_CANDIDATES
    assert all(is_valid_id(value) for value in candidates)
    assert len(set(candidates)) == len(candidates)


@given(st.lists(junk_pairs, max_size=3), session_ids, junk_pairs, st.sampled_from(["; ", ";", " ; "]))
def test_one_bad_pair_never_hides_the_session_cookie(before: list[str], session_id: str, after: str, glue: str) -> None:
    """Whatever the other pairs hold (unterminated quotes, nameless pairs, bare '=', control
    characters), the session cookie is found, unless the header already offers the maximum
    number of well-formed candidates before it."""
    header = glue.join([*before, f"{NAME}={session_id}", after])
    ahead = _cookies.cookie_candidates([glue.join(before)], NAME)
    assume(session_id not in ahead and len(ahead) < _cookies.MAX_COOKIE_CANDIDATES)
    assert session_id in _cookies.cookie_candidates([header], NAME)


@pytest.mark.parametrize(
    "unit",
    [
        '\\"',  # CVE-2024-7592: quadratic unquoting of backslash escapes in http.cookies
        "sessionid=",  # many empty session pairs
        " ",  # whitespace the pattern skips
        "sessionid=" + "A" * 43 + ";",  # many well-formed candidates
        "=sessionid=x;",  # nameless pairs
    ],
)
def test_cookie_parsing_time_is_linear_in_the_header_size(unit: str) -> None:
    """8x the header costs far less than 64x the time (a quadratic parser's ratio)."""

    def cost(size: int) -> float:
        header = "x=1; " + unit * (size // len(unit))
        best = math.inf
        for _ in range(5):  # the best of five runs: a busy machine only ever adds time
            start = time.perf_counter()
            _cookies.cookie_candidates([header], NAME)
            best = min(best, time.perf_counter() - start)
        return best

    small, large = cost(8 * 1024), cost(64 * 1024)
    assert large < max(small, 1e-5) * 24, (small, large)


cookie_names = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x17F), min_size=0, max_size=40)
cookie_paths = st.one_of(st.just("/"), st.text(min_size=0, max_size=40).map(lambda text: "/" + text), st.text(max_size=10))
cookie_domains = st.one_of(st.none(), st.text(max_size=30), st.sampled_from(["example.com", ".example.com", "a-b.c"]))


@given(cookie_names, cookie_paths, cookie_domains, st.sampled_from([True, False, "auto"]), st.booleans())
def test_set_cookie_builder_refuses_at_construction_or_emits_a_clean_header(
    name: str, path: str, domain: str | None, secure: Any, persistent: bool
) -> None:
    try:
        cookie = CookieConfig(name=name, path=path, domain=domain, secure=secure, persistent=persistent)
    except ConfigurationError:
        return
    session_id = new_session_id()
    for https in (True, False):
        attributes = _cookies.cookie_attributes(cookie, secure=_cookies.wants_secure(cookie, "https" if https else "http"))
        for header in (
            _cookies.set_cookie_header(cookie, session_id, 1800, attributes),
            _cookies.clear_cookie_header(cookie, attributes),
        ):
            assert not re.search(r"[\x00-\x1f\x7f]", header), header
            pairs = [part.strip() for part in header.split(";")]
            assert pairs[0] in (f"{name}={session_id}", f"{name}=")
            assert f"Path={path}" in pairs and ("Domain=" + domain in pairs if domain else not any("Domain" in p for p in pairs))
            assert len(header.encode()) <= 4096


# -- the codec ---------------------------------------------------------------------------------------

json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
)
json_values = st.recursive(
    json_leaves, lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5), max_leaves=30
)
any_values = st.recursive(
    json_leaves
    | st.integers()
    | st.floats()
    | st.binary(max_size=5)
    | st.text(alphabet=st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), min_size=1, max_size=2)
    | st.sampled_from([object(), {1, 2}, frozenset(), 1j]),
    lambda children: (
        st.lists(children, max_size=4)
        | st.tuples(children, children)
        | st.dictionaries(st.one_of(st.text(), st.integers(), st.booleans()), children, max_size=4)
    ),
    max_leaves=20,
)


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same type all the way down (``1 == 1.0 == True`` does not count)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[key], b[key]) for key in a)
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


@pytest.fixture(params=["orjson", "stdlib"])
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "stdlib":
        monkeypatch.setattr(_codec, "fast_json", None)
    return str(request.param)


@given(value=json_values)
def test_every_accepted_value_comes_back_equal_type_included(codec: str, value: Any) -> None:
    _codec.encode_value(value)
    _, data = _codec.decode(_codec.encode(1.5, {"k": value}))
    assert same(data["k"], value)


@given(value=any_values)
def test_a_value_is_refused_when_set_or_comes_back_exactly(codec: str, value: Any) -> None:
    session = Session(id_factory=new_session_id, max_size=1 << 20)
    refused: TypeError | None = None
    try:
        session["k"] = value
    except TypeError as exc:
        refused = exc
    if refused is not None:
        assert "session['k']" in str(refused) and "k" not in session
    else:
        _, data = _codec.decode(_codec.encode(1.5, dict(session)))
        assert same(data["k"], value)


# What a request can do to its session, as (name, action) pairs: the commit has something to do
# after most of them, and nothing after the rest.
session_actions = st.lists(
    st.sampled_from(
        [
            ("read", lambda s: s.get("a")),
            ("set", lambda s: s.__setitem__("a", 1)),
            ("set other", lambda s: s.update(b=[1])),
            ("delete", lambda s: s.pop("a", None)),
            ("clear", lambda s: s.clear()),
            ("rotate", lambda s: s.rotate()),
            ("login", lambda s: s.login("alice")),
            ("logout", lambda s: s.logout()),
            ("id", lambda s: s.id),
            ("read list", lambda s: s.get("seed")),
            ("append", lambda s: s["seed"].append(2) if isinstance(s.get("seed"), list) else None),
        ]
    ),
    max_size=6,
)


@given(session_actions, st.booleans(), st.booleans(), st.sampled_from([0.0, 30.0, 400.0, 4000.0]))
def test_nothing_to_commit_means_the_commit_does_nothing(
    actions: list[tuple[str, Any]], stored: bool, keep: bool, later: float
) -> None:
    """The integrations skip the commit of a session for which ``_core.nothing_to_commit``: the
    commit's own flow must then have nothing to do either, whatever the response, ``later``
    seconds on."""
    clock = FakeClock(1_000_000.0)
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    session = manager.new_session()
    if stored:
        session["seed"] = [1]
        manager.commit(session)
        session = manager.load(f"sessionid={session.id}")
    for _, action in actions:
        action(session)
    clock.advance(later)
    flow = _core.commit_flow(
        session, manager.config, clock(), keep_changes=keep, capabilities=frozenset(), records=manager.records
    )
    if _core.nothing_to_commit(session, manager.config, clock):
        assert flow is None
        assert manager._skips_commit(session)
        subscribed = SessionManager(MemoryStore(), clock=clock)
        subscribed.events.on_commit(lambda event: None)
        assert not subscribed._skips_commit(session)  # a subscriber hears the commit's "unchanged"
    elif keep and actions and actions[-1][0] in ("set", "set other", "login"):
        assert flow is not None
    elif keep and stored and [name for name, _ in actions] == ["append"]:
        assert flow is not None  # a list changed in place is saved


def test_a_session_has_nothing_to_commit_until_written_asked_something_or_due_for_a_refresh() -> None:
    clock = FakeClock(1_000_000.0)
    manager = SessionManager(MemoryStore(clock=clock), clock=clock)
    assert _core.nothing_to_commit(manager.new_session(), manager.config, clock)
    touches: list[Callable[[Session], object]] = [
        lambda s: s.__setitem__("a", 1),
        lambda s: s.login("alice"),
        lambda s: s.logout(),
    ]
    for touch in touches:
        session = manager.new_session()
        touch(session)
        assert not _core.nothing_to_commit(session, manager.config, clock)
    session = manager.new_session()
    session["a"] = [1]
    manager.commit(session)
    loaded = manager.load(f"sessionid={session.id}")
    assert _core.nothing_to_commit(loaded, manager.config, clock)
    assert loaded["a"] == [1]  # a list read may be changed in place: no longer idle
    assert not _core.nothing_to_commit(loaded, manager.config, clock)
    loaded = manager.load(f"sessionid={session.id}")
    clock.advance(manager.config.touch_seconds + 1)
    assert not _core.nothing_to_commit(loaded, manager.config, clock)  # the expiry is due to move
