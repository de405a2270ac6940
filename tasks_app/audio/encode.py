"""Streaming encoder that writes float32 (channels, n) blocks to wav/mp3/flac/opus/m4a files."""

import wave
from fractions import Fraction
from types import TracebackType

import av
import numpy as np

from tasks_app.audio.formats import DEFAULT_BIT_RATE_KBPS

# fmt -> (container format, codec, rates the codec accepts or None for any, lossy)
FORMATS: dict[str, tuple[str, str, tuple[int, ...] | None, bool]] = {
    "wav": ("wav", "pcm_s16le", None, False),
    "flac": ("flac", "flac", None, False),
    "mp3": ("mp3", "libmp3lame", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000), True),
    "opus": ("ogg", "libopus", (8000, 12000, 16000, 24000, 48000), True),
    "m4a": ("mp4", "aac", (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000), True),
}


def is_lossy(fmt: str) -> bool:
    """Whether `fmt` is a lossy codec whose decoded peaks may differ from the encoded samples."""
    return FORMATS[fmt][3]


def _encoder_rate(fmt: str, sample_rate: int) -> int:
    rates = FORMATS[fmt][2]
    if rates is None or sample_rate in rates:
        return sample_rate
    # Opus only runs at 48 kHz-derived rates; other codecs get the nearest supported rate above.
    higher = [r for r in rates if r >= sample_rate]
    return min(higher) if higher else max(rates)


# Most channels each format holds (the stdlib WAV writer takes any count, without positions).
MAX_CHANNELS: dict[str, int] = {"wav": 65535, "flac": 8, "mp3": 2, "opus": 8, "m4a": 8}
# The layout written for a channel count when the input's own cannot be (unnamed, or refused by the codec).
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "quad", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}
# Named layouts an encoder refuses although it takes that many channels.
REFUSED_LAYOUTS: dict[str, frozenset[str]] = {"opus": frozenset({"2.1", "4.0"}), "m4a": frozenset({"6.1"})}
# PyAV builds planar frames of 8 or more channels wrongly (IndexError); those go in packed.
PACKED_FROM_CHANNELS = 8


def output_layout(fmt: str, channels: int, layout: str | None = None) -> str:
    """The channel layout to encode `channels` channels in `fmt`: the input's `layout` where possible."""
    if layout and layout not in REFUSED_LAYOUTS.get(fmt, frozenset()):
        try:
            named = av.AudioLayout(layout)
        except (ValueError, TypeError):
            named = None
        if named is not None and named.nb_channels == channels and all(c.name != "NONE" for c in named.channels):
            return layout
    return DEFAULT_LAYOUTS.get(channels, f"{channels} channels")


def _to_int16_interleaved(block: np.ndarray) -> bytes:
    out = np.empty((block.shape[1], block.shape[0]), dtype="<i2")
    for ch in range(block.shape[0]):
        scaled = block[ch] * np.float32(32768.0)
        np.clip(scaled, -32768.0, 32767.0, out=scaled)
        out[:, ch] = np.rint(scaled, out=scaled)
    return out.tobytes()


class AudioWriter:
    """Encode float blocks shaped (channels, n) to `path` in `fmt`; use as a context manager."""

    def __init__(
        self,
        path: str,
        fmt: str,
        sample_rate: int,
        channels: int,
        bit_rate_kbps: int | None = None,
        layout: str | None = None,
    ) -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unsupported output format {fmt!r}")
        if channels > MAX_CHANNELS[fmt]:
            raise ValueError(f"{fmt} holds at most {MAX_CHANNELS[fmt]} channels")
        self.fmt = fmt
        self.channels = channels
        self.sample_rate = sample_rate
        self._wav: wave.Wave_write | None = None
        self._container: av.container.OutputContainer | None = None
        self._pts = 0
        if fmt == "wav":
            # The stdlib writer is several times faster than PyAV for plain PCM.
            self._wav = wave.open(path, "wb")
            self._wav.setnchannels(channels)
            self._wav.setsampwidth(2)
            self._wav.setframerate(sample_rate)
            return
        container_format, codec, _, lossy = FORMATS[fmt]
        self._container = av.open(path, "w", format=container_format)
        self._layout = output_layout(fmt, channels, layout)
        self._stream = self._container.add_stream(codec, rate=_encoder_rate(fmt, sample_rate), layout=self._layout)
        if lossy:
            kbps = bit_rate_kbps or DEFAULT_BIT_RATE_KBPS[fmt]
            self._stream.bit_rate = kbps * 1000
        if codec == "libmp3lame":
            # LAME takes float input directly; its default (s32p) costs an extra conversion pass.
            self._stream.codec_context.format = "fltp"

    def write(self, block: np.ndarray) -> None:
        """Append a (channels, n) float block to the output."""
        if block.shape[1] == 0:
            return
        if self._wav is not None:
            self._wav.writeframesraw(_to_int16_interleaved(block))
            return
        assert self._container is not None
        if self.channels >= PACKED_FROM_CHANNELS:
            packed = np.ascontiguousarray(block.T, dtype=np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(packed, format="flt", layout=self._layout)
        else:
            frame = av.AudioFrame.from_ndarray(
                np.ascontiguousarray(block, dtype=np.float32), format="fltp", layout=self._layout
            )
        frame.sample_rate = self.sample_rate
        frame.pts = self._pts
        frame.time_base = Fraction(1, self.sample_rate)
        self._pts += block.shape[1]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and close the file."""
        if self._wav is not None:
            self._wav.close()
            self._wav = None
        if self._container is not None:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._container.close()
            self._container = None

    def __enter__(self) -> "AudioWriter":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
