"""Storage limits: each user's quota over uploads and outputs, and each task's output ceiling.

A 2 MB upload can ask for a 2 GB output (a silent 3-hour FLAC normalized to WAV), so uploads
alone do not bound storage. An upload over the quota is refused (413 `quota_exceeded`); a task
fails with a readable error naming the limit: before the job runs when its output size can be
known from the audio's facts (WAV, and lossy formats at their bit rate), otherwise as soon as
the job has written it, before it is stored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import Sum

from .exceptions import QuotaExceeded
from .models import AudioFile, Task

# Bit rates a lossy output is written at when the task names none (kbit/s; see audio/encode.py).
LOSSY_KBPS = {"mp3": 192, "m4a": 192, "opus": 128}
MIB = 2**20


class OutputLimitExceeded(Exception):
    """A task's output would pass its ceiling or its owner's quota (the message says which)."""


@dataclass(frozen=True)
class StorageUsage:
    """What a user stores, against what they may."""

    uploads_bytes: int
    outputs_bytes: int
    quota_bytes: int | None  # None: no quota
    task_output_max_bytes: int | None  # None: no ceiling

    @property
    def used_bytes(self) -> int:
        """Uploads and outputs together."""
        return self.uploads_bytes + self.outputs_bytes

    @property
    def available_bytes(self) -> int | None:
        """Room left under the quota (never negative), None without a quota."""
        return None if self.quota_bytes is None else max(0, self.quota_bytes - self.used_bytes)


def storage_usage(user_id: int) -> StorageUsage:
    """The user's stored bytes (uploads, task outputs) and limits."""
    uploads = AudioFile.objects.filter(owner_id=user_id).aggregate(n=Sum("size"))["n"] or 0
    outputs = Task.objects.filter(owner_id=user_id).aggregate(n=Sum("output_bytes"))["n"] or 0
    return StorageUsage(uploads, outputs, _limit(settings.STORAGE_QUOTA_MB), _limit(settings.TASK_OUTPUT_MAX_MB))


def check_upload(*, owner_id: int, size: int) -> None:
    """Raise QuotaExceeded (413) when storing `size` more bytes would pass the owner's quota."""
    usage = storage_usage(owner_id)
    if usage.quota_bytes is not None and usage.used_bytes + size > usage.quota_bytes:
        raise QuotaExceeded(
            f"The file is {_mib(size)}; you store {_mib(usage.used_bytes)} of your "
            f"{_mib(usage.quota_bytes)} storage quota. Delete files or tasks to make room.",
            field="file",
        )


def expected_output_bytes(task: Task) -> int:
    """The size a task's output will have, when the audio's facts tell it; else 0."""
    if task.kind != "normalize":
        return 0  # analyze writes a waveform of a few hundred kB at most
    audio, options = task.audio_file, task.options or {}
    fmt = str(options.get("output_format", "mp3"))
    if fmt == "wav":  # 16-bit PCM at the input's rate and channels
        return int(audio.duration * audio.sample_rate) * audio.channels * 2 + 44
    if fmt in LOSSY_KBPS:
        return int(audio.duration * int(options.get("bit_rate") or LOSSY_KBPS[fmt]) * 1000 / 8)
    return 0  # FLAC: known once written


def check_output(task: Task, size: int, *, expected: bool = False) -> None:
    """Raise OutputLimitExceeded when an output of `size` bytes would pass the task's ceiling
    or its owner's quota (counting the output of the task's earlier attempt as freed)."""
    if expected and not size:
        return  # not known before the job runs: checked once it is written
    usage = storage_usage(task.owner_id)
    what = "would be" if expected else "is"
    hint = " Choose a compressed output_format (flac, mp3, opus, m4a)." if task.kind == "normalize" else ""
    ceiling = usage.task_output_max_bytes
    if ceiling is not None and size > ceiling:
        raise OutputLimitExceeded(
            f"The task's output {what} {_mib(size)}, over the limit of {_mib(ceiling)} per task "
            f"(TASK_OUTPUT_MAX_MB).{hint}"
        )
    quota = usage.quota_bytes
    if quota is not None and usage.used_bytes - task.output_bytes + size > quota:
        raise OutputLimitExceeded(
            f"The task's output {what} {_mib(size)}; with the {_mib(usage.used_bytes)} you store, that "
            f"passes your storage quota of {_mib(quota)} (STORAGE_QUOTA_MB). Delete files or tasks "
            f"to make room.{hint}"
        )


def written_bytes(folder: str, result: dict[str, Any]) -> int:
    """Bytes of the artifacts a job wrote in `folder` (those its result names)."""
    paths = (os.path.join(folder, name) for name in (result.get("artifacts") or {}).values())
    return sum(os.path.getsize(path) for path in paths if os.path.exists(path))


def _limit(mb: int) -> int | None:
    return mb * MIB if mb > 0 else None


def _mib(size: int) -> str:
    return f"{size / MIB:,.1f} MiB"
