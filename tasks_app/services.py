"""Every write to audio files and tasks, and every task state transition, lives here."""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.utils import timezone

from .audio.errors import AudioError, OptionsError
from .audio.registry import get_processor, validate_options
from .exceptions import AudioTooLong, Conflict, IllegalTransition, InvalidAudio, InvalidInput, NotFound, UploadTooLarge
from .models import AudioFile, Task
from .queue import enqueue_on_commit
from .quota import check_upload
from .selectors import audio_files_visible_to
from .webhooks.services import record_task_event, record_task_progress

if TYPE_CHECKING:
    from .audio.info import AudioInfo

logger = logging.getLogger(__name__)

State = Task.State


# ---------------------------------------------------------------- audio files


def audio_file_create(*, owner: Any, upload: UploadedFile, known: AudioInfo | None = None) -> AudioFile:
    """Probe an upload as audio and store it; on any problem nothing is kept.

    `known`: the facts of a file this service wrote itself (`manage.py create_test_task`'s tone),
    taken instead of probing it; never for a file a client sent.
    """
    limit = settings.AUDIO_MAX_UPLOAD_BYTES
    if upload.size is not None and upload.size > limit:
        raise UploadTooLarge(f"The file is {upload.size} bytes; the limit is {limit} bytes.", field="file")
    if not upload.size:
        raise InvalidAudio("The file is empty.", field="file", code="empty")
    check_upload(owner_id=owner.pk, size=upload.size)
    suffix = os.path.splitext(upload.name or "")[1][:8]
    with tempfile.NamedTemporaryFile(suffix=suffix) as tmp:
        for chunk in upload.chunks():
            tmp.write(chunk)
        tmp.flush()
        # Probing needs PyAV; it is imported here, where a file is probed, so that the many
        # callers of this module that never probe (every management command, the worker's
        # state changes) start without loading the audio stack.
        info = known
        if info is None:
            from .audio.probe import probe

            try:
                info = probe(tmp.name)
            except AudioError as exc:
                raise InvalidAudio(str(exc), field="file", code=exc.code) from exc
        check_decoded_work(info)
        tmp.seek(0)
        audio = AudioFile(
            owner=owner,
            original_name=(upload.name or "audio")[:255],
            size=upload.size,
            format=info.format,
            codec=info.codec,
            duration=info.duration,
            sample_rate=info.sample_rate,
            channels=info.channels,
            bit_rate=info.bit_rate,
        )
        try:
            with transaction.atomic():
                audio.file.save(upload.name or "audio", File(tmp), save=False)
                audio.save()
        except Exception:
            if audio.file.name:
                audio.file.storage.delete(audio.file.name)
            raise
    return audio


def check_decoded_work(info: AudioInfo) -> None:
    """Refuse audio whose decoding would cost more than the limits, whatever its file size."""
    # A few MB of FLAC silence can decode to hours of samples: the bound is on decoded work.
    max_seconds = settings.AUDIO_MAX_DURATION_SECONDS
    if info.duration > max_seconds:
        raise AudioTooLong(
            f"The audio lasts {format_duration(info.duration)}; the limit is {format_duration(max_seconds)}.",
            field="file",
        )
    samples = info.duration * info.sample_rate * info.channels
    if samples > settings.AUDIO_MAX_SAMPLES:
        raise AudioTooLong(
            f"The audio holds {samples / 1e6:,.0f} million samples ({info.channels} channels × "
            f"{info.sample_rate} Hz × {format_duration(info.duration)}); the limit is "
            f"{settings.AUDIO_MAX_SAMPLES / 1e6:,.0f} million.",
            field="file",
            code="too_many_samples",
        )


