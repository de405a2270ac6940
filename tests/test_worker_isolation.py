"""Through the real worker: a job that aborts its process fails that task, and the same worker goes on.

The abort is the real one from issue 8: NaN samples reaching the MP3 encoder (LAME asserts and the
process gets SIGABRT). The pipeline now repairs NaN at the door, so to reach the encoder with it
the test registers one extra kind, `nan_to_mp3`, in the service's processes through a
`sitecustomize` module on their PYTHONPATH; the service code itself has no test hook.
"""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tasks_app import jobs, services
from tasks_app.audio.generate import tone, write_audio
from tasks_app.audio.registry import get_processor
from tasks_app.models import Task

from .live_server import ROOT, LiveService, payloads, read_events, start_service, stop_service
from .test_audio_corpus import wav_bytes

SITECUSTOMIZE = '''
"""Test-only: register a processor that feeds NaN straight into the MP3 encoder."""
import numpy as np

from tasks_app.audio.encode import AudioWriter
from tasks_app.audio.registry import Processor, register


def run(path, options, progress, output_dir):
    progress(0.1, "encode")
    with AudioWriter(f"{output_dir}/nan.mp3", "mp3", 44100, 2) as writer:
        block = np.zeros((2, 44100), dtype=np.float32)
        block[0, 100] = np.nan
        writer.write(block)
    return {"artifacts": {}}


register(Processor(kind="nan_to_mp3", run=run, description="Test only: NaN into LAME."))
'''


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> LiveService:
    """Daphne and one worker that also know the `nan_to_mp3` kind."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    live = start_service(tmp_path_factory.mktemp("isolation"), extra_env={"PYTHONPATH": f"{site}:{ROOT}"})
    yield live
    stop_service(live)


def finish(service: LiveService, token: str, audio_id: int, **task: object) -> tuple[dict, dict]:
    """Create a task, follow its stream to the end; return the final payload and the task JSON."""
    created = service.create_task(token, audio_id, **task)
    with service.client(token, timeout=120) as client:
        status, events = read_events(client, f"/api/v1/sse/tasks/{created['id']}/progress", timeout=180)
        stored = client.get(f"/api/v1/tasks/{created['id']}/").json()
    assert status == 200 and events[-1].event == "complete"
    return payloads(events[-1:])[0], stored


def test_nan_to_mp3_aborts_only_its_task_and_the_same_worker_runs_the_next(
    service: LiveService, tmp_path: Path
) -> None:
    samples = np.ascontiguousarray(tone(2.0, 44100, 2, 997.0))
    samples[0, 44100] = math.nan
    path = tmp_path / "nan.wav"
    path.write_bytes(wav_bytes(samples, 44100, float32=True))
    token = service.token("alice")
    audio = service.upload(token, path)
    worker = service.workers[0]

    crashed, stored = finish(service, token, audio["id"], kind="nan_to_mp3")
    assert crashed["state"] == "failed"
    assert "aborted (SIGABRT)" in crashed["error"] and "Traceback" not in crashed["error"]
    assert stored["result"] is None
    assert worker.poll() is None, "the worker died with its job"

    # The same worker serves the next task: the NaN file, normalised to MP3 through the pipeline,
    # which repairs the sample at the door and says so in the stream's final payload.
    done, stored = finish(service, token, audio["id"], kind="normalize", options={"output_format": "mp3"})
    assert done["state"] == "completed" and done["progress"] == 100
    assert [w["code"] for w in done["warnings"]] == ["non_finite_samples"]
    assert stored["result"]["output"]["integrated_lufs"] == pytest.approx(-16.0, abs=0.5)
    assert worker.poll() is None and len(service.workers) == 1


def test_an_ordinary_file_still_analyses_in_the_isolated_child(service: LiveService, tmp_path: Path) -> None:
    path = tmp_path / "tone.flac"
    write_audio(str(path), np.ascontiguousarray(tone(3.0, 44100, 2, 440.0)), 44100, "flac")
    token = service.token("alice")
    audio = service.upload(token, path)
    done, stored = finish(service, token, audio["id"], kind="analyze")
    assert done["state"] == "completed" and done["warnings"] == []
    assert stored["result"]["format"]["duration"] == pytest.approx(3.0, abs=0.01)


def hang(*args: Any) -> dict:
    """A processor stuck in a decoder: never reports, never returns."""
    threading.Event().wait()
    return {}


@pytest.mark.django_db
def test_a_job_past_its_time_limit_fails_its_task_with_a_readable_error(user, make_audio, monkeypatch, settings):
    settings.AUDIO_JOB_TIMEOUT_SECONDS = 1
    monkeypatch.setattr(jobs, "get_processor", lambda kind: dataclasses.replace(get_processor("analyze"), run=hang))
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    jobs.run_task.call(task.id)
    done = Task.objects.get(pk=task.id)
    assert done.state == Task.State.FAILED
    assert done.error == "The job ran longer than the 1 s limit and was stopped."


@pytest.mark.django_db
def test_a_silent_job_still_notices_cancel_through_its_heartbeat(user, make_audio, monkeypatch):
    monkeypatch.setattr(jobs, "get_processor", lambda kind: dataclasses.replace(get_processor("analyze"), run=hang))
    task = services.task_create(owner=user, audio_file_id=make_audio(user).pk)
    claimed = services.task_start(task_id=task.id)
    services.task_cancel(task_id=task.id)
    jobs.process(claimed)  # returns only because the idle heartbeat sees the cancel and kills the child
    assert Task.objects.get(pk=task.id).state == Task.State.CANCELLED
