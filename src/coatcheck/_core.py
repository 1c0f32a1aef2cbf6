"""The decisions, with no I/O: expiry, and the load, commit and adoption flows (cookies are in ``_cookies``).

A flow is a generator that yields store operations (:mod:`coatcheck._ops`) and receives their
results; ``SessionManager`` drives it against a sync or an async store with the one pair of
drivers in ``_ops``. The logic exists once.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import random
from collections.abc import Callable, Generator
from typing import Any, NamedTuple

from . import _codec
from ._codec import FRAME
from ._ids import handle_of_key, is_valid_id, log_handle, store_key
from ._logs import security_log
from ._ops import Capabilities, Delete, Load, Operation, Pause, Rotate, Save, Touch
from ._record import Record
from .config import SessionConfig
from .devices import Client
from .errors import ConcurrentUpdateError, SessionInterruptedError, SessionTooLargeError
from .legacy import report_bad_value
from .session import NO_REQUESTS, Session, Stored

MAX_CLOCK_SKEW = 300.0  # seconds a record's creation time may lie ahead of this server's clock


# -- the flows --------------------------------------------------------------------------------


MAX_BACKOFF = 0.25  # seconds: wide enough to spread dozens of writers that each wait for a pool


def backoff(attempt: int) -> Pause:
    """A random pause before compare-and-set retry ``attempt`` (1-based): up to 2 ms, doubling
    with each retry up to :data:`MAX_BACKOFF`, so writers that keep colliding spread out."""
    return Pause(random.uniform(0, min(MAX_BACKOFF, 0.001 * 2**attempt)))  # noqa: S311 - jitter, not security


def deadline(config: SessionConfig, created_at: float, now: float) -> float:
    """The record's expiry: the idle deadline, capped by the absolute one."""
    return min(now + config.idle_seconds, created_at + config.absolute_seconds)


Rejected = Callable[[str, str | None], None]
"""Told of each session ID a load refuses: the reason (``unknown``, ``expired``, ``corrupt``,
``unknown_key``, ``unsealed``, ``future``, ``malformed``) and the ID's handle (None for a
malformed value)."""


def _live(
    session_id: str, config: SessionConfig, now: float, records: _codec.RecordFormat, rejected: Rejected | None = None
) -> Generator[Operation[Any], Any, tuple[Stored, dict[str, Any]] | None]:
    """Load the record of ``session_id``: its :class:`Stored` and data if it is a live session."""
    key = store_key(session_id)
    record: Record | None = yield Load(key)
    reason: str
    if record is None or record.data == _codec.TOMBSTONE:
        security_log(logging.INFO, "unknown, expired or rotated session ID (sha256 %s)", log_handle(session_id))
        reason = "unknown"
    else:
        try:
            if not records.accept_unsealed or record.data.startswith(FRAME):
                created_at, data, meta = records.unpack(session_id, key, record.user_id, record.data)
            else:  # a plain record, where one is accepted: every record, unless devices or sealing are on
                created_at, data = records.codec.decode(record.data)
                meta = None
        except (_codec.UnknownKeyError, _codec.UnsealedRecordError) as exc:
            security_log(logging.WARNING, "session record ignored (sha256 %s): %s", log_handle(session_id), exc)
            reason = "unknown_key" if isinstance(exc, _codec.UnknownKeyError) else "unsealed"
        except _codec.CorruptRecordError as exc:
            security_log(logging.WARNING, "corrupt session record ignored (sha256 %s): %s", log_handle(session_id), exc)
            reason = "corrupt"
        else:
            if created_at > now + MAX_CLOCK_SKEW:  # a record claiming a future creation would outlive the absolute timeout
                security_log(logging.WARNING, "session record created in the future ignored (sha256 %s)", log_handle(session_id))
                reason = "future"
            elif min(record.expires_at, created_at + config.absolute_seconds) <= now:
                security_log(logging.INFO, "expired session ID (sha256 %s)", log_handle(session_id))
                reason = "expired"
            else:
                return Stored(key, record.data, record.version, created_at, record.expires_at, record.user_id, meta), data
    if rejected is not None:
        rejected(reason, handle_of_key(key))
    return None


