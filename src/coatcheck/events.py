"""Events for audit trails: subscribe to what happened to sessions, after the fact.

    manager.events.on_login(lambda event: audit.info("login %s on %s", event.user_id, event.handle))

A subscriber is called once the store has done the thing (or failed at it), in the request that
did it, with a :class:`SessionEvent`. It can never break the request: an exception it raises is
logged on the ``coatcheck`` logger and the request goes on. An event carries the session's
handle (a short hash of its ID, as in :meth:`SessionManager.handle`), never the ID. With nothing
subscribed, the manager does no work for events at all.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from ._ids import handle_of_key
from ._logs import log
from .errors import ConcurrentUpdateError, StoreError

if TYPE_CHECKING:
    from ._core import CommitResult
    from ._ops import Operation
    from .session import Session

__all__ = ["CommitOutcome", "EventKind", "Events", "SessionEvent", "Subscriber"]

T = TypeVar("T")
EventKind = Literal["create", "load", "reject", "commit", "login", "logout", "rotate", "revoke", "conflict", "store_error"]
CommitOutcome = Literal["saved", "touched", "deleted", "unchanged", "dropped"]


@dataclass(frozen=True, slots=True)
class SessionEvent:
    """What happened: ``kind``; the session's ``handle`` (None for an event about a user's every
    session, a revoke, and for a malformed cookie value); its ``user_id``, if bound; and ``detail``:
    why a session ID was rejected, what a commit did (a :data:`CommitOutcome`), the handle a
    rotation or a login replaced, how many sessions a revoke ended, how many compare-and-set
    conflicts a commit met, or a store error's message. A commit that saved the session gives
    the ``size`` of the record it wrote, in bytes."""

    kind: EventKind
    handle: str | None
    user_id: str | None
    detail: str | int | None = None
    size: int | None = None


Subscriber = Callable[[SessionEvent], object]


class Events:
    """A manager's subscriptions (``manager.events``). Each ``on_*`` method returns the subscriber,
    so it also works as a decorator."""

    def __init__(self) -> None:
        self._subscribers: dict[EventKind, tuple[Subscriber, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self._subscribers)

    def _subscribe(self, kind: EventKind, subscriber: Subscriber) -> Subscriber:
        if not callable(subscriber):
            raise TypeError(f"an event subscriber must be callable, not {type(subscriber).__name__}")
        self._subscribers[kind] = (*self._subscribers.get(kind, ()), subscriber)
        return subscriber

    def on_create(self, subscriber: Subscriber) -> Subscriber:
        """A new session was stored for the first time."""
        return self._subscribe("create", subscriber)

    def on_load(self, subscriber: Subscriber) -> Subscriber:
        """A request found its live session in the store (one event per request that has one)."""
        return self._subscribe("load", subscriber)

    def on_reject(self, subscriber: Subscriber) -> Subscriber:
        """A request's session cookie named no live session (``detail``: ``unknown``, ``expired``,
        ``corrupt``, ``unknown_key`` for a record sealed under a secret no longer listed,
        ``unsealed`` for a plain record where records are sealed, ``future`` for a record created
        ahead of the clock, or ``malformed`` for a value that is not a session ID); the request
        gets a fresh session."""
        return self._subscribe("reject", subscriber)

    def on_commit(self, subscriber: Subscriber) -> Subscriber:
        """A request's session was committed (``detail``: ``saved``, ``touched`` for an expiry
        refresh, ``deleted`` for a logout, ``unchanged`` when there was nothing to write, or
        ``dropped`` for changes discarded with a server error's response)."""
        return self._subscribe("commit", subscriber)

    def on_login(self, subscriber: Subscriber) -> Subscriber:
        """A session was bound to a user (``login()``) and stored under its new ID."""
        return self._subscribe("login", subscriber)

    def on_logout(self, subscriber: Subscriber) -> Subscriber:
        """A session was ended by ``logout()`` and deleted from the store."""
        return self._subscribe("logout", subscriber)

    def on_rotate(self, subscriber: Subscriber) -> Subscriber:
        """A session was given a new ID by ``rotate()`` (a login's rotation is a login event)."""
        return self._subscribe("rotate", subscriber)

    def on_revoke(self, subscriber: Subscriber) -> Subscriber:
        """Every session of a user was ended ("log out everywhere")."""
        return self._subscribe("revoke", subscriber)

    def on_conflict(self, subscriber: Subscriber) -> Subscriber:
        """A commit met concurrent writes: merged and saved (``detail``: how many times), or given
        up (``detail``: the error's message)."""
        return self._subscribe("conflict", subscriber)

    def on_store_error(self, subscriber: Subscriber) -> Subscriber:
        """Loading or committing a session failed in the store (``detail``: the error's message)."""
        return self._subscribe("store_error", subscriber)

    def emit(self, event: SessionEvent) -> None:
        """Call the event's subscribers; one that raises is logged, and the others still run."""
        for subscriber in self._subscribers.get(event.kind, ()):
            try:
                subscriber(event)
            except Exception:
                log.exception("a %s event subscriber failed", event.kind)


