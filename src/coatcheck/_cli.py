"""The commands of ``coatcheck`` (see :mod:`coatcheck.cli`), on click and rich.

Each command opens the store ``--store`` names, makes its report as one JSON-able document, and
prints it: with ``--json`` as that document, else as lines and rich tables. Progress displays go
to stderr. The commands that read every record (``stats``, ``revoke``) page through the store's
scan (:class:`~coatcheck.stores.SupportsScan`), never holding more than a page of records.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from ._ids import handle_of_key
from ._record import Record
from .errors import CoatcheckError, ConfigurationError, NotSupportedError
from .legacy import ListableReader
from .manager import SessionInfo, SessionManager
from .stores import AsyncStore, Store, SupportsScan, expires_natively, from_url, implements
from .stores.sqlite import SQLiteStore

__all__ = ["run"]

SCAN_PAGE = 1000  # records per page when a command reads them all
Doc = dict[str, Any]  # a report, as --json prints it
Rows = list[tuple[str, Record]]


# -- words ---------------------------------------------------------------------------------------


def _shown(url: str) -> str:
    """``url`` as a report shows it: its password, if any, hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _count(count: int, what: str) -> str:
    """``1 live session``, ``2 live sessions``: ``what`` (a plural) in the count's number."""
    return f"{count:,} {what.removesuffix('s') if count == 1 else what}"


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


# -- the store -----------------------------------------------------------------------------------


def _existing(url: str) -> Store | AsyncStore:
    """The store ``url`` names, refused when it is an SQLite file that does not exist (a command
    that only reads or deletes never creates one)."""
    store: Store | AsyncStore = from_url(url)
    if isinstance(store, SQLiteStore) and not os.path.exists(store.path):
        raise ConfigurationError(f"no SQLite store at {store.path!r}: nothing to read (coatcheck migrate --store URL creates it)")
    return store


@contextlib.contextmanager
def _manager(url: str, *, creates: bool = False) -> Iterator[SessionManager]:
    """A manager over the store ``url`` names, closed afterwards; unless the command ``creates``
    the store, a missing SQLite file is an error."""
    manager = SessionManager(url if creates else _existing(url))
    try:
        yield manager
    finally:
        manager.close()


def _pages(manager: SessionManager) -> Iterator[Rows]:
    """Every record of the store, raw, a page at a time."""
    store = manager.store
    if not implements(store, SupportsScan):
        raise NotSupportedError(f"{type(store).__name__} cannot list every session (SupportsScan)")
    cursor: str | None = None
    while True:
        rows, cursor = store.scan(cursor, SCAN_PAGE)
        yield rows
        if cursor is None:
            return


def _live(manager: SessionManager, rows: Rows) -> set[str]:
    """The handles of the live sessions among ``rows``, as the manager judges them (it lists
    these; expired records, tombstones and legacy claims it does not)."""
    return {info.handle for info in manager._infos(rows)}


def _page(manager: SessionManager, cursor: str | None, limit: int) -> tuple[list[SessionInfo], str | None]:
    """``limit`` live sessions from ``cursor`` on (fewer on the last page), and the next cursor."""
    infos: list[SessionInfo] = []
    while True:
        found, cursor = manager.scan(cursor, limit - len(infos))
        infos += found
        if cursor is None or len(infos) >= limit:
            return infos, cursor


# -- output --------------------------------------------------------------------------------------


def _report(as_json: bool, doc: Doc, *parts: str | Table | Callable[[], Table]) -> None:
    """Print ``doc`` as JSON, or ``parts``: lines, and tables drawn by rich (a large one given
    as the function that makes it, called only then)."""
    if as_json:
        click.echo(json.dumps(doc, ensure_ascii=False))
        return
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)  # a file or a pipe: as wide as it takes
    for part in parts:
        if isinstance(part, str):
            click.echo(part)  # never wrapped: a report line names the store, whatever its length
        else:
            console.print(part if isinstance(part, Table) else part())


_INFO_FIELDS = [field.name for field in dataclasses.fields(SessionInfo)]


def _info_doc(info: SessionInfo) -> Doc:
    return {name: getattr(info, name) for name in _INFO_FIELDS}  # asdict() without its deep copies


