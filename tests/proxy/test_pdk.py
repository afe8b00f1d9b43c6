"""The plugin development kit on the proxy side (tollway.plugins.base.Call): the per-call context,
request changes, response headers and an access phase that awaits.

Test handlers stand in for the bundled plugins (their names are the ones settings enable); the
proxy, its upstreams and its clients are real, on real sockets.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import threading
import time
from typing import Any

import pytest

from tests.conftest import free_port
from tests.proxy.conftest import (
    ProxyHarness,
    Recorder,
    RecordingUpstream,
    plugin,
    read_until_close,
    request,
    route,
    service,
    snapshot,
)
from tollway.plugins.base import Handler, Reply
from tollway.proxy import chain as chain_module
from tollway.proxy.call import Call, HeaderBlock
from tollway.proxy.headers import join_lines

GET = b"GET /a/x?q=1 HTTP/1.1\r\nHost: api.test\r\nX-Remove-Me: 1\r\nX-Keep: k\r\n\r\n"


def use(monkeypatch: pytest.MonkeyPatch, **handlers: type[Handler]) -> None:
    """Serve the plugin names `key_auth` and `billable` with these test handlers."""
    for name, handler in handlers.items():
        monkeypatch.setitem(chain_module._CLASSES, name.replace("_", "-"), handler)


def one_route(proxy: ProxyHarness, port: int, plugins: list[dict[str, Any]], **extra: Any) -> None:
    svc = service(port, **extra)
    proxy.apply(snapshot([svc], [route(svc, ["/a"])], plugins=plugins))


def read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    """One response with a Content-Length body: its head and its body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk
        body += chunk
    return head, body


def on_one_connection(proxy: ProxyHarness, reads: list[bytes]) -> tuple[list[tuple[bytes, bytes]], int]:
    """Send each read on one keep-alive connection once the answer to the one before arrived
    (so each is a read of its own); the responses, and how many heads the connection kept."""
    async def kept() -> int:
        return sum(conn.reader.repeats.kept is not None for conn in proxy.server.connections)

    responses = []
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for data in reads:
            sock.sendall(data)
            responses.append(read_response(sock))
        repeats = proxy.call(kept())
    return responses, repeats


def settle(proxy: ProxyHarness) -> None:
    """Return once what the proxy's loop had queued (the log phases of answered calls) has run."""
    proxy.call(asyncio.sleep(0))


def upstream_heads(upstream: RecordingUpstream) -> list[tuple[bytes, list[tuple[bytes, bytes]]]]:
    """The request heads the upstream received: request line, and lower-cased header lines in order."""
    heads = []
    for head in upstream.received.split(b"\r\n\r\n")[:-1]:
        line, *lines = head.split(b"\r\n")
        headers = [item.partition(b":") for item in lines]
        heads.append((line, [(name.lower(), value.strip()) for name, _, value in headers]))
    return heads


def header_values(head: bytes, name: bytes) -> list[bytes]:
    return [line.partition(b":")[2].strip() for line in head.split(b"\r\n")[1:]
            if line.partition(b":")[0].lower() == name.lower()]


# The per-call context ----------------------------------------------------------------------------

class Seen:
    """What the test handlers saw, by phase."""

    entries: list[tuple[str, Any]] = []


class First(Handler):
    PRIORITY = 1000

    def access(self, call: Any) -> None:
        call.ctx["first.user"] = call.path


class Second(Handler):
    PRIORITY = 10

    def access(self, call: Any) -> None:
        Seen.entries.append(("access", call.ctx.get("first.user")))
        call.ctx["second.started"] = "yes"

    def header_filter(self, call: Any) -> None:
        Seen.entries.append(("header_filter", dict(call.ctx)))

    def meter(self, call: Any) -> None:
        Seen.entries.append(("meter", dict(call.ctx)))

    def log(self, call: Any) -> None:
        Seen.entries.append(("log", dict(call.ctx)))


