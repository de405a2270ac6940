"""Inspect an audio file: container facts plus a real check that it decodes to its declared end."""

import os
import struct

import av

from tasks_app.audio.errors import AudioError
from tasks_app.audio.info import AudioInfo

# How far before the declared end the tail check starts decoding, in seconds.
TAIL_SECONDS = 3.0
# A file whose decodable audio stops this much before its declared end is reported as truncated.
TRUNCATION_TOLERANCE = 0.5
# Packets at the end of a cut file that may fail to decode without counting as damage mid-file.
CUT_PACKETS = 2
# Container families whose decoded stream carries encoder padding past the declared duration.
PADDED_CONTAINERS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "mp4", "mov"})
# Decoder implementation names mapped to the codec they decode.
CODEC_NAMES = {"mp3float": "mp3", "mp2float": "mp2", "mp1float": "mp1"}
# Sample rates the meters support: the K-weighting shelf (1682 Hz) must sit below the Nyquist
# frequency, or the filter is unstable and loudness turns NaN; above 768 kHz no real file exists,
# and such headers are garbage (a WAV claiming 2147483647 Hz) that would make hours of nothing.
MIN_SAMPLE_RATE = 4000
MAX_SAMPLE_RATE = 768000
# Raw elementary streams whose container states no length: without a Xing/Info/VBRI header the
# demuxer guesses the duration from the first frame's bit rate (346 s for a 64 s VBR MP3).
BITRATE_ESTIMATED_FORMATS = frozenset({"mp3", "aac", "ac3", "eac3", "mp2", "dts", "truehd"})
VBR_TAGS = (b"Xing", b"Info", b"VBRI")


def _short_format_name(container: av.container.InputContainer) -> str:
    name = container.format.name
    if name in PADDED_CONTAINERS:
        return "mp4"
    return name.split(",")[0]


def _check_wav_header(path: str, size: int) -> None:
    """Raise if a RIFF/WAVE file's data chunk claims more bytes than the file holds."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return
        offset = 12
        while offset + 8 <= size:
            fh.seek(offset)
            header = fh.read(8)
            if len(header) < 8:
                return
            chunk_id, chunk_size = struct.unpack("<4sI", header)
            if chunk_id == b"data":
                # 0 and 0xFFFFFFFF mark streamed WAVs whose writer never patched the size in.
                if chunk_size not in (0, 0xFFFFFFFF) and offset + 8 + chunk_size > size:
                    raise AudioError("truncated", "The WAV file is shorter than its header says; it was cut off.")
                return
            offset += 8 + chunk_size + (chunk_size & 1)


def _looks_like_mp4(path: str) -> bool:
    with open(path, "rb") as fh:
        return fh.read(12)[4:8] == b"ftyp"


def _open(path: str) -> av.container.InputContainer:
    try:
        return av.open(path, metadata_errors="ignore")
    except (av.FFmpegError, ValueError, OverflowError) as exc:
        if _looks_like_mp4(path):
            # An MP4 cut before its index ("moov") cannot be opened at all.
            message = "The MP4/M4A file is incomplete (no index); it was probably cut off."
            raise AudioError("truncated", message) from exc
        raise AudioError("not_audio", "The file is not a recognised audio format.") from exc


def _decoded_end(
    container: av.container.InputContainer, stream: av.audio.stream.AudioStream, start: float
) -> float | None:
    """Decode from `start` seconds to the end and return where the last decoded frame ends."""
    if start > 0:
        try:
            container.seek(int(start / stream.time_base), stream=stream, any_frame=False, backward=True)
        except av.FFmpegError:
            pass  # unseekable stream: carry on decoding from where the head check stopped
    end = None
    for packet in container.demux(stream):
        try:
            frames = packet.decode()
        except av.FFmpegError:
            # A damaged packet is skipped like a player would; only where decoding ends matters.
            continue
        for frame in frames:
            if frame.pts is not None and frame.time_base is not None:
                end = float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate
    return end


def _decode_head(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """Decode the first second or so; return where the decoded audio ends (None if nothing decoded)."""
    samples = 0
    end = None
    try:
        for frame in container.decode(stream):
            samples += frame.samples
            if frame.pts is not None and frame.time_base is not None:
                end = float(frame.pts * frame.time_base) + frame.samples / frame.sample_rate
            elif frame.samples:
                end = samples / frame.sample_rate
            if samples >= stream.codec_context.sample_rate:
                break
    except av.FFmpegError as exc:
        raise AudioError("not_audio", "The file's audio could not be decoded.") from exc
    return end if samples else None


def probe(path: str) -> AudioInfo:
    """Return facts about the audio file at `path`, raising AudioError if it is not usable audio."""
    size = os.path.getsize(path)
    if size == 0:
        raise AudioError("empty", "The file is empty.")
    _check_wav_header(path, size)
    with _open(path) as container:
        if not container.streams.audio:
            if any(s.type in ("video", "subtitle") for s in container.streams) and container.format.name != "tty":
                raise AudioError("unsupported_format", "The file has no audio stream.")
            raise AudioError("not_audio", "The file is not a recognised audio format.")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        if ctx is None or not ctx.sample_rate or not ctx.channels:
            raise AudioError("unsupported_format", "The file's audio codec is not supported.")
        if not MIN_SAMPLE_RATE <= ctx.sample_rate <= MAX_SAMPLE_RATE:
            raise AudioError(
                "unsupported_rate",
                f"The sample rate {ctx.sample_rate} Hz is outside what can be measured "
                f"({MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz).",
            )
        head_end = _decode_head(container, stream)
        if head_end is None:
            raise AudioError("truncated", "The file contains no decodable audio.")
        guessed = _length_is_a_guess(path, container)
        if guessed:
            declared = _demuxed_end(container, stream)
        else:
            declared = _declared_duration(container, stream)
        tail_end = _decoded_end(container, stream, max(0.0, declared - TAIL_SECONDS))
        # A file shorter than the head check was decoded whole already; the tail finds nothing more.
        end = head_end if tail_end is None else max(head_end, tail_end)
        if end is None or end < declared - TRUNCATION_TOLERANCE:
            # Damage mid-file also shortens the decoded timeline; only a file whose audio ends early
            # with no damage before its last packets was cut off. (The slow check runs only here.)
            damaged_end = _end_if_damaged(container, stream)
            if damaged_end is None:
                raise AudioError("truncated", "The audio stops before its declared end; the file was cut off.")
            end = declared = damaged_end
        # Tail timestamps overshoot by codec delay or padding (MP3, AAC) and the declared length
        # overshoots by pre-skip (Opus), so the smaller of the two is the true length.
        duration = min(declared, end) if declared > 0 else end
        return AudioInfo(
            duration=round(duration, 6),
            sample_rate=int(ctx.sample_rate),
            channels=int(ctx.channels),
            format=_short_format_name(container),
            codec=CODEC_NAMES.get(ctx.name, ctx.name),
            bit_rate=_bit_rate(stream, container, size, duration, guessed),
            size=size,
            layout=ctx.layout.name,
            channel_names=tuple(channel.name for channel in ctx.layout.channels),
        )


def _bit_rate(
    stream: av.audio.stream.AudioStream,
    container: av.container.InputContainer,
    size: int,
    duration: float,
    guessed: bool,
) -> int | None:
    """The stream's bit rate; the file's average where the header only states the first frame's (VBR)."""
    if guessed and duration > 0:
        return int(round(size * 8 / duration))
    return int(stream.bit_rate or container.bit_rate or 0) or None


