"""``_aio.to_thread`` under asyncio: coatcheck's own worker threads (the SQLite store and the
legacy readers run every blocking call through them); ``_aio.PerLoop``, one value per event loop."""

from __future__ import annotations

import asyncio
import contextvars
import subprocess
import sys
import textwrap
import threading

import pytest

from coatcheck import _aio

request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id")


def test_a_call_runs_in_a_worker_thread_in_the_callers_context() -> None:
    async def main() -> tuple[str, str]:
        request_id.set("r-1")
        return await _aio.to_thread(lambda: (threading.current_thread().name, request_id.get()))

    thread, seen = asyncio.run(main())
    assert thread.startswith("coatcheck-worker-")
    assert seen == "r-1"


def test_the_calls_exception_is_raised_in_the_awaiting_task() -> None:
    def fail() -> None:
        raise LookupError("no such record")

    async def main() -> None:
        await _aio.to_thread(fail)

    with pytest.raises(LookupError, match="no such record"):
        asyncio.run(main())


def test_a_stopiteration_from_the_call_is_raised_as_a_runtimeerror() -> None:
    async def main() -> None:
        await _aio.to_thread(next, iter(()))

    with pytest.raises(RuntimeError, match="StopIteration raised in a worker thread") as raised:
        asyncio.run(asyncio.wait_for(main(), 10))
    assert isinstance(raised.value.__cause__, StopIteration)


def test_a_cancelled_wait_leaves_the_worker_able_to_serve_the_next_call() -> None:
    release = threading.Event()

    async def main() -> int:
        waiting = asyncio.ensure_future(_aio.to_thread(release.wait, 10))
        await asyncio.sleep(0)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()  # the cancelled call finishes in its thread; its result goes nowhere
        return await asyncio.wait_for(_aio.to_thread(sum, [1, 2, 3]), 10)

    assert asyncio.run(main()) == 6


def test_a_call_that_outlives_its_loop_leaves_the_workers_serving() -> None:
    release, done = threading.Event(), threading.Event()

    def slow() -> None:
        release.wait(10)
        done.set()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(asyncio.sleep(0))
    future = _aio._workers.submit(loop, slow, ())
    loop.close()  # the worker still holds the call; its result cannot reach the closed loop
    release.set()
    assert done.wait(10)
    assert not future.done()

    async def main() -> int:
        return await asyncio.wait_for(_aio.to_thread(len, "abc"), 10)

    assert asyncio.run(main()) == 3


def test_many_calls_in_flight_share_at_most_limit_threads() -> None:
    gate = threading.Barrier(2)

    def meet() -> str:
        gate.wait(10)  # two calls must run at once: a second thread exists
        return threading.current_thread().name

    async def main() -> set[str]:
        names = await asyncio.gather(*(_aio.to_thread(meet) for _ in range(2)))
        more = await asyncio.gather(*(_aio.to_thread(lambda: threading.current_thread().name) for _ in range(200)))
        return {*names, *more}

    names = asyncio.run(main())
    workers = [t for t in threading.enumerate() if t.name.startswith("coatcheck-worker-")]
    assert len(names) >= 2
    assert len(workers) <= _aio._workers.limit
    assert all(t.daemon for t in workers)


def test_a_child_process_after_fork_gets_workers_of_its_own() -> None:
    script = textwrap.dedent(
        """
        import asyncio, os, threading
        from coatcheck import _aio

        async def call(function, *args):
            return await asyncio.wait_for(_aio.to_thread(function, *args), 10)

        async def start_every_worker():  # all of them busy at once: each one started
            everyone = threading.Barrier(_aio._workers.limit)
            await asyncio.gather(*(call(everyone.wait, 10) for _ in range(_aio._workers.limit)))

        asyncio.run(start_every_worker())
        pid = os.fork()
        if pid == 0:  # the parent's threads do not exist here: a call must still be answered
            result = asyncio.run(call(sum, [20, 22]))
            os._exit(0 if result == 42 else 1)
        _, status = os.waitpid(pid, 0)
        raise SystemExit(os.waitstatus_to_exitcode(status))
        """
    )
    done = subprocess.run(  # noqa: S603 - this interpreter, the script above
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr


def test_per_loop_values_and_the_retirement_of_closed_loops() -> None:
    """Each loop gets its own value, the same on every call in it; a loop that closed has its value
    handed to ``retire`` before the next loop's is made (a pool passes its idle connections on)."""
    made: list[int] = []
    retired: list[tuple[int, int]] = []  # (the value retired, how many were made by then)

    def make() -> int:
        made.append(len(made))
        return made[-1]

    per_loop = _aio.PerLoop(make, retire=lambda value: retired.append((value, len(made))))

    async def twice() -> tuple[int, int]:
        return per_loop.get(), per_loop.get()

    assert asyncio.run(twice()) == (0, 0)
    assert asyncio.run(twice()) == (1, 1)
    assert retired == [(0, 1)]  # the first loop's, before the second loop's value was made

    async def popped() -> tuple[int, int | None, int | None, int]:
        return per_loop.get(), per_loop.pop(), per_loop.pop(), per_loop.get()

    assert asyncio.run(popped()) == (2, 2, None, 3)
    assert retired == [(0, 1), (1, 2)]
    asyncio.run(twice())
    assert retired == [(0, 1), (1, 2), (3, 4)]  # a popped value is the caller's to close, not retired
    assert per_loop.current() is None  # no loop running
