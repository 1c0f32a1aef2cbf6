"""R-05: SQLite writer processes killed with SIGKILL at random points leave a sound database.

Each round starts writer processes on one file (tests/faults/sqlite_writer.py), kills them all
with SIGKILL after a random moment, and then checks, as the next process to open the file would:
``PRAGMA integrity_check`` is ``ok``, and every stored session decodes and carries the digest
of its own data, so each record is a whole version (the old one or the new one), never a torn
mix. The store keeps working on the same file afterwards.
"""

from __future__ import annotations

import contextlib
import random
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from coatcheck import SessionManager, _codec
from coatcheck.stores.sqlite import SQLiteStore
from tests.faults.conftest import scaled
from tests.faults.sqlite_writer import digest

WRITERS = 3


def _start(path: Path, seed: int) -> subprocess.Popen[str]:
    return subprocess.Popen(  # noqa: S603 - our own module, run by this interpreter
        [sys.executable, "-m", "tests.faults.sqlite_writer", str(path), str(seed)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).parents[2],
    )


@pytest.mark.parametrize("round_", range(scaled(3, 30)))
def test_r05_writers_killed_mid_write_leave_every_record_old_or_new(tmp_path: Path, round_: int) -> None:
    path = tmp_path / "sessions.db"
    rng = random.Random(round_)
    writers = [_start(path, round_ * WRITERS + i) for i in range(WRITERS)]
    try:
        for writer in writers:
            assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
        with contextlib.suppress(subprocess.TimeoutExpired):
            writers[0].wait(timeout=rng.uniform(0.05, 0.5))  # a random moment in the middle of the writes
    finally:
        for writer in writers:
            writer.send_signal(signal.SIGKILL)
            writer.wait(timeout=10)
            if writer.stdout is not None:
                writer.stdout.close()
    assert all(writer.returncode == -signal.SIGKILL for writer in writers)

    with contextlib.closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        rows = conn.execute("SELECT data FROM coatcheck_sessions").fetchall()
    assert rows, "the writers wrote nothing before they were killed"
    for (raw,) in rows:
        _, data = _codec.decode(bytes(raw))
        assert data["check"] == digest(data), "a torn record"

    manager = SessionManager(SQLiteStore(path))  # the file works on, as it was left
    session = manager.new_session()
    session["after"] = True
    manager.commit(session)
    assert manager.load(f"sessionid={session.id}")["after"] is True
