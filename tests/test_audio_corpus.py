"""Odd inputs: every file gets the pipeline's own error or a finite, sane result, never a dead worker.

Each file is generated here (small: a few seconds at most) and run through `analyze` and
`normalize` in an isolated child process, as the worker runs them, so a native abort shows up as a
failed assertion instead of killing the test run.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from bench._signals import music
from tasks_app.audio.errors import AudioError, OptionsError
from tasks_app.audio.generate import tone, write_audio
from tasks_app.audio.loudness import LoudnessMeter
from tasks_app.audio.registry import get_processor, validate_options
from tasks_app.isolation import run_isolated

RATE = 44100
# WAVE_FORMAT_EXTENSIBLE channel masks (speaker bits in the order FL FR FC LFE BL BR FLC FRC BC SL SR).
QUAD_MASK = 0x33  # FL FR BL BR
SURROUND_71_MASK = 0x63F  # FL FR FC LFE BL BR SL SR


# ------------------------------------------------------------------------------------ writers


def wav_bytes(
    samples: np.ndarray,
    rate: int,
    *,
    float32: bool = False,
    mask: int | None = None,
    header_rate: int | None = None,
    header_channels: int | None = None,
    data_size: int | None = None,
) -> bytes:
    """A RIFF/WAVE file of `samples` (channels, n) whose header may lie about rate, channels or size."""
    channels = samples.shape[0]
    if float32:
        payload = np.ascontiguousarray(samples.T, dtype="<f4").tobytes()
        width, tag = 4, 3
    else:
        payload = (np.clip(samples.T, -1, 32767 / 32768) * 32768).astype("<i2").tobytes()
        width, tag = 2, 1
    head_channels = channels if header_channels is None else header_channels
    head_rate = rate if header_rate is None else header_rate
    block_align = head_channels * width
    byte_rate = (head_rate * block_align) & 0xFFFFFFFF
    if mask is None:
        fmt = struct.pack("<HHIIHH", tag, head_channels, head_rate, byte_rate, block_align, width * 8)
    else:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = (
            struct.pack(
                "<HHIIHHHHI", 0xFFFE, head_channels, head_rate, byte_rate, block_align, width * 8, 22, width * 8, mask
            )
            + struct.pack("<H", tag)
            + guid_tail
        )
    size = len(payload) if data_size is None else data_size
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", size) + payload
    return b"RIFF" + struct.pack("<I", (len(body)) & 0xFFFFFFFF) + body


def encode(
    path: Path,
    samples: np.ndarray,
    rate: int,
    fmt: str,
    codec: str,
    *,
    layout: str | None = None,
    options: dict[str, str] | None = None,
    codec_options: dict[str, str] | None = None,
    bit_rate: int | None = None,
    qscale: int | None = None,
) -> None:
    """Encode with PyAV directly, for container and codec settings the pipeline's writer never uses."""
    channels = samples.shape[0]
    layout = layout or {1: "mono", 2: "stereo"}[channels]
    with av.open(str(path), "w", format=fmt, options=options or {}) as container:
        stream = container.add_stream(codec, rate=rate, layout=layout, options=codec_options or {})
        if bit_rate:
            stream.bit_rate = bit_rate
        if qscale is not None:
            stream.codec_context.qscale = qscale  # VBR at that quality, like `-q:a`
        step = 4096
        for start in range(0, samples.shape[1], step):
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(samples[:, start : start + step], dtype=np.float32), format="fltp", layout=layout
            )
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def raw_mp3(path: Path, samples: np.ndarray, rate: int, **kwargs: object) -> bytes:
    """An MP3 with neither ID3 tag nor Xing/Info header, so files can be concatenated; returns its bytes."""
    encode(path, samples, rate, "mp3", "libmp3lame", options={"write_xing": "0", "id3v2_version": "0"}, **kwargs)
    return path.read_bytes()


