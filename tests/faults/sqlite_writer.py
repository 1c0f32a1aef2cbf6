"""A process that writes sessions to one SQLite file as fast as it can, until it is killed.

``python -m tests.faults.sqlite_writer PATH SEED``: creates, updates (compare-and-set), rotates
and logs out sessions through a SessionManager. Every session it writes holds ``check``, a
digest of the rest of its data, so a reader can tell a whole record from a torn one. It prints
``ready`` once its first write is done.
"""

from __future__ import annotations

import hashlib
import json
import random
import sys
from typing import Any

from coatcheck import SessionManager
from coatcheck.stores.sqlite import SQLiteStore


def digest(data: dict[str, Any]) -> str:
    """The ``check`` value of a session's data (every key but ``check``)."""
    body = {key: value for key, value in data.items() if key != "check"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def main(path: str, seed: int) -> None:
    rng = random.Random(seed)
    manager = SessionManager(SQLiteStore(path, timeout=30))
    ids: list[str] = []
    counter = 0
    while True:
        counter += 1
        roll = rng.random()
        cookie = f"sessionid={rng.choice(ids)}" if ids and roll > 0.3 else None
        session = manager.load(cookie)
        session["writer"], session["n"] = seed, counter
        session["pad"] = "x" * rng.randrange(0, 20_000)
        if roll > 0.9:
            session.login(f"user{rng.randrange(5)}")
        elif roll > 0.85 and not session.is_new:
            session.logout()
        session["check"] = digest(dict(session))
        manager.commit(session)
        if not session.is_new or cookie is None:
            ids = [*ids[-50:], session.id]
        if counter == 1:
            print("ready", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
