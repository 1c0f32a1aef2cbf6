"""FastAPI with coatcheck: log in, a welcome that counts your visits, log out (a JSON API).

    python -m examples.fastapi_app --port 8001      # then try it at http://127.0.0.1:8001/docs

Sessions are kept in ``sessions.db`` (SQLite) in the current directory. ``secure="auto"`` marks
the cookie ``Secure`` over https only, so the app also works over plain http.
"""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from coatcheck import CookieConfig
from coatcheck.starlette import SessionDep, SessionMiddleware

app = FastAPI(title="coatcheck example")
app.add_middleware(SessionMiddleware, store="sqlite:///sessions.db", cookie=CookieConfig(secure="auto"))


class Login(BaseModel):
    name: str = Field(min_length=1, max_length=64)


class Welcome(BaseModel):
    message: str
    visits: int


@app.post("/login")
def login(body: Login, session: SessionDep) -> dict[str, str]:
    session.login(body.name)  # a new session ID, bound to the user; the old ID dies at once
    return {"user": body.name}


@app.get("/")
def welcome(session: SessionDep) -> Welcome:
    if session.user_id is None:
        raise HTTPException(status_code=401, detail="log in first: POST /login")
    session["visits"] = session.get("visits", 0) + 1
    return Welcome(message=f"Welcome, {session.user_id}", visits=session["visits"])


@app.post("/logout")
def logout(session: SessionDep) -> dict[str, None]:
    session.logout()  # deleted server-side, cookie cleared
    return {"user": None}


def main(argv: list[str] | None = None) -> None:
    """Serve the app with uvicorn on 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m examples.fastapi_app", description="Serve the FastAPI example on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks a free one)")
    port = parser.parse_args(argv).port
    uvicorn.run(app, host="127.0.0.1", port=port, lifespan="on")  # "on": a bad option or store stops startup


if __name__ == "__main__":
    main()
