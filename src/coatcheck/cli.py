"""The ``coatcheck`` command: the demo and the operator's tools.

::

    coatcheck demo [--store URL] [--host H] [--port P]   serve the demo app
    coatcheck check --store URL                          is the store reachable?
    coatcheck migrate --store URL                        create the schema (SQL stores)
    coatcheck purge --store URL                          delete expired sessions now
    coatcheck sessions USER --store URL                  list a user's live sessions
    coatcheck revoke-user USER --store URL               log a user out everywhere
    coatcheck migrate-sessions --from KIND --store URL   count the legacy sessions left [--adopt: adopt them now]

``--store`` defaults to ``$COATCHECK_STORE``; without either, the command stops. Only ``migrate``
(and the demo) create a store: the others refuse an SQLite file that does not exist. Every report
says which store it read, its password hidden.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from .errors import CoatcheckError, ConfigurationError
from .legacy import ListableReader
from .manager import SessionManager
from .stores import AsyncStore, Store, expires_natively, from_url
from .stores.sqlite import SQLiteStore

__all__ = ["main"]


def _when(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


def _demo(args: argparse.Namespace) -> int:
    from .demo import make_demo_server

    server = make_demo_server(args.store, args.host, args.port)
    print(f"coatcheck demo on http://{args.host}:{server.server_port}/ (store: {args.store}); Ctrl-C stops it", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _shown(url: str) -> str:
    """``url`` as a report shows it: its password, if any, hidden."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    return parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", ":***@", 1)).geturl()


def _sessions_count(count: int, what: str = "sessions") -> str:
    """``1 session``, ``2 live sessions``: ``what`` with the count's number."""
    return f"{count:,} {what.removesuffix('s') if count == 1 else what}"


def _check(manager: SessionManager, args: argparse.Namespace) -> str:
    manager.check()
    return f"ok: {_shown(args.store)} is reachable"


def _migrate(manager: SessionManager, args: argparse.Namespace) -> str:
    migrate: Callable[[], object] | None = getattr(manager.store, "migrate", None)
    if migrate is None:
        return f"{_shown(args.store)} needs no migration"
    migrate()
    return f"ok: schema ready in {_shown(args.store)}"


def _purge(manager: SessionManager, args: argparse.Namespace) -> str:
    if expires_natively(manager.store):
        return f"{_shown(args.store)} expires sessions itself (native TTL): nothing to purge"
    return f"deleted {_sessions_count(manager.purge_expired(), 'expired sessions')} from {_shown(args.store)}"


def _sessions(manager: SessionManager, args: argparse.Namespace) -> str:
    infos = manager.list_sessions(args.user)
    lines = [f"{info.handle}  started {_when(info.created_at)}  expires {_when(info.expires_at)}" for info in infos]
    return "\n".join([*lines, f"{_sessions_count(len(infos), 'live sessions')} for {args.user!r} in {_shown(args.store)}"])


def _revoke(manager: SessionManager, args: argparse.Namespace) -> str:
    revoked = _sessions_count(manager.revoke_user(args.user))
    return f"revoked {revoked} of {args.user!r} in {_shown(args.store)}"


DJANGO_ENGINES = {  # --from: the Django session engine it names
    "django-db": "django.contrib.sessions.backends.db",
    "django-cached-db": "django.contrib.sessions.backends.cached_db",
    "django-cache": "django.contrib.sessions.backends.cache",
}
LEGACY_KINDS = (*DJANGO_ENGINES, "flask-session-redis", "flask-session-sqlalchemy", "starsessions")


def _legacy_reader(args: argparse.Namespace) -> ListableReader:
    """The reader ``--from`` names, from the old system's settings (Django's from
    ``DJANGO_SETTINGS_MODULE``; the others from ``--legacy-url`` and ``--prefix``)."""
    from . import legacy

    kind = args.source
    if kind in DJANGO_ENGINES:
        import django

        if "DJANGO_SETTINGS_MODULE" not in os.environ:
            raise ConfigurationError(f"--from {kind} reads the project's settings: set DJANGO_SETTINGS_MODULE")
        django.setup()
        reader: object = legacy.django(DJANGO_ENGINES[kind])
    elif not args.legacy_url:
        raise ConfigurationError(f"--from {kind} needs --legacy-url (the old system's Redis or database URL)")
    elif kind == "starsessions":
        prefix: dict[str, Any] = {} if args.prefix is None else {"prefix": args.prefix}
        reader = legacy.starsessions(args.legacy_url, user_key=args.user_key, **prefix)
    else:
        redis = kind == "flask-session-redis"
        prefix = {} if args.prefix is None else {"key_prefix": args.prefix}
        reader = legacy.flask_session(
            redis=args.legacy_url if redis else None,
            sqlalchemy=None if redis else args.legacy_url,
            use_signer=args.signed,
            secret_key=os.environ.get("SECRET_KEY") if args.signed else None,
            user_key=args.user_key,
            **prefix,
        )
    assert isinstance(reader, ListableReader)
    return reader


