"""Exceptions raised by the audio pipeline."""


class AudioError(Exception):
    """The input file is not usable audio; `code` says why in one machine-readable word."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        # Jobs run in a child process and their errors are pickled back to the worker.
        return (type(self), (self.code, self.message))


class Cancelled(Exception):
    """Raised by a progress callback to stop processing as soon as possible."""


class OptionsError(Exception):
    """A processor option is unknown or invalid; `field` names the option."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.field, self.message))
