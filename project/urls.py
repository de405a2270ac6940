"""URL configuration: admin, the REST API, its OpenAPI schema and docs, health and metrics
(SSE is in asgi.py)."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from tasks_app.health import healthz_view
from tasks_app.metrics import metrics_view

urlpatterns = [
    path("", include("tasks_app.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/", include("tasks_app.api.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema")),
    path("api-auth/", include("rest_framework.urls")),
    path("healthz", healthz_view, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
]

# Every answer on an API path is JSON, also those Django gives before or after any view.
handler400 = "tasks_app.api.views.bad_request"
handler403 = "tasks_app.api.views.permission_denied"
handler404 = "tasks_app.api.views.not_found"
handler500 = "tasks_app.api.views.server_error"
