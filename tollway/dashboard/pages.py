"""The dashboard's and the portal's page bodies, rendered from figures.py's figures.

Each live region is rendered by one function, used for the whole page and for the partial htmx
fetches every few seconds, so a refresh swaps in exactly what a reload would show.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tollway.dashboard.figures import CLASSES, SPANS, STEP, Alert, Latency, Ranked, Traffic
from tollway.dashboard.html import (
    chart,
    data_json,
    esc,
    gauge,
    live,
    millis,
    number,
    percent,
    stat,
    stats,
    table,
    when,
)

SELECTED = ' aria-current="true"'


def span_links(base: str, current: str) -> str:
    links = "".join(f'<li><a href="{esc(base)}?span={name}"{SELECTED if name == current else ""}>'
                    f"{esc(span.label)}</a></li>" for name, span in SPANS.items())
    return f'<nav class="spans" aria-label="Range"><ul>{links}</ul></nav>'


def traffic_data(ident: str, found: Traffic) -> str:
    """The chart's data, for dashboard.js: bucket starts and calls per minute per status class."""
    series = found.per_minute()
    payload = {"times": found.times, "classes": list(CLASSES), "series": [series[name] for name in CLASSES],
               "step": STEP[found.span.period]}
    billable = "&".join(f"{key}={quote(value)}" for key, value in found.billable.items())
    return (f'<div id="{esc(ident)}" hidden data-series="{data_json(payload)}" '
            f'data-billable="{esc(billable)}" data-total="{found.total}"></div>')


def consumer_link(base: str, ranked: Ranked) -> str:
    if not ranked.id:
        return esc(ranked.name)
    return f'<a href="{esc(base)}/consumers/{esc(quote(ranked.id, safe=""))}">{esc(ranked.name)}</a>'


def overview_figures(base: str, found: Traffic, consumers: list[Ranked], routes: list[Ranked], latency: Latency,
                     alerts: list[Alert], checked_at: int | None) -> str:
    """The overview's live region: totals, error rate, latency, top consumers and routes, alerts."""
    figures = stats([
        stat("total", "Calls", number(found.total), found.span.label),
        stat("error_rate", "Error rate (5xx)", percent(found.error_rate), f"{number(found.errors)} errors"),
        stat("client_errors", "Client errors (4xx)", number(found.by_class.get("4xx", 0))),
        stat("p50", "Latency p50", millis(latency.p50)),
        stat("p95", "Latency p95", millis(latency.p95)),
        stat("p99", "Latency p99", millis(latency.p99)),
    ])
    top_consumers = table("Top consumers", ("Consumer", "Calls"),
                          ([consumer_link(base, item), esc(number(item.requests))] for item in consumers),
                          name="consumers", empty="No calls in this range.")
    top_routes = table("Top routes", ("Route", "Calls", "p50", "p95", "p99"),
                       ([esc(item.name), esc(number(item.requests)), esc(millis(item.p50)), esc(millis(item.p95)),
                         esc(millis(item.p99))] for item in routes),
                       name="routes", empty="No calls in this range.")
    checked = f"Quota alerts (checked {when(checked_at)})" if checked_at is not None else "Quota alerts"
    quota = table(checked, ("Consumer", "Meter", "Used", "Resets at"),
                  ([consumer_link(base, Ranked(alert.consumer.get("id", ""), alert.consumer.get("username")
                                               or alert.consumer.get("id", ""), 0)),
                    esc(alert.entitlement["meter"]),
                    gauge(alert.entitlement["used"], alert.entitlement["limit"]),
                    esc(alert.entitlement["resets_at"])] for alert in alerts),
                  name="alerts", empty="No entitlement is near its limit." if checked_at is not None
                  else "Checking the entitlements of every subscription…")
    return (traffic_data("traffic-data", found) + figures
            + f'<div class="grid">{top_consumers}{top_routes}</div>{quota}')


def overview(base: str, span: str, figures: str) -> str:
    return (span_links(base, span)
            + chart("traffic", "Calls per minute by status class", "traffic-data")
            + live("overview-figures", f"{base}/partials/overview?span={span}", figures, "Figures"))


def usage_figures(usage: dict[str, Any] | None, found: Traffic) -> str:
    """A consumer's live region: its calls, its amount so far, meters and entitlements."""
    calls = stats([stat("total", "Calls", number(found.total), found.span.label),
                   stat("error_rate", "Error rate (5xx)", percent(found.error_rate))])
    if usage is None:
        return (traffic_data("traffic-data", found) + calls
                + '<section class="card"><h2>Billing</h2><p class="empty">No active subscription.</p></section>')
    period = usage["period"]
    money = stats([
        stat("amount", "Amount so far", f'{usage["total"]} {usage["currency"]}'),
        stat("plan", "Plan", str(usage["subscription"].get("plan", {}).get("name")
                                 or usage["subscription"].get("plan", {}).get("id", ""))),
        stat("period", "Billing period", f'{period["start"][:10]} to {period["end"][:10]}'),
    ])
    meters = table("Usage per meter", ("Meter", "Units", "Amount"),
                   ([esc(item["meter"]), esc(number(item["units"])),
                     esc("–" if item["amount"] is None else f'{item["amount"]} {usage["currency"]}')]
                    for item in usage["meters"]), name="meters", empty="The plan meters nothing.")
    limits = table("Entitlements", ("Meter", "Used of limit", "Remaining", "Resets at"),
                   ([esc(item["meter"]), gauge(item["used"], item["limit"]), esc(number(item["remaining"])),
                     esc(item["resets_at"])] for item in usage["entitlements"]),
                   name="entitlements", empty="No entitlements.")
    return traffic_data("traffic-data", found) + calls + money + f'<div class="grid">{meters}{limits}</div>'


