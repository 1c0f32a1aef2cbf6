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


def test_starlette_example_logs_in_welcomes_and_logs_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("starlette_app", tmp_path, monkeypatch)
    with TestClient(module.app) as client:  # plain http: secure="auto" leaves the cookie usable
        first = client.get("/")
        assert 'name="username"' in first.text
        assert "set-cookie" not in first.headers
        welcome = client.post("/login", data={"username": "<b>alice</b>"})  # 303, then the welcome page
        assert "Welcome, &lt;b&gt;alice&lt;/b&gt;" in welcome.text
        assert "Visit <strong>1</strong>" in welcome.text
        assert "Visit <strong>2</strong>" in client.get("/").text
        assert client.post("/login", data={"username": ""}).status_code == 400
        assert 'name="username"' in client.post("/logout").text
        assert 'name="username"' in client.get("/").text
    assert (tmp_path / "sessions.db").exists()


def test_fastapi_example_logs_in_welcomes_and_logs_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("fastapi_app", tmp_path, monkeypatch)
    with TestClient(module.app) as client:
        assert client.get("/").status_code == 401
        assert client.post("/login", json={"name": "alice"}).json() == {"user": "alice"}
        assert client.get("/").json() == {"message": "Welcome, alice", "visits": 1}
        assert client.get("/").json() == {"message": "Welcome, alice", "visits": 2}
        assert client.post("/login", json={"name": ""}).status_code == 422
        assert client.post("/logout").json() == {"user": None}
        assert client.get("/").status_code == 401
    assert (tmp_path / "sessions.db").exists()


@pytest.mark.parametrize(("name", "attribute"), [("wsgi_app", "application")])
def test_wsgi_examples_count_visits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, attribute: str) -> None:
    module = load(name, tmp_path, monkeypatch)
    with httpx.Client(transport=httpx.WSGITransport(app=getattr(module, attribute)), base_url="http://testserver") as client:
        assert [client.get("/").text.strip() for _ in range(2)] == ["visit 1", "visit 2"]
    module.manager.close()


def test_flask_example_logs_in_welcomes_and_logs_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    module = load("flask_app", tmp_path, monkeypatch)
    try:
        client = module.app.test_client()  # plain http: "auto" leaves the cookie without Secure
        first = client.get("/")
        assert 'name="username"' in first.text
        assert "Set-Cookie" not in first.headers
        welcome = client.post("/login", data={"username": "<b>alice</b>"}, follow_redirects=True)
        assert "Welcome, &lt;b&gt;alice&lt;/b&gt;" in welcome.text
        assert "Visit <strong>1</strong>" in welcome.text
        assert "Visit <strong>2</strong>" in client.get("/").text
        refused = client.post("/login", data={"username": ""})
        assert refused.status_code == 400 and "Give a name of 1 to 64 characters." in refused.text
        cookie = client.get_cookie("session")
        assert cookie is not None and not cookie.secure and cookie.http_only
        goodbye = client.post("/logout", follow_redirects=True)
        assert "You are logged out." in goodbye.text and 'name="username"' in goodbye.text
        assert 'name="username"' in client.get("/").text
        old = module.app.test_client()
        old.set_cookie("session", cookie.value)
        assert 'name="username"' in old.get("/").text  # the logged-out ID is dead
    finally:
        module.sessions.close()
    assert (tmp_path / "sessions.db").exists()
