"""The dashboard and the portal in a real headless Chromium, against a real node with traffic
through its proxy: the charts draw, the figures are /billable's and /consumers/{c}/usage's, a live
refresh shows new traffic without a reload, no console errors, and one consumer's portal shows
nothing of another's. Login with admin_token is driven on an Admin API of its own."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest

from tests.admin.conftest import _bootstrap, serve
from tests.conftest import free_port, make_settings
from tests.server.nodes import Node, running
from tests.server.test_metering_e2e import seed

# A pixel of the chart drawn in a status class's colour (uPlot's canvas, 2xx green, 4xx amber).
CANVAS_HAS_SERIES = """() => {
    const canvas = document.querySelector("#traffic canvas");
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let green = 0, amber = 0;
    for (let i = 0; i < pixels.length; i += 4) {
        const [r, g, b, a] = [pixels[i], pixels[i + 1], pixels[i + 2], pixels[i + 3]];
        if (a > 0 && g > r + 40 && g > b + 20) green++;
        if (a > 0 && r > b + 60 && g > b + 30 && r > 120) amber++;
    }
    return {green, amber};
}"""


def admin(node: Node, method: str, path: str, body: dict[str, Any]) -> Any:
    response = httpx.request(method, node.admin + path, json=body, timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()


def calls(node: Node, key: str | None, count: int, path: str = "/mock/requests") -> None:
    headers = {"apikey": key} if key else {}
    with httpx.Client(base_url=node.proxy, timeout=10) as proxy:
        for _ in range(count):
            proxy.get(path, headers=headers)


def metered(node: Node) -> int:
    """Calls metered on route mock (the seed's own calls go to route ready)."""
    return sum(row["requests"] for row in node.json("/billable?period=year&group_by=route&route=mock")["data"])


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, echo_upstream: int) -> Iterator[Node]:
    settings = make_settings(tmp_path_factory.mktemp("dashboard") / "prefix", "sqlite",
                             portal_listen=f"127.0.0.1:{free_port()}")
    with running(settings) as n:
        seed(n, f"http://127.0.0.1:{echo_upstream}")
        admin(n, "POST", "/meters", {"name": "calls", "route": {"name": "mock"}})
        admin(n, "POST", "/plans", {"name": "pro", "currency": "USD"})
        admin(n, "POST", "/plans/pro/charges", {"meter": {"name": "calls"}, "model": "standard",
                                                "unit_price": "0.01"})
        admin(n, "POST", "/plans/pro/entitlements", {"meter": {"name": "calls"}, "limit": 10, "period": "day",
                                                     "enforcement": "soft"})
        admin(n, "POST", "/consumers/poppy/subscriptions", {"plan": {"name": "pro"}})
        admin(n, "POST", "/consumers/digit/subscriptions", {"plan": {"name": "pro"}})
        calls(n, "poppy-secret", 9)
        calls(n, "poppy-secret", 2, "/mock/status/404")
        calls(n, "digit-secret", 3)
        calls(n, None, 2)  # 401: no consumer
        n.wait_until(lambda: metered(n) == 16, timeout=10, what="the calls metered")
        yield n


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    tab.problems = problems
    try:
        yield tab
    finally:
        context.close()
    assert problems == [], problems


def figure(tab: Any, name: str) -> str:
    return str(tab.text_content(f'[data-figure="{name}"]')).strip()


def test_the_overview_draws_its_chart_with_billables_figures_and_refreshes_live(node: Node, page: Any) -> None:
    page.goto(node.admin + "/dashboard?span=hour")
    page.wait_for_selector("#traffic[data-drawn=yes]")
    drawn = page.evaluate(CANVAS_HAS_SERIES)
    assert drawn["green"] > 50 and drawn["amber"] > 0, drawn  # 2xx and 4xx bands are on the canvas
    query = page.get_attribute("#traffic-data", "data-billable")
    total = sum(row["requests"] for row in node.json(f"/billable?{query}&size=1000")["data"])
    assert total >= 16 and figure(page, "total") == str(total)
    assert page.get_attribute("#traffic-data", "data-total") == str(total)
    start = dict(parse_qsl(query))["start"]
    routes = node.json(f"/billable?period=year&start={start}&group_by=route")["data"]
    mock = next(row for row in routes if row["route"] and row["route"]["name"] == "mock")
    cells = page.locator('[data-table="routes"] tbody tr').first.locator("td").all_text_contents()
    assert cells[0] == "mock" and cells[1] == str(mock["requests"])
    assert cells[3] == f"{mock['latency_ms_p95']:,.3f} ms".replace(".000 ms", " ms")
    consumers = page.locator('[data-table="consumers"] tbody tr').all_text_contents()
    assert consumers[0].startswith("poppy") and consumers[0].endswith("11")
    # Every consumer shown, named and counted as /billable names and counts it.
    shown = [tuple(row.locator("td").all_text_contents()[:2]) for row in
             page.locator('[data-table="consumers"] tbody tr').all()]
    billed = node.json(f"/billable?period=year&start={start}&group_by=consumer")["data"]
    assert sorted(shown) == sorted(((row["consumer"] or {}).get("username") or "(no consumer)", str(row["requests"]))
                                   for row in billed)
    page.wait_for_selector('[data-table="alerts"] tbody tr')  # checked in the background, shown by a refresh
    alerts = page.locator('[data-table="alerts"] tbody tr').all_text_contents()
    assert any("poppy" in row and "11 of 10" in row for row in alerts)  # 11 of its 10 a day

    page.evaluate("() => { document.querySelector('#traffic canvas').dataset.kept = 'yes'; }")
    calls(node, "digit-secret", 5)
    node.wait_until(lambda: metered(node) == 21, timeout=10, what="the new calls metered")
    page.wait_for_function(f"() => document.querySelector('[data-figure=total]').textContent.trim() === '{total + 5}'",
                           timeout=15_000)
    assert page.evaluate("() => document.querySelector('#traffic canvas').dataset.kept") == "yes"  # redrawn in place
    assert page.url.endswith("/dashboard?span=hour")


