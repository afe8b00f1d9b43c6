"""With admin_token: the dashboard asks for it once (a login form, then a session cookie), every
write carries the CSRF token, and the JSON API still wants the token in its header."""

from __future__ import annotations

import re

import httpx

from tests.admin.conftest import AdminServer

TOKEN = "s3cret-admin"


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


def _login(client: httpx.Client, token: str = TOKEN) -> httpx.Response:
    form = client.get("/dashboard/login")
    return client.post("/dashboard/login", data={"csrf": _csrf(form.text), "token": token})


def test_pages_redirect_to_the_login_form_and_partials_answer_401(guarded_admin: AdminServer) -> None:
    client = guarded_admin.client
    page = client.get("/dashboard")
    assert (page.status_code, page.headers["location"]) == (303, "/dashboard/login")
    partial = client.get("/dashboard/partials/overview")
    assert (partial.status_code, partial.headers["hx-redirect"]) == (401, "/dashboard/login")
    assert client.get("/dashboard/static/htmx.min.js").status_code == 200  # public files
    form = client.get("/dashboard/login")
    assert form.status_code == 200 and 'type="password"' in form.text and '<label for="token">' in form.text


def test_the_right_token_opens_a_strict_httponly_session(guarded_admin: AdminServer) -> None:
    client = guarded_admin.client
    wrong = _login(client, "nope")
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    answer = _login(client)
    assert (answer.status_code, answer.headers["location"]) == (303, "/dashboard")
    cookie = next(value for value in answer.headers.get_list("set-cookie") if value.startswith("tollway_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert client.get("/dashboard").status_code == 200
    assert client.get("/dashboard/plans").status_code == 200


def test_the_session_cookie_opens_no_json_route(guarded_admin: AdminServer) -> None:
    client = guarded_admin.client
    _login(client)
    session = client.cookies["tollway_session"]
    for path in ("/consumers", "/status", "/billable", "/openapi.json"):
        answer = httpx.get(f"http://127.0.0.1:{guarded_admin.port}{path}", cookies={"tollway_session": session})
        assert answer.status_code == 401, path
        assert answer.json() == {"message": "Invalid credentials. Token or User credentials required"}
    ok = httpx.get(f"http://127.0.0.1:{guarded_admin.port}/consumers", headers={"Tollway-Admin-Token": TOKEN})
    assert ok.status_code == 200


def test_a_forged_or_expired_session_is_refused(guarded_admin: AdminServer) -> None:
    base = f"http://127.0.0.1:{guarded_admin.port}"
    for forged in ("9999999999.abc.0000", "1.abc.def", "garbage"):
        answer = httpx.get(base + "/dashboard", cookies={"tollway_session": forged})
        assert answer.status_code == 303, forged


def test_every_write_wants_the_csrf_token(guarded_admin: AdminServer) -> None:
    client = guarded_admin.client
    client.post("/consumers", json={"username": "poppy"}, headers={"Tollway-Admin-Token": TOKEN})
    form = client.get("/dashboard/login")
    assert client.post("/dashboard/login", data={"token": TOKEN}).status_code == 403  # login too
    client.post("/dashboard/login", data={"csrf": _csrf(form.text), "token": TOKEN})
    page = client.get("/dashboard/consumers/poppy")
    assert page.status_code == 200
    assert client.post("/dashboard/consumers/poppy/portal_tokens", data={"ttl_days": "3"}).status_code == 403
    assert client.post("/dashboard/consumers/poppy/portal_tokens",
                       data={"ttl_days": "3", "csrf": "x" * 43}).status_code == 403
    created = client.post("/dashboard/consumers/poppy/portal_tokens", data={"ttl_days": "3", "csrf": _csrf(page.text)})
    assert created.status_code == 201 and "data-token" in created.text
    assert client.post("/dashboard/logout", data={}).status_code == 403
    assert client.post("/dashboard/logout", data={"csrf": _csrf(page.text)}).status_code == 303
    assert client.get("/dashboard").status_code == 303  # the session is over
