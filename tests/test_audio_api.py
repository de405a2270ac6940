"""Audio upload API: probed facts on success, named 400s and nothing kept on bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks_app.audio.generate import tone, write_audio, write_tone
from tasks_app.models import AudioFile

from .test_auth import assert_error

pytestmark = pytest.mark.django_db

URL = "/api/v1/audio/"


def upload(client, path: Path, name: str | None = None):
    """POST one file as multipart field `file`."""
    with path.open("rb") as fh:
        if name:
            fh.name = name  # type: ignore[misc]
        return client.post(URL, {"file": fh}, format="multipart")


def test_upload_wav_returns_201_with_probed_facts(auth_client, user, wav_upload, media_files):
    response = upload(auth_client(user), wav_upload)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["duration"] == pytest.approx(2.0, abs=0.01)
    assert body["sample_rate"] == 44100
    assert body["channels"] == 2
    assert body["format"] == "wav"
    assert body["size"] == wav_upload.stat().st_size
    assert body["original_name"] == "tone.wav"
    audio = AudioFile.objects.get(pk=body["id"])
    assert audio.owner == user
    assert [p.read_bytes() for p in media_files()] == [wav_upload.read_bytes()]


def test_upload_of_short_wav_is_accepted(auth_client, user, tmp_path):
    path = tmp_path / "short.wav"
    write_tone(str(path), 0.5, channels=1, sample_rate=22050)
    response = upload(auth_client(user), path)
    assert response.status_code == 201, response.content
    assert response.json()["duration"] == pytest.approx(0.5, abs=0.01)
    assert response.json()["channels"] == 1


def test_upload_mp3_reports_mp3(auth_client, user, tmp_path):
    path = tmp_path / "song.mp3"
    write_audio(str(path), tone(3.0), 44100, "mp3")
    response = upload(auth_client(user), path)
    assert response.status_code == 201, response.content
    assert response.json()["format"] == "mp3"
    assert response.json()["duration"] == pytest.approx(3.0, abs=0.1)


def _text_as_wav(tmp_path: Path) -> Path:
    path = tmp_path / "notes.wav"
    path.write_text("these are my notes, not audio\n" * 50)
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    return path


def _truncated_mp3(tmp_path: Path) -> Path:
    whole = tmp_path / "whole.mp3"
    write_audio(str(whole), tone(4.0), 44100, "mp3")
    data = whole.read_bytes()
    path = tmp_path / "cut.mp3"
    path.write_bytes(data[: len(data) // 2])
    return path


@pytest.mark.parametrize(
    "make, code, reason",
    [
        (_text_as_wav, "not_audio", "not a recognised audio format"),
        (_empty, "empty", "empty"),
        (_truncated_mp3, "truncated", "cut off"),
    ],
)
def test_bad_upload_is_400_naming_file_and_keeps_nothing(auth_client, user, tmp_path, media_files, make, code, reason):
    response = upload(auth_client(user), make(tmp_path))
    error = assert_error(response, 400, code)
    assert error["field"] == "file"
    assert reason in error["message"]
    assert not AudioFile.objects.exists()
    assert media_files() == []


def test_upload_over_the_size_limit_is_413_and_keeps_nothing(auth_client, user, wav_upload, settings, media_files):
    settings.AUDIO_MAX_UPLOAD_BYTES = 10_000
    error = assert_error(upload(auth_client(user), wav_upload), 413, "too_large")
    assert error["field"] == "file"
    assert "limit" in error["message"]
    assert not AudioFile.objects.exists()
    assert media_files() == []


def test_upload_without_file_names_the_field(auth_client, user):
    response = auth_client(user).post(URL, {}, format="multipart")
    assert assert_error(response, 400, "required")["field"] == "file"


def test_upload_with_unknown_field_names_it(auth_client, user, wav_upload):
    with wav_upload.open("rb") as fh:
        response = auth_client(user).post(URL, {"file": fh, "colour": "red"}, format="multipart")
    assert assert_error(response, 400, "unknown_field")["field"] == "colour"
    assert not AudioFile.objects.exists()


def test_upload_as_json_is_415(auth_client, user):
    assert_error(auth_client(user).post(URL, {"file": "x"}, format="json"), 415)


def test_list_is_paginated_and_shows_only_own_files(auth_client, user, other_user, make_audio):
    mine = [make_audio(user).pk for _ in range(3)]
    make_audio(other_user)
    body = auth_client(user).get(URL, {"page_size": 2}).json()
    assert set(body) == {"count", "next", "previous", "results"}
    assert body["count"] == 3
    assert len(body["results"]) == 2
    assert body["next"] and body["previous"] is None
    second = auth_client(user).get(URL, {"page_size": 2, "page": 2}).json()
    assert sorted(r["id"] for r in body["results"] + second["results"]) == sorted(mine)


def test_retrieve_own_file(auth_client, user, make_audio):
    audio = make_audio(user)
    response = auth_client(user).get(f"{URL}{audio.pk}/")
    assert response.status_code == 200
    assert response.json()["id"] == audio.pk


@pytest.mark.parametrize("method", ["get", "delete"])
def test_other_users_file_is_404(auth_client, user, other_user, make_audio, method):
    audio = make_audio(other_user)
    response = getattr(auth_client(user), method)(f"{URL}{audio.pk}/")
    assert_error(response, 404, "not_found")
    assert AudioFile.objects.filter(pk=audio.pk).exists()


@pytest.mark.parametrize("audio_id", ["999999", "abc"])
def test_unknown_file_id_is_404(auth_client, user, audio_id):
    assert_error(auth_client(user).get(f"{URL}{audio_id}/"), 404, "not_found")


def test_staff_can_read_any_file(auth_client, staff_user, user, make_audio):
    audio = make_audio(user)
    assert auth_client(staff_user).get(f"{URL}{audio.pk}/").status_code == 200


def test_delete_removes_row_and_stored_file(
    auth_client, user, make_audio, media_files, django_capture_on_commit_callbacks
):
    audio = make_audio(user)
    assert len(media_files()) == 1
    with django_capture_on_commit_callbacks(execute=True):
        response = auth_client(user).delete(f"{URL}{audio.pk}/")
    assert response.status_code == 204
    assert not AudioFile.objects.filter(pk=audio.pk).exists()
    assert media_files() == []


def test_delete_of_file_used_by_unfinished_task_is_409(auth_client, user, make_task):
    task = make_task(user)
    response = auth_client(user).delete(f"{URL}{task.audio_file_id}/")
    assert_error(response, 409, "in_use")
    assert AudioFile.objects.filter(pk=task.audio_file_id).exists()