def noise(seconds: float, rate: int = RATE, channels: int = 2, level_db: float = -20.0, seed: int = 1) -> np.ndarray:
    """Deterministic white noise at `level_db` dBFS RMS."""
    rng = np.random.default_rng(seed)
    return (10 ** (level_db / 20) * rng.standard_normal((channels, int(seconds * rate)))).astype(np.float32)


def music_samples(seconds: float, rate: int = RATE, gain_db: float = 0.0) -> np.ndarray:
    """The benchmark's music-like mix, in memory."""
    mix = np.concatenate(list(music(seconds, rate)), axis=1)
    return (mix * np.float32(10 ** (gain_db / 20))).astype(np.float32)


def id3_cover_art_only() -> bytes:
    """An ID3v2.3 tag holding one PNG picture (APIC) and no audio at all."""
    png = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 30)).save(png, format="PNG")
    data = b"\x00image/png\x00\x03cover\x00" + png.getvalue()
    frame = b"APIC" + struct.pack(">I", len(data)) + b"\x00\x00" + data
    size = len(frame)
    syncsafe = bytes([(size >> 21) & 0x7F, (size >> 14) & 0x7F, (size >> 7) & 0x7F, size & 0x7F])
    return b"ID3\x03\x00\x00" + syncsafe + frame


# ------------------------------------------------------------------------------------- corpus


@dataclass(frozen=True)
class Case:
    """One odd input: how to build it, and what the pipeline must make of it."""

    name: str
    build: Callable[[Path], Path]
    # "ok": a result is required; "error:<code>": that AudioError; "either": own error or sane result.
    expect: str = "either"
    formats: tuple[str, ...] = ("mp3",)
    duration: float | None = None  # the true length, when a result is required to find it
    normalize_options: dict[str, object] = field(default_factory=dict)
    warns: tuple[str, ...] = ()  # warning codes `analyze` must report


def write(name: str, data: bytes) -> Callable[[Path], Path]:
    """A builder that writes `data` to `name`."""

    def build(folder: Path) -> Path:
        path = folder / name
        path.write_bytes(data)
        return path

    return build


def with_bad(samples: np.ndarray, value: float, at: int) -> np.ndarray:
    """`samples` with one sample of channel 0 replaced by `value`."""
    out = samples.copy()
    out[0, at] = value
    return out


def ogg_chained(folder: Path) -> Path:
    """Two Ogg Opus streams back to back (a chained Ogg file, as internet radio records)."""
    parts = []
    for index, freq in enumerate((440.0, 660.0)):
        part = folder / f"chain{index}.opus"
        encode(part, np.ascontiguousarray(tone(1.5, 48000, 2, freq)), 48000, "ogg", "libopus")
        parts.append(part.read_bytes())
    path = folder / "chained.opus"
    path.write_bytes(b"".join(parts))
    return path


def silence_then_music(silence: float, music_seconds: float) -> np.ndarray:
    """Digital silence, then music: the first frames of a VBR stream are tiny, so a bit-rate guess is far off."""
    return np.concatenate([np.zeros((2, int(silence * RATE)), dtype=np.float32), music_samples(music_seconds)], axis=1)


def adts_aac(folder: Path) -> Path:
    """A raw ADTS AAC stream (.aac) starting with silence; no header states its length (ffprobe guesses ~10x)."""
    path = folder / "adts.aac"
    encode(path, silence_then_music(2.0, 4.0), RATE, "adts", "aac")
    return path


def vbr_mp3_without_xing(folder: Path) -> Path:
    """A VBR MP3 that starts with 2 s of silence and has no Xing header (ffprobe guesses ~7x its length)."""
    path = folder / "vbr.mp3"
    raw_mp3(path, silence_then_music(2.0, 6.0), RATE, qscale=2)
    return path


def damaged_mp3(folder: Path) -> Path:
    """A 10 s 128 kbit/s MP3 with 20 KB of garbage over its middle."""
    path = folder / "damaged.mp3"
    data = bytearray(raw_mp3(path, music_samples(10.0), RATE, bit_rate=128000))
    middle = len(data) // 2
    data[middle : middle + 20000] = np.random.default_rng(7).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    return path