def test_the_consumer_page_shows_its_usage_entitlements_and_masked_keys(node: Node, page: Any) -> None:
    usage = node.json("/consumers/poppy/usage")
    page.goto(node.admin + "/dashboard/consumers/poppy")
    page.wait_for_selector("#traffic[data-drawn=yes]")
    assert figure(page, "amount") == f"{usage['total']} USD"
    entitlement = usage["entitlements"][0]
    row = page.locator('[data-table="entitlements"] tbody tr').first.text_content() or ""
    assert f"{entitlement['used']} of {entitlement['limit']}" in row and entitlement["resets_at"] in row
    keys = page.locator('[data-table="keys"]').text_content() or ""
    assert "poppy-secret" not in keys and "stored hashed" in keys
    page.fill("#ttl_days", "2")
    page.click("text=Create a portal token")
    token = page.text_content("[data-token]")
    assert token and token.startswith("tlwp_")
    page.goto(node.admin + "/dashboard/plans")
    assert "pro" in (page.text_content("main") or "")
    assert figure(page, "subscribers") == "2"


def test_a_portal_shows_its_consumer_and_nothing_of_another(node: Node, page: Any) -> None:
    poppy = admin(node, "POST", "/consumers/poppy/portal_tokens", {"ttl": 600})
    digit = admin(node, "POST", "/consumers/digit/portal_tokens", {"ttl": 600})
    assert poppy["url"].startswith(f"http://{node.settings.portal_listen}/tlwp_")
    page.goto(poppy["url"])
    page.wait_for_selector("#traffic[data-drawn=yes]")
    assert "poppy" in (page.text_content("h1") or "")
    query = page.get_attribute("#traffic-data", "data-billable")
    assert dict(parse_qsl(query))["consumer"] == poppy["consumer"]["id"]
    assert figure(page, "total") == str(sum(row["requests"] for row in node.json(f"/billable?{query}")["data"]))
    assert figure(page, "amount") == node.json("/consumers/poppy/usage")["total"] + " USD"
    html = page.content()
    for secret in ("digit", digit["consumer"]["id"], digit["token"], "poppy-secret"):
        assert secret not in html
    partial = httpx.get(poppy["url"] + "/figures?span=month&consumer=digit", timeout=10).text
    assert "digit" not in partial and digit["consumer"]["id"] not in partial

    portal = f"http://{node.settings.portal_listen}"
    httpx.delete(f"{node.admin}/consumers/digit/portal_tokens/{digit['id']}", timeout=10)
    for wrong in (digit["token"], poppy["token"][:-2] + "xy", "tlwp_" + "a" * 43, "nothing"):
        for path in (f"/{wrong}", f"/{wrong}/figures"):
            answer = httpx.get(portal + path, timeout=10)
            assert answer.status_code == 404 and "poppy" not in answer.text and "digit" not in answer.text


def test_login_with_admin_token_opens_the_dashboard(tmp_path: Path, page: Any) -> None:
    settings = make_settings(tmp_path / "prefix", "sqlite", admin_token="s3cret-admin")
    with ThreadPoolExecutor(1) as pool:  # Playwright's own loop runs on this thread
        pool.submit(asyncio.run, _bootstrap(settings)).result()
    for server in serve(settings):
        base = f"http://127.0.0.1:{server.port}"
        page.goto(base + "/dashboard")
        assert page.url == base + "/dashboard/login"
        page.fill("#token", "wrong")
        page.keyboard.press("Enter")
        assert "not the admin token" in (page.text_content("[role=alert]") or "")
        page.problems.clear()  # the 401 of the wrong token is logged by the browser
        page.fill("#token", "s3cret-admin")
        page.keyboard.press("Enter")
        page.wait_for_selector("#traffic[data-drawn=yes]")
        assert page.url == base + "/dashboard"
        assert not re.search("tollway_session", page.evaluate("() => document.cookie"))  # HttpOnly
