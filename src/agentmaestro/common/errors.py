"""The application's one error type.

Services raise :class:`AppError` (or a subclass); the HTTP handler and the WebSocket
consumers turn it into the same JSON shape: ``{"code", "message", "details"}``.
``code`` is stable and documented; ``message`` is for people.
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 400

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(AppError):
    code = "not_found"
    http_status = 404


class PermissionDenied(AppError):
    code = "forbidden"
    http_status = 403


class Conflict(AppError):
    code = "conflict"
    http_status = 409


class ValidationFailed(AppError):
    code = "invalid"
    http_status = 400
