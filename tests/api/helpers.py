"""An API client for tests: Django's test client with a bearer token per persona."""

from __future__ import annotations

import json
from typing import Any

from django.test import Client

from agentmaestro.accounts.services import api_token_create

API = "/api/v1"


class ApiClient:
    """Calls the API as one user, with ``Authorization: Bearer`` (or with no token)."""

    def __init__(self, user: Any | None = None, token: str | None = None) -> None:
        if user is not None and token is None:
            _, token = api_token_create(user=user, name="tests")
        self.token = token
        self.client = Client()

    def _headers(self, extra: dict[str, str] | None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**headers, **(extra or {})}

    def get(self, path: str, params: dict[str, Any] | None = None, **headers: str) -> Any:
        return self.client.get(API + path, params or {}, headers=self._headers(headers))

    def post(self, path: str, body: Any = None, *, raw: str | None = None, **headers: str) -> Any:
        data = raw if raw is not None else ("" if body is None else json.dumps(body))
        return self.client.post(
            API + path, data, content_type="application/json", headers=self._headers(headers)
        )

    def patch(self, path: str, body: Any, **headers: str) -> Any:
        return self.client.patch(
            API + path,
            json.dumps(body),
            content_type="application/json",
            headers=self._headers(headers),
        )

    def delete(self, path: str, **headers: str) -> Any:
        return self.client.delete(API + path, headers=self._headers(headers))


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    """The response is an error of the API's one shape, with this status and code."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert set(body) == {"code", "message", "details"}, body
    assert body["code"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], dict)
    return body