def format_duration(seconds: float) -> str:
    """`4 h 30 min 00 s`, `2 min 05 s`, or `1.5 s` under a minute."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    hours, rest = divmod(int(round(seconds)), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min {secs:02d} s" if hours else f"{minutes} min {secs:02d} s"


def audio_file_delete(*, audio_file: AudioFile) -> None:
    """Delete an audio file, its finished tasks and their artifacts; refuse while in use."""
    with transaction.atomic():
        tasks = list(Task.objects.select_for_update().filter(audio_file=audio_file))
        busy = [t.id for t in tasks if not t.is_terminal]
        if busy:
            raise Conflict(
                f"The audio file is used by unfinished tasks: {', '.join(busy)}.",
                field="id",
                code="in_use",
            )
        for task in tasks:
            _delete_task_row(task)
        name = audio_file.file.name
        audio_file.delete()
    transaction.on_commit(lambda: audio_file.file.storage.delete(name) if name else None)


# ---------------------------------------------------------------------- tasks


def task_create(
    *,
    owner: Any,
    audio_file_id: int,
    kind: str = "analyze",
    options: dict | None = None,
    task_id: str | None = None,
) -> Task:
    """Create a pending task on one of the owner's audio files and enqueue it."""
    audio = audio_files_visible_to(owner).filter(pk=audio_file_id).first()
    if audio is None:
        raise NotFound(f"Audio file {audio_file_id} not found.", field="audio_file")
    try:
        get_processor(kind)
    except KeyError:
        raise InvalidInput(f"Unknown task kind {kind!r}.", field="kind") from None
    try:
        clean = validate_options(kind, options or {})
    except OptionsError as exc:
        raise InvalidInput(str(exc), field=f"options.{exc.field}") from exc
    with transaction.atomic():
        task = Task(owner=owner, audio_file=audio, kind=kind, options=clean)
        if task_id:
            task.id = task_id
        task.save(force_insert=True)
        enqueue_on_commit(task.id)
    return task


def task_cancel(*, task_id: str) -> Task:
    """Cancel a pending or processing task; a running job notices and stops."""
    return _transition(
        task_id,
        State.CANCELLED,
        finished_at=timezone.now(),
        estimated_time=None,
        stage="cancelled",
    )


def task_retry(*, task_id: str) -> Task:
    """Send a failed or cancelled task back to pending and enqueue it again."""
    with transaction.atomic():
        task = _transition(
            task_id,
            State.PENDING,
            progress=0.0,
            stage="",
            estimated_time=None,
            error=None,
            result=None,
            started_at=None,
            finished_at=None,
            heartbeat_at=None,
        )
        enqueue_on_commit(task.id)
    return task


def task_delete(*, task_id: str) -> None:
    """Delete a task and its artifacts; a running job stops at its next check."""
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None:
            raise NotFound(f"Task {task_id} not found.", field="task_id")
        _delete_task_row(task)


def task_start(*, task_id: str) -> Task | None:
    """Claim a pending task for processing; None when it is no longer pending."""
    try:
        return _transition(
            task_id,
            State.PROCESSING,
            attempts_increment=True,
            started_at=timezone.now(),
            heartbeat_at=timezone.now(),
            progress=0.0,
            stage="starting",
            estimated_time=None,
        )
    except (IllegalTransition, NotFound):
        return None


def task_report_progress(
    *, task_id: str, attempt: int, progress: float, stage: str, estimated_time: float | None
) -> bool:
    """Record progress of one attempt; False when that attempt is no longer processing."""
    with transaction.atomic():
        task = _locked_attempt(task_id, attempt)
        if task is None:
            return False
        # Progress never goes backwards within one attempt, and 100 means completed.
        task.progress = min(max(task.progress, round(float(progress), 2)), 99.99)
        task.stage = stage
        task.estimated_time = None if estimated_time is None else round(estimated_time, 2)
        task.heartbeat_at = timezone.now()
        task.save(update_fields=["progress", "stage", "estimated_time", "heartbeat_at", "updated_at"])
        record_task_progress(task)
    return True


def task_heartbeat(*, task_id: str, attempt: int) -> bool:
    """Mark one attempt alive without a visible change; False when it stopped processing."""
    # A plain guarded UPDATE on purpose: nothing a subscriber sees changed, so no event.
    return bool(
        Task.objects.filter(pk=task_id, state=State.PROCESSING, attempts=attempt).update(heartbeat_at=timezone.now())
    )


def task_complete(*, task_id: str, attempt: int, result: dict, output_bytes: int = 0) -> Task | None:
    """Mark one attempt completed with its result (and the bytes its artifacts take);
    None if it was cancelled or superseded."""
    try:
        return _transition(
            task_id,
            State.COMPLETED,
            attempt=attempt,
            progress=100.0,
            stage="done",
            estimated_time=None,
            result=result,
            error=None,
            finished_at=timezone.now(),
            output_bytes=output_bytes,
        )
    except (IllegalTransition, NotFound):
        return None


def task_fail(*, task_id: str, error: str, attempt: int | None = None) -> Task | None:
    """Mark a processing task failed with a readable error; None if it already stopped.

    With `attempt`, only that attempt may fail it (a superseded job's failure is dropped).
    """
    try:
        return _transition(
            task_id,
            State.FAILED,
            attempt=attempt,
            stage="failed",
            estimated_time=None,
            error=error[:4000],
            finished_at=timezone.now(),
        )
    except (IllegalTransition, NotFound):
        return None


