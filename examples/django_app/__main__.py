"""``python -m examples.django_app --port 8000 [--store URL]``: create the database and the demo
user if needed, then serve the example on 127.0.0.1 with Django's threaded development server."""

from __future__ import annotations

import argparse
import os


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.django_app", description=__doc__)
    parser.add_argument("--port", type=int, default=8000, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--store", default="sqlite:///sessions.db", help="coatcheck store URL")
    args = parser.parse_args(argv)
    os.environ["DJANGO_SETTINGS_MODULE"] = "examples.django_app.settings"
    os.environ["COATCHECK_STORE"] = args.store

    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
    from django.core.wsgi import get_wsgi_application

    call_command("migrate", verbosity=0)
    if not User.objects.filter(username="demo").exists():
        User.objects.create_user("demo", password="demo")  # noqa: S106 - the example's published login
    application = get_wsgi_application()  # checks the store: an unreachable one stops here
    server = ThreadedWSGIServer(("127.0.0.1", args.port), WSGIRequestHandler)
    server.set_app(application)
    print(f"Serving on http://127.0.0.1:{server.server_port}/ (log in as demo / demo)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
