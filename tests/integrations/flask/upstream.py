"""Flask's own test suite, for the installed Flask version, cached in the virtualenv.

``python -m tests.integrations.flask.upstream`` downloads the Flask source distribution with pip
(``pip download --no-deps --no-binary :all: flask==<version>``) once and keeps its ``tests/``
directory under ``<venv>/flask-tests/<version>/`` (Flask is BSD-licensed); ``test_upstream.py``
runs Flask's session tests from there against ``coatcheck.flask``. ``scripts/check`` calls it, so
tests never download anything.
"""

from __future__ import annotations

import subprocess
import sys
import tarfile
import tempfile
from importlib.metadata import version
from pathlib import Path, PurePosixPath

FLASK_VERSION = version("flask")
CACHE = Path(sys.prefix) / "flask-tests" / FLASK_VERSION


def tests_dir() -> Path | None:
    """Flask's ``tests/`` directory for the installed version, if it has been fetched."""
    tests = CACHE / "tests"
    return tests if (tests / "test_basic.py").is_file() else None


def fetch() -> Path:
    """Download and unpack Flask's tests (only files under ``tests/``), unless already cached."""
    found = tests_dir()
    if found is not None:
        return found
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(  # noqa: S603 - pip, with fixed arguments
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
                f"flask=={FLASK_VERSION}",
                "--dest",
                scratch,
            ],
            check=True,
        )
        [archive] = Path(scratch).glob("flask-*.tar.gz")
        with tarfile.open(archive) as tar:
            for member in tar.getmembers():
                parts = PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) < 3 or parts[1] != "tests" or ".." in parts:
                    continue
                target = CACHE.joinpath(*parts[1:])
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                assert source is not None
                target.write_bytes(source.read())
    found = tests_dir()
    if found is None:
        raise RuntimeError(f"flask-{FLASK_VERSION}'s source distribution has no tests/test_basic.py")
    return found


if __name__ == "__main__":
    print(f"Flask {FLASK_VERSION}'s tests: {fetch()}")
