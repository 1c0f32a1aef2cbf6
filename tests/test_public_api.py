"""The public surface is a tested contract, and importing it pulls in no optional driver."""

from __future__ import annotations

import subprocess
import sys

import coatcheck


def test_all_lists_exactly_the_public_names() -> None:
    public = sorted(name for name in vars(coatcheck) if not name.startswith("_") and name not in {"annotations"})
    public = [name for name in public if not isinstance(getattr(coatcheck, name), type(coatcheck))]
    assert sorted(coatcheck.__all__) == public


def test_errors_form_the_documented_tree() -> None:
    assert issubclass(coatcheck.ConfigurationError, ValueError)
    assert issubclass(coatcheck.MiddlewareNotInstalledError, RuntimeError)
    assert issubclass(coatcheck.StoreUnavailableError, coatcheck.StoreError)
    for name in [
        "ConfigurationError",
        "MiddlewareNotInstalledError",
        "NotSupportedError",
        "ConcurrentUpdateError",
        "SessionTooLargeError",
        "StoreError",
    ]:
        assert issubclass(getattr(coatcheck, name), coatcheck.CoatcheckError)


def test_import_pulls_in_no_driver_or_framework() -> None:
    code = (
        "import sys, coatcheck, coatcheck.asgi, coatcheck.wsgi;"
        "banned = {'redis', 'psycopg', 'psycopg_pool', 'pymysql', 'aiomysql', 'starlette', 'flask', 'django', 'pytest'};"
        "print(sorted(banned & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)  # noqa: S603
    assert result.stdout.strip() == "[]"