def test_ctx_is_shared_between_the_phases_and_the_plugins_of_a_call(proxy, recording_upstream, monkeypatch):
    Seen.entries = []
    use(monkeypatch, key_auth=First, billable=Second)
    one_route(proxy, recording_upstream.port, [plugin("key-auth"), plugin("billable")])
    for path in ("/a/one", "/a/two"):
        assert request(proxy.port, "GET", path).status == 200
    settle(proxy)
    ctx_one = {"first.user": "/a/one", "second.started": "yes"}
    ctx_two = {"first.user": "/a/two", "second.started": "yes"}
    assert Seen.entries == [("access", "/a/one"), ("header_filter", ctx_one), ("meter", ctx_one), ("log", ctx_one),
                            ("access", "/a/two"), ("header_filter", ctx_two), ("meter", ctx_two), ("log", ctx_two)]


def test_a_call_whose_plugins_never_ask_for_ctx_has_none_made():
    call = Call(b"GET", "/", "", [], "127.0.0.1", 0.0, 0.0)
    assert call.context is None
    call.ctx["k"] = 1
    assert call.context == {"k": 1} and call.ctx is call.context


# Request changes ---------------------------------------------------------------------------------

class Changer(Handler):
    """Changes every other request (the first, third...) in every way a plugin can."""

    PRIORITY = 10
    calls = 0

    def access(self, call: Any) -> None:
        Changer.calls += 1
        if Changer.calls % 2 == 0:
            return
        call.set_path("/changed/%41")
        call.set_query("x=1")
        call.set_query_arg("y", "2 3")
        call.set_method("POST")
        call.set_header("X-Set", "s")
        call.add_header("X-Add", "a1")
        call.add_header("X-Add", "a2")
        call.clear_header("X-Remove-Me")


def test_request_changes_reach_the_upstream_and_no_other_request_of_the_connection(
        proxy, recording_upstream, monkeypatch):
    Changer.calls = 0
    use(monkeypatch, billable=Changer)
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    responses, repeats = on_one_connection(proxy, [GET] * 6)
    assert repeats == 1  # the same head was replayed without llhttp from the third request on
    assert [head.split(b"\r\n")[0] for head, _ in responses] == [b"HTTP/1.1 200 OK"] * 6
    heads = upstream_heads(recording_upstream)
    assert [line for line, _ in heads] == [b"POST /changed/%41?x=1&y=2+3 HTTP/1.1", b"GET /x?q=1 HTTP/1.1"] * 3
    for number, (_, headers) in enumerate(heads):
        names = [name for name, _ in headers]
        values = {name: [v for n, v in headers if n == name] for name in names}
        assert values[b"x-keep"] == [b"k"] and values[b"host"] == [b"127.0.0.1:%d" % recording_upstream.port]
        if number % 2 == 0:
            assert values[b"x-set"] == [b"s"] and values[b"x-add"] == [b"a1", b"a2"]
            assert b"x-remove-me" not in values and values[b"content-length"] == [b"0"]
            assert values[b"x-forwarded-path"] == [b"/a/x"]  # the client's, still
        else:
            assert values[b"x-remove-me"] == [b"1"]
            assert not {b"x-set", b"x-add", b"content-length"} & set(names)


def test_a_header_the_clients_connection_header_names_is_sent_when_a_plugin_sets_it(
        proxy, recording_upstream, monkeypatch):
    class Setter(Handler):
        PRIORITY = 10

        def access(self, call: Any) -> None:
            call.set_header("X-Hop", "set by a plugin")

    use(monkeypatch, billable=Setter)
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    reads = [b"GET /a HTTP/1.1\r\nHost: h\r\nConnection: X-Hop\r\nX-Hop: client\r\n\r\n"]
    on_one_connection(proxy, reads)
    (_, headers), = upstream_heads(recording_upstream)
    assert [value for name, value in headers if name == b"x-hop"] == [b"set by a plugin"]


