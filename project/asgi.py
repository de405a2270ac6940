"""ASGI entry point: Django (API, streams, admin, docs) and its static files, under Daphne."""

import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from tasks_app.backpressure import keep_send_in_scope  # noqa: E402

# Static files (the admin's, the docs') are served here too, so the embedded default needs
# no other web server.
application = keep_send_in_scope(ASGIStaticFilesHandler(django_asgi_app))

# Import every view now, then move the start-up heap out of the collector's sight: with
# thousands of open streams a full collection would otherwise walk it all, every time.
get_resolver().url_patterns  # noqa: B018
gc.collect()
gc.freeze()