def _progress(done: int, total: int) -> None:
    """A progress bar on stderr (a line per 10% when stderr is not a terminal)."""
    width, share = 30, done / total if total else 1.0
    if sys.stderr.isatty():
        bar = "#" * int(width * share)
        end = "\n" if done == total else ""
        print(f"\r[{bar:<{width}}] {share:4.0%} {done:,}/{total:,}", end=end, file=sys.stderr, flush=True)
    elif done == total or done * 10 // total != (done - 1) * 10 // total:
        print(f"{share:4.0%} {done:,}/{total:,}", file=sys.stderr, flush=True)


def _migrate_sessions(args: argparse.Namespace) -> int:
    reader = _legacy_reader(args)
    manager = SessionManager(args.store, legacy=[reader])
    try:
        values = list(reader.scan())
        if not args.adopt:
            print(
                f"{len(values):,} legacy sessions left in {args.source}: adopted as their users return (--adopt adopts them now)"
            )
            return 0
        adopted = 0
        for done, value in enumerate(values, 1):
            adopted += manager.adopt_legacy(reader, value)
            _progress(done, len(values))
        skipped = len(values) - adopted
        print(
            f"adopted {adopted:,} of {len(values):,} legacy sessions from {args.source}"
            f" ({skipped:,} adopted already, expired or unreadable)"
        )
    finally:
        manager.close()
    return 0


def _existing(url: str) -> Store | AsyncStore:
    """The store ``url`` names, refused when it is an SQLite file that does not exist (a command
    that only reads or deletes never creates one)."""
    store: Store | AsyncStore = from_url(url)
    if isinstance(store, SQLiteStore) and not os.path.exists(store.path):
        raise ConfigurationError(f"no SQLite store at {store.path!r}: nothing to read (coatcheck migrate --store URL creates it)")
    return store


def _with_manager(
    operation: Callable[[SessionManager, argparse.Namespace], str], *, creates: bool = False
) -> Callable[[argparse.Namespace], int]:
    """Run ``operation`` on a manager for ``--store``, print its report, close the store. Unless
    the operation ``creates`` the store, a missing SQLite file is an error."""

    def handler(args: argparse.Namespace) -> int:
        manager = SessionManager(args.store if creates else _existing(args.store))
        try:
            print(operation(manager, args))
        finally:
            manager.close()
        return 0

    return handler


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coatcheck", description="Server-side HTTP sessions: demo and operator tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    store_default = os.environ.get("COATCHECK_STORE")

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, *, user: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument(
            "--store",
            default=store_default,
            required=store_default is None,
            help="store URL (default: $COATCHECK_STORE)" + (f", now {_shown(store_default)}" if store_default else ""),
        )
        if user:
            sub.add_argument("user", help="the user ID given to session.login()")
        sub.set_defaults(handler=handler)
        return sub

    demo = command("demo", _demo, "serve the demo app (login, welcome page, log out everywhere)")
    demo.set_defaults(store=os.environ.get("COATCHECK_STORE", "sqlite:///coatcheck-demo.db"))
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    command("check", _with_manager(_check), "check that the store is reachable")
    command("migrate", _with_manager(_migrate, creates=True), "create the store's schema (SQL stores)")
    command("purge", _with_manager(_purge), "delete expired sessions now")
    command("sessions", _with_manager(_sessions), "list a user's live sessions", user=True)
    command("revoke-user", _with_manager(_revoke), "delete every session of a user (log out everywhere)", user=True)
    migrate = command(
        "migrate-sessions",
        _migrate_sessions,
        "count the sessions of the system the app switched from that are still to adopt, or adopt them now",
    )
    migrate.add_argument("--from", dest="source", required=True, choices=sorted(LEGACY_KINDS), help="the old session system")
    migrate.add_argument("--legacy-url", help="the old system's Redis or database URL (not for Django's, read from its settings)")
    migrate.add_argument("--prefix", help="the old system's key prefix, if not its default")
    migrate.add_argument("--user-key", help="the session key that held the user ID (Django's is known)")
    migrate.add_argument(
        "--signed", action="store_true", help="Flask-Session's SESSION_USE_SIGNER (SECRET_KEY from the environment)"
    )
    migrate.add_argument(
        "--adopt", action="store_true", help="adopt them now (each browser gets its session on its next request)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 with a one-line error on failure)."""
    args = _parser().parse_args(argv)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)  # its connect warnings: the error names the cause
    try:
        return int(args.handler(args))
    except (CoatcheckError, OSError) as exc:
        print(f"coatcheck: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
