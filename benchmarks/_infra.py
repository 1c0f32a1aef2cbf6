"""Plumbing shared by the benchmark scripts: the servers, the load generator, the counters.

Everything here talks to 127.0.0.1 only, and every process it starts it also stops.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VENV_BIN = Path(sys.executable).parent
SERVER_CPU = "1"  # the app server's core
LOAD_CPU = "0"  # wrk's core (and the benchmark's own Redis)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_URL = "postgresql://postgres@127.0.0.1:5432/coatcheck_bench"
MYSQL_HOST, MYSQL_PORT, MYSQL_DB = "127.0.0.1", 3306, "coatcheck_bench"
BENCH_TABLES = ("bench_http", "bench_micro", "bench_scale")


def log(message: str) -> None:
    """Progress on stderr, so stdout stays clean for tables."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    """An unused TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pinned(cpu: str, argv: Sequence[str]) -> list[str]:
    """``argv`` run on core ``cpu`` (taskset), when the machine has more than one."""
    return ["taskset", "-c", cpu, *argv] if (os.cpu_count() or 1) > 1 and shutil.which("taskset") else list(argv)


def stop_process(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGTERM the process group we started, then SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)


# -- HTTP -----------------------------------------------------------------------------------------


def http_get(port: int, path: str, cookie: str | None = None, timeout: float = 30.0) -> tuple[int, list[tuple[str, str]], bytes]:
    """One GET on a fresh connection: status, headers, body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Cookie": cookie} if cookie else {})
        response = conn.getresponse()
        return response.status, response.getheaders(), response.read()
    finally:
        conn.close()


def get_json(port: int, path: str, timeout: float = 300.0) -> dict[str, Any]:
    """GET a JSON document."""
    status, _, body = http_get(port, path, timeout=timeout)
    if status != 200:
        raise RuntimeError(f"GET {path} answered {status}: {body[:200]!r}")
    result: dict[str, Any] = json.loads(body)
    return result


def make_sessions(port: int, count: int, path: str = "/rmw") -> list[str]:
    """Create ``count`` sessions through the app; return their ``name=value`` cookies."""
    cookies = []
    for _ in range(count):
        status, headers, _ = http_get(port, path)
        set_cookie = [value for name, value in headers if name.lower() == "set-cookie"]
        if status != 200 or not set_cookie:
            raise RuntimeError(f"creating a session: status {status}, no Set-Cookie")
        cookies.append(set_cookie[0].split(";", 1)[0].strip())
    return cookies


# -- servers --------------------------------------------------------------------------------------


@dataclass
class Server:
    """An app server we started, pinned to :data:`SERVER_CPU`."""

    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    def cpu_seconds(self) -> float:
        """User + system CPU time of the server and its children so far."""
        try:
            root = psutil.Process(self.proc.pid)
            total = 0.0
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    times = process.cpu_times()
                    total += times.user + times.system
            return total
        except psutil.NoSuchProcess:
            return 0.0

    def worker_pid(self) -> int:
        """The process that serves requests (gunicorn's worker, uvicorn itself)."""
        with contextlib.suppress(psutil.NoSuchProcess):
            children = psutil.Process(self.proc.pid).children(recursive=True)
            if children:
                return int(children[-1].pid)
        return self.proc.pid

    def stop(self) -> None:
        """Stop it (and its workers)."""
        stop_process(self.proc)


def server_argv(interface: str, module: str, port: int) -> list[str]:
    """uvicorn (1 worker, uvloop, httptools) or gunicorn (1 ``gthread`` worker, 32 threads, keep-alive)
    serving ``module``: both keep wrk's connections open, so no request pays for a TCP handshake."""
    if interface == "asgi":
        return [
            str(VENV_BIN / "uvicorn"),
            module,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
    return [
        str(VENV_BIN / "gunicorn"),
        module,
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--worker-class",
        "gthread",
        "--threads",
        "32",
        "--keep-alive",
        "75",
        "--log-level",
        "warning",
        "--timeout",
        "600",
    ]


def start_server(interface: str, module: str, env: Mapping[str, str], log_dir: Path, ready_timeout: float = 60.0) -> Server:
    """Start an app server on a free port and wait until it answers ``/__bench/stats``."""
    port = free_port()
    log_path = log_dir / f"{module.replace(':', '.')}-{port}.log"
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **env}
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            pinned(SERVER_CPU, server_argv(interface, module, port)),
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Server(proc, port, log_path)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with contextlib.suppress(OSError, http.client.HTTPException):
            if http_get(port, "/__bench/stats", timeout=2)[0] == 200:
                return server
        time.sleep(0.1)
    server.stop()
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"{module} did not start ({interface}):\n{tail}")


# -- load -----------------------------------------------------------------------------------------


def run_wrk(
    port: int, path: str, *, duration: float, connections: int, cookies_file: Path | None, max_requests: int
) -> dict[str, Any]:
    """One wrk run on :data:`LOAD_CPU`, bounded by ``duration`` and ``max_requests``."""
    env = {**os.environ, "BENCH_COOKIES": str(cookies_file or ""), "BENCH_MAX_REQUESTS": str(max_requests)}
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(BENCH_DIR / "wrk" / "bench.lua"),
        f"http://127.0.0.1:{port}{path}",
    ]
    done = subprocess.run(pinned(LOAD_CPU, argv), env=env, capture_output=True, text=True, timeout=duration + 60, check=False)
    match = re.search(r"^BENCH_JSON (\{.*\})$", done.stdout, re.MULTILINE)
    if done.returncode != 0 or match is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    result: dict[str, Any] = json.loads(match.group(1))
    return result


# -- stores ---------------------------------------------------------------------------------------


