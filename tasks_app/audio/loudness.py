"""Streaming loudness (ITU-R BS.1770-4 / EBU R128), loudness range (EBU Tech 3342) and true peak."""

import math

import numpy as np
import scipy.signal
from numpy.lib.stride_tricks import sliding_window_view

ABSOLUTE_GATE_LUFS = -70.0
RELATIVE_GATE_LU = -10.0
LRA_RELATIVE_GATE_LU = -20.0
SUB_BLOCKS_PER_SECOND = 10  # 100 ms hop: 75 % overlap of 400 ms blocks, 10 Hz for 3 s windows
# Energies are kept per 10 ms so the momentary maximum is found on a 10 ms grid: on the 100 ms
# gating grid a 400 ms burst that starts between two steps reads up to 1.25 LU low (EBU Tech 3341
# case 13). Gating and LRA still use the standard 100 ms steps, summed from these.
FINE_FRAMES_PER_SECOND = 100
FINE_PER_SUB_BLOCK = FINE_FRAMES_PER_SECOND // SUB_BLOCKS_PER_SECOND
MOMENTARY_SUB_BLOCKS = 4
SHORT_TERM_SUB_BLOCKS = 30

# ITU-R BS.1770-4 Annex 2: 4x oversampling interpolator, 48 taps as 4 phases of 12.
BS1770_TRUE_PEAK_PHASES = np.array(
    [
        [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875, 0.1373291015625,
         0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500],
        [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500, 0.4650878906250,
         0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375],
        [-0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000, -0.2003173828125, 0.7797851562500,
         0.4650878906250, -0.1665039062500, 0.0891113281250, -0.0517578125000, 0.0292968750000, -0.0291748046875],
        [-0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750, -0.1022949218750, 0.9721679687500,
         0.1373291015625, -0.0594482421875, 0.0332031250000, -0.0196533203125, 0.0109863281250, 0.0017089843750],
    ]
)  # fmt: skip
TAPS_PER_PHASE = BS1770_TRUE_PEAK_PHASES.shape[1]
# True-peak work is skipped for stretches that provably cannot beat the running peak; a segment is
# this many samples.
TRUE_PEAK_SEGMENT = 4096
# OpenBLAS goes multi-threaded above m*n*k = 262144; rows of 12 taps times 48 outputs stay under it.
MAX_PRODUCT_ROWS = 400


def to_db(value: float, power: bool = False) -> float | None:
    """Convert a linear amplitude (or power) to dB; silence becomes None (JSON has no -inf)."""
    if value <= 0 or not math.isfinite(value):
        return None
    return (10.0 if power else 20.0) * math.log10(value)


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """Return the BS.1770 K-weighting filter (shelf + RLB high-pass) as second-order sections."""
    # Analogue prototypes matching the BS.1770 48 kHz coefficients, re-derived for any rate.
    f0, gain_db, q = 1681.974450955533, 3.999843853973347, 0.7071752369554196
    k = math.tan(math.pi * f0 / sample_rate)
    vh = 10 ** (gain_db / 20)
    vb = vh**0.4996667741545416
    a0 = 1 + k / q + k * k
    shelf = [
        (vh + vb * k / q + k * k) / a0,
        2 * (k * k - vh) / a0,
        (vh - vb * k / q + k * k) / a0,
        1.0,
        2 * (k * k - 1) / a0,
        (1 - k / q + k * k) / a0,
    ]
    f0, q = 38.13547087602444, 0.5003270373238773
    k = math.tan(math.pi * f0 / sample_rate)
    a0 = 1 + k / q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2 * (k * k - 1) / a0, (1 - k / q + k * k) / a0]
    return np.array([shelf, highpass])


# BS.1770-4 weights by loudspeaker position: 1.41 for surrounds, the LFE left out, 1.0 for the rest.
# Like ffmpeg's ebur128, every back, side or surround-direct channel counts as a surround.
SURROUND_CHANNELS = frozenset({"BL", "BR", "BC", "SL", "SR", "TBL", "TBC", "TBR", "SDL", "SDR"})
LFE_CHANNELS = frozenset({"LFE", "LFE2", "LFE3"})
SURROUND_WEIGHT = 1.41
# A file that names no positions (a plain multichannel WAV) gets the conventional order for 5 and 6
# channels (L R C Ls Rs, L R C LFE Ls Rs) and weight 1.0 everywhere otherwise.
UNNAMED_DEFAULTS = {5: ("FL", "FR", "FC", "BL", "BR"), 6: ("FL", "FR", "FC", "LFE", "BL", "BR")}


