"""`tollway plans apply` (declarative, idempotent, all or nothing, a dry run) and `tollway pricing simulate`."""

from __future__ import annotations

from pathlib import Path

import httpx
from click.testing import CliRunner, Result

from tollway.billing.cli import plans, pricing
from tollway.config import Settings

PLANS = """
meters:
  - name: api-calls
    filter: {service: mock, status: ["2xx", 304]}
  - name: egress
    aggregation: sum
    field: response_bytes
plans:
  - name: pro
    currency: USD
    base_fee: 29
    trial_days: 14
    minimum_commitment: "100"
    charges:
      - meter: api-calls
        model: graduated
        tiers:
          - {up_to: 1000, unit_price: 0}
          - {up_to: null, unit_price: 0.0015, flat_fee: 1}
      - {meter: egress, model: package, package_size: 1000000, package_price: 0.05}
    entitlements:
      - {meter: api-calls, limit: 100, period: minute}
      - {meter: api-calls, limit: 100000, period: billing_period, enforcement: soft}
"""


def cli(settings: Settings, command: object, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(command, list(args), obj={"settings": settings}, input=stdin)  # type: ignore[arg-type]


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "plans.yaml"
    path.write_text(text)
    return str(path)


def test_apply_creates_everything_then_changes_nothing(api: httpx.Client, settings: Settings, tmp_path: Path):
    assert api.post("/services", json={"name": "mock", "host": "example.com"}).status_code == 201
    path = write(tmp_path, PLANS)
    dry = cli(settings, plans, "apply", "--dry-run", path)
    assert dry.exit_code == 0, dry.output
    assert dry.output.splitlines() == [
        "meter api-calls: create", "meter egress: create", "plan pro: create",
        "plan pro, charge api-calls: create", "plan pro, charge egress: create",
        "plan pro, entitlement api-calls per minute: create",
        "plan pro, entitlement api-calls per billing_period: create",
        "dry run: 7 change(s) not made"]
    assert api.get("/meters").json()["data"] == []
    first = cli(settings, plans, "apply", path)
    assert first.exit_code == 0 and first.output.splitlines() == dry.output.splitlines()[:-1]
    meter = api.get("/meters/api-calls").json()
    assert meter["status"] == ["2xx", "304"] and meter["service"]["id"] == api.get("/services/mock").json()["id"]
    charges = {c["model"]: c for c in api.get("/plans/pro/charges").json()["data"]}
    # numbers with a fraction are kept as written: never a binary float
    assert charges["graduated"]["tiers"][1] == {"up_to": None, "unit_price": "0.0015", "flat_fee": "1"}
    assert charges["package"]["package_price"] == "0.05"
    assert api.get("/plans/pro").json()["base_fee"] == "29"
    again = cli(settings, plans, "apply", path)
    assert again.exit_code == 0 and again.output == "no changes\n"


def test_apply_updates_and_deletes_what_the_file_no_longer_says(api: httpx.Client, settings: Settings, tmp_path: Path):
    assert api.post("/services", json={"name": "mock", "host": "example.com"}).status_code == 201
    assert cli(settings, plans, "apply", write(tmp_path, PLANS)).exit_code == 0
    assert api.post("/consumers", json={"username": "poppy"}).status_code == 201
    assert api.post("/consumers/poppy/subscriptions", json={"plan": {"name": "pro"}}).status_code == 201
    edited = PLANS.replace("base_fee: 29", "base_fee: 29.00").replace("minimum_commitment: \"100\"",
                                                                      "minimum_commitment: \"150\"")
    edited = edited.replace("      - {meter: api-calls, limit: 100, period: minute}\n", "")
    result = cli(settings, plans, "apply", write(tmp_path, edited))
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "plan pro: update (minimum_commitment: 100 -> 150)",  # 29.00 is 29: no change
        "plan pro, entitlement api-calls per minute: delete",
        "plan pro: subscriptions keep version 1 (or older); a PATCH of a subscription with its plan moves it to "
        "the plan as now declared"]
    assert [e["period"] for e in api.get("/plans/pro/entitlements").json()["data"]] == ["billing_period"]
    assert api.get("/plans/pro/versions/1").json()["definition"]["minimum_commitment"] == "100"