def load_flow(
    candidates: list[str],
    config: SessionConfig,
    now: float,
    make_session: Callable[[str | None], Session],
    records: _codec.RecordFormat,
    rejected: Rejected | None = None,
) -> Generator[Operation[Any], Any, Session]:
    """Load the first candidate ID that names a live session; otherwise a fresh session.

    Unknown, expired and corrupt records never make their ID adopted (strict mode). When a
    request carries several well-formed session cookies, the first live one wins and any other
    live one is logged as a security event (a cookie tossed from a sibling domain, or a path
    overlap); the others cost a store read only in that case.
    """
    for position, session_id in enumerate(candidates):
        found = yield from _live(session_id, config, now, records, rejected)
        if found is None:
            continue
        for other in candidates[position + 1 :]:
            if (yield from _live(other, config, now, records)) is not None:
                security_log(
                    logging.WARNING,
                    "several live session cookies in one request; the first was used (sha256 %s, also %s)",
                    log_handle(session_id),
                    log_handle(other),
                )
        session = make_session(session_id)
        session._settle(*found)
        return session
    return make_session(None)


class CommitResult(NamedTuple):
    """What a commit means for the response: a cookie to set (ID, max-age) or to clear."""

    session_id: str | None = None
    max_age: int = 0
    clear: bool = False
    conflicts: int = 0  # compare-and-set conflicts met (and merged) on the way


NOTHING = CommitResult()  # no cookie to set or clear


def _result(session: Session, expires_at: float, now: float) -> CommitResult:
    return CommitResult(session_id=session._current_id(), max_age=max(0, int(expires_at - now)))


def nothing_to_commit(session: Session, config: SessionConfig, clock: Callable[[], float]) -> bool:
    """Whether :func:`commit_flow` has nothing to do for ``session`` now, whatever the response:
    it was asked nothing (no login, logout or legacy cookie owed), and it is new and holds
    nothing, or it is stored, nothing in it may have changed and its expiry is not due to move.
    Cheap, and conservative: False may still end in nothing to do."""
    if session._requests is not NO_REQUESTS:
        return False
    stored = session._stored
    if stored is None:
        return not dict.__len__(session)
    return not session._maybe_changed() and not _touch_due(stored, config, clock())


def commit_flow(
    session: Session,
    config: SessionConfig,
    now: float,
    *,
    keep_changes: bool,
    capabilities: Capabilities,
    records: _codec.RecordFormat,
    client: Client | None = None,
) -> Generator[Operation[Any], Any, CommitResult] | None:
    """The flow that persists what this request did to ``session`` and says what the cookie
    becomes, or None when there is nothing to do (no store call, no cookie). A session whose
    browser does not hold its ID yet (adopted from a legacy system) gets its cookie whatever
    the rest of the commit does. ``records`` makes the record bytes; ``client`` is the request's
    browser, for the device metadata a write keeps.
    """
    flow = _commit_flow(session, config, now, keep_changes, capabilities, records, client)
    return flow if not session._requests.cookie_due else _with_cookie(session, flow, now)


def _with_cookie(
    session: Session, flow: Generator[Operation[Any], Any, CommitResult] | None, now: float
) -> Generator[Operation[Any], Any, CommitResult]:
    result = NOTHING if flow is None else (yield from flow)
    session._set_requests(session._requests._replace(cookie_due=False))
    if result.session_id is None and not result.clear and session._stored is not None:
        result = _result(session, session._stored.expires_at, now)
    return result


def _commit_flow(
    session: Session,
    config: SessionConfig,
    now: float,
    keep_changes: bool,
    capabilities: Capabilities,
    records: _codec.RecordFormat,
    client: Client | None,
) -> Generator[Operation[Any], Any, CommitResult] | None:
    """:func:`commit_flow` for a session whose browser holds its ID.

    Writes are compare-and-set on the record version. On a conflict the fresh record is loaded,
    this request's changed keys are re-applied onto it, and the write is retried. A session
    deleted meanwhile (logout, revoke) stays deleted. Changes made while answering a response
    that does not ``keep_changes`` are dropped; a requested logout is applied all the same.
    """
    if session._requests.ended is not None:
        return _destroy(session, config, now, keep_changes, capabilities, records, client)
    if not keep_changes:
        return None
    stored = session._stored
    if stored is None:
        return _create(session, config, now, records, client) if dict.__len__(session) or session._user_id is not None else None
    if session._maybe_changed():
        changed = session._changed_keys()
        if changed or session._requests.rotate or session._requests.login:
            return _write(session, stored, changed, config, now, capabilities, records, client)
    return _touch(session, stored, config, now, capabilities) if _touch_due(stored, config, now) else None


