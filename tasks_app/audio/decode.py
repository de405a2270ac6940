"""Streaming decoder yielding float32 (channels, n) blocks at the file's native sample rate."""

import itertools
import queue
import threading
from collections.abc import Iterator

import av
import numpy as np

from tasks_app.audio.errors import AudioError
from tasks_app.audio.probe import AudioInfo, probe
from tasks_app.audio.results import warning

# About 1.5 s at 44.1 kHz: big enough to amortise Python overhead, small enough for the CPU cache
# to matter and for progress to be reported many times a second.
BLOCK_SAMPLES = 65536

# Damaged packets are skipped; the file is rejected only when more than this many are damaged and
# they are more than MAX_DAMAGED_SHARE of its packets, so a long file with scattered damage decodes.
MAX_DECODE_ERRORS = 100
MAX_DAMAGED_SHARE = 0.1
# Blocks decoded ahead of the consumer by the background thread; bounds memory to a few blocks.
PREFETCH_BLOCKS = 3

_INT_SCALE = {"u8": 1 / 128, "s16": 1 / 32768, "s32": 1 / 2147483648}
# Float samples beyond +60 dBFS are not audio but garbage (1e30 squares to infinity in float32);
# they are repaired like NaN and infinity: set to silence, counted, reported as a warning.
MAX_FLOAT_SAMPLE = 1000.0
# PyAV reads planar frames of 8 or more channels out of bounds (a crash); those are packed first.
PACKED_FROM_CHANNELS = 8


def _frame_to_float(frame: av.AudioFrame, channels: int) -> np.ndarray:
    """Convert any PyAV audio frame to a float32 (channels, n) array."""
    data = frame.to_ndarray()
    fmt = frame.format.name
    base = fmt.rstrip("p")
    if not frame.format.is_planar:
        data = data.reshape(-1, channels).T
    if base in ("flt", "dbl"):
        return data.astype(np.float32, copy=False)
    if base == "u8":
        return (data.astype(np.float32) - 128.0) * _INT_SCALE["u8"]
    if base in _INT_SCALE:
        return data.astype(np.float32) * np.float32(_INT_SCALE[base])
    raise AudioError("unsupported_format", f"Unsupported decoded sample format {fmt}.")


def _repair(data: np.ndarray) -> int:
    """Zero non-finite or absurd float samples in place; return how many there were."""
    # One max() over the block is the fast path: NaN propagates through it and fails the comparison.
    if float(np.abs(data).max(initial=0.0)) <= MAX_FLOAT_SAMPLE:
        return 0
    bad = ~(np.abs(data) <= MAX_FLOAT_SAMPLE)
    data[bad] = 0.0
    return int(bad.sum())