def mp3_channel_change(folder: Path) -> Path:
    """3 s mono then 3 s stereo in one MP3 stream."""
    mono = raw_mp3(folder / "a.mp3", np.ascontiguousarray(tone(3.0, RATE, 1, 440.0)), RATE, bit_rate=96000)
    stereo = raw_mp3(folder / "b.mp3", np.ascontiguousarray(tone(3.0, RATE, 2, 660.0)), RATE, bit_rate=128000)
    path = folder / "channels.mp3"
    path.write_bytes(mono + stereo)
    return path


def mp3_rate_change(folder: Path) -> Path:
    """5 s at 44.1 kHz then 5 s at 48 kHz in one MP3 stream: 10 s of audio."""
    first = raw_mp3(folder / "a.mp3", np.ascontiguousarray(tone(5.0, 44100, 2, 440.0)), 44100, bit_rate=128000)
    second = raw_mp3(folder / "b.mp3", np.ascontiguousarray(tone(5.0, 48000, 2, 660.0)), 48000, bit_rate=128000)
    path = folder / "rates.mp3"
    path.write_bytes(first + second)
    return path


def low_rate_mp3(folder: Path) -> Path:
    """An 8 kHz mono MP3 at 64 kbit/s (the most MPEG-2.5 allows)."""
    path = folder / "8k.mp3"
    write_audio(str(path), np.ascontiguousarray(tone(3.0, 8000, 1, 300.0)), 8000, "mp3", 64)
    return path


def wav(name: str, samples: np.ndarray, rate: int = RATE, **kwargs: object) -> Callable[[Path], Path]:
    """A builder for a WAV made by `wav_bytes`."""
    return write(name, wav_bytes(samples, rate, **kwargs))


TONE = np.ascontiguousarray(tone(2.0, RATE, 2, 997.0, -12.0))
CLICK = np.zeros((2, 3 * RATE), dtype=np.float32)
CLICK[:, RATE] = 0.5
DC = np.full((2, 3 * RATE), 0.3, dtype=np.float32)
DC[:, :] += 0.001 * noise(3.0)
DYNAMIC = np.concatenate([noise(1.0, level_db=-60), noise(0.5, level_db=-8), noise(2.0, level_db=-60)], axis=1)

