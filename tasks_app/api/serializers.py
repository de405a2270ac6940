"""Request and response shapes of the REST API (no business logic: services decide)."""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import selectors
from ..models import AudioFile, Task

DEFAULT_KIND = "analyze"


class StrictSerializer(serializers.Serializer):
    """Reject request fields the serializer does not declare, naming them."""

    def to_internal_value(self, data: Any) -> Any:
        """Refuse unknown keys before validating the known ones."""
        if hasattr(data, "keys"):
            unknown = sorted(set(data.keys()) - set(self.fields))
            if unknown:
                raise serializers.ValidationError(
                    {name: [serializers.ErrorDetail("Unknown field.", code="unknown_field")] for name in unknown}
                )
        return super().to_internal_value(data)


class ErrorDetailSerializer(serializers.Serializer):
    """What went wrong: a machine code, a readable message and the field at fault."""

    code = serializers.CharField()
    message = serializers.CharField()
    field = serializers.CharField(allow_null=True)


class ErrorSerializer(serializers.Serializer):
    """The body of every error response, from the REST API and the streams alike."""

    error = ErrorDetailSerializer()
    detail = serializers.CharField(
        required=False, help_text=("The message again, for DRF-style clients (REST responses only).")
    )


class StreamErrorSerializer(serializers.Serializer):
    """Data of the SSE `error` event, the stream's last event before it ends."""

    code = serializers.ChoiceField(
        choices=[
            ("deleted", "The task or its audio file was deleted; a reconnect gets 404."),
            (
                "unauthenticated",
                "The token expired or the user was deactivated or deleted; "
                "reconnect with fresh credentials and Last-Event-ID.",
            ),
        ],
        help_text="`deleted` or `unauthenticated`.",
    )
    message = serializers.CharField(help_text="A readable sentence.")


class AudioFileSerializer(serializers.ModelSerializer):
    """An uploaded audio file and its probed facts."""

    class Meta:
        model = AudioFile
        fields = [
            "id",
            "original_name",
            "size",
            "format",
            "codec",
            "duration",
            "sample_rate",
            "channels",
            "bit_rate",
            "created_at",
        ]
        read_only_fields = fields


class AudioUploadSerializer(StrictSerializer):
    """Multipart upload of one audio file."""

    file = serializers.FileField(help_text="The audio file (WAV, MP3, FLAC, OGG, M4A, …).")


class TaskSerializer(serializers.ModelSerializer):
    """A task as the API shows it, with links to its progress, stream and artifacts."""

    progress_url = serializers.SerializerMethodField()
    stream_url = serializers.SerializerMethodField()
    waveform_json_url = serializers.SerializerMethodField()
    waveform_png_url = serializers.SerializerMethodField()
    output_url = serializers.SerializerMethodField()

    class Meta:
        model = Task
        fields = [
            "id",
            "audio_file",
            "kind",
            "options",
            "state",
            "progress",
            "stage",
            "estimated_time",
            "result",
            "error",
            "attempts",
            "created_at",
            "updated_at",
            "started_at",
            "finished_at",
            "progress_url",
            "stream_url",
            "waveform_json_url",
            "waveform_png_url",
            "output_url",
        ]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.URI)
    def get_progress_url(self, task: Task) -> str:
        """Polling endpoint of the task's TaskProgress."""
        return self._absolute(reverse("task-progress", kwargs={"task_id": task.id}))

    @extend_schema_field(OpenApiTypes.URI)
    def get_stream_url(self, task: Task) -> str:
        """SSE stream of the task's progress."""
        return self._absolute(reverse("sse_task_progress", kwargs={"task_id": task.id}))

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_waveform_json_url(self, task: Task) -> str | None:
        """The waveform JSON of a completed analyze task; null otherwise."""
        return self._artifact_url(task, "waveform_json", "task-waveform-json")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_waveform_png_url(self, task: Task) -> str | None:
        """The waveform PNG of a completed analyze task; null otherwise."""
        return self._artifact_url(task, "waveform_png", "task-waveform-png")

    @extend_schema_field(serializers.URLField(allow_null=True))
    def get_output_url(self, task: Task) -> str | None:
        """The output file of a completed normalize task; null otherwise."""
        return self._artifact_url(task, "output", "task-output")

    def _artifact_url(self, task: Task, key: str, url_name: str) -> str | None:
        if key not in selectors.task_artifact_keys(task):
            return None
        return self._absolute(reverse(url_name, kwargs={"task_id": task.id}))

    def _absolute(self, path: str) -> str:
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request is not None else path


