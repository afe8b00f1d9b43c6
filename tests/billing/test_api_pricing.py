"""POST /pricing/simulate, hand-computed: every model at its tier edges (0, the edge, the edge + 1), free
units, rounding where half up and half even differ, JPY and KWD, totals summed from rounded lines."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

TIERS = [{"up_to": 100, "unit_price": "0.10", "flat_fee": "1"}, {"up_to": 1000, "unit_price": "0.05"},
         {"up_to": None, "unit_price": "0.01", "flat_fee": "2"}]


def make_plan(api: httpx.Client, name: str, currency: str, charges: dict[str, dict[str, Any]],
              base_fee: str = "0") -> None:
    assert api.post("/plans", json={"name": name, "currency": currency, "base_fee": base_fee}).status_code == 201
    for meter, charge in charges.items():
        if api.get(f"/meters/{meter}").status_code == 404:
            assert api.post("/meters", json={"name": meter}).status_code == 201
        response = api.post(f"/plans/{name}/charges", json={"meter": {"name": meter}, **charge})
        assert response.status_code == 201, response.text


def simulate(api: httpx.Client, plan: str, **usage: int | str) -> dict[str, Any]:
    response = api.post("/pricing/simulate", json={"plan": plan, "usage": usage})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def amounts(answer: dict[str, Any]) -> dict[str, tuple[str, int]]:
    return {line["meter"] or line["kind"]: (line["amount"], line["amount_minor"]) for line in answer["lines"]}


@pytest.fixture
def priced(api: httpx.Client) -> httpx.Client:
    make_plan(api, "usd", "USD", {
        "graduated": {"model": "graduated", "tiers": TIERS},
        "volume": {"model": "volume", "tiers": TIERS},
        "package": {"model": "package", "package_size": 100, "package_price": "5", "free_units": 10},
        "standard": {"model": "standard", "unit_price": "0.0015", "free_units": 1000},
    }, base_fee="29")
    return api


def priced_at(api: httpx.Client, meter: str, edges: list[int]) -> list[str]:
    return [amounts(simulate(api, "usd", **{meter: units}))[meter][0] for units in edges]


def test_graduated_at_its_tier_edges(priced: httpx.Client):
    # 100 × 0.10 + 1 = 11; + 1 × 0.05; + 900 × 0.05 = 56; the third tier: + 0.01 + its flat fee 2 = 58.01
    assert priced_at(priced, "graduated", [0, 100, 101, 1000, 1001]) == ["0.00", "11.00", "11.05", "56.00", "58.01"]


def test_volume_prices_every_unit_at_the_tier_holding_the_total(priced: httpx.Client):
    # 100 × 0.10 + 1; 101 × 0.05; 1000 × 0.05; 1001 × 0.01 + 2
    assert priced_at(priced, "volume", [0, 100, 101, 1000, 1001]) == ["0.00", "11.00", "5.05", "50.00", "12.01"]


def test_package_after_free_units(priced: httpx.Client):
    # packages of 100 at 5 after 10 free units: 0, 0, 1, 1, 2 packages
    assert priced_at(priced, "package", [0, 10, 11, 110, 111]) == ["0.00", "0.00", "5.00", "5.00", "10.00"]


def test_standard_after_free_units_rounded_once(priced: httpx.Client):
    # 1 × 0.0015 = 0.0015 -> 0.00; 3 × 0.0015 = 0.0045 -> 0.00; 4 × 0.0015 = 0.006 -> 0.01;
    # 11345 × 0.0015 = 17.0175 -> 17.02
    assert priced_at(priced, "standard", [1000, 1001, 1003, 1004, 12345]) == ["0.00", "0.00", "0.00", "0.01", "17.02"]


def test_the_answer_shows_each_tier_and_the_total_of_rounded_lines(priced: httpx.Client):
    answer = simulate(priced, "usd", graduated=1001, standard="12345")
    assert answer["plan"]["name"] == "usd" and answer["plan_version"] is None and answer["currency"] == "USD"
    graduated = next(line for line in answer["lines"] if line["meter"] == "graduated")
    assert graduated["tiers"] == [
        {"from": 1, "to": 100, "units": "100", "unit_price": "0.1", "flat_fee": "1", "amount": "11"},
        {"from": 101, "to": 1000, "units": "900", "unit_price": "0.05", "flat_fee": "0", "amount": "45"},
        {"from": 1001, "to": None, "units": "1", "unit_price": "0.01", "flat_fee": "2", "amount": "2.01"},
    ]
    # 29.00 + 58.01 + 0 + 0 + 17.02
    assert (answer["total"], answer["total_minor"]) == ("104.03", 10403)


def test_half_up_where_half_even_would_round_down_and_totals_of_rounded_lines(api: httpx.Client):
    make_plan(api, "halves", "USD", {"a": {"model": "standard", "unit_price": "0.0125"},
                                     "b": {"model": "standard", "unit_price": "0.0125"}})
    answer = simulate(api, "halves", a=10, b=10)
    # 10 × 0.0125 = 0.125 each: half up 0.13 (half even: 0.12); the total is 0.13 + 0.13, not round(0.25)
    assert amounts(answer) == {"base_fee": ("0.00", 0), "a": ("0.13", 13), "b": ("0.13", 13)}
    assert (answer["total"], answer["total_minor"]) == ("0.26", 26)


def test_yen_have_no_decimals_and_dinars_three(api: httpx.Client):
    make_plan(api, "yen", "JPY", {"calls": {"model": "standard", "unit_price": "0.5"}}, base_fee="980")
    make_plan(api, "dinar", "KWD", {"calls": {"model": "standard", "unit_price": "0.0025"}}, base_fee="1.5")
    yen = simulate(api, "yen", calls=5)      # 2.5 yen: 3 half up (2 half even)
    assert amounts(yen) == {"base_fee": ("980", 980), "calls": ("3", 3)}
    assert (yen["total"], yen["total_minor"]) == ("983", 983)
    dinar = simulate(api, "dinar", calls=5)  # 0.0125 KWD: 0.013 half up (0.012 half even)
    assert amounts(dinar) == {"base_fee": ("1.500", 1500), "calls": ("0.013", 13)}
    assert (dinar["total"], dinar["total_minor"]) == ("1.513", 1513)


def test_a_recorded_version_prices_as_it_was(priced: httpx.Client):
    assert priced.post("/plans/usd/versions").status_code == 201
    assert priced.patch("/plans/usd", json={"base_fee": "39"}).status_code == 200
    old = priced.post("/pricing/simulate", json={"plan": "usd", "version": 1}).json()
    assert old["plan_version"] == 1 and old["total"] == "29.00"
    assert simulate(priced, "usd")["total"] == "39.00"


def test_simulate_errors_in_kong_shape(priced: httpx.Client):
    bad = priced.post("/pricing/simulate", json={"plan": "usd", "usage": {"graduated": 1.5, "standard": "-1",
                                                                          "package": True}, "extra": 1})
    assert bad.status_code == 400 and bad.json()["fields"] == {
        "extra": "unknown field",
        "usage": {"graduated": "expected a non-negative integer, or a decimal string",
                  "standard": "expected a non-negative integer, or a decimal string",
                  "package": "expected a non-negative integer, or a decimal string"}}
    unknown_meter = priced.post("/pricing/simulate", json={"plan": "usd", "usage": {"egress": 1}})
    assert unknown_meter.json()["fields"] == {"usage": {"egress": "the plan has no charge for meter 'egress'"}}
    unknown_plan = priced.post("/pricing/simulate", json={"plan": "gold"})
    assert unknown_plan.status_code == 400 and unknown_plan.json()["name"] == "foreign keys unresolved"
    assert unknown_plan.json()["fields"] == {"plan": {"name": "the foreign key cannot be resolved with "
                                                              "'{name=\"gold\"}' for an existing 'plans' entity"}}
    assert priced.post("/pricing/simulate", json={"plan": "usd", "version": 7}).json()["fields"] == {
        "version": "plan 'usd' has no version 7"}
    assert priced.post("/pricing/simulate", json={}).json()["fields"] == {"plan": "required field missing"}
    form = priced.post("/pricing/simulate", data={"plan": "usd", "usage.standard": "1004"})
    assert form.status_code == 200 and amounts(form.json())["standard"] == ("0.01", 1)
