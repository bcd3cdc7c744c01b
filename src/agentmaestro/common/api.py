"""Pieces every domain's ``api.py`` shares: the error schema, input types, who is asking.

The NinjaAPI instance, its authentication and its one error handler live in
``agentmaestro/api.py``; the endpoints live in each app's ``api.py``.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Annotated, Any, cast

from django.contrib.auth.models import AbstractBaseUser
from django.http import HttpRequest, HttpResponse
from ninja import Schema
from ninja.params import functions as param
from pydantic import AfterValidator, Field, PlainSerializer, StringConstraints, WithJsonSchema

from agentmaestro.common.errors import AppError, PermissionDenied
from agentmaestro.common.time import iso
from agentmaestro.workspaces.models import Role

# A timestamp in a response: the one textual form events and snapshots use too
# (common.time.iso: ISO 8601 with "+00:00", to the microsecond), not the renderer's own
# (milliseconds, "Z").
Timestamp = Annotated[
    datetime,
    PlainSerializer(iso, return_type=str),
    WithJsonSchema({"type": "string", "format": "date-time"}),
]


class ErrorOut(Schema):
    """Every error the API answers: a stable ``code``, a message for people, details."""

    code: str
    message: str
    details: dict[str, Any]


# The error statuses an operation may answer, for its OpenAPI description.
READ_ERRORS: dict[int, type[Schema]] = {401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}
WRITE_ERRORS: dict[int, type[Schema]] = {**READ_ERRORS, 400: ErrorOut, 409: ErrorOut}


class InvalidInput(AppError):
    code = "invalid_input"
    http_status = 422


def _no_nul(value: str) -> str:
    # PostgreSQL text and jsonb cannot hold U+0000; refuse it here instead of failing there.
    if "\x00" in value:
        raise ValueError("must not contain the NUL character")
    return value


def check_json_value(value: Any, path: str = "$") -> Any:
    """Refuse what JSON in PostgreSQL cannot store: NaN, infinities, NUL characters.

    Python's ``json`` reads ``1e999`` as infinity and ``NaN`` literally; jsonb rejects both.
    """
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path}: numbers must be finite")
    if isinstance(value, str):
        _no_nul(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_nul(key)
            check_json_value(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, f"{path}[{index}]")
    return value


Text = Annotated[str, AfterValidator(_no_nul)]
JsonValue = Annotated[Any, AfterValidator(check_json_value)]
JsonObject = Annotated[dict[str, Any], AfterValidator(check_json_value)]
Slug = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# A workspace or an agent named in a path or a filter: its UUID or its slug.
Ref = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
# Bounds for integers that reach the database (its bigint), so a huge number is a 422.
BIG_INT_MAX = 2**63 - 1
SeqNumber = Annotated[int, Field(ge=0, le=BIG_INT_MAX)]

# Path parameters.
WorkspacePath = Annotated[Ref, param.Path(description="The workspace's id or slug.")]
AgentPath = Annotated[Ref, param.Path(description="The agent's id or slug.")]
IntIdPath = Annotated[int, param.Path(ge=1, le=BIG_INT_MAX)]


def request_user(request: HttpRequest) -> AbstractBaseUser:
    """The authenticated user (every operation requires authentication)."""
    return cast(AbstractBaseUser, request.auth)  # type: ignore[attr-defined]


def require_role(role: Role, minimum: Role, action: str) -> None:
    if not Role.at_least(role, minimum):
        raise PermissionDenied(
            f"{action} needs the {minimum.value} role; you are {role.value}.",
            details={"required_role": minimum.value, "role": role.value},
        )


def prevalidated_json(data: Any, status: int = 200) -> HttpResponse:
    """A response whose body needs no output validation: it is built from rows that were
    validated on the way in (event payloads against their contracts, snapshots from the
    same dict builders the tests compare with ``fold``).

    Measured (bench/api.py): validating a 500-event page against ``EventListOut`` took
    more time than reading it; the schema still documents the shape, and the fuzz test
    checks every response against it.
    """
    return HttpResponse(
        json.dumps(data, separators=(",", ":"), ensure_ascii=False),
        status=status,
        content_type="application/json; charset=utf-8",
    )
