"""The operator's dashboard at /dashboard on the Admin API listener: overview, a consumer, plans.

Pages are rendered on the server (pages.py) from figures.py, which reads with the JSON API's own
code; htmx swaps each live region every few seconds (GET /dashboard/partials/...) and
static/dashboard.js redraws the uPlot charts from the swapped data, in place. With `admin_token`
set, pages want a session (session.py): a page redirects to the login form, a partial answers 401
with HX-Redirect. Every POST carries the CSRF token.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from tollway.admin.context import AdminContext
from tollway.dashboard import figures, pages, portal_tokens, session, static_files
from tollway.dashboard.html import HEADERS, esc, page
from tollway.dashboard.overview import Overview
from tollway.errors import TollwayError

log = logging.getLogger(__name__)

BASE = "/dashboard"
STATIC = f"{BASE}/static"
NAV = (("Overview", BASE), ("Plans", f"{BASE}/plans"))
Handler = Callable[[Request], Awaitable[Response]]


def html(text: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(text, status, headers={**HEADERS, **(headers or {})})


def portal_url(settings: Any, request: Request, token: str) -> str | None:
    """Where the portal answers this token: portal_listen's port, on the host the operator used
    for the dashboard when portal_listen names every interface."""
    if settings.portal_listen == "off":
        return None
    host, _, port = settings.portal_listen.rpartition(":")
    if host in ("0.0.0.0", "[::]", "::", ""):
        host = request.url.hostname or "127.0.0.1"
    return f"http://{host}:{port}/{token}"


def span_of(request: Request) -> figures.Span:
    return figures.SPANS.get(request.query_params.get("span", ""), figures.SPANS["hour"])


def routes(ctx: AdminContext) -> list[BaseRoute]:
    sessions = session.Sessions(ctx.settings.admin_token)
    consumers = ctx.daos["consumers"]
    quota = figures.QuotaWatch(ctx.settings)
    overview_reads = Overview(ctx.db, ctx.settings)

    def frame(title: str, body: str, current: str, csrf: str) -> str:
        logout = ""
        if sessions.required:
            logout = (f'<form method="post" action="{BASE}/logout" class="logout">'
                      f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
                      f'<button type="submit">Log out</button></form>')
        return page(title, body, static=STATIC, nav=NAV, current=current, header_extra=logout)

    def guarded(handler: Callable[[Request, str], Awaitable[Response]], *, partial: bool = False) -> Handler:
        """The handler with a session (when one is required) and a CSRF token; else the login form."""
        async def run(request: Request) -> Response:
            if not sessions.allows(request):
                if partial or request.method != "GET":
                    return Response("Log in first", 401, headers={"HX-Redirect": f"{BASE}/login"},
                                    media_type="text/plain")
                return RedirectResponse(f"{BASE}/login", 303)
            csrf, new = session.csrf_of(request)
            try:
                response = await handler(request, csrf)
            except TollwayError as exc:
                log.warning("dashboard: %s", exc)
                response = html(frame("Unavailable", f'<p role="alert">{esc(exc)}</p>', "", csrf), 503)
            if new:
                session.set_csrf(response, request, csrf)
            return response
        return run

    async def overview_figures(span: figures.Span, now: int) -> str:
        traffic, totals = await overview_reads.figures(span, now)
        alerts, checked_at = quota.current(now)
        top_consumers = await figures.named(ctx.db, totals.top_consumers())
        return pages.overview_figures(BASE, traffic, top_consumers, totals.top_routes(), totals.latency(),
                                      alerts, checked_at)

    async def overview(request: Request, csrf: str) -> Response:
        span = span_of(request)
        body = pages.overview(BASE, span.name, await overview_figures(span, int(time.time())))
        find = (f'<form method="get" action="{BASE}/consumers" class="inline find" role="search">'
                f'<label for="find-consumer">Consumer</label><input id="find-consumer" name="name" '
                f'placeholder="username or id" required><button type="submit">Open</button></form>')
        return html(frame("Overview", find + body, BASE, csrf))

    async def overview_partial(request: Request, _csrf: str) -> Response:
        span = span_of(request)
        figures_html = await overview_figures(span, int(time.time()))
        return html(pages.live("overview-figures", f"{BASE}/partials/overview?span={span.name}", figures_html,
                               "Figures"))

    async def find(request: Request, _csrf: str) -> Response:
        name = request.query_params.get("name", "").strip()
        return RedirectResponse(f"{BASE}/consumers/{quote(name, safe='')}" if name else BASE, 303)

    async def lookup(ident: str) -> dict[str, Any] | None:
        async with ctx.db.connect() as conn:
            return await consumers.get(conn, ident)

    async def consumer_figures(who: dict[str, Any], span: figures.Span, now: int) -> str:
        usage = await figures.consumer_usage(ctx.db, ctx.settings, who["id"], now)
        traffic = await figures.traffic(ctx.db, ctx.settings, span, now, consumer=who["id"])
        return pages.usage_figures(usage, traffic)

    def partial_url(who: dict[str, Any], span: figures.Span) -> str:
        return f"{BASE}/partials/consumers/{quote(who['id'], safe='')}?span={span.name}"

    async def consumer_page(request: Request, csrf: str, new_token: tuple[str, str | None] | None = None,
                            status: int = 200) -> Response:
        who = await lookup(request.path_params["consumer"])
        if who is None:
            return html(frame("Not found", '<p role="alert">No such consumer.</p>', "", csrf), 404)
        span = span_of(request)
        now = int(time.time())
        body_figures = await consumer_figures(who, span, now)
        async with ctx.db.connect() as conn:
            keys: list[dict[str, Any]] = []
            if "keyauth_credentials" in ctx.daos:
                keys, _ = await ctx.daos["keyauth_credentials"].page(conn, size=100, where={"consumer_id": who["id"]})
            tokens = await portal_tokens.of_consumer(conn, who["id"])
        body = pages.consumer(BASE, partial_url(who, span), span.name, who, body_figures, keys, tokens, csrf,
                              new_token)
        return html(frame(f"Consumer {who.get('username') or who['id']}", body, "", csrf), status)

    async def consumer_get(request: Request, csrf: str) -> Response:
        return await consumer_page(request, csrf)

    async def consumer_partial(request: Request, _csrf: str) -> Response:
        who = await lookup(request.path_params["consumer"])
        if who is None:
            return Response("No such consumer", 404, media_type="text/plain")
        span = span_of(request)
        inner = await consumer_figures(who, span, int(time.time()))
        return html(pages.live("consumer-figures", partial_url(who, span), inner, "Usage"))

    async def create_token(request: Request, csrf: str) -> Response:
        form = await session.read_form(request)
        if not session.csrf_ok(request, form):
            return Response("CSRF token missing or wrong", 403, media_type="text/plain")
        days = (form or {}).get("ttl_days", "30").strip()
        if not days.isdigit() or not 1 <= int(days) <= 366:
            return Response("ttl_days: expected a whole number of days from 1 to 366", 400, media_type="text/plain")
        who = await lookup(request.path_params["consumer"])
        if who is None:
            return Response("No such consumer", 404, media_type="text/plain")
        async with ctx.db.begin() as conn:
            token, _row = await portal_tokens.create(conn, who["id"], int(days) * 86400, int(time.time()))
        return await consumer_page(request, csrf, (token, portal_url(ctx.settings, request, token)), 201)

    async def revoke_token(request: Request, _csrf: str) -> Response:
        form = await session.read_form(request)
        if not session.csrf_ok(request, form):
            return Response("CSRF token missing or wrong", 403, media_type="text/plain")
        who = await lookup(request.path_params["consumer"])
        if who is None:
            return Response("No such consumer", 404, media_type="text/plain")
        async with ctx.db.begin() as conn:
            await portal_tokens.revoke(conn, who["id"], request.path_params["token"])
        return RedirectResponse(f"{BASE}/consumers/{quote(who['id'], safe='')}", 303)

    async def plans(request: Request, csrf: str) -> Response:
        async with ctx.db.connect() as conn:
            found, _ = await ctx.daos["plans"].page(conn, size=1000)
            charges = await ctx.daos["charges"].all(conn)
            entitlements = await ctx.daos["entitlements"].all(conn)
            meters = {item["id"]: item["name"] for item in await ctx.daos["meters"].all(conn)}
        for plan in found:
            plan["charges"] = [{**item, "meter": meters.get(item["meter"]["id"], item["meter"]["id"])}
                               for item in charges if item["plan"]["id"] == plan["id"]]
            plan["entitlements"] = [{**item, "meter": meters.get(item["meter"]["id"], item["meter"]["id"])}
                                    for item in entitlements if item["plan"]["id"] == plan["id"]]
        counts = await figures.subscribers(ctx.db, int(time.time()))
        return html(frame("Plans", pages.plans(found, counts), f"{BASE}/plans", csrf))

    # -- login -----------------------------------------------------------------------------

    def login_form(csrf: str, problem: str = "") -> str:
        alert = f'<p role="alert" class="problem">{esc(problem)}</p>' if problem else ""
        return page("Log in", alert + f'<form method="post" action="{BASE}/login" class="login">'
                    f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
                    f'<label for="token">Admin token</label>'
                    f'<input id="token" name="token" type="password" autocomplete="current-password" '
                    f'required autofocus>'
                    f'<button type="submit">Log in</button></form>', static=STATIC)

    async def login_get(request: Request) -> Response:
        if not sessions.required:
            return RedirectResponse(BASE, 303)
        csrf, new = session.csrf_of(request)
        response = html(login_form(csrf))
        if new:
            session.set_csrf(response, request, csrf)
        return response

    async def login_post(request: Request) -> Response:
        if not sessions.required:
            return RedirectResponse(BASE, 303)
        form = await session.read_form(request)
        csrf, new = session.csrf_of(request)
        response: Response
        if not session.csrf_ok(request, form):
            response = html(login_form(csrf, "The form expired: try again."), 403)
        elif not sessions.token_matches((form or {}).get("token", "")):
            response = html(login_form(csrf, "That is not the admin token."), 401)
        else:
            response = RedirectResponse(BASE, 303)
            session.set_session(response, request, sessions.issue())
        if new:
            session.set_csrf(response, request, csrf)
        return response

    async def logout(request: Request, _csrf: str) -> Response:
        form = await session.read_form(request)
        if not session.csrf_ok(request, form):
            return Response("CSRF token missing or wrong", 403, media_type="text/plain")
        response = RedirectResponse(f"{BASE}/login" if sessions.required else BASE, 303)
        session.end_session(response, request)
        return response

    def get(path: str, handler: Handler) -> Route:
        return Route(path, handler, methods=["GET"], include_in_schema=False)

    def post(path: str, handler: Handler) -> Route:
        return Route(path, handler, methods=["POST"], include_in_schema=False)

    return [
        get(BASE, guarded(overview)),
        get(f"{BASE}/partials/overview", guarded(overview_partial, partial=True)),
        get(f"{BASE}/consumers", guarded(find)),
        get(f"{BASE}/consumers/{{consumer}}", guarded(consumer_get)),
        get(f"{BASE}/partials/consumers/{{consumer}}", guarded(consumer_partial, partial=True)),
        post(f"{BASE}/consumers/{{consumer}}/portal_tokens", guarded(create_token)),
        post(f"{BASE}/consumers/{{consumer}}/portal_tokens/{{token}}/delete", guarded(revoke_token)),
        get(f"{BASE}/plans", guarded(plans)),
        get(f"{BASE}/login", login_get),
        post(f"{BASE}/login", login_post),
        post(f"{BASE}/logout", guarded(logout)),
        get(f"{STATIC}/{{name}}", static_files.serve),
    ]
