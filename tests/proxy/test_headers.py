"""Header rewriting helpers: the per-connection shortcuts give exactly what the general path gives."""

from __future__ import annotations

import pytest

from tollway.proxy import headers as headers_module
from tollway.proxy.headers import (
    NAME_OTHER,
    NAME_PROXY,
    HeaderNames,
    JoinedLines,
    forwarded_blocks,
    lower_name,
    request_header_lines,
    upstream_request_head,
)

CLIENT_HEADERS = {
    "plain": [(b"user-agent", b"wrk"), (b"accept", b"*/*"), (b"apikey", b"k")],
    "none": [],
    "a client's X-Forwarded-For": [(b"x-forwarded-for", b"10.0.0.9"), (b"accept", b"*/*")],
    "a client's Via": [(b"via", b"1.0 edge"), (b"accept", b"*/*")],
    "hop-by-hop and proxy-": [(b"connection", b"close"), (b"proxy-authorization", b"x"), (b"te", b"trailers")],
}


@pytest.mark.parametrize("client", list(CLIENT_HEADERS.values()), ids=list(CLIENT_HEADERS))
@pytest.mark.parametrize("prefix", [b"", b"x-forwarded-prefix: /api\r\n"])
def test_the_forwarded_blocks_give_the_head_the_general_path_gives(client, prefix):
    common = dict(client_ip=b"127.0.0.1", real_ip=b"127.0.0.1", forwarded_proto=b"http",
                  forwarded_host=b"gw.example", forwarded_port=b"8000", forwarded_path=b"/api/x",
                  prefix_line=prefix, framing=b"content-length: 2\r\n", upgrade=None)
    lines = request_header_lines(client, frozenset())
    general = upstream_request_head(b"POST", b"/x", b"up.example", lines, **common)
    shortcut = upstream_request_head(b"POST", b"/x", b"up.example", lines, **common,
                                     blocks=forwarded_blocks(b"127.0.0.1", b"http", b"8000"))
    assert shortcut == general
    assert b"\r\nx-forwarded-host: gw.example\r\nx-forwarded-port: 8000\r\nx-forwarded-path: /api/x\r\n" in general


def test_the_upstream_head_in_full():
    lines = request_header_lines([(b"host", b"gw.example:8000"), (b"accept", b"*/*"), (b"x-forwarded-for", b"10.0.0.9"),
                                  (b"via", b"1.0 edge"), (b"connection", b"x-drop"), (b"x-drop", b"1"),
                                  (b"proxy-authorization", b"p"), (b"x-keep", b"2")], frozenset([b"x-drop"]))
    assert lines == (b"accept: */*\r\nx-keep: 2\r\n", b"10.0.0.9", b"1.0 edge")
    head = upstream_request_head(b"GET", b"/up?q=1", b"up.example", lines, client_ip=b"127.0.0.2",
                                 real_ip=b"127.0.0.2", forwarded_proto=b"http", forwarded_host=b"gw.example",
                                 forwarded_port=b"8000", forwarded_path=b"/api/up",
                                 prefix_line=b"x-forwarded-prefix: /api\r\n", framing=b"", upgrade=b"websocket",
                                 blocks=forwarded_blocks(b"127.0.0.2", b"http", b"8000"))
    assert head == (b"GET /up?q=1 HTTP/1.1\r\nhost: up.example\r\naccept: */*\r\nx-keep: 2\r\n"
                    b"x-forwarded-for: 10.0.0.9, 127.0.0.2\r\nx-forwarded-proto: http\r\n"
                    b"x-forwarded-host: gw.example\r\nx-forwarded-port: 8000\r\nx-forwarded-path: /api/up\r\n"
                    b"x-real-ip: 127.0.0.2\r\nvia: 1.0 edge, 1.1 tollway\r\nx-forwarded-prefix: /api\r\n"
                    b"connection: upgrade\r\nupgrade: websocket\r\n\r\n")


def test_header_names_by_position_follow_whatever_a_position_holds():
    names = HeaderNames()
    assert [names.lookup(i, n)[0] for i, n in enumerate([b"Host", b"User-Agent", b"X-A"])] == \
        [b"host", b"user-agent", b"x-a"]
    # The same names again, then others (and other cases) at the same positions, then more of them.
    assert [names.lookup(i, n)[0] for i, n in enumerate([b"Host", b"User-Agent", b"X-A"])] == \
        [b"host", b"user-agent", b"x-a"]
    assert [names.lookup(i, n)[0] for i, n in enumerate([b"HOST", b"Content-Length", b"x-a", b"X-B"])] == \
        [b"host", b"content-length", b"x-a", b"x-b"]
    assert names.lookup(1, b"User-Agent")[0] == b"user-agent"
    assert names.lookup(40, b"Late")[0] == b"late"  # past what is remembered, and after a gap


