"""Worker failures: each names its error type, and takes its exit code from the one table in error_types."""

from __future__ import annotations

from typing import ClassVar

from codeclab.experiments.error_types import WORKER_FAILURES, WorkerErrorType


class WorkerError(Exception):
    """Base class: a failure with a message a person can act on."""

    error_type: ClassVar[WorkerErrorType] = WorkerErrorType.INTERNAL
    exit_code: ClassVar[int] = WORKER_FAILURES[WorkerErrorType.INTERNAL].exit_code

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls.exit_code = WORKER_FAILURES[cls.error_type].exit_code


class InvalidInput(WorkerError):
    """The spec, the clip or a parameter cannot be used (exit 2)."""

    error_type = WorkerErrorType.INVALID_INPUT


class InvalidSpec(InvalidInput):
    """The spec, or a codec's parameters or code, cannot be used (exit 2)."""

    error_type = WorkerErrorType.INVALID_SPEC


class InvalidSource(InvalidInput):
    """The clip cannot be read or is not a video this worker can use (exit 2)."""

    error_type = WorkerErrorType.INVALID_SOURCE


class Stalled(WorkerError):
    """No frame progressed for `stall_seconds` (exit 3)."""

    error_type = WorkerErrorType.STALLED


class CodecFailure(WorkerError):
    """The encoder or decoder failed or produced unusable output (exit 4)."""

    error_type = WorkerErrorType.CODEC_ERROR


class SandboxViolation(WorkerError):
    """Custom codec code broke the sandbox's rules or limits (exit 6)."""

    error_type = WorkerErrorType.SANDBOX_VIOLATION


class SandboxUnavailable(WorkerError):
    """A layer that untrusted code needs cannot be applied on this host (exit 7)."""

    error_type = WorkerErrorType.SANDBOX_UNAVAILABLE


class StorageFailure(WorkerError):
    """A write was refused: a full disk, a quota or a file-size limit (exit 8). Not the input's fault."""

    error_type = WorkerErrorType.STORAGE
