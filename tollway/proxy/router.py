"""Kong's route matching, compiled once per configuration: `RouteTable.compile(...).match(...)`.

A route matches when every field it sets matches: `paths` (plain prefixes, or regexes when they
start with `~`, anchored at the start of the path), `hosts` (exact, or one leading/trailing `*`
wildcard, compared without the port), `methods` and `headers` (any listed value, compared
case-insensitively; a value starting with `~*` is a case-insensitive regex). Routes of disabled
services never match.

Among matching routes the most specific wins, as in Kong's traditional router: more matching
fields first, then an exact host before a wildcard one, then a path that equals the request path,
then regex paths (by regex_priority, then in configuration order), then the longest prefix.

Matching does no work proportional to the number of routes for plain prefixes: they live in a dict
keyed by the prefix itself, probed once for each distinct prefix length (longest first). Regex
paths are tried in order, as in Kong; routes without paths are indexed by exact host.

As Kong's router, a table remembers its answers: a request with the same method, host and path as
an earlier one gets the same Match (or the same None) from a bounded cache, unless some route
matches on headers, which the key does not hold. A new configuration compiles a new table, and so
starts with an empty cache.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from tollway.proxy.headers import forwarded_prefix_line

__all__ = ["CompiledRoute", "Match", "RouteTable", "upstream_path"]

# The values of a route's https_redirect_status_code that redirect plain http (426 refuses it).
_REDIRECT_STATUSES = frozenset([301, 302, 307, 308])

# The match cache: at most this many answers, for paths up to this long. It is emptied when full,
# so requests for ever new paths cost one failed lookup each and cannot grow it.
CACHE_ENTRIES: Final = 4096
CACHE_PATH_MAX: Final = 512


@dataclass(slots=True, eq=False)
class CompiledRoute:
    """One route with its service and the matchers built from it."""

    route: dict[str, Any]
    service: dict[str, Any]
    order: int
    hosts_exact: frozenset[str]
    hosts_wild: tuple[re.Pattern[str], ...]
    methods: frozenset[str] | None
    headers: tuple[tuple[bytes, tuple[bytes, ...], tuple[re.Pattern[bytes], ...]], ...]
    fields: int                       # how many of hosts/methods/headers/paths the route sets
    strip_path: bool
    preserve_host: bool
    path_handling: str
    http_allowed: bool                # "http" in protocols (else the client must use https)
    https_redirect: int | None        # the redirect status plain http gets when not allowed; None: 426
    # Set by the proxy when it applies a configuration, so a request finds them from its match:
    plugins: Any = None               # tollway.proxy.chain.RoutePlugins
    target: Any = None                # tollway.proxy.upstream.Target of the service

    def host_rank(self, host: str) -> int:
        """2 for an exact host match, 1 for a wildcard one, 0 when the route has no hosts, -1 no match."""
        if not self.hosts_exact and not self.hosts_wild:
            return 0
        if host in self.hosts_exact:
            return 2
        for pattern in self.hosts_wild:
            if pattern.match(host):
                return 1
        return -1

    def matches_rest(self, method: str, headers: Mapping[bytes, bytes]) -> bool:
        if self.methods is not None and method not in self.methods:
            return False
        for name, values, patterns in self.headers:
            value = headers.get(name)
            if value is None:
                return False
            lowered = value.lower()
            if lowered not in values and not any(p.search(value) for p in patterns):
                return False
        return True


@dataclass(slots=True)
class Match:
    """The result of `RouteTable.match`: the route, its service, and the path for the upstream."""

    compiled: CompiledRoute
    upstream_path: str
    prefix: str = ""  # the part of the request path that strip_path took off ("" when none was)
    # Ready for the upstream's request head (a Match is cached and serves many requests):
    target: bytes = field(init=False)       # upstream_path, encoded
    prefix_line: bytes = field(init=False)  # the X-Forwarded-Prefix line for `prefix`, or b"" (none for "/")

    def __post_init__(self) -> None:
        self.target = self.upstream_path.encode("latin-1")
        self.prefix_line = forwarded_prefix_line(self.prefix.encode("latin-1")) \
            if self.prefix and self.prefix != "/" else b""

    @property
    def route(self) -> dict[str, Any]:
        return self.compiled.route

    @property
    def service(self) -> dict[str, Any]:
        return self.compiled.service


def _wildcard(host: str) -> re.Pattern[str]:
    if host.startswith("*"):
        return re.compile(".+" + re.escape(host[1:]) + r"\Z")
    return re.compile(re.escape(host[:-1]) + r".+\Z")


def _compile(route: dict[str, Any], service: dict[str, Any], order: int) -> CompiledRoute:
    exact: set[str] = set()
    wild: list[re.Pattern[str]] = []
    for host in route.get("hosts") or ():
        host = host.lower()
        if host.startswith("*") or host.endswith("*"):
            wild.append(_wildcard(host))
        else:
            exact.add(host)
    headers = []
    for name, values in (route.get("headers") or {}).items():
        plain = tuple(v.lower().encode("latin-1") for v in values if not v.startswith("~*"))
        patterns = tuple(re.compile(v[2:].encode("latin-1"), re.IGNORECASE)
                         for v in values if v.startswith("~*"))
        headers.append((name.lower().encode("latin-1"), plain, patterns))
    methods = route.get("methods")
    fields = sum(1 for f in ("hosts", "methods", "headers", "paths") if route.get(f))
    protocols = route.get("protocols") or ["http", "https"]
    redirect = route.get("https_redirect_status_code")
    return CompiledRoute(
        route=route, service=service, order=order,
        hosts_exact=frozenset(exact), hosts_wild=tuple(wild),
        methods=frozenset(m.upper() for m in methods) if methods else None,
        headers=tuple(headers), fields=fields,
        strip_path=bool(route.get("strip_path", True)),
        preserve_host=bool(route.get("preserve_host", False)),
        path_handling=route.get("path_handling") or "v0",
        http_allowed="http" in protocols or "https" not in protocols,
        https_redirect=redirect if redirect in _REDIRECT_STATUSES else None,
    )


def upstream_path(compiled: CompiledRoute, request_path: str, postfix: str | None) -> str:
    """The path sent to the upstream: Kong's join of the service path and the request path.

    `postfix` is what follows the matched path prefix (None when the route has no paths, which
    leaves nothing to strip).
    """
    base = compiled.service.get("path") or "/"
    strip = compiled.strip_path and postfix is not None
    if compiled.path_handling == "v1":
        rest = postfix if strip else request_path[1:]
        assert rest is not None
        if base.endswith("/") and rest.startswith("/"):
            return base + rest[1:]
        return base + rest
    # v0: the upstream path and the rest always have exactly one slash between them.
    if base.endswith("/"):
        if not strip:
            return base + request_path[1:]
        assert postfix is not None
        if postfix == "":
            if base == "/" or request_path.endswith("/"):
                return base
            return base[:-1]
        if postfix.startswith("/"):
            return base[:-1] + postfix
        return base + postfix
    if not strip:
        return base if request_path == "/" else base + request_path
    assert postfix is not None
    if postfix == "":
        return base + "/" if len(request_path) > 1 and request_path.endswith("/") else base
    if postfix.startswith("/"):
        return base + postfix
    return base + "/" + postfix


class RouteTable:
    """Every enabled route, indexed for matching. Build with `RouteTable.compile`."""

    def __init__(self) -> None:
        self.routes: list[CompiledRoute] = []
        self._prefixes: dict[str, list[CompiledRoute]] = {}
        self._prefix_lengths: tuple[int, ...] = ()
        self._regexes: list[tuple[re.Pattern[str], int, CompiledRoute]] = []
        self._pathless_by_host: dict[str, list[CompiledRoute]] = {}
        self._pathless_other: list[CompiledRoute] = []
        self.uses_headers = False  # some route matches on headers: answers depend on more than the cache key
        self._cache: dict[tuple[str, str, str], Match | None] = {}

    @classmethod
    def compile(cls, services: Iterable[dict[str, Any]], routes: Iterable[dict[str, Any]]) -> RouteTable:
        """Index the routes whose service exists and is enabled."""
        table = cls()
        by_id = {s["id"]: s for s in services if s.get("enabled", True)}
        regexes: list[tuple[int, int, re.Pattern[str], CompiledRoute]] = []
        for order, route in enumerate(routes):
            service = by_id.get((route.get("service") or {}).get("id"))
            if service is None:
                continue
            compiled = _compile(route, service, order)
            table.routes.append(compiled)
            paths = route.get("paths") or ()
            for path in paths:
                if path.startswith("~"):
                    pattern = re.compile(path[1:])
                    priority = int(route.get("regex_priority") or 0)
                    regexes.append((-priority, order, pattern, compiled))
                else:
                    table._prefixes.setdefault(path, []).append(compiled)
            if not paths:
                if compiled.hosts_exact and not compiled.hosts_wild:
                    for host in compiled.hosts_exact:
                        table._pathless_by_host.setdefault(host, []).append(compiled)
                else:
                    table._pathless_other.append(compiled)
        regexes.sort(key=lambda item: (item[0], item[1]))
        table._regexes = [(pattern, -neg, compiled) for neg, _, pattern, compiled in regexes]
        table._prefix_lengths = tuple(sorted({len(p) for p in table._prefixes}, reverse=True))
        table.uses_headers = any(compiled.headers for compiled in table.routes)
        return table

    def __len__(self) -> int:
        return len(self.routes)

    def match(self, method: str, host: str, path: str, headers: Mapping[bytes, bytes]) -> Match | None:
        """The most specific route for a request, or None.

        `host` is the Host header without its port, lower-cased; `headers` maps lower-cased names
        to values (only consulted for routes with `headers`).
        """
        if self.uses_headers or len(path) > CACHE_PATH_MAX:
            return self._match(method, host, path, headers)
        key = (method, host, path)
        cache = self._cache
        found = cache.get(key)
        if found is not None or key in cache:  # a None answer is cached too
            return found
        found = self._match(method, host, path, headers)
        if len(cache) >= CACHE_ENTRIES:
            cache.clear()
        cache[key] = found
        return found

    def _match(self, method: str, host: str, path: str, headers: Mapping[bytes, bytes]) -> Match | None:
        best: tuple[Any, ...] | None = None
        best_match: tuple[CompiledRoute, str | None] | None = None
        # Plain prefixes, longest first: a dict probe per distinct prefix length.
        prefixes = self._prefixes
        size = len(path)
        for length in self._prefix_lengths:
            if length > size:
                continue
            candidates = prefixes.get(path[:length])
            if candidates is None:
                continue
            for compiled in candidates:
                host_rank = compiled.host_rank(host)
                if host_rank < 0 or not compiled.matches_rest(method, headers):
                    continue
                exact = 3 if length == size else 1
                key = (compiled.fields, host_rank, exact, length, -compiled.order)
                if best is None or key > best:
                    best, best_match = key, (compiled, path[length:])
        for pattern, priority, compiled in self._regexes:
            if best is not None and best[0] > compiled.fields:
                continue
            found = pattern.match(path)
            if found is None:
                continue
            host_rank = compiled.host_rank(host)
            if host_rank < 0 or not compiled.matches_rest(method, headers):
                continue
            key = (compiled.fields, host_rank, 2, priority, -compiled.order)
            if best is None or key > best:
                best, best_match = key, (compiled, path[found.end():])
        for compiled in (*self._pathless_by_host.get(host, ()), *self._pathless_other):
            host_rank = compiled.host_rank(host)
            if host_rank < 0 or not compiled.matches_rest(method, headers):
                continue
            key = (compiled.fields, host_rank, 0, 0, -compiled.order)
            if best is None or key > best:
                best, best_match = key, (compiled, None)
        if best_match is None:
            return None
        compiled, postfix = best_match
        prefix = path[:len(path) - len(postfix)] if compiled.strip_path and postfix is not None else ""
        return Match(compiled, upstream_path(compiled, path, postfix), prefix)
