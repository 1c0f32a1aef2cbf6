"""Routes of the test project: the same views in plain Django under /s/ and async under /a/."""

from __future__ import annotations

from django.urls import path

from . import views

SYNC = {
    "nothing": views.nothing,
    "count": views.count,
    "read": views.read,
    "set": views.set_value,
    "data": views.data,
    "save": views.save,
    "expiry": views.expiry,
    "login": views.login_view,
    "logout": views.logout_view,
    "whoami": views.whoami,
    "password": views.password,
    "meet": views.meet,
}
ASYNC = {
    "nothing": views.anothing,
    "count": views.acount,
    "read": views.aread,
    "set": views.aset_value,
    "data": views.adata,
    "save": views.asave,
    "expiry": views.aexpiry,
    "login": views.alogin_view,
    "logout": views.alogout_view,
    "whoami": views.awhoami,
    "password": views.apassword,
    "meet": views.ameet,
}

urlpatterns = [path(f"s/{name}", view) for name, view in SYNC.items()] + [path(f"a/{name}", view) for name, view in ASYNC.items()]