@dataclass
class Services:
    """The stores' addresses for one benchmark run."""

    redis_url: str
    redis_proc: subprocess.Popen[bytes] | None
    work_dir: Path
    postgres: bool
    mysql: bool

    def pg_url(self, table: str) -> str:
        """coatcheck's PostgreSQL store URL for ``table`` in the benchmark database."""
        return f"{PG_URL}?table={table}&create_schema=1"

    def mysql_url(self, table: str) -> str:
        """coatcheck's MySQL store URL for ``table`` in the benchmark database."""
        return f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{MYSQL_DB}?table={table}&create_schema=1"


_redis_clients: dict[str, Any] = {}


def redis_counters(url: str) -> dict[str, Any]:
    """The benchmark's Redis server's counters, read with one ``INFO everything`` on one kept connection.

    ``reads``: read events, one per request a client sends (a pipeline or a script call is one:
    the round trips, whatever the client library), including this INFO's own. ``commands``: calls
    per command except our INFO and FLUSHALL (it counts the commands scripts run, too).
    ``changes``: keys and fields written (``rdb_changes_since_last_save``).
    """
    import redis

    client = _redis_clients.get(url)
    if client is None:
        client = _redis_clients[url] = redis.Redis.from_url(url)
    info = client.info("everything")
    ours = ("cmdstat_info", "cmdstat_flushall")
    commands = {
        k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items() if k.startswith("cmdstat_") and k not in ours
    }
    return {
        "reads": int(info["total_reads_processed"]),
        "commands": commands,
        "changes": int(info["rdb_changes_since_last_save"]),
    }


def redis_flush(url: str) -> None:
    """Empty the benchmark's own Redis server."""
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()


def _start_redis(work_dir: Path) -> tuple[str, subprocess.Popen[bytes]]:
    port = free_port()
    argv = [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(work_dir),
        "--daemonize",
        "no",
        "--loglevel",
        "warning",
    ]
    proc = subprocess.Popen(pinned(LOAD_CPU, argv), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        with contextlib.suppress(Exception):
            redis_flush(url)
            return url, proc
        time.sleep(0.05)
    stop_process(proc)
    raise RuntimeError("the benchmark's Redis server did not start")


def prepare_postgres() -> bool:
    """Create the benchmark database if it is missing; False when PostgreSQL is down."""
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=3) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'coatcheck_bench'").fetchone() is None:
                conn.execute("CREATE DATABASE coatcheck_bench")
        return True
    except Exception as exc:
        log(f"PostgreSQL unavailable, its scenarios are skipped: {exc}")
        return False


def prepare_mysql() -> bool:
    try:
        import pymysql

        conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", connect_timeout=3)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {MYSQL_DB}")
        finally:
            conn.close()
        return True
    except Exception as exc:
        log(f"MySQL/MariaDB unavailable, its scenarios are skipped: {exc}")
        return False


def drop_postgres_tables(tables: Sequence[str]) -> None:
    """Drop ``tables`` from the benchmark database, if they are there."""
    import psycopg

    with contextlib.suppress(Exception), psycopg.connect(PG_URL, autocommit=True, connect_timeout=3) as conn:
        for table in tables:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def drop_mysql_tables(tables: Sequence[str]) -> None:
    """Drop ``tables`` from the MySQL benchmark database, if they are there."""
    import pymysql

    with contextlib.suppress(Exception):
        mysql = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", database=MYSQL_DB, connect_timeout=3)
        try:
            with mysql.cursor() as cur:
                for table in tables:
                    cur.execute(f"DROP TABLE IF EXISTS {table}")
        finally:
            mysql.close()


def drop_tables(services: Services) -> None:
    """Drop the benchmark's tables from the SQL servers (the database itself stays)."""
    if services.postgres:
        drop_postgres_tables(BENCH_TABLES)
    if services.mysql:
        drop_mysql_tables(BENCH_TABLES)


@contextlib.contextmanager
def services() -> Iterator[Services]:
    """A private Redis server (exact command counts, no other client), the SQL databases, a work dir.

    ``BENCH_REDIS_URL`` reuses a Redis server instead of starting one.
    """
    work_dir = Path(tempfile.mkdtemp(prefix="coatcheck-bench-"))
    proc = None
    try:
        url = os.environ.get("BENCH_REDIS_URL", "")
        if not url:
            url, proc = _start_redis(work_dir)
        found = Services(url, proc, work_dir, prepare_postgres(), prepare_mysql())
        try:
            yield found
        finally:
            drop_tables(found)
    finally:
        if proc is not None:
            stop_process(proc)
        shutil.rmtree(work_dir, ignore_errors=True)


def versions() -> dict[str, str]:
    """Versions of the measured libraries and the tools."""
    from importlib import metadata

    names = (
        "coatcheck",
        "starlette",
        "uvicorn",
        "uvloop",
        "httptools",
        "gunicorn",
        "starsessions",
        "Flask",
        "Flask-Session",
        "Flask-SQLAlchemy",
        "SQLAlchemy",
        "redis",
        "psycopg",
        "PyMySQL",
        "aiomysql",
        "orjson",
    )
    found = {}
    for name in names:
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[name] = metadata.version(name)
    found["python"] = sys.version.split()[0]
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        found["wrk"] = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False).stdout.split()[1]
    return found


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    with contextlib.suppress(OSError):
        model = next(
            (
                line.split(":", 1)[1].strip()
                for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")
            ),
            "",
        )
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "kernel": os.uname().release,
        "loadavg": os.getloadavg(),
    }


def git_commit() -> str:
    """The repository's HEAD (and whether the tree has changes)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except OSError:
        return "unknown"
