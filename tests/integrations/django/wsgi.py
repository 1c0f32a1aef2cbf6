"""The test project as a WSGI application (``gunicorn tests.integrations.django.wsgi:application``)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.django.settings")
application = get_wsgi_application()