def _touch_due(stored: Stored, config: SessionConfig, now: float) -> bool:
    return deadline(config, stored.created_at, now) - stored.expires_at >= max(config.touch_seconds, 1.0)


def _destroy(
    session: Session,
    config: SessionConfig,
    now: float,
    keep_changes: bool,
    capabilities: Capabilities,
    records: _codec.RecordFormat,
    client: Client | None,
) -> Generator[Operation[Any], Any, CommitResult]:
    """Delete the ended session's record, then persist what the request put in its fresh one."""
    ended = session._requests.ended
    assert ended is not None
    session._set_requests(session._requests._replace(ended=None))
    yield Delete(ended)
    security_log(logging.INFO, "session ended (sha256 %s)", ended[:16])
    rest = commit_flow(session, config, now, keep_changes=keep_changes, capabilities=capabilities, records=records, client=client)
    return CommitResult(clear=True) if rest is None else (yield from rest)


def _record(
    session: Session,
    config: SessionConfig,
    records: _codec.RecordFormat,
    session_id: str | None,
    key: str,
    created_at: float,
    meta: dict[str, Any] | None,
    expires_at: float,
    version: int,
    user_id: str | None,
) -> Record:
    """The record of ``session`` stored under ``key`` as ``session_id`` (None: its own ID),
    sealed for that ID when sealing."""
    raw = records.codec.encode(created_at, session._plain())
    if len(raw) > config.max_size:  # the data, before any framing or sealing
        raise SessionTooLargeError(f"session is {len(raw)} bytes encoded, over max_size={config.max_size}")
    if records.framed:
        raw = records.frame(session._current_id() if session_id is None else session_id, key, user_id, created_at, raw, meta)
    return Record(raw, expires_at, version, user_id)


def _create(
    session: Session, config: SessionConfig, now: float, records: _codec.RecordFormat, client: Client | None
) -> Generator[Operation[Any], Any, CommitResult]:
    expires_at = deadline(config, now, now)
    user_id = session._user_id
    meta = None if records.address_bits is None else records.meta(None, client, now if session._requests.login else None)
    for _ in range(config.max_commit_attempts):
        key = store_key(session._current_id())
        record = _record(session, config, records, None, key, now, meta, expires_at, 1, user_id)
        if (yield Save(key, record, None)):
            session._settle(Stored(key, record.data, 1, now, expires_at, user_id, meta))
            if session._requests.login:  # done: a second commit in this request writes nothing again
                session._set_requests(session._requests._replace(login=False))
            security_log(logging.INFO, "session created (sha256 %s)", key[:16])
            return _result(session, expires_at, now)
        session._change_id_after_collision()  # an ID collision: never overwrite, draw again
    raise ConcurrentUpdateError("could not find an unused session ID")


def _touch(
    session: Session, stored: Stored, config: SessionConfig, now: float, capabilities: Capabilities
) -> Generator[Operation[Any], Any, CommitResult]:
    """Move the expiry of an unchanged session (the caller checked that a refresh is due)."""
    expires_at = deadline(config, stored.created_at, now)
    if Touch in capabilities:
        if (yield Touch(stored.key, expires_at)) is False:
            return NOTHING  # deleted meanwhile (a logout), or refreshed further by a concurrent write
    else:
        record = Record(stored.raw, expires_at, stored.version + 1, stored.user_id)
        if not (yield Save(stored.key, record, stored.version)):
            return NOTHING  # a concurrent write already refreshed (or deleted) it
    session._settle(stored.expiring_at(expires_at))
    return _result(session, expires_at, now)


