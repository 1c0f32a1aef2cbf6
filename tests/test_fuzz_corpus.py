"""The fuzz corpus as regression tests: every input the coverage-guided fuzzer kept
(tests/fuzz/corpus, grown by ``bash scripts/fuzz``) goes through both middlewares again, and
every invariant of tests/fuzz/request_path.py must still hold."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fuzz.request_path import _check_headers, check

CORPUS = sorted((Path(__file__).parent / "fuzz" / "corpus").iterdir())


def test_the_corpus_holds_the_seeds_and_what_the_fuzzer_found() -> None:
    assert len([path for path in CORPUS if path.name.startswith("seed-")]) >= 10
    assert len(CORPUS) > 20


@pytest.mark.parametrize("path", CORPUS, ids=[path.name[:24] for path in CORPUS])
def test_fuzz_input_keeps_every_invariant(path: Path) -> None:
    check(path.read_bytes())


@pytest.mark.parametrize(
    ("headers", "cookie", "wrote"),
    [
        (
            [("Set-Cookie", "sessionid=" + "C" * 43 + "; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax")],
            "sessionid=" + "C" * 43,
            True,
        ),
        ([("X", "a\r\nSet-Cookie: evil=1")], "", False),
        ([("Set-Cookie", "sessionid=" + "A" * 43 + "; Max-Age=60; Path=/; Secure; HttpOnly; SameSite=Lax")], "", False),
        ([("Set-Cookie", "sessionid=" + "A" * 43 + "; Max-Age=60; Path=/; HttpOnly")], "", True),
    ],
    ids=["adopted-client-id", "header-injection", "cookie-without-change", "weak-attributes"],
)
def test_the_invariants_catch_what_they_guard(headers: list[tuple[str, str]], cookie: str, wrote: bool) -> None:
    with pytest.raises(AssertionError):
        _check_headers(headers, cookie, wrote)
