"""ASGI entry point: SSE streams go to Channels consumers, everything else to Django.

Static files (the admin's, the docs') are served here too, so the embedded default needs
no other web server.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import re_path  # noqa: E402

from tasks_app.consumers import TaskProgressConsumer, UserProgressConsumer  # noqa: E402

application = ProtocolTypeRouter({
    "http": URLRouter([
        re_path(r"^api/v1/sse/tasks/progress/?$", UserProgressConsumer.as_asgi()),
        re_path(r"^api/v1/sse/tasks/(?P<task_id>[^/]+)/progress/?$",
                TaskProgressConsumer.as_asgi()),
        re_path(r"", ASGIStaticFilesHandler(django_asgi_app)),
    ]),
})
