"""Plugin chains: which handler instances run for a request, compiled at apply().

Kong's precedence picks, for each plugin name, the most specific configuration:

    route+service+consumer > route+consumer > service+consumer > route+service
        > consumer > route > service > global

Consumer-scoped configurations can only be chosen once an auth plugin has identified the consumer,
so every route gets a `RoutePlugins` holding the chain without a consumer and, for each consumer
that has plugins of its own, the chain once that consumer is known. Both are built here, never
per request.

The phase loops are here too (`run_access`, `run_header_filter`, `run_body_filter`, `run_meter`,
`run_log`): the request cycle calls them with the proxy's Call, whose `chain` is the one that
applies. A handler that raises is logged and skipped, but in access, where the request is answered
500 (by the caller).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterable
from typing import Any

from tollway.plugins import load_module
from tollway.plugins.base import Handler, Reply
from tollway.proxy.call import Call

__all__ = ["Chain", "RoutePlugins", "Runtime", "compile_plugins", "handler_class", "run_access", "run_body_filter",
           "run_header_filter", "run_log", "run_meter"]

log = logging.getLogger("tollway.proxy")

# (route set, service set, consumer set) -> rank; higher wins.
_RANK = {
    (True, True, True): 8, (True, False, True): 7, (False, True, True): 6, (True, True, False): 5,
    (False, False, True): 4, (True, False, False): 3, (False, True, False): 2, (False, False, False): 1,
}


class Runtime:
    """Worker-wide state handed to every handler (tollway.plugins.base.Runtime).

    `indexes` is where a plugin keeps lookup tables it builds once per configuration (key-auth's
    key -> credential dict), shared by all its handler instances.
    """

    __slots__ = ("settings", "spool", "consumers", "snapshot", "indexes")

    def __init__(self, settings: Any, spool: Any, snapshot: dict[str, Any]) -> None:
        self.settings = settings
        self.spool = spool
        self.snapshot = snapshot
        self.consumers: dict[str, dict[str, Any]] = {c["id"]: c for c in snapshot.get("consumers") or ()}
        self.indexes: dict[str, Any] = {}


class Chain:
    """Handlers of one request, highest PRIORITY first, split by the phases they implement."""

    __slots__ = ("handlers", "names", "access", "header_filter", "body_filter", "meter", "log")

    def __init__(self, entries: Iterable[tuple[str, Handler]]) -> None:
        ordered = sorted(entries, key=lambda item: (-item[1].PRIORITY, item[0]))
        self.names = tuple(name for name, _ in ordered)
        self.handlers = tuple(handler for _, handler in ordered)
        phases = [h.phases() for h in self.handlers]
        self.access = tuple((n, h) for (n, h), p in zip(ordered, phases, strict=True) if "access" in p)
        self.header_filter = tuple(h for h, p in zip(self.handlers, phases, strict=True) if "header_filter" in p)
        self.body_filter = tuple(h for h, p in zip(self.handlers, phases, strict=True) if "body_filter" in p)
        self.meter = tuple(h for h, p in zip(self.handlers, phases, strict=True) if "meter" in p)
        self.log = tuple(h for h, p in zip(self.handlers, phases, strict=True) if "log" in p)

    def __repr__(self) -> str:
        return f"<Chain {', '.join(self.names)}>"


EMPTY_CHAIN = Chain(())


class RoutePlugins:
    """The chain of one route before the consumer is known, and once it is (per consumer id)."""

    __slots__ = ("base", "by_consumer")

    def __init__(self, base: Chain, by_consumer: dict[str, Chain]) -> None:
        self.base = base
        self.by_consumer = by_consumer


_CLASSES: dict[str, type[Handler] | None] = {}


def handler_class(name: str) -> type[Handler] | None:
    """The Handler class of a plugin, or None when the plugin has no handler module."""
    if name not in _CLASSES:
        try:
            module = load_module(name, "handler")
        except KeyError:
            module = None
        _CLASSES[name] = getattr(module, "Handler", None) if module is not None else None
        if _CLASSES[name] is None:
            log.warning("plugin %s has no handler; it is skipped", name)
    return _CLASSES[name]


def _ref(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else None


def compile_plugins(snapshot: dict[str, Any], enabled: Iterable[str], runtime: Runtime,
                    routes: Iterable[tuple[str, str]]) -> dict[str, RoutePlugins]:
    """For each (route id, service id), its RoutePlugins. Handlers are built here, once per row."""
    enabled = set(enabled)
    rows: list[tuple[str, Handler, str | None, str | None, str | None]] = []
    for row in snapshot.get("plugins") or ():
        name = row.get("name")
        if not row.get("enabled", True) or name not in enabled:
            continue
        cls = handler_class(name)
        if cls is None:
            continue
        try:
            handler = cls(row.get("config") or {}, runtime)
        except Exception:
            log.exception("plugin %s (%s) failed to load; it is skipped", name, row.get("id"))
            continue
        rows.append((name, handler, _ref(row.get("route")), _ref(row.get("service")), _ref(row.get("consumer"))))

    by_route: dict[str, list[Any]] = {}
    by_service: dict[str, list[Any]] = {}
    unscoped: list[Any] = []
    for item in rows:
        _, _, route_id, service_id, _ = item
        if route_id is not None:
            by_route.setdefault(route_id, []).append(item)
        elif service_id is not None:
            by_service.setdefault(service_id, []).append(item)
        else:
            unscoped.append(item)

    result: dict[str, RoutePlugins] = {}
    for route_id, service_id in routes:
        base: dict[str, tuple[int, Handler]] = {}
        consumers: dict[str, dict[str, tuple[int, Handler]]] = {}
        for name, handler, r_id, s_id, c_id in (*by_route.get(route_id, ()), *by_service.get(service_id, ()),
                                                *unscoped):
            if s_id is not None and s_id != service_id:
                continue
            rank = _RANK[(r_id is not None, s_id is not None, c_id is not None)]
            target = base if c_id is None else consumers.setdefault(c_id, {})
            if name not in target or target[name][0] < rank:
                target[name] = (rank, handler)
        by_consumer: dict[str, Chain] = {}
        for consumer_id, overrides in consumers.items():
            merged = dict(base)
            for name, (rank, handler) in overrides.items():
                if name not in merged or merged[name][0] < rank:
                    merged[name] = (rank, handler)
            by_consumer[consumer_id] = Chain((n, h) for n, (_, h) in merged.items())
        chain = Chain((n, h) for n, (_, h) in base.items()) if base else EMPTY_CHAIN
        result[route_id] = RoutePlugins(chain, by_consumer)
    return result


# The phase loops ---------------------------------------------------------------------------------

def run_access(call: Call, plugins: RoutePlugins) -> Reply | Awaitable[Reply | None] | None:
    """Run the access phases; switch to the consumer's chain once an auth plugin found one.

    Returns the Reply of the handler that answered, or None when all let the request through; or,
    when a handler's access returned an awaitable, a coroutine that awaits it and runs the
    handlers after it (to a Reply or None); when the last handler returned an asyncio.Future, that
    future itself (the caller adds a done callback: no task per call). Raises what a handler raised
    (the caller answers 500). A synchronous handler pays nothing for this: its result is checked for
    None, then for a Reply.
    """
    chain: Chain = call.chain
    entries = chain.access
    if plugins.by_consumer:
        return _run_until_consumer(call, plugins.by_consumer, set(), entries, 0)
    for entry in entries:  # no consumer has plugins of its own on this route
        result = entry[1].access(call)
        if result is not None:
            if isinstance(result, Reply):
                return result
            return _rest_later(call, result, entries, entries.index(entry) + 1)
    return None


def _run_from(call: Call, entries: tuple[tuple[str, Handler], ...],
              index: int) -> Reply | Awaitable[Reply | None] | None:
    """The access phases of `entries` from `index` on, with no consumer chain to look for."""
    while index < len(entries):
        handler = entries[index][1]
        index += 1
        result = handler.access(call)
        if result is not None:
            if isinstance(result, Reply):
                return result
            return _rest_later(call, result, entries, index)
    return None


def _rest_later(call: Call, pending: Awaitable[Reply | None], entries: tuple[tuple[str, Handler], ...],
                index: int) -> Awaitable[Reply | None]:
    """What is left of the access phase once `pending` (from `entries[index - 1]`) is done, with no
    consumer chain to look for: the last handler's future itself (the caller waits for it without a
    task), else a coroutine that runs the handlers after it."""
    if index == len(entries) and isinstance(pending, asyncio.Future):
        return pending
    return _access_later(call, pending, entries, index, None, set())


def _run_until_consumer(call: Call, by_consumer: dict[str, Chain], done: set[str],
                        entries: tuple[tuple[str, Handler], ...],
                        index: int) -> Reply | Awaitable[Reply | None] | None:
    """The access phases of `entries` from `index` on, until one identifies the consumer."""
    while index < len(entries):
        name, handler = entries[index]
        index += 1
        done.add(name)
        result = handler.access(call)
        if result is not None:
            if isinstance(result, Reply):
                return result
            return _access_later(call, result, entries, index, by_consumer, done)
        if call.consumer is not None:
            return _consumer_found(call, by_consumer, handler, done, entries, index)
    return None


def _consumer_found(call: Call, by_consumer: dict[str, Chain], handler: Handler, done: set[str],
                    entries: tuple[tuple[str, Handler], ...], index: int) -> Reply | Awaitable[Reply | None] | None:
    """`handler` identified the consumer: go on in the consumer's chain, if it has one, with the
    handlers not run yet of no higher priority than `handler`; else in `entries` from `index`."""
    consumer = call.consumer
    consumer_chain = by_consumer.get(consumer.get("id") or "") if consumer is not None else None
    if consumer_chain is not None:
        call.chain = consumer_chain
        priority = handler.PRIORITY
        entries = tuple((n, h) for n, h in consumer_chain.access if n not in done and priority >= h.PRIORITY)
        index = 0
    return _run_from(call, entries, index)


def checked_reply(result: Any) -> Reply | None:
    """What an awaited access phase gave, which must be a Reply or None (TypeError otherwise)."""
    if result is not None and not isinstance(result, Reply):
        raise TypeError(f"a plugin's access phase gave {type(result).__name__}, not a Reply or None")
    return result


async def _access_later(call: Call, pending: Awaitable[Reply | None], entries: tuple[tuple[str, Handler], ...],
                        index: int, by_consumer: dict[str, Chain] | None, done: set[str]) -> Reply | None:
    """The access phase from the awaitable `entries[index - 1]`'s handler returned; the consumer
    chain is still to be looked for when `by_consumer` is given."""
    result = checked_reply(await pending)
    if result is not None:
        return result
    if by_consumer is None:
        rest = _run_from(call, entries, index)
    elif call.consumer is not None:
        rest = _consumer_found(call, by_consumer, entries[index - 1][1], done, entries, index)
    else:
        rest = _run_until_consumer(call, by_consumer, done, entries, index)
    if rest is None or isinstance(rest, Reply):
        return rest
    return await rest


def run_header_filter(call: Call) -> None:
    """The upstream's status and headers are on the call (call.status, call.response_headers)."""
    chain: Chain | None = call.chain
    if chain is not None and chain.header_filter:
        for handler in chain.header_filter:
            try:
                handler.header_filter(call)
            except Exception:
                log.exception("plugin header_filter failed")


def run_body_filter(call: Call, chunk: bytes, last: bool) -> bytes:
    """A response body chunk as the handlers leave it (`last`: b"" after the final chunk)."""
    chain: Chain | None = call.chain
    if chain is not None:
        for handler in chain.body_filter:
            try:
                chunk = handler.body_filter(call, chunk, last)
            except Exception:
                log.exception("plugin body_filter failed")
    return chunk


def run_meter(call: Call) -> None:
    """The meter phases, once per call, whatever calls it again."""
    if call.metered:
        return
    call.metered = True
    chain: Chain | None = call.chain
    if chain is None:
        return
    for handler in chain.meter:
        try:
            handler.meter(call)
        except Exception:
            log.exception("plugin meter phase failed")


def run_log(call: Call) -> None:
    chain: Chain | None = call.chain
    if chain is None:
        return
    for handler in chain.log:
        try:
            handler.log(call)
        except Exception:
            log.exception("plugin log phase failed")