def _sessions_table(infos: Sequence[SessionInfo], *, users: bool) -> Table:
    """One row per session: its handle (never shortened: it is what ``revoke`` takes), its
    user if ``users``, its times, and its device when the app records devices."""
    table = Table()
    table.add_column("handle", no_wrap=True, min_width=16)
    if users:
        table.add_column("user")
    for heading in ("started (UTC)", "last seen (UTC)", "expires (UTC)"):
        table.add_column(heading, no_wrap=True)
    devices = any(info.browser or info.os or info.address for info in infos)
    if devices:
        table.add_column("device")
    for info in infos:
        row = [Text(info.handle)]
        if users:
            row.append(Text(info.user_id or "-"))
        row += [Text(_when(at) if at is not None else "-") for at in (info.created_at, info.last_seen, info.expires_at)]
        if devices:
            row.append(Text(", ".join(part for part in (info.browser, info.os, info.address) if part) or "-"))
        table.add_row(*row)
    return table


@contextlib.contextmanager
def _counting(verb: str, what: str, *, keep: bool, quiet: bool) -> Iterator[Callable[[int], None]]:
    """A spinner on stderr with a running count ("deleted 3,000 expired sessions") and the time
    taken, fed by the function this yields; nothing if ``quiet``. With ``keep`` its last state
    stays (written once at the end when stderr is not a terminal); else it shows on a terminal
    only, and goes when done."""
    console = Console(stderr=True, highlight=False)
    if quiet or not (keep or console.is_terminal):
        yield lambda count: None
        return
    columns = (SpinnerColumn(finished_text="✓"), TextColumn("{task.description}", markup=False), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=not keep) as progress:
        task = progress.add_task(f"{verb} {_count(0, what)}", total=None)
        last = 0

        def tell(count: int) -> None:
            nonlocal last
            last = count
            progress.update(task, description=f"{verb} {_count(count, what)}")
            progress.refresh()  # every step shows, however quick

        yield tell
        progress.update(task, total=max(last, 1), completed=max(last, 1))


