"""REST views: validate input, call one service or selector, serialize the output."""

from __future__ import annotations

import time
from typing import Any

from django.core.exceptions import DisallowedHost
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.views import defaults
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.decorators import action
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import quota, selectors, services, tickets
from ..audio.formats import MEDIA_TYPES
from ..downloads import StoredFile, file_response
from ..exceptions import NotFound
from ..models import AudioFile, Task
from ..progress import TaskProgressSerializer, task_progress
from ..sse import TOKEN_COOKIE
from .authentication import JWTAuthentication
from .exceptions import error_body
from .parsers import JSONParser
from .serializers import (
    AudioFileSerializer,
    AudioUploadSerializer,
    ErrorSerializer,
    MeSerializer,
    StreamTicketRequestSerializer,
    StreamTicketSerializer,
    TaskCreateSerializer,
    TaskListQuerySerializer,
    TaskSerializer,
    WaveformSerializer,
)

SSE_COOKIE_PATH = "/api/v1/sse/"

ERROR_TEXT = {
    400: "Bad input; `error.field` names the field and `error.message` the reason.",
    401: "Missing, invalid or expired token.",
    404: "Unknown id, or an object the caller does not own.",
    409: "The object's state does not allow this.",
    413: "The request body is larger than the upload limit (`too_large`), refused before it "
    "is read; or the file would pass your storage quota (`quota_exceeded`).",
    415: "Unsupported media type.",
}
PAGE_NOT_FOUND = OpenApiResponse(ErrorSerializer, description=("`page` is past the last page or not a page number."))


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Schema responses for the given error statuses, all with the error body."""
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_TEXT[code]) for code in codes}


TASK_ID = OpenApiParameter(
    "task_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The task id (starts with `task_`)."
)
ARTIFACT_ERRORS = {
    404: OpenApiResponse(
        ErrorSerializer,
        description=(
            "Unknown task, a task the caller does not own, or a completed task without this "
            "artifact (`error.message` names what is missing)."
        ),
    ),
    409: OpenApiResponse(
        ErrorSerializer, description=("The task is not completed (`not_ready`); artifacts exist once it is.")
    ),
    # Every file answers HEAD, one `Range` and conditional requests (tasks_app/downloads.py).
    206: OpenApiResponse(
        OpenApiTypes.BINARY,
        description=(
            "The one byte range asked for with `Range: bytes=…` (`Content-Range` says which); "
            "several ranges, or an `If-Range` naming another version, get the whole file."
        ),
    ),
    304: OpenApiResponse(
        description=(
            "Not modified: `If-None-Match` names the file's `ETag`, or `If-Modified-Since` is not "
            "older than its `Last-Modified`."
        )
    ),
    412: OpenApiResponse(
        ErrorSerializer,
        description=("`If-Match` or `If-Unmodified-Since` names another version (`precondition_failed`)."),
    ),
    416: OpenApiResponse(
        ErrorSerializer,
        description=(
            "The `Range` starts past the end of the file (`range_not_satisfiable`; `Content-Range: bytes */<size>`)."
        ),
    ),
}


class ServeFileNegotiation(DefaultContentNegotiation):
    """Serve the file whatever `Accept` says (`image/png`, `audio/*`); errors are JSON."""

    def select_renderer(
        self, request: Request, renderers: list[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        """The first renderer (JSON): it only ever renders the error bodies."""
        return renderers[0], renderers[0].media_type


# The file actions answer with a plain Django response, which DRF passes through unrendered.
FILE_ACTION = {
    "detail": True,
    "methods": ["get"],
    "serves_file": True,
    "renderer_classes": [JSONRenderer],
    "content_negotiation_class": ServeFileNegotiation,
}


def serve(request: Request, artifact: selectors.Artifact, *, attachment: bool = False) -> HttpResponseBase:
    """Stream a stored artifact with its media type and file name (ranges, 304, bounded memory)."""
    try:
        stored = StoredFile.stat(artifact.name)
    except FileNotFoundError:
        # The task was deleted since the selector looked: the same 404 as a moment later.
        raise NotFound(f"{artifact.filename} no longer exists.", field="task_id") from None
    return file_response(
        request, stored, filename=artifact.filename, content_type=artifact.content_type, attachment=attachment
    )


AUDIO_ID = OpenApiParameter("id", OpenApiTypes.INT, OpenApiParameter.PATH, description="The audio file id.")


@extend_schema_view(
    list=extend_schema(
        summary="List your audio files", responses={200: AudioFileSerializer, **errors(400, 401), 404: PAGE_NOT_FOUND}
    ),
    retrieve=extend_schema(
        summary="Show an audio file", parameters=[AUDIO_ID], responses={200: AudioFileSerializer, **errors(401, 404)}
    ),
    create=extend_schema(
        summary="Upload an audio file",
        description="Multipart field `file`. The file is probed (format, duration, sample rate, "
        "channels) and fully decoded at its tail; non-audio, truncated or empty "
        "files, and audio longer than the duration or sample limits (`too_long`, "
        "`too_many_samples`) are refused with 400, a body over the size limit with "
        "413 before it is read; nothing is kept.",
        request={"multipart/form-data": AudioUploadSerializer},
        responses={201: AudioFileSerializer, **errors(400, 401, 413, 415)},
    ),
    destroy=extend_schema(
        summary="Delete an audio file and its finished tasks",
        parameters=[AUDIO_ID],
        responses={
            204: None,
            **errors(401, 404),
            409: OpenApiResponse(
                ErrorSerializer,
                description=(
                    "A pending or processing task uses the file (`in_use`): cancel or delete that task first."
                ),
            ),
        },
    ),
)
class AudioFileViewSet(viewsets.GenericViewSet):
    """Upload, list, show and delete the caller's audio files."""

    serializer_class = AudioFileSerializer
    parser_classes = [MultiPartParser, FormParser]
    lookup_url_kwarg = "id"

    def get_queryset(self) -> QuerySet[AudioFile]:
        """Audio files the caller may see."""
        return selectors.audio_files_visible_to(self.request.user)

    def get_serializer_class(self) -> type:
        """The upload form for `create`, the read shape otherwise."""
        return AudioUploadSerializer if self.action == "create" else AudioFileSerializer

    def list(self, request: Request) -> Response:
        """Page through the caller's audio files."""
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(AudioFileSerializer(page, many=True).data)

    def create(self, request: Request) -> Response:
        """Probe and store one uploaded audio file."""
        upload = AudioUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        audio = services.audio_file_create(owner=request.user, upload=upload.validated_data["file"])
        return Response(AudioFileSerializer(audio).data, status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, **kwargs: str) -> Response:
        """One audio file."""
        audio = selectors.audio_file_for_user(request.user, kwargs["id"])
        return Response(AudioFileSerializer(audio).data)

    def destroy(self, request: Request, **kwargs: str) -> Response:
        """Delete an audio file unless an unfinished task uses it."""
        audio = selectors.audio_file_for_user(request.user, kwargs["id"])
        services.audio_file_delete(audio_file=audio)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    list=extend_schema(
        summary="List your tasks",
        parameters=[TaskListQuerySerializer],
        responses={200: TaskSerializer, **errors(400, 401), 404: PAGE_NOT_FOUND},
    ),
    create=extend_schema(
        summary="Create a task on an uploaded audio file",
        request=TaskCreateSerializer,
        responses={201: TaskSerializer, **errors(400, 401, 404)},
    ),
    retrieve=extend_schema(
        summary="Show a task", parameters=[TASK_ID], responses={200: TaskSerializer, **errors(401, 404)}
    ),
    destroy=extend_schema(summary="Delete a task", parameters=[TASK_ID], responses={204: None, **errors(401, 404)}),
)
class TaskViewSet(viewsets.GenericViewSet):
    """Create, list, show, cancel, retry and delete the caller's processing tasks."""

    serializer_class = TaskSerializer
    lookup_url_kwarg = "task_id"

    def get_queryset(self) -> QuerySet[Task]:
        """Tasks the caller may see."""
        return selectors.tasks_visible_to(self.request.user)

    def get_serializer_class(self) -> type:
        """The create input for `create`, the read shape otherwise."""
        return TaskCreateSerializer if self.action == "create" else TaskSerializer

    def list(self, request: Request) -> Response:
        """Page through the caller's tasks, newest first, optionally in one state."""
        query = TaskListQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        tasks = selectors.tasks_visible_to(request.user, state=query.validated_data.get("state"))
        page = self.paginate_queryset(tasks)
        return self.get_paginated_response(self._out(page, many=True))

    def create(self, request: Request) -> Response:
        """Create a pending task and queue it for the worker."""
        data = TaskCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task = services.task_create(
            owner=request.user,
            audio_file_id=data.validated_data["audio_file"],
            kind=data.validated_data["kind"],
            options=data.validated_data["options"],
        )
        return Response(self._out(task), status=status.HTTP_201_CREATED)

    def retrieve(self, request: Request, task_id: str) -> Response:
        """One task."""
        return Response(self._out(selectors.task_for_user(request.user, task_id)))

    def destroy(self, request: Request, task_id: str) -> Response:
        """Delete a task; a running job stops at its next check."""
        task = selectors.task_for_user(request.user, task_id)
        services.task_delete(task_id=task.id)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Cancel a pending or processing task",
        request=None,
        parameters=[TASK_ID],
        responses={200: TaskSerializer, **errors(401, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request: Request, task_id: str) -> Response:
        """Cancel the task; 409 when it already finished."""
        task = selectors.task_for_user(request.user, task_id)
        return Response(self._out(services.task_cancel(task_id=task.id)))

    @extend_schema(
        summary="Retry a failed or cancelled task",
        request=None,
        parameters=[TASK_ID],
        responses={200: TaskSerializer, **errors(401, 404, 409)},
    )
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, task_id: str) -> Response:
        """Send the task back to pending; 409 unless it failed or was cancelled."""
        task = selectors.task_for_user(request.user, task_id)
        return Response(self._out(services.task_retry(task_id=task.id)))

    @extend_schema(
        summary="Current TaskProgress (polling fallback of the SSE stream)",
        parameters=[TASK_ID],
        responses={200: TaskProgressSerializer, **errors(401, 404)},
    )
    @action(detail=True, methods=["get"])
    def progress(self, request: Request, task_id: str) -> Response:
        """The same TaskProgress JSON the stream sends."""
        return Response(task_progress(selectors.task_for_user(request.user, task_id)))

    @extend_schema(
        summary="Waveform of a completed analyze task (audiowaveform JSON)",
        description="The BBC audiowaveform JSON (version 2) of the channel mix.",
        parameters=[TASK_ID],
        responses={200: WaveformSerializer, **errors(401), **ARTIFACT_ERRORS},
    )
    @action(url_path="waveform.json", **FILE_ACTION)
    def waveform_json(self, request: Request, task_id: str) -> HttpResponseBase:
        """The waveform JSON document of a completed analyze task."""
        return serve(request, selectors.task_artifact(request.user, task_id, "waveform_json"))

    @extend_schema(
        summary="Waveform of a completed analyze task (PNG image)",
        parameters=[TASK_ID],
        responses={
            (200, "image/png"): OpenApiResponse(OpenApiTypes.BINARY, description="PNG."),
            **errors(401),
            **ARTIFACT_ERRORS,
        },
    )
    @action(url_path="waveform.png", **FILE_ACTION)
    def waveform_png(self, request: Request, task_id: str) -> HttpResponseBase:
        """The waveform PNG of a completed analyze task."""
        return serve(request, selectors.task_artifact(request.user, task_id, "waveform_png"))

    @extend_schema(
        summary="Download the output file of a completed normalize task",
        description=(
            "Sent as an attachment named `<original name>-normalized.<ext>`, typed by the "
            "task's `output_format`: " + ", ".join(f"{fmt} `{media}`" for fmt, media in MEDIA_TYPES.items()) + "."
        ),
        parameters=[TASK_ID],
        responses={
            **{
                (200, media): OpenApiResponse(OpenApiTypes.BINARY, description="Audio.")
                for media in MEDIA_TYPES.values()
            },
            **errors(401),
            **ARTIFACT_ERRORS,
        },
    )
    @action(url_path="output", **FILE_ACTION)
    def output(self, request: Request, task_id: str) -> HttpResponseBase:
        """The normalized audio of a completed normalize task, as a download."""
        return serve(request, selectors.task_artifact(request.user, task_id, "output"), attachment=True)

    def _out(self, tasks: Any, many: bool = False) -> Any:
        return TaskSerializer(tasks, many=many, context=self.get_serializer_context()).data


