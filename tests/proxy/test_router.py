"""RouteTable: Kong's matching rules and path joins, without sockets."""

from __future__ import annotations

import time

import pytest

from tests.proxy.conftest import route, service
from tollway.proxy.router import CACHE_ENTRIES, CACHE_PATH_MAX, RouteTable


def table(*routes_: dict, services: list[dict] | None = None) -> RouteTable:
    svcs = services or [SVC]
    return RouteTable.compile(svcs, list(routes_))


SVC = service(9000, name="svc")


def name_of(t: RouteTable, path: str, *, method: str = "GET", host: str = "", headers: dict | None = None):
    match = t.match(method, host, path, headers or {})
    return None if match is None else match.route["name"]


def test_longest_plain_prefix_wins():
    t = table(route(SVC, ["/a"], name="short"), route(SVC, ["/a/b"], name="long"))
    assert name_of(t, "/a/b/c") == "long"
    assert name_of(t, "/a/x") == "short"
    assert name_of(t, "/ab") == "short"  # prefixes are string prefixes, as in Kong
    assert name_of(t, "/b") is None


def test_regex_paths_follow_regex_priority_then_order_and_beat_prefixes():
    t = table(route(SVC, ["/users"], name="prefix"),
              route(SVC, [r"~/users/\d+"], name="low", regex_priority=0),
              route(SVC, [r"~/users/\d+$"], name="high", regex_priority=5),
              route(SVC, [r"~/users/\w+"], name="first-of-equal"),
              route(SVC, [r"~/users/\w+"], name="second-of-equal"))
    assert name_of(t, "/users/42") == "high"
    assert name_of(t, "/users/42/x") == "low"
    assert name_of(t, "/users/bob") == "first-of-equal"
    assert name_of(t, "/users") == "prefix"  # an exact plain path wins over regexes


def test_hosts_exact_and_wildcards():
    t = table(route(SVC, None, hosts=["api.example.com"], name="exact"),
              route(SVC, None, hosts=["*.example.com"], name="leading"),
              route(SVC, None, hosts=["example.*"], name="trailing"))
    assert name_of(t, "/", host="api.example.com") == "exact"
    assert name_of(t, "/", host="www.example.com") == "leading"
    assert name_of(t, "/", host="example.org") == "trailing"
    assert name_of(t, "/", host="other.org") is None


def test_methods_and_headers_restrict_matches_and_add_specificity():
    t = table(route(SVC, ["/x"], name="any"),
              route(SVC, ["/x"], methods=["POST"], name="post"),
              route(SVC, ["/x"], headers={"x-version": ["v2", "V3"]}, name="v2"))
    assert name_of(t, "/x") == "any"
    assert name_of(t, "/x", method="POST") == "post"
    assert name_of(t, "/x", headers={b"x-version": b"v3"}) == "v2"
    assert name_of(t, "/x", headers={b"x-version": b"v1"}) == "any"


def test_more_fields_beat_longer_paths():
    t = table(route(SVC, ["/a/b/c"], name="path"), route(SVC, ["/a"], hosts=["h.com"], name="host+path"))
    assert name_of(t, "/a/b/c", host="h.com") == "host+path"
    assert name_of(t, "/a/b/c", host="x.com") == "path"


def test_routes_of_disabled_or_missing_services_never_match():
    off = service(9001, enabled=False)
    t = RouteTable.compile([SVC, off], [route(off, ["/off"], name="off"),
                                        {**route(SVC, ["/gone"]), "service": {"id": "nope"}}])
    assert name_of(t, "/off") is None
    assert name_of(t, "/gone") is None


# Kong's documented table of joins (service path /s, request = route path + "req" or nothing).
@pytest.mark.parametrize("route_path, strip, handling, suffix, expected", [
    ("/fv0", False, "v0", "req", "/s/fv0req"),
    ("/fv0", False, "v0", "", "/s/fv0"),
    ("/fv1", False, "v1", "req", "/sfv1req"),
    ("/fv1", False, "v1", "", "/sfv1"),
    ("/tv0", True, "v0", "req", "/s/req"),
    ("/tv0", True, "v0", "", "/s"),
    ("/tv1", True, "v1", "req", "/sreq"),
    ("/tv1", True, "v1", "", "/s"),
    ("/fv0/", False, "v0", "req", "/s/fv0/req"),
    ("/fv0/", False, "v0", "", "/s/fv0/"),
    ("/fv1/", False, "v1", "req", "/sfv1/req"),
    ("/fv1/", False, "v1", "", "/sfv1/"),
    ("/tv0/", True, "v0", "req", "/s/req"),
    ("/tv0/", True, "v0", "", "/s/"),
    ("/tv1/", True, "v1", "req", "/sreq"),
    ("/tv1/", True, "v1", "", "/s"),
])
def test_service_and_request_paths_join_as_in_kong(route_path, strip, handling, suffix, expected):
    svc = service(9000, path="/s")
    t = table(route(svc, [route_path], strip_path=strip, path_handling=handling), services=[svc])
    match = t.match("GET", "", route_path + suffix, {})
    assert match is not None and match.upstream_path == expected


