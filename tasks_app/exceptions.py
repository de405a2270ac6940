"""Domain errors; the API's exception handler maps each to a status and a JSON body."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every error the services raise on purpose."""

    status_code = 400
    default_code = "invalid"
    default_detail = "Invalid request."

    def __init__(self, message: str | None = None, *, field: str | None = None, code: str | None = None) -> None:
        self.message = message or self.default_detail
        self.field = field
        self.code = code or self.default_code
        super().__init__(self.message)


class InvalidInput(DomainError):
    """A request field is missing or wrong."""


class InvalidAudio(DomainError):
    """An upload is not usable audio (empty, truncated, not audio, unsupported, too large)."""

    default_code = "invalid_audio"
    default_detail = "The file is not usable audio."


class AudioTooLong(InvalidAudio):
    """The audio would decode to more than the duration or sample limits allow."""

    default_code = "too_long"
    default_detail = "The audio is longer than the limit."


class UploadTooLarge(DomainError):
    """A request body or uploaded file is larger than the upload limit."""

    status_code = 413
    default_code = "too_large"
    default_detail = "The upload is larger than the limit."


class QuotaExceeded(DomainError):
    """Storing this would pass the user's storage quota."""

    status_code = 413
    default_code = "quota_exceeded"
    default_detail = "Your storage quota is used up."


class Unauthenticated(DomainError):
    """Missing, invalid or expired credentials (on a stream, where DRF does not answer)."""

    status_code = 401
    default_code = "not_authenticated"
    default_detail = "Authentication credentials were not provided."


class IllegalTransition(DomainError):
    """The task's state does not allow the requested change."""

    status_code = 409
    default_code = "illegal_transition"
    default_detail = "The task's state does not allow this."


class Conflict(DomainError):
    """The object is in use and cannot be changed now."""

    status_code = 409
    default_code = "conflict"
    default_detail = "The object is in use."


class NotFound(DomainError):
    """Unknown object, or one the caller does not own."""

    status_code = 404
    default_code = "not_found"
    default_detail = "Not found."


class TooManyStreams(DomainError):
    """The user already has as many open streams as allowed."""

    status_code = 429
    default_code = "too_many_streams"
    default_detail = "Too many open streams for this user."


class MethodNotAllowed(DomainError):
    """The endpoint does not answer this HTTP method (on a stream, where DRF does not answer)."""

    status_code = 405
    default_code = "method_not_allowed"
    default_detail = "Method not allowed."


class InternalError(DomainError):
    """Something failed that should not have; the response says so instead of hanging."""

    status_code = 500
    default_code = "internal_error"
    default_detail = "The stream could not be opened because of a server error."


class TaskCrashed(DomainError):
    """A job failed for a reason of ours, not of the audio; the details go to the log only."""

    status_code = 500
    default_code = "internal_error"
    default_detail = "The task failed because of an internal error; it was logged and can be retried."


class NotReady(DomainError):
    """The task has not completed, so its artifacts do not exist yet."""

    status_code = 409
    default_code = "not_ready"
    default_detail = "The task has not completed yet."