def consumer(base: str, partial: str, span: str, who: dict[str, Any], figures: str, keys: list[dict[str, Any]],
             tokens: list[dict[str, Any]], csrf: str, new_token: tuple[str, str | None] | None) -> str:
    here = f"{base}/consumers/{quote(who['id'], safe='')}"
    identity = stats([stat("consumer_id", "Id", who["id"]),
                      stat("custom_id", "Custom id", who.get("custom_id") or "–")])
    key_rows = ([esc(key["id"]), esc(masked(key.get("key"))), esc(when(key.get("created_at"))),
                 esc("never" if not key.get("ttl") else f'in {number(key["ttl"])} s')] for key in keys)
    keys_table = table("Keys", ("Id", "Key", "Created", "Expires"), key_rows, name="keys", empty="No keys.")

    def revoke(item: dict[str, Any]) -> str:
        return (f'<form method="post" action="{esc(here)}/portal_tokens/{esc(item["id"])}/delete">'
                f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
                f'<button type="submit" aria-label="Revoke token {esc(item["id"])}">Revoke</button></form>')

    token_rows = ([esc(item["id"]), esc(when(item["created_at"])), esc(when(item["expires_at"])), revoke(item)]
                  for item in tokens)
    shown = ""
    if new_token is not None:
        token, url = new_token
        shown = (f'<p class="notice" role="status">New portal token (shown once): <code data-token>{esc(token)}</code>'
                 + (f' — <a href="{esc(url)}">{esc(url)}</a>' if url else "") + "</p>")
    create = (f'<form method="post" action="{esc(here)}/portal_tokens" class="inline">'
              f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
              f'<label for="ttl_days">Valid for (days)</label>'
              f'<input id="ttl_days" name="ttl_days" type="number" min="1" max="366" value="30" required>'
              f'<button type="submit">Create a portal token</button></form>')
    portal = table("Portal tokens", ("Id", "Created", "Expires", ""), token_rows, name="tokens",
                   empty="No portal tokens.")
    return (identity + span_links(here, span)
            + chart("traffic", "Calls per minute by status class", "traffic-data")
            + live("consumer-figures", partial, figures, "Usage")
            + keys_table + shown + portal + f'<section class="card">{create}</section>')


def masked(key: str | None) -> str:
    """A key as a page may show it: a hash is named as such, a readable key shows 4 characters."""
    if not key:
        return "–"
    if key.startswith("sha256:"):
        return "stored hashed"
    return key[:4] + "…" + "•" * 8


def plans(found: list[dict[str, Any]], subscribers: dict[str, int]) -> str:
    if not found:
        return '<p class="empty">No plans yet.</p>'
    out = []
    for plan in found:
        charges = table("Charges", ("Meter", "Model", "Price", "Tiers"),
                        ([esc(item["meter"]), esc(item["model"]), esc(price(item)), esc(tiers(item))]
                         for item in plan["charges"]), name="charges", empty="No charges.")
        limits = table("Entitlements", ("Meter", "Limit", "Per", "Enforcement"),
                       ([esc(item["meter"]), esc(number(item["limit"])), esc(item["period"]), esc(item["enforcement"])]
                        for item in plan["entitlements"]), name="plan-entitlements", empty="No entitlements.")
        facts = stats([stat("currency", "Currency", plan["currency"]), stat("interval", "Billed", plan["interval"]),
                       stat("base_fee", "Base fee", f'{plan["base_fee"]} {plan["currency"]}'),
                       stat("subscribers", "Subscribers", number(subscribers.get(plan["id"], 0)))])
        out.append(f'<section class="plan" aria-labelledby="plan-{esc(plan["id"])}">'
                   f'<h2 id="plan-{esc(plan["id"])}">{esc(plan["name"])}</h2>{facts}'
                   f'<div class="grid">{charges}{limits}</div></section>')
    return "".join(out)


def price(charge: dict[str, Any]) -> str:
    if charge.get("unit_price") is not None:
        return f'{charge["unit_price"]} per unit'
    if charge.get("package_price") is not None:
        return f'{charge["package_price"]} per {charge.get("package_size")} units'
    return "by tier"


def tiers(charge: dict[str, Any]) -> str:
    found = charge.get("tiers") or []
    return "; ".join(f'up to {tier.get("up_to") if tier.get("up_to") is not None else "∞"}: '
                     f'{tier.get("unit_price", "0")}' + (f' + {tier["flat_price"]}' if tier.get("flat_price") else "")
                     for tier in found) or "–"
