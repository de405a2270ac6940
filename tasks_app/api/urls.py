"""Routes under /api/v1/: the REST API and the SSE streams."""

from django.urls import path, re_path

from ..webhooks.views import TaskDeliveriesView, WebhookEndpointViewSet
from . import schema  # noqa: F401 - registers the bearerAuth OpenAPI extension
from .routers import ApiRouter
from .streams import task_progress_stream, tasks_progress_stream
from .tokens import LogoutView, TokenObtainPairView, TokenRefreshView, TokenVerifyView
from .views import AudioFileViewSet, MeView, StreamCookieView, StreamTicketView, TaskViewSet

router = ApiRouter(trailing_slash=True)
router.register("audio", AudioFileViewSet, basename="audio")
router.register("tasks", TaskViewSet, basename="task")
router.register("webhooks", WebhookEndpointViewSet, basename="webhook")

urlpatterns = [
    path("auth/token/", TokenObtainPairView.as_view(), name="token_obtain_pair"),
    path("auth/token/refresh/", TokenRefreshView.as_view(), name="token_refresh"),
    path("auth/token/verify/", TokenVerifyView.as_view(), name="token_verify"),
    path("auth/logout/", LogoutView.as_view(), name="logout"),
    path("auth/me/", MeView.as_view(), name="me"),
    path("auth/stream-cookie/", StreamCookieView.as_view(), name="stream_cookie"),
    path("auth/stream-ticket/", StreamTicketView.as_view(), name="stream_ticket"),
    # The all-tasks stream first: `progress` is not a task id.
    re_path(r"^sse/tasks/progress/?$", tasks_progress_stream, name="sse_tasks_progress"),
    re_path(r"^sse/tasks/(?P<task_id>[^/]+)/progress/?$", task_progress_stream, name="sse_task_progress"),
    path("tasks/<str:task_id>/webhook-deliveries/", TaskDeliveriesView.as_view(), name="task-webhook-deliveries"),
    *router.urls,
]
