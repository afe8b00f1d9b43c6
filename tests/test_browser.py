"""The browser the web page tests drive: a real headless Chromium that runs scripts, draws on a
canvas and prints to PDF."""

from __future__ import annotations

from typing import Any

PAGE = """<!doctype html><html><body><h1>Tollway</h1><canvas id="c" width="20" height="20"></canvas>
<script>document.getElementById("c").getContext("2d").fillRect(0, 0, 10, 10);
document.querySelector("h1").dataset.ready = "yes";</script></body></html>"""


def test_a_headless_chromium_runs_scripts_draws_and_prints(browser: Any) -> None:
    page = browser.new_page()
    try:
        page.set_content(PAGE)
        assert page.get_attribute("h1", "data-ready") == "yes"
        drawn = page.evaluate("""() => {
            const pixels = document.getElementById("c").getContext("2d").getImageData(0, 0, 20, 20).data;
            return pixels.some((value, i) => i % 4 === 3 && value > 0);
        }""")
        assert drawn
        assert page.pdf().startswith(b"%PDF")
    finally:
        page.close()
