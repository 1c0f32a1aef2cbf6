"""The ``coatcheck`` command: the demo and the operator's tools (on click and rich, the ``cli`` extra).

::

    coatcheck stats                      live sessions, users, sizes, expired ones not purged yet
    coatcheck sessions USER              a user's live sessions
    coatcheck sessions --all             every live session, a page at a time (--limit, --cursor)
    coatcheck revoke HANDLE              end the one session with this handle
    coatcheck revoke-user USER           log a user out everywhere
    coatcheck purge                      delete expired sessions now, with a progress display
    coatcheck migrate                    create the schema (SQL stores)
    coatcheck check                      is the store reachable?
    coatcheck migrate-sessions --from KIND [--adopt]   the sessions of the old system left to adopt
    coatcheck demo                       serve the demo app

Every command but ``demo`` takes ``--store URL`` (default ``$COATCHECK_STORE``; without either,
the command stops) and ``--json`` (one JSON document on stdout instead of the report). Only
``migrate`` (and the demo) create a store: the others refuse an SQLite file that does not exist.
Every report names the store it read, its password hidden. The commands live in
:mod:`coatcheck._cli`; this module needs neither click nor rich, so that their absence is one
line saying how to install them.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

MISSING = "coatcheck: error: the coatcheck command needs click and rich: pip install 'coatcheck[cli]'"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line (``argv``, or the process's arguments); return the exit status: 0,
    1 after a one-line error on stderr, 2 after a usage error."""
    try:
        from ._cli import run
    except ImportError as exc:
        if (exc.name or "").partition(".")[0] not in ("click", "rich"):
            raise
        print(MISSING, file=sys.stderr)
        return 1
    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
