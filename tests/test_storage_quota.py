"""Storage is bounded: a per-user quota over uploads and outputs, and a per-task output ceiling."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from tasks_app import jobs, services
from tasks_app.audio.generate import write_tone
from tasks_app.models import AudioFile, Task

pytestmark = pytest.mark.django_db

MIB = 2**20


@pytest.fixture
def tone(tmp_path: Path) -> Path:
    """A short WAV (well under 1 MiB)."""
    path = tmp_path / "tone.wav"
    write_tone(str(path), 2.0)
    return path


def upload(client, path: Path):
    with open(path, "rb") as fh:
        return client.post("/api/v1/audio/", {"file": fh}, format="multipart")


def run(owner, audio: AudioFile, **options) -> Task:
    """Create a normalize task and run it in-process; return it reloaded."""
    task = services.task_create(owner=owner, audio_file_id=audio.pk, kind="normalize", options=options)
    jobs.run_task.call(task.id)
    task.refresh_from_db()
    return task


def test_me_shows_usage_and_limits(auth_client, user, tone, settings):
    settings.STORAGE_QUOTA_MB = 3
    settings.TASK_OUTPUT_MAX_MB = 2
    client = auth_client(user)
    empty = client.get("/api/v1/auth/me/").json()
    assert empty["username"] == "alice"
    assert empty["storage"] == {
        "used_bytes": 0,
        "uploads_bytes": 0,
        "outputs_bytes": 0,
        "quota_bytes": 3 * MIB,
        "available_bytes": 3 * MIB,
        "task_output_max_bytes": 2 * MIB,
    }
    size = upload(client, tone).json()["size"]
    storage = client.get("/api/v1/auth/me/").json()["storage"]
    assert storage["uploads_bytes"] == storage["used_bytes"] == size
    assert storage["available_bytes"] == 3 * MIB - size


def test_no_quota_is_null(auth_client, user, settings):
    settings.STORAGE_QUOTA_MB = 0
    settings.TASK_OUTPUT_MAX_MB = 0
    storage = auth_client(user).get("/api/v1/auth/me/").json()["storage"]
    assert storage["quota_bytes"] is None and storage["available_bytes"] is None
    assert storage["task_output_max_bytes"] is None


def test_an_upload_over_the_quota_gets_413_quota_exceeded_and_keeps_nothing(
    auth_client, user, other_user, tone, settings, media_files
):
    settings.STORAGE_QUOTA_MB = 1
    client = auth_client(user)
    uploaded = 0
    while (response := upload(client, tone)).status_code == 201:
        uploaded += 1
    assert uploaded == MIB // tone.stat().st_size
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and error["field"] == "file"
    assert "quota" in error["message"]
    assert AudioFile.objects.filter(owner=user).count() == uploaded
    assert len([p for p in media_files() if p.parent.name == str(user.pk)]) == uploaded
    # The quota is per user.
    assert upload(auth_client(other_user), tone).status_code == 201


def test_an_output_over_the_task_ceiling_fails_before_it_is_written(user, tone, settings, media_files):
    settings.TASK_OUTPUT_MAX_MB = 1
    audio = services.audio_file_create(owner=user, upload=SimpleUploadedFile("t.wav", tone.read_bytes()))
    long = AudioFile.objects.filter(pk=audio.pk)
    long.update(duration=3600.0)  # an hour of stereo WAV: 635 MB
    task = run(user, long.get(), output_format="wav")
    assert task.state == Task.State.FAILED
    assert "TASK_OUTPUT_MAX_MB" in task.error and "1.0 MiB" in task.error
    assert task.progress == 0.0  # refused before the job ran
    assert not [p for p in media_files() if "artifacts" in p.parts]


def test_an_output_that_would_pass_the_quota_fails_with_a_readable_error(user, tone, settings, media_files):
    audio = services.audio_file_create(owner=user, upload=SimpleUploadedFile("t.wav", tone.read_bytes()))
    settings.STORAGE_QUOTA_MB = 1
    settings.TASK_OUTPUT_MAX_MB = 0
    AudioFile.objects.filter(pk=audio.pk).update(size=MIB - 1000)  # the quota is nearly full
    task = run(user, audio, output_format="flac")  # size known only once written
    assert task.state == Task.State.FAILED
    assert "STORAGE_QUOTA_MB" in task.error and "quota" in task.error
    assert not [p for p in media_files() if "artifacts" in p.parts]


def test_a_completed_output_counts_against_the_quota(auth_client, user, tone, settings):
    audio = services.audio_file_create(owner=user, upload=SimpleUploadedFile("t.wav", tone.read_bytes()))
    task = run(user, audio, output_format="wav")
    assert task.state == Task.State.COMPLETED, task.error
    stored = Path(settings.MEDIA_ROOT) / task.result["artifacts"]["output"]
    assert task.output_bytes == stored.stat().st_size > 0
    storage = auth_client(user).get("/api/v1/auth/me/").json()["storage"]
    assert storage["outputs_bytes"] == task.output_bytes
    assert storage["used_bytes"] == audio.size + task.output_bytes
