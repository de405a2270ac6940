"""The output formats: file extensions, media types and default bit rates (no audio stack needed)."""

EXTENSIONS: dict[str, str] = {"wav": "wav", "flac": "flac", "mp3": "mp3", "opus": "opus", "m4a": "m4a"}
DEFAULT_BIT_RATE_KBPS: dict[str, int] = {"mp3": 192, "opus": 128, "m4a": 192}
# fmt -> the media type a file of that format is served as.
MEDIA_TYPES: dict[str, str] = {
    "wav": "audio/wav",
    "flac": "audio/flac",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg",
    "m4a": "audio/mp4",
}
