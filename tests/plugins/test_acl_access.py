"""The acl plugin on the proxy, as Kong's spec/03-plugins/18-acl/02-access_spec.lua describes it.

The fixture is Kong's: five consumers with keys apikey123..apikey127 and groups (none; admin;
pro and hello; free and hello; acl_group1), and `anonymous` in group `anonymous`. Each route
/aclN has its own acl (and key-auth) configuration, and answers come from a real proxy serving the
snapshot read from the database.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.plugins.conftest import Gateway
from tollway.plugins.acl.handler import GroupIndex, Handler, header_value
from tollway.proxy.call import Call

FORBIDDEN = {"message": "You cannot consume this service"}
UNAUTHORIZED = {"message": "Unauthorized"}

GROUPS = {"consumer1": [], "consumer2": ["admin"], "consumer3": ["pro", "hello"], "consumer4": ["free", "hello"],
          "consumer5": ["acl_group1"], "anonymous": ["anonymous"]}
KEYS = {"consumer1": "apikey123", "consumer2": "apikey124", "consumer3": "apikey125", "consumer4": "apikey126",
        "consumer5": "apikey127"}


def _consumers(gateway: Gateway) -> dict[str, dict[str, Any]]:
    made = {}
    added = int(time.time()) - 100
    for username, groups in GROUPS.items():
        made[username] = gateway.post("/consumers", {"username": username})
        if username in KEYS:
            gateway.post(f"/consumers/{username}/key-auth", {"key": KEYS[username]})
        for group in groups:  # in the order they were added, which X-Consumer-Groups keeps
            added += 1
            gateway.post(f"/consumers/{username}/acls", {"group": group, "created_at": added})
    return made


def _route(gateway: Gateway, name: str, acl: dict[str, Any], key_auth: dict[str, Any] | None = None) -> None:
    gateway.post("/services/echo/routes", {"name": name, "paths": [f"/{name}"]})
    gateway.post(f"/routes/{name}/plugins", {"name": "acl", "config": acl})
    if key_auth is not None:
        gateway.post(f"/routes/{name}/plugins", {"name": "key-auth", "config": key_auth})


@pytest.fixture
def kong_fixture(gateway: Gateway) -> Gateway:
    consumers = _consumers(gateway)
    anonymous = {"anonymous": consumers["anonymous"]["id"]}
    _route(gateway, "acl1", {"allow": ["admin"]})
    _route(gateway, "acl2", {"allow": ["admin"]}, {})
    _route(gateway, "acl3", {"deny": ["admin"]}, {})
    _route(gateway, "acl3d", {"deny": ["none"]})
    _route(gateway, "acl4", {"allow": ["admin", "pro"]}, {})
    _route(gateway, "acl5", {"deny": ["admin", "pro"]}, {})
    _route(gateway, "acl6", {"deny": ["admin", "pro", "hello"]}, {})
    _route(gateway, "acl7", {"allow": ["admin", "pro", "hello"]}, {})
    _route(gateway, "acl8", {"allow": ["anonymous"]}, anonymous)
    _route(gateway, "acl9", {"allow": ["admin"], "hide_groups_header": True}, {})
    _route(gateway, "acl10", {"allow": ["admin"], "hide_groups_header": False}, {})
    _route(gateway, "acl17", {"allow": ["acl_group1"], "always_use_authenticated_groups": True}, {})
    gateway.sync()
    return gateway


def _as(gateway: Gateway, path: str, consumer: str | None = None, **headers: str) -> tuple[int, Any]:
    if consumer is not None:
        headers["apikey"] = KEYS[consumer]
    answer = gateway.call(path, headers)
    return answer.status, answer.json()


def test_without_an_auth_plugin_every_call_is_401(kong_fixture: Gateway) -> None:
    assert _as(kong_fixture, "/acl1") == (401, UNAUTHORIZED)
    assert _as(kong_fixture, "/acl3d") == (401, UNAUTHORIZED)


def test_allow_lets_in_members_only_and_sends_their_groups(kong_fixture: Gateway) -> None:
    assert _as(kong_fixture, "/acl2", "consumer1") == (403, FORBIDDEN)
    status, echoed = _as(kong_fixture, "/acl2", "consumer2")
    assert status == 200 and echoed["headers"]["x-consumer-groups"] == "admin"
    assert "x-authenticated-groups" not in echoed["headers"]
    status, echoed = _as(kong_fixture, "/acl4", "consumer3")
    assert status == 200 and echoed["headers"]["x-consumer-groups"] == "pro, hello"  # every group, not the match
    assert _as(kong_fixture, "/acl4", "consumer4") == (403, FORBIDDEN)
    assert _as(kong_fixture, "/acl7", "consumer4")[0] == 200


def test_deny_keeps_out_members_and_lets_in_the_rest(kong_fixture: Gateway) -> None:
    assert _as(kong_fixture, "/acl3", "consumer2") == (403, FORBIDDEN)
    status, echoed = _as(kong_fixture, "/acl3", "consumer1")
    assert status == 200 and echoed["headers"]["x-consumer-groups"] == ""  # no groups: an empty list
    assert _as(kong_fixture, "/acl5", "consumer3") == (403, FORBIDDEN)
    assert _as(kong_fixture, "/acl5", "consumer4")[0] == 200
    assert _as(kong_fixture, "/acl6", "consumer4") == (403, FORBIDDEN)
    assert _as(kong_fixture, "/acl6", "consumer3") == (403, FORBIDDEN)


def test_an_anonymous_consumer_is_judged_by_its_own_groups(kong_fixture: Gateway) -> None:
    status, echoed = _as(kong_fixture, "/acl8")
    assert status == 200 and echoed["headers"]["x-consumer-groups"] == "anonymous"


def test_hide_groups_header_sends_none_not_even_the_clients(kong_fixture: Gateway) -> None:
    status, echoed = _as(kong_fixture, "/acl9", "consumer2", **{"X-Consumer-Groups": "forged"})
    assert status == 200
    assert "x-consumer-groups" not in echoed["headers"] and "x-authenticated-groups" not in echoed["headers"]
    status, echoed = _as(kong_fixture, "/acl10", "consumer2", **{"X-Consumer-Groups": "forged"})
    assert status == 200 and echoed["headers"]["x-consumer-groups"] == "admin"


def test_without_authenticated_groups_the_consumers_groups_count(kong_fixture: Gateway) -> None:
    status, echoed = _as(kong_fixture, "/acl17", "consumer5")
    assert status == 200 and echoed["headers"]["x-consumer-groups"] == "acl_group1"
    assert _as(kong_fixture, "/acl17", "consumer4") == (403, FORBIDDEN)


def test_anonymous_consumers_with_and_without_groups(gateway: Gateway) -> None:
    """Kong's second block: `anonymous` has no group, `anonymous_with_group` is in `everyone`."""
    bare = gateway.post("/consumers", {"username": "anonymous"})
    member = gateway.post("/consumers", {"username": "anonymous_with_group"})
    gateway.post("/consumers/anonymous_with_group/acls", {"group": "everyone"})
    cases = [("allow", ["everyone"], bare, 401), ("allow", ["none"], bare, 401),
             ("deny", ["everyone"], bare, 200), ("deny", ["none"], bare, 200),
             ("allow", ["everyone"], member, 200), ("deny", ["none"], member, 200),
             ("allow", ["none"], member, 403), ("deny", ["everyone"], member, 403)]
    for n, (kind, groups, anonymous, _) in enumerate(cases):
        _route(gateway, f"anon{n}", {kind: groups}, {"anonymous": anonymous["id"]})
    gateway.sync()
    for n, (kind, groups, anonymous, expected) in enumerate(cases):
        answer = gateway.call(f"/anon{n}")
        assert answer.status == expected, (kind, groups, anonymous["username"])
        if expected == 200:
            shown = "everyone" if anonymous is member else ""
            assert answer.json()["headers"]["x-consumer-groups"] == shown
        else:
            assert answer.json() == (UNAUTHORIZED if expected == 401 else FORBIDDEN)


