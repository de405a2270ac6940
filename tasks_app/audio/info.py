"""What `probe` finds out about an audio file (no audio library needed to hold or build one)."""

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class AudioInfo:
    """Facts about an audio file, as found by `probe`."""

    duration: float
    sample_rate: int
    channels: int
    format: str
    codec: str
    bit_rate: int | None
    size: int
    layout: str = ""
    channel_names: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        """Return the facts as a JSON-serialisable dict."""
        return asdict(self)
