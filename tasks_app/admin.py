"""Admin for audio files and tasks; every write goes through the services."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import admin as auth_admin
from django.contrib.auth import get_user_model
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.urls import reverse
from django.utils.html import format_html

from . import selectors, services
from .exceptions import DomainError
from .models import AudioFile, Task
from .webhooks import admin as webhooks_admin  # noqa: F401 - registers the webhook pages


@admin.register(AudioFile)
class AudioFileAdmin(admin.ModelAdmin):
    """Uploaded audio files: browse, search and delete (through the service)."""

    list_display = [
        "id",
        "original_name",
        "owner",
        "format",
        "duration",
        "sample_rate",
        "channels",
        "size",
        "created_at",
    ]
    list_filter = ["format", "created_at"]
    search_fields = ["=id", "original_name", "owner__username"]
    list_select_related = ["owner"]
    readonly_fields = [
        "file",
        "size",
        "format",
        "codec",
        "duration",
        "sample_rate",
        "channels",
        "bit_rate",
        "created_at",
    ]
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Uploads are probed by the API; the admin cannot add unprobed files."""
        return False

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> tuple:
        """Only unfinished tasks protect a file; the service deletes finished ones with it."""
        deleted, counts, perms_needed, _protected = super().get_deleted_objects(objs, request)
        busy = Task.objects.filter(audio_file__in=[obj.pk for obj in objs]).exclude(state__in=Task.TERMINAL)
        return deleted, counts, perms_needed, [f"Task {t.pk} ({t.state})" for t in busy]

    def delete_model(self, request: HttpRequest, obj: AudioFile) -> None:
        """Delete through the service, which refuses while unfinished tasks use the file."""
        _report(self, request, lambda: services.audio_file_delete(audio_file=obj))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[AudioFile]) -> None:
        """Bulk delete, one service call per file."""
        for audio in queryset:
            _report(self, request, lambda audio=audio: services.audio_file_delete(audio_file=audio))