def test_a_bad_file_lists_every_problem_and_writes_nothing(api: httpx.Client, settings: Settings, tmp_path: Path):
    bad = """
meters:
  - name: api-calls
    filter: {service: nowhere}
  - name: bytes
    aggregation: sum
plans:
  - name: pro
    currency: USD
    base_fee: "-1"
    charges:
      - meter: api-calls
        model: graduated
        tiers: [{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: 1}, {up_to: null, unit_price: 1}]
      - {meter: ghost, model: standard, unit_price: 1}
    entitlements:
      - {meter: api-calls, limit: 10, period: fortnight}
"""
    result = cli(settings, plans, "apply", write(tmp_path, bad))
    assert result.exit_code == 1
    assert str(result.exception).splitlines() == [
        "the plans file cannot be applied:",
        "  meters[0] (api-calls): filter.service: no service with id or name 'nowhere'",
        "  meters[1] (bytes): field: required when aggregation is 'sum': one of request_bytes, response_bytes",
        "  plans[0] (pro): base_fee: must not be negative",
        "  plans[0] (pro): charges[1]: meter: no meter named 'ghost'",
    ]
    assert api.get("/meters").json()["data"] == [] and api.get("/plans").json()["data"] == []
    assert cli(settings, plans, "apply", write(tmp_path, "plans: 3\nextra: {}\n")).exception is not None
    not_yaml = cli(settings, plans, "apply", write(tmp_path, "meters: [\n"))
    assert "not valid YAML" in str(not_yaml.exception)


def test_charge_problems_are_named_by_their_place_in_the_file(api: httpx.Client, settings: Settings, tmp_path: Path):
    text = """
meters: [{name: calls}]
plans:
  - name: pro
    currency: USD
    charges:
      - {meter: calls, model: graduated, tiers: [{up_to: 10, unit_price: 1}, {up_to: 5, unit_price: -1},
                                                 {up_to: null, unit_price: 1}]}
    entitlements:
      - {meter: calls, limit: 10, period: fortnight}
"""
    result = cli(settings, plans, "apply", write(tmp_path, text))
    assert str(result.exception).splitlines()[1:] == [
        "  plans[0] (pro): charges[0]: tiers.2.up_to: must be greater than the previous tier's up_to (10)",
        "  plans[0] (pro): charges[0]: tiers.2.unit_price: must not be negative",
        "  plans[0] (pro): entitlements[0]: period: expected one of: minute, hour, day, month, billing_period",
    ]


def test_pricing_simulate_prints_lines_tiers_and_the_total(api: httpx.Client, settings: Settings, tmp_path: Path):
    assert api.post("/services", json={"name": "mock", "host": "example.com"}).status_code == 201
    assert cli(settings, plans, "apply", "-", stdin=PLANS).exit_code == 0
    result = cli(settings, pricing, "simulate", "--plan", "pro", "--usage", "api-calls=12345",
                 "--usage", "egress=2500001")
    assert result.exit_code == 0, result.output
    # 11345 × 0.0015 + 1 = 18.0175 -> 18.02; 3 packages × 0.05 = 0.15; 29 + 18.02 + 0.15
    assert result.output.splitlines() == [
        "plan pro",
        "base fee                                     29.00",
        "api-calls (graduated, 12345 units)           18.02",
        "    1..1000: 1000 x 0                            0",
        "    1001..: 11345 x 0.0015 + 1             18.0175",
        "egress (package, 2500001 units)               0.15",
        "    1..: 3 packages x 0.05                    0.15",
        "total (USD)                                  47.17",
    ]
    as_json = cli(settings, pricing, "simulate", "--plan", "pro", "--json")
    assert '"total": "29.00"' in as_json.output
    wrong = cli(settings, pricing, "simulate", "--plan", "pro", "--usage", "ghost=1")
    assert wrong.exit_code == 1 and "usage.ghost: the plan has no charge for meter 'ghost'" in wrong.output
