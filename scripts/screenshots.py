"""Screenshots of the dashboard for the docs: a real node, real traffic through its proxy.

    .venv/bin/python scripts/screenshots.py [OUT_DIR]     (default: docs/)

Starts Tollway's mock upstream and a node (SQLite, a temporary prefix, a portal listener), seeds a
service, a route, three consumers with keys, a plan with a charge and a daily entitlement and their
subscriptions, sends a few hundred calls (2xx, 4xx, 5xx, some slow), waits until the ledger holds
them, then has Debian's chromium (Playwright) take:

  dashboard-overview.png   the overview, last hour, desktop width
  dashboard-consumer.png   a consumer page, desktop width
  dashboard-phone.png      the overview at a phone's width (390 px)
  portal.png               a consumer's portal
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.conftest import CHROMIUM_FLAGS, chromium_path, free_port, make_settings  # noqa: E402
from tests.server.nodes import Node  # noqa: E402
from tollway import mockbin  # noqa: E402

CONSUMERS = {"acme": 160, "globex": 90, "initech": 40}


def admin(node: Node, method: str, path: str, body: dict[str, Any]) -> Any:
    answer = httpx.request(method, node.admin + path, json=body, timeout=10)
    if answer.status_code not in (200, 201):
        raise SystemExit(f"{method} {path}: {answer.status_code} {answer.text}")
    return answer.json()


def seed(node: Node, upstream: str) -> None:
    admin(node, "POST", "/plugins", {"name": "billable"})
    admin(node, "POST", "/services", {"name": "weather", "url": upstream})
    admin(node, "POST", "/services/weather/routes", {"name": "forecast", "paths": ["/forecast"]})
    admin(node, "POST", "/services/weather/routes", {"name": "history", "paths": ["/history"]})
    admin(node, "POST", "/plugins", {"name": "key-auth"})
    admin(node, "POST", "/meters", {"name": "calls", "service": {"name": "weather"}, "status": ["2xx"]})
    admin(node, "POST", "/plans", {"name": "starter", "currency": "USD", "base_fee": "19"})
    admin(node, "POST", "/plans/starter/charges", {"meter": {"name": "calls"}, "model": "graduated", "tiers": [
        {"up_to": 100, "unit_price": "0"}, {"up_to": None, "unit_price": "0.002"}]})
    admin(node, "POST", "/plans/starter/entitlements", {"meter": {"name": "calls"}, "limit": 150, "period": "day",
                                                        "enforcement": "soft"})
    for name in CONSUMERS:
        admin(node, "POST", "/consumers", {"username": name})
        admin(node, "POST", f"/consumers/{name}/key-auth", {"key": f"{name}-key"})
        admin(node, "POST", f"/consumers/{name}/subscriptions", {"plan": {"name": "starter"}})


def traffic(node: Node) -> int:
    shuffle = random.Random(7)
    sent = 0
    with httpx.Client(base_url=node.proxy, timeout=10) as proxy:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if proxy.get("/forecast/requests", headers={"apikey": "acme-key"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        for name, count in CONSUMERS.items():
            for _ in range(count):
                roll = shuffle.random()
                path = ("/forecast/status/500" if roll < 0.03 else "/history/status/404" if roll < 0.1
                        else f"/history/delay/{shuffle.randint(5, 40)}" if roll < 0.3 else "/forecast/requests")
                proxy.get(path, headers={"apikey": f"{name}-key"})
                sent += 1
        for _ in range(12):
            proxy.get("/forecast/requests")  # no key: 401
            sent += 1
    return sent + 1


def main() -> None:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs"
    executable = chromium_path()
    if executable is None:
        raise SystemExit("needs chromium (Debian: apt-get install chromium)")
    upstream, port = mockbin.spawn()
    with tempfile.TemporaryDirectory() as tmp:
        node = Node(make_settings(Path(tmp) / "prefix", "sqlite", portal_listen=f"127.0.0.1:{free_port()}"))
        try:
            node.bootstrap()
            node.start()
            seed(node, f"http://127.0.0.1:{port}")
            sent = traffic(node)
            node.wait_until(lambda: sum(row["requests"] for row in node.json("/billable?period=year&group_by=")
                                        ["data"]) >= sent, timeout=15, what="the calls metered")
            portal = admin(node, "POST", "/consumers/acme/portal_tokens", {"ttl": 600})["url"]
            shoot(executable, node, portal, out)
        finally:
            node.close()
            upstream.terminate()
            upstream.wait(timeout=10)


def shoot(executable: str, node: Node, portal: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            for name, url, width in (("dashboard-overview", node.admin + "/dashboard?span=hour", 1280),
                                     ("dashboard-consumer", node.admin + "/dashboard/consumers/acme?span=hour", 1280),
                                     ("dashboard-phone", node.admin + "/dashboard?span=hour", 390),
                                     ("portal", portal, 1280)):
                page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
                page.goto(url)
                page.wait_for_selector("#traffic[data-drawn=yes]")
                if name == "dashboard-overview":
                    page.wait_for_selector('[data-table="alerts"] tbody tr', timeout=15_000)
                page.screenshot(path=str(out / f"{name}.png"), full_page=True)
                page.close()
                print(f"wrote {out / (name + '.png')}")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