@pytest.mark.parametrize(("change", "message"), [
    (lambda call: call.set_path("relative"), "must start with '/'"),
    (lambda call: call.set_path("/a b"), "printable ASCII"),
    (lambda call: call.set_path("/a?b"), "but '?' and '#'"),
    (lambda call: call.set_query("a=1#frag"), "but '#'"),
    (lambda call: call.set_query("a=\r\n"), "printable ASCII"),
    (lambda call: call.set_method("get"), "upper-case token"),
    (lambda call: call.set_method("CONNECT"), "other than CONNECT"),
    (lambda call: call.set_method("HEAD"), "HEAD frames the response"),
    (lambda call: call.set_header("Bad Name", "v"), "not a valid header name"),
    (lambda call: call.set_header("X-Ok", "v\r\nInjected: 1"), "without control characters"),
    (lambda call: call.add_header("X-Ok", "\u20ac"), "Latin-1"),
    (lambda call: call.set_header("Host", "elsewhere"), "written by the proxy"),
    (lambda call: call.add_header("X-Forwarded-For", "1.2.3.4"), "written by the proxy"),
    (lambda call: call.set_header("Proxy-Authorization", "x"), "written by the proxy"),
    (lambda call: call.set_response_header("Content-Length", "1"), "written by the proxy"),
    (lambda call: call.add_response_header("Connection", "close"), "written by the proxy"),
    (lambda call: call.set_response_header("X-Ok", "a\nb"), "without control characters"),
])
def test_a_bad_change_raises_value_error_saying_what_was_expected(change, message):
    call = Call(b"GET", "/", "", [(b"x-keep", b"1")], "127.0.0.1", 0.0, 0.0)
    with pytest.raises(ValueError, match=message.replace("?", r"\?")):
        change(call)
    assert call.headers == [(b"x-keep", b"1")] and call.changes is None and call.query == ""


def test_query_arguments_are_set_in_place_encoded_and_removed():
    call = Call(b"GET", "/", "a=1&b=2&a=3&&c", [], "127.0.0.1", 0.0, 0.0)
    call.set_query_arg("a", "x y&z")
    assert call.query == "a=x+y%26z&b=2&c"
    call.set_query_arg("new key", "1")
    assert call.query == "a=x+y%26z&b=2&c&new+key=1"
    assert call.query_arg("a") == "x y&z" and call.query_arg("new key") == "1"
    call.remove_query_arg("a")
    assert call.query == "b=2&c&new+key=1"
    call.set_query("")
    assert call.query == "" and not call.bare_query


def test_set_method_to_the_clients_own_changes_nothing():
    call = Call(b"POST", "/", "", [], "127.0.0.1", 0.0, 0.0)
    call.set_method("PUT")
    call.set_method("POST")
    assert call.changes is not None and call.changes.method is None


# Response headers --------------------------------------------------------------------------------

UPSTREAM_RESPONSE = b"HTTP/1.1 200 OK\r\nX-Limit: upstream\r\nX-Up: 1\r\nContent-Length: 2\r\n\r\nok"


class Limiter(Handler):
    """Sets rate-limit headers on every response, answers 429 from the third call on; in
    header_filter, changes the upstream's headers."""

    PRIORITY = 10
    calls = 0
    late: list[str] = []

    def access(self, call: Any) -> Reply | None:
        Limiter.calls += 1
        call.set_response_header("X-Limit", str(2 - Limiter.calls))
        call.add_response_header("X-Note", "access")
        if Limiter.calls > 2:
            return Reply(429, {"message": "API rate limit exceeded"}, {"X-Note": "reply", "X-Limit": "reply"})
        return None

    def header_filter(self, call: Any) -> None:
        call.add_response_header("X-Filtered", str(call.status))
        call.clear_response_header("x-up")

    def log(self, call: Any) -> None:
        try:
            call.set_response_header("X-Late", "1")
        except RuntimeError as exc:
            Limiter.late.append(str(exc))


