"""docs/security.md's checklist table cannot drift from the suite: every item has exactly one row,
every test a row names exists, and every test named after an item is named in that item's row."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).parents[2]
ITEMS = [f"C-{n:02d}" for n in range(1, 57)] + [f"R-{n:02d}" for n in range(1, 24)] + [f"B-{n:02d}" for n in range(1, 28)]
ROW = re.compile(r"^\| ([CRB]-\d\d) \| (.+?) \| (.+?) \|$")
REFERENCE = re.compile(r"`(tests/[\w/]+\.py)::(test_\w+)`")
ID_NAMED = re.compile(r"test_([crb])(\d\d)_")


def rows() -> dict[str, str]:
    """ID -> what the "Proved by" cell says, from docs/security.md."""
    found: dict[str, str] = {}
    for line in (ROOT / "docs" / "security.md").read_text().splitlines():
        match = ROW.match(line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} has two rows"
            found[match.group(1)] = match.group(3)
    return found


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def test_every_item_has_one_row_with_a_test_or_a_reason() -> None:
    table = rows()
    assert sorted(table) == sorted(ITEMS)
    for item, cell in table.items():
        assert cell.startswith("n/a: ") or REFERENCE.search(cell), f"{item}: neither a test nor 'n/a: <why>'"
        assert not (cell.startswith("n/a: ") and REFERENCE.search(cell)), f"{item}: both n/a and a test"


def test_every_named_test_exists() -> None:
    for item, cell in rows().items():
        for path, name in REFERENCE.findall(cell):
            assert (ROOT / path).is_file(), f"{item}: no file {path}"
            assert name in functions_in(ROOT / path), f"{item}: no test {name} in {path}"


def test_every_test_named_after_an_item_is_in_its_row() -> None:
    table = rows()
    files = sorted((ROOT / "tests" / "security").glob("test_*.py")) + sorted((ROOT / "tests" / "faults").glob("test_*.py"))
    named = 0
    for path in files:
        for name in functions_in(path):
            match = ID_NAMED.match(name)
            if match:
                named += 1
                item = f"{match.group(1).upper()}-{match.group(2)}"
                assert f"`{path.relative_to(ROOT)}::{name}`" in table[item], f"{name} is not in the row of {item}"
    assert named > len(ITEMS)