# -- stats ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Tally:
    """What ``stats`` counts, a page at a time: of each session, only its size's count stays."""

    now: float
    records: int = 0
    live: int = 0
    expired: int = 0
    users: set[str] = dataclasses.field(default_factory=set)
    sizes: Counter[int] = dataclasses.field(default_factory=Counter)

    def add(self, rows: Rows, live: set[str]) -> None:
        for key, record in rows:
            self.records += 1
            if handle_of_key(key) in live:
                self.live += 1
                self.sizes[len(record.data)] += 1
                if record.user_id is not None:
                    self.users.add(record.user_id)
            elif record.expires_at <= self.now:
                self.expired += 1

    def size(self, share: float) -> int:
        """The size at ``share`` of the sessions, smallest first (nearest rank)."""
        rank, seen = max(1, math.ceil(share * self.live)), 0
        for size in sorted(self.sizes):
            seen += self.sizes[size]
            if seen >= rank:
                return size
        raise ValueError("no sessions")

    def buckets(self) -> list[Doc]:
        """The sessions by encoded size, in ranges that double: up to 64 bytes, 65 to 128, ..."""
        counts: Counter[int] = Counter()
        for size, count in self.sizes.items():
            counts[1 << max(6, (size - 1).bit_length())] += count
        return [{"from": 1 if top == 64 else top // 2 + 1, "to": top, "sessions": counts[top]} for top in sorted(counts)]

    def doc(self, store: str, native_ttl: bool) -> Doc:
        sizes = None
        if self.live:
            sizes = {
                "min": min(self.sizes),
                "median": self.size(0.5),
                "p95": self.size(0.95),
                "max": max(self.sizes),
                "mean": round(sum(size * count for size, count in self.sizes.items()) / self.live, 1),
            }
        return {
            "store": store,
            "live_sessions": self.live,
            "users": len(self.users),
            "expired_not_purged": self.expired,
            "other_records": self.records - self.live - self.expired,
            "native_ttl": native_ttl,
            "size_bytes": sizes,
            "size_buckets": self.buckets(),
        }


def _stats_tables(doc: Doc) -> list[Table]:
    summary = Table("", "", show_header=False, title="sessions")
    summary.add_row("live sessions", f"{doc['live_sessions']:,}")
    summary.add_row("distinct users", f"{doc['users']:,}")
    expired = "- (native TTL)" if doc["native_ttl"] else f"{doc['expired_not_purged']:,}"
    summary.add_row("expired, not purged yet", expired)
    summary.add_row("other records (tombstones, legacy claims)", f"{doc['other_records']:,}")
    sizes = doc["size_bytes"]
    if sizes is None:
        return [summary]
    summary.add_row(
        "size in bytes: min / median / p95 / max", f"{sizes['min']:,} / {sizes['median']:,} / {sizes['p95']:,} / {sizes['max']:,}"
    )
    buckets = Table("size (bytes)", "sessions", "share", title="sessions by encoded size")
    for bucket in doc["size_buckets"]:
        share = f"{bucket['sessions'] / doc['live_sessions']:.1%}"
        buckets.add_row(f"{bucket['from']:,}-{bucket['to']:,}", f"{bucket['sessions']:,}", share)
    return [summary, buckets]


# -- the commands --------------------------------------------------------------------------------


def _store_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--store", envvar="COATCHECK_STORE", required=True, show_envvar=True, metavar="URL", help="The store's URL."
    )(command)


def _json_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of the report.")(command)


class _Failure(click.ClickException):
    """What a command that failed says: one line on stderr, ``coatcheck: error: ...``; exit 1."""

    def show(self, file: Any = None) -> None:
        click.echo(f"coatcheck: error: {self.format_message()}", err=True)


class _Commands(click.Group):
    """The commands; coatcheck's errors (and the system's) become :class:`_Failure`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CoatcheckError, OSError) as exc:
            raise _Failure(_one_line(exc)) from exc


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Server-side HTTP sessions: the operator's tools and the demo.

    Every command but demo needs the store's URL: --store URL or $COATCHECK_STORE.
    """


@cli.command()
@_store_option
@_json_option
def stats(store: str, as_json: bool) -> None:
    """Count live sessions, users, sizes and expired sessions not purged yet."""
    with _manager(store) as manager, _counting("scanned", "records", keep=False, quiet=as_json) as tell:
        tally = _Tally(manager.clock())
        for rows in _pages(manager):
            tally.add(rows, _live(manager, rows))
            tell(tally.records)
        doc = tally.doc(_shown(store), expires_natively(manager.store))
    footer = f"{_count(tally.live, 'live sessions')} of {_count(len(tally.users), 'distinct users')} in {doc['store']}"
    _report(as_json, doc, *_stats_tables(doc), footer)


@cli.command()
@click.argument("user", required=False)
@click.option("--all", "every", is_flag=True, help="Every user's sessions, a page at a time.")
@click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True, help="Sessions per page (with --all).")
@click.option("--cursor", help="Where the page starts: the cursor the previous page printed (with --all).")
@_store_option
@_json_option
def sessions(user: str | None, every: bool, limit: int, cursor: str | None, store: str, as_json: bool) -> None:
    """List USER's live sessions, or with --all every live session, a page at a time."""
    if (user is None) != every:
        raise click.UsageError("give a USER or --all, not both")
    if cursor is not None and not every:
        raise click.UsageError("--cursor continues a listing of --all")
    shown = _shown(store)
    with _manager(store) as manager:
        if user is not None:
            infos, following = manager.list_sessions(user), None
        else:
            infos, following = _page(manager, cursor, limit)
    doc: Doc = {"store": shown, "sessions": [_info_doc(info) for info in infos]}
    table = [lambda: _sessions_table(infos, users=user is None)] if infos else []
    if user is not None:
        doc["user"] = user
        _report(as_json, doc, *table, f"{_count(len(infos), 'live sessions')} for {user!r} in {shown}")
        return
    doc["next_cursor"] = following
    following_line = "the last page" if following is None else f"next page: --cursor {following}"
    _report(as_json, doc, *table, f"{_count(len(infos), 'live sessions')} on this page of {shown}; {following_line}")