def test_response_headers_set_in_access_are_on_proxied_and_short_circuit_responses(
        proxy, raw_upstreams, monkeypatch):
    Limiter.calls, Limiter.late = 0, []
    use(monkeypatch, billable=Limiter)
    upstream = RecordingUpstream(raw_upstreams, response=UPSTREAM_RESPONSE)
    one_route(proxy, upstream.port, [plugin("billable")])
    responses, _ = on_one_connection(proxy, [GET] * 5)  # the upstream's head repeats: kept after two
    settle(proxy)
    heads = [head for head, _ in responses]
    assert [head.split(b"\r\n")[0] for head in heads] == ([b"HTTP/1.1 200 OK"] * 2
                                                           + [b"HTTP/1.1 429 Too Many Requests"] * 3)
    assert [header_values(head, b"X-Limit") for head in heads] == [[b"1"], [b"0"], [b"-1"], [b"-2"], [b"-3"]]
    assert [header_values(head, b"X-Note") for head in heads] == [[b"access"]] * 2 + [[b"reply", b"access"]] * 3
    assert [header_values(head, b"X-Filtered") for head in heads] == [[b"200"]] * 2 + [[]] * 3
    assert all(header_values(head, b"X-Up") == [] for head in heads)
    assert [body for _, body in responses][2] == b'{"message":"API rate limit exceeded"}'
    assert Limiter.late == ["response header 'X-Late' cannot change: the response head was already sent"] * 5


def test_response_headers_set_in_access_are_on_the_gateways_own_error(proxy, monkeypatch):
    Limiter.calls = 0
    use(monkeypatch, billable=Limiter)
    one_route(proxy, free_port(), [plugin("billable")], retries=0)  # nothing listens there
    resp = request(proxy.port, "GET", "/a")
    assert resp.status == 503
    assert resp.headers["x-limit"] == "1" and resp.headers["x-note"] == "access"


class BlockSetter(Handler):
    """Sets a ready-made block of response headers in access (as rate-limiting does): X-Count
    changes every call, X-Limit replaces the upstream's; on the third call another change follows
    the block, from the fourth on the call is refused."""

    PRIORITY = 10
    calls = 0
    logged: list[list[tuple[bytes, bytes]]] = []  # each call's response headers as the log phase saw them

    def access(self, call: Any) -> Reply | None:
        BlockSetter.calls += 1
        count = b"%d" % BlockSetter.calls
        items = [(b"X-Count", count), (b"X-Limit", b"block")] if BlockSetter.calls != 2 else [(b"X-Count", count)]
        call.set_response_block(HeaderBlock(join_lines(items), frozenset(name.lower() for name, _ in items)))
        if BlockSetter.calls == 3:
            call.set_response_header("X-Count", "after the block")
        if BlockSetter.calls > 3:
            return Reply(429, {"message": "API rate limit exceeded"}, {"X-Count": "reply", "X-Limit": "reply"})
        return None

    def log(self, call: Any) -> None:
        BlockSetter.logged.append([(name, value) for name, value in call.response_headers
                                   if name.lower() in (b"x-count", b"x-limit", b"x-up")])


def test_a_block_of_response_headers_set_in_access_is_as_the_same_headers_set_one_by_one(
        proxy, raw_upstreams, monkeypatch):
    BlockSetter.calls = 0
    BlockSetter.logged = []
    use(monkeypatch, billable=BlockSetter)
    upstream = RecordingUpstream(raw_upstreams, response=UPSTREAM_RESPONSE)
    one_route(proxy, upstream.port, [plugin("billable")])
    responses, _ = on_one_connection(proxy, [GET] * 5)  # the upstream's head repeats: kept after two
    heads = [head for head, _ in responses]
    assert [header_values(head, b"X-Count") for head in heads] == [
        [b"1"], [b"2"], [b"after the block"], [b"4"], [b"5"]]  # over a Reply's too, as set_response_header
    assert [header_values(head, b"X-Limit") for head in heads] == [[b"block"], [b"upstream"]] + [[b"block"]] * 3
    assert [header_values(head, b"X-Up") for head in heads] == [[b"1"]] * 3 + [[]] * 2
    # after the upstream's own lines, in the block's order
    assert heads[1].index(b"X-Up: 1") < heads[1].index(b"X-Count: 2")
    assert heads[0].index(b"X-Up: 1") < heads[0].index(b"X-Count: 1") < heads[0].index(b"X-Limit: block")
    # what the log phase sees: the headers as written, a block's read back from its lines
    settle(proxy)
    written = [[tuple(line.split(b": ", 1)) for line in head.split(b"\r\n")[1:]
                if line.split(b":", 1)[0].lower() in (b"x-count", b"x-limit", b"x-up")] for head in heads]
    assert BlockSetter.logged == written
    assert written[1] == [(b"X-Limit", b"upstream"), (b"X-Up", b"1"), (b"X-Count", b"2")]  # the block as lines


