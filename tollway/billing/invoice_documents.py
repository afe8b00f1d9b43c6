"""An invoice as the Admin API shows it: JSON, CSV lines (one invoice, or the finance export) and a
printable HTML page. Pure: stored rows in, text out.

The CSV columns are fixed (EXPORT_COLUMNS), one row per line, so a finance team's import keeps
working. The HTML page is plain markup with its CSS inline (no scripts, fonts or images to fetch),
laid out for A4 and Letter alike by its print rules.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable, Mapping, Sequence
from typing import Any
from zoneinfo import ZoneInfo

import orjson

from tollway.metering.periods import iso

EXPORT_COLUMNS = ("invoice_id", "invoice_number", "status", "consumer_id", "consumer", "plan", "charge",
                  "period_start", "period_end", "quantity", "unit_price", "amount", "amount_minor", "currency")
KIND_NAMES = {"base_fee": "Base fee (in advance)", "usage": "Usage",
              "minimum_commitment": "Minimum commitment true-up",
              "base_fee_credit": "Unused base fee", "base_fee_charge": "Base fee (prorated)", "credit": "Credit note"}


def _when(epoch: int | None, tz: ZoneInfo) -> str | None:
    return None if epoch is None else iso(epoch, tz)


def line_json(line: Mapping[str, Any], tz: ZoneInfo) -> dict[str, Any]:
    return {"kind": line["kind"], "plan": None if line["plan_id"] is None else {
                "id": line["plan_id"], "name": line["plan_name"], "version": line["plan_version"]},
            "meter": line["meter"], "model": line["model"], "starts_at": iso(line["starts_at"], tz),
            "ends_at": iso(line["ends_at"], tz), "quantity": line["quantity"], "unit_price": line["unit_price"],
            "tiers": line["tiers"], "proration": line["proration"],
            "credit_note": None if line["credit_note_id"] is None else {"id": line["credit_note_id"]},
            "amount": line["amount"], "amount_minor": line["amount_minor"]}


def invoice_json(row: Mapping[str, Any], lines: Sequence[Mapping[str, Any]] | None,
                 credited_minor: int | None = None) -> dict[str, Any]:
    """An invoice row (and its lines, when given) as JSON; `credited_minor`: what credit notes took back."""
    tz = ZoneInfo(row["tz"])
    answer = {
        "id": row["id"], "number": row["number"], "status": row["status"],
        "consumer": {"id": row["consumer_id"]}, "subscription": {"id": row["subscription_id"]},
        "customer": orjson.loads(row["customer"]), "period": row["period"],
        "period_start": iso(row["period_start"], tz), "period_end": iso(row["period_end"], tz),
        "period_start_epoch": row["period_start"], "period_end_epoch": row["period_end"], "tz": row["tz"],
        "currency": row["currency"], "subtotal": row["subtotal"], "subtotal_minor": row["subtotal_minor"],
        "credits": row["credits"], "credits_minor": row["credits_minor"],
        "total": row["total"], "total_minor": row["total_minor"],
        "issued_at": _when(row["issued_at"], tz), "due_at": _when(row["due_at"], tz),
        "voided_at": _when(row["voided_at"], tz), "created_at": row["created_at"], "updated_at": row["updated_at"],
    }
    if credited_minor is not None:
        answer["credited_minor"] = credited_minor
        answer["creditable_minor"] = max(row["total_minor"] - credited_minor, 0) if row["status"] == "finalized" else 0
    if lines is not None:
        answer["lines"] = [line_json(line, tz) for line in lines]
    return answer


def credit_note_json(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "invoice": {"id": row["invoice_id"]}, "consumer": {"id": row["consumer_id"]},
            "currency": row["currency"], "reason": row["reason"], "description": row["description"],
            "amount": row["amount"], "amount_minor": row["amount_minor"], "applied_minor": row["applied_minor"],
            "created_at": row["created_at"]}


def _charge(line: Mapping[str, Any]) -> str:
    if line["kind"] == "usage":
        return str(line["meter"])
    return str(line["kind"])


def export_rows(invoices: Iterable[Mapping[str, Any]]) -> Iterable[list[Any]]:
    """One row per line of each invoice (JSON as invoice_json gives it, with lines), EXPORT_COLUMNS' order."""
    for invoice in invoices:
        customer = invoice["customer"]
        who = customer.get("username") or customer.get("custom_id") or invoice["consumer"]["id"]
        for line in invoice["lines"]:
            plan = line["plan"]["name"] if line["plan"] else ""
            yield [invoice["id"], invoice["number"] or "", invoice["status"], invoice["consumer"]["id"], who, plan,
                   _charge(line), line["starts_at"], line["ends_at"], line["quantity"] or "", line["unit_price"] or "",
                   line["amount"], line["amount_minor"], invoice["currency"]]


