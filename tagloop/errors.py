"""Domain errors. Each carries a stable ``code`` a person or a client can act on.

The API maps them to HTTP statuses; workers map them to retry (TransientError) or to a
``failed`` status with the code (InvalidMedia).
"""

from __future__ import annotations


class TagloopError(Exception):
    """Base class: ``code`` is machine-readable, the message is for people."""

    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class NotFound(TagloopError):
    code = "not_found"
    http_status = 404


class Conflict(TagloopError):
    code = "conflict"
    http_status = 409


class Forbidden(TagloopError):
    code = "forbidden"
    http_status = 403


class InvalidInput(TagloopError):
    code = "invalid_input"
    http_status = 422


class PayloadTooLarge(TagloopError):
    code = "payload_too_large"
    http_status = 413


class InvalidMedia(TagloopError):
    """The bytes are not a video we can use: not retried, the video ends ``failed``."""

    code = "invalid_media"
    http_status = 422


class MissingWeights(TagloopError):
    """A local weights file a component needs is not there (nothing is fetched from a hub)."""

    code = "missing_weights"
    http_status = 500


class TransientError(TagloopError):
    """Worth retrying: a lost connection, a busy database, a blob store hiccup."""

    code = "transient"
    http_status = 503
