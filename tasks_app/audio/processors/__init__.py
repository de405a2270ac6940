"""Built-in processors; importing this package registers them."""

from tasks_app.audio.processors import analyze, normalize

__all__ = ["analyze", "normalize"]
