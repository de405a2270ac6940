"""Settings for the bench's baseline: django-eventstream's own view, configured as its docs say.

The project's settings, with the stock view's URLconf, its database storage (so it can
resume like the service) and Redis for cross-process events (its only way across processes).
"""

from project.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.stock_urls"
EVENTSTREAM_STORAGE_CLASS = "django_eventstream.storage.DjangoModelStorage"