# An access phase that awaits ---------------------------------------------------------------------

class Slow(Recorder):
    """Awaits 50 ms on /a/slow; answers from an awaited Reply on /a/answer, fails on /a/fail, and on
    /a/hold waits for the test to release it; meters and logs as the Recorder."""

    PRIORITY = 5
    pending = threading.Event()     # the access of /a/slow or /a/hold is waiting
    finished = threading.Event()    # the access of /a/hold has its result
    release: asyncio.Event | None = None
    metered_event = threading.Event()

    def access(self, call: Any) -> Any:
        if call.path == "/a/slow":
            return self._slow()
        if call.path == "/a/future":
            future = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_later(0.01, future.set_result, None)
            return future
        if call.path.startswith("/a/future-"):  # a future the loop settles later: answered without a task
            future = asyncio.get_running_loop().create_future()
            outcome = {"/a/future-answer": Reply(429, {"message": "slow down"}), "/a/future-odd": "yes"}
            if call.path == "/a/future-fail":
                asyncio.get_running_loop().call_soon(future.set_exception, ConnectionError("unreachable"))
            elif call.path == "/a/future-cancel":
                asyncio.get_running_loop().call_soon(future.cancel)
            else:
                asyncio.get_running_loop().call_soon(future.set_result, outcome.get(call.path))
            return future
        if call.path == "/a/answer":
            return self._answer(call)
        if call.path == "/a/fail":
            return self._fail()
        if call.path == "/a/hold":
            return self._hold()
        return None

    async def _slow(self) -> None:
        Slow.pending.set()
        await asyncio.sleep(0.05)

    async def _answer(self, call: Any) -> Reply:
        await asyncio.sleep(0)
        call.set_response_header("Retry-After", "1")
        return Reply(429, {"message": "slow down"})

    async def _fail(self) -> None:
        await asyncio.sleep(0)
        raise ConnectionError("the rate-limit store is unreachable")

    async def _hold(self) -> None:
        Slow.release = asyncio.Event()
        Slow.pending.set()
        await Slow.release.wait()
        Slow.finished.set()

    def meter(self, call: Any) -> None:
        super().meter(call)
        Slow.metered_event.set()


@pytest.fixture
def slow(monkeypatch, recorder) -> type[Slow]:
    Slow.pending, Slow.finished, Slow.metered_event = threading.Event(), threading.Event(), threading.Event()
    use(monkeypatch, billable=Slow)
    return Slow


def test_an_access_that_awaits_holds_its_request_while_other_connections_are_served(
        proxy, recording_upstream, slow, recorder):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    done: dict[str, Any] = {}

    def slow_request() -> None:
        started = time.monotonic()
        done["status"] = request(proxy.port, "GET", "/a/slow").status
        done["took"] = time.monotonic() - started

    thread = threading.Thread(target=slow_request)
    thread.start()
    assert slow.pending.wait(5)
    fast = [request(proxy.port, "GET", "/a/fast").status for _ in range(3)]
    assert "status" not in done  # still waiting while the others were answered
    thread.join(5)
    assert fast == [200] * 3 and done["status"] == 200 and done["took"] >= 0.05
    assert recording_upstream.requests == 4
    assert sorted(m["path"] for m in recorder.metered) == ["/a/fast"] * 3 + ["/a/slow"]


