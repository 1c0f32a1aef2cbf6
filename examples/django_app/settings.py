"""Settings of the example project: Django's defaults for auth, plus the four coatcheck lines."""

from __future__ import annotations

import os

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-never-deploy-this-key")
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "examples.django_app.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "django_app.db"}}

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",  # for `manage.py clearsessions`; its table stays empty
    "coatcheck.django",  # coatcheck 1/4: system checks of the settings and the store
]
MIDDLEWARE = [
    "coatcheck.django.middleware.SessionMiddleware",  # coatcheck 2/4: was django.contrib.sessions's
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
SESSION_ENGINE = "coatcheck.django"  # coatcheck 3/4
COATCHECK = {"STORE": os.environ.get("COATCHECK_STORE", "sqlite:///sessions.db")}  # coatcheck 4/4

SESSION_COOKIE_SECURE = False  # plain http on 127.0.0.1; True (Django's deploy check says so) behind https