class Decoder:
    """Iterate over a file's audio as float32 blocks; `expected_samples` sizes progress reports.

    Damaged packets are skipped (`decode_errors`), NaN/infinite/absurd float samples become
    silence (`repaired_samples`), and a stream whose channel layout or sample rate changes midway is
    converted to the first one (`stream_changes`); `warnings()` describes what was done.
    """

    def __init__(self, path: str, info: AudioInfo | None = None, block_samples: int = BLOCK_SAMPLES) -> None:
        self.path = path
        self.info = info or probe(path)
        self.sample_rate = self.info.sample_rate
        self.channels = self.info.channels
        self.block_samples = block_samples
        self.expected_samples = max(1, int(round(self.info.duration * self.sample_rate)))
        # AAC in MP4 decodes to whole frames past the declared end; cut back to the declared length.
        self._limit = self.expected_samples if self.info.format == "mp4" else None
        self.decode_errors = 0
        self.packets = 0
        self.repaired_samples = 0
        self.stream_changes = 0
        self._resampler: av.AudioResampler | None = None
        self._packer: av.AudioResampler | None = None

    def warnings(self) -> list[dict[str, str]]:
        """What was repaired or converted while decoding, as result warnings."""
        found = []
        if self.repaired_samples:
            found.append(
                warning(
                    "non_finite_samples",
                    f"{self.repaired_samples} sample(s) were NaN, infinite or beyond +60 dBFS; "
                    "they were measured as silence.",
                )
            )
        if self.decode_errors:
            found.append(
                warning(
                    "damaged_packets", f"{self.decode_errors} damaged packet(s) could not be decoded and were skipped."
                )
            )
        if self.stream_changes:
            found.append(
                warning(
                    "stream_changed",
                    f"The channel layout or sample rate changes inside the file; {self.stream_changes} frame(s) were "
                    f"converted to {self.channels} channel(s) at {self.sample_rate} Hz.",
                )
            )
        return found

    def _convert(self, frame: av.AudioFrame) -> np.ndarray:
        """A frame whose layout or rate differs from the stream's start, converted to the start's."""
        self.stream_changes += 1
        try:
            if self._resampler is None:
                self._resampler = av.AudioResampler(format="flt", layout=self.info.layout, rate=self.sample_rate)
            converted = self._resampler.resample(frame)
        except (av.FFmpegError, ValueError) as exc:
            raise AudioError(
                "unsupported_format", "The channel layout changes inside the file in a way that cannot be converted."
            ) from exc
        chunks = [_frame_to_float(out, self.channels) for out in converted]
        return np.concatenate(chunks, axis=1) if chunks else np.zeros((self.channels, 0), dtype=np.float32)

    def _pack(self, frame: av.AudioFrame) -> np.ndarray:
        """A planar frame with many channels, read through a packed copy."""
        if self._packer is None:
            self._packer = av.AudioResampler(format="flt", layout=frame.layout, rate=frame.sample_rate)
        chunks = [_frame_to_float(out, self.channels) for out in self._packer.resample(frame)]
        return np.concatenate(chunks, axis=1) if chunks else np.zeros((self.channels, 0), dtype=np.float32)

    def _frames(self) -> Iterator[np.ndarray]:
        try:
            with av.open(self.path, metadata_errors="ignore") as container:
                stream = container.streams.audio[0]
                for packet in container.demux(stream):
                    self.packets += 1
                    try:
                        frames = packet.decode()
                    except av.FFmpegError:
                        # A damaged packet is skipped and counted, as ffmpeg and players do: the
                        # bytes around it are lost to resynchronisation anyway, so padding only
                        # this packet with silence would not restore the timeline either.
                        self.decode_errors += 1
                        if (
                            self.decode_errors > MAX_DECODE_ERRORS
                            and self.decode_errors > MAX_DAMAGED_SHARE * self.packets
                        ):
                            raise AudioError("not_audio", "The audio is too damaged to decode.") from None
                        continue
                    for frame in frames:
                        if not frame.samples:
                            continue
                        if frame.layout.nb_channels != self.channels or frame.sample_rate != self.sample_rate:
                            chunk = self._convert(frame)
                        elif frame.format.is_planar and self.channels >= PACKED_FROM_CHANNELS:
                            chunk = self._pack(frame)
                        else:
                            chunk = _frame_to_float(frame, self.channels)
                        if frame.format.name.rstrip("p") in ("flt", "dbl"):
                            if not chunk.flags.writeable:
                                chunk = chunk.copy()
                            self.repaired_samples += _repair(chunk)
                        yield chunk
        except av.FFmpegError as exc:
            raise AudioError("truncated", f"The audio could not be decoded to the end: {exc}") from exc

    def blocks(self) -> Iterator[np.ndarray]:
        """Yield contiguous float32 blocks shaped (channels, n), decoded ahead in a background thread."""
        return _prefetch(self._blocks(), PREFETCH_BLOCKS)

    def _blocks(self) -> Iterator[np.ndarray]:
        pending: list[np.ndarray] = []
        pending_len = 0
        produced = 0
        for chunk in self._frames():
            if self._limit is not None:
                room = self._limit - produced - pending_len
                if room <= 0:
                    break
                chunk = chunk[:, :room]
            pending.append(chunk)
            pending_len += chunk.shape[1]
            while pending_len >= self.block_samples:
                joined = np.concatenate(pending, axis=1) if len(pending) > 1 else pending[0]
                block = np.ascontiguousarray(joined[:, : self.block_samples])
                rest = joined[:, self.block_samples :]
                pending = [rest] if rest.shape[1] else []
                pending_len = rest.shape[1]
                produced += block.shape[1]
                yield block
        if pending_len:
            yield np.ascontiguousarray(np.concatenate(pending, axis=1))


# ffmpeg's ebur128 filter reads true peak from the signal resampled to this rate.
RESAMPLED_PEAK_RATE = 192000


def resampled_peak(path: str) -> float:
    """Largest |sample| of the file resampled to 192 kHz by FFmpeg's resampler, as `ebur128=peak=true` reads it."""
    peak = 0.0
    with av.open(path, metadata_errors="ignore") as container:
        stream = container.streams.audio[0]
        if stream.codec_context.sample_rate >= RESAMPLED_PEAK_RATE:
            return 0.0  # not resampled there: the plain samples, which the BS.1770 meter covers
        # Packed output: PyAV mishandles planar frames of many channels.
        resampler = av.AudioResampler(format="flt", layout=stream.codec_context.layout, rate=RESAMPLED_PEAK_RATE)
        # One frame at a time, then None to flush the resampler: a list of the decoded frames
        # held the whole file (1.9 GB for three hours of 16-bit stereo).
        for frame in itertools.chain(container.decode(stream), [None]):
            for out in resampler.resample(frame):
                data = out.to_ndarray()
                if data.size:
                    peak = max(peak, float(data.max()), float(-data.min()))
    return peak


_END = object()


def _prefetch(source: Iterator[np.ndarray], depth: int) -> Iterator[np.ndarray]:
    """Run `source` in a thread so decoding (which releases the GIL) overlaps the consumer's work."""
    items: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        """Decode into the queue until the source ends or the consumer stops."""
        try:
            for item in source:
                while not stop.is_set():
                    try:
                        items.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            items.put(_END)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer to re-raise
            items.put(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="audio-decode", daemon=True)
    worker.start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        # The consumer may stop early (Cancelled): release the producer and wait for it to close the file.
        stop.set()
        while worker.is_alive():
            try:
                items.get(timeout=0.05)
            except queue.Empty:
                pass
        worker.join()
