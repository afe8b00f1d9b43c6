"""HTML building blocks of the dashboard and the portal: escaping, the page frame, figures, charts.

Every value that reaches a page goes through `esc` (html.escape with quotes); markup is built with
f-strings from escaped parts only. Pages carry no inline script: data for the charts travels in
`data-*` attributes (JSON, escaped) and static/dashboard.js draws them, so the Content-Security-Policy
can say `script-src 'self'`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
           "Cache-Control": "no-store"}
# htmx: no <style> injected (the CSP), no script run from swapped content.
HTMX_CONFIG = html.escape(orjson.dumps({"includeIndicatorStyles": False, "allowScriptTags": False,
                                                     "allowEval": False}).decode())
REFRESH_SECONDS = 5
CURRENT = ' aria-current="page"'


def esc(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def data_json(value: Any) -> str:
    """A value as JSON inside a double-quoted attribute."""
    return html.escape(orjson.dumps(value).decode(), quote=True)


def when(epoch: int | None) -> str:
    """An instant as `2026-12-06 04:59:30 UTC`."""
    if epoch is None:
        return "never"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: int | float | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.2f}"
    return f"{int(value):,}"


def millis(value: float | None) -> str:
    return "–" if value is None else f"{value:,.3f} ms".replace(".000 ms", " ms")


def percent(value: float | None) -> str:
    return "–" if value is None else f"{value * 100:.2f}%"


def page(title: str, body: str, *, static: str, nav: Sequence[tuple[str, str]] = (), current: str = "",
         header_extra: str = "") -> str:
    """A whole page: head with the vendored libraries, a skip link, navigation and `body` as main."""
    links = "".join(f'<li><a href="{esc(href)}"{CURRENT if href == current else ""}>{esc(label)}</a></li>'
                    for label, href in nav)
    head = (f'<link rel="stylesheet" href="{static}/uPlot.min.css">'
            f'<link rel="stylesheet" href="{static}/dashboard.css">'
            f'<script src="{static}/htmx.min.js" defer></script>'
            f'<script src="{static}/uPlot.iife.min.js" defer></script>'
            f'<script src="{static}/dashboard.js" defer></script>')
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta name="htmx-config" content="{HTMX_CONFIG}">'
            f'<title>{esc(title)} · Tollway</title><link rel="icon" href="data:,">{head}</head><body>'
            f'<a class="skip" href="#main">Skip to content</a><header><span class="brand">Tollway</span>'
            f'<nav aria-label="Pages"><ul>{links}</ul></nav>{header_extra}</header>'
            f'<main id="main"><h1>{esc(title)}</h1>{body}</main></body></html>')


def live(ident: str, url: str, inner: str, label: str) -> str:
    """A region htmx replaces every REFRESH_SECONDS with the same region freshly rendered at `url`."""
    return (f'<section id="{esc(ident)}" class="live" aria-label="{esc(label)}" hx-get="{esc(url)}" '
            f'hx-trigger="every {REFRESH_SECONDS}s" hx-swap="outerHTML">{inner}</section>')


def stat(name: str, label: str, value: str, detail: str = "") -> str:
    extra = f'<span class="detail">{esc(detail)}</span>' if detail else ""
    return f'<div class="stat"><dt>{esc(label)}</dt><dd data-figure="{esc(name)}">{esc(value)}</dd>{extra}</div>'


def stats(items: Iterable[str]) -> str:
    return f'<dl class="stats">{"".join(items)}</dl>'


def table(caption: str, head: Sequence[str], rows: Iterable[Sequence[str]], *, name: str, empty: str) -> str:
    """A table of already escaped cells; `empty` (text) when there are no rows."""
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return (f'<section class="card"><h2>{esc(caption)}</h2>'
                f'<p class="empty" data-table="{esc(name)}">{esc(empty)}</p></section>')
    cols = "".join(f'<th scope="col">{esc(h)}</th>' for h in head)
    return (f'<section class="card"><h2>{esc(caption)}</h2><div class="scroll"><table data-table="{esc(name)}">'
            f"<thead><tr>{cols}</tr></thead><tbody>{body}</tbody></table></div></section>")


def chart(ident: str, title: str, source: str) -> str:
    """A uPlot chart drawn by dashboard.js from the data of the element `source` (live: redrawn when
    that element is swapped); the figure's description says what it shows for screen readers."""
    return (f'<figure class="card chart-card"><figcaption id="{esc(ident)}-title">{esc(title)}</figcaption>'
            f'<div class="chart" id="{esc(ident)}" data-source="{esc(source)}" role="img" '
            f'aria-labelledby="{esc(ident)}-title"></div></figure>')


def gauge(used: int, limit: int) -> str:
    """used of limit, as a <meter> with its words."""
    return (f'<meter min="0" max="{max(limit, 1)}" low="{int(limit * 0.8)}" high="{limit}" optimum="0" '
            f'value="{min(used, max(limit, 1))}" aria-label="{esc(f"{used} of {limit} used")}"></meter> '
            f'<span class="used">{esc(number(used))} of {esc(number(limit))}</span>')