def test_an_access_that_awaits_a_future_goes_on_to_the_upstream(proxy, recording_upstream, slow, recorder):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    assert request(proxy.port, "GET", "/a/future").body == b"ok"
    assert recording_upstream.requests == 1


@pytest.mark.parametrize(("path", "status", "body"), [
    ("/a/future-answer", 429, {"message": "slow down"}),
    ("/a/future-fail", 500, {"message": "An unexpected error occurred"}),
    ("/a/future-odd", 500, {"message": "An unexpected error occurred"}),  # neither a Reply nor None
    ("/a/future-cancel", 500, {"message": "An unexpected error occurred"}),
])
def test_a_future_an_access_returns_answers_as_its_result_says(proxy, recording_upstream, slow, recorder,
                                                                path, status, body):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    resp = request(proxy.port, "GET", path)
    assert (resp.status, resp.json()) == (status, body)
    assert recording_upstream.requests == 0
    assert [m["status"] for m in recorder.metered] == [status]


def test_the_last_handlers_future_is_waited_for_as_it_is_and_an_earlier_ones_through_the_chain():
    class Answers(Handler):
        def access(self, call: Any) -> Any:
            return self.conf["future"]

    loop = asyncio.new_event_loop()
    try:
        first, last = loop.create_future(), loop.create_future()
        handlers = [("one", Answers({"future": first}, None)), ("two", Answers({"future": last}, None))]
        call = Call(b"GET", "/", "", [], "127.0.0.1", 0.0, 0.0)
        call.chain = chain_module.Chain(handlers[1:])  # type: ignore[arg-type]
        assert chain_module.run_access(call, chain_module.RoutePlugins(call.chain, {})) is last
        call.chain = chain_module.Chain(handlers)  # type: ignore[arg-type]
        outcome = chain_module.run_access(call, chain_module.RoutePlugins(call.chain, {}))
        assert outcome is not first and asyncio.iscoroutine(outcome)  # the handler after it is still to run
        first.set_result(None)
        last.set_result(Reply(403, None))
        assert loop.run_until_complete(outcome).status == 403  # type: ignore[arg-type]
    finally:
        loop.close()


def test_an_access_that_awaits_can_answer_with_a_reply(proxy, recording_upstream, slow, recorder):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    resp = request(proxy.port, "GET", "/a/answer")
    assert (resp.status, resp.json(), resp.headers["retry-after"]) == (429, {"message": "slow down"}, "1")
    assert recording_upstream.requests == 0
    assert [m["status"] for m in recorder.metered] == [429]


def test_an_access_that_awaits_and_raises_answers_500(proxy, recording_upstream, slow, recorder):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    resp = request(proxy.port, "GET", "/a/fail")
    assert (resp.status, resp.json()) == (500, {"message": "An unexpected error occurred"})
    assert recording_upstream.requests == 0
    assert [m["status"] for m in recorder.metered] == [500]


def test_a_client_that_leaves_while_an_access_awaits_is_metered_once_as_499(proxy, recording_upstream, slow, recorder):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /a/hold HTTP/1.1\r\nHost: h\r\n\r\n")
        assert slow.pending.wait(5)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a reset
    assert slow.metered_event.wait(5)  # the connection is gone: the call is finished
    assert slow.release is not None
    proxy.loop.call_soon_threadsafe(slow.release.set)
    assert slow.finished.wait(5)

    settle(proxy)  # the access phase's end ran in the loop's turn that set `finished`
    assert [(m["status"], m["path"]) for m in recorder.metered] == [(499, "/a/hold")]
    assert recorder.logged == [{"status": 499, "path": "/a/hold"}]
    assert recording_upstream.requests == 0


