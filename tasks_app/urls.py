"""Routes of the service's own pages (the API is in `api/urls.py`)."""

from django.urls import path

from .dashboard import dashboard

urlpatterns = [
    path("", dashboard, name="dashboard"),
]
