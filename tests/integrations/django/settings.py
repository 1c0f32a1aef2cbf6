"""Settings of the Django test project: coatcheck's engine and middleware, Django auth on an
in-memory database. The store comes from ``COATCHECK_DJANGO_STORE`` (for the server processes);
tests put their own in place with ``override_settings``. Django's own session tests join the
installed apps when ``scripts/check`` has fetched them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import django

SECRET_KEY = "coatcheck-django-tests-only"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]
USE_TZ = True
ROOT_URLCONF = "tests.integrations.django.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast, for tests only

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",  # clearsessions, and the model Django's session tests import
    "coatcheck.django",
]
MIDDLEWARE = [
    "coatcheck.django.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

SESSION_ENGINE = "coatcheck.django"
COATCHECK = {
    "STORE": os.environ.get("COATCHECK_DJANGO_STORE", "memory://"),
    # the servers of test_servers.py answer plain http on 127.0.0.1, where a client drops Secure cookies
    "COOKIE_SECURE": os.environ.get("COATCHECK_DJANGO_PLAIN_HTTP") is None,
}
LOGGING_CONFIG = None  # leave logging as pytest sets it up

DJANGO_TESTS = Path(sys.prefix) / "django-tests" / django.__version__
"""Where scripts/check puts ``tests/sessions_tests`` of the installed Django release."""
if (DJANGO_TESTS / "sessions_tests" / "tests.py").is_file():
    sys.path.insert(0, str(DJANGO_TESTS))
    INSTALLED_APPS.append("sessions_tests")