def test_a_request_body_sent_while_an_access_awaits_reaches_the_upstream(proxy, recording_upstream, slow, recorder):
    one_route(proxy, recording_upstream.port, [plugin("billable")])
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"POST /a/hold HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nConnection: close\r\n\r\nab")
        assert slow.pending.wait(5)
        sock.sendall(b"cde")
        assert slow.release is not None
        proxy.loop.call_soon_threadsafe(slow.release.set)
        answer, closed = read_until_close(sock)
    assert answer.startswith(b"HTTP/1.1 200 OK") and closed
    assert recording_upstream.received.endswith(b"\r\n\r\nabcde")


# The access loop, with awaiting handlers and a consumer's own chain ------------------------------

class Step(Handler):
    """Records its name; awaits first when its config says so; identifies alice when it is auth."""

    def access(self, call: Any) -> Any:
        if self.conf.get("awaits"):
            return self._later(call)
        return self._now(call)

    def _now(self, call: Any) -> Reply | None:
        call.ctx.setdefault("ran", []).append(self.conf["name"])
        if self.conf.get("auth"):
            call.consumer = {"id": "alice"}
        return Reply(403, None) if self.conf.get("refuses") else None

    async def _later(self, call: Any) -> Reply | None:
        await asyncio.sleep(0)
        return self._now(call)


def run_access(steps: list[tuple[int, dict[str, Any]]],
               alice: list[tuple[int, dict[str, Any]]]) -> tuple[Any, list[str]]:
    """Run the access loop of a chain of Steps (priority, config), with `alice`'s own chain."""
    def chain(entries: list[tuple[int, dict[str, Any]]]) -> chain_module.Chain:
        handlers = []
        for priority, conf in entries:
            handler_class = type(f"Step{priority}", (Step,), {"PRIORITY": priority})
            handlers.append((conf.get("plugin", conf["name"]), handler_class(conf, None)))  # type: ignore[arg-type]
        return chain_module.Chain(handlers)

    base = chain(steps)
    plugins = chain_module.RoutePlugins(base, {"alice": chain(alice)} if alice else {})
    call = Call(b"GET", "/", "", [], "127.0.0.1", 0.0, 0.0)
    call.chain = base

    async def run() -> Any:
        outcome = chain_module.run_access(call, plugins)
        return await outcome if outcome is not None and not isinstance(outcome, Reply) else outcome

    result = asyncio.run(run())
    return result, call.ctx.get("ran", [])


@pytest.mark.parametrize("awaiting", [(), ("first",), ("auth",), ("first", "auth", "after"), ("after",)])
def test_awaiting_handlers_run_the_chain_as_synchronous_ones_do(awaiting):
    def conf(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "awaits": name in awaiting, **extra}

    steps = [(3000, conf("first")), (2000, conf("auth", auth=True)), (1000, conf("after", plugin="tagged")),
             (500, conf("last"))]
    alice = [(3000, conf("first")), (2000, conf("auth", auth=True)),
             (1000, conf("after for alice", plugin="tagged")), (500, conf("last"))]
    assert run_access(steps, alice) == (None, ["first", "auth", "after for alice", "last"])
    assert run_access(steps, []) == (None, ["first", "auth", "after", "last"])
    refusing = [(3000, conf("first")), (2000, conf("auth", auth=True)), (1000, conf("after", refuses=True)),
                (500, conf("last"))]
    result, ran = run_access(refusing, [])
    assert isinstance(result, Reply) and result.status == 403 and ran == ["first", "auth", "after"]


def test_an_awaitable_that_gives_something_else_than_a_reply_is_an_error():
    class Odd(Handler):
        def access(self, call: Any) -> Any:
            async def odd() -> Any:
                return "yes"
            return odd()

    call = Call(b"GET", "/", "", [], "127.0.0.1", 0.0, 0.0)
    call.chain = chain_module.Chain([("odd", Odd({}, None))])  # type: ignore[arg-type]
    outcome = chain_module.run_access(call, chain_module.RoutePlugins(call.chain, {}))
    with pytest.raises(TypeError, match="Reply or None"):  # compiled, mypyc says it first
        asyncio.run(outcome)  # type: ignore[arg-type]
