"""The ``coatcheck`` command: the demo and the operator's tools.

::

    coatcheck demo [--store URL] [--host H] [--port P]   serve the demo app
    coatcheck check --store URL                          is the store reachable?
    coatcheck migrate --store URL                        create the schema (SQL stores)
    coatcheck purge --store URL                          delete expired sessions now
    coatcheck sessions USER --store URL                  list a user's live sessions
    coatcheck revoke-user USER --store URL               log a user out everywhere

``--store`` defaults to ``$COATCHECK_STORE``, else the SQLite file ``coatcheck-sessions.db``.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import datetime, timezone

from .errors import CoatcheckError
from .manager import SessionManager

__all__ = ["main"]

DEFAULT_STORE = "sqlite:///coatcheck-sessions.db"


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


def _check(manager: SessionManager, args: argparse.Namespace) -> str:
    manager.check()
    return f"ok: {args.store} is reachable"


def _migrate(manager: SessionManager, args: argparse.Namespace) -> str:
    migrate: Callable[[], object] | None = getattr(manager.store, "migrate", None)
    if migrate is None:
        return f"{type(manager.store).__name__} needs no migration"
    migrate()
    return f"ok: schema ready in {args.store}"


def _purge(manager: SessionManager, args: argparse.Namespace) -> str:
    return f"deleted {manager.purge_expired()} expired sessions"


def _sessions(manager: SessionManager, args: argparse.Namespace) -> str:
    infos = manager.list_sessions(args.user)
    lines = [f"{info.handle}  started {_when(info.created_at)}  expires {_when(info.expires_at)}" for info in infos]
    return "\n".join([*lines, f"{len(infos)} live sessions for {args.user!r}"])


def _revoke(manager: SessionManager, args: argparse.Namespace) -> str:
    return f"revoked {manager.revoke_user(args.user)} sessions of {args.user!r}"


def _with_manager(operation: Callable[[SessionManager, argparse.Namespace], str]) -> Callable[[argparse.Namespace], int]:
    """Run ``operation`` on a manager for ``--store``, print its report, close the store."""

    def handler(args: argparse.Namespace) -> int:
        manager = SessionManager(args.store)
        try:
            print(operation(manager, args))
        finally:
            manager.close()
        return 0

    return handler


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coatcheck", description="Server-side HTTP sessions: demo and operator tools.")
    commands = parser.add_subparsers(dest="command", required=True)
    store_default = os.environ.get("COATCHECK_STORE", DEFAULT_STORE)

    def command(
        name: str, handler: Callable[[argparse.Namespace], int], help_text: str, *, user: bool = False
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--store", default=store_default, help=f"store URL (default: {store_default})")
        if user:
            sub.add_argument("user", help="the user ID given to session.login()")
        sub.set_defaults(handler=handler)
        return sub

    demo = command("demo", _demo, "serve the demo app (login, welcome page, log out everywhere)")
    demo.set_defaults(store=os.environ.get("COATCHECK_STORE", "sqlite:///coatcheck-demo.db"))
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    command("check", _with_manager(_check), "check that the store is reachable")
    command("migrate", _with_manager(_migrate), "create the store's schema (SQL stores)")
    command("purge", _with_manager(_purge), "delete expired sessions now")
    command("sessions", _with_manager(_sessions), "list a user's live sessions", user=True)
    command("revoke-user", _with_manager(_revoke), "delete every session of a user (log out everywhere)", user=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (1 with a one-line error on failure)."""
    args = _parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except (CoatcheckError, OSError) as exc:
        print(f"coatcheck: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