@admin.register(Task)
class TaskAdmin(admin.ModelAdmin):
    """Processing tasks: watch progress, cancel or retry; state changes only via services."""

    list_display = ["id", "kind", "state", "progress_bar", "stage", "eta", "owner", "attempts", "created_at"]
    list_filter = ["state", "kind", "created_at"]
    search_fields = ["=id", "owner__username", "audio_file__original_name"]
    list_select_related = ["owner"]
    actions = ["cancel_tasks", "retry_tasks"]
    date_hierarchy = "created_at"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "id",
                    "owner",
                    "audio_file",
                    "kind",
                    "options",
                    "state",
                    "progress",
                    "stage",
                    "estimated_time",
                    "attempts",
                    "job_id",
                    "error",
                ]
            },
        ),
        (
            "Result",
            {
                "fields": [
                    "integrated_lufs",
                    "loudness_range",
                    "true_peak",
                    "duration",
                    "waveform",
                    "output_file",
                    "result",
                ]
            },
        ),
        ("Times", {"fields": ["created_at", "updated_at", "started_at", "finished_at", "heartbeat_at"]}),
    ]
    readonly_fields = [
        "id",
        "created_at",
        "updated_at",
        "integrated_lufs",
        "loudness_range",
        "true_peak",
        "duration",
        "waveform",
        "output_file",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Tasks are created through the API or `manage.py`, which enqueue them."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Task | None = None) -> bool:
        """Read-only detail page: state, progress and result change only through services."""
        return False

    @admin.display(description="progress", ordering="progress")
    def progress_bar(self, task: Task) -> str:
        """A small bar with the percentage."""
        return format_html(
            '<progress value="{}" max="100" style="width:6em"></progress> {}%',
            f"{task.progress:.1f}",
            f"{task.progress:.0f}",
        )

    @admin.display(description="ETA", ordering="estimated_time")
    def eta(self, task: Task) -> str:
        """Seconds left, when the worker has an estimate."""
        return "—" if task.estimated_time is None else f"{task.estimated_time:.0f} s"

    @admin.display(description="integrated loudness")
    def integrated_lufs(self, task: Task) -> str:
        """Integrated loudness (of the output, for normalize tasks)."""
        return _figure(task, "integrated_lufs", "LUFS")

    @admin.display(description="loudness range")
    def loudness_range(self, task: Task) -> str:
        """Loudness range (EBU R128 LRA)."""
        return _figure(task, "loudness_range_lu", "LU")

    @admin.display(description="true peak")
    def true_peak(self, task: Task) -> str:
        """Highest true peak."""
        return _figure(task, "true_peak_dbtp", "dBTP")

    @admin.display(description="duration")
    def duration(self, task: Task) -> str:
        """Duration of the processed audio."""
        return _figure(task, "duration", "s")

    @admin.display(description="waveform")
    def waveform(self, task: Task) -> str:
        """The waveform PNG, served to staff by the API (which accepts the admin session)."""
        if "waveform_png" not in selectors.task_artifact_keys(task):
            return "—"
        url = reverse("task-waveform-png", kwargs={"task_id": task.pk})
        return format_html(
            '<a href="{}"><img src="{}" alt="waveform of {}" style="max-width:100%;height:auto"></a>', url, url, task.pk
        )

    @admin.display(description="output file")
    def output_file(self, task: Task) -> str:
        """A download link to the normalized output."""
        if "output" not in selectors.task_artifact_keys(task):
            return "—"
        output = (task.result or {}).get("output") or {}
        url = reverse("task-output", kwargs={"task_id": task.pk})
        return format_html(
            '<a href="{}" download>Download {} ({})</a>',
            url,
            output.get("format", "output"),
            filesizeformat(output.get("size")),
        )

    @admin.action(description="Cancel selected tasks")
    def cancel_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        """Cancel each selected task through the service."""
        self._apply(request, queryset, services.task_cancel, "Cancelled")

    @admin.action(description="Retry selected tasks")
    def retry_tasks(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        """Send each selected failed or cancelled task back to pending."""
        self._apply(request, queryset, services.task_retry, "Retried")

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        """Delete through the service, which also removes the task's artifacts."""
        _report(self, request, lambda: services.task_delete(task_id=obj.pk))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        """Bulk delete, one service call per task."""
        for task_id in queryset.values_list("pk", flat=True):
            _report(self, request, lambda task_id=task_id: services.task_delete(task_id=task_id))

    def _apply(self, request: HttpRequest, queryset: QuerySet[Task], service: Any, verb: str) -> None:
        done = 0
        refused: list[str] = []
        for task_id in queryset.values_list("pk", flat=True):
            try:
                service(task_id=task_id)
            except DomainError as exc:
                refused.append(f"{task_id} ({exc.message})")
            else:
                done += 1
        self.message_user(request, f"{verb} {done} task(s).", messages.SUCCESS)
        if refused:
            self.message_user(request, f"Refused {len(refused)}: " + "; ".join(refused), messages.WARNING)


def _figure(task: Task, key: str, unit: str) -> str:
    """One measurement of a completed task: as analysed, or input → output when normalized."""
    result = task.result or {}
    if task.kind == "normalize":
        values = [(result.get(side) or {}).get(key) for side in ("input", "output")]
    else:
        section = result.get("format" if key == "duration" else "loudness") or {}
        values = [section.get(key)]
    if all(value is None for value in values):
        return "—"
    shown = ["n/a" if value is None else f"{value:.2f}" for value in values]
    return f"{' → '.join(shown)} {unit}"


def _report(model_admin: admin.ModelAdmin, request: HttpRequest, delete: Any) -> None:
    """Run a service delete; show its refusal as an admin message instead of a 500."""
    try:
        delete()
    except DomainError as exc:
        model_admin.message_user(request, exc.message, messages.ERROR)


class UserAdmin(auth_admin.UserAdmin):
    """Django's user admin; deleting a user also deletes their tasks, audio and stored files."""

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        """Delete one user through the service."""
        services.user_delete(user=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        """Delete the selected users through the service."""
        for user in queryset:
            services.user_delete(user=user)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), UserAdmin)
