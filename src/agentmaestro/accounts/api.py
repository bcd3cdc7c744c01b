"""``/api/v1/me/`` and ``/api/v1/tokens/``: who am I, and my API tokens."""

from __future__ import annotations

from django.http import HttpRequest
from ninja import Router, Schema, Status
from pydantic import Field

from agentmaestro.accounts.models import ApiToken
from agentmaestro.accounts.services import api_token_create, api_token_list, api_token_revoke
from agentmaestro.common.api import (
    READ_ERRORS,
    WRITE_ERRORS,
    IntIdPath,
    Text,
    Timestamp,
    request_user,
)

router = Router(tags=["me"])


class MeOut(Schema):
    id: int
    username: str


class TokenCreateIn(Schema):
    name: Text = Field(default="", max_length=100)


class TokenOut(Schema):
    id: int
    name: str
    prefix: str = Field(description="The token's first characters, to recognise it.")
    created_at: Timestamp
    last_used_at: Timestamp | None
    revoked_at: Timestamp | None


class TokenCreatedOut(TokenOut):
    token: str = Field(description="The token itself. It is shown this once and never again.")


class TokenListOut(Schema):
    items: list[TokenOut]


def _token_out(token: ApiToken) -> TokenOut:
    return TokenOut.model_validate(token, from_attributes=True)


@router.get("/me/", response={200: MeOut, **READ_ERRORS})
def me(request: HttpRequest) -> MeOut:
    """The authenticated user."""
    user = request_user(request)
    return MeOut(id=user.pk, username=user.get_username())


@router.post("/tokens/", response={201: TokenCreatedOut, **WRITE_ERRORS}, tags=["tokens"])
def token_create(request: HttpRequest, body: TokenCreateIn) -> Status[TokenCreatedOut]:
    """Create an API token for yourself. The response holds the token, once."""
    token, raw = api_token_create(user=request_user(request), name=body.name)
    out = TokenCreatedOut(**_token_out(token).model_dump(), token=raw)
    return Status(201, out)


@router.get("/tokens/", response={200: TokenListOut, **READ_ERRORS}, tags=["tokens"])
def token_list(request: HttpRequest) -> TokenListOut:
    """Your tokens, newest first, revoked ones included; never the secrets."""
    tokens = api_token_list(user=request_user(request))
    return TokenListOut(items=[_token_out(token) for token in tokens])


@router.delete("/tokens/{token_id}/", response={204: None, **WRITE_ERRORS}, tags=["tokens"])
def token_revoke(request: HttpRequest, token_id: IntIdPath) -> Status[None]:
    """Revoke one of your tokens: it stops working at once."""
    api_token_revoke(user=request_user(request), token_id=token_id)
    return Status(204, None)
