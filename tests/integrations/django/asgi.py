"""The test project as an ASGI application (``uvicorn tests.integrations.django.asgi:application``)."""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.integrations.django.settings")
application = get_asgi_application()
