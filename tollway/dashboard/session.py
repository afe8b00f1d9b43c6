"""Who may use the dashboard, and that a write comes from its own pages.

Without `admin_token` the dashboard is as open as the Admin API. With it, the login form asks
for the token once and answers with a session cookie: HttpOnly (no script reads it),
SameSite=Strict (no other site's page sends it), Secure when served over TLS, valid for
SESSION_SECONDS. A session is `expires.nonce.mac`, the MAC an HMAC-SHA256 under a key derived
from the token: nothing is stored, a session outlives a reload, and changing the token ends every
session. The cookie opens the dashboard only; the JSON API still wants the token in its header.

Every write (login, logout, portal tokens) must carry the CSRF token: a random value in a cookie of
its own (HttpOnly, SameSite=Strict) that the page also puts in the form; the two must match
(double submit). A page of another origin can neither read the cookie nor make the browser send it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

SESSION_COOKIE = "tollway_session"
CSRF_COOKIE = "tollway_csrf"
SESSION_SECONDS = 12 * 3600
MAX_FORM = 16 * 1024


class Sessions:
    """Sessions signed under a key derived from the admin token; `required` is False without one."""

    def __init__(self, admin_token: str) -> None:
        self.required = bool(admin_token)
        self.token = admin_token.encode()
        self.key = hashlib.sha256(b"tollway-dashboard-session\x00" + self.token).digest()

    def _mac(self, text: str) -> str:
        return hmac.new(self.key, text.encode(), hashlib.sha256).hexdigest()

    def issue(self, now: float | None = None) -> str:
        body = f"{int(now if now is not None else time.time()) + SESSION_SECONDS}.{secrets.token_urlsafe(16)}"
        return f"{body}.{self._mac(body)}"

    def valid(self, session: str | None, now: float | None = None) -> bool:
        if not session or session.count(".") != 2:
            return False
        body, _, mac = session.rpartition(".")
        expires = body.split(".", 1)[0]
        if not hmac.compare_digest(self._mac(body), mac) or not expires.isdigit():
            return False
        return int(expires) > (now if now is not None else time.time())

    def allows(self, request: Request) -> bool:
        return not self.required or self.valid(request.cookies.get(SESSION_COOKIE))

    def token_matches(self, given: str) -> bool:
        return self.required and hmac.compare_digest(given.encode(), self.token)


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def csrf_of(request: Request) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (then `set_csrf` must send it)."""
    found = request.cookies.get(CSRF_COOKIE, "")
    if len(found) >= 32:
        return found, False
    return secrets.token_urlsafe(32), True


def set_csrf(response: Response, request: Request, token: str) -> None:
    response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict", secure=secure(request),
                        path="/")


def set_session(response: Response, request: Request, session: str) -> None:
    response.set_cookie(SESSION_COOKIE, session, max_age=SESSION_SECONDS, httponly=True, samesite="strict",
                        secure=secure(request), path="/dashboard")


def end_session(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/dashboard", httponly=True, samesite="strict",
                           secure=secure(request))


async def read_form(request: Request) -> dict[str, str] | None:
    """A url-encoded form of at most MAX_FORM bytes; None when it is not one."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        return dict(parse_qsl(body.decode(), keep_blank_values=True))
    except (UnicodeDecodeError, ValueError):
        return None


def csrf_ok(request: Request, form: dict[str, str] | None) -> bool:
    """The form's CSRF token equals the cookie's (and there is one)."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    given = (form or {}).get("csrf", "")
    return len(cookie) >= 32 and hmac.compare_digest(cookie.encode(), given.encode())
