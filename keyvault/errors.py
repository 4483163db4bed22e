"""The exceptions keyvault raises. Messages are written for the person at the terminal and
never contain a key value: only hints, fingerprints, paths and source URIs."""

from __future__ import annotations


class KeyvaultError(Exception):
    """Base of every error keyvault reports. The CLI prints `str(error)` on one line, exit 2."""

    exit_code = 2


class KeyFormatError(KeyvaultError, ValueError):
    """A text is not a usable key of the expected family. Names the defect and position."""


class SourceError(KeyvaultError):
    """A source URI is malformed, or its backend cannot be loaded."""


class BackendError(KeyvaultError):
    """A backend failed: names the source, the backend's reason and the fix."""


class NotFoundError(BackendError):
    """The secret (or the asked-for version or field) does not exist."""


class PermissionDeniedError(BackendError):
    """The backend refused the caller's identity."""


class ConflictError(BackendError):
    """A compare-and-swap failed: someone else changed the secret since it was read."""


class UnsupportedOperation(BackendError):
    """The backend cannot do this step (e.g. writing to the process environment)."""


class ApiError(KeyvaultError):
    """The Anthropic API refused or failed a request. Carries what identifies the failure
    (HTTP status, `error.type`, `request-id`), never the key."""

    def __init__(self, message: str, *, status: int | None = None, error_type: str | None = None,
                 request_id: str | None = None, error_code: str | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.request_id = request_id
        self.error_code = error_code
        self.retry_after = retry_after


class KeyMatchError(ApiError):
    """A key could not be matched to exactly one Admin API record by its hint."""

    def __init__(self, message: str, candidates: list | None = None) -> None:  # type: ignore[type-arg]
        super().__init__(message)
        self.candidates = list(candidates or [])


class RotationInProgress(KeyvaultError):
    """Another rotator holds the journal of this secret: stop cleanly, change nothing."""

    exit_code = 3


class RolledBack(KeyvaultError):
    """The new key failed deploy verification; every target was put back on the old key."""

    exit_code = 4