# ------------------------------------------------------------------- recovery


def task_hand_back(*, task_id: str, attempt: int | None = None, stale_before: datetime | None = None) -> Task | None:
    """Send a processing task back to pending for another attempt and enqueue it again.

    Recovery only (a worker stopping gracefully, or one that died): the guarded write
    changes the task only while it is still processing the same attempt (and, with
    `stale_before`, has not reported since), so a live worker is never robbed of its task.
    Returns None when the task moved on.
    """
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None or not Task.can_recover(task.state, State.PENDING):
            return None
        if attempt is not None and task.attempts != attempt:
            return None
        last_sign = task.heartbeat_at or task.updated_at
        if stale_before is not None and last_sign >= stale_before:
            return None
        task.state = State.PENDING
        task.progress = 0.0
        task.stage = ""
        task.estimated_time = None
        task.started_at = None
        task.heartbeat_at = None
        task.save()
        enqueue_on_commit(task.id)
    return task


def task_enqueue_again(*, task_id: str, lost_job_id: str) -> bool:
    """Enqueue a pending task whose job `lost_job_id` is gone; False when it changed meanwhile."""
    with transaction.atomic():
        found = Task.objects.select_for_update().filter(pk=task_id, state=State.PENDING, job_id=lost_job_id).exists()
        if found:
            enqueue_on_commit(task_id)
    return found


def user_delete(*, user: Any) -> None:
    """Delete a user with all their tasks, audio files and the stored files of both."""
    with transaction.atomic():
        for task in Task.objects.select_for_update().filter(owner=user):
            _delete_task_row(task)
        names = [name for name in AudioFile.objects.filter(owner=user).values_list("file", flat=True) if name]
        user.delete()  # cascades to the audio file rows
    transaction.on_commit(lambda: [default_storage.delete(name) for name in names])


# ------------------------------------------------------------------- helpers


def _transition(
    task_id: str, new_state: str, *, attempts_increment: bool = False, attempt: int | None = None, **fields: Any
) -> Task:
    """Move a task to `new_state` if the state machine allows it from its current state.

    The row is locked (select_for_update; on SQLite the IMMEDIATE transaction holds the
    write lock) so two processes can never both win the same transition, and the change
    ends in save() so the post_save publisher sends it to subscribers on commit. With
    `attempt`, the change is refused unless the task is still on that attempt.
    """
    with transaction.atomic():
        task = Task.objects.select_for_update().filter(pk=task_id).first()
        if task is None:
            raise NotFound(f"Task {task_id} not found.", field="task_id")
        if attempt is not None and task.attempts != attempt:
            raise IllegalTransition(
                f"Attempt {attempt} of the task was superseded by attempt {task.attempts}.", field="attempt"
            )
        if not Task.can_transition(task.state, new_state):
            raise IllegalTransition(f"Cannot change a {task.state} task to {new_state}.", field="state")
        task.state = new_state
        for name, value in fields.items():
            setattr(task, name, value)
        if attempts_increment:
            task.attempts += 1
        task.save()
        # Webhook deliveries are owed in the same transaction: committed with it, or not at all.
        record_task_event(task)
    return task


def _locked_attempt(task_id: str, attempt: int) -> Task | None:
    """The task, row-locked, if it is processing on `attempt`; else None."""
    return Task.objects.select_for_update().filter(pk=task_id, state=State.PROCESSING, attempts=attempt).first()


def artifacts_dir(task_id: str, attempt: int | None = None) -> str:
    """Folder (relative to the media storage) of a task's artifacts, or of one attempt's."""
    return f"artifacts/{task_id}" if attempt is None else f"artifacts/{task_id}/{attempt}"


def remove_artifacts(folder: str) -> None:
    """Delete a folder of artifacts from storage, sub-folders included."""
    try:
        dirs, files = default_storage.listdir(folder)
    except FileNotFoundError:
        return
    for name in dirs:
        remove_artifacts(f"{folder}/{name}")
    for name in files:
        default_storage.delete(f"{folder}/{name}")
    try:
        os.rmdir(default_storage.path(folder))
    except (NotImplementedError, OSError):
        pass  # object stores have no folders; a local one may be gone already


def _delete_task_row(task: Task) -> None:
    """Delete one task row and, after commit, its artifact folder."""
    task_id = task.id
    task.delete()
    transaction.on_commit(lambda: remove_artifacts(artifacts_dir(task_id)))
