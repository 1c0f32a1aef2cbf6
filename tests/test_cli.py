"""The coatcheck command: every subcommand against a real store, and one-line errors."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from coatcheck import SessionManager
from coatcheck.cli import _shown, main
from tests.backends import require_servers
from tests.backends.postgres import URL as POSTGRES_URL
from tests.backends.postgres import with_query


def _login(url: str, user: str) -> str:
    manager = SessionManager(url)
    session = manager.new_session()
    session.login(user)
    manager.commit(session)
    manager.close()
    return session.id


def test_operator_commands_on_sqlite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/ops.db"
    for user in ["alice", "alice", "bob"]:
        _login(url, user)
    assert main(["check", "--store", url]) == 0
    assert main(["migrate", "--store", url]) == 0
    assert "schema ready" in capsys.readouterr().out
    assert main(["sessions", "alice", "--store", url]) == 0
    listing = capsys.readouterr().out
    assert "2 live sessions for 'alice'" in listing
    assert main(["revoke-user", "alice", "--store", url]) == 0
    assert "revoked 2 sessions of 'alice'" in capsys.readouterr().out
    assert main(["sessions", "bob", "--store", url]) == 0
    assert f"1 live session for 'bob' in {url}" in capsys.readouterr().out
    assert main(["purge", "--store", url]) == 0
    assert f"deleted 0 expired sessions from {url}" in capsys.readouterr().out


def test_store_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COATCHECK_STORE", f"sqlite:///{tmp_path}/env.db")
    _login(f"sqlite:///{tmp_path}/env.db", "dora")
    assert main(["check"]) == 0
    assert f"sqlite:///{tmp_path}/env.db is reachable" in capsys.readouterr().out


def test_without_a_store_nothing_runs_and_nothing_is_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("COATCHECK_STORE", raising=False)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(["sessions", "alice"])
    assert stopped.value.code == 2 and "--store" in capsys.readouterr().err
    missing = f"sqlite:///{tmp_path}/typo.db"
    for command in (["check"], ["sessions", "alice"], ["purge"], ["revoke-user", "alice"]):
        assert main([*command, "--store", missing]) == 1
        assert f"no SQLite store at '{tmp_path}/typo.db'" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
    assert main(["migrate", "--store", missing]) == 0  # the one command that creates it
    assert (tmp_path / "typo.db").exists()


@pytest.mark.server
def test_reports_hide_the_password_and_redis_has_nothing_to_purge(capsys: pytest.CaptureFixture[str]) -> None:
    from tests.backends.redis import URL as REDIS_URL

    parts = urlsplit(REDIS_URL)
    url = parts._replace(netloc=f":{'s3cret'}@{parts.hostname}:{parts.port}").geturl()
    assert main(["purge", "--store", REDIS_URL]) == 0
    assert f"{REDIS_URL} expires sessions itself (native TTL): nothing to purge" in capsys.readouterr().out
    assert main(["check", "--store", url]) == 1  # no such password on the test server
    assert "s3cret" not in capsys.readouterr().err
    assert _shown(url) == parts._replace(netloc=f":***@{parts.hostname}:{parts.port}").geturl()


def test_errors_are_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--store", "redis://127.0.0.1:1/0"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("coatcheck: error: ")
    assert err.count("\n") == 1
    assert main(["purge", "--store", "ftp://x"]) == 1
    assert "known schemes" in capsys.readouterr().err


@pytest.fixture
def postgres_table() -> Iterator[str]:
    table = f"cli_{uuid.uuid4().hex[:12]}"
    try:
        psycopg.connect(POSTGRES_URL, connect_timeout=2).close()
    except psycopg.OperationalError as exc:
        if require_servers():
            pytest.fail(f"postgres unreachable and COATCHECK_REQUIRE_SERVERS=1: {exc}")
        pytest.skip(f"postgres unreachable: {exc}")
    yield table
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f'DROP TABLE IF EXISTS "{table}"')


@pytest.mark.server
def test_migrate_creates_the_postgres_schema(postgres_table: str, capsys: pytest.CaptureFixture[str]) -> None:
    url = with_query(POSTGRES_URL, f"table={postgres_table}")
    assert main(["check", "--store", url]) == 1
    assert "coatcheck migrate" in capsys.readouterr().err
    assert main(["migrate", "--store", url]) == 0
    assert main(["migrate", "--store", url]) == 0
    assert "schema ready" in capsys.readouterr().out
    _login(url, "carol")
    assert main(["revoke-user", "carol", "--store", url]) == 0
    assert "revoked 1 session of 'carol' in " in capsys.readouterr().out


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