def _write(
    session: Session,
    stored: Stored,
    changed: set[str],
    config: SessionConfig,
    now: float,
    capabilities: Capabilities,
    records: _codec.RecordFormat,
    client: Client | None,
) -> Generator[Operation[Any], Any, CommitResult]:
    requests = session._requests
    old_key, login, user_id = stored.key, requests.login, session._user_id
    created_at = now if login else stored.created_at
    new_id = session._draw_id() if requests.rotate else None
    for attempt in range(config.max_commit_attempts):
        if attempt:
            yield backoff(attempt)
        meta = None if records.address_bits is None else records.meta(stored.meta, client, now if login else None)
        # The expiry, and with it the cookie, moves at most once per touch_interval: a write
        # between two refreshes keeps it and sends no Set-Cookie (a new ID always does).
        renew = requests.rotate or login or _touch_due(stored, config, now)
        expires_at = deadline(config, created_at, now) if renew else stored.expires_at
        version = stored.version + 1
        if new_id is None:
            new_key, record = (
                old_key,
                _record(session, config, records, None, old_key, created_at, meta, expires_at, version, user_id),
            )
            saved = yield Save(old_key, record, stored.version)
        elif Rotate in capabilities:
            new_key = store_key(new_id)
            record = _record(session, config, records, new_id, new_key, created_at, meta, expires_at, version, user_id)
            saved = yield Rotate(old_key, new_key, record, stored.version)
        else:
            claimed = yield from _rotate_by_parts(session, stored, new_id, config, records, created_at, meta, expires_at, user_id)
            saved = claimed is not None
            if claimed is not None:
                new_id, new_key, record = claimed
        if saved:
            if new_id is not None:
                security_log(logging.INFO, "session ID rotated (sha256 %s, now %s)", old_key[:16], new_key[:16])
            session._settle(Stored(new_key, record.data, version, created_at, expires_at, user_id, meta), session_id=new_id)
            if requests.rotate or requests.login:
                session._set_requests(requests._replace(rotate=False, login=False))
            result = _result(session, expires_at, now) if renew else NOTHING
            return result._replace(conflicts=attempt) if attempt else result
        fresh: Record | None = yield Load(old_key)
        if fresh is None and min(stored.expires_at, stored.created_at + config.absolute_seconds) <= now:
            raise _interrupted(session, "expired while this request ran")
        if fresh is None or fresh.data == _codec.TOMBSTONE:
            raise _interrupted(session, "ended or given a new ID by a concurrent request")
        if new_id is not None and fresh.version == stored.version:
            new_id = session._draw_id()  # the new ID collided; the old record is unchanged
            continue
        try:
            fresh_created, fresh_data, fresh_meta = records.unpack(session._current_id(), old_key, fresh.user_id, fresh.data)
        except _codec.CorruptRecordError:
            raise _interrupted(session, "overwritten with a corrupt record by a concurrent request") from None
        user_id = user_id if login else fresh.user_id
        stored = Stored(old_key, fresh.data, fresh.version, fresh_created, fresh.expires_at, user_id, fresh_meta)
        session._settle(stored, _merged(session, changed, fresh_data))  # as the store holds it, should this commit fail
        created_at = now if login else fresh_created
    raise ConcurrentUpdateError(f"session changed concurrently {config.max_commit_attempts} times in a row")


def _interrupted(session: Session, what: str) -> SessionInterruptedError:
    handle = log_handle(session._current_id())
    return SessionInterruptedError(f"session {handle} was {what}; this request's changes were not saved")


