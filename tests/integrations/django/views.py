"""The test project's views, written twice: plain Django (``/s/...``, sync views and
``request.session[...]``) and async (``/a/...``, async views and ``aget``/``aset``/``alogin``).
Neither knows it runs on coatcheck.

/nothing      never touches the session        /count     adds one to session["visits"]
/read         returns session["visits"]         /set       ?k=&v= sets one key
/data         the session as JSON               /expiry    ?s= set_expiry(seconds)
/save         sets a key and calls save() itself
/login        POST username, password           /logout    POST: auth.logout()
/whoami       the user's name or "anonymous"    /password  POST password: change it, stay logged in
/meet         ?k=&v= sets one key, then waits until as many requests as ``MEETING.parties`` did
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from django.contrib.auth import (
    aauthenticate,
    alogin,
    alogout,
    aupdate_session_auth_hash,
    authenticate,
    login,
    logout,
    update_session_auth_hash,
)
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt


class Meeting:
    """Where concurrent requests wait for each other (a test sets one up before it sends them)."""

    def __init__(self, parties: int) -> None:
        self.parties = parties
        self.threads = threading.Barrier(parties, timeout=10)
        self.arrived = 0
        self.everyone = asyncio.Event()

    async def wait(self) -> None:
        """Return once ``parties`` tasks called this (at most 10 s)."""
        self.arrived += 1
        if self.arrived == self.parties:
            self.everyone.set()
        await asyncio.wait_for(self.everyone.wait(), 10)


MEETING: list[Meeting] = []


def nothing(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nothing")


def count(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    return HttpResponse(str(request.session["visits"]))


def read(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(request.session.get("visits")))


def set_value(request: HttpRequest) -> HttpResponse:
    request.session[request.GET["k"]] = request.GET["v"]
    return HttpResponse("ok")


def save(request: HttpRequest) -> HttpResponse:
    request.session["saved"] = "yes"
    request.session.save()
    return HttpResponse("saved")


def data(request: HttpRequest) -> HttpResponse:
    return JsonResponse(dict(request.session.items()))


def expiry(request: HttpRequest) -> HttpResponse:
    request.session.set_expiry(int(request.GET["s"]))
    return HttpResponse("ok")


@csrf_exempt
def login_view(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse("denied", status=403)
    login(request, user)
    return HttpResponse(f"hello {user.get_username()}")


@csrf_exempt
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("bye")


def whoami(request: HttpRequest) -> HttpResponse:
    return HttpResponse(request.user.get_username() if request.user.is_authenticated else "anonymous")


@csrf_exempt
def password(request: HttpRequest) -> HttpResponse:
    user: Any = request.user
    user.set_password(request.POST["password"])
    user.save()
    update_session_auth_hash(request, user)
    return HttpResponse("changed")


def meet(request: HttpRequest) -> HttpResponse:
    request.session[request.GET["k"]] = request.GET["v"]
    MEETING[0].threads.wait()
    return HttpResponse("ok")


# -- async ------------------------------------------------------------------------------------------


async def anothing(request: HttpRequest) -> HttpResponse:
    return HttpResponse("nothing")


async def acount(request: HttpRequest) -> HttpResponse:
    visits = await request.session.aget("visits", 0) + 1
    await request.session.aset("visits", visits)
    return HttpResponse(str(visits))


async def aread(request: HttpRequest) -> HttpResponse:
    return HttpResponse(str(await request.session.aget("visits")))


async def aset_value(request: HttpRequest) -> HttpResponse:
    await request.session.aset(request.GET["k"], request.GET["v"])
    return HttpResponse("ok")


async def asave(request: HttpRequest) -> HttpResponse:
    await request.session.aset("saved", "yes")
    await request.session.asave()
    return HttpResponse("saved")


async def adata(request: HttpRequest) -> HttpResponse:
    return JsonResponse(dict(await request.session.aitems()))


async def aexpiry(request: HttpRequest) -> HttpResponse:
    await request.session.aset_expiry(int(request.GET["s"]))
    return HttpResponse("ok")


@csrf_exempt
async def alogin_view(request: HttpRequest) -> HttpResponse:
    user = await aauthenticate(request, username=request.POST["username"], password=request.POST["password"])
    if user is None:
        return HttpResponse("denied", status=403)
    await alogin(request, user)
    return HttpResponse(f"hello {user.get_username()}")


@csrf_exempt
async def alogout_view(request: HttpRequest) -> HttpResponse:
    await alogout(request)
    return HttpResponse("bye")


async def awhoami(request: HttpRequest) -> HttpResponse:
    user = await request.auser()
    return HttpResponse(user.get_username() if user.is_authenticated else "anonymous")


@csrf_exempt
async def apassword(request: HttpRequest) -> HttpResponse:
    user: Any = await request.auser()
    request.user = user  # aupdate_session_auth_hash() compares it with request.user
    user.set_password(request.POST["password"])
    await user.asave()
    await aupdate_session_auth_hash(request, user)
    return HttpResponse("changed")


async def ameet(request: HttpRequest) -> HttpResponse:
    await request.session.aset(request.GET["k"], request.GET["v"])
    await MEETING[0].wait()
    return HttpResponse("ok")