def test_lowered_names_are_shared_and_the_cache_is_bounded():
    assert lower_name(b"X-Shared-Name") is lower_name(b"x-shared-name") is lower_name(b"X-SHARED-NAME")
    long_name = b"X-" + b"a" * 100
    assert lower_name(long_name) == long_name.lower()
    assert long_name not in headers_module._LOWERED  # names over 64 bytes are not kept
    for i in range(headers_module._LOWERED_MAX + 10):
        assert lower_name(b"X-Made-Up-%d" % i) == b"x-made-up-%d" % i
    assert len(headers_module._LOWERED) <= headers_module._LOWERED_MAX


def test_joined_lines_are_joined_again_when_the_headers_change():
    joined = JoinedLines()
    assert joined.join([]) == b""
    first = [(b"Server", b"up"), (b"Date", b"Mon, 30 Nov 2026 00:00:00 GMT")]
    assert joined.join(first) == b"Server: up\r\nDate: Mon, 30 Nov 2026 00:00:00 GMT\r\n"
    assert joined.join(list(first)) is joined.join(first)  # equal headers: the same bytes object
    assert joined.join([(b"Server", b"up"), (b"Date", b"Mon, 30 Nov 2026 00:00:01 GMT")]) == \
        b"Server: up\r\nDate: Mon, 30 Nov 2026 00:00:01 GMT\r\n"
    assert joined.join([(b"Server", b"up")]) == b"Server: up\r\n"
    assert joined.join([]) == b""
    later = [(b"A", b"1")]
    assert joined.join(later) == b"A: 1\r\n"
    later.append((b"B", b"2"))  # the list changed after it was joined (a plugin's, say)
    assert joined.join([(b"A", b"1"), (b"B", b"2")]) == b"A: 1\r\nB: 2\r\n"


def test_joined_lines_know_the_lower_cased_names_of_the_headers_last_joined():
    joined = JoinedLines()
    joined.join([(b"Server", b"up"), (b"X-RateLimit-Limit-Second", b"5")])
    assert joined.lowered_names() == {b"server", b"x-ratelimit-limit-second"}
    joined.join([(b"Server", b"up"), (b"X-RateLimit-Limit-Second", b"5")])  # the same: kept
    assert joined.lowered_names() == {b"server", b"x-ratelimit-limit-second"}
    limits = frozenset([b"x-ratelimit-limit-second"])
    assert not joined.has_none_of(limits) and not joined.has_none_of(limits)  # asked again: kept
    joined.join([(b"Date", b"now")])
    assert joined.lowered_names() == {b"date"}
    assert joined.has_none_of(limits)
    assert not joined.has_none_of(frozenset([b"date"]))


def test_header_names_by_position_carry_their_kind():
    names = HeaderNames({b"content-length": 2, b"via": 3})
    first = [b"Content-Length", b"X-A", b"Proxy-Foo", b"VIA"]
    expected = [(b"content-length", 2), (b"x-a", NAME_OTHER), (b"proxy-foo", NAME_PROXY), (b"via", 3)]
    assert [names.lookup(i, n) for i, n in enumerate(first)] == expected
    assert [names.lookup(i, n) for i, n in enumerate(first)] == expected  # by position, the second time
    assert [names.lookup(i, n) for i, n in enumerate([b"Via", b"content-length", b"X-A", b"Proxy-Bar"])] == \
        [(b"via", 3), (b"content-length", 2), (b"x-a", NAME_OTHER), (b"proxy-bar", NAME_PROXY)]
    assert HeaderNames().lookup(0, b"Content-Length") == (b"content-length", NAME_OTHER)


def test_joined_lines_adopt_an_equal_list_made_of_other_tuples() -> None:
    # Equal lists compare by identity per item only when they share their tuples: the lines keep
    # the latest equal list's tuples (a kept head's, shared by every connection).
    joined = JoinedLines()
    first = [(b"Server", b"up"), (b"Date", b"today")]
    assert joined.join(first) == b"Server: up\r\nDate: today\r\n"
    again = [(name, value) for name, value in first]  # equal, other objects
    assert again[0] is not first[0] and joined.join(again) == b"Server: up\r\nDate: today\r\n"
    assert all(kept is item for kept, item in zip(joined.headers, again, strict=True))
    again.append((b"X-Later", b"1"))  # a plugin changing the list afterwards changes no kept line
    assert joined.join([*first, (b"X-Later", b"1")]) == b"Server: up\r\nDate: today\r\nX-Later: 1\r\n"
    assert joined.join([]) == b""
