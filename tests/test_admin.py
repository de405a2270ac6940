"""Admin: changelists load for staff; cancel, retry and delete go through the services."""

from __future__ import annotations

import pytest
from django.contrib.admin.utils import quote
from django.test import Client
from django.urls import reverse

from tasks_app import services
from tasks_app.models import AudioFile, Task

pytestmark = pytest.mark.django_db

TASKS = "/admin/tasks_app/task/"
AUDIO = "/admin/tasks_app/audiofile/"


def change_url(task: Task) -> str:
    """The admin change page of a task, its key quoted as the admin's own links quote it.

    Written into the path by hand, a key such as ``task_22…`` is read by the admin as an
    escaped ``"`` and finds no such task (one key in about forty).
    """
    return reverse("admin:tasks_app_task_change", args=[quote(task.pk)])


@pytest.fixture
def admin_client(staff_user) -> Client:
    """A browser-like client logged in as staff."""
    client = Client()
    client.force_login(staff_user)
    return client


def messages_of(response) -> list[str]:
    """Admin messages shown on the page a followed response landed on."""
    return [str(m) for m in response.context["messages"]]


def run_action(client: Client, action: str, tasks: list[Task]):
    """Apply an admin action to the given tasks, following the redirect."""
    return client.post(TASKS, {"action": action, "_selected_action": [t.pk for t in tasks]}, follow=True)


def test_task_changelist_shows_state_progress_and_owner(admin_client, user, make_task):
    task = make_task(user, state="processing")
    Task.objects.filter(pk=task.pk).update(progress=42.0, stage="decoding", estimated_time=9.0)
    response = admin_client.get(TASKS)
    assert response.status_code == 200
    page = response.content.decode()
    assert task.pk in page
    assert '<progress value="42.0" max="100"' in page
    assert "decoding" in page and "9 s" in page and "alice" in page


def test_task_changelist_filters_and_searches(admin_client, user, other_user, make_task):
    mine = make_task(user, state="failed")
    theirs = make_task(other_user)
    page = admin_client.get(TASKS, {"state__exact": "failed"}).content.decode()
    assert mine.pk in page and theirs.pk not in page
    page = admin_client.get(TASKS, {"q": "bob"}).content.decode()
    assert theirs.pk in page and mine.pk not in page


def test_task_detail_is_read_only(admin_client, user, make_task):
    task = make_task(user)
    response = admin_client.get(change_url(task))
    assert response.status_code == 200
    assert 'name="state"' not in response.content.decode()
    admin_client.post(change_url(task), {"state": "completed"})
    assert Task.objects.get(pk=task.pk).state == "pending"


def test_changelist_links_open_tasks_whose_key_reads_as_an_escape(admin_client, user, make_task):
    # "_22" in a key is what the admin writes for an escaped '"': its links must quote the key.
    Task.objects.filter(pk=make_task(user).pk).update(id="task_22e54e8d06fd7d1792f0")
    task = Task.objects.get()
    link = change_url(task)
    assert f'href="{link}"' in admin_client.get(TASKS).content.decode()
    assert task.pk in admin_client.get(link).content.decode()


def test_audio_changelist_loads(admin_client, user, make_audio):
    audio = make_audio(user)
    response = admin_client.get(AUDIO, {"q": "tone"})
    assert response.status_code == 200
    assert audio.original_name in response.content.decode()


def test_non_staff_cannot_open_admin(user):
    client = Client()
    client.force_login(user)
    assert client.get(TASKS).status_code == 302


def test_cancel_action_cancels_what_it_may_and_reports_refusals(admin_client, user, make_task):
    pending = make_task(user)
    completed = make_task(user, state="completed")
    response = run_action(admin_client, "cancel_tasks", [pending, completed])
    assert Task.objects.get(pk=pending.pk).state == "cancelled"
    assert Task.objects.get(pk=completed.pk).state == "completed"
    shown = messages_of(response)
    assert "Cancelled 1 task(s)." in shown
    assert any(m.startswith("Refused 1") and completed.pk in m for m in shown)


def test_retry_action_retries_through_the_service(admin_client, user, make_task, monkeypatch):
    failed = make_task(user, state="failed")
    pending = make_task(user)
    calls: list[str] = []
    real = services.task_retry

    def spy(*, task_id: str) -> Task:
        calls.append(task_id)
        return real(task_id=task_id)

    monkeypatch.setattr(services, "task_retry", spy)
    response = run_action(admin_client, "retry_tasks", [failed, pending])
    assert sorted(calls) == sorted([failed.pk, pending.pk])
    assert Task.objects.get(pk=failed.pk).state == "pending"
    shown = messages_of(response)
    assert "Retried 1 task(s)." in shown
    assert any(m.startswith("Refused 1") and pending.pk in m for m in shown)


def test_bulk_delete_goes_through_the_service(admin_client, user, make_task, monkeypatch):
    tasks = [make_task(user, state="completed") for _ in range(2)]
    calls: list[str] = []
    real = services.task_delete

    def spy(*, task_id: str) -> None:
        calls.append(task_id)
        real(task_id=task_id)

    monkeypatch.setattr(services, "task_delete", spy)
    admin_client.post(TASKS, {"action": "delete_selected", "post": "yes", "_selected_action": [t.pk for t in tasks]})
    assert sorted(calls) == sorted(t.pk for t in tasks)
    assert not Task.objects.exists()


def test_deleting_audio_in_use_is_refused(admin_client, user, make_task):
    task = make_task(user)
    response = admin_client.post(f"{AUDIO}{task.audio_file_id}/delete/", {"post": "yes"})
    assert AudioFile.objects.filter(pk=task.audio_file_id).exists()
    assert f"Task {task.pk} (pending)" in response.content.decode()


def test_deleting_audio_removes_its_finished_tasks_through_the_service(admin_client, user, make_task, monkeypatch):
    task = make_task(user, state="failed")
    calls: list[int] = []
    real = services.audio_file_delete

    def spy(*, audio_file: AudioFile) -> None:
        calls.append(audio_file.pk)
        real(audio_file=audio_file)

    monkeypatch.setattr(services, "audio_file_delete", spy)
    response = admin_client.post(f"{AUDIO}{task.audio_file_id}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert calls == [task.audio_file_id]
    assert not AudioFile.objects.exists()
    assert not Task.objects.exists()


def test_deleting_a_user_in_the_admin_deletes_their_tasks_audio_and_files(
    admin_client, user, make_task, media_files, django_capture_on_commit_callbacks
):
    make_task(user, state="processing")
    make_task(user)
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Task.objects.exists() and not AudioFile.objects.exists()
    assert media_files() == []
