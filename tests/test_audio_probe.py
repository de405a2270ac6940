"""Probing and decoding: five formats agree on duration; bad files fail with the right code."""

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from tasks_app.audio.decode import Decoder
from tasks_app.audio.errors import AudioError
from tasks_app.audio.generate import tone, write_tone
from tasks_app.audio.probe import probe

FORMATS = {
    "wav": ("wav", "pcm_s16le"),
    "mp3": ("mp3", "mp3"),
    "flac": ("flac", "flac"),
    "opus": ("ogg", "opus"),
    "m4a": ("mp4", "aac"),
}
SECONDS = 3.0


@pytest.fixture(scope="module")
def tones(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tones")
    paths = {}
    for fmt in FORMATS:
        paths[fmt] = folder / f"tone.{fmt}"
        write_tone(str(paths[fmt]), SECONDS, fmt=fmt, freq=997.0)
    return paths


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_probe_reports_the_generated_duration_and_codec(tones: dict[str, Path], fmt: str) -> None:
    info = probe(str(tones[fmt]))
    assert abs(info.duration - SECONDS) <= 0.05
    assert (info.format, info.codec) == FORMATS[fmt]
    assert info.channels == 2
    assert info.sample_rate == (48000 if fmt == "opus" else 44100)
    assert info.size == tones[fmt].stat().st_size
    assert json.loads(json.dumps(info.as_dict()))["duration"] == info.duration


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_decoder_yields_float32_blocks_covering_the_whole_file(tones: dict[str, Path], fmt: str) -> None:
    decoder = Decoder(str(tones[fmt]))
    total = 0
    for block in decoder.blocks():
        assert block.dtype == np.float32
        assert block.shape[0] == 2
        assert block.flags["C_CONTIGUOUS"]
        total += block.shape[1]
    assert abs(total / decoder.sample_rate - SECONDS) <= 0.05
    assert abs(total - decoder.expected_samples) <= 0.05 * decoder.sample_rate


def test_decoder_stops_cleanly_when_the_consumer_stops_early(tones: dict[str, Path]) -> None:
    blocks = Decoder(str(tones["wav"]), block_samples=4096).blocks()
    next(blocks)
    blocks.close()  # must not hang or leak the prefetch thread


def _expect(path: Path, code: str) -> None:
    with pytest.raises(AudioError) as caught:
        probe(str(path))
    assert caught.value.code == code
    assert caught.value.message


def test_empty_file_is_reported_as_empty(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    _expect(path, "empty")


def test_text_renamed_to_wav_is_not_audio(tmp_path: Path) -> None:
    path = tmp_path / "notes.wav"
    path.write_text("These are meeting notes, not a recording.\n" * 20)
    _expect(path, "not_audio")


def test_image_without_audio_stream_is_unsupported(tmp_path: Path) -> None:
    path = tmp_path / "cover.mp3"
    Image.new("RGB", (64, 64), (200, 20, 20)).save(path, format="PNG")
    _expect(path, "unsupported_format")


def test_first_3000_bytes_of_an_mp3_are_truncated(tones: dict[str, Path], tmp_path: Path) -> None:
    path = tmp_path / "cut.mp3"
    path.write_bytes(tones["mp3"].read_bytes()[:3000])
    _expect(path, "truncated")


@pytest.mark.parametrize("fmt", ["mp3", "wav", "flac", "m4a"])
def test_file_cut_in_half_is_truncated(tones: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    data = tones[fmt].read_bytes()
    path = tmp_path / f"half.{fmt}"
    path.write_bytes(data[: len(data) // 2])
    _expect(path, "truncated")


def test_ogg_vorbis_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "tone.ogg"
    # ffmpeg's own Vorbis encoder is flagged experimental; it is only used to make the fixture.
    with av.open(str(path), "w", format="ogg") as container:
        stream = container.add_stream("vorbis", rate=44100, layout="stereo", options={"strict": "experimental"})
        samples = np.ascontiguousarray(tone(SECONDS, 44100, 2, 997.0))
        frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 44100, 0, Fraction(1, 44100)
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    info = probe(str(path))
    assert (info.format, info.codec) == ("ogg", "vorbis")
    assert abs(info.duration - SECONDS) <= 0.05
    assert abs(sum(b.shape[1] for b in Decoder(str(path)).blocks()) / 44100 - SECONDS) <= 0.05


def test_damaged_packets_mid_file_are_skipped_not_fatal(tones: dict[str, Path], tmp_path: Path) -> None:
    data = bytearray(tones["mp3"].read_bytes())
    rng = np.random.default_rng(0)
    middle = len(data) // 2
    data[middle : middle + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    path = tmp_path / "damaged.mp3"
    path.write_bytes(bytes(data))
    probe(str(path))
    decoder = Decoder(str(path))
    total = sum(block.shape[1] for block in decoder.blocks())
    assert decoder.decode_errors > 0
    assert [w["code"] for w in decoder.warnings()] == ["damaged_packets"]
    # Damaged packets are skipped like ffmpeg skips them (here 27 frames, exactly as ffmpeg 5.1
    # does; tests/test_audio_reference.py compares lengths): the rest decodes.
    assert SECONDS - 1.0 <= total / decoder.sample_rate < SECONDS


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_files_shorter_than_the_head_check_are_accepted(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"blip.{fmt}"
    write_tone(str(path), 0.2, fmt=fmt)
    assert abs(probe(str(path)).duration - 0.2) <= 0.05


def test_scattered_damage_in_a_long_file_is_skipped_not_fatal(tmp_path: Path) -> None:
    path = tmp_path / "long.mp3"
    write_tone(str(path), 120.0, fmt="mp3", bit_rate_kbps=64)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    # 300 damaged spots, one every ~0.4 s: more than MAX_DECODE_ERRORS, yet a small share of packets.
    for at in np.linspace(len(data) * 0.05, len(data) * 0.95, 300).astype(int).tolist():
        data[at : at + 40] = rng.integers(0, 256, 40, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    decoder = Decoder(str(path))
    total = sum(block.shape[1] for block in decoder.blocks())
    assert decoder.decode_errors > 100
    assert total / decoder.sample_rate > 100.0


def test_a_20_kb_damaged_stretch_in_an_mp3_with_a_length_header_is_not_truncation(tmp_path: Path) -> None:
    path = tmp_path / "damaged.mp3"
    write_tone(str(path), 20.0, fmt="mp3", bit_rate_kbps=128)  # has a Xing header stating its length
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 20000] = np.random.default_rng(2).integers(0, 256, 20000, dtype=np.uint8).tobytes()
    path.write_bytes(bytes(data))
    info = probe(str(path))
    decoder = Decoder(str(path), info)
    decoded = sum(block.shape[1] for block in decoder.blocks()) / decoder.sample_rate
    assert decoder.decode_errors > 0
    assert 17.0 < decoded < 20.0 and info.duration == pytest.approx(decoded, abs=0.1)