def test_changes_to_groups_take_effect_with_the_next_configuration(kong_fixture: Gateway) -> None:
    assert _as(kong_fixture, "/acl2", "consumer1") == (403, FORBIDDEN)
    kong_fixture.post("/consumers/consumer1/acls", {"group": "admin"})
    kong_fixture.sync()
    assert _as(kong_fixture, "/acl2", "consumer1")[0] == 200
    assert kong_fixture.admin.delete("/consumers/consumer1/acls/admin").status_code == 204
    kong_fixture.sync()
    assert _as(kong_fixture, "/acl2", "consumer1") == (403, FORBIDDEN)
    assert kong_fixture.admin.delete("/consumers/consumer2").status_code == 204
    kong_fixture.sync()
    assert _as(kong_fixture, "/acl2", "consumer2")[0] == 401  # no consumer any more: key-auth refuses


class _Runtime:
    def __init__(self, snapshot: dict[str, Any]) -> None:
        self.snapshot = snapshot
        self.indexes: dict[str, Any] = {}


def _call() -> Call:
    return Call(b"GET", "/", "", [(b"host", b"x")], "127.0.0.1", time.time(), time.time())


def test_a_credential_without_a_consumer_is_403() -> None:
    """Kong's acl1b: another auth plugin found a credential but no consumer."""
    handler = Handler({"allow": ["admin"]}, _Runtime({"acls": []}))
    call = _call()
    call.credential = {"id": "c"}
    reply = handler.access(call)
    assert reply is not None and reply.status == 403 and reply.body == FORBIDDEN


def test_group_names_cannot_forge_header_lines() -> None:
    assert header_value(["a\r\nX-Evil: 1", "é"]) == "a%0D%0AX-Evil: 1, é".encode()
    index = GroupIndex({"acls": [{"id": "1", "consumer": {"id": "c"}, "group": "x\n", "created_at": 1}]})
    assert index.groups["c"] == (frozenset({"x\n"}), b"x%0A")