class MeView(APIView):
    """Who the caller is, and how much of their storage quota they use."""

    @extend_schema(
        summary="The signed-in user and their storage usage and quota", responses={200: MeSerializer, **errors(401)}
    )
    def get(self, request: Request) -> Response:
        """The caller's id, name and storage figures."""
        user = request.user
        return Response(
            MeSerializer(
                {
                    "id": user.pk,
                    "username": user.get_username(),
                    "is_staff": user.is_staff,
                    "storage": quota.storage_usage(user.pk),
                }
            ).data
        )


class StreamCookieView(APIView):
    """Put the caller's access token in an HttpOnly cookie readable only by the SSE endpoints."""

    authentication_classes = [JWTAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(
        summary="Set the SSE auth cookie",
        description=(
            "For browsers whose native `EventSource` cannot send an `Authorization` header: "
            f"sets an HttpOnly, SameSite=Strict cookie `{TOKEN_COOKIE}` holding the access "
            f"token of this request, scoped to `{SSE_COOKIE_PATH}` and expiring with the token. "
            "Call it again after refreshing the token."
        ),
        request=None,
        tags=["SSE"],
        responses={204: OpenApiResponse(description="Cookie set."), **errors(401)},
    )
    def post(self, request: Request) -> Response:
        """Set the `sse_token` cookie to the bearer token of this request."""
        authenticator = JWTAuthentication()
        raw = authenticator.get_raw_token(authenticator.get_header(request))
        remaining = max(0, int(request.auth["exp"] - time.time()))
        response = Response(status=status.HTTP_204_NO_CONTENT)
        response.set_cookie(
            TOKEN_COOKIE,
            raw.decode(),
            max_age=remaining,
            path=SSE_COOKIE_PATH,
            httponly=True,
            samesite="Strict",
            secure=request.is_secure(),
        )
        return response


class StreamTicketView(APIView):
    """Issue a short-lived, single-use ticket that opens one SSE stream without a header."""

    # JSON only: `{}` asks for the all-tasks stream, which an empty form could not say apart
    # from no form at all.
    parser_classes = [JSONParser]

    @extend_schema(
        summary="Get a stream ticket",
        description=(
            "For clients that cannot send headers or cookies: returns a ticket valid for a "
            "short time and one connection, for one task's stream (`task_id`) or, without "
            "`task_id`, for the caller's all-tasks stream. Pass it as `?ticket=`."
        ),
        request=StreamTicketRequestSerializer,
        tags=["SSE"],
        responses={201: StreamTicketSerializer, **errors(400, 401, 404, 415)},
    )
    def post(self, request: Request) -> Response:
        """Issue a ticket for a task the caller may read, or for the caller's own stream."""
        data = StreamTicketRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        task_id = data.validated_data.get("task_id")
        if task_id:
            task_id = selectors.task_for_user(request.user, task_id).id
        ticket = tickets.issue_ticket(user=request.user, task_id=task_id)
        return Response(StreamTicketSerializer(ticket).data, status=status.HTTP_201_CREATED)


def _api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """400 for requests Django refuses before any view (a foreign `Host`): JSON under /api/."""
    if not _api(request):
        return defaults.bad_request(request, exception)
    if isinstance(exception, DisallowedHost):
        body = error_body("invalid_host", "The Host header names a host this service does not serve.", "Host")
    else:
        body = error_body("bad_request", "The request is malformed.", None)
    return JsonResponse(body, status=400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    """403 outside DRF's own handling: JSON under /api/, Django's page elsewhere."""
    if _api(request):
        return JsonResponse(error_body("permission_denied", "Permission denied.", None), status=403)
    return defaults.permission_denied(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """404 for unrouted URLs: the JSON error shape under /api/, Django's page elsewhere."""
    if _api(request):
        return JsonResponse(error_body("not_found", "Not found.", None), status=404)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    """500 (a bug, logged by Django): JSON under /api/, Django's page elsewhere."""
    if _api(request):
        return JsonResponse(error_body("internal_error", "A server error occurred; it was logged.", None), status=500)
    return defaults.server_error(request)
