from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.api.helpers import ApiClient
from tests.factories import Personas


@dataclass
class Clients:
    owner: ApiClient
    admin: ApiClient
    member: ApiClient
    viewer: ApiClient
    outsider: ApiClient
    anonymous: ApiClient

    def by_role(self, role: str) -> ApiClient:
        client: ApiClient = getattr(self, role)
        return client


@pytest.fixture
def api(personas: Personas) -> Clients:
    """One API client per persona, each with its own bearer token, and one with none."""
    return Clients(
        owner=ApiClient(personas.owner),
        admin=ApiClient(personas.admin),
        member=ApiClient(personas.member),
        viewer=ApiClient(personas.viewer),
        outsider=ApiClient(personas.outsider),
        anonymous=ApiClient(),
    )
