"""Bad input gets a 4xx in the one error shape, never a 500."""

from __future__ import annotations

import pytest

from tests.api.conftest import Clients
from tests.api.helpers import assert_error
from tests.factories import Personas


def test_malformed_json_is_a_400(api: Clients) -> None:
    response = api.member.post("/workspaces/acme/runs/", raw='{"agent": "helper",')
    assert_error(response, 400, "bad_request")


def test_a_wrong_type_is_a_422_naming_the_field(api: Clients) -> None:
    body = assert_error(
        api.member.post("/workspaces/acme/runs/", {"agent": 42}), 422, "invalid_input"
    )
    [error] = body["details"]["errors"]
    assert error["loc"][-1] == "agent"
    assert error["type"] == "string_type"


@pytest.mark.parametrize(
    "raw",
    [
        '{"agent": "helper", "input": {"x": 1e999}}',
        '{"agent": "helper", "input": {"x": NaN}}',
        '{"agent": "helper", "input": {"x": "nul \\u0000 char"}}',
        '{"agent": "helper", "input": {"nul \\u0000 key": 1}}',
        '{"agent": "help\\u0000er"}',
        "[1, 2, 3]",
        '"just a string"',
    ],
)
def test_values_the_database_cannot_hold_are_a_422(api: Clients, raw: str) -> None:
    assert_error(api.member.post("/workspaces/acme/runs/", raw=raw), 422, "invalid_input")


def test_deeply_nested_json_is_a_4xx(api: Clients) -> None:
    raw = '{"agent": "helper", "input": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = api.member.post("/workspaces/acme/runs/", raw=raw)
    assert response.status_code in (400, 422)
    assert set(response.json()) == {"code", "message", "details"}


def test_a_huge_integer_in_a_body_stays_json(api: Clients) -> None:
    big = "1" + "0" * 60
    response = api.member.post(
        "/workspaces/acme/runs/", raw=f'{{"agent": "helper", "input": {{"n": {big}}}}}'
    )
    assert response.status_code == 201
    assert response.json()["input"] == {"n": int(big)}


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/workspaces/acme/runs/", {"limit": "10" + "0" * 30}),
        ("/workspaces/acme/runs/", {"limit": "0"}),
        ("/workspaces/acme/runs/", {"limit": "ten"}),
        ("/workspaces/acme/runs/", {"status": "SLEEPING"}),
        ("/workspaces/acme/runs/", {"created_after": "yesterday"}),
        ("/workspaces/acme/runs/", {"cursor": "not-a-cursor"}),
        ("/workspaces/acme/runs/", {"cursor": "WyJub3QiLCAiYSBjdXJzb3IiXQ"}),
        ("/workspaces/acme/runs/", {"agent": "bad slug!"}),
    ],
)
def test_bad_query_parameters_are_a_422(api: Clients, path: str, params: dict[str, str]) -> None:
    assert_error(api.member.get(path, params), 422, "invalid_input")


@pytest.mark.parametrize("since", ["9" * 40, "-1", str(2**63)])
def test_out_of_range_seq_is_a_422(api: Clients, personas: Personas, since: str) -> None:
    run = personas.run()
    assert_error(
        api.member.get(f"/runs/{run.id}/events/", {"since_seq": since}), 422, "invalid_input"
    )


@pytest.mark.parametrize("run_id", ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"])
def test_a_bad_uuid_is_a_422(api: Clients, run_id: str) -> None:
    assert_error(api.member.get(f"/runs/{run_id}/"), 422, "invalid_input")


@pytest.mark.parametrize("ref", ["acme%00", "a" * 65, "sp%20ace"])
def test_a_bad_workspace_reference_is_a_422(api: Clients, ref: str) -> None:
    assert_error(api.member.get(f"/workspaces/{ref}/agents/"), 422, "invalid_input")


def test_an_unknown_path_is_a_json_404(api: Clients) -> None:
    assert_error(api.member.get("/no/such/thing/"), 404, "not_found")


def test_a_bad_idempotency_key_is_a_422(api: Clients) -> None:
    response = api.member.post(
        "/workspaces/acme/runs/", {"agent": "helper"}, **{"Idempotency-Key": "x" * 101}
    )
    assert_error(response, 422, "invalid_input")
