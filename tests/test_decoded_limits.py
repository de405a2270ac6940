"""Bounds on decoded work: uploads that decode to too long or too many samples are refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks_app.audio.generate import write_tone
from tasks_app.models import AudioFile

from .test_audio_api import upload
from .test_auth import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def hours_of_silence(tmp_path_factory) -> Path:
    """A 2.6 MB FLAC of 4.5 h of stereo 44.1 kHz silence (the issue's example)."""
    path = tmp_path_factory.mktemp("silence") / "silence.flac"
    write_tone(str(path), 4.5 * 3600, fmt="flac", amplitude_db=-400.0)
    return path


def test_tiny_flac_of_hours_of_silence_is_refused_with_default_limits(auth_client, user, hours_of_silence, media_files):
    assert hours_of_silence.stat().st_size < 3_000_000
    error = assert_error(upload(auth_client(user), hours_of_silence), 400, "too_many_samples")
    assert error["field"] == "file"
    assert "4 h 30 min 00 s" in error["message"]
    assert "limit" in error["message"]
    assert not AudioFile.objects.exists()
    assert media_files() == []


def test_audio_longer_than_the_duration_limit_is_refused(auth_client, user, wav_upload, settings, media_files):
    settings.AUDIO_MAX_DURATION_SECONDS = 1.5
    error = assert_error(upload(auth_client(user), wav_upload), 400, "too_long")
    assert error["message"] == "The audio lasts 2.0 s; the limit is 1.5 s."
    assert error["field"] == "file"
    assert not AudioFile.objects.exists()
    assert media_files() == []


def test_audio_over_the_sample_budget_is_refused(auth_client, user, wav_upload, settings):
    settings.AUDIO_MAX_SAMPLES = 2 * 44100 * 2 - 1
    error = assert_error(upload(auth_client(user), wav_upload), 400, "too_many_samples")
    assert "2 channels × 44100 Hz" in error["message"]


def test_audio_exactly_at_the_limits_is_accepted(auth_client, user, wav_upload, settings):
    settings.AUDIO_MAX_DURATION_SECONDS = 2.0
    settings.AUDIO_MAX_SAMPLES = 2 * 44100 * 2
    response = upload(auth_client(user), wav_upload)
    assert response.status_code == 201, response.content