class WaveformSerializer(serializers.Serializer):
    """A waveform overview in BBC audiowaveform JSON format (version 2)."""

    version = serializers.IntegerField(help_text="Format version: 2.")
    channels = serializers.IntegerField(help_text="Channels in `data`: 1 (the channel mix).")
    sample_rate = serializers.IntegerField(help_text="Sample rate of the audio, in Hz.")
    samples_per_pixel = serializers.IntegerField(help_text="Audio samples per waveform point.")
    bits = serializers.IntegerField(help_text="Resolution of `data`: 16 (values ±32768).")
    length = serializers.IntegerField(help_text="Number of points.")
    data = serializers.ListField(
        child=serializers.IntegerField(),
        help_text="`min, max` pairs per point (and channel): `2 * length * channels` values.",
    )


class TaskCreateSerializer(StrictSerializer):
    """Input of `POST tasks/`: which audio file, which processor, with which options."""

    audio_file = serializers.IntegerField(min_value=1, help_text="Id of an uploaded audio file.")
    kind = serializers.ChoiceField(choices=[DEFAULT_KIND], default=DEFAULT_KIND, help_text="The processor to run.")
    options = serializers.DictField(default=dict, help_text="Options of the processor.")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read the registry per instance, never at import time.
        self.fields["kind"].choices = kind_choices()
        self.fields["kind"].help_text = "The processor to run: " + "; ".join(
            f"`{kind}`: {text}" for kind, text in kind_choices()
        )
        self.fields["options"].help_text = options_help()


class TaskListQuerySerializer(serializers.Serializer):
    """Query parameters of `GET tasks/` (paging parameters belong to the paginator)."""

    state = serializers.ChoiceField(choices=Task.State.choices, required=False, help_text="Only tasks in this state.")

    def to_internal_value(self, data: Any) -> Any:
        """Refuse `?state=` and a repeated `state`, which DRF would drop or cut to one."""
        values = data.getlist("state") if hasattr(data, "getlist") else [data.get("state")]
        if len(values) > 1:
            raise serializers.ValidationError({"state": [serializers.ErrorDetail("Give one state.", code="repeated")]})
        if values and values[0] == "":
            raise serializers.ValidationError(
                {"state": [serializers.ErrorDetail("This field may not be blank.", code="blank")]}
            )
        return super().to_internal_value(data)


class StreamTicketRequestSerializer(StrictSerializer):
    """Input of `POST auth/stream-ticket/`: the task to stream, or none for all tasks."""

    # Blank means omitted, the same whether it comes as form data or as JSON.
    task_id = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text=("The task whose stream the ticket opens; omit (or leave blank) for `GET sse/tasks/progress`."),
    )


class StreamTicketSerializer(serializers.Serializer):
    """A single-use stream ticket: pass it as `?ticket=` to the SSE endpoint it was made for."""

    ticket = serializers.CharField(source="key")
    task_id = serializers.SerializerMethodField()
    expires_at = serializers.DateTimeField()

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_task_id(self, ticket: Any) -> str | None:
        """The task whose stream the ticket opens; null for the all-tasks stream."""
        return ticket.task_id or None


def kind_choices() -> list[tuple[str, str]]:
    """(kind, description) of every registered processor."""
    from ..audio.registry import processors

    return [(p.kind, p.description) for p in processors()]


def options_help() -> str:
    """Markdown description of each processor's options, generated from the registry."""
    from ..audio.registry import processors

    lines = ["Options of the chosen `kind`; unknown or invalid options are refused (400)."]
    for processor in processors():
        lines.append("")
        lines.append(f"**{processor.kind}**" + ("" if processor.options else ": no options."))
        for name, option in processor.options.items():
            lines.append(f"- `{name}` ({_option_summary(option)}): {option.help}")
    return "\n".join(lines)


def _option_summary(option: Any) -> str:
    kind = getattr(option.type, "__name__", str(option.type))
    default = "automatic" if option.default is None else f"`{option.default!r}`"
    parts = [kind, f"default {default}"]
    if getattr(option, "minimum", None) is not None:
        parts.append(f"min {option.minimum}")
    if getattr(option, "maximum", None) is not None:
        parts.append(f"max {option.maximum}")
    if getattr(option, "choices", None):
        parts.append("one of " + ", ".join(f"`{c}`" for c in option.choices))
    return ", ".join(parts)


class StorageUsageSerializer(serializers.Serializer):
    """A user's stored bytes and storage limits (`null`: no limit)."""

    used_bytes = serializers.IntegerField(help_text="Uploads and task outputs together.")
    uploads_bytes = serializers.IntegerField()
    outputs_bytes = serializers.IntegerField()
    quota_bytes = serializers.IntegerField(allow_null=True, help_text="`STORAGE_QUOTA_MB`; null: none.")
    available_bytes = serializers.IntegerField(allow_null=True, help_text="Room left under the quota.")
    task_output_max_bytes = serializers.IntegerField(
        allow_null=True, help_text="Largest output one task may write (`TASK_OUTPUT_MAX_MB`)."
    )


class MeSerializer(serializers.Serializer):
    """The signed-in user and their storage."""

    id = serializers.IntegerField()
    username = serializers.CharField()
    is_staff = serializers.BooleanField()
    storage = StorageUsageSerializer()