def channel_weights(channels: int, names: tuple[str, ...] = ()) -> np.ndarray:
    """BS.1770 channel weights from the stream's channel positions (FFmpeg names: FL, LFE, SL, ...)."""
    if len(names) != channels or not any(name in SURROUND_CHANNELS | LFE_CHANNELS | {"FL", "FC"} for name in names):
        names = UNNAMED_DEFAULTS.get(channels, ())
    if len(names) != channels:
        return np.ones(channels)
    return np.array(
        [0.0 if name in LFE_CHANNELS else SURROUND_WEIGHT if name in SURROUND_CHANNELS else 1.0 for name in names]
    )


def oversampling_phases(sample_rate: int) -> np.ndarray:
    """Interpolator phases (phases, taps) that bring the rate to about 192 kHz (BS.1770-4 Annex 2)."""
    if sample_rate < 96000:
        return BS1770_TRUE_PEAK_PHASES
    if sample_rate < 192000:
        # BS.1770 only specifies the 4x filter; 2x uses a comparable 24-tap windowed sinc.
        proto = scipy.signal.firwin(2 * TAPS_PER_PHASE, 0.45, window=("kaiser", 5.0)) * 2
        return proto.reshape(TAPS_PER_PHASE, 2).T
    identity = np.zeros((1, TAPS_PER_PHASE))
    identity[0, TAPS_PER_PHASE // 2] = 1.0
    return identity


class Interpolator:
    """Polyphase FIR oversampler computed as two dense matrix products per run of samples.

    Samples are viewed, without copying, as rows of TAPS_PER_PHASE; every output of a row depends
    only on that row and the one before it, so `rows @ current + previous_rows @ previous` gives all
    phases of all positions at BLAS speed (about twice as fast as gathering 12-sample windows).
    """

    def __init__(self, sample_rate: int) -> None:
        phases = oversampling_phases(sample_rate)
        self.phases = phases.shape[0]
        self.bound = float(np.abs(phases).sum(axis=1).max())
        width = TAPS_PER_PHASE
        self._current = np.zeros((width, width * self.phases), dtype=np.float32)
        self._previous = np.zeros((width, width * self.phases), dtype=np.float32)
        # Output (position j, phase p) = sum over taps k of phases[p, k] * sample[j - k].
        for j in range(width):
            for p in range(self.phases):
                for k in range(width):
                    if j - k >= 0:
                        self._current[j - k, j * self.phases + p] = phases[p, k]
                    else:
                        self._previous[width + j - k, j * self.phases + p] = phases[p, k]

    def outputs(self, extended: np.ndarray, start: int, stop: int) -> np.ndarray:
        """Interpolated values (positions, phases) for block positions [start, stop).

        `extended` is one channel: the TAPS_PER_PHASE samples before the block, then the block.
        """
        width = TAPS_PER_PHASE
        count = stop - start
        rows = -(-count // width)
        previous = extended[start : start + rows * width]
        current = extended[start + width : start + width + rows * width]
        if current.shape[0] < rows * width:
            current = np.concatenate([current, np.zeros(rows * width - current.shape[0], dtype=np.float32)])
        current = current.reshape(rows, width)
        previous = previous.reshape(rows, width)
        values = np.empty((rows, width * self.phases), dtype=np.float32)
        # Small products stay single-threaded in OpenBLAS; a threaded one competes with our own
        # worker threads on a small machine and was measured 7x slower.
        for first in range(0, rows, MAX_PRODUCT_ROWS):
            last = min(first + MAX_PRODUCT_ROWS, rows)
            np.matmul(current[first:last], self._current, out=values[first:last])
            values[first:last] += previous[first:last] @ self._previous
        return values.reshape(rows * width, self.phases)[:count]


class FrameEnergies:
    """Sum a per-sample signal into fixed-rate frames (e.g. 10 ms) across block boundaries.

    Keeps only the frame in progress: each block returns the frames it completed, so memory does
    not grow with the length of the stream. Frame k covers samples [edge(k), edge(k + 1)) with
    edge(k) = k * sample_rate // frames_per_second.
    """

    def __init__(self, sample_rate: int, frames_per_second: int) -> None:
        self.sample_rate = sample_rate
        self.rate = frames_per_second
        self.samples = 0
        self.frames = 0  # complete frames so far
        self.partial = 0.0  # sum of the frame in progress

    def add(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Append per-sample values (e.g. power) of the next block; return (sums, lengths) of frames it completed."""
        start, end = self.samples, self.samples + values.shape[0]
        # The last frame whose end edge is at or before `end`.
        last = ((end + 1) * self.rate - 1) // self.sample_rate
        edges = (np.arange(self.frames, last + 1) * self.sample_rate) // self.rate - start
        bounds = edges[1:]
        if bounds.size == 0:
            self.partial += float(values.sum(dtype=np.float64))
            sums = np.zeros(0)
        else:
            sums = np.add.reduceat(values[: bounds[-1]], np.r_[0, bounds[:-1]], dtype=np.float64)
            sums[0] += self.partial
            self.partial = float(values[bounds[-1] :].sum(dtype=np.float64))
        self.frames += bounds.size
        self.samples = end
        return sums, np.diff(edges).astype(np.float64)

    def tail(self) -> int:
        """Samples in the frame in progress."""
        return self.samples - (self.frames * self.sample_rate) // self.rate


class TruePeakMeter:
    """Track per-channel true peak (oversampled) and sample peak over a stream of blocks."""

    def __init__(self, sample_rate: int, channels: int) -> None:
        self.interpolator = Interpolator(sample_rate)
        self.channels = channels
        self.history = np.zeros((channels, TAPS_PER_PHASE), dtype=np.float32)
        self.sample_peak = np.zeros(channels)
        self.true_peak = np.zeros(channels)

    def process(self, block: np.ndarray, block_peak: np.ndarray | None = None) -> None:
        """Feed a float32 (channels, n) block; `block_peak` may pass in its already-known |max| per channel."""
        n = block.shape[1]
        if n == 0:
            return
        if block_peak is None:
            block_peak = np.maximum(block.max(axis=1), -block.min(axis=1))
        np.maximum(self.sample_peak, block_peak, out=self.sample_peak)
        # The reported true peak never falls below the sample peak (as libebur128 and ffmpeg do).
        np.maximum(self.true_peak, block_peak, out=self.true_peak)
        extended = np.concatenate([self.history, np.asarray(block, dtype=np.float32)], axis=1)
        for ch in range(self.channels):
            self._channel(extended[ch], ch)
        self.history = extended[:, -TAPS_PER_PHASE:].copy()

    def _channel(self, extended: np.ndarray, ch: int) -> None:
        n = extended.shape[0] - TAPS_PER_PHASE
        seg = TRUE_PEAK_SEGMENT
        count = -(-n // seg)
        padded = np.zeros(count * seg + TAPS_PER_PHASE, dtype=np.float32)
        np.abs(extended, out=padded[: extended.shape[0]])
        # |interpolated| <= bound * max|inputs in its window|, so a segment whose inputs are all
        # quiet cannot beat the running peak and is skipped.
        spans = sliding_window_view(padded, seg + TAPS_PER_PHASE)[::seg][:count]
        limits = spans.max(axis=1) * self.interpolator.bound
        hot = np.flatnonzero(limits > self.true_peak[ch])
        if hot.size == 0:
            return
        # Adjacent hot segments are computed in one product.
        breaks = np.flatnonzero(np.diff(hot) != 1)
        firsts = hot[np.r_[0, breaks + 1]].tolist()
        lasts = hot[np.r_[breaks, hot.size - 1]].tolist()
        peak = float(self.true_peak[ch])
        for first, last in zip(firsts, lasts):
            values = self.interpolator.outputs(extended, first * seg, min((last + 1) * seg, n))
            peak = max(peak, float(values.max()), float(-values.min()))
        self.true_peak[ch] = peak


class LoudnessMeter:
    """Accumulate K-weighted energies from blocks; derive integrated loudness and LRA at the end.

    What it keeps grows by one float per 100 ms (1.7 MB for six hours): the 100 ms sub-block
    powers that gating and LRA need, plus the last 400 ms of 10 ms energies for the momentary
    maximum.
    """

    def __init__(self, sample_rate: int, channels: int, names: tuple[str, ...] = ()) -> None:
        self.sample_rate = sample_rate
        self.channels = channels
        self.sos = k_weighting_sos(sample_rate)
        self.zi = np.zeros((self.sos.shape[0], channels, 2))
        self.weights = channel_weights(channels, names)
        self.energies = FrameEnergies(sample_rate, FINE_FRAMES_PER_SECOND)
        self._powers: list[np.ndarray] = []  # 100 ms sub-block powers, in order
        # 10 ms frames (sums, lengths) of the sub-block in progress, and the last 390 ms of them.
        self._open = (np.zeros(0), np.zeros(0))
        self._recent = (np.zeros(0), np.zeros(0))
        self._momentary_max: float | None = None

    def process(self, block: np.ndarray) -> None:
        """Feed a float32 (channels, n) block."""
        n = block.shape[1]
        if n == 0:
            return
        filtered, self.zi = scipy.signal.sosfilt(self.sos, block, axis=1, zi=self.zi)
        np.multiply(filtered, filtered, out=filtered)
        sums, lengths = self.energies.add(self.weights @ filtered)
        if sums.size:
            self._add_frames(sums, lengths)

    def _add_frames(self, sums: np.ndarray, lengths: np.ndarray) -> None:
        """Fold newly completed 10 ms frames into the momentary maximum and the sub-block powers."""
        width = MOMENTARY_SUB_BLOCKS * FINE_PER_SUB_BLOCK
        recent_sums = np.concatenate([self._recent[0], sums])
        recent_lengths = np.concatenate([self._recent[1], lengths])
        if recent_sums.size >= width:
            energy = np.concatenate([[0.0], np.cumsum(recent_sums)])
            count = np.concatenate([[0.0], np.cumsum(recent_lengths)])
            peak = float(((energy[width:] - energy[:-width]) / (count[width:] - count[:-width])).max())
            self._momentary_max = peak if self._momentary_max is None else max(self._momentary_max, peak)
        self._recent = (recent_sums[-(width - 1) :], recent_lengths[-(width - 1) :])
        # 10 ms frame edges fall exactly on the 100 ms edges ((10k * rate) // 100 == (k * rate) // 10).
        open_sums = np.concatenate([self._open[0], sums])
        open_lengths = np.concatenate([self._open[1], lengths])
        whole = (open_sums.size // FINE_PER_SUB_BLOCK) * FINE_PER_SUB_BLOCK
        if whole:
            self._powers.append(
                open_sums[:whole].reshape(-1, FINE_PER_SUB_BLOCK).sum(axis=1)
                / open_lengths[:whole].reshape(-1, FINE_PER_SUB_BLOCK).sum(axis=1)
            )
        self._open = (open_sums[whole:], open_lengths[whole:])

    def sub_block_powers(self) -> np.ndarray:
        """Return the channel-weighted mean square of each complete 100 ms sub-block."""
        return np.concatenate(self._powers) if self._powers else np.zeros(0)

    def momentary_max_power(self) -> float | None:
        """Largest 400 ms mean square on the 10 ms grid; None if the input is shorter than 400 ms."""
        return self._momentary_max

    def result(self) -> dict[str, float | None]:
        """Integrated loudness, loudness range and maximum momentary/short-term loudness."""
        powers = self.sub_block_powers()
        momentary = _window_powers(powers, MOMENTARY_SUB_BLOCKS)
        short_term = _window_powers(powers, SHORT_TERM_SUB_BLOCKS)
        momentary_max = self.momentary_max_power()
        return {
            "integrated_lufs": _round(integrated_loudness(momentary)),
            "loudness_range_lu": _round(loudness_range(short_term)),
            "momentary_max_lufs": _round(None if momentary_max is None else _lufs(momentary_max)),
            "short_term_max_lufs": _round(_lufs(float(short_term.max())) if short_term.size else None),
        }


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _lufs(power: float) -> float | None:
    return None if power <= 0 else -0.691 + 10 * math.log10(power)


def _window_powers(powers: np.ndarray, width: int) -> np.ndarray:
    """Mean power of every window of `width` consecutive sub-blocks (one per 100 ms hop)."""
    if powers.size < width:
        return np.zeros(0)
    csum = np.concatenate([[0.0], np.cumsum(powers)])
    return (csum[width:] - csum[:-width]) / width


def integrated_loudness(block_powers: np.ndarray) -> float | None:
    """Gated integrated loudness (BS.1770-4) from 400 ms block powers; None if everything is gated."""
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(block_powers)
    above_absolute = levels > ABSOLUTE_GATE_LUFS
    if not above_absolute.any():
        return None
    relative_gate = _lufs(float(block_powers[above_absolute].mean())) + RELATIVE_GATE_LU
    gated = above_absolute & (levels > relative_gate)
    return _lufs(float(block_powers[gated].mean()))


def loudness_range(short_term_powers: np.ndarray) -> float | None:
    """Loudness range (EBU Tech 3342) from 3 s short-term powers at a 10 Hz rate."""
    with np.errstate(divide="ignore"):
        levels = -0.691 + 10 * np.log10(short_term_powers)
    above_absolute = levels > ABSOLUTE_GATE_LUFS
    if not above_absolute.any():
        return None
    relative_gate = _lufs(float(short_term_powers[above_absolute].mean())) + LRA_RELATIVE_GATE_LU
    gated = np.sort(levels[above_absolute & (levels > relative_gate)])
    if gated.size == 0:
        return None
    low = gated[int(round((gated.size - 1) * 0.10))]
    high = gated[int(round((gated.size - 1) * 0.95))]
    return float(high - low)