def watching(events: Events, flow: Generator[Operation[Any], Any, T]) -> Generator[Operation[Any], Any, T]:
    """``flow``, with its store failure announced (a load, a revoke's listing)."""
    try:
        return (yield from flow)
    except StoreError as exc:
        events.emit(SessionEvent("store_error", None, None, str(exc)))
        raise


def loading(events: Events, flow: Generator[Operation[Any], Any, Session]) -> Generator[Operation[Any], Any, Session]:
    """A load's flow, then its event when it found a live session, or its failure's."""
    session = yield from watching(events, flow)
    if session._stored is not None:
        events.emit(SessionEvent("load", handle_of_key(session._stored.key), session._user_id))
    return session


def rejecting(events: Events) -> Callable[[str, str | None], None]:
    """What a load flow tells of each session ID it refuses: a ``reject`` event."""

    def rejected(reason: str, handle: str | None) -> None:
        events.emit(SessionEvent("reject", handle, None, reason))

    return rejected


def skipped(events: Events, session: Session, outcome: CommitOutcome) -> None:
    """The ``commit`` event of a commit that had nothing to write (or dropped what it had)."""
    stored = session._stored
    events.emit(SessionEvent("commit", None if stored is None else handle_of_key(stored.key), session._user_id, outcome))


def announcing(
    events: Events, session: Session, flow: Generator[Operation[Any], Any, CommitResult]
) -> Generator[Operation[Any], Any, CommitResult]:
    """A commit's flow, then the events of what it did to ``session`` (its lifecycle requests, its
    conflicts), or of how it failed."""
    requests, user_id, before = session._requests, session._user_id, session._stored
    handle = None if before is None else handle_of_key(before.key)
    try:
        result = yield from flow
    except ConcurrentUpdateError as exc:
        events.emit(SessionEvent("conflict", handle, user_id, str(exc)))
        raise
    except StoreError as exc:
        events.emit(SessionEvent("store_error", handle, user_id, str(exc)))
        raise
    if requests.ended is not None:
        events.emit(SessionEvent("logout", handle_of_key(requests.ended), requests.ended_user))
    after = session._stored
    if after is None:
        ended = requests.ended
        outcome: CommitOutcome = "unchanged" if ended is None else "deleted"
        events.emit(SessionEvent("commit", handle if ended is None else handle_of_key(ended), user_id, outcome))
        return result
    now = handle_of_key(after.key)
    if before is None:
        events.emit(SessionEvent("create", now, session._user_id))
    outcome = "unchanged" if after is before else "touched" if before is not None and after.version == before.version else "saved"
    events.emit(SessionEvent("commit", now, session._user_id, outcome, len(after.raw) if outcome == "saved" else None))
    if requests.login or requests.rotate:
        kind: EventKind = "login" if requests.login else "rotate"
        events.emit(SessionEvent(kind, now, session._user_id, handle if handle != now else None))
    if result.conflicts:
        events.emit(SessionEvent("conflict", now, session._user_id, result.conflicts))
    return result


def revoking(events: Events, user_id: str, flow: Generator[Operation[Any], Any, int]) -> Generator[Operation[Any], Any, int]:
    """A revoke's flow, then its event (how many sessions it ended), or its failure's."""
    ended = yield from watching(events, flow)
    events.emit(SessionEvent("revoke", None, user_id, ended))
    return ended
