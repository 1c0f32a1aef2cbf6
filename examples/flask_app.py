"""Flask with coatcheck: log in, a welcome page that counts your visits, log out.

    python -m examples.flask_app --port 8000      # then open http://127.0.0.1:8000/
    gunicorn examples.flask_app:app               # or any WSGI server

``Sessions(app)`` keeps ``flask.session`` server-side; the views, the template and ``flash()``
are plain Flask. Sessions are kept in ``sessions.db`` (SQLite) in the current directory.
``COATCHECK_COOKIE_SECURE = "auto"`` marks the cookie ``Secure`` over https only, so the app
also works over plain http.
"""

from __future__ import annotations

import argparse

import flask
from flask import flash, redirect, render_template_string, request, session
from werkzeug.wrappers import Response

from coatcheck.flask import Sessions, get_session

app = flask.Flask(__name__)
app.config.update(COATCHECK_STORE="sqlite:///sessions.db", COATCHECK_COOKIE_SECURE="auto")
sessions = Sessions(app)  # a bad setting or an unreachable store fails here, not on a request

PAGE = """<!doctype html><title>coatcheck</title>
{% for message in get_flashed_messages() %}<p class="flash">{{ message }}</p>{% endfor %}
{% if session.user_id %}
<h1>Welcome, {{ session.user_id }}</h1>
<p>Visit <strong>{{ session.visits }}</strong> in this session.</p>
<form method="post" action="/logout"><button>Log out</button></form>
{% else %}
<form method="post" action="/login">
  <label>Name <input name="username" required maxlength="64" autofocus></label> <button>Log in</button>
</form>
{% endif %}"""


@app.get("/")
def home() -> str:
    if get_session().user_id is not None:  # get_session(): flask.session, typed as a coatcheck session
        session["visits"] = session.get("visits", 0) + 1
    return render_template_string(PAGE)


@app.post("/login")
def login() -> Response | tuple[str, int]:
    name = request.form.get("username", "").strip()
    if not 0 < len(name) <= 64:
        flash("Give a name of 1 to 64 characters.")
        return render_template_string(PAGE), 400
    get_session().login(name)  # a new session ID, bound to the user; the old ID dies at once
    return redirect("/", 303)


@app.post("/logout")
def logout() -> Response:
    session.clear()  # Flask's way out: the session is deleted server-side and its cookie cleared
    flash("You are logged out.")  # this goes into a new session, shown once
    return redirect("/", 303)


def main(argv: list[str] | None = None) -> None:
    """Serve the app with Flask's development server on 127.0.0.1."""
    parser = argparse.ArgumentParser(prog="python -m examples.flask_app", description="Serve the Flask example on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (default 8000; 0 picks a free one)")
    app.run(host="127.0.0.1", port=parser.parse_args(argv).port)


if __name__ == "__main__":
    main()
