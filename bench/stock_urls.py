"""URLconf of the bench's baseline: django-eventstream's stock view, one channel per URL."""

import django_eventstream
from django.urls import include, path

urlpatterns = [
    path("events/<channel>/", include(django_eventstream.urls), {"format-channels": ["{channel}"]}),
]
