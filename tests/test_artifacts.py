"""Task artifacts: waveform JSON/PNG and normalized output, served to the owner once completed."""

from __future__ import annotations

import io
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from tasks_app import jobs, services
from tasks_app.audio.generate import write_tone
from tasks_app.models import Task

from .test_admin import change_url
from .test_auth import assert_error

pytestmark = pytest.mark.django_db

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARTIFACT_PATHS = ["waveform.json", "waveform.png", "output"]
MEDIA_TYPES = {"mp3": "audio/mpeg", "opus": "audio/ogg", "m4a": "audio/mp4", "flac": "audio/flac", "wav": "audio/wav"}


def url(task: Task, artifact: str) -> str:
    """The API URL of one artifact of a task."""
    return f"/api/v1/tasks/{task.pk}/{artifact}"


def body(response: Any) -> bytes:
    """The whole body of a (streaming) file response, read as a synchronous client would."""
    with warnings.catch_warnings():
        # The body is an async iterator, made for ASGI; the test client is WSGI.
        warnings.filterwarnings("ignore", "StreamingHttpResponse must consume asynchronous iterators")
        return b"".join(response)


@pytest.fixture
def completed(tmp_path: Path) -> Callable[..., Task]:
    """Factory: a task of `owner` on a fresh tone.wav that really ran in-process to completion."""

    def make(owner: Any, kind: str = "analyze", seconds: float = 2.0, **options: Any) -> Task:
        path = tmp_path / "tone.wav"
        write_tone(str(path), seconds)
        audio = services.audio_file_create(
            owner=owner, upload=SimpleUploadedFile(path.name, path.read_bytes(), "audio/wav")
        )
        task = services.task_create(owner=owner, audio_file_id=audio.pk, kind=kind, options=options)
        jobs.run_task.call(task.id)
        task.refresh_from_db()
        assert task.state == Task.State.COMPLETED, task.error
        return task

    return make


