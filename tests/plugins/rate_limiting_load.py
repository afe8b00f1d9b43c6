"""Load for the rate-limiting end-to-end tests: many concurrent clients against one or more proxies."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from tests.billing.test_usage_e2e import admin
from tests.server.nodes import Node
from tests.server.test_node import _all_workers_applied


@dataclass
class Answer:
    status: int
    headers: httpx.Headers
    sent: float       # time.time() when the request was sent
    received: float   # and when its answer was in
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


def hammer(proxies: list[str], path: str, total: int, clients: int, headers: dict[str, str] | None = None,
           until: float | None = None, stop: threading.Event | None = None,
           answers: list[Answer] | None = None) -> list[Answer]:
    """`total` calls (or, with `until`, calls until that time.time(); with `stop`, until it is
    set) from `clients` concurrent clients, each with its own connection, spread over the
    proxies. Answers are appended to `answers` (a new list by default) as they come."""
    if stop is not None:
        until = float("inf")
    return asyncio.run(_hammer(proxies, path, total, clients, headers or {}, until, stop,
                               [] if answers is None else answers))


async def _hammer(proxies: list[str], path: str, total: int, clients: int, headers: dict[str, str],
                  until: float | None, stop: threading.Event | None, answers: list[Answer]) -> list[Answer]:
    left = [total]

    async def client(index: int) -> None:
        async with httpx.AsyncClient(base_url=proxies[index % len(proxies)], timeout=30) as session:
            while (until is None and left[0] > 0) or (until is not None and time.time() < until
                                                      and not (stop is not None and stop.is_set())):
                left[0] -= 1
                sent = time.time()
                response = await session.get(path, headers=headers)
                answers.append(Answer(response.status_code, response.headers, sent, time.time(), response.content))

    await asyncio.gather(*(client(i) for i in range(clients)))
    return answers


def wait_for_room(period_seconds: int, room: float) -> None:
    """Sleep until at least `room` seconds are left in the current UTC window of that length, so a
    load that must stay in one window does."""
    left = period_seconds - time.time() % period_seconds
    if left < room:
        time.sleep(left + 0.05)


def limit_on_mock(nodes: list[Node], config: dict[str, Any], header: str = "X-RateLimit-Limit-Hour") -> None:
    """rate-limiting with `config` on the route mock, once every node's workers answer with `header`."""
    admin(nodes[0], "POST", "/routes/mock/plugins", {"name": "rate-limiting", "config": config})
    for node in nodes:
        node.wait_until(lambda n=node: _all_workers_applied(n) and httpx.get(  # type: ignore[misc]
            n.proxy + "/mock/requests", headers={"apikey": "digit-secret"}).headers.get(header)
            is not None, timeout=10, what="the plugin at every node")


def load_while(node: Node, action: Any, after: float) -> tuple[list[Answer], float]:
    """Load on the node; once 20 calls were answered, `action` runs, and the load goes on for
    `after` seconds. The answers, and the time.time() of the action."""
    answers: list[Answer] = []
    stop = threading.Event()
    thread = threading.Thread(target=hammer, args=([node.proxy], "/mock/requests", 0, 16),
                              kwargs={"headers": {"apikey": "poppy-secret"}, "stop": stop, "answers": answers})
    thread.start()
    try:
        node.wait_until(lambda: len(answers) >= 20, timeout=30, what="calls answered before the action")
        moment = time.time()
        action()
        time.sleep(after)
    finally:
        stop.set()
        thread.join(60)
    return answers, moment
