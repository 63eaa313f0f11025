"""Worker failures, each with the error type recorded and the documented exit code."""

from __future__ import annotations


class WorkerError(Exception):
    """Base class: a failure with a message a person can act on."""

    error_type = "INTERNAL"
    exit_code = 5

    def __init__(self, message: str, error_type: str | None = None) -> None:
        super().__init__(message)
        if error_type:
            self.error_type = error_type


class InvalidInput(WorkerError):
    """The spec, the clip or a parameter cannot be used (exit 2)."""

    error_type = "INVALID_INPUT"
    exit_code = 2


class Stalled(WorkerError):
    """No frame progressed for `stall_seconds` (exit 3)."""

    error_type = "STALLED"
    exit_code = 3


class CodecFailure(WorkerError):
    """The encoder or decoder failed or produced unusable output (exit 4)."""

    error_type = "CODEC_ERROR"
    exit_code = 4


class SandboxViolation(WorkerError):
    """Custom codec code broke the sandbox's rules or limits (exit 6)."""

    error_type = "SANDBOX_VIOLATION"
    exit_code = 6


class SandboxUnavailable(WorkerError):
    """A layer that untrusted code needs cannot be applied on this host (exit 7)."""

    error_type = "SANDBOX_UNAVAILABLE"
    exit_code = 7


class StorageFailure(WorkerError):
    """A write was refused: a full disk, a quota or a file-size limit (exit 8). Not the input's fault."""

    error_type = "STORAGE"
    exit_code = 8
