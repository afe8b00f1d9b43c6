"""Invoices and credit notes on the Admin API (added to billing's routes by api.py).

    GET  /invoices                         ?consumer= &status= &period=YYYY-MM (or period_from, period_to),
                                           Kong's pages; ?format=csv:
                                           the finance export (every line of every matching invoice)
    GET  /invoices/{invoice}               by id or number, with its lines; .csv its lines, .html its page
    POST /invoices/{invoice}/refresh       a draft re-read from the ledger now
    POST /invoices/{invoice}/finalize      a draft finalized now (number, issue and due dates)
    POST /invoices/{invoice}/void          a draft or finalized invoice voided
    POST /credit_notes                     {invoice, amount, reason[, description]}: up to what is left
    GET  /credit_notes                     ?invoice= &consumer=, Kong's pages

Errors are Kong's shapes: bad fields a schema violation (400) listing every problem, a state that
forbids the action 409, an unknown invoice 404.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from tollway.admin import errors
from tollway.admin.body import read_body
from tollway.admin.context import AdminContext
from tollway.admin.errors import ApiError
from tollway.admin.openapi import NESTED_LIST_PARAMS
from tollway.admin.pagination import PageQuery
from tollway.admin.responses import json_response
from tollway.billing import api_docs as docs
from tollway.billing import invoice_run, invoice_store
from tollway.billing.currency import currency
from tollway.billing.invoice_documents import credit_note_json, export_csv, invoice_html, invoice_json
from tollway.billing.invoicing import STATUSES
from tollway.billing.ledger_usage import RetentionExceeded
from tollway.billing.money import minor_units, parse_price
from tollway.errors import NotFound, SchemaViolation

REASONS = ("duplicated_charge", "product_unsatisfactory", "order_change", "order_cancellation",
           "fraudulent_charge", "other")
MONTH = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")
EXPORT_PAGE = 1000
ACTIONS = ("refresh", "finalize", "void")


Endpoint = Callable[[Request], Awaitable[Response]]


def _acting(act: Callable[[Request, str], Awaitable[Response]], action: str) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        return await act(request, action)

    return endpoint


async def _consumer_id(ctx: AdminContext, conn: AsyncConnection, ident: str) -> str:
    found = await ctx.daos["consumers"].get(conn, ident)
    if found is None:
        raise errors.invalid_options("consumer", f"no consumer '{ident}'")
    return str(found["id"])


async def _find(conn: AsyncConnection, ident: str) -> dict[str, Any]:
    found = await invoice_store.find_invoice(conn, ident)
    if found is None:
        raise NotFound("invoices")
    return found


async def _full(conn: AsyncConnection, row: dict[str, Any]) -> dict[str, Any]:
    lines = await invoice_store.read_lines(conn, [row["id"]])
    return invoice_json(row, lines[row["id"]], await invoice_store.credited_minor(conn, row["id"]))


PERIODS = ("period", "period_from", "period_to")


def _filters(query: Any) -> dict[str, Any]:
    status = query.get("status")
    if status is not None and status not in STATUSES:
        raise errors.invalid_options("status", "expected one of: " + ", ".join(STATUSES))
    for name in PERIODS:
        if query.get(name) is not None and not MONTH.match(query[name]):
            raise errors.invalid_options(name, "expected a month as YYYY-MM")
    return {"status": status, **{name: query.get(name) for name in PERIODS}}


def _csv(body: str, filename: str) -> Response:
    return Response(body, media_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _credit_note(data: dict[str, Any]) -> tuple[str | None, Decimal | None, str | None, dict[str, Any]]:
    """(invoice ident, amount, reason, problems) from a POST /credit_notes body."""
    problems: dict[str, Any] = {key: "unknown field" for key in data
                                if key not in ("invoice", "amount", "reason", "description")}
    invoice = data.get("invoice")
    if isinstance(invoice, dict):
        invoice = invoice.get("id") or invoice.get("number")
    if not isinstance(invoice, str) or not invoice:
        problems["invoice"] = "required field missing" if invoice is None else "expected an invoice id or number"
        invoice = None
    amount = None
    if data.get("amount") is None:
        problems["amount"] = "required field missing"
    else:
        try:
            amount = parse_price(data["amount"])
        except ValueError as exc:
            problems["amount"] = str(exc)
        else:
            if amount <= 0:
                problems["amount"] = "must be greater than 0"
    reason = data.get("reason")
    if reason not in REASONS:
        problems["reason"] = "required field missing" if reason is None else "expected one of: " + ", ".join(REASONS)
    if data.get("description") is not None and not isinstance(data["description"], str):
        problems["description"] = "expected a string"
    return invoice, amount, reason if isinstance(reason, str) else None, problems


def routes(ctx: AdminContext) -> list[BaseRoute]:
    async def list_invoices(request: Request) -> Response:
        query = request.query_params
        filters = _filters(query)
        page = PageQuery.parse(query, nested=True)
        async with ctx.db.connect() as conn:
            if query.get("consumer"):
                filters["consumer_id"] = await _consumer_id(ctx, conn, query["consumer"])
            if query.get("format") == "csv":
                return _csv(export_csv(await _everything(conn, filters)), "invoices.csv")
            if query.get("format") not in (None, "json"):
                raise errors.invalid_options("format", "expected json or csv")
            rows = await invoice_store.list_invoices(conn, after=page.after, size=page.size, **filters)
            lines = await invoice_store.read_lines(conn, [row["id"] for row in rows])
        data = [invoice_json(row, lines[row["id"]]) for row in rows]
        next_path, offset = page.next_path("/invoices", rows[-1]["id"] if len(rows) == page.size else None)
        given = {key: query[key] for key in ("consumer", "status", *PERIODS) if key in query}
        if next_path is not None and given:
            next_path += "&" + urlencode(given)
        answer: dict[str, Any] = {"data": data, "next": next_path}
        if offset is not None:
            answer["offset"] = offset
        return json_response(answer)

    async def _everything(conn: AsyncConnection, filters: dict[str, Any]) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        after = None
        while True:
            rows = await invoice_store.list_invoices(conn, after=after, size=EXPORT_PAGE, **filters)
            lines = await invoice_store.read_lines(conn, [row["id"] for row in rows])
            found += [invoice_json(row, lines[row["id"]]) for row in rows]
            if len(rows) < EXPORT_PAGE:
                return found
            after = rows[-1]["id"]

    async def show(request: Request) -> Response:
        async with ctx.db.connect() as conn:
            invoice = await _full(conn, await _find(conn, request.path_params["ident"]))
        return json_response(invoice)

    async def show_csv(request: Request) -> Response:
        async with ctx.db.connect() as conn:
            invoice = await _full(conn, await _find(conn, request.path_params["ident"]))
        return _csv(export_csv([invoice]), f"{invoice['number'] or invoice['id']}.csv")

    async def show_html(request: Request) -> Response:
        async with ctx.db.connect() as conn:
            invoice = await _full(conn, await _find(conn, request.path_params["ident"]))
        page = invoice_html(invoice, ctx.settings.invoice_issuer_name, ctx.settings.invoice_issuer_address)
        return Response(page, media_type="text/html; charset=utf-8")

    async def act(request: Request, action: str) -> Response:
        async with ctx.db.connect() as conn:
            invoice = await _find(conn, request.path_params["ident"])
        try:
            if action == "void":
                async with ctx.db.begin() as conn:
                    await invoice_store.void(conn, invoice["id"], int(time.time()))
            else:
                await invoice_run.bill_one(ctx.db, ctx.settings, invoice["id"], finalize=action == "finalize")
        except invoice_store.InvoiceStateError as exc:
            raise ApiError(409, {"message": f"invoice is {invoice['status']}: {exc}"}) from None
        except RetentionExceeded as exc:
            raise ApiError(409, {"message": str(exc)}) from None
        async with ctx.db.connect() as conn:
            return json_response(await _full(conn, await _find(conn, invoice["id"])))

    async def create_credit_note(request: Request) -> Response:
        data, _form = await read_body(request)
        ident, amount, reason, problems = _credit_note(data)
        now = int(time.time())
        async with ctx.db.begin() as conn:
            invoice = None
            if ident is not None:
                try:
                    invoice = await _find(conn, ident)
                except NotFound:
                    if not problems:  # a well-formed request naming no invoice: Kong's unresolved reference
                        raise errors.foreign_keys_unresolved("invoice", "id", ident, "invoices") from None
                    problems["invoice"] = f"no invoice '{ident}'"
            if invoice is not None and invoice["status"] != "finalized":
                problems["invoice"] = f"is {invoice['status']}: only a finalized invoice can be credited"
            if invoice is not None and amount is not None and "invoice" not in problems:
                money = currency(invoice["currency"])
                try:
                    minor = minor_units(amount, money)
                except ValueError:
                    problems["amount"] = f"has more decimals than {money.code}'s minor unit"
                else:
                    left = invoice["total_minor"] - await invoice_store.credited_minor(conn, invoice["id"])
                    if minor > left:
                        problems["amount"] = f"is more than what is left to credit on the invoice ({left} minor units)"
            if problems or invoice is None or amount is None or reason is None:
                raise SchemaViolation(problems)
            row = {"id": str(uuid.uuid4()), "created_at": now, "updated_at": now, "invoice_id": invoice["id"],
                   "consumer_id": invoice["consumer_id"], "currency": invoice["currency"], "reason": reason,
                   "description": data.get("description"), "amount": format(amount, "f"), "amount_minor": minor,
                   "applied_minor": 0}
            await invoice_store.insert_credit_note(conn, row)
        return json_response(credit_note_json(row), 201)

    async def list_credit_notes(request: Request) -> Response:
        query = request.query_params
        page = PageQuery.parse(query, nested=True)
        async with ctx.db.connect() as conn:
            filters: dict[str, Any] = {}
            if query.get("consumer"):
                filters["consumer_id"] = await _consumer_id(ctx, conn, query["consumer"])
            if query.get("invoice"):
                try:
                    filters["invoice_id"] = (await _find(conn, query["invoice"]))["id"]
                except NotFound:
                    raise errors.invalid_options("invoice", f"no invoice '{query['invoice']}'") from None
            rows = await invoice_store.list_credit_notes(conn, after=page.after, size=page.size, **filters)
        next_path, offset = page.next_path("/credit_notes", rows[-1]["id"] if len(rows) == page.size else None)
        answer: dict[str, Any] = {"data": [credit_note_json(row) for row in rows], "next": next_path}
        if offset is not None:
            answer["offset"] = offset
        return json_response(answer)

    return [
        Route("/invoices", list_invoices, methods=["GET"]),
        Route("/invoices/{ident}.csv", show_csv, methods=["GET"]),
        Route("/invoices/{ident}.html", show_html, methods=["GET"]),
        Route("/invoices/{ident}", show, methods=["GET"]),
        *(Route(f"/invoices/{{ident}}/{action}", _acting(act, action), methods=["POST"]) for action in ACTIONS),
        Route("/credit_notes", create_credit_note, methods=["POST"]),
        Route("/credit_notes", list_credit_notes, methods=["GET"]),
    ]


AMOUNT = {"type": "string", "description": "rounded once, half up, to the currency's minor unit"}
MINOR = {"type": "integer", "description": "the amount in minor units (cents)"}
INVOICE_PARAM = docs.path_param("ident", "the invoice's id or number")
INVOICE = docs.obj({
    "id": {"type": "string"}, "number": {"type": "string", "nullable": True},
    "status": {"type": "string", "enum": list(STATUSES)}, "consumer": {"type": "object"},
    "subscription": {"type": "object"}, "customer": {"type": "object"}, "period": {"type": "string"},
    "period_start": {"type": "string"}, "period_end": {"type": "string"}, "tz": {"type": "string"},
    "currency": {"type": "string"}, "subtotal": AMOUNT, "subtotal_minor": MINOR, "credits": AMOUNT,
    "credits_minor": MINOR, "total": AMOUNT, "total_minor": MINOR,
    "issued_at": {"type": "string", "nullable": True}, "due_at": {"type": "string", "nullable": True},
    "lines": {"type": "array", "items": docs.obj({
        "kind": {"type": "string", "enum": ["base_fee", "usage", "minimum_commitment",
                                              "base_fee_credit", "base_fee_charge", "credit"]},
        "plan": {"type": "object", "nullable": True}, "meter": {"type": "string", "nullable": True},
        "quantity": {"type": "string", "nullable": True}, "unit_price": {"type": "string", "nullable": True},
        "tiers": {"type": "array", "items": {"type": "object"}}, "amount": AMOUNT, "amount_minor": MINOR})}},
    ["id", "status", "currency", "total", "total_minor"])
CREDIT_NOTE = docs.obj({"id": {"type": "string"}, "invoice": {"type": "object"}, "consumer": {"type": "object"},
                        "currency": {"type": "string"}, "reason": {"type": "string", "enum": list(REASONS)},
                        "description": {"type": "string", "nullable": True}, "amount": AMOUNT,
                        "amount_minor": MINOR, "applied_minor": MINOR})


def _query(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": {"type": "string", **schema}}


# A decimal string above 0 (with at most 12 decimals, as a price); the currency may allow fewer.
POSITIVE_AMOUNT = r"^0*([1-9][0-9]{0,17}(\.[0-9]{1,12})?|0\.[0-9]{0,11}[1-9])$"
PAGES = NESTED_LIST_PARAMS  # size and offset, as every listing's


def _page(items: dict[str, Any]) -> dict[str, Any]:
    return docs.obj({"data": {"type": "array", "items": items}, "next": {"type": "string", "nullable": True},
                     "offset": {"type": "string"}}, ["data", "next"])


def _text(description: str, media: str) -> dict[str, Any]:
    return {"200": {"description": description, "content": {media: {"schema": {"type": "string"}}}}}


def _action(action: str, summary: str, e409: str) -> dict[str, Any]:
    return {"post": {"summary": summary, "operationId": f"{action}-invoice", "tags": ["invoices"],
                     "parameters": [INVOICE_PARAM],
                     "responses": {**docs.ok("the invoice", INVOICE),
                                   **docs.errors(e404="no such invoice", e409=e409)}}}


OPENAPI: dict[str, Any] = {
    "/invoices": {"get": {
        "summary": "Invoices, by id; ?format=csv: every line of every matching invoice (finance export)",
        "operationId": "list-invoices", "tags": ["invoices"],
        "parameters": [_query("consumer", "a consumer's id or username"),
                       _query("status", "draft, finalized or void", enum=list(STATUSES)),
                       _query("period", "the month the billing periods start in (local), YYYY-MM",
                              pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
                       _query("period_from", "periods that start in this month (YYYY-MM) or later",
                              pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
                       _query("period_to", "periods that start in this month (YYYY-MM) or earlier",
                              pattern=r"^\d{4}-(0[1-9]|1[0-2])$"),
                       _query("format", "json (default) or csv", enum=["json", "csv"]), *PAGES],
        "responses": {**docs.ok("a page of invoices", _page(INVOICE)),
                      **docs.errors(e400="a bad filter, size or offset, or an unknown consumer")}}},
    "/invoices/{ident}": {"get": {
        "summary": "One invoice with its lines", "operationId": "get-invoice", "tags": ["invoices"],
        "parameters": [INVOICE_PARAM],
        "responses": {**docs.ok("the invoice", INVOICE), **docs.errors(e404="no such invoice")}}},
    "/invoices/{ident}.csv": {"get": {
        "summary": "One invoice's lines as CSV (the finance export's columns)", "operationId": "get-invoice-csv",
        "tags": ["invoices"], "parameters": [INVOICE_PARAM],
        "responses": {**_text("the lines", "text/csv"), **docs.errors(e404="no such invoice")}}},
    "/invoices/{ident}.html": {"get": {
        "summary": "One invoice as a printable page", "operationId": "get-invoice-html", "tags": ["invoices"],
        "parameters": [INVOICE_PARAM],
        "responses": {**_text("the page", "text/html"), **docs.errors(e404="no such invoice")}}},
    "/invoices/{ident}/refresh": _action("refresh", "Re-read a draft's usage from the ledger now",
                                         "the invoice is not a draft"),
    "/invoices/{ident}/finalize": _action("finalize", "Finalize a draft now: its number, issue and due dates",
                                          "the invoice is not a draft"),
    "/invoices/{ident}/void": _action("void", "Void an invoice (its number stays taken)", "the invoice is void"),
    "/credit_notes": {
        "get": {"summary": "Credit notes, by id", "operationId": "list-credit-notes", "tags": ["invoices"],
                "parameters": [_query("invoice", "an invoice's id or number"),
                               _query("consumer", "a consumer's id or username"), *PAGES],
                "responses": {**docs.ok("a page of credit notes", _page(CREDIT_NOTE)),
                              **docs.errors(e400="a bad filter, size or offset")}},
        "post": {"summary": "Credit a finalized invoice; deducted on the consumer's next invoices",
                 "operationId": "create-credit-note", "tags": ["invoices"],
                 "requestBody": docs.body({**docs.obj({
                     "invoice": {"type": "string", "minLength": 1, "description": "the invoice's id or number"},
                     "amount": {"type": "string", "pattern": POSITIVE_AMOUNT,
                                "description": "greater than 0, at most what is left to credit on the invoice"},
                     "reason": {"type": "string", "enum": list(REASONS)},
                     "description": {"type": "string"}}, ["invoice", "amount", "reason"]),
                     "additionalProperties": False}, required=True),
                 "responses": {**docs.ok("the credit note", CREDIT_NOTE, 201),
                               **docs.errors(e400="a bad field: an unknown or unfinalized invoice, an amount over "
                                                  "what is left", e415="the body is neither JSON, url-encoded "
                                                                       "nor multipart")}}},
}
