"""Meters, plans, charges and entitlements on the Admin API: Kong's conventions (JSON or forms, names or
ids in URLs, nested routes) and Kong's error shapes for every bad field."""

from __future__ import annotations

import httpx


def seed(api: httpx.Client) -> None:
    service = api.post("/services", json={"name": "mock", "host": "example.com"}).json()
    assert api.post("/routes", json={"name": "mock", "paths": ["/mock"], "service": {"id": service["id"]}}) \
        .status_code == 201
    assert api.post("/meters", json={"name": "calls"}).status_code == 201
    assert api.post("/plans", json={"name": "pro", "currency": "USD"}).status_code == 201


def violation(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == 2 and body["name"] == "schema violation"
    return body["fields"]  # type: ignore[no-any-return]


def test_a_meter_from_a_form_with_its_filter_by_names(api: httpx.Client) -> None:
    seed(api)
    created = api.post("/meters", data={"name": "ok-egress", "aggregation": "sum", "field": "response_bytes",
                                        "service.name": "mock", "route.name": "mock", "status[]": ["2xx", "304"]})
    assert created.status_code == 201, created.text
    meter = created.json()
    assert meter["aggregation"] == "sum" and meter["field"] == "response_bytes"
    assert meter["status"] == ["2xx", "304"] and meter["service"]["id"] and meter["route"]["id"]
    assert api.get("/meters/ok-egress").json() == meter
    # codes may be sent as integers; they are kept as text, like classes
    assert api.post("/meters", json={"name": "not-found", "status": [404]}).json()["status"] == ["404"]


def test_meter_errors_name_every_bad_field(api: httpx.Client) -> None:
    seed(api)
    fields = violation(api.post("/meters", json={"name": "x", "aggregation": "sum", "status": ["2xy", "200", 600]}))
    assert fields == {"field": "required when aggregation is 'sum': one of request_bytes, response_bytes",
                      "status": ["expected a status code (100 to 599) or class (1xx to 5xx)", None,
                                 "expected a status code (100 to 599) or class (1xx to 5xx)"]}
    assert violation(api.post("/meters", json={"name": "y", "field": "request_bytes"})) == {
        "field": "must be null when aggregation is 'count'"}
    assert violation(api.post("/meters", json={"name": "z", "aggregation": "max"})) == {
        "aggregation": "expected one of: count, sum"}
    taken = api.post("/meters", json={"name": "calls"})
    assert taken.status_code == 409 and taken.json()["fields"] == {"name": "calls"}


def test_plan_errors_unknown_currency_negative_and_malformed_prices(api: httpx.Client) -> None:
    seed(api)
    response = api.post("/plans", json={"name": "gold", "currency": "XYZ", "base_fee": "-1", "trial_days": -2,
                                        "minimum_commitment": "0.0000000000001", "interval": "day"})
    assert violation(response) == {
        "currency": "expected an active ISO 4217 currency code",
        "base_fee": "must not be negative",
        "minimum_commitment": "expected a decimal string with at most 12 decimal places",
        "trial_days": "value should be between 0 and 36500",
        "interval": "expected one of: week, month, quarter, year",
    }
    assert response.json()["message"].startswith("5 schema violations (")
    assert violation(api.post("/plans", json={"name": "gold", "currency": "XAU"})) == {
        "currency": "XAU has no minor unit in ISO 4217 and cannot be priced"}
    assert violation(api.post("/plans", json={"name": "gold", "currency": "USD", "base_fee": 29.5})) == {
        "base_fee": "expected a string"}  # a float is never a price
    assert violation(api.post("/plans", json={"name": "bad name!", "currency": "USD"}))["name"].startswith(
        "invalid value 'bad name!'")


def test_a_plan_with_defaults_and_a_patch(api: httpx.Client) -> None:
    seed(api)
    plan = api.get("/plans/pro").json()
    assert {k: plan[k] for k in ("currency", "interval", "billing_anchor", "base_fee", "trial_days",
                                 "minimum_commitment")} == {
        "currency": "USD", "interval": "month", "billing_anchor": "calendar", "base_fee": "0", "trial_days": 0,
        "minimum_commitment": None}
    patched = api.patch("/plans/pro", data={"base_fee": "29.99", "billing_anchor": "anniversary"})
    assert patched.status_code == 200 and patched.json()["base_fee"] == "29.99"


def test_charges_of_each_model_under_their_plan(api: httpx.Client) -> None:
    seed(api)
    for name in ("a", "b", "c", "d"):
        assert api.post("/meters", json={"name": name}).status_code == 201
    bodies = [
        {"meter": {"name": "a"}, "model": "standard", "unit_price": "0.0015", "free_units": 1000},
        {"meter": {"name": "b"}, "model": "graduated", "tiers": [
            {"up_to": 1000, "unit_price": "0"}, {"up_to": None, "unit_price": "0.001", "flat_fee": "5"}]},
        {"meter": {"name": "c"}, "model": "volume", "tiers": [{"up_to": 10, "unit_price": "1"},
                                                               {"up_to": None, "unit_price": "0.5"}]},
        {"meter": {"name": "d"}, "model": "package", "package_size": 100, "package_price": "5"},
    ]
    for body in bodies:
        response = api.post("/plans/pro/charges", json=body)
        assert response.status_code == 201, response.text
    listed = api.get("/plans/pro/charges").json()["data"]
    assert sorted(charge["model"] for charge in listed) == ["graduated", "package", "standard", "volume"]
    graduated = next(charge for charge in listed if charge["model"] == "graduated")
    assert graduated["tiers"] == [{"up_to": 1000, "unit_price": "0", "flat_fee": "0"},
                                  {"up_to": None, "unit_price": "0.001", "flat_fee": "5"}]
    assert api.get(f"/charges/{graduated['id']}/plan").json()["name"] == "pro"
    again = api.post("/plans/pro/charges", json=bodies[0])
    assert again.status_code == 409 and set(again.json()["fields"]) == {"plan", "meter"}  # one charge per meter


def test_charge_errors_tiers_not_increasing_negative_prices_an_unknown_meter(api: httpx.Client) -> None:
    seed(api)
    tiers = [{"up_to": 100, "unit_price": "0"}, {"up_to": 100, "unit_price": "0.1"},
             {"up_to": 50, "unit_price": "-0.1"}, {"up_to": None, "unit_price": "1", "flat_fee": "-5"}]
    response = api.post("/plans/pro/charges", json={"meter": {"name": "calls"}, "model": "graduated", "tiers": tiers})
    assert violation(response) == {"tiers": [
        None,
        {"up_to": "must be greater than the previous tier's up_to (100)"},
        {"up_to": "must be greater than the previous tier's up_to (100)", "unit_price": "must not be negative"},
        {"flat_fee": "must not be negative"},
    ]}
    assert response.json()["message"].startswith("3 schema violations (tiers.2:")
    last_bound = api.post("/plans/pro/charges", json={"meter": {"name": "calls"}, "model": "volume",
                                                      "tiers": [{"up_to": 10, "unit_price": "1"}]})
    assert violation(last_bound) == {"tiers": [{"up_to": "must be null on the last tier"}]}
    mixed = api.post("/plans/pro/charges", json={"meter": {"name": "calls"}, "model": "standard",
                                                 "unit_price": "1", "package_size": 10})
    assert violation(mixed) == {"package_size": "not used by the standard model"}
    missing = api.post("/plans/pro/charges", json={"meter": {"name": "calls"}, "model": "package",
                                                   "package_price": "1"})
    assert violation(missing) == {"package_size": "required field missing"}
    unknown = api.post("/plans/pro/charges", json={"meter": {"name": "nope"}, "model": "standard", "unit_price": "1"})
    assert unknown.status_code == 400 and unknown.json()["name"] == "foreign keys unresolved"
    assert unknown.json()["fields"] == {"meter": {"name": "the foreign key cannot be resolved with '{name=\"nope\"}' "
                                                          "for an existing 'meters' entity"}}
    by_id = api.post("/plans/pro/charges", json={"meter": {"id": "00000000-0000-4000-8000-000000000000"},
                                                 "model": "standard", "unit_price": "1"})
    assert by_id.status_code == 400 and by_id.json()["name"] == "foreign key violation"
    assert api.post("/plans/nope/charges", json={}).status_code == 404


def test_entitlements_one_per_meter_and_period(api: httpx.Client) -> None:
    seed(api)
    created = api.post("/plans/pro/entitlements", data={"meter.name": "calls", "limit": "1000", "period": "day"})
    assert created.status_code == 201, created.text
    assert created.json()["enforcement"] == "hard" and created.json()["limit"] == 1000
    assert api.post("/plans/pro/entitlements", json={"meter": {"name": "calls"}, "limit": 10,
                                                     "period": "minute", "enforcement": "soft"}).status_code == 201
    assert api.post("/plans/pro/entitlements", json={"meter": {"name": "calls"}, "limit": 5,
                                                     "period": "day"}).status_code == 409
    assert violation(api.post("/plans/pro/entitlements", json={"meter": {"name": "calls"}, "limit": -1,
                                                               "period": "week", "enforcement": "strict"})) == {
        "limit": "value should be between 0 and 9223372036854775807", "period":
            "expected one of: minute, hour, day, month, billing_period", "enforcement": "expected one of: hard, soft"}


def test_what_prices_refer_to_cannot_be_deleted_from_under_them(api: httpx.Client) -> None:
    seed(api)
    assert api.post("/plans/pro/charges", json={"meter": {"name": "calls"}, "model": "standard",
                                                "unit_price": "1"}).status_code == 201
    refused = api.delete("/meters/calls")
    assert refused.status_code == 400 and refused.json()["fields"] == {"@referenced_by": "charges"}
    assert api.post("/meters", json={"name": "on-mock", "service": {"name": "mock"}}).status_code == 201
    assert api.delete("/services/mock").status_code == 400  # routes and a meter use it
    # a plan nobody subscribed to goes with its charges and entitlements
    assert api.delete("/plans/pro").status_code == 204
    assert api.get("/charges").json()["data"] == []
    assert api.delete("/meters/calls").status_code == 204


def test_a_graduated_charge_from_a_form_as_a_shell_script_sends_it(api: httpx.Client) -> None:
    seed(api)
    form = [("meter.name", "calls"), ("model", "graduated"), ("tiers[1].up_to", "1000"),
            ("tiers[1].unit_price", "0"), ("tiers[2].up_to", ""), ("tiers[2].unit_price", "0.0015"),
            ("tiers[2].flat_fee", "1")]
    created = api.post("/plans/pro/charges", content="&".join(f"{k}={v}" for k, v in form),
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert created.status_code == 201, created.text
    assert created.json()["tiers"] == [{"up_to": 1000, "unit_price": "0", "flat_fee": "0"},
                                       {"up_to": None, "unit_price": "0.0015", "flat_fee": "1"}]
