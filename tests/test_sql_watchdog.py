"""The reply deadline behind PostgresStore (``stores/_watchdog.py``), on local socket pairs: no
server needed. A deadline of 0.2 s keeps each test short."""

from __future__ import annotations

import os
import socket
import time

import pytest

from coatcheck.stores._watchdog import WATCHDOG


def test_a_call_past_its_deadline_ends_at_once() -> None:
    mine, peer = socket.socketpair()
    with mine, peer:
        start = time.monotonic()
        with pytest.raises(TimeoutError, match=r"within 0\.2 s"), WATCHDOG.deadline(mine.fileno(), 0.2):
            assert mine.recv(1) == b""  # the peer never writes: only the shutdown ends this wait
        assert 0.2 <= time.monotonic() - start < 2.0
        assert peer.recv(1) == b""  # the peer sees the connection end
        os.fstat(mine.fileno())  # the caller's descriptor is still open: closing it is the caller's job


def test_a_call_within_its_deadline_is_left_alone() -> None:
    mine, peer = socket.socketpair()
    with mine, peer:
        with WATCHDOG.deadline(mine.fileno(), 0.2):
            peer.sendall(b"x")
            assert mine.recv(1) == b"x"
        assert not WATCHDOG._watched  # nothing left that could fire later
        peer.sendall(b"y")
        assert mine.recv(1) == b"y"


def _lose_and_reuse(mine: socket.socket, peer: socket.socket, other: socket.socket) -> None:
    """A driver closes its socket mid-call (a lost connection) and the process reuses the number
    for another socket; then wait until the old connection ends."""
    number = mine.fileno()
    mine.close()
    os.dup2(other.fileno(), number)
    assert peer.recv(1) == b""  # ends when the deadline shuts the old connection down


def test_a_descriptor_number_reused_during_a_call_is_not_touched() -> None:
    mine, peer = socket.socketpair()
    other, other_peer = socket.socketpair()
    with peer, other, other_peer:
        number = mine.fileno()
        with pytest.raises(TimeoutError), WATCHDOG.deadline(number, 0.2):
            _lose_and_reuse(mine, peer, other)
        try:
            other_peer.sendall(b"z")
            assert os.read(number, 1) == b"z"  # the socket now behind the number still works
        finally:
            os.close(number)