def _length_is_a_guess(path: str, container: av.container.InputContainer) -> bool:
    """Whether the declared duration is the demuxer's bit-rate guess (raw stream, no VBR header)."""
    if _short_format_name(container) not in BITRATE_ESTIMATED_FORMATS:
        return False
    with open(path, "rb") as fh:
        head = fh.read(10)
        start = 0
        if head[:3] == b"ID3" and len(head) == 10:
            start = 10 + ((head[6] << 21) | (head[7] << 14) | (head[8] << 7) | head[9])
        fh.seek(start)
        # The VBR header sits in the first frame, within its first few hundred bytes.
        first_frame = fh.read(4096)
    return not any(tag in first_frame for tag in VBR_TAGS)


def _end_if_damaged(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float | None:
    """Decode the whole stream; where it ends if packets before its last few failed to decode, else None."""
    try:
        container.seek(0, stream=stream)
    except av.FFmpegError:
        return None
    failed: list[int] = []
    index = 0
    samples = 0
    rate = stream.codec_context.sample_rate
    for index, packet in enumerate(container.demux(stream)):
        try:
            samples += sum(frame.samples for frame in packet.decode())
        except av.FFmpegError:
            failed.append(index)
    # A file cut inside a packet fails to decode only at its very end.
    if not any(position < index - CUT_PACKETS for position in failed):
        return None
    return samples / rate


def _demuxed_end(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    """Where the last packet ends, read from packet timestamps without decoding (fast)."""
    end = 0.0
    for packet in container.demux(stream):
        if packet.pts is not None and packet.time_base is not None:
            end = max(end, float((packet.pts + (packet.duration or 0)) * packet.time_base))
    try:
        container.seek(0, stream=stream)
    except av.FFmpegError:
        pass  # unseekable: the tail check then finds nothing and the head check's end stands
    return end


def _declared_duration(container: av.container.InputContainer, stream: av.audio.stream.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0
