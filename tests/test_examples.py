"""The examples in examples/ run as documented."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from starlette.testclient import TestClient


def load(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.chdir(tmp_path)  # their SQLite file lands in a scratch directory
    module = importlib.import_module(f"examples.{name}")
    return importlib.reload(module)


def test_starlette_example_counts_visits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("starlette_app", tmp_path, monkeypatch)
    with TestClient(module.app) as client:
        assert [client.get("/").text for _ in range(3)] == ["visit 1", "visit 2", "visit 3"]
    assert (tmp_path / "sessions.db").exists()


@pytest.mark.parametrize(("name", "attribute"), [("wsgi_app", "application"), ("flask_app", "app")])
def test_wsgi_examples_count_visits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, attribute: str) -> None:
    module = load(name, tmp_path, monkeypatch)
    with httpx.Client(transport=httpx.WSGITransport(app=getattr(module, attribute)), base_url="http://testserver") as client:
        assert [client.get("/").text.strip() for _ in range(2)] == ["visit 1", "visit 2"]
    module.manager.close()
