"""Plain Django views: nothing here knows the sessions live in coatcheck."""

from __future__ import annotations

from django.contrib.auth import authenticate, login, logout
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import get_token
from django.utils.html import format_html
from django.views.decorators.http import require_POST

PAGE = "<!doctype html><title>coatcheck on Django</title><h1>{}</h1>{}"


def login_view(request: HttpRequest) -> HttpResponse:
    error = ""
    if request.method == "POST":
        user = authenticate(request, username=request.POST.get("username", ""), password=request.POST.get("password", ""))
        if user is not None:
            login(request, user)  # new session ID, session bound to the user
            return HttpResponseRedirect("/")
        error = "Wrong name or password."
    form = format_html(
        '<p>{}</p><form method="post"><input type="hidden" name="csrfmiddlewaretoken" value="{}">'
        '<input name="username" placeholder="name"> <input name="password" type="password" placeholder="password">'
        " <button>Log in</button></form>",
        error,
        get_token(request),
    )
    return HttpResponse(format_html(PAGE, "Log in", form))


@login_required(login_url="/login")
def welcome(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    body = format_html(
        '<p>Visit <strong id="visits">{}</strong>.</p><form method="post" action="/logout">'
        '<input type="hidden" name="csrfmiddlewaretoken" value="{}"><button>Log out</button></form>',
        request.session["visits"],
        get_token(request),
    )
    return HttpResponse(format_html(PAGE, f"Welcome, {request.user.get_username()}", body))


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)  # the session is deleted server-side, the cookie cleared
    return HttpResponseRedirect("/login")
