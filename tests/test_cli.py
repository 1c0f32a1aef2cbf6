"""The coatcheck command: every subcommand against real stores, through click's runner and
``main``, its JSON, its one-line errors and usage errors, and a process without click and rich."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest
from click.testing import CliRunner, Result

from coatcheck import Record, SessionManager, _codec
from coatcheck._cli import _shown, cli
from coatcheck._ids import handle_of_key, store_key
from coatcheck.cli import MISSING, main
from coatcheck.stores.sqlite import SQLiteStore
from tests.backends import unreachable
from tests.backends.postgres import URL as POSTGRES_URL
from tests.backends.postgres import with_query
from tests.backends.redis import URL as REDIS_URL
from tests.backends.redis import purge, with_prefix
from tests.backends.redis import require as require_redis


def _login(url: str, user: str | None, **data: Any) -> str:
    """A session stored in ``url`` (logged in as ``user`` unless None); its handle."""
    manager = SessionManager(url)
    session = manager.new_session()
    session.update(data or {"n": 1})
    if user is not None:
        session.login(user)
    manager.commit(session)
    manager.close()
    return handle_of_key(store_key(session.id))


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def _json(*args: str) -> Any:
    result = _run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def url(tmp_path: Path) -> str:
    """An SQLite store holding three sessions of alice, one of bob and an anonymous one, an
    expired record not purged yet and a tombstone."""
    url = f"sqlite:///{tmp_path}/ops.db"
    for user in ["alice", "alice", "alice", "bob", None]:
        _login(url, user)
    store = SQLiteStore(tmp_path / "ops.db")
    store.save(store_key("old"), Record(_codec.encode(1.0, {"n": 1}), time.time() - 5, 1, "carol"), expected_version=None)
    store.save(store_key("gone"), Record(_codec.TOMBSTONE, time.time() + 600, 2, None), expected_version=None)
    store.close()
    return url


def test_stats(url: str, tmp_path: Path) -> None:
    result = _run("stats", "--store", url)
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == f"5 live sessions of 2 distinct users in {url}"
    assert "expired, not purged yet" in result.stdout and "sessions by encoded size" in result.stdout
    doc = _json("stats", "--store", url)
    assert doc["store"] == url
    assert (doc["live_sessions"], doc["users"], doc["expired_not_purged"], doc["other_records"]) == (5, 2, 1, 1)
    sizes = doc["size_bytes"]
    assert 0 < sizes["min"] <= sizes["median"] <= sizes["p95"] <= sizes["max"]
    assert sum(bucket["sessions"] for bucket in doc["size_buckets"]) == 5
    single = f"sqlite:///{tmp_path}/one.db"
    _login(single, "dora")
    assert _run("stats", "--store", single).stdout.splitlines()[-1] == f"1 live session of 1 distinct user in {single}"


def test_sessions_of_a_user(url: str) -> None:
    result = _run("sessions", "alice", "--store", url)
    assert result.stdout.splitlines()[-1] == f"3 live sessions for 'alice' in {url}"
    assert "last seen (UTC)" in result.stdout and "user" not in result.stdout.splitlines()[1]
    assert _run("sessions", "bob", "--store", url).stdout.splitlines()[-1] == f"1 live session for 'bob' in {url}"
    doc = _json("sessions", "alice", "--store", url)
    assert doc["user"] == "alice" and len(doc["sessions"]) == 3
    assert {session["user_id"] for session in doc["sessions"]} == {"alice"}
    assert all(session["created_at"] <= session["last_seen"] < session["expires_at"] for session in doc["sessions"])


def test_sessions_all_pages_with_a_cursor(url: str) -> None:
    handles: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        args = ["sessions", "--all", "--limit", "2", "--store", url] + (["--cursor", cursor] if cursor else [])
        doc = _json(*args)
        handles += [session["handle"] for session in doc["sessions"]]
        pages += 1
        cursor = doc["next_cursor"]
        if cursor is None:
            break
        assert len(doc["sessions"]) == 2
    assert pages == 3 and len(handles) == len(set(handles)) == 5
    first = _run("sessions", "--all", "--limit", "4", "--store", url).stdout
    assert "4 live sessions on this page of" in first and "user" in first.splitlines()[1]
    following = re.search(r"next page: --cursor (\S+)", first)
    assert following is not None
    last = _run("sessions", "--all", "--limit", "4", "--cursor", following.group(1), "--store", url).stdout
    assert last.splitlines()[-1] == f"1 live session on this page of {url}; the last page"


@pytest.mark.parametrize(
    "args",
    [["sessions"], ["sessions", "alice", "--all"], ["sessions", "alice", "--cursor", "x"], ["sessions", "--all", "--limit", "0"]],
)
def test_usage_errors_exit_2(url: str, args: list[str]) -> None:
    result = _run(*args, "--store", url)
    assert result.exit_code == 2
    assert "Usage: " in result.stderr and result.stdout == ""


def test_revoke_ends_one_session(url: str) -> None:
    handle = _json("sessions", "bob", "--store", url)["sessions"][0]["handle"]
    result = _run("revoke", handle.upper(), "--store", url)
    assert result.exit_code == 0 and result.stdout == f"revoked session {handle} in {url}\n"
    assert _json("sessions", "bob", "--store", url)["sessions"] == []
    again = _run("revoke", handle, "--store", url)
    assert again.exit_code == 1
    assert again.stderr == f"coatcheck: error: no session with handle {handle} in {url}\n"
    other = _json("sessions", "alice", "--store", url)["sessions"][0]["handle"]
    assert _json("revoke", other, "--store", url) == {"store": url, "handle": other, "revoked": True}
    assert _json("stats", "--store", url)["live_sessions"] == 3
    bad = _run("revoke", "not-a-handle", "--store", url)
    assert bad.exit_code == 2 and "is not a session handle" in bad.stderr


def test_revoke_user(url: str) -> None:
    assert _run("revoke-user", "bob", "--store", url).stdout == f"revoked 1 session of 'bob' in {url}\n"
    assert _json("revoke-user", "alice", "--store", url) == {"store": url, "user": "alice", "revoked": 3}
    assert _json("stats", "--store", url)["users"] == 0


def test_purge_deletes_in_batches_and_shows_the_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/purge.db?purge_batch=2"
    store = SQLiteStore.from_url(url)
    for i in range(5):
        store.save(store_key(f"old{i}"), Record(_codec.encode(1.0, {}), time.time() - 5, 1, None), expected_version=None)
    store.close()
    shown = f"sqlite:///{tmp_path}/purge.db?purge_batch=2"
    result = _run("purge", "--store", url)
    assert result.stdout == f"deleted 5 expired sessions from {shown}\n"
    assert "deleted 5 expired sessions" in result.stderr  # the progress display's last state
    assert _json("purge", "--store", url) == {"store": shown, "native_ttl": False, "deleted": 0}
    store = SQLiteStore.from_url(url)
    store.save(store_key("last"), Record(_codec.encode(1.0, {}), time.time() - 5, 1, None), expected_version=None)
    store.close()
    assert _run("purge", "--store", url).stdout == f"deleted 1 expired session from {shown}\n"


def test_check_and_migrate(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/new.db"
    assert _json("migrate", "--store", url) == {"store": url, "migrated": True}
    assert _run("migrate", "--store", url).stdout == f"ok: schema ready in {url}\n"
    assert _json("check", "--store", url) == {"store": url, "ok": True}
    assert _run("check", "--store", url).stdout == f"ok: {url} is reachable\n"
    assert _run("migrate", "--store", "memory://").stdout == "memory:// needs no migration\n"
    assert _json("stats", "--store", url)["size_bytes"] is None


def test_operator_commands_through_main(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--store", url]) == 0
    assert f"ok: {url} is reachable" in capsys.readouterr().out
    assert main(["sessions", "alice", "--store", url, "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["sessions"]) == 3
    assert main(["revoke-user", "alice", "--store", url]) == 0
    assert "revoked 3 sessions of 'alice'" in capsys.readouterr().out
    assert main(["--help"]) == 0
    assert "revoke-user" in capsys.readouterr().out
    assert main(["stats", "--nonsense"]) == 2
    assert "No such option" in capsys.readouterr().err


def test_store_defaults_to_the_environment(url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("COATCHECK_STORE", url)
    assert main(["check"]) == 0
    assert f"{url} is reachable" in capsys.readouterr().out
    assert _run("stats", "--json").exit_code == 0


def test_without_a_store_nothing_runs_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COATCHECK_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert main(["sessions", "alice"]) == 2
    assert "Missing option '--store'" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/typo.db"
    read_only = (["check"], ["stats"], ["sessions", "alice"], ["sessions", "--all"], ["purge"], ["revoke-user", "alice"])
    for command in (*read_only, ["revoke", "0123456789abcdef"]):
        assert main([*command, "--store", missing]) == 1
        assert capsys.readouterr().err == f"coatcheck: error: no SQLite store at '{tmp_path}/typo.db'" + (
            ": nothing to read (coatcheck migrate --store URL creates it)\n"
        )
    assert list(tmp_path.iterdir()) == []
    assert main(["migrate", "--store", missing]) == 0  # the one command that creates it
    assert (tmp_path / "typo.db").exists()


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--store", "redis://127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("coatcheck: error: ")
    assert err.count("\n") == 1
    assert main(["purge", "--store", "ftp://x"]) == 1
    assert "known schemes" in capsys.readouterr().err


def test_a_store_without_a_scan_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/ops.db"
    _login(url, "alice")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SQLiteStore, "scan", None)
        assert main(["stats", "--store", url]) == 1
        assert capsys.readouterr().err == "coatcheck: error: SQLiteStore cannot list every session (SupportsScan)\n"


def _python(*code: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - this interpreter, our own code
        [sys.executable, "-c", "\n".join(code)], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_importing_coatcheck_imports_neither_click_nor_rich() -> None:
    done = _python(
        "import sys, coatcheck, coatcheck.cli",
        "assert not [m for m in sys.modules if m.split('.')[0] in ('click', 'rich')], sorted(sys.modules)",
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("missing", ["click", "rich"])
def test_without_click_or_rich_the_command_says_what_to_install(missing: str) -> None:
    done = _python(
        "import sys",
        f"sys.modules[{missing!r}] = None  # as if not installed: importing it raises ImportError",
        "from coatcheck.cli import main",
        "sys.exit(main(['check', '--store', 'memory://']))",
    )
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr == MISSING + "\n"
    assert "pip install 'coatcheck[cli]'" in MISSING


@pytest.mark.server
def test_reports_hide_the_password_and_redis_has_nothing_to_purge(capsys: pytest.CaptureFixture[str]) -> None:
    parts = urlsplit(REDIS_URL)
    url = parts._replace(netloc=f":{'s3cret'}@{parts.hostname}:{parts.port}").geturl()
    assert main(["purge", "--store", REDIS_URL]) == 0
    assert capsys.readouterr().out == f"native TTL: nothing to purge in {REDIS_URL}\n"
    assert _json("purge", "--store", REDIS_URL) == {"store": REDIS_URL, "native_ttl": True, "deleted": 0}
    assert main(["check", "--store", url]) == 1  # no such password on the test server
    assert "s3cret" not in capsys.readouterr().err
    assert _shown(url) == parts._replace(netloc=f":***@{parts.hostname}:{parts.port}").geturl()


@pytest.mark.server
def test_every_reading_command_on_redis() -> None:
    require_redis(REDIS_URL)
    url = with_prefix(REDIS_URL)
    try:
        handles = {_login(url, user) for user in ["alice", "alice"]}
        bob = _login(url, "bob")
        handles.add(bob)
        doc = _json("stats", "--store", url)
        assert (doc["live_sessions"], doc["users"], doc["expired_not_purged"], doc["native_ttl"]) == (3, 2, 0, True)
        assert "- (native TTL)" in _run("stats", "--store", url).stdout
        listed: set[str] = set()
        cursor: str | None = None
        while True:
            page = _json("sessions", "--all", "--limit", "1", "--store", url, *(["--cursor", cursor] if cursor else []))
            listed |= {session["handle"] for session in page["sessions"]}
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert listed == handles
        assert _run("revoke", bob, "--store", url).stdout == f"revoked session {bob} in {url}\n"
        assert _json("stats", "--store", url)["live_sessions"] == 2
        assert _json("revoke-user", "alice", "--store", url)["revoked"] == 2
    finally:
        from coatcheck.stores.redis import RedisStore

        store = RedisStore.from_url(url)
        purge(store)
        store.close()


@pytest.fixture
def postgres_table() -> Iterator[str]:
    table = f"cli_{uuid.uuid4().hex[:12]}"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        unreachable("postgres", exc)
    yield table
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@pytest.mark.server
def test_migrate_creates_the_postgres_schema_and_the_commands_read_it(
    postgres_table: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = with_query(POSTGRES_URL, f"table={postgres_table}")
    assert main(["check", "--store", url]) == 1
    assert "coatcheck migrate" in capsys.readouterr().err
    assert main(["migrate", "--store", url]) == 0
    assert main(["migrate", "--store", url]) == 0
    assert "schema ready" in capsys.readouterr().out
    handle = _login(url, "carol")
    _login(url, "dave")
    assert _json("stats", "--store", url)["live_sessions"] == 2
    assert [s["handle"] for s in _json("sessions", "carol", "--store", url)["sessions"]] == [handle]
    assert _json("revoke", handle, "--store", url)["revoked"] is True
    assert main(["revoke-user", "dave", "--store", url]) == 0
    assert "revoked 1 session of 'dave' in " in capsys.readouterr().out
    assert _json("purge", "--store", url)["deleted"] == 0


@pytest.mark.server
def test_a_database_that_does_not_exist_is_one_line_naming_it() -> None:
    """As a process: the error names the cause, and the pool's own connection warnings (which
    repeat it in libpq's words) are not printed around it."""
    url = urlsplit(POSTGRES_URL)._replace(path="/coatcheck_no_such_db").geturl() + "?pool_timeout=0.5&connect_timeout=1"
    done = subprocess.run(  # noqa: S603 - our own module, run by this interpreter
        [sys.executable, "-m", "coatcheck.cli", "check", "--store", url], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"coatcheck: error: PostgreSQL store {urlsplit(url).hostname}:{urlsplit(url).port}/coatcheck_no_such_db unavailable:"
        ' database "coatcheck_no_such_db" does not exist'
    ]