CASES = [
    Case(
        "float wav with one NaN sample",
        wav("nan.wav", with_bad(TONE, math.nan, RATE), float32=True),
        "ok",
        ("mp3", "wav"),
        2.0,
        warns=("non_finite_samples",),
    ),
    Case(
        "float wav with +Inf and -Inf",
        wav("inf.wav", with_bad(with_bad(TONE, math.inf, 10), -math.inf, 20), float32=True),
        "ok",
        ("mp3",),
        2.0,
        warns=("non_finite_samples",),
    ),
    Case(
        "float wav with a 1e30 sample",
        wav("huge.wav", with_bad(TONE, 1e30, 500), float32=True),
        "ok",
        ("mp3",),
        2.0,
        warns=("non_finite_samples",),
    ),
    Case(
        "all-NaN float wav",
        wav("allnan.wav", np.full((2, RATE), np.nan, dtype=np.float32), float32=True),
        "ok",
        ("mp3",),
        1.0,
        warns=("non_finite_samples",),
    ),
    Case("header claims 2147483647 Hz", wav("fast.wav", TONE, header_rate=2147483647), "error:unsupported_rate"),
    Case("header claims 1 Hz", wav("1hz.wav", TONE[:, :22050], header_rate=1), "error:unsupported_rate"),
    Case("3000 Hz", wav("3k.wav", np.ascontiguousarray(tone(2.0, 3000, 1, 200.0)), 3000), "error:unsupported_rate"),
    Case("4000 Hz", wav("4k.wav", np.ascontiguousarray(tone(2.0, 4000, 1, 200.0)), 4000), "ok", ("mp3",), 2.0),
    Case("384 kHz", wav("384k.wav", np.ascontiguousarray(tone(1.0, 384000, 2, 1000.0)), 384000), "ok", ("flac",), 1.0),
    Case("0-channel header", wav("0ch.wav", TONE, header_channels=0), "either"),
    Case("1-sample file", wav("one.wav", TONE[:, 1:2]), "either", ("m4a", "mp3", "wav")),
    Case("no samples at all", wav("none.wav", TONE[:, :0]), "either"),
    Case("data chunk longer than the file", wav("long.wav", TONE, data_size=10 * TONE.size * 2), "either"),
    Case("streamed wav, data size unset", wav("stream.wav", TONE, data_size=0xFFFFFFFF), "ok", ("mp3",), 2.0),
    Case(
        "7.1 wav",
        wav("71.wav", noise(1.0, channels=8), mask=SURROUND_71_MASK),
        "ok",
        ("opus", "m4a", "flac", "wav"),
        1.0,
    ),
    Case("quad wav", wav("quad.wav", noise(1.0, channels=4), mask=QUAD_MASK), "ok", ("opus", "m4a", "flac"), 1.0),
    Case("10 channels", wav("10ch.wav", noise(1.0, channels=10)), "ok", ("wav", "flac", "opus", "m4a"), 1.0),
    Case("64 channels", wav("64ch.wav", noise(0.5, channels=64)), "ok", ("wav", "mp3"), 0.5),
    Case("ogg with chained streams", ogg_chained, "ok", ("mp3",), 3.0),
    Case("cover art only", write("cover.mp3", id3_cover_art_only()), "either"),
    Case("adts aac", adts_aac, "ok", ("mp3",), 6.0),
    Case("vbr mp3 without xing header, silent start", vbr_mp3_without_xing, "ok", ("mp3",), 8.0),
    # The damaged stretch is lost (as in ffmpeg, see test_audio_reference.py): no true length to expect.
    Case("mp3 with 20 KB of damage", damaged_mp3, "ok", ("mp3",), warns=("damaged_packets",)),
    Case("mp3 whose channel count changes", mp3_channel_change, "ok", ("mp3",), 6.0, warns=("stream_changed",)),
    Case("mp3 whose sample rate changes", mp3_rate_change, "ok", ("mp3",), 10.0, warns=("stream_changed",)),
    Case("8 kHz mp3", low_rate_mp3, "ok", ("mp3",), 3.0),
    Case("a lone click in silence", wav("click.wav", CLICK), "ok", ("mp3", "flac"), 3.0),
    Case("dc offset", wav("dc.wav", DC), "ok", ("wav",), 3.0),
    Case(
        "very dynamic, target -16, ceiling -2",
        wav("dynamic.wav", DYNAMIC),
        "ok",
        ("m4a", "flac"),
        3.5,
        {"target_lufs": -16.0, "true_peak_ceiling": -2.0},
    ),
    Case("music, target -5", wav("loud.wav", music_samples(4.0)), "ok", ("m4a", "wav"), 4.0, {"target_lufs": -5.0}),
    Case("96 kHz music", wav("96k.wav", music_samples(3.0, 96000, 6.0), 96000), "ok", ("m4a", "flac"), 3.0),
    Case("192 kHz music", wav("192k.wav", music_samples(2.0, 192000, 6.0), 192000), "ok", ("m4a", "wav"), 2.0),
    Case("not audio", write("text.mp3", b"hello, this is not audio\n" * 100), "error:not_audio"),
    Case("empty", write("empty.wav", b""), "error:empty"),
]


# ------------------------------------------------------------------------------------- checks


def no_nan_or_infinity(document: object) -> None:
    """Fail if `document` holds a non-finite number anywhere (JSON has none)."""
    json.dumps(document, allow_nan=False)


def run_processor(kind: str, path: Path, options: dict[str, object], folder: Path) -> dict[str, object] | Exception:
    """Run a processor the way the worker does (in a child process); return its result or its own error."""
    processor = get_processor(kind)
    checked = validate_options(kind, options)
    progress: list[float] = []
    try:
        return run_isolated(
            lambda report: processor.run(str(path), checked, report, str(folder)),
            lambda fraction, stage: progress.append(fraction),
            timeout=120,
        )
    except (AudioError, OptionsError) as exc:
        return exc
    finally:
        assert progress == sorted(progress) and all(0 <= value <= 1 for value in progress)


