"""GET /openapi.json stays true: every route of the app is in it, and every documented operation
is served (answers something other than 404 or 405 on entities that exist)."""

from __future__ import annotations

import re
import time

import httpx
from starlette.routing import Route

from tollway.admin.app import create_app
from tollway.billing import invoice_run
from tollway.config import Settings
from tollway.store.db import Database, run_with_database

METHODS = ("get", "post", "put", "patch", "delete")


def _app_operations(settings: Settings) -> set[tuple[str, str]]:
    app = create_app(settings, Database.from_settings(settings))
    found = set()
    for route in app.routes:
        assert isinstance(route, Route)
        if not route.include_in_schema:
            continue  # the dashboard's web pages are not JSON endpoints
        for method in (route.methods or {"GET"}) - {"HEAD"}:
            found.add((route.path.rstrip("/") or "/", method.lower()))
    return found


def test_every_route_of_the_app_is_documented(api: httpx.Client, settings: Settings) -> None:
    document = api.get("/openapi.json").json()
    assert document["openapi"].startswith("3.")
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops if method in METHODS}
    assert _app_operations(settings) <= documented
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert op["responses"], (path, method)
            params = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert params == set(re.findall(r"{(\w+)}", path)), (path, method)


def test_schemas_follow_the_entity_fields(api: httpx.Client) -> None:
    schemas = api.get("/openapi.json").json()["components"]["schemas"]
    service = schemas["Services"]["properties"]
    assert service["port"] == {"type": "integer", "minimum": 0, "maximum": 65535, "default": 80}
    assert service["protocol"]["enum"] == ["http", "https"]
    assert schemas["Routes"]["properties"]["service"]["nullable"] is True
    assert "service.id" in schemas["RoutesForm"]["properties"]
    assert schemas["Error"]["required"] == ["message"]
    assert "sha256" in schemas["KeyauthCredentials"]["properties"]["key"]["description"]
    assert schemas["PluginsInput"]["properties"]["name"]["enum"] == ["key-auth", "acl", "rate-limiting", "prometheus",
                                                                     "billable"]


def _seed(api: httpx.Client, n: int = 0) -> dict[str, str]:
    """One entity of each kind, every reference set: each documented path then names something."""
    service = api.post("/services", json={"name": f"s{n}", "host": "example.com"}).json()
    route = api.post("/routes", json={"name": f"r{n}", "paths": ["/r"], "service": {"id": service["id"]}}).json()
    consumer = api.post("/consumers", json={"username": f"c{n}"}).json()
    assert api.post(f"/consumers/c{n}/key-auth", json={"key": f"k{n}"}).status_code == 201
    acl = api.post(f"/consumers/c{n}/acls", json={"group": f"g{n}"}).json()
    scoped = api.post("/plugins", json={"name": "key-auth", "service": {"id": service["id"]},
                                        "route": {"id": route["id"]}}).json()
    billed = api.post("/plugins", json={"name": "billable", "consumer": {"id": consumer["id"]}}).json()
    billing = _seed_billing(api, n, service["id"], route["id"])
    portal_token = api.post(f"/consumers/c{n}/portal_tokens", json={}).json()
    billing["portal_tokens"] = portal_token["id"]
    return {"services": f"s{n}", "routes": f"r{n}", "consumers": f"c{n}", "key-auth": f"k{n}", "key-auths": f"k{n}",
            "plugins": scoped["id"], "schemas/plugins": "key-auth", "billed": billed["id"],
            "acls": acl["id"], "tags": "t", **billing}


