"""A small Django project on coatcheck: log in, a welcome page with a visit counter, log out.

Run it with ``python -m examples.django_app --port 8000`` (``--store`` picks the session store,
default ``sqlite:///sessions.db``) and log in as demo / demo. Its views are plain Django: the
switch to coatcheck is four lines of ``settings.py``.
"""