def check_outcome(case: Case, outcome: dict[str, object] | Exception) -> None:
    """The outcome is the pipeline's own error or a JSON-safe result, as the case requires."""
    if isinstance(outcome, Exception):
        assert case.expect != "ok", f"{case.name}: expected a result, got {outcome!r}"
        if isinstance(outcome, AudioError):
            assert case.expect in ("either", f"error:{outcome.code}"), f"{case.name}: {outcome!r}"
        else:
            assert case.expect == "either", f"{case.name}: {outcome!r}"
        assert str(outcome)
        return
    assert not case.expect.startswith("error:"), f"{case.name}: expected {case.expect}, got a result"
    no_nan_or_infinity(outcome)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_odd_input_gets_its_own_error_or_a_finite_sane_result(case: Case, tmp_path: Path) -> None:
    path = case.build(tmp_path)
    out = tmp_path / "analyze"
    out.mkdir()
    analysed = run_processor("analyze", path, {}, out)
    check_outcome(case, analysed)
    if isinstance(analysed, dict):
        fmt = analysed["format"]
        if case.duration is not None:
            assert fmt["duration"] == pytest.approx(case.duration, abs=0.1), case.name
        assert [w["code"] for w in analysed["warnings"]] == list(case.warns), case.name
        waveform = json.loads((out / "waveform.json").read_text(), parse_constant=pytest.fail)
        assert all(-32768 <= value <= 32767 for value in waveform["data"])
        assert (out / "waveform.png").stat().st_size > 0
        loud = analysed["loudness"]
        for key in ("integrated_lufs", "momentary_max_lufs", "short_term_max_lufs", "true_peak_dbtp"):
            assert loud[key] is None or -200 < loud[key] < 100, (case.name, key, loud[key])
    for fmt_name in case.formats:
        folder = tmp_path / f"normalize-{fmt_name}"
        folder.mkdir()
        options = {"output_format": fmt_name, **case.normalize_options}
        normalised = run_processor("normalize", path, options, folder)
        if isinstance(normalised, Exception):
            assert isinstance(normalised, (AudioError, OptionsError))
            if case.expect == "ok" and isinstance(analysed, dict):
                # Refusing is only honest for what the output format cannot hold or a too-short input.
                assert getattr(normalised, "code", "") in ("too_short", "silent") or isinstance(
                    normalised, OptionsError
                ), f"{case.name} -> {fmt_name}: {normalised!r}"
            continue
        no_nan_or_infinity(normalised)
        check_normalised(case, fmt_name, normalised, folder)


def check_normalised(case: Case, fmt: str, result: dict[str, object], folder: Path) -> None:
    """Never over the ceiling; any miss of the target said in `warnings`, with the distance."""
    ceiling = result["true_peak_ceiling"]
    output = result["output"]
    assert output["true_peak_dbtp"] is None or output["true_peak_dbtp"] <= ceiling, (case.name, fmt, output)
    codes = {warning["code"] for warning in result["warnings"]}
    offset = result["target_offset_lu"]
    if offset is None:
        assert codes, f"{case.name} -> {fmt}: no loudness, and no warning saying so"
    elif abs(offset) > 0.5:
        assert "target_missed" in codes, (case.name, fmt, offset, result["warnings"])
    else:
        assert "target_missed" not in codes
    assert (folder / result["artifacts"]["output"]).stat().st_size > 0


def test_a_repaired_nan_is_reported_as_a_warning(tmp_path: Path) -> None:
    path = wav("nan.wav", with_bad(TONE, math.nan, RATE), float32=True)(tmp_path)
    result = run_processor("analyze", path, {}, tmp_path)
    assert isinstance(result, dict)
    assert [w["code"] for w in result["warnings"]] == ["non_finite_samples"]
    assert result["loudness"]["momentary_max_lufs"] == pytest.approx(-12.0, abs=0.2)


