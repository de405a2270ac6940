"""ASGI entry point: Django (API, streams, admin, docs) and its static files, under Daphne."""

import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django.setup(set_prefix=False)

from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import get_resolver  # noqa: E402

from tasks_app.streams.collector import watch_collector  # noqa: E402
from tasks_app.streams.seam import StreamingASGIHandler  # noqa: E402

# Static files (the admin's, the docs') are served here too, so the embedded default needs
# no other web server.
application = ASGIStaticFilesHandler(StreamingASGIHandler())

# Import every view now, then move the start-up heap out of the collector's sight: with
# thousands of open streams a full collection would otherwise walk it all, every time (the
# streams' own objects are frozen as they open, see tasks_app.streams.collector).
get_resolver().url_patterns  # noqa: B018
gc.collect()
gc.freeze()
watch_collector()