def test_waveform_json_is_an_audiowaveform_document(auth_client, user, completed):
    task = completed(user)
    response = auth_client(user).get(url(task, "waveform.json"))
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    doc = json.loads(body(response))
    assert doc["version"] == 2
    assert doc["channels"] == 1
    assert doc["sample_rate"] == 44100
    assert doc["bits"] == 16
    assert doc["samples_per_pixel"] >= 1
    assert doc["length"] == -(-2 * 44100 // doc["samples_per_pixel"])
    assert len(doc["data"]) == 2 * doc["length"] * doc["channels"]
    # A -12 dBFS tone: every point spans about ±0.25 of full scale.
    assert max(doc["data"]) == pytest.approx(0.2512 * 32768, rel=0.02)
    assert min(doc["data"]) == pytest.approx(-0.2512 * 32768, rel=0.02)


def test_waveform_png_is_a_png_image(auth_client, user, completed):
    task = completed(user)
    response = auth_client(user).get(url(task, "waveform.png"))
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert response["Content-Disposition"].startswith("inline")
    data = body(response)
    assert data.startswith(PNG_SIGNATURE)
    with Image.open(io.BytesIO(data)) as image:
        image.verify()
    with Image.open(io.BytesIO(data)) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 50


def test_png_is_served_to_a_client_that_accepts_only_png(auth_client, user, completed):
    task = completed(user)
    response = auth_client(user).get(url(task, "waveform.png"), HTTP_ACCEPT="image/png")
    assert response.status_code == 200
    assert body(response).startswith(PNG_SIGNATURE)


def test_normalized_mp3_downloads_as_an_attachment_of_the_right_duration(auth_client, user, completed, tmp_path):
    task = completed(user, kind="normalize", output_format="mp3")
    response = auth_client(user).get(url(task, "output"))
    assert response.status_code == 200
    assert response["Content-Type"] == "audio/mpeg"
    assert response["Content-Disposition"] == 'attachment; filename="tone-normalized.mp3"'
    path = tmp_path / "download.mp3"
    path.write_bytes(body(response))
    with av.open(str(path)) as container:
        assert container.format.name == "mp3"
        stream = container.streams.audio[0]
        assert stream.codec_context.name in {"mp3", "mp3float"}
        samples = sum(frame.samples for frame in container.decode(stream))
        rate = stream.codec_context.sample_rate
    assert samples / rate == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize("fmt", ["opus", "m4a", "flac", "wav"])
def test_each_output_format_has_its_media_type_and_extension(auth_client, user, completed, fmt):
    task = completed(user, kind="normalize", output_format=fmt)
    response = auth_client(user).get(url(task, "output"))
    assert response.status_code == 200
    assert response["Content-Type"] == MEDIA_TYPES[fmt]
    assert response["Content-Disposition"] == f'attachment; filename="tone-normalized.{fmt}"'
    assert int(response["Content-Length"]) == len(body(response)) > 1000


@pytest.mark.parametrize("state", ["pending", "processing", "failed", "cancelled"])
@pytest.mark.parametrize("artifact", ARTIFACT_PATHS)
def test_unfinished_task_is_409_not_ready(auth_client, user, make_task, state, artifact):
    task = make_task(user, state=state)
    error = assert_error(auth_client(user).get(url(task, artifact)), 409, "not_ready")
    assert error["message"] == f"The task is {state}; artifacts exist once it is completed."


def test_not_ready_is_json_even_for_a_client_that_accepts_only_png(auth_client, user, make_task):
    task = make_task(user)
    response = auth_client(user).get(url(task, "waveform.png"), HTTP_ACCEPT="image/png")
    assert_error(response, 409, "not_ready")


def test_analyze_task_has_no_output_file(auth_client, user, completed):
    task = completed(user)
    error = assert_error(auth_client(user).get(url(task, "output")), 404, "not_found")
    assert "output file" in error["message"] and "normalize" in error["message"]


@pytest.mark.parametrize("artifact, what", [("waveform.json", "waveform JSON"), ("waveform.png", "waveform PNG")])
def test_normalize_task_has_no_waveform(auth_client, user, completed, artifact, what):
    task = completed(user, kind="normalize", output_format="wav")
    error = assert_error(auth_client(user).get(url(task, artifact)), 404, "not_found")
    assert what in error["message"]


@pytest.mark.parametrize("artifact", ARTIFACT_PATHS)
def test_other_users_task_is_404_like_an_unknown_id(auth_client, user, other_user, completed, artifact):
    task = completed(user, kind="normalize", output_format="wav") if artifact == "output" else completed(user)
    client = auth_client(other_user)
    theirs = assert_error(client.get(url(task, artifact)), 404, "not_found")
    unknown = assert_error(client.get(f"/api/v1/tasks/task_nope/{artifact}"), 404, "not_found")
    assert theirs == {**unknown, "message": unknown["message"].replace("task_nope", task.pk)}


@pytest.mark.parametrize("artifact", ARTIFACT_PATHS)
def test_staff_may_read_every_users_artifacts(auth_client, user, staff_user, completed, artifact):
    task = completed(user, kind="normalize", output_format="wav") if artifact == "output" else completed(user)
    response = auth_client(staff_user).get(url(task, artifact))
    assert response.status_code == 200
    assert body(response)


@pytest.mark.parametrize("artifact", ARTIFACT_PATHS)
def test_anonymous_request_is_401(api_client, user, make_task, artifact):
    assert_error(api_client.get(url(make_task(user), artifact)), 401)


def test_format_suffixes_do_not_swallow_the_file_names(auth_client, user, completed):
    task = completed(user)
    client = auth_client(user)
    # `.json` is part of the file name, not a format suffix on some `waveform` route.
    assert client.get(url(task, "waveform.json"))["Content-Type"] == "application/json"
    assert_error(client.get(url(task, "waveform")), 404)
    assert_error(client.get(url(task, "waveform.json.json")), 404)
    assert_error(client.get(url(task, "waveform.png.json")), 404)
    assert_error(client.get(url(task, "waveformXjson")), 404)


@pytest.mark.parametrize(
    "path", ["/api/v1/tasks.json", "/api/v1/audio.json", "/api/v1/tasks/{id}.json", "/api/v1/tasks/{id}/progress.json"]
)
def test_format_suffix_urls_are_404_not_500(auth_client, user, make_task, path):
    task = make_task(user)
    assert_error(auth_client(user).get(path.replace("{id}", task.pk)), 404, "not_found")
    # `?format=` still chooses the renderer.
    assert auth_client(user).get(f"/api/v1/tasks/{task.pk}/", {"format": "json"}).json()["id"]


def test_task_links_its_artifacts_once_completed(auth_client, user, completed, make_task):
    client = auth_client(user)
    analyzed = client.get(f"/api/v1/tasks/{completed(user).pk}/").json()
    assert analyzed["waveform_json_url"].endswith(f"/api/v1/tasks/{analyzed['id']}/waveform.json")
    assert analyzed["waveform_png_url"].endswith(f"/api/v1/tasks/{analyzed['id']}/waveform.png")
    assert analyzed["output_url"] is None
    assert client.get(analyzed["waveform_png_url"]).status_code == 200
    normalized = client.get(f"/api/v1/tasks/{completed(user, kind='normalize', output_format='flac').pk}/").json()
    assert normalized["output_url"].endswith(f"/api/v1/tasks/{normalized['id']}/output")
    assert normalized["waveform_json_url"] is None and normalized["waveform_png_url"] is None
    pending = client.get(f"/api/v1/tasks/{make_task(user).pk}/").json()
    assert [pending[k] for k in ("waveform_json_url", "waveform_png_url", "output_url")] == [None, None, None]


def test_deleting_a_task_removes_its_artifact_files(
    auth_client, user, completed, media_files, django_capture_on_commit_callbacks, settings
):
    task = completed(user)
    folder = f"artifacts/{task.pk}/"
    stored = [p for p in media_files() if folder in p.as_posix()]
    assert {p.name for p in stored} == {"waveform.json", "waveform.png"}
    client = auth_client(user)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(f"/api/v1/tasks/{task.pk}/").status_code == 204
    assert not [p for p in media_files() if folder in p.as_posix()]
    assert not (Path(settings.MEDIA_ROOT) / folder).exists()
    assert_error(client.get(url(task, "waveform.png")), 404, "not_found")


def test_a_missing_artifact_file_is_404_not_500(auth_client, user, completed, settings):
    task = completed(user)
    (Path(settings.MEDIA_ROOT) / task.result["artifacts"]["waveform_png"]).unlink()
    assert_error(auth_client(user).get(url(task, "waveform.png")), 404, "not_found")


def test_an_artifact_deleted_while_being_requested_is_404_not_500(auth_client, user, completed, monkeypatch):
    task = completed(user)

    def vanished(name: str) -> Any:
        raise FileNotFoundError(name)

    monkeypatch.setattr("tasks_app.downloads.default_storage.size", vanished)
    error = assert_error(auth_client(user).get(url(task, "waveform.json")), 404, "not_found")
    assert "tone-waveform.json" in error["message"]


def test_admin_change_page_shows_the_waveform_and_figures(staff_user, user, completed):
    task = completed(user, seconds=5.0)  # long enough for a loudness range
    admin = Client()
    admin.force_login(staff_user)
    page = admin.get(change_url(task)).content.decode()
    png = f"/api/v1/tasks/{task.pk}/waveform.png"
    assert f'<img src="{png}"' in page
    loudness = task.result["loudness"]
    assert f"{loudness['integrated_lufs']:.2f} LUFS" in page
    assert f"{loudness['true_peak_dbtp']:.2f} dBTP" in page
    assert f"{loudness['loudness_range_lu']:.2f} LU<" in page
    assert "5.00 s" in page
    # The admin session is enough for the API to serve the image.
    response = admin.get(png)
    assert response.status_code == 200 and body(response).startswith(PNG_SIGNATURE)


def test_admin_change_page_links_the_normalized_output(staff_user, user, completed):
    task = completed(user, kind="normalize", output_format="mp3")
    admin = Client()
    admin.force_login(staff_user)
    page = admin.get(change_url(task)).content.decode()
    assert f'<a href="/api/v1/tasks/{task.pk}/output" download>' in page
    assert "waveform.png" not in page
    measured = f"{task.result['input']['integrated_lufs']:.2f} → {task.result['output']['integrated_lufs']:.2f} LUFS"
    assert measured in page
    response = admin.get(f"/api/v1/tasks/{task.pk}/output")
    assert response.status_code == 200 and response["Content-Type"] == "audio/mpeg"