def _seed_billing(api: httpx.Client, n: int, service_id: str, route_id: str) -> dict[str, str]:
    """A meter, a plan with a charge and an entitlement, a subscription of consumer c{n} to it; and, for the
    paths that follow a meter's service and route or a subscription's next plan (which PUT {} or a cancel on
    the first ones would clear), a second meter and consumer that have them."""
    assert api.post("/meters", json={"name": f"m{n}"}).status_code == 201
    assert api.post("/meters", json={"name": f"m{n}-filtered", "service": {"id": service_id},
                                     "route": {"id": route_id}}).status_code == 201
    assert api.post("/plans", json={"name": f"p{n}", "currency": "USD"}).status_code == 201
    charge = api.post(f"/plans/p{n}/charges", json={"meter": {"name": f"m{n}"}, "model": "standard",
                                                    "unit_price": "0.01"}).json()
    entitlement = api.post(f"/plans/p{n}/entitlements", json={"meter": {"name": f"m{n}"}, "limit": 10,
                                                              "period": "day"}).json()
    subscription = api.post(f"/consumers/c{n}/subscriptions", json={"plan": {"name": f"p{n}"}}).json()
    assert api.post("/consumers", json={"username": f"c{n}-scheduled"}).status_code == 201
    scheduled = api.post(f"/consumers/c{n}-scheduled/subscriptions", json={"plan": {"name": f"p{n}"}}).json()
    assert api.patch(f"/subscriptions/{scheduled['id']}", json={"next_plan": {"name": f"p{n}"}}).status_code == 200
    return {"meters": f"m{n}", "plans": f"p{n}", "charges": charge["id"], "entitlements": entitlement["id"],
            "subscriptions": subscription["id"], "versions": "1", "filtered meter": f"m{n}-filtered",
            "scheduled": scheduled["id"]}


def _concrete(path: str, seeded: dict[str, str]) -> str:
    """/consumers/{parent}/key-auth/{ident} -> /consumers/c/key-auth/k."""
    parts = path.split("/")
    out = list(parts)
    for i, part in enumerate(parts):
        if part.startswith("{"):
            collection = parts[i - 1]
            if collection == "plugins" and parts[i - 2] == "schemas":
                collection = "schemas/plugins"
            value = seeded[collection]
            # the consumer's plugin is the billable one; the other is on the service and route
            if collection == "plugins" and (path.endswith("/consumer") or parts[i - 3] == "consumers"):
                value = seeded["billed"]
            if collection == "meters" and path.endswith(("/service", "/route")):
                value = seeded["filtered meter"]
            if collection == "subscriptions" and path.endswith("/next_plan"):
                value = seeded["scheduled"]
            out[i] = value
    return "/".join(out)


def _seed_invoice(api: httpx.Client, settings: Settings) -> str:
    """A draft invoice: a subscription that started 40 days ago, billed by a billing run."""
    assert api.post("/consumers", json={"username": "billed"}).status_code == 201
    started = int(time.time()) // 3600 * 3600 - 40 * 86_400   # a whole hour: no minute rows needed
    assert api.post("/consumers/billed/subscriptions", json={"plan": {"name": "p0"},
                                                             "started_at": started}).status_code == 201
    run_with_database(settings, lambda db: invoice_run.run(db, settings))
    return str(api.get("/invoices", params={"consumer": "billed"}).json()["data"][0]["id"])


def test_every_documented_operation_is_served(api: httpx.Client, settings: Settings) -> None:
    seeded = _seed(api)
    seeded["invoices"] = _seed_invoice(api, settings)
    document = api.get("/openapi.json").json()
    deletes: list[str] = []
    for path, ops in document["paths"].items():
        url = _concrete(path, seeded)
        for method, op in ops.items():
            if "204" not in op["responses"] and "200" not in op["responses"]:
                continue  # documented as refused (DELETE /routes/{ident}/service: Kong's 405)
            if method == "delete":
                deletes.append(path)
                continue
            answer = api.request(method.upper(), url, json={} if method in ("post", "put", "patch") else None)
            assert answer.status_code not in (404, 405), (method, path, url, answer.text)
    for n, path in enumerate(deletes, 1):  # each on entities of its own: a delete may take others along
        url = _concrete(path, _seed(api, n))
        answer = api.delete(url)
        assert answer.status_code not in (404, 405), ("delete", url, answer.text)
