"""A sine tone as 16-bit PCM WAV, with the standard library only.

`manage.py create_test_task` makes its audio here, so that it starts and finishes without
loading numpy or PyAV (`generate.write_tone` writes the other formats with them). The tone is a
whole number of cycles per second, so one second of samples, computed once, repeats seamlessly.
"""

from __future__ import annotations

import math
import os
import sys
import wave
from array import array

from tasks_app.audio.info import AudioInfo


def write_wav_tone(
    path: str,
    seconds: float,
    sample_rate: int = 44100,
    channels: int = 2,
    freq: int = 440,
    amplitude_db: float = -12.0,
) -> AudioInfo:
    """Write `seconds` of a `freq` Hz sine to `path` as a WAV file; return its facts."""
    amplitude = round(32767 * 10 ** (amplitude_db / 20))
    one_second = array(
        "h",
        (
            round(amplitude * math.sin(2 * math.pi * freq * (i // channels) / sample_rate))
            for i in range(sample_rate * channels)
        ),
    )
    if sys.byteorder == "big":
        one_second.byteswap()  # WAV samples are little-endian
    data = one_second.tobytes()
    frames = int(round(seconds * sample_rate))
    whole, rest = divmod(frames, sample_rate)
    with wave.open(path, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.setnframes(frames)
        for _ in range(whole):
            out.writeframesraw(data)
        out.writeframesraw(data[: rest * channels * 2])
    return AudioInfo(
        duration=frames / sample_rate,
        sample_rate=sample_rate,
        channels=channels,
        format="wav",
        codec="pcm_s16le",
        bit_rate=sample_rate * channels * 16,
        size=os.path.getsize(path),
        layout=f"{channels} channels",  # as PyAV names a WAV's unspecified layout
        channel_names=("NONE",) * channels,
    )