def export_csv(invoices: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(export_rows(invoices))
    return out.getvalue()


PAGE_CSS = """
* { box-sizing: border-box; }
body { font: 11pt/1.4 "Helvetica Neue", Arial, sans-serif; color: #111; margin: 2em auto; max-width: 52em; }
header { display: flex; justify-content: space-between; gap: 2em; margin-bottom: 2em; }
h1 { font-size: 20pt; margin: 0 0 .3em; }
.muted { color: #555; }
dl { display: grid; grid-template-columns: auto auto; gap: .1em 1em; margin: 0; }
dt { color: #555; }
dd { margin: 0; }
table { width: 100%; border-collapse: collapse; margin-top: 1.5em; }
th, td { padding: .35em .5em; text-align: left; vertical-align: top; }
th { border-bottom: 2px solid #111; }
td.amount, th.amount { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
tr.line td { border-top: 1px solid #ccc; }
tr.tier td { font-size: 9pt; color: #444; padding-top: 0; }
tr.tier td:first-child { padding-left: 2em; }
tfoot td { border-top: 1px solid #111; font-weight: bold; }
tfoot tr.grand td { border-top: 2px solid #111; font-size: 13pt; }
.status { text-transform: uppercase; letter-spacing: .1em; font-weight: bold; }
.void { color: #b00; }
@page { size: auto; margin: 18mm 16mm; }
@media print {
  body { margin: 0; max-width: none; }
  tr, thead, tfoot { page-break-inside: avoid; }
  thead { display: table-header-group; }
}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _line_title(line: Mapping[str, Any]) -> str:
    title = KIND_NAMES.get(line["kind"], line["kind"])
    if line["kind"] == "usage":
        title = f"{line['meter']} ({line['model']})"
    if line["plan"]:
        title += f" · {line['plan']['name']} v{line['plan']['version']}"
    return title


def _tier_rows(line: Mapping[str, Any]) -> list[str]:
    rows = []
    for tier in line["tiers"]:
        upper = "∞" if tier["to"] is None else tier["to"]
        count = f"{tier['packages']} packages" if "packages" in tier else f"{tier['units']} units"
        fee = f" + {tier['flat_fee']}" if tier["flat_fee"] != "0" else ""
        rows.append(f'<tr class="tier"><td>{_e(tier["from"])}–{_e(upper)}: {_e(count)} × {_e(tier["unit_price"])}'
                    f'{_e(fee)}</td><td></td><td></td><td class="amount">{_e(tier["amount"])}</td></tr>')
    return rows


def invoice_html(invoice: Mapping[str, Any], issuer_name: str, issuer_address: str) -> str:
    """The printable page of an invoice (JSON as invoice_json gives it, with lines)."""
    customer = invoice["customer"]
    currency = invoice["currency"]
    title = f"Invoice {invoice['number']}" if invoice["number"] else f"Draft invoice {invoice['id']}"
    rows = []
    for line in invoice["lines"]:
        period = f"{line['starts_at'][:10]} – {line['ends_at'][:10]}"
        rows.append(f'<tr class="line"><td>{_e(_line_title(line))}</td><td>{_e(period)}</td>'
                    f'<td class="amount">{_e(line["quantity"])}</td>'
                    f'<td class="amount">{_e(line["amount"])}</td></tr>')
        rows.extend(_tier_rows(line))
    address = "<br>".join(_e(part.strip()) for part in issuer_address.split(";") if part.strip())
    status_class = "status void" if invoice["status"] == "void" else "status"
    facts = [("Number", invoice["number"] or "—"), ("Status", invoice["status"]),
             ("Period", f"{invoice['period_start'][:10]} – {invoice['period_end'][:10]} ({invoice['tz']})"),
             ("Issued", (invoice["issued_at"] or "—")[:10]), ("Due", (invoice["due_at"] or "—")[:10]),
             ("Currency", currency)]
    billed_to = [("Customer", customer.get("username") or "—"), ("Custom id", customer.get("custom_id") or "—"),
                 ("External customer id", customer.get("external_customer_id") or "—")]

    def facts_list(pairs: Sequence[tuple[str, Any]]) -> str:
        return "<dl>" + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in pairs) + "</dl>"

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>
<style>{PAGE_CSS}</style></head>
<body>
<header>
  <div><h1>{_e(title)}</h1><div class="{status_class}">{_e(invoice["status"])}</div>
  <p><strong>{_e(issuer_name)}</strong><br>{address}</p></div>
  <div>{facts_list(facts)}</div>
</header>
<section><h2>Billed to</h2>{facts_list(billed_to)}</section>
<table>
<thead><tr><th>Description</th><th>Period</th><th class="amount">Quantity</th>
<th class="amount">Amount</th></tr></thead>
<tbody>
{"".join(rows)}
</tbody>
<tfoot>
<tr><td colspan="3">Subtotal</td><td class="amount" id="subtotal">{_e(invoice["subtotal"])} {_e(currency)}</td></tr>
<tr><td colspan="3">Credits</td><td class="amount" id="credits">{_e(invoice["credits"])} {_e(currency)}</td></tr>
<tr class="grand"><td colspan="3">Total due by {_e((invoice["due_at"] or "—")[:10])}</td>
<td class="amount" id="total">{_e(invoice["total"])} {_e(currency)}</td></tr>
</tfoot>
</table>
</body></html>
"""