@cli.command()
@click.argument("handle")
@_store_option
@_json_option
def revoke(handle: str, store: str, as_json: bool) -> None:
    """End the one session whose handle (as `sessions` lists it) is HANDLE."""
    shown, handle = _shown(store), handle.strip().lower()
    with _manager(store) as manager:
        try:
            found = manager.revoke(handle)  # a scan of the store for the handle's key
        except CoatcheckError:
            raise
        except ValueError as exc:  # not a handle
            raise click.BadParameter(str(exc), param_hint="'HANDLE'") from exc
    if not found:
        raise CoatcheckError(f"no session with handle {handle} in {shown}")
    _report(as_json, {"store": shown, "handle": handle, "revoked": True}, f"revoked session {handle} in {shown}")


@cli.command("revoke-user")
@click.argument("user")
@_store_option
@_json_option
def revoke_user(user: str, store: str, as_json: bool) -> None:
    """Delete every session of USER (log out everywhere)."""
    with _manager(store) as manager:
        revoked = manager.revoke_user(user)
    shown = _shown(store)
    _report(
        as_json,
        {"store": shown, "user": user, "revoked": revoked},
        f"revoked {_count(revoked, 'sessions')} of {user!r} in {shown}",
    )


def _delete_expired(manager: SessionManager, tell: Callable[[int], None]) -> int:
    """Purge, telling ``tell`` the running total after each batch when the store can."""
    delete_expired = getattr(manager.store, "delete_expired", None)
    if delete_expired is not None and "progress" in inspect.signature(delete_expired).parameters:
        return int(delete_expired(manager.clock(), progress=tell))
    return manager.purge_expired()


@cli.command()
@_store_option
@_json_option
def purge(store: str, as_json: bool) -> None:
    """Delete the expired sessions now, in batches, showing the count so far."""
    shown = _shown(store)
    with _manager(store) as manager:
        if expires_natively(manager.store):
            _report(as_json, {"store": shown, "native_ttl": True, "deleted": 0}, f"native TTL: nothing to purge in {shown}")
            return
        with _counting("deleted", "expired sessions", keep=True, quiet=as_json) as tell:
            deleted = _delete_expired(manager, tell)
    line = f"deleted {_count(deleted, 'expired sessions')} from {shown}"
    _report(as_json, {"store": shown, "native_ttl": False, "deleted": deleted}, line)


@cli.command()
@_store_option
@_json_option
def migrate(store: str, as_json: bool) -> None:
    """Create the store's schema (SQL stores); the one command that creates a store."""
    shown = _shown(store)
    with _manager(store, creates=True) as manager:
        schema: Callable[[], object] | None = getattr(manager.store, "migrate", None)
        if schema is not None:
            schema()
    line = f"ok: schema ready in {shown}" if schema is not None else f"{shown} needs no migration"
    _report(as_json, {"store": shown, "migrated": schema is not None}, line)


@cli.command()
@_store_option
@_json_option
def check(store: str, as_json: bool) -> None:
    """Check that the store is reachable."""
    with _manager(store) as manager:
        manager.check()
    shown = _shown(store)
    _report(as_json, {"store": shown, "ok": True}, f"ok: {shown} is reachable")


@cli.command()
@click.option(
    "--store", envvar="COATCHECK_STORE", default="sqlite:///coatcheck-demo.db", show_default=True, show_envvar=True, metavar="URL"
)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
def demo(store: str, host: str, port: int) -> None:
    """Serve the demo app: log in, then a "your devices" page (sign out one device, the others, or all)."""
    from .demo import make_demo_server

    server = make_demo_server(store, host, port)
    click.echo(f"coatcheck demo on http://{host}:{server.server_port}/ (store: {_shown(store)}); Ctrl-C stops it")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


# -- migrate-sessions ----------------------------------------------------------------------------

DJANGO_ENGINES = {  # --from: the Django session engine it names
    "django-db": "django.contrib.sessions.backends.db",
    "django-cached-db": "django.contrib.sessions.backends.cached_db",
    "django-cache": "django.contrib.sessions.backends.cache",
}
LEGACY_KINDS = (*DJANGO_ENGINES, "flask-session-redis", "flask-session-sqlalchemy", "starsessions")