def layout_weighted_loudness(samples: np.ndarray, rate: int, weights: list[float]) -> float:
    """BS.1770 integrated loudness with explicit channel weights, as the reference."""
    meter = LoudnessMeter(rate, samples.shape[0])
    meter.weights = np.array(weights)
    meter.process(samples)
    return float(meter.result()["integrated_lufs"])


@pytest.mark.parametrize(
    "mask,weights",
    [(QUAD_MASK, [1.0, 1.0, 1.41, 1.41]), (SURROUND_71_MASK, [1.0, 1.0, 1.0, 0.0, 1.41, 1.41, 1.41, 1.41])],
    ids=["quad", "7.1"],
)
def test_multichannel_loudness_uses_the_streams_layout(mask: int, weights: list[float], tmp_path: Path) -> None:
    channels = len(weights)
    # A different level per channel, so a wrong weight or a counted LFE moves the result.
    levels = np.array([-20.0, -23.0, -26.0, -10.0, -18.0, -21.0, -24.0, -27.0][:channels])
    samples = noise(5.0, channels=channels, level_db=0.0) * (10 ** (levels / 20))[:, None].astype(np.float32)
    path = wav("layout.wav", samples, mask=mask)(tmp_path)
    result = run_processor("analyze", path, {}, tmp_path)
    assert isinstance(result, dict)
    expected = layout_weighted_loudness(samples, RATE, weights)
    assert result["loudness"]["integrated_lufs"] == pytest.approx(expected, abs=0.1)


def normalize_in_process(path: Path, folder: Path, **options: object) -> dict[str, object]:
    """Run `normalize` here (monkeypatched constants apply only in this process)."""
    checked = validate_options("normalize", options)
    return get_processor("normalize").run(str(path), checked, lambda fraction, stage: None, str(folder))


def test_an_encoded_output_over_the_ceiling_is_encoded_again_until_it_is_under(tmp_path: Path, monkeypatch) -> None:
    from tasks_app.audio.processors import normalize

    # No headroom for the AAC encoder's overshoot, so the first pass lands over the ceiling.
    monkeypatch.setitem(normalize.CEILING_MARGIN_DB, "m4a", 0.0)
    path = wav("hot.wav", noise(3.0, level_db=-20.0))(tmp_path)
    result = normalize_in_process(path, tmp_path, output_format="m4a", target_lufs=-8.0)
    assert result["attempts"] > 1
    assert result["output"]["true_peak_dbtp"] <= result["true_peak_ceiling"]
    assert result["ceiling_margin_db"] >= 0


def test_an_output_that_stays_over_the_ceiling_fails_instead_of_completing(tmp_path: Path, monkeypatch) -> None:
    from tasks_app.audio.processors import normalize

    monkeypatch.setitem(normalize.CEILING_MARGIN_DB, "m4a", 0.0)
    monkeypatch.setattr(normalize, "MAX_CEILING_ATTEMPTS", 1)
    path = wav("hot.wav", noise(3.0, level_db=-20.0))(tmp_path)
    with pytest.raises(AudioError) as caught:
        normalize_in_process(path, tmp_path, output_format="m4a", target_lufs=-8.0)
    assert caught.value.code == "over_ceiling"
    assert not (tmp_path / "output.m4a").exists()


@pytest.mark.django_db
@pytest.mark.parametrize("header_rate", [1, 2147483647])
def test_an_absurd_sample_rate_is_refused_at_upload_naming_the_file(
    auth_client, user, tmp_path: Path, header_rate: int
) -> None:
    path = wav("odd.wav", TONE, header_rate=header_rate)(tmp_path)
    with path.open("rb") as fh:
        response = auth_client(user).post("/api/v1/audio/", {"file": fh}, format="multipart")
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["field"]) == ("unsupported_rate", "file")
    assert f"{header_rate} Hz" in error["message"]
