"""Streaming decoder yielding float32 (channels, n) blocks at the file's native sample rate."""

import queue
import threading
from collections.abc import Iterator

import av
import numpy as np

from tasks_app.audio.errors import AudioError
from tasks_app.audio.probe import AudioInfo, probe

# About 1.5 s at 44.1 kHz: big enough to amortise Python overhead, small enough for the CPU cache
# to matter and for progress to be reported many times a second.
BLOCK_SAMPLES = 65536

# Damaged packets tolerated (skipped) before the file is rejected.
MAX_DECODE_ERRORS = 100
# Blocks decoded ahead of the consumer by the background thread; bounds memory to a few blocks.
PREFETCH_BLOCKS = 3

_INT_SCALE = {"u8": 1 / 128, "s16": 1 / 32768, "s32": 1 / 2147483648}


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


class Decoder:
    """Iterate over a file's audio as float32 blocks; `expected_samples` sizes progress reports."""

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

    def _frames(self) -> Iterator[np.ndarray]:
        try:
            with av.open(self.path, metadata_errors="ignore") as container:
                stream = container.streams.audio[0]
                for packet in container.demux(stream):
                    try:
                        frames = packet.decode()
                    except av.InvalidDataError:
                        # A damaged packet mid-file becomes silence of the same length, so later
                        # timestamps stay true; probe has already rejected cut-off or non-audio files.
                        self.decode_errors += 1
                        if self.decode_errors > MAX_DECODE_ERRORS:
                            raise AudioError("not_audio", "The audio is too damaged to decode.") from None
                        if packet.duration and packet.time_base is not None:
                            lost = int(round(float(packet.duration * packet.time_base) * self.sample_rate))
                            yield np.zeros((self.channels, lost), dtype=np.float32)
                        continue
                    for frame in frames:
                        if frame.samples:
                            yield _frame_to_float(frame, self.channels)
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
            if chunk.shape[0] != self.channels:
                raise AudioError("unsupported_format", "The channel count changes inside the file.")
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
