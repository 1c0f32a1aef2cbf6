"""Log out everywhere against a session that keeps rotating, on every store with a user index.

A thread keeps loading a session of user "alice", rotating it and committing, while the test
calls ``revoke_user("alice")``: once the revoke has returned, no session of alice may be live,
whatever the rotation was doing at that moment (store-specific tests drive each store's own
interleavings deterministically; this one races the real thing, many times).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from coatcheck import SessionInterruptedError, SessionManager
from coatcheck.testing import FakeClock

TRIALS = 20


class Rotator(threading.Thread):
    """Rotates one session of alice in a loop until told to stop; records every ID it held."""

    def __init__(self, manager: SessionManager, session_id: str) -> None:
        super().__init__(daemon=True)
        self.manager = manager
        self.ids = [session_id]
        self.rotations = 0
        self.started_rotating = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            session = self.manager.load(f"sessionid={self.ids[-1]}")
            if session.is_new:
                return  # revoked: nothing left to rotate
            session.rotate()
            session["turn"] = self.rotations
            try:
                self.manager.commit(session)
            except SessionInterruptedError:
                return
            self.ids.append(session.id)
            self.rotations += 1
            if self.rotations == 3:
                self.started_rotating.set()


@pytest.mark.anyio
@pytest.mark.parametrize("trial", range(TRIALS))
async def test_revoke_wins_against_a_session_that_keeps_rotating(store: Any, clock: FakeClock, trial: int) -> None:
    manager = SessionManager(store, clock=clock)
    alice = manager.new_session()
    alice.login("alice")
    manager.commit(alice)
    bystander = manager.new_session()
    bystander.login("bob")
    manager.commit(bystander)

    rotator = Rotator(manager, alice.id)
    rotator.start()
    try:
        assert rotator.started_rotating.wait(timeout=20), "the rotator never got going"
        manager.revoke_user("alice")
        revoked_at = len(rotator.ids)
    finally:
        rotator.stop.set()
        rotator.join(timeout=20)
    assert not rotator.is_alive()
    live = [i for i, sid in enumerate(rotator.ids) if not manager.load(f"sessionid={sid}").is_new]
    assert live == [], f"sessions of alice live after the revoke (rotation {live}, revoke returned at {revoked_at})"
    assert manager.list_sessions("alice") == []
    assert manager.load(f"sessionid={bystander.id}").user_id == "bob"