def _rotate_by_parts(
    session: Session,
    stored: Stored,
    new_id: str,
    config: SessionConfig,
    records: _codec.RecordFormat,
    created_at: float,
    meta: dict[str, Any] | None,
    expires_at: float,
    user_id: str | None,
) -> Generator[Operation[Any], Any, tuple[str, str, Record] | None]:
    """Rotate with the five core store methods, keeping an atomic rotate's guarantees.

    Create the new record first (drawing another ID on a collision; no one knows its ID yet),
    then claim the old one by compare-and-set, replacing it with a tombstone that reads as
    missing, and delete the tombstone. A writer, a rotation or a logout that reached the old
    record first makes the claim fail, and the new record is deleted again: nothing is lost or
    resurrected. At every step the session is under a key in the user index, so a concurrent
    revoke finds it. The new record is made for each ID drawn (sealed for it, when sealing).
    Returns the new ID, its key and its record, or None if the claim failed.
    """
    for _ in range(config.max_commit_attempts):
        new_key = store_key(new_id)
        record = _record(session, config, records, new_id, new_key, created_at, meta, expires_at, stored.version + 1, user_id)
        if (yield Save(new_key, record, None)):
            break
        new_id = session._draw_id()
    else:
        raise ConcurrentUpdateError("could not find an unused session ID")
    old_key = stored.key
    tombstone = Record(_codec.TOMBSTONE, stored.expires_at, stored.version + 1, None)
    if not (yield Save(old_key, tombstone, stored.version)):
        yield Delete(new_key)
        return None
    yield Delete(old_key)
    return new_id, new_key, record


def _merged(session: Session, changed: set[str], data: dict[str, Any]) -> dict[str, Any]:
    """The freshly loaded ``data`` with this request's changed keys re-applied onto it."""
    mine = session._plain()
    for key in changed:
        if key in mine:
            data[key] = mine[key]
        else:
            data.pop(key, None)
    return data


# -- adopting a legacy session (see coatcheck.legacy) -----------------------------------------------

LEGACY_GRACE = 10.0
"""Seconds during which a legacy cookie, once adopted, still leads to the session it became: the
requests a browser sent at once with it (a page and its assets). After that, a copy adopts nothing."""
_CLAIM = b"legacy-claim "  # a claim record's data: this, the adopted session's ID, the claim time
_PENDING = "pending"  # the claim time of a session adopted offline, before its browser came back


def legacy_claim_id(reader: str, value: str) -> str:
    """The ID-shaped name of the claim on legacy cookie ``value`` of ``reader``: never handed to
    a browser, and what it holds never decodes as a session."""
    digest = hashlib.sha256(b"coatcheck legacy claim\0%s\0%s" % (reader.encode(), value.encode("utf-8", "surrogateescape")))
    return base64.urlsafe_b64encode(digest.digest()).rstrip(b"=").decode()


class Adoption(NamedTuple):
    """Where a legacy cookie leads: the session it is (or already became), None for nothing,
    and whether this request made it (so the legacy record is deleted once)."""

    session: Session | None
    created: bool = False


REFUSED = Adoption(None)


def _claim_data(target: str, claimed_at: str) -> bytes:
    return _CLAIM + f"{target} {claimed_at}".encode()


def _parse_claim(data: bytes) -> tuple[str, str] | None:
    """(the adopted session's ID, the claim time) of a claim record, or None for anything else."""
    if not data.startswith(_CLAIM):
        return None
    target, _, claimed_at = data[len(_CLAIM) :].decode("ascii", "replace").partition(" ")
    return (target, claimed_at) if is_valid_id(target) else None


def claimed_flow(
    claim_id: str,
    config: SessionConfig,
    now: float,
    make_session: Callable[[str | None], Session],
    records: _codec.RecordFormat,
) -> Generator[Operation[Any], Any, Adoption | None]:
    """What the claim on a legacy cookie says: None when there is none (read the legacy session);
    the session it became when it was claimed under :data:`LEGACY_GRACE` seconds ago (a
    concurrent request), or when it was adopted offline and this is the first request to come;
    :data:`REFUSED` otherwise (a replayed copy, or a session that has ended since)."""
    claim_key = store_key(claim_id)
    record: Record | None = yield Load(claim_key)
    if record is None:
        return None
    claim = _parse_claim(record.data)
    if claim is not None and claim[1] == _PENDING:  # adopted offline: hand it out, once
        handed_out = Record(_claim_data(claim[0], repr(now)), record.expires_at, record.version + 1, None)
        if not (yield Save(claim_key, handed_out, record.version)):
            return (yield from claimed_flow(claim_id, config, now, make_session, records)) or REFUSED  # another request did
        session = yield from load_flow([claim[0]], config, now, make_session, records)
        return (
            REFUSED
            if session._stored is None
            else Adoption((yield from _fresh_start(session, session._stored, config, now, records)))
        )
    try:
        age = now - float(claim[1]) if claim is not None else -1.0
    except ValueError:
        age = -1.0
    if claim is None or not 0 <= age <= LEGACY_GRACE:
        security_log(logging.WARNING, "legacy session cookie replayed after its adoption (claim sha256 %s)", log_handle(claim_id))
        return REFUSED
    session = yield from load_flow([claim[0]], config, now, make_session, records)
    return REFUSED if session._stored is None else Adoption(session)