def _legacy_reader(kind: str, legacy_url: str | None, prefix: str | None, user_key: str | None, signed: bool) -> ListableReader:
    """The reader ``--from`` names, from the old system's settings (Django's from
    ``DJANGO_SETTINGS_MODULE``; the others from ``--legacy-url`` and ``--prefix``)."""
    from . import legacy

    if kind in DJANGO_ENGINES:
        import django

        if "DJANGO_SETTINGS_MODULE" not in os.environ:
            raise ConfigurationError(f"--from {kind} reads the project's settings: set DJANGO_SETTINGS_MODULE")
        django.setup()
        reader: object = legacy.django(DJANGO_ENGINES[kind])
    elif not legacy_url:
        raise ConfigurationError(f"--from {kind} needs --legacy-url (the old system's Redis or database URL)")
    elif kind == "starsessions":
        options: dict[str, Any] = {} if prefix is None else {"prefix": prefix}
        reader = legacy.starsessions(legacy_url, user_key=user_key, **options)
    else:
        redis = kind == "flask-session-redis"
        options = {} if prefix is None else {"key_prefix": prefix}
        reader = legacy.flask_session(
            redis=legacy_url if redis else None,
            sqlalchemy=None if redis else legacy_url,
            use_signer=signed,
            secret_key=os.environ.get("SECRET_KEY") if signed else None,
            user_key=user_key,
            **options,
        )
    assert isinstance(reader, ListableReader)
    return reader


@cli.command("migrate-sessions")
@click.option("--from", "source", required=True, type=click.Choice(sorted(LEGACY_KINDS)), help="The old session system.")
@click.option("--legacy-url", help="The old system's Redis or database URL (not for Django's, read from its settings).")
@click.option("--prefix", help="The old system's key prefix, if not its default.")
@click.option("--user-key", help="The session key that held the user ID (Django's is known).")
@click.option("--signed", is_flag=True, help="Flask-Session's SESSION_USE_SIGNER (SECRET_KEY from the environment).")
@click.option("--adopt", is_flag=True, help="Adopt them now (each browser gets its session on its next request).")
@_store_option
@_json_option
def migrate_sessions(
    source: str,
    legacy_url: str | None,
    prefix: str | None,
    user_key: str | None,
    signed: bool,
    adopt: bool,
    store: str,
    as_json: bool,
) -> None:
    """Count the sessions of the system the app switched from that are still to adopt, or
    adopt them now."""
    reader = _legacy_reader(source, legacy_url, prefix, user_key, signed)
    shown = _shown(store)
    doc: Doc = {"store": shown, "source": source}
    manager = SessionManager(store, legacy=[reader])
    try:
        values = list(reader.scan())
        if not adopt:
            doc["left"] = len(values)
            line = f"{len(values):,} legacy sessions left in {source} to adopt into {shown}: adopted as their users return"
            _report(as_json, doc, line + " (--adopt adopts them now)")
            return
        adopted = 0
        columns = (BarColumn(), TaskProgressColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=Console(stderr=True), disable=as_json) as progress:
            task = progress.add_task("adopting", total=len(values))
            for value in values:
                adopted += manager.adopt_legacy(reader, value)
                progress.advance(task)
    finally:
        manager.close()
    skipped = len(values) - adopted
    doc.update(adopted=adopted, total=len(values), skipped=skipped)
    line = (
        f"adopted {adopted:,} of {len(values):,} legacy sessions from {source} into {shown}"
        f" ({skipped:,} adopted already, expired or unreadable)"
    )
    _report(as_json, doc, line)


# -- running -------------------------------------------------------------------------------------


def run(argv: Sequence[str] | None) -> int:
    """Run the command line; see :func:`coatcheck.cli.main`."""
    try:
        result = cli.main(args=None if argv is None else list(argv), prog_name="coatcheck", standalone_mode=False)
    except click.ClickException as exc:  # a failure (1) or a usage error (2)
        exc.show()
        return exc.exit_code
    except click.Abort:
        click.echo("coatcheck: interrupted", err=True)
        return 130
    return result if isinstance(result, int) else 0  # an int: --help's exit status
