"""References by endpoint key (Kong's `service.name=`), /routes/{r}/service writes, and database
constraints that fire past the checks answered 409/400 in Kong's shape, never 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tollway.store.entities.dao import Dao


def test_a_reference_by_name_is_resolved_in_json_and_forms(api: httpx.Client) -> None:
    service = api.post("/services", json={"name": "s", "host": "h"}).json()
    by_json = api.post("/routes", json={"paths": ["/a"], "service": {"name": "s"}})
    assert by_json.status_code == 201 and by_json.json()["service"] == {"id": service["id"]}
    by_form = api.post("/routes", data={"paths[]": "/b", "service.name": "s"})
    assert by_form.status_code == 201 and by_form.json()["service"] == {"id": service["id"]}
    by_id = api.post("/routes", data={"paths[]": "/c", "service.id": service["id"]})
    assert by_id.status_code == 201 and by_id.json()["service"] == {"id": service["id"]}
    consumer = api.post("/consumers", json={"username": "poppy"}).json()
    credential = api.post("/key-auths", json={"consumer": {"username": "poppy"}})
    assert credential.status_code == 201 and credential.json()["consumer"] == {"id": consumer["id"]}


def test_an_unknown_name_is_kongs_foreign_keys_unresolved(api: httpx.Client) -> None:
    answer = api.post("/routes", json={"methods": ["GET"], "service": {"name": "non-existing"}})
    assert answer.status_code == 400
    problem = "the foreign key cannot be resolved with '{name=\"non-existing\"}' for an existing 'services' entity"
    assert answer.json() == {"code": 13, "name": "foreign keys unresolved",
                             "message": f"foreign key unresolved (service.name: {problem})",
                             "fields": {"service": {"name": problem}}}


def test_route_service_can_be_replaced_but_not_deleted(api: httpx.Client) -> None:
    service = api.post("/services", json={"name": "s", "host": "h"}).json()
    api.post("/routes", json={"name": "r", "paths": ["/a"], "service": {"id": service["id"]}})
    replaced = api.put("/routes/r/service", json={"host": "other", "name": "s"})
    assert replaced.status_code == 200
    assert replaced.json()["id"] == service["id"] and replaced.json()["host"] == "other"
    refused = api.delete("/routes/r/service")  # Kong: unlink it with a PATCH of the route
    assert refused.status_code == 405 and refused.json() == {"message": "Method not allowed"}
    assert api.get("/services/s").status_code == 200
    api.patch("/routes/r", json={"service": None})
    assert api.get("/routes/r/service").status_code == 404
    assert api.put("/routes/r/service", json={"host": "h"}).status_code == 404
    assert api.delete("/routes/r/service").status_code == 404


@pytest.fixture
def unchecked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-code checks switched off: only the database's constraints are left."""
    async def nothing(*_args: Any, **_kwargs: Any) -> None:
        return None

    monkeypatch.setattr(Dao, "check_unique", nothing)
    monkeypatch.setattr(Dao, "check_foreign", nothing)
    monkeypatch.setattr(Dao, "referencing", nothing)


def test_constraints_past_the_checks_are_409_and_400(api: httpx.Client, unchecked: None) -> None:
    assert api.post("/consumers", json={"username": "x"}).status_code == 201
    taken = api.post("/consumers", json={"username": "x"})
    assert taken.status_code == 409
    assert taken.json() == {"code": 5, "name": "unique constraint violation",
                            "message": "UNIQUE violation detected on '{username=\"x\"}'", "fields": {"username": "x"}}
    api.post("/consumers/x/key-auth", json={"key": "k"})
    assert api.post("/consumers/x/key-auth", json={"key": "k"}).status_code == 409
    missing = "00000000-0000-0000-0000-000000000001"
    dangling = api.post("/routes", json={"paths": ["/a"], "service": {"id": missing}})
    assert dangling.status_code == 400 and dangling.json()["code"] == 4
    assert dangling.json()["fields"] == {"service": {"id": missing}}
    service = api.post("/services", json={"name": "s", "host": "h"}).json()
    api.post("/routes", json={"paths": ["/a"], "service": {"id": service["id"]}})
    held = api.delete("/services/s")
    assert held.status_code == 400 and held.json()["fields"] == {"@referenced_by": "routes"}
    plugin = {"name": "key-auth", "service": {"id": service["id"]}}
    assert api.post("/plugins", json=plugin).status_code == 201
    twice = api.post("/plugins", json=plugin)
    assert twice.status_code == 409 and twice.json()["fields"]["name"] == "key-auth"


def test_values_a_column_cannot_hold_are_schema_violations(api: httpx.Client) -> None:
    long_name = api.post("/services", json={"name": "n" * 300, "host": "h"})
    assert long_name.status_code == 400 and long_name.json()["fields"] == {"name": "length must be at most 255"}
    huge = api.post("/routes", json={"paths": ["/a"], "regex_priority": 1 << 40})
    assert huge.status_code == 400 and "regex_priority" in huge.json()["fields"]
    nul = api.post("/consumers", json={"username": "a\u0000b"})
    assert nul.status_code == 400 and "NUL" in nul.json()["fields"]["username"]
    assert api.get("/consumers/a%00b").status_code == 404