def _fresh_start(
    session: Session, stored: Stored, config: SessionConfig, now: float, records: _codec.RecordFormat
) -> Generator[Operation[Any], Any, Session]:
    """Start the idle and absolute timeouts of a session adopted offline now, when its browser
    comes (a concurrent write that got there first has done the same)."""
    expires_at = deadline(config, now, now)
    key = stored.key
    record = _record(session, config, records, None, key, now, stored.meta, expires_at, stored.version + 1, stored.user_id)
    if (yield Save(key, record, stored.version)):
        session._settle(Stored(key, record.data, record.version, now, expires_at, stored.user_id, stored.meta))
    return session


def adopt_flow(
    claim_id: str,
    data: dict[str, Any],
    user_id: str | None,
    legacy_expires_at: float | None,
    config: SessionConfig,
    now: float,
    make_session: Callable[[str | None], Session],
    records: _codec.RecordFormat,
    *,
    pending: bool = False,
) -> Generator[Operation[Any], Any, Adoption]:
    """Store ``data`` as a new session (user bound, the legacy lifetime capped by the idle and
    absolute timeouts), then claim the legacy cookie by compare-and-set. A request that finds the
    claim taken deletes what it stored and joins the session the claim names, so concurrent
    requests with one legacy cookie share one new session. The claim lasts as long as the legacy
    cookie could (the absolute timeout when the reader cannot tell), so that a copy replayed
    later adopts nothing.

    A ``pending`` adoption (offline: no browser to hand the session to) keeps the session until
    the legacy one would have ended, at most the absolute timeout; its timeouts start over when
    its browser comes (see :func:`claimed_flow`).
    """
    legacy_end = legacy_expires_at if legacy_expires_at is not None else now + config.absolute_seconds
    expires_at = min(now + config.absolute_seconds if pending else deadline(config, now, now), legacy_end)
    if expires_at <= now:
        return REFUSED
    session = make_session(None)
    dict.update(session, data)
    for _ in range(config.max_commit_attempts):
        key = store_key(session._current_id())
        record = _record(session, config, records, None, key, now, None, expires_at, 1, user_id)
        if (yield Save(key, record, None)):
            break
        session._change_id_after_collision()
    else:
        raise ConcurrentUpdateError("could not find an unused session ID")
    claim = Record(
        _claim_data(session._current_id(), _PENDING if pending else repr(now)), max(legacy_end, now + LEGACY_GRACE), 1, None
    )
    if not (yield Save(store_key(claim_id), claim, None)):
        yield Delete(key)
        if pending:
            return REFUSED  # adopted meanwhile by a returning browser
        return (yield from claimed_flow(claim_id, config, now, make_session, records)) or REFUSED
    session._settle(Stored(key, record.data, 1, now, expires_at, user_id))
    security_log(logging.INFO, "legacy session adopted (sha256 %s, claim %s)", key[:16], log_handle(claim_id))
    return Adoption(session, created=True)


def legacy_data(data: Any, codec: _codec.Codec, reader: str, refuse: bool) -> dict[str, Any] | None:
    """The legacy ``data`` the session can hold: values ``codec`` refuses (and keys that are
    not strings) are dropped, or, with ``refuse``, the session adopts nothing (None). Each
    refused key is reported once per reader and name."""
    if not isinstance(data, dict):
        return None
    kept: dict[str, Any] = {}
    for key, value in data.items():
        try:
            if not isinstance(key, str):
                raise TypeError(f"key {key!r} is not a string")
            codec.check(value)
        except (TypeError, ValueError) as exc:
            report_bad_value(reader, str(key), exc)
            if refuse:
                return None
            continue
        kept[key] = value
    return kept
