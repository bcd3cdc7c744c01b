"""The REST API under ``/api/v1/``: one NinjaAPI, its authentication, its one error handler.

Each domain keeps its endpoints in its own ``api.py``; this module mounts them. Every
error leaves as ``{"code", "message", "details"}`` (docs/api.md lists the codes):
our :class:`AppError`, ninja's validation and HTTP errors, Django's 404, and anything
unexpected (a 500 with code ``internal_error``, logged with its traceback).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.exceptions import SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.security import HttpBearer, SessionAuth

from agentmaestro.accounts.api import router as accounts_router
from agentmaestro.accounts.services import api_token_authenticate
from agentmaestro.agents.api import router as agents_router
from agentmaestro.common.errors import AppError
from agentmaestro.runs.api import router as runs_router
from agentmaestro.tools.api import router as tools_router
from agentmaestro.workspaces.api import router as workspaces_router

logger = logging.getLogger(__name__)


class InvalidToken(AppError):
    code = "invalid_token"
    http_status = 401


class CsrfFailed(AppError):
    code = "csrf_failed"
    http_status = 403


class BearerToken(HttpBearer):
    """``Authorization: Bearer <token>``: an API token (accounts.ApiToken)."""

    def authenticate(self, request: HttpRequest, token: str) -> AbstractBaseUser:
        user = api_token_authenticate(token.strip())
        if user is None:
            # Raised, not returned as None: a wrong token is a 401 even with a session.
            raise InvalidToken("The bearer token is unknown, revoked, or its user inactive.")
        return user


class BrowserSession(SessionAuth):
    """The console's session cookie, with Django's CSRF check on unsafe methods.

    A request without a session cookie is simply not authenticated this way (a 401), not a
    CSRF failure: programs that forgot their token should hear that they forgot it.
    """

    def _get_key(self, request: HttpRequest) -> str | None:
        if settings.SESSION_COOKIE_NAME not in request.COOKIES:
            return None
        try:
            return super()._get_key(request)
        except HttpError:
            raise CsrfFailed(
                "CSRF check failed: send the csrftoken cookie's value in X-CSRFToken."
            ) from None


api = NinjaAPI(
    title="AgentMaestro API",
    version="1",
    description="Workspaces, agents, tools, runs and their events. Guide: docs/api.md.",
    auth=[BearerToken(), BrowserSession()],
    urls_namespace="api-v1",
)


def _error(
    request: HttpRequest, status: int, code: str, message: str, details: dict[str, Any] | None
) -> HttpResponse:
    response = api.create_response(
        request, {"code": code, "message": message, "details": details or {}}, status=status
    )
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="agentmaestro"'
    return response


@api.exception_handler(AppError)
def _app_error(request: HttpRequest, exc: AppError) -> HttpResponse:
    return _error(request, exc.http_status, exc.code, exc.message, exc.details)


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    errors = [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type")}
        for error in exc.errors
    ]
    return _error(request, 422, "invalid_input", "The request is not valid.", {"errors": errors})


_HTTP_CODES = {400: "bad_request", 401: "not_authenticated", 403: "forbidden", 404: "not_found"}


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc, AuthenticationError):
        message = "Authentication required: send Authorization: Bearer <token>, or log in."
    else:
        message = exc.message
    code = _HTTP_CODES.get(exc.status_code, "http_error")
    return _error(request, exc.status_code, code, message, None)


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", "Not found.", None)


@api.exception_handler(SuspiciousOperation)
def _suspicious(request: HttpRequest, exc: SuspiciousOperation) -> HttpResponse:
    # e.g. a body above DATA_UPLOAD_MAX_MEMORY_SIZE.
    return _error(request, 400, "bad_request", str(exc) or "Bad request.", None)


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    logger.error("unhandled error in %s %s", request.method, request.path, exc_info=exc)
    return _error(request, 500, "internal_error", "Internal server error.", None)


def not_found_view(request: HttpRequest, rest: str = "") -> HttpResponse:
    """Paths under /api/v1/ that match no endpoint: the same JSON shape as any error."""
    return _error(request, 404, "not_found", "No such endpoint.", {"path": request.path})


api.add_router("", accounts_router)
api.add_router("", workspaces_router)
api.add_router("", agents_router)
api.add_router("", tools_router)
api.add_router("", runs_router)