@pytest.mark.parametrize("service_path, request_path, expected", [
    ("/api", "/mock/requests", "/api/requests"),
    ("/api/", "/mock/requests", "/api/requests"),
    (None, "/mock/requests", "/requests"),
    (None, "/mock", "/"),
])
def test_strip_path_with_and_without_service_path(service_path, request_path, expected):
    svc = service(9000, path=service_path)
    t = table(route(svc, ["/mock"]), services=[svc])
    assert t.match("GET", "", request_path, {}).upstream_path == expected


def test_regex_strip_removes_the_matched_part():
    svc = service(9000, path="/api")
    t = table(route(svc, [r"~/v\d+"]), services=[svc])
    assert t.match("GET", "", "/v2/items", {}).upstream_path == "/api/items"


def _time_matches(n_routes: int, lookups: int = 20000) -> float:
    routes = [route(SVC, [f"/svc{i}/api"], name=f"r{i}") for i in range(n_routes)]
    t = table(*routes)
    paths = [f"/svc{i % n_routes}/api/items/{i}" for i in range(lookups)]  # all distinct: no cache hits
    start = time.perf_counter()
    for path in paths:
        t.match("GET", "example.com", path, {})
    return (time.perf_counter() - start) / lookups


def test_matching_cost_does_not_grow_with_the_number_of_prefix_routes():
    one = min(_time_matches(1) for _ in range(3))
    thousand = min(_time_matches(1000) for _ in range(3))
    print(f"match: 1 route {one * 1e6:.2f} us, 1000 routes {thousand * 1e6:.2f} us")
    assert thousand < one * 3


def test_repeated_requests_get_the_answers_of_a_fresh_table():
    routes_ = [route(SVC, ["/a"], name="a"), route(SVC, ["/a/b"], methods=["POST"], name="post"),
               route(SVC, None, hosts=["h.com"], name="host"), route(SVC, [r"~/r/\d+"], name="regex")]
    requests = [("GET", "", "/a/b"), ("POST", "", "/a/b"), ("GET", "h.com", "/x"), ("GET", "", "/x"),
                ("GET", "", "/r/7"), ("GET", "", "/r/x"), ("GET", "h.com", "/a"), ("DELETE", "", "/a/b")]
    cached = table(*routes_)
    for _ in range(3):
        for method, host, path in requests:
            fresh = table(*routes_).match(method, host, path, {})
            again = cached.match(method, host, path, {})
            if fresh is None:
                assert again is None, (method, host, path)
            else:
                assert again is not None, (method, host, path)
                assert (again.route["name"], again.upstream_path, again.prefix) == \
                    (fresh.route["name"], fresh.upstream_path, fresh.prefix)


def test_a_new_configuration_starts_with_its_own_answers():
    first = table(route(SVC, ["/a"], name="old"))
    assert name_of(first, "/a") == "old"
    assert name_of(first, "/b") is None
    second = table(route(SVC, ["/b"], name="new"))
    assert name_of(second, "/a") is None
    assert name_of(second, "/b") == "new"
    assert name_of(first, "/a") == "old"


def test_routes_on_headers_are_matched_on_every_request():
    t = table(route(SVC, ["/x"], name="any"), route(SVC, ["/x"], headers={"x-version": ["v2"]}, name="v2"))
    for _ in range(2):
        assert name_of(t, "/x", headers={b"x-version": b"v2"}) == "v2"
        assert name_of(t, "/x", headers={b"x-version": b"v1"}) == "any"
        assert name_of(t, "/x") == "any"


def test_the_answer_cache_is_bounded():
    t = table(route(SVC, ["/"], name="root"))
    for number in range(CACHE_ENTRIES * 2 + 10):
        assert name_of(t, f"/p{number}") == "root"
        assert len(t._cache) <= CACHE_ENTRIES
    long_path = "/" + "x" * CACHE_PATH_MAX
    before = len(t._cache)
    assert name_of(t, long_path) == "root"
    assert len(t._cache) == before  # too long to be kept
    assert t.match("GET", "", long_path, {}).upstream_path == long_path


@pytest.mark.parametrize(("protocols", "code", "allowed", "redirect"), [
    (["https"], None, False, None),
    (["https"], 426, False, None),
    (["https"], 301, False, 301),
    (["https"], 308, False, 308),
    (["http", "https"], 302, True, 302),
    (["http"], 307, True, 307),
])
def test_compiled_route_knows_how_plain_http_is_answered(protocols, code, allowed, redirect):
    compiled = table(route(SVC, ["/"], protocols=protocols, https_redirect_status_code=code)).routes[0]
    assert compiled.http_allowed is allowed
    assert compiled.https_redirect == redirect
